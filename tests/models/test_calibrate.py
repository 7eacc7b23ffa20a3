"""Calibration (models/calibrate.py) and the one decision function (tagger.models.spec.decide) that
the job, evaluation and calibration share; a tiny TextCNN head trained here on generated keyword
texts with a rare label and a noisy one (nothing is downloaded)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib
import json
from pathlib import Path
import random
import re
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tagger.models.spec import ArtifactError, HeadSpec, read_spec, write_spec
from tagger.models.decision import decide, round_scores
from tagger.models.loading import load_head
from tagger.models.calibrate import calibrate_artifact, calibrate_thresholds
from tagger.models.metrics import binarize
from tagger.models.training import train_head

LABELS = ["预售", "谍照", "新车上市", "申报图", "官图"]
CLEAN = {"预售": ["开启预售", "预售价格公布"], "谍照": ["路试谍照曝光", "伪装测试车谍照"],
         "新车上市": ["正式上市销售", "上市发布会召开"]}
RARE, NOISY = "申报图", "官图"
NOISE = ["比亚迪", "吉利", "长安", "小米", "理想", "车身", "轴距", "动力", "内饰", "续航", "电池", "座椅"]
PARENT = "内容标签/新车资讯"
TARGET = 0.80
QUIET = lambda *a, **k: None  # noqa: E731


def _text(rng, tags, noisy_keyword=False):
    words = [rng.choice(NOISE) for _ in range(rng.randint(4, 10))]
    for t in tags:
        if t in CLEAN:
            words.insert(rng.randint(0, len(words)), rng.choice(CLEAN[t]))
    if RARE in tags:
        words.insert(rng.randint(0, len(words)), "工信部申报图")
    if noisy_keyword:
        words.insert(rng.randint(0, len(words)), "官图发布")
    return "".join(words)


def make_train(n=420, seed=1):
    """Clean labels follow their keywords; 申报图 is rare; 官图's keyword says nothing (half/half)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        tags = [t for t in CLEAN if rng.random() < 0.3] + ([RARE] if i % 12 == 0 else [])
        kw = rng.random() < 0.4
        texts.append(_text(rng, tags, kw))
        labels.append(tags + ([NOISY] if kw and rng.random() < 0.5 else []))
    return texts, labels


