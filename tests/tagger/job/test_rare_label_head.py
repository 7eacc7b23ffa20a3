"""A rare-label binary head (docs/playbooks/rare-labels.md): a one-label head configured under p0's
parent and gate emits the label p0 switched off, the run summary names the head that emitted each
tag, no item carries a tag twice, and evaluation reads the head like any other."""
from __future__ import annotations

import json
import shutil
from collections import Counter

from pyspark.sql import functions as F

from conftest import RUN_DATE, TRAIN_DATES, write_config
from tagger.config import load_config, tagger_home
from tagger.job.pipeline import run_date
from tagger.models.data import read_examples
from tagger.models.evaluate import evaluate_artifact
from tagger.models.spec import read_spec
from tagger.training.from_warehouse import train_all


def _head_split(head: str, split: str) -> str:
    """The split file `tagger train` exported for a head: $TAGGER_HOME/data/<head>/<split>.jsonl."""
    return str(tagger_home() / "data" / head / f"{split}.jsonl")


def _most_common_p0_label(p0_dir: str) -> str:
    """The p0 label with the most training positives (so that a small test head learns it)."""
    train = read_examples(_head_split("p0", "train"))
    counts = Counter(label for labels in train.labels for label in labels)
    enabled = [lab for lab, on in zip(read_spec(p0_dir).labels, read_spec(p0_dir).enabled) if on]
    return max(enabled, key=lambda lab: counts[lab])


def test_a_binary_head_emits_the_label_p0_switched_off_and_the_summary_names_it(spark, cfg, trained, tmp_path):
    """Breaks: the summary's `_emitted_by` returning "" fails the summary line; a p0 copy that keeps
    the label on is refused at job start (test_tag.py)."""
    p0 = next(h for h in cfg.heads if h.name == "p0")
    label = _most_common_p0_label(p0.path)
    models = tmp_path / "models"
    for head in cfg.heads:
        shutil.copytree(head.path, models / head.name)

    def edit(raw):
        for head in raw["heads"]:
            head["path"] = str(models / head["name"])
        at = next(i for i, h in enumerate(raw["heads"]) if h["name"] == "p0")
        raw["heads"].insert(at + 1, {
            "name": "p0_rare", "path": str(models / "p0_rare"), "parent": p0.parent, "gate_by": "gate",
            "train": {"arch": "textcnn", "labels": [label], "precision": 0.8, "confidence": 0.5, "epochs": 2}})
        for key in ("output", "quarantine", "metrics"):
            raw["tables"][key] = f"tagging.rare_{key}"
    cfg2 = load_config(write_config(tmp_path, edit=edit))

    reports = train_all(spark, cfg2, TRAIN_DATES, heads=["p0_rare"], log=lambda *_: None)
    rare = read_spec(models / "p0_rare")
    assert rare.labels == [label] and rare.enabled == [True], "the binary head switched its own label off"
    assert set(reports) == {"p0_rare"}

    sidecar = models / "p0" / "tagger_head.json"  # p0 switches the label off: the binary head emits it
    spec = json.loads(sidecar.read_text(encoding="utf-8"))
    spec["enabled"][spec["labels"].index(label)] = False
    sidecar.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")

    summary = run_date(spark, cfg2, RUN_DATE, log=lambda *_: None)
    rows = (spark.table(cfg2.tables.output).filter(F.col("dt") == RUN_DATE)
            .select("itemid", "tags.tag_path", "tags.source").collect())
    path = f"{p0.parent}/{label}"
    emitted_by = Counter(src for r in rows for p, src in zip(r["tag_path"], r["source"]) if p == path)
    assert set(emitted_by) == {"p0_rare"} and emitted_by["p0_rare"] > 0
    assert all(len(r["tag_path"]) == len(set(r["tag_path"])) for r in rows), "an item carries a tag twice"
    assert summary.tag_sources[path] == {"p0_rare": emitted_by["p0_rare"]}
    assert f"{emitted_by['p0_rare']:>7,}  {path}  (by p0_rare)" in summary.format()
    assert any(f"  {p0.parent}/" in line and "(by p0)" in line for line in summary.format().splitlines())

    # evaluation reads it like any head: its held-out split, its one label
    test = read_examples(_head_split("p0_rare", "test"))
    report = evaluate_artifact(models / "p0_rare", test.texts, test.labels, write_files=False)
    assert list(report["labels"]) == [label] and report["labels"][label]["enabled"]
    assert report["labels"][label]["predicted"] > 0
