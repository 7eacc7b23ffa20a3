"""A child tag implies its parent in the output, whatever the gate said; disagreements are marked."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from tagger.models.loading import load_head
from tagger.models.training import train_head
from tagger.config import CONF_DIR, HeadConf
from tagger.udfs.hierarchy import SOURCE, add_implied_parents, ancestors_by_path
from tagger.rules_file import load_rules
from tagger.udfs.tagging import Tagger, TaggerSpec
from tiny_data import DEV, LABELS, QUIET, TRAIN, make_data

GATE, P0 = "内容标签/新车资讯", "内容标签/新车资讯/"
INDEX = {GATE: (100, "新车资讯"), **{P0 + label: (200 + i, label) for i, label in enumerate(LABELS)}}


def test_ancestors_are_only_the_emittable_ones():
    anc = ancestors_by_path(["a", "a/b/c", "a/b/c/d", "x/y"])
    assert anc["a/b/c/d"] == ["a/b/c", "a"] and anc["a/b/c"] == ["a"] and anc["x/y"] == [] and anc["a"] == []


def test_missing_parents_are_added_once_with_the_best_child_score():
    """The best child's score is neither the first, the last nor the lowest here, so only the
    max rule passes. Break: `max(missing.get(parent, 0.0), t["score"])` -> `t["score"]` (last child)
    or keeping the first child's score, and the implied parent's score is wrong."""
    index = {"p": (1, "p"), "p/a": (2, "a"), "p/b": (3, "b"), "p/c": (4, "c")}
    rows = [[dict(tag_id=2, tag_name="a", tag_path="p/a", score=0.8, source="m"),
             dict(tag_id=3, tag_name="b", tag_path="p/b", score=0.9, source="m"),
             dict(tag_id=4, tag_name="c", tag_path="p/c", score=0.7, source="m")],
            [dict(tag_id=1, tag_name="p", tag_path="p", score=0.8, source="gate"),
             dict(tag_id=2, tag_name="a", tag_path="p/a", score=0.6, source="m")],
            []]
    assert add_implied_parents(rows, ancestors_by_path(index), index) == 1
    assert rows[0][-1] == dict(tag_id=1, tag_name="p", tag_path="p", score=0.9, source=SOURCE)
    assert len(rows[0]) == 4 and len(rows[1]) == 2 and rows[2] == []


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A weak gate (新车资讯 = any P0 label) and a P0 head, both tiny and trained here."""
    base = tmp_path_factory.mktemp("hierarchy")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    gate_labels = [["新车资讯"] if tags else [] for tags in TRAIN[1]]
    dev_gate = [["新车资讯"] if tags else [] for tags in DEV[1]]
    train_head(arch="textcnn", head="gate", labels=["新车资讯"], train_texts=TRAIN[0], train_labels=gate_labels,
               dev_texts=DEV[0], dev_labels=dev_gate, out_dir=str(base / "gate"), epochs=1, max_length=64,
               log=QUIET)
    train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(base / "p0"), epochs=8, max_length=64, log=QUIET)
    torch.set_num_threads(before)
    # a high gate threshold makes the gate say no where P0 says yes
    sidecar = base / "gate" / "tagger_head.json"
    spec = json.loads(sidecar.read_text(encoding="utf-8"))
    spec["thresholds"] = [0.97]
    sidecar.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return base


def _tag(base, gate_by, texts):
    spec = TaggerSpec(heads=(HeadConf("gate", str(base / "gate"), "内容标签"),
                             HeadConf("p0", str(base / "p0"), GATE, gate_by=gate_by)),
                      gate_head="gate", rules=load_rules(CONF_DIR / "autoshow_rules.yaml"),
                      tag_index=INDEX, torch_threads=1)
    pdf = pd.DataFrame({"itemid": [str(i) for i in range(len(texts))], "dtype": "news", "doc_text": texts})
    return Tagger(spec).tag(pdf)


def test_an_ungated_child_tag_brings_its_parent_and_is_counted(heads):
    texts = make_data(300, 9)[0]
    out = _tag(heads, None, texts)
    gate = load_head(heads / "gate")
    gate_yes = gate.decide(gate.predict_proba(texts))[:, 0]
    has_child = np.array([any(t["tag_path"].startswith(P0) for t in row) for row in out["tags"]])
    has_parent = np.array([any(t["tag_path"] == GATE for t in row) for row in out["tags"]])
    implied = np.array([any(t["source"] == SOURCE for t in row) for row in out["tags"]])
    assert np.all(has_parent[has_child])  # a child tag always comes with its parent
    assert np.array_equal(implied, has_child & ~gate_yes)  # added exactly where the gate said no
    assert implied.sum() > 10  # the gate threshold really disagrees here, or this proves nothing
    assert np.array_equal(has_parent, gate_yes | has_child)
    # the gate score column still says what the gate said
    assert (out["gate_score"][implied] < 0.97).all()


def test_the_cascade_never_disagrees(heads):
    out = _tag(heads, "gate", make_data(200, 10)[0])
    assert any(t["source"] == "p0" for row in out["tags"] for t in row)  # P0 ran somewhere
    assert not any(t["source"] == SOURCE for row in out["tags"] for t in row)


def test_a_switched_off_parent_is_not_implied(heads, tmp_path):
    base = tmp_path / "off"
    shutil.copytree(heads, base)
    sidecar = base / "gate" / "tagger_head.json"
    spec = json.loads(sidecar.read_text(encoding="utf-8"))
    spec["enabled"] = [False]
    sidecar.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    out = _tag(base, None, make_data(200, 11)[0])
    paths = [t["tag_path"] for row in out["tags"] for t in row]
    assert GATE not in paths and any(p.startswith(P0) for p in paths)