def make_dev(n=120, seed=2):
    """3 positives of the rare label; the noisy label's keyword texts come in identical pairs, one
    labelled 官图 and one not, so no threshold can give it a precision above 0.5."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        tags = [t for t in CLEAN if rng.random() < 0.3] + ([RARE] if i < 3 else [])
        texts.append(_text(rng, tags))
        labels.append(tags)
    for _ in range(20):
        tags = [t for t in CLEAN if rng.random() < 0.3]
        text = _text(rng, tags, noisy_keyword=True)
        texts += [text, text]
        labels += [tags + [NOISY], list(tags)]
    return texts, labels


TRAIN, DEV = make_train(), make_dev()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "p0"
    train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(out), epochs=8, max_length=48, log=QUIET)
    return out


@pytest.fixture(scope="module")
def calibrated(trained_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("cal2") / "p0"
    shutil.copytree(trained_dir, d)
    data = tmp_path_factory.mktemp("data") / "dev.jsonl"
    data.write_text("".join(json.dumps({"text": t, "labels": y}, ensure_ascii=False) + "\n" for t, y in zip(*DEV)),
                    encoding="utf-8")
    # the plain rule (no margin): the properties below are exact for it; the margin has its own test
    result = calibrate_artifact(d, DEV[0], DEV[1], precision=TARGET, min_positives=5, data_path=data, confidence=0.5)
    head = load_head(d, device="cpu")
    return d, result, head, head.predict_proba(DEV[0]), data


def _precision(y, pred):
    tp, n = int((y & pred).sum()), int(pred.sum())
    return tp / n if n else 0.0


# -- calibration on the trained head ---------------------------------------------------------------

def test_thresholds_reach_the_target_and_are_the_lowest_candidates(calibrated):
    d, result, head, proba, _ = calibrated
    y = binarize(DEV[1], LABELS).astype(bool)
    pred = head.decide(proba)  # what the job does with these scores
    s = round_scores(proba)
    on = [j for j, name in enumerate(LABELS) if head.spec.enabled[j]]
    assert {LABELS[j] for j in on} == set(CLEAN), head.spec.enabled
    for j in on:
        t = head.spec.thresholds[j]
        assert _precision(y[:, j], pred[:, j]) >= TARGET - 1e-12, LABELS[j]
        assert result.calibration.figures[j]["precision"] == pytest.approx(_precision(y[:, j], pred[:, j]))
        candidates = np.unique(s[:, j])
        assert t in candidates  # a rounded dev score, so the job's decisions give exactly this precision
        k = int(np.flatnonzero(candidates == t)[0])
        if k > 0:  # one step lower misses the target
            assert _precision(y[:, j], s[:, j] >= candidates[k - 1]) < TARGET, LABELS[j]
        assert result.calibration.figures[j]["recall"] == pytest.approx(
            (y[:, j] & pred[:, j]).sum() / y[:, j].sum())


def test_noisy_label_cannot_reach_the_target_and_is_switched_off(calibrated):
    d, result, head, proba, _ = calibrated
    j = LABELS.index(NOISY)
    assert head.spec.enabled[j] is False
    reason = head.spec.extra["disabled_reasons"][NOISY]
    m = re.fullmatch(r"dev precision at best (0\.\d+) < target 0\.80", reason)
    assert m and float(m.group(1)) <= 0.5 + 1e-9, reason
    assert not head.decide(proba)[:, j].any()


def test_too_few_positives_switches_a_label_off(calibrated):
    d, result, head, proba, _ = calibrated
    j = LABELS.index(RARE)
    assert head.spec.enabled[j] is False
    assert head.spec.extra["disabled_reasons"][RARE] == "3 dev positives < 5 needed to tell"
    assert result.calibration.figures[j]["positives"] == 3
    assert head.spec.thresholds[j] == result.before.thresholds[j]  # an off label keeps its threshold


def test_sidecar_is_written_with_reasons_and_calibration_block(calibrated, trained_dir):
    d, result, head, proba, data = calibrated
    raw = json.loads((d / "tagger_head.json").read_text(encoding="utf-8"))
    before = read_spec(trained_dir)
    assert raw["version"] == before.version and raw["labels"] == LABELS  # weights untouched
    assert set(raw["disabled_reasons"]) == {RARE, NOISY}
    cal = raw["calibration"]
    assert cal["target_precision"] == TARGET and cal["min_positives"] == 5 and cal["n_items"] == len(DEV[0])
    assert cal["data"] == {"file": "dev.jsonl", "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cal["date"])
    assert set(cal["labels"]) == set(LABELS)
    for name in LABELS:
        row = cal["labels"][name]
        assert {"threshold", "enabled", "precision", "recall", "f1", "positives"} <= set(row)
        assert ("reason" in row) == (name in (RARE, NOISY))
    assert raw["trained_on"] == before.extra["trained_on"]  # other sidecar keys kept
    assert not [p.name for p in d.iterdir() if p.name.startswith(".")]  # atomic: no temp file left
    assert read_spec(d) == head.spec


def test_a_switched_off_label_never_appears_in_the_job_output(calibrated):
    from tagger.config import HeadConf
    from tagger.udfs.rules import RuleSet
    from tagger.udfs.tagging import Tagger, TaggerSpec

    d, result, head, proba, _ = calibrated
    index = {f"{PARENT}/{name}": (100 + j, name) for j, name in enumerate(LABELS)}
    spec = TaggerSpec(heads=(HeadConf(name="p0", path=str(d), parent=PARENT),), gate_head="gate",
                      rules=RuleSet(version="none", rules=()), tag_index=index, device="cpu",
                      model_version="p0=test")
    pdf = pd.DataFrame({"itemid": [str(i) for i in range(len(DEV[0]))], "dtype": "article", "doc_text": DEV[0]})
    out = Tagger(spec).tag(pdf)
    got = np.zeros((len(pdf), len(LABELS)), dtype=bool)
    for i, row in enumerate(out["tags"]):
        for t in row:
            if t["source"] == "p0":
                got[i, LABELS.index(t["tag_name"])] = True
                assert t["score"] == round(float(proba[i, LABELS.index(t["tag_name"])]), 4)
    assert not got[:, LABELS.index(NOISY)].any() and not got[:, LABELS.index(RARE)].any()
    np.testing.assert_array_equal(got, head.decide(proba))  # the job decides with the same function
    # without a decision block: exactly the job's former rule, rounded score >= threshold and enabled
    s = np.round(proba.astype(np.float64), 4)
    np.testing.assert_array_equal(got, (s >= np.asarray(head.spec.thresholds)) & np.asarray(head.spec.enabled))


def test_predict_is_decide_of_predict_proba(calibrated):
    d, result, head, proba, _ = calibrated
    np.testing.assert_array_equal(head.predict(DEV[0][:30]), head.decide(head.predict_proba(DEV[0][:30])))


def test_build_spec_versions_carry_the_digest_and_summary_shows_reasons(calibrated):
    from tagger.config import HeadConf, load_config
    from tagger.job.summary import RunSummary
    from tagger.job.tag import build_spec
    from tagger.rules_file import load_rules

    d, result, head, proba, _ = calibrated
    cfg = load_config()
    cfg = replace(cfg, heads=(HeadConf(name="p0", path=str(d), parent=PARENT),), gate_head="p0")
    index = {r.tag: (i, r.tag.rsplit("/", 1)[-1]) for i, r in enumerate(load_rules(cfg.rules_path).rules)}
    index.update({f"{PARENT}/{name}": (100 + j, name) for j, name in enumerate(LABELS)})
    spec, version, disabled = build_spec(cfg, index, "test tag dim", 1)
    from tagger.models.spec import weights_digest

    weights = weights_digest(Path(d) / "model.safetensors")[:8]  # the bytes that will run (issue 14)
    assert version == f"p0={head.spec.version}@{head.spec.decision_digest()}+{weights}"
    assert f"p0:{RARE} (3 dev positives < 5 needed to tell)" in disabled
    assert any(x.startswith(f"p0:{NOISY} (dev precision at best ") for x in disabled)
    text = RunSummary(run_date="2024-01-05", run_id="x", disabled_labels=disabled).format()
    assert "3 dev positives < 5 needed to tell" in text and "dev precision at best" in text


# -- the pure functions ----------------------------------------------------------------------------

def test_calibration_shows_scoring_progress_with_an_eta_and_the_same_thresholds(trained_dir, calibrated, tmp_path):
    d = tmp_path / "p0"
    shutil.copytree(trained_dir, d)
    lines = []  # not a terminal under pytest: progress comes as lines through `log`
    result = calibrate_artifact(d, DEV[0], DEV[1], precision=TARGET, min_positives=5, confidence=0.5,
                                batch_size=16, log=lines.append)
    progress = [ln for ln in lines if ln.startswith("calibrating p0: scoring dev: ")]
    assert len(progress) >= 5 and all(", elapsed " in ln and ", ETA " in ln for ln in progress)
    assert f"{len(DEV[0]):,}/{len(DEV[0]):,} texts (100%)" in progress[-1]
    assert result.after.thresholds == calibrated[1].after.thresholds  # progress does not change scores


def test_calibrate_thresholds_by_hand():
    y = np.array([[1], [1], [0], [1], [0], [0]])
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.5], [0.1]])
    # thresholds 0.1: 3/6, 0.5: 3/5, 0.6: 3/4 = 0.75, 0.7: 2/3, 0.8: 2/2, 0.9: 1/1
    assert calibrate_thresholds(y, s, precision=0.75, min_positives=1, confidence=0.5).thresholds == [0.6]
    cal = calibrate_thresholds(y, s, precision=0.76, min_positives=1, confidence=0.5)
    assert cal.thresholds == [0.8] and cal.enabled == [True]  # 0.7 gives 2/3 < 0.76
    assert cal.figures[0] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8),
                              "positives": 3, "predicted": 2, "best_precision": 1.0}
    # candidates are the rounded scores: 0.60004 and 0.59996 both round to 0.6
    s2 = np.array([[0.9], [0.8], [0.7], [0.60004], [0.59996], [0.1]])
    # (at 0.6 two items are predicted, one of them a negative: 3/5)
    assert calibrate_thresholds(y, s2, precision=0.75, min_positives=1, confidence=0.5).thresholds == [0.8]
    assert calibrate_thresholds(y, s2, precision=0.6, min_positives=1, confidence=0.5).thresholds == [0.6]
    # cannot reach / too few positives
    off = calibrate_thresholds(np.array([[1], [0], [1], [0]]), np.array([[0.9], [0.9], [0.2], [0.2]]),
                               precision=0.8, min_positives=1, current=[0.33])
    assert off.enabled == [False] and off.thresholds == [0.33]
    assert off.reasons == ["dev precision at best 0.50 < target 0.80"]
    few = calibrate_thresholds(np.array([[1], [0]]), np.array([[0.9], [0.1]]), precision=0.8, min_positives=5, confidence=0.5)
    assert few.enabled == [False] and few.reasons == ["1 dev positive < 5 needed to tell"]
    near = calibrate_thresholds(np.array([[1]] * 399 + [[0]] * 101), np.full((500, 1), 0.7), precision=0.8,
                                min_positives=1, confidence=0.5)
    assert near.reasons == ["dev precision at best 0.7980 < target 0.80"]  # never "0.80 < 0.80"
    with pytest.raises(ValueError):
        calibrate_thresholds(y, s, precision=0.0)


def _spec(decision=None, enabled=None, thresholds=None):
    extra = {} if decision is None else {"decision": decision}
    return HeadSpec(head="h", arch="textcnn", labels=["a", "b", "c", "d"], thresholds=thresholds or [0.5] * 4,
                    enabled=enabled or [True] * 4, max_length=8, version="v", extra=extra)


SCORES = np.array([
    [0.9, 0.8, 0.7, 0.1],    # three pass
    [0.3, 0.2, 0.6, 0.1],    # one passes
    [0.1, 0.2, 0.3, 0.4],    # none passes
    [0.55, 0.55, 0.2, 0.55],  # a tie among three passing labels
])


def test_decide_without_a_block_is_threshold_and_enabled():
    np.testing.assert_array_equal(decide(SCORES, _spec()), SCORES >= 0.5)
    got = decide(SCORES, _spec(enabled=[True, False, True, True]))
    np.testing.assert_array_equal(got, (SCORES >= 0.5) & [True, False, True, True])
    # rounding to 4 decimals first: 0.49996 counts as 0.5
    assert decide(np.array([[0.49996, 0.49994, 0, 0]]), _spec()).tolist() == [[True, False, False, False]]
    assert decide(np.zeros((0, 4)), _spec({"top_k": 2})).shape == (0, 4)


def test_decide_max_labels():
    got = decide(SCORES, _spec({"max_labels": 2}))
    assert got.tolist() == [[True, True, False, False], [False, False, True, False],
                            [False, False, False, False], [True, True, False, False]]  # tie: label order


def test_decide_min_labels():
    got = decide(SCORES, _spec({"min_labels": 2}))
    assert got.tolist() == [[True, True, True, False],  # already 3: nothing added, nothing removed
                            [True, False, True, False],  # 0.6 passes, then the next best enabled (0.3)
                            [False, False, True, True],  # none pass: the two highest
                            [True, True, False, True]]
    # a disabled label is never added
    got = decide(SCORES, _spec({"min_labels": 2}, enabled=[False, True, True, True]))
    assert got[1].tolist() == [False, True, True, False] and not got[:, 0].any()
    # min and max together
    got = decide(SCORES, _spec({"min_labels": 1, "max_labels": 1}))
    assert got.sum(axis=1).tolist() == [1, 1, 1, 1] and got[2].tolist() == [False, False, False, True]


def test_decide_top_k_ignores_thresholds():
    got = decide(SCORES, _spec({"top_k": 2}))
    assert got.tolist() == [[True, True, False, False], [True, False, True, False],
                            [False, False, True, True], [True, True, False, False]]
    got = decide(SCORES, _spec({"top_k": 3}, enabled=[True, False, False, True]))  # only 2 enabled
    assert got.tolist() == [[True, False, False, True]] * 4


@pytest.mark.parametrize("block, words", [
    ("nope", "must be an object"), ({"topk": 2}, "unknown keys"), ({"top_k": 0}, "top_k"), ({"top_k": 5}, "top_k"),
    ({"top_k": True}, "top_k"), ({"max_labels": 1.5}, "max_labels"), ({"min_labels": -1}, "min_labels"),
    ({"min_labels": 3, "max_labels": 2}, "greater than"), ({"top_k": 2, "max_labels": 2}, "cannot be combined"),
])
def test_bad_decision_blocks_are_refused(tmp_path, block, words):
    with pytest.raises(ArtifactError) as ei:
        _spec(block).validate(tmp_path)
    assert "'decision'" in str(ei.value) and words in str(ei.value)
    raw = _spec().to_dict()
    raw["decision"] = block
    (tmp_path / "tagger_head.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ArtifactError, match="decision"):
        read_spec(tmp_path)


def test_decision_block_round_trips_through_the_sidecar(tmp_path):
    spec = _spec({"top_k": None, "min_labels": 1, "max_labels": 3})
    write_spec(tmp_path, spec)
    back = read_spec(tmp_path)
    assert back.decision == {"top_k": None, "min_labels": 1, "max_labels": 3}
    assert back.decision_digest() == spec.decision_digest()


def test_digest_changes_when_and_only_when_decisions_can_change():
    base = _spec()
    d = base.decision_digest()
    assert len(d) == 10 and _spec().decision_digest() == d
    same = [replace(base, version="v2"), replace(base, max_length=99), replace(base, head="other"),
            replace(base, extra={"trained_on": {"n": 1}, "calibration": {"date": "x"}, "note": "hi"}),
            replace(base, extra={"disabled_reasons": {}}),
            _spec({"top_k": None, "min_labels": 0, "max_labels": None}),  # the defaults spelled out
            _spec(thresholds=[0.5, 0.5, 0.5, 0.50])]
    assert all(s.decision_digest() == d for s in same)
    changed = [_spec(thresholds=[0.5, 0.5, 0.5, 0.5001]), _spec(enabled=[True, True, True, False]),
               _spec({"max_labels": 2}), _spec({"min_labels": 1}), _spec({"top_k": 1}),
               replace(base, labels=["a", "b", "d", "c"])]
    digests = [s.decision_digest() for s in changed]
    assert d not in digests and len(set(digests)) == len(digests)


def test_the_default_margin_needs_the_precision_lower_bound_to_reach_the_target():
    from tagger.models.calibrate import precision_lower_bound

    assert precision_lower_bound([20], [24], 0.95)[0] == pytest.approx(0.676, abs=1e-3)
    assert precision_lower_bound([830], [1000], 0.95)[0] == pytest.approx(0.810, abs=1e-3)
    assert precision_lower_bound([20], [24], 0.5)[0] == pytest.approx(20 / 24)
    # 10 positives score 0.9..0.99, then 5 negatives at 0.5, then 90 positives and 10 negatives at 0.3
    y = np.array([[1]] * 10 + [[0]] * 5 + [[1]] * 90 + [[0]] * 10)
    s = np.array([[0.9 + i / 100] for i in range(10)] + [[0.5]] * 5 + [[0.3]] * 100)
    plain = calibrate_thresholds(y, s, precision=0.8, min_positives=1, confidence=0.5)
    margin = calibrate_thresholds(y, s, precision=0.8, min_positives=1)
    assert plain.thresholds == [0.3]  # 100/115 = 0.87 on dev
    assert margin.thresholds == [0.3] and margin.confidence == 0.95  # lower bound 0.81: still enough
    # 10 of 10 right is precision 1.0 on dev, but its 95% lower bound is 0.787: not enough to tell
    few = calibrate_thresholds(y[:15], s[:15], precision=0.8, min_positives=1)
    assert calibrate_thresholds(y[:15], s[:15], precision=0.8, min_positives=1, confidence=0.5).enabled == [True]
    assert few.enabled == [False]
    assert few.reasons == ["dev precision reaches 1.00 only on too few items: its 95% lower bound stays under "
                           "the target 0.80"]
    # objective f1: the qualifying threshold with the best dev F1 (here the same 0.3: recall 1.0)
    assert calibrate_thresholds(y, s, precision=0.8, min_positives=1, objective="f1").thresholds == [0.3]
    strict = calibrate_thresholds(y, s, precision=0.85, min_positives=1, confidence=0.5)
    assert strict.thresholds == [0.3]  # 0.87 >= 0.85
    f1 = calibrate_thresholds(y, s, precision=0.95, min_positives=1, confidence=0.5, objective="f1")
    assert f1.thresholds == [0.9]  # only 0.9..0.99 reach 0.95; 0.9 has the best F1 among them


def test_objective_f1_can_pick_a_higher_threshold_than_recall():
    # 20 positives at 0.9, then 4 negatives at 0.6, then 4 positives + 1 negative at 0.3
    y = np.array([[1]] * 20 + [[0]] * 4 + [[1]] * 4 + [[0]] * 1)
    s = np.array([[0.9]] * 20 + [[0.6]] * 4 + [[0.3]] * 5)
    # at 0.3: 24/29 = 0.83, recall 1.0, F1 0.906; at 0.6: 20/24 = 0.83, F1 0.87; at 0.9: 1.0, recall 0.83, F1 0.909
    assert calibrate_thresholds(y, s, precision=0.8, min_positives=1, confidence=0.5).thresholds == [0.3]
    assert calibrate_thresholds(y, s, precision=0.8, min_positives=1, confidence=0.5,
                                objective="f1").thresholds == [0.9]


def test_a_precision_of_one_with_a_margin_is_refused():
    with pytest.raises(ValueError, match="never be reached"):
        calibrate_thresholds(np.array([[1]]), np.array([[0.9]]), precision=1.0)
