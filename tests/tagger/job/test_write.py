"""The write edge: appends by column name, and tables created or upgraded in place."""
import pytest
from pyspark.sql import functions as F

from tagger.job.write import append_partition

TABLE = "write_tests.t"


@pytest.fixture(scope="module")
def table(spark):
    spark.sql("CREATE DATABASE IF NOT EXISTS write_tests")
    spark.sql(f"DROP TABLE IF EXISTS {TABLE}")
    spark.sql(f"CREATE TABLE {TABLE} (a STRING, b BIGINT) PARTITIONED BY (dt STRING) STORED AS PARQUET")
    return TABLE


def rows(spark, dt):
    return sorted((r["a"], r["b"]) for r in spark.table(TABLE).filter(F.col("dt") == dt).collect())


def test_append_adds_rows(spark, table):
    append_partition(spark, spark.createDataFrame([("m", 1)], "a string, b bigint"), table, "2024-01-05")
    append_partition(spark, spark.createDataFrame([("m", 2)], "a string, b bigint"), table, "2024-01-05")
    assert rows(spark, "2024-01-05") == [("m", 1), ("m", 2)]


def test_a_metrics_table_from_before_a_column_was_added_gets_it(spark, cfg):
    from dataclasses import replace

    from tagger.job.write import ADDED_COLUMNS, ensure_tables

    old = "tagging.old_run_metrics"
    spark.sql("CREATE DATABASE IF NOT EXISTS tagging")
    spark.sql(f"DROP TABLE IF EXISTS {old}")
    spark.sql(f"CREATE TABLE {old} (run_id STRING, seconds DOUBLE) PARTITIONED BY (dt STRING) STORED AS PARQUET")
    spark.sql(f"INSERT INTO {old} PARTITION (dt = '2024-01-01') VALUES ('r1', 1.0)")
    ensure_tables(spark, replace(cfg.tables, metrics=old))
    columns = {f.name: f.dataType.simpleString() for f in spark.table(old).schema.fields}
    for column, kind in ADDED_COLUMNS["metrics"]:
        assert columns[column] == kind.lower()
    rows = spark.table(old).collect()
    assert [(r["run_id"], r["implied_parents"]) for r in rows] == [("r1", None)]  # old rows read NULL
