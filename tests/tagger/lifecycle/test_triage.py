"""`tagger triage` on a generated file with labels flipped on purpose: 5-fold TextCNN heads trained here
(train_head), cleanlab's real multi-label finder.

The figure (docs/lifecycle.md): of the 30 items whose labels were flipped (a true label dropped or a
wrong one added) among 612, the top 30 of the list hold 26 (87%); the test requires at least 20."""
from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from tagger.cli import main
from tiny_data import LABELS, make_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py
RARE = "实车曝光"  # 12 positives: under the 20 the method needs


def noisy_file(path, n=600, flips=30):
    texts, labels = make_data(n, 21)
    rng = random.Random(5)
    flipped = set(rng.sample(range(n), flips))
    for i in sorted(flipped):
        labs = labels[i]
        if labs and rng.random() < 0.5:
            labs.remove(rng.choice(labs))
        else:
            labs.append(rng.choice([x for x in LABELS if x not in labs] or LABELS))
    for k in range(12):
        texts.append(f"路边拍到{RARE}的新车{k}号，外观内饰都清楚")
        labels.append([RARE])
    with open(path, "w", encoding="utf-8") as fh:
        for i, (t, y) in enumerate(zip(texts, labels)):
            fh.write(json.dumps({"itemid": f"item{i}", "text": t, "labels": y}, ensure_ascii=False) + "\n")
    return {f"item{i}" for i in flipped}


@pytest.fixture(scope="module")
def triaged(tmp_path_factory):
    base = tmp_path_factory.mktemp("triage")
    flipped = noisy_file(base / "labelled.jsonl")
    done = CliRunner().invoke(main, ["triage", "--data", str(base / "labelled.jsonl"), "--arch", "textcnn",
                                     "--folds", "5", "--epochs", "2", "--max-length", "48",
                                     "--out", str(base / "issues.jsonl")])
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in (base / "issues.jsonl").read_text(encoding="utf-8").splitlines()]
    return done, rows, flipped


def test_the_top_of_the_list_holds_most_flipped_items(triaged):
    done, rows, flipped = triaged
    assert done.exit_code == 0, done.output
    top = {r["itemid"] for r in rows[:len(flipped)]}
    caught = len(top & flipped)
    print(f"flipped items in the top {len(flipped)}: {caught}")
    assert caught >= 20


def test_rows_are_ranked_and_say_what_looks_wrong(triaged):
    _, rows, flipped = triaged
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        assert set(r) == {"rank", "itemid", "text", "labels", "suspected_missing", "suspected_extra",
                          "label_quality", "scores"}
        assert set(r["scores"]) == set(LABELS) | {RARE}
        assert not set(r["suspected_missing"]) & set(r["labels"])
        assert set(r["suspected_extra"]) <= set(r["labels"])
    assert any(r["suspected_missing"] or r["suspected_extra"] for r in rows if r["itemid"] in flipped)


def test_rare_labels_are_reported_apart_with_a_warning(triaged):
    done, _, _ = triaged
    summary, _, rare = done.output.partition("WARNING")
    assert RARE not in summary and all(label in summary for label in LABELS)
    assert "fewer than 20 positives" in rare and RARE in rare and "12" in rare
