"""The write edge: exactly one dt partition, columns by name, all-or-nothing."""
import pytest
from pyspark.sql import functions as F
from pyspark.sql.functions import udf

from tagger.job.write import append_partition, overwrite_partition

TABLE = "write_tests.t"


@pytest.fixture(scope="module")
def table(spark):
    spark.sql("CREATE DATABASE IF NOT EXISTS write_tests")
    spark.sql(f"DROP TABLE IF EXISTS {TABLE}")
    spark.sql(f"CREATE TABLE {TABLE} (a STRING, b BIGINT) PARTITIONED BY (dt STRING) STORED AS PARQUET")
    return TABLE


def rows(spark, dt):
    return sorted((r["a"], r["b"]) for r in spark.table(TABLE).filter(F.col("dt") == dt).collect())


def test_overwrite_replaces_one_partition_by_column_name(spark, table):
    overwrite_partition(spark, spark.createDataFrame([("x", 1)], "a string, b bigint"), table, "2024-01-01")
    overwrite_partition(spark, spark.createDataFrame([("y", 2)], "a string, b bigint"), table, "2024-01-02")
    # Columns in another order than the table's: matched by name, not position.
    overwrite_partition(spark, spark.createDataFrame([(3, "z"), (4, "w")], "b bigint, a string"), table, "2024-01-01")
    assert rows(spark, "2024-01-01") == [("w", 4), ("z", 3)]
    assert rows(spark, "2024-01-02") == [("y", 2)]


def test_a_write_failing_mid_job_leaves_the_old_partition(spark, table):
    overwrite_partition(spark, spark.createDataFrame([("old", 1)], "a string, b bigint"), table, "2024-01-03")

    @udf("string")
    def explode_on_c(a):
        if a == "c":
            raise RuntimeError("injected failure while writing")
        return a

    bad = spark.createDataFrame([("a", 1), ("b", 2), ("c", 3)], "a string, b bigint").repartition(3)
    with pytest.raises(Exception, match="injected failure"):
        overwrite_partition(spark, bad.withColumn("a", explode_on_c("a")), table, "2024-01-03")
    assert rows(spark, "2024-01-03") == [("old", 1)]


def test_empty_overwrite_leaves_an_empty_partition(spark, table):
    overwrite_partition(spark, spark.createDataFrame([("old", 1)], "a string, b bigint"), table, "2024-01-04")
    overwrite_partition(spark, spark.createDataFrame([], "a string, b bigint"), table, "2024-01-04", empty=True)
    assert rows(spark, "2024-01-04") == []
    assert "dt=2024-01-04" in [r[0] for r in spark.sql(f"SHOW PARTITIONS {TABLE}").collect()]


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
