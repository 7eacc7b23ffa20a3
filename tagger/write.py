"""Write the run's results to Hive (an edge): exactly one dt partition, columns by name."""
from __future__ import annotations

import uuid

from pyspark.sql import DataFrame, SparkSession

from tagger.config import Tables
from tagger.sql_files import run_sql

DDL = {"output": "ddl_item_tags", "quarantine": "ddl_quarantine", "metrics": "ddl_run_metrics"}


def ensure_tables(spark: SparkSession, tables: Tables) -> None:
    """Create the output databases and tables if missing (DDL in sql/ddl_*.sql)."""
    names = {attr: getattr(tables, attr) for attr in DDL}
    for database in sorted({name.split(".")[0] for name in names.values()}):
        run_sql(spark, "ddl_database", database=database)
    for attr, ddl in DDL.items():
        run_sql(spark, ddl, table=names[attr])


def _insert(spark: SparkSession, df: DataFrame, table: str, dt: str, overwrite: bool) -> None:
    # Select the table's columns by name, in the table's order: INSERT matches by position.
    columns = [f.name for f in spark.table(table).schema.fields if f.name != "dt"]
    view = f"tagger_staging_{uuid.uuid4().hex[:12]}"
    df.select(*columns).createOrReplaceTempView(view)
    verb = "INSERT OVERWRITE TABLE" if overwrite else "INSERT INTO TABLE"
    try:
        spark.sql(f"{verb} IDENTIFIER(:table) PARTITION (dt = :dt) SELECT * FROM IDENTIFIER(:view)",
                  args={"table": table, "dt": dt, "view": view})
    finally:
        spark.catalog.dropTempView(view)


def overwrite_partition(spark: SparkSession, df: DataFrame, table: str, dt: str) -> None:
    """Replace partition dt of table with df; other partitions are untouched. Spark writes to a
    staging directory and swaps it in at commit, so a failed write leaves the old partition."""
    _insert(spark, df, table, dt, overwrite=True)


def append_partition(spark: SparkSession, df: DataFrame, table: str, dt: str) -> None:
    _insert(spark, df, table, dt, overwrite=False)
