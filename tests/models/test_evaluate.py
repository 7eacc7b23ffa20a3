"""Evaluation of a head artifact (models/evaluate.py): the report against a hand computation,
bad_cases.jsonl, the precision-recall PNG (Chinese legend, no missing glyphs) and MODEL_CARD.md.
A tiny TextCNN head is trained here on generated keyword texts (nothing is downloaded)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib
import json
import random
import shutil
import struct
import warnings

import numpy as np
import pytest

from tagger.models.loading import load_head
from tagger.models.spec import read_spec, write_spec
from tagger.models.decision import round_scores
from tagger.models.evaluate import evaluate_artifact
from tagger.models.training import train_head

LABELS = ["预售", "谍照", "新车上市", "申报图"]
PHRASES = {"预售": ["开启预售", "预售价格公布"], "谍照": ["路试谍照曝光", "伪装测试车谍照"],
           "新车上市": ["正式上市销售", "上市发布会召开"], "申报图": ["工信部申报图", "申报信息曝光"]}
NOISE = ["比亚迪", "吉利", "长安", "小米", "理想", "车身", "轴距", "动力", "内饰", "续航", "电池", "座椅"]
QUIET = lambda *a, **k: None  # noqa: E731


def make_data(n, seed, flip=0.0):
    """Keyword texts; with `flip`, that share of the label sets is replaced at random (bad cases)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        tags = [t for t in LABELS if rng.random() < 0.3]
        words = [rng.choice(NOISE) for _ in range(rng.randint(4, 10))]
        for t in tags:
            words.insert(rng.randint(0, len(words)), rng.choice(PHRASES[t]))
        texts.append("".join(words))
        labels.append([t for t in LABELS if rng.random() < 0.3] if rng.random() < flip else tags)
    return texts, labels


TRAIN = make_data(300, 1)
TEST = make_data(90, 3, flip=0.15)
TEST[0].append("内饰" * 150 + "开启预售")  # a long text: bad cases keep 200 characters of it
TEST[1].append(["谍照", "车展"])  # 车展 is not one of the head's labels: ignored, and counted
ITEMIDS = [f"item-{i}" for i in range(len(TEST[0]))]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ev") / "p0"
    dev = make_data(80, 2)
    train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=dev[0], dev_labels=dev[1], out_dir=str(out), epochs=4, max_length=48, log=QUIET)
    # one label switched off (with a reason) and a decision block: the report must use the job's decisions
    spec = read_spec(out)
    spec.enabled[3] = False
    spec.extra["disabled_reasons"] = {"申报图": "3 dev positives < 5 needed to tell"}
    spec.extra["decision"] = {"top_k": None, "min_labels": 0, "max_labels": 1}
    write_spec(out, spec)
    return out


