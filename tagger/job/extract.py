"""Read one run date's inputs from Hive with the SQL files in sql/ (IO at the edge)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagger.config import Config
from tagger.sql_files import run_sql


class MissingInputError(RuntimeError):
    """A source the run cannot do without is absent (table, partition, tag snapshot)."""


@dataclass
class Sources:
    """One run date's inputs as lazy DataFrames (see extract for their columns)."""
    pool: DataFrame
    asr: DataFrame
    ocr: DataFrame
    tag_dim: DataFrame


def partitions(spark: SparkSession, table: str) -> list[str]:
    """Partition specs of a table, e.g. ['pt=2024-01-05'] (metadata only, no scan)."""
    if not spark.catalog.tableExists(table):
        return []
    rows = spark.sql("SHOW PARTITIONS IDENTIFIER(:table)", args={"table": table}).collect()
    return [r[0] for r in rows]


def check_inputs(spark: SparkSession, cfg: Config, run_date: str) -> None:
    """Fail before any heavy work if a source table, the pool partition or the tag snapshot is missing.

    Reads catalog metadata only (no scan); `run_date` is yyyy-MM-dd. Returns None when the run can
    go ahead. Raises MissingInputError when one of cfg.tables' pool, asr, ocr or tag_dim tables does
    not exist, when the pool has no partition pt=<run_date>, or when the tag dimension has no
    snapshot dt <= run_date. ASR/OCR partitions are optional for a run (speech lands late; an item
    without it is tagged from its title and summary), their tables are not.
    """
    t = cfg.tables
    for table in (t.pool, t.asr, t.ocr, t.tag_dim):
        if not spark.catalog.tableExists(table):
            raise MissingInputError(f"Source table {table} does not exist in the catalog. Check the "
                                    f"table name in {cfg.source} (tables) and the metastore the job uses.")
    if f"pt={run_date}" not in partitions(spark, t.pool):
        raise MissingInputError(f"Partition pt={run_date} of {t.pool} is missing: the day's pool has not "
                                f"landed yet. Rerun once it exists (an empty day is an empty partition).")
    if not [p for p in partitions(spark, t.tag_dim) if p.startswith("dt=") and p[3:] <= run_date]:
        raise MissingInputError(f"{t.tag_dim} has no snapshot dt <= {run_date}: tag ids cannot be resolved.")


def input_digest(sources: Sources) -> tuple[str, int]:
    """(16 hex, pool rows): a digest of the date's extracted pool rows and of the ASR/OCR rows of its
    speech window (row counts and order-independent sums of 64-bit row hashes), computed in one Spark
    job. Rows that land late (speech arriving days after the video) change it; the tag dimension is
    covered by the run id instead. Raises pyspark's AnalysisException for a missing table."""
    def summary(df: DataFrame, name: str) -> DataFrame:
        return df.agg(F.count(F.lit(1)).alias(f"{name}_rows"),
                      F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)")).alias(f"{name}_hash"))

    row = summary(sources.pool, "pool").crossJoin(summary(sources.asr, "asr")).crossJoin(
        summary(sources.ocr, "ocr")).first().asDict()
    text = ";".join(f"{k}={row[k]}" for k in sorted(row))
    return hashlib.sha256(text.encode()).hexdigest()[:16], int(row["pool_rows"])


def extract(spark: SparkSession, cfg: Config, run_date: str) -> Sources:
    """The run date's inputs (sql/extract_*.sql), lazy, with bound parameters. pool: itemid, title,
    summary, relate_app_tag_id, dtype, recommend_grade, gc, create_time of partition pt=run_date
    after the team's filter (duplicates kept); asr / ocr: id, video_id, raw (the JSON payload), dt
    for partitions dt in [run_date - speech_lookback_days, run_date + speech_late_days], empty
    payloads dropped; tag_dim: id, tag_name, tag_path, tag_path_name of the active content tags in
    the newest snapshot dt <= run_date. A missing table raises pyspark's AnalysisException here:
    call check_inputs first for a MissingInputError."""
    t = cfg.tables
    window = dict(run_date=run_date, lookback_days=cfg.speech_lookback_days, late_days=cfg.speech_late_days)
    return Sources(
        pool=run_sql(spark, "extract_pool", pool_table=t.pool, run_date=run_date),
        asr=run_sql(spark, "extract_asr", asr_table=t.asr, **window),
        ocr=run_sql(spark, "extract_ocr", ocr_table=t.ocr, **window),
        tag_dim=run_sql(spark, "extract_tag_dim", tag_dim_table=t.tag_dim, run_date=run_date),
    )


def pool_items(spark: SparkSession, cfg: Config, run_date: str) -> DataFrame:
    """The date's normalized items as the job tags them (check_inputs, extract, then
    tagger.job.normalize's items: itemid, doc_text, ...), lazy, for commands that read the pool's
    text without tagging it (`tagger embeddings`, `tagger distill --start/--end`). Raises
    MissingInputError when an input is missing: a missing day is never read as empty."""
    from tagger.job.normalize import normalize

    check_inputs(spark, cfg, run_date)
    sources = extract(spark, cfg, run_date)
    return normalize(sources.pool, sources.asr, sources.ocr, cfg.text).items
