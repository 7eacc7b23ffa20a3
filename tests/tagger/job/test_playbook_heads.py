"""The playbooks' archs in the real job (docs/playbooks/): a config whose heads are a kNN head and
an LLM head (besides the trained gate) runs through Spark like any other, every item carries each
tag at most once, and a rerun of the date gives the same rows and the same run id."""
from __future__ import annotations

import shutil

import pytest
from pyspark.sql import functions as F

from conftest import RUN_DATE, write_config
from tagger.config import load_config, tagger_home
from tagger.job.pipeline import run_date
from tagger.models.data import read_examples
from tagger.models.spec import read_spec

pytest.importorskip("faiss", reason="the knn extra: pip install -e '.[test]'")


def _rows(spark, cfg) -> dict[str, tuple]:
    rows = (spark.table(cfg.tables.output).filter(F.col("dt") == RUN_DATE)
            .select("itemid", "tag_ids", "tags.tag_path", "tags.source", "tags.score").collect())
    return {r["itemid"]: (r["tag_ids"], tuple(r["tag_path"]), tuple(r["source"]), tuple(r["score"])) for r in rows}


def _knn_p0(cfg, out) -> str:
    """A kNN head with p0's labels: the trained gate (a TextCNN) as the encoder, p0's training split
    as the bank."""
    from tagger.models.knn import build_knn_head

    p0 = next(h for h in cfg.heads if h.name == "p0")
    gate = next(h for h in cfg.heads if h.name == "gate")
    train = read_examples(tagger_home() / "data" / "p0" / "train.jsonl")
    build_knn_head(out, gate.path, train.texts, train.labels, read_spec(p0.path).labels, k=5, head="p0")
    return str(out)


def test_knn_heads_run_in_the_job_once_per_tag_and_reruns_are_equal(spark, cfg, trained, tmp_path):
    """Break applied: 1e-3 of noise added to knn_scores (scores that change between runs) fails the
    rerun check."""
    models = tmp_path / "models"
    shutil.copytree(next(h for h in cfg.heads if h.name == "gate").path, models / "gate")
    knn = _knn_p0(cfg, models / "p0")

    def edit(raw):
        raw["heads"] = [h for h in raw["heads"] if h["name"] in ("gate", "p0")]
        raw["heads"][0]["path"] = str(models / "gate")
        raw["heads"][1]["path"] = knn
        for key in ("output", "quarantine", "metrics"):
            raw["tables"][key] = f"tagging.playbook_{key}"
    cfg2 = load_config(write_config(tmp_path, edit=edit))

    first = run_date(spark, cfg2, RUN_DATE, log=lambda *_: None)
    before = _rows(spark, cfg2)
    second = run_date(spark, cfg2, RUN_DATE, log=lambda *_: None)
    after = _rows(spark, cfg2)

    assert first.run_id == second.run_id and before == after
    assert all(len(paths) == len(set(paths)) for _, paths, _, _ in before.values()), "a tag twice on one item"
    from_knn = [p for _, paths, sources, _ in before.values() for p, s in zip(paths, sources) if s == "p0"]
    assert from_knn and all(p.startswith("内容标签/新车资讯/") for p in from_knn)
    assert "p0=" in first.model_version
