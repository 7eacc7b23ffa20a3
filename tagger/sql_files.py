"""Run the SQL files in sql/ with bound parameters (never string formatting).

The files are package data (`tagger/sql/*.sql` once installed), read with importlib.resources,
so the job runs from a wheel, an unpacked cluster archive or a checkout alike.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

from pyspark.sql import DataFrame, SparkSession



@lru_cache(maxsize=None)
def read_sql(name: str) -> str:
    """The text of `sql/<name>.sql`. Raises FileNotFoundError for an unknown name."""
    return files("tagger.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")


def run_sql(spark: SparkSession, name: str, **params: Any) -> DataFrame:
    """Run `sql/<name>.sql` with `params` bound to its `:name` markers; returns the result DataFrame
    (lazy for queries; DDL and INSERT run at once). Raises pyspark's AnalysisException on bad SQL."""
    return spark.sql(read_sql(name), args=params)
