"""Build the SparkSession (an edge: only jobs/ and the CLI call this)."""
from __future__ import annotations

import os
import re
import sys

from pyspark.sql import SparkSession

from tagger.config import Config, tagger_home

WORKER_DAEMON = "tagger.udfs.worker_daemon"  # forks Python workers with torch and the model code imported


def embedded_catalog_conf() -> dict[str, str]:
    """Warehouse and Derby metastore under $TAGGER_HOME: every session pointed there sees the same
    tables. Derby allows one process at a time, so stop other sessions (or a Thrift Server) first."""
    home = tagger_home()
    return {
        "spark.sql.warehouse.dir": str(home / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home}",
    }


def build_session(cfg: Config, app_name: str = "tagger") -> SparkSession:
    """The SparkSession for `cfg` (getOrCreate, Hive support on, log level WARN): Arrow on with
    tagging.arrow_max_records_per_batch rows per batch, dynamic partition overwrite, the embedded
    catalog's warehouse/metastore under $TAGGER_HOME when spark.catalog is 'embedded', the worker
    daemon in local mode, then cfg.spark.conf (which wins). spark.master applies unless run under
    spark-submit. Errors starting the JVM propagate from pyspark."""
    # Workers must run the same interpreter (the project's virtualenv), not whatever python3 is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).enableHiveSupport()
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit: its --master wins there
        builder = builder.master(cfg.spark.master)
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.tagging.arrow_max_records_per_batch),
        # Overwrite only the partitions written, via a staging directory renamed at commit.
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.hive.convertMetastoreParquet": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if cfg.spark.catalog == "embedded":
        conf.update(embedded_catalog_conf())
    if "PYSPARK_GATEWAY_PORT" not in os.environ and re.fullmatch(r"local(\[[^\]]*\])?", cfg.spark.master):
        # Local mode: the workers run this virtualenv, where tagger.udfs.worker_daemon is importable. Not on
        # a cluster: there the daemon starts before --py-files are on its path and would fail.
        conf["spark.python.daemon.module"] = WORKER_DAEMON
    conf.update(cfg.spark.conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
