"""Heads declared in the config: plain heads and ensembles, trained by tagger.training.from_warehouse."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import re

import numpy as np
import pytest
import torch

from tagger.models.loading import load_head
from tagger.models.spec import read_spec
from tagger.models.ensemble import EnsembleHead
from tagger.config import ConfigError, load_config
from tagger.training.from_warehouse import train_artifact
from conftest import write_config
from tiny_data import DEV, LABELS, TRAIN, make_data

ENSEMBLE = {"arch": "ensemble", "labels": "children", "combine": "intersection", "max_length": 64,
            "members": [{"arch": "textcnn", "epochs": 2}, {"arch": "bert", "epochs": 2, "size": "small"}]}


def _with_p0_train(train: dict):
    def edit(raw):
        next(h for h in raw["heads"] if h["name"] == "p0")["train"] = train
    return edit


def test_an_ensemble_head_is_declared_in_the_config(tmp_path):
    cfg = load_config(write_config(tmp_path, edit=_with_p0_train(ENSEMBLE)))
    p0 = next(h for h in cfg.heads if h.name == "p0").train
    assert p0.arch == "ensemble" and p0.combine == "intersection"
    assert [m.arch for m in p0.members] == ["textcnn", "bert"]
    assert p0.members[1].options == {"epochs": 2, "size": "small"} and p0.options == {"max_length": 64}


@pytest.mark.parametrize("train, key", [
    ({**ENSEMBLE, "combine": "vote"}, "combine"),
    ({**ENSEMBLE, "members": [{"arch": "textcnn"}]}, "members"),
    ({**ENSEMBLE, "members": [{"arch": "textcnn"}, {"arch": "svm"}]}, "members[1].arch"),
    ({"arch": "bert", "labels": "children", "combine": "union"}, "combine"),
    ({"arch": "bert", "labels": "children", "precision": 1.5}, "precision"),
])
def test_a_bad_train_section_names_the_key(tmp_path, train, key):
    with pytest.raises(ConfigError, match=re.escape(f"heads[1].train.{key}")):
        load_config(write_config(tmp_path, edit=_with_p0_train(train)))


def test_train_artifact_trains_each_member_and_writes_the_ensemble(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(write_config(tmp_path, edit=_with_p0_train(ENSEMBLE)))
        head = next(h for h in cfg.heads if h.name == "p0")
        data = {"train": TRAIN, "dev": DEV}
        train_artifact(head, LABELS, data, tmp_path / "p0", log=lambda *_: None)
    finally:
        torch.set_num_threads(before)
    spec = read_spec(tmp_path / "p0")
    assert spec.arch == "ensemble" and spec.extra["members"] == ["members/0-textcnn", "members/1-bert"]
    assert [read_spec(tmp_path / "p0" / m).arch for m in spec.extra["members"]] == ["textcnn", "bert"]
    ensemble = load_head(tmp_path / "p0")
    assert isinstance(ensemble, EnsembleHead)
    texts = make_data(100, 5)[0]
    both = np.logical_and(*(m.predict(texts) for m in ensemble.members))
    assert np.array_equal(ensemble.predict(texts), both)


def test_items_labelled_only_at_the_heads_parent_are_unknown_not_negative():
    import pandas as pd

    from tagger.config import HeadConf
    from tagger.training.from_warehouse import labelled_at_head_level

    p1 = HeadConf("p1", "/x", "内容标签/导购")
    truth = pd.Series([["内容标签/导购"], ["内容标签/导购", "内容标签/导购/试驾"], ["内容标签/汽车生活"], []])
    assert labelled_at_head_level(p1, truth).tolist() == [False, True, True, True]


@pytest.mark.parametrize("train, key", [
    ({"arch": "bert", "labels": "children", "precision": 1.0}, "precision"),
    ({"arch": "bert", "labels": "children", "precision": 0.8, "confidence": 0.3}, "confidence"),
    ({"arch": "bert", "labels": "children", "objective": "accuracy"}, "objective"),
    ({"arch": "bert", "labels": "children", "min_dev_positives": 0}, "min_dev_positives"),
])
def test_bad_calibration_keys_name_the_key(tmp_path, train, key):
    with pytest.raises(ConfigError, match=re.escape(f"heads[1].train.{key}")):
        load_config(write_config(tmp_path, edit=_with_p0_train(train)))


def test_swap_in_replaces_the_directory_whole(tmp_path):
    from tagger.training.from_warehouse import swap_in

    (tmp_path / "head").mkdir()
    (tmp_path / "head" / "old.txt").write_text("old")
    (tmp_path / "head.training").mkdir()
    (tmp_path / "head.training" / "new.txt").write_text("new")
    swap_in(tmp_path / "head.training", tmp_path / "head")
    assert [p.name for p in tmp_path.iterdir()] == ["head"]
    assert [p.name for p in (tmp_path / "head").iterdir()] == ["new.txt"]


def test_train_all_calibrates_evaluates_and_exports_each_head(cfg, trained, tagger_home):
    """What the session's `trained` fixture (tagger.training.from_warehouse.train_all on the seeded days) left behind."""
    import json

    for head in cfg.heads:
        spec = read_spec(head.path)
        cal = spec.extra["calibration"]
        assert cal["target_precision"] == 0.8 and cal["confidence"] == 0.5  # tests/conftest.py FAST_TRAIN
        assert cal["objective"] == ("f1" if head.name == "gate" else "recall")
        assert cal["data"]["file"] == "dev.jsonl"
        for split in ("train", "dev", "test"):
            first = json.loads((tagger_home / "data" / head.name / f"{split}.jsonl").open(encoding="utf-8").readline())
            assert set(first) == {"itemid", "text", "labels"} and set(first["labels"]) <= set(spec.labels)
        for name in ("MODEL_CARD.md", "pr_curve.png", "bad_cases.jsonl"):
            assert (tagger_home / "models" / head.name / name).is_file()
        assert not any(p.name.startswith((f"{head.name}.training", f".{head.name}.old")) for p in
                       (tagger_home / "models").iterdir())


