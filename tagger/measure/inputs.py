"""The bench's and the ablation's inputs: generated demo data run through the job's own extract SQL
and normalize step, so the measured texts are exactly what the job would tag that day (one pool
filter, one doc_text builder: the job's)."""
from __future__ import annotations

import dataclasses

import pandas as pd

BENCH_START_DATE = "2024-01-01"
VIEWS = {"pool": "tagger_bench_pool", "asr": "tagger_bench_asr", "ocr": "tagger_bench_ocr",
         "tag_dim": "tagger_bench_tag_dim"}


def bench_session(cfg):
    """(SparkSession, created_here): the active session if there is one (tests, the bench inside
    another command), else a new one built from the config. The caller stops one it created."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    from tagger.ops.spark_session import build_session

    return build_session(cfg, "tagger-bench"), True


def bench_inputs(spark, cfg, n_items: int, seed: int = 7) -> tuple[pd.DataFrame, dict[str, tuple[int, str]]]:
    """Generate `n_items` demo items on BENCH_START_DATE and run them through the job's extract and
    normalize steps on temporary views (nothing is written to the catalog).

    Returns (items, tag_index): items is a pandas DataFrame with the tagging stage's input columns
    itemid, dtype, doc_text (one row per usable selected item, sorted by itemid); tag_index maps a
    tag path to (tag id, tag name) as the job resolves it (tagger.job.tag.load_tag_index).
    """
    from tagger.demo.generator import generate
    from tagger.demo.seed import TABLES
    from tagger.job.extract import extract
    from tagger.job.normalize import normalize
    from tagger.job.tag import load_tag_index

    data = generate(n_items, BENCH_START_DATE, 1, seed=seed)
    for attr, _table_attr, _ddl, _part, schema in TABLES:
        if attr in VIEWS:
            frame = getattr(data, attr)
            columns = [c.split()[0] for c in schema.split(", ")]
            spark.createDataFrame(frame[columns], schema).createOrReplaceTempView(VIEWS[attr])
    views_cfg = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, **VIEWS))
    sources = extract(spark, views_cfg, BENCH_START_DATE)
    items = (normalize(sources.pool, sources.asr, sources.ocr, cfg.text).items
             .select("itemid", "dtype", "doc_text").toPandas()
             .sort_values("itemid", kind="mergesort").reset_index(drop=True))
    return items, load_tag_index(sources.tag_dim)
