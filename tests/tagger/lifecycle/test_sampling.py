"""`tagger sample` with a tiny TextCNN head trained here, on generated unlabelled items where one label
(申报图) is rare (its phrase in ~1 item of 200)."""
from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from tagger.cli import main
from tagger.models.training import train_head
from tiny_data import DEV, LABELS, NOISE, PHRASES, QUIET, TRAIN

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py
RATES = {"预售": 0.3, "谍照": 0.3, "新车上市": 0.3, "申报图": 0.005}
PER_LABEL = 12


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    base = tmp_path_factory.mktemp("sample")
    train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(base / "p0"), epochs=2, max_length=48, log=QUIET)
    rng = random.Random(3)
    with open(base / "unlabeled.jsonl", "w", encoding="utf-8") as fh:
        for i in range(400):
            words = [rng.choice(NOISE) for _ in range(rng.randint(4, 14))]
            for label, rate in RATES.items():
                if rng.random() < rate:
                    words.insert(rng.randint(0, len(words)), rng.choice(PHRASES[label]))
            fh.write(json.dumps({"itemid": f"u{i}", "text": "".join(words)}, ensure_ascii=False) + "\n")
    done = CliRunner().invoke(main, ["sample", "--model", str(base / "p0"), "--data", str(base / "unlabeled.jsonl"),
                                     "--per-label", str(PER_LABEL), "--out", str(base / "to_label.jsonl")])
    assert done.exit_code == 0, done.output
    rows = [json.loads(x) for x in (base / "to_label.jsonl").read_text(encoding="utf-8").splitlines()]
    from tagger.lifecycle.sampling import read_unlabelled
    from tagger.models.decision import round_scores
    from tagger.models.loading import load_head

    head = load_head(base / "p0")
    texts, itemids = read_unlabelled(str(base / "unlabeled.jsonl"))
    every = dict(zip(itemids, round_scores(head.predict_proba(texts))))
    return done, rows, head.spec, every


def test_near_threshold_picks_straddle_each_threshold_and_are_the_nearest(sampled):
    """Break: take the nearest by distance alone (np.argsort(abs(s - t))) and on this bimodal data all of
    a label's picks fall below its threshold."""
    _, rows, spec, every = sampled
    for j, (label, t) in enumerate(zip(spec.labels, spec.thresholds)):
        near = [r for r in rows for p in r["picked_for"] if p["label"] == label and p["why"] == "near_threshold"]
        scores = [r["scores"][label] for r in near]
        assert len(near) == PER_LABEL
        above, below = [s for s in scores if s >= t], [s for s in scores if s < t]
        reach = sum(s[j] >= t for s in every.values())
        # they straddle the threshold: half on each side, or all there are on the short side (the rare label)
        assert len(above) == min(reach, PER_LABEL // 2) and len(below) == PER_LABEL - len(above), (label, t, scores)
        assert above and below
        chosen = {r["itemid"] for r in near}
        others = [s[j] for item, s in every.items() if item not in chosen]
        # and they are the nearest on each side
        assert all(s > max(above) or s < min(below) for s in others)


def test_a_rare_label_adds_its_top_scores_and_items_appear_once(sampled):
    done, rows, spec, every = sampled
    j = spec.labels.index("申报图")
    top = sorted(every, key=lambda item: -every[item][j])[:PER_LABEL]
    for_rare = {r["itemid"] for r in rows if any(p["label"] == "申报图" for p in r["picked_for"])}
    assert set(top) <= for_rare
    assert "申报图: " in done.output and "from its top scores (rare label" in done.output
    assert not any("top_score" == p["why"] for r in rows for p in r["picked_for"] if p["label"] == "预售")
    itemids = [r["itemid"] for r in rows]
    assert len(itemids) == len(set(itemids))