@pytest.fixture(scope="module")
def evaluated(head_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("evdata") / "test.jsonl"
    data.write_text("".join(json.dumps({"itemid": i, "text": t, "labels": y}, ensure_ascii=False) + "\n"
                            for i, t, y in zip(ITEMIDS, *TEST)), encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_artifact(head_dir, TEST[0], TEST[1], itemids=ITEMIDS, data_path=data)
    head = load_head(head_dir, device="cpu")
    return report, head, head.predict_proba(TEST[0]), data, caught


def _by_hand(head, proba):
    """Precision/recall/F1/support per label from plain counting over head.decide."""
    pred = head.decide(proba)
    out = {}
    for j, name in enumerate(LABELS):
        tp = sum(1 for i, y in enumerate(TEST[1]) if name in y and pred[i, j])
        fp = sum(1 for i, y in enumerate(TEST[1]) if name not in y and pred[i, j])
        fn = sum(1 for i, y in enumerate(TEST[1]) if name in y and not pred[i, j])
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[name] = dict(precision=p, recall=r, f1=2 * p * r / (p + r) if p + r else 0.0, support=tp + fn,
                         tp=tp, fp=fp, fn=fn)
    return out, pred


def test_report_numbers_equal_a_hand_computation(evaluated):
    report, head, proba, data, _ = evaluated
    hand, pred = _by_hand(head, proba)
    assert pred.sum(axis=1).max() == 1  # the decision block is applied ...
    passing = (round_scores(proba) >= np.asarray(head.spec.thresholds)) & np.asarray(head.spec.enabled)
    assert (passing.sum(axis=1) >= 2).sum() >= 5  # ... and does cut labels here
    for name in LABELS:
        m = report["labels"][name]
        for key in ("precision", "recall", "f1"):
            assert m[key] == pytest.approx(hand[name][key], abs=1e-12), (name, key)
        assert m["support"] == hand[name]["support"]
    assert report["labels"]["申报图"]["enabled"] is False and report["labels"]["申报图"]["f1"] == 0.0
    assert report["labels"]["申报图"]["reason"] == "3 dev positives < 5 needed to tell"
    assert report["macro_f1"] == pytest.approx(np.mean([hand[n]["f1"] for n in LABELS]))
    assert report["macro_f1_enabled"] == pytest.approx(np.mean([hand[n]["f1"] for n in LABELS[:3]]))
    TP, FP, FN = (sum(hand[n][k] for n in LABELS) for k in ("tp", "fp", "fn"))
    micro_p, micro_r = TP / (TP + FP), TP / (TP + FN)
    assert report["micro_f1"] == pytest.approx(2 * micro_p * micro_r / (micro_p + micro_r))
    for name in LABELS:
        count = sum(name in y for y in TEST[1])
        assert f"Label: {name}, Count: {count}, Ratio: {count / len(TEST[0]) * 100:.2f}%" in report["distribution"]
    assert report["ignored_labels"] == {"车展": 1}
    assert report["thresholds"] == dict(zip(LABELS, head.spec.thresholds))
    assert report["decision"] == {"top_k": None, "min_labels": 0, "max_labels": 1}
    assert report["data"] == {"file": "test.jsonl", "path": str(data), "n": len(TEST[0]),
                              "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    assert report["decision_digest"] == head.spec.decision_digest()


def test_bad_cases_are_exactly_the_items_with_a_false_positive_or_negative(evaluated, head_dir):
    report, head, proba, _, _ = evaluated
    hand, pred = _by_hand(head, proba)
    lines = (head_dir / "bad_cases.jsonl").read_text(encoding="utf-8").splitlines()
    cases = [json.loads(x) for x in lines]
    truth = np.array([[name in y for name in LABELS] for y in TEST[1]])
    wrong = [i for i in range(len(TEST[0])) if (truth[i] != pred[i]).any()]
    assert wrong and len(wrong) < len(TEST[0])
    assert [c["line"] - 1 for c in cases] == wrong and report["n_bad_cases"] == len(wrong)
    s = round_scores(proba)
    for c in cases:
        i = c["line"] - 1
        assert c["itemid"] == ITEMIDS[i]
        assert c["text"] == TEST[0][i][:200] and len(c["text"]) <= 200
        assert c["true"] == [n for j, n in enumerate(LABELS) if truth[i, j]]
        assert c["predicted"] == [n for j, n in enumerate(LABELS) if pred[i, j]]
        assert c["false_positives"] == [n for j, n in enumerate(LABELS) if pred[i, j] and not truth[i, j]]
        assert c["false_negatives"] == [n for j, n in enumerate(LABELS) if truth[i, j] and not pred[i, j]]
        assert c["false_positives"] or c["false_negatives"]
        assert c["scores"] == {n: float(s[i, j]) for j, n in enumerate(LABELS) if truth[i, j] or pred[i, j]}
    long_case = [c for c in cases if c["line"] == len(TEST[0])]  # 谍照 + 车展, text without 谍照: a miss
    assert len(long_case) == 1 and len(long_case[0]["text"]) == 200


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def test_pr_curve_png_is_one_valid_figure_with_chinese_legend(evaluated, head_dir):
    report, *_, caught = evaluated
    (w, h), size = _png_size(head_dir / "pr_curve.png")
    assert 600 <= w <= 2000 and 400 <= h <= 1500 and 10_000 < size < 2_000_000
    assert not [str(x.message) for x in caught if "Glyph" in str(x.message)]
    try:
        import noto_cjk_sans_otc  # noqa: F401 - the font package setup.py installs
    except ImportError:
        pytest.skip("noto-cjk-sans-otc is not installed: the legend falls back to L0..Ln (tested below)")
    assert report["pr_curve_font"] and "CJK" in report["pr_curve_font"]
    assert report["pr_curve_legend"] == {}


def test_without_a_cjk_font_the_legend_uses_indices_and_the_card_maps_them(head_dir, tmp_path, monkeypatch):
    import tagger.models.plots as plots

    monkeypatch.setattr(plots, "_registered", [])  # as on a machine without any CJK font
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_artifact(head_dir, TEST[0][:40], TEST[1][:40], out_dir=tmp_path / "out")
    assert not [str(x.message) for x in caught if "Glyph" in str(x.message)]
    assert report["pr_curve_font"] is None
    assert report["pr_curve_legend"] == {f"L{j}": n for j, n in enumerate(LABELS)}
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "| L1 | 谍照 |" in card
    _png_size(tmp_path / "out" / "pr_curve.png")
    assert not (tmp_path / "out" / "tagger_head.json").exists()  # only the three files go to --out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["MODEL_CARD.md", "bad_cases.jsonl",
                                                                    "pr_curve.png"]


def test_model_card_has_the_table_rows_and_the_figure(evaluated, head_dir):
    report, head, *_ = evaluated
    card = (head_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert card.startswith("# Model card: p0")
    for name, m in report["labels"].items():
        state = "yes" if m["enabled"] else f"no: {m['reason']}"
        row = (f"| {name} | {m['threshold']:.4f} | {state} | {m['precision']:.4f} | {m['recall']:.4f} | "
               f"{m['f1']:.4f} | {m['support']} |")
        assert row in card, row
    assert f"**Macro-F1 {report['macro_f1']:.4f}**, micro-F1 {report['micro_f1']:.4f}" in card
    assert "![Precision-recall curve" in card and "(pr_curve.png)" in card
    assert report["distribution"] in card
    assert f"| version | `{head.spec.version}` |" in card
    assert "test.jsonl" in card and report["data"]["sha256"] in card and f"{len(TEST[0]):,} items" in card
    assert "| n_train | 300 |" in card and "| epochs | " in card  # training parameters from trained_on
    assert "at most 1 label(s) per item" in card
    assert "Not calibrated" in card


def test_evaluates_a_calibrated_copy_with_its_calibration_block(head_dir, tmp_path):
    from tagger.models.calibrate import calibrate_artifact

    d = tmp_path / "p0"
    shutil.copytree(head_dir, d)
    calibrate_artifact(d, TEST[0], TEST[1], precision=0.7, min_positives=5)
    report = evaluate_artifact(d, TEST[0], TEST[1])
    card = (d / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "## Calibration" in card and "reaches 0.7" in card and "Not calibrated" not in card
    assert report["files"]["model_card"] == str(d / "MODEL_CARD.md")
