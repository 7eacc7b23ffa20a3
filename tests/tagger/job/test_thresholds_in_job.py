"""The job's output changes when an artifact's thresholds change, and only then."""
from __future__ import annotations

import json
import shutil

from pyspark.sql import functions as F

from tagger.config import load_config
from tagger.job.pipeline import run_date
from tagger.job.tag import build_spec, load_tag_index
from tagger.sql_files import run_sql
from conftest import RUN_DATE, write_config


def _copy_setup(cfg, tmp_path, change=None):
    """Copies of the trained artifacts and a config that points at them and writes its own tables."""
    for head in cfg.heads:
        shutil.copytree(head.path, tmp_path / "models" / head.name)

    def edit(raw):
        for head in raw["heads"]:
            head["path"] = str(tmp_path / "models" / head["name"])
        for key in ("output", "quarantine", "metrics"):
            raw["tables"][key] = f"tagging.thr_{key}"
        if change:
            change(raw)
    return load_config(write_config(tmp_path, edit=edit))


def _sidecar(cfg, name):
    return next(h for h in cfg.heads if h.name == name).path + "/tagger_head.json"


def _edit_sidecar(path, change):
    spec = json.loads(open(path, encoding="utf-8").read())
    change(spec)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)


def _tags(spark, cfg) -> dict[str, frozenset]:
    rows = (spark.table(cfg.tables.output).filter(F.col("dt") == RUN_DATE)
            .select("itemid", "gate_score", "tags.tag_path").collect())
    return {r["itemid"]: (r["gate_score"], frozenset(r["tag_path"])) for r in rows}


def test_thresholds_decide_the_output_and_nothing_else_in_the_sidecar_does(spark, cfg, trained, tmp_path):
    cfg2 = _copy_setup(cfg, tmp_path)
    tag_dim = run_sql(spark, "extract_tag_dim", tag_dim_table=cfg2.tables.tag_dim, run_date=RUN_DATE)
    index = load_tag_index(tag_dim)
    version = build_spec(cfg2, index, cfg2.tables.tag_dim, 1)[1]

    # A sidecar key that does not decide labels (a note, a model card path) changes nothing.
    _edit_sidecar(_sidecar(cfg2, "gate"), lambda s: s.update(note="reviewed by the team"))
    assert build_spec(cfg2, index, cfg2.tables.tag_dim, 1)[1] == version

    first = run_date(spark, cfg2, RUN_DATE, log=lambda *_: None)
    before = _tags(spark, cfg2)
    gate_sidecar = json.loads(open(_sidecar(cfg2, "gate"), encoding="utf-8").read())
    old = gate_sidecar["thresholds"][0]
    passing = sorted(score for score, _ in before.values() if score is not None and score >= old)
    new = passing[len(passing) // 2]  # half of today's 新车资讯 items fall below the new threshold
    assert new > old

    _edit_sidecar(_sidecar(cfg2, "gate"), lambda s: s["thresholds"].__setitem__(0, new))
    assert build_spec(cfg2, index, cfg2.tables.tag_dim, 1)[1] != version
    second = run_date(spark, cfg2, RUN_DATE, log=lambda *_: None)
    after = _tags(spark, cfg2)

    assert second.run_id != first.run_id and second.model_version != first.model_version
    assert before.keys() == after.keys()
    changed = {i for i in before if before[i][1] != after[i][1]}
    flipped = {i for i, (score, _) in before.items() if score is not None and old <= score < new}
    assert flipped and changed == flipped
    for i in flipped:  # the gate's tag and everything below it went; other heads' tags stayed
        lost = before[i][1] - after[i][1]
        assert "内容标签/新车资讯" in lost and all(p.startswith("内容标签/新车资讯") for p in lost)


def test_an_ungated_p0_brings_its_parent_and_the_run_counts_the_disagreements(spark, cfg, trained, tmp_path):
    cfg2 = _copy_setup(cfg, tmp_path, lambda raw: raw["heads"][1].pop("gate_by"))
    summary = run_date(spark, cfg2, RUN_DATE, log=lambda *_: None)
    rows = spark.table(cfg2.tables.output).filter(F.col("dt") == RUN_DATE).select("tags").collect()
    implied = [t for r in rows for t in r["tags"] if t["source"] == "hierarchy"]
    # P0 now runs on every row; where it tags and the gate said no, 新车资讯 is added and counted
    assert implied and all(t["tag_path"] == "内容标签/新车资讯" for t in implied)
    assert summary.implied_parents == len(implied)
    for r in rows:
        paths = {t["tag_path"] for t in r["tags"]}
        assert not any(p.startswith("内容标签/新车资讯/") for p in paths) or "内容标签/新车资讯" in paths
    metrics = spark.table(cfg2.tables.metrics).filter(F.col("run_id") == summary.run_id).collect()
    assert metrics[-1]["implied_parents"] == len(implied)
