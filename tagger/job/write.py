"""Hive tables the job writes (an edge): creating them, and appending the run's metrics row.
The output and quarantine partitions are published as versions by tagger/job/publish.py."""
from __future__ import annotations

import uuid
from contextlib import contextmanager

from pyspark.sql import DataFrame, SparkSession

from tagger.config import Config, Tables
from tagger.sql_files import run_sql

DDL = {"output": "ddl_item_tags", "quarantine": "ddl_quarantine", "metrics": "ddl_run_metrics",
       "versions": "ddl_versions", "publish_log": "ddl_publish_log", "daily_stats": "ddl_daily_stats"}
# Columns added to a DDL after tables were first created: existing tables get them on the next
# run (old rows read NULL). Keep in step with sql/ddl_*.sql.
ADDED_COLUMNS = {"metrics": [("implied_parents", "BIGINT"), ("version", "STRING"), ("outcome", "STRING"),
                             ("worker_devices", "MAP<STRING,STRING>")],
                 "versions": [("input_digest", "STRING")]}


def ensure_tables(spark: SparkSession, tables: Tables) -> None:
    """Create the output databases and tables if missing (DDL in sql/ddl_*.sql)."""
    names = {attr: getattr(tables, attr) for attr in DDL}
    for database in sorted({name.split(".")[0] for name in names.values()}):
        run_sql(spark, "ddl_database", database=database)
    for attr, ddl in DDL.items():
        run_sql(spark, ddl, table=names[attr])
        have = {f.name for f in spark.table(names[attr]).schema.fields}
        for column, kind in ADDED_COLUMNS.get(attr, []):
            if column not in have:
                spark.sql(f"ALTER TABLE IDENTIFIER(:table) ADD COLUMNS ({column} {kind})", args={"table": names[attr]})


@contextmanager
def table_rows_view(spark: SparkSession, df: DataFrame, table: str, partition_columns=("dt",)):
    """A temporary view of df's columns named like `table`'s, in the table's order, without its
    `partition_columns` (INSERT matches by position; extra df columns are ignored); yields the view's
    name and drops the view afterwards. A missing column raises pyspark's AnalysisException."""
    columns = [f.name for f in spark.table(table).schema.fields if f.name not in partition_columns]
    view = f"tagger_rows_{uuid.uuid4().hex[:12]}"
    df.select(*columns).createOrReplaceTempView(view)
    try:
        yield view
    finally:
        spark.catalog.dropTempView(view)


def append_partition(spark: SparkSession, df: DataFrame, table: str, dt: str) -> None:
    """Add df's rows to partition dt (yyyy-MM-dd) of `table`; existing rows stay. df must hold every
    column of the table but dt (table_rows_view); a missing column raises pyspark's AnalysisException.
    Used for the append-only tables (run metrics); the output and quarantine are published as versions
    (tagger/job/publish.py)."""
    with table_rows_view(spark, df, table) as view:
        spark.sql("INSERT INTO TABLE IDENTIFIER(:table) PARTITION (dt) SELECT *, :dt AS dt FROM IDENTIFIER(:view)",
                  args={"table": table, "dt": dt, "view": view})


def write_metrics(spark: SparkSession, cfg: Config, s, started_at: str) -> None:
    """Append one row for run attempt `s` (a tagger.job.summary.RunSummary) to the metrics table's
    dt partition of the run date."""
    row = dict(run_id=s.run_id, started_at=started_at, seconds=s.stage_seconds["total"],
               items_selected=s.items_selected, items_tagged=s.items_tagged, items_with_tags=s.items_with_tags,
               items_quarantined=s.items_quarantined, quarantine_rows=s.quarantine_rows, tag_counts=s.tag_counts,
               quarantine_reasons=s.quarantine_reasons, stage_seconds=s.stage_seconds,
               model_version=s.model_version, rules_version=s.rules_version,
               model_loads=s.model_loads, python_workers=s.python_workers, implied_parents=s.implied_parents,
               version=s.version, outcome=s.outcome, worker_devices=s.worker_devices)
    schema = spark.table(cfg.tables.metrics).drop("dt").schema
    append_partition(spark, spark.createDataFrame([row], schema), cfg.tables.metrics, s.run_date)