def test_an_unknown_head_is_refused_before_any_work(spark, cfg):
    from tagger.training.from_warehouse import train_all

    with pytest.raises(ConfigError, match="trainable heads: gate, p0, p1"):
        train_all(spark, cfg, ["2024-01-01"], heads=["P1"])


TEXTCNN = {"arch": "textcnn", "labels": "children", "epochs": 1, "max_length": 64, "tokenizer": "word"}


def test_a_textcnn_heads_embeddings_key_initialises_it_as_train_embeddings_does(tmp_path):
    """`embeddings:` in a head's train section, relative to the config's folder, reaches train_head
    as --embeddings does. Break: drop "embeddings" from config.TRAIN_OPTIONS' use in _options, or
    resolve it against the working directory."""
    from tagger.models.embeddings import write_word2vec
    from tagger.models.words import UnitVocab

    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    units = UnitVocab.build(TRAIN[0], "word").tokens[2:]
    half = units[: len(units) // 2]
    write_word2vec(conf_dir / "vectors.txt", half, np.random.default_rng(0).normal(size=(len(half), 128)))
    cfg = load_config(write_config(conf_dir, edit=_with_p0_train({**TEXTCNN, "embeddings": "vectors.txt"})))
    head = next(h for h in cfg.heads if h.name == "p0")
    assert head.train.options["embeddings"] == str(conf_dir / "vectors.txt")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_artifact(head, LABELS, {"train": TRAIN, "dev": DEV}, tmp_path / "p0", log=lambda *_: None)
    finally:
        torch.set_num_threads(before)
    record = read_spec(tmp_path / "p0").extra["embeddings"]
    assert record["file"] == str((conf_dir / "vectors.txt").resolve())
    assert record["found"] == len(half) and record["vocabulary"] == len(units)


@pytest.mark.parametrize("files, train, key, message", [
    ({}, {**TEXTCNN, "embeddings": "absent.txt"}, "embeddings", "cannot use the vectors file"),
    ({"bad.txt": "车 1 2 3\n"}, {**TEXTCNN, "embeddings": "bad.txt"}, "embeddings", "line 1 must be"),
    ({"v8.txt": "1 8\n车 1 2 3 4 5 6 7 8\n"}, {**TEXTCNN, "embeddings": "v8.txt"}, "embeddings",
     "8-dimensional vectors; the TextCNN's embedding has 128"),
    ({"v.txt": "1 128\n"}, {"arch": "bert", "labels": "children", "embeddings": "v.txt"}, "embeddings",
     "arch: bert has none"),
    ({"v.txt": "1 128\n"}, {**ENSEMBLE, "embeddings": "v.txt"}, "embeddings", "Put it on the textcnn member"),
    ({"v.txt": "1 128\n"}, {**ENSEMBLE, "members": [{"arch": "textcnn", "embeddings": "v.txt"},
                                                   {"arch": "linear", "embeddings": "v.txt"}]},
     "members[1].embeddings", "arch: linear has none"),
])
def test_a_bad_embeddings_key_is_refused_at_load_naming_it(tmp_path, files, train, key, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"heads[1].train.{key}") + ".*" + re.escape(message)):
        load_config(write_config(tmp_path, edit=_with_p0_train(train)))


def test_heads_trained_side_by_side_match_heads_trained_one_by_one(tmp_path):
    """`tagger demo` trains its heads in worker processes, one torch thread each (run_head_jobs with
    workers=2): the same artifacts' test reports as one after another in this process, in config order."""
    import dataclasses

    from tagger.training.from_warehouse import HeadJob, export_head_splits, run_head_jobs, training_workers

    cfg = load_config(write_config(tmp_path))
    test = make_data(120, 3)
    data = {"train": TRAIN, "dev": DEV, "test": test}
    frames = {name: __import__("pandas").DataFrame({"itemid": [f"{name}{i}" for i in range(len(d[0]))]})
              for name, d in data.items()}
    files = {k: str(v) for k, v in export_head_splits(frames, data, tmp_path / "data").items()}

    def jobs(folder):
        out = []
        for name in ("p0", "p1"):
            head = next(h for h in cfg.heads if h.name == name)
            train = dataclasses.replace(head.train, arch="textcnn", labels=tuple(LABELS), confidence=0.5,
                                        options={"epochs": 1, "max_length": 64})
            head = dataclasses.replace(head, path=str(tmp_path / folder / name), train=train)
            out.append(HeadJob(head, list(LABELS), data, files, frames["test"]["itemid"].tolist(), f"== {name}",
                               "test"))
        return out

    lines = []
    alone = dict(run_head_jobs(jobs("alone"), 1, log=lambda *_: None))
    side = list(run_head_jobs(jobs("side"), 2, log=lines.append))
    assert [name for name, _ in side] == ["p0", "p1"]
    assert {name: r["macro_f1"] for name, r in side} == {name: r["macro_f1"] for name, r in alone.items()}
    assert lines[0] == "== p0" and "== p1" in lines and (tmp_path / "side" / "p1" / "tagger_head.json").is_file()
    assert training_workers(3, cores=2) == 2 and training_workers(3, cores=1) == 1 and training_workers(1, cores=8) == 1
