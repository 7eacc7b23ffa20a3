"""Run the SQL files in sql/ with bound parameters (never string formatting)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


@lru_cache(maxsize=None)
def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def run_sql(spark: SparkSession, name: str, **params: Any) -> DataFrame:
    return spark.sql(read_sql(name), args=params)
