"""Build the SparkSession (an edge: only jobs/ and the CLI call this), and keep its JVM quiet.

Quiet by default: every session built here logs Spark's JVM messages at ERROR only, through the
shipped conf/log4j2.properties (installed as tagger/conf/log4j2.properties). `tagger --verbose` or
TAGGER_VERBOSE=1 brings Spark's default logging back (and the session's WARN level, as before).
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from tagger.config import CONF_DIR, Config, tagger_home

WORKER_DAEMON = "tagger.udfs.worker_daemon"  # forks Python workers with torch and the model code imported
VERBOSE_ENV = "TAGGER_VERBOSE"  # 1/true/yes: Spark's default logging (tagger --verbose sets it)
LOG4J2_CONFIG = "log4j2.properties"  # in tagger/conf: errors only
LOG4J2_PROPERTY = "log4j2.configurationFile"
_USER_LOG4J = ("-Dlog4j2.configurationFile=", "-Dlog4j.configurationFile=", "-Dlog4j.configuration=")


def verbose_logging() -> bool:
    """True when the environment variable TAGGER_VERBOSE is 1, true or yes (any case): Spark's
    default logging is wanted. Unset, empty or anything else: False (quiet). Raises nothing."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def log4j2_config_file() -> Path:
    """The shipped log4j2 configuration (tagger/conf/log4j2.properties) as a file on local disk.
    Installed normally it is the package's own file; when the package is imported from a zip
    (spark-submit --py-files), its text is copied once to the temporary directory, under a name
    that carries its digest. Raises FileNotFoundError if the package lacks the file."""
    shipped = CONF_DIR / LOG4J2_CONFIG
    if shipped.is_file():
        return shipped
    from importlib.resources import files

    text = (files("tagger.conf") / LOG4J2_CONFIG).read_bytes()
    copy = Path(tempfile.gettempdir()) / f"tagger-log4j2-{hashlib.sha256(text).hexdigest()[:12]}.properties"
    if not copy.is_file():
        staging = copy.with_suffix(f".{os.getpid()}.tmp")
        staging.write_bytes(text)
        os.replace(staging, copy)
    return copy


def quiet_java_options(existing: str | None = None) -> str:
    """Driver JVM options that make log4j2 read the shipped configuration: `existing` (the
    spark.driver.extraJavaOptions already set, may be None or empty) followed by
    -Dlog4j2.configurationFile=file:<log4j2_config_file()>. If `existing` already names a log4j
    configuration of its own, it is returned unchanged (the user's choice wins). Raises
    FileNotFoundError as log4j2_config_file does."""
    existing = (existing or "").strip()
    if any(option in existing for option in _USER_LOG4J):
        return existing
    option = f"-D{LOG4J2_PROPERTY}={log4j2_config_file().resolve().as_uri()}"
    return f"{existing} {option}".strip()


def _submit_chose_logging() -> bool:
    """Under spark-submit the driver JVM is running before Python starts, with Spark's default
    log4j profile unless spark-submit was given one (--driver-java-options
    -Dlog4j2.configurationFile=...) or a level (--conf spark.log.level=...). True if it was: then
    the user's choice stands."""
    from pyspark import SparkContext

    SparkContext._ensure_initialized()  # connects to spark-submit's gateway; starts no context
    props = SparkContext._jvm.java.lang.System
    return any(props.getProperty(name) for name in (LOG4J2_PROPERTY, "log4j.configurationFile", "spark.log.level"))


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
    """The SparkSession for `cfg` (getOrCreate, Hive support on): Arrow on with
    tagging.arrow_max_records_per_batch rows per batch, dynamic partition overwrite, the embedded
    catalog's warehouse/metastore under $TAGGER_HOME when spark.catalog is 'embedded', the worker
    daemon in local mode, then cfg.spark.conf (which wins). spark.master applies unless run under
    spark-submit. Logging: quiet unless verbose_logging(): the JVM logs errors only, through
    log4j2_config_file() as a driver JVM option when pyspark starts the JVM, and under spark-submit
    (JVM already running) through spark.log.level=ERROR as the SparkContext starts. A log4j
    configuration or level of the user's (spark.driver.extraJavaOptions, --driver-java-options,
    spark.log.level) wins. Verbose keeps Spark's default configuration and sets the level to WARN
    once the session runs.
    Errors starting the JVM propagate from pyspark."""
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
    quiet = not verbose_logging()
    if quiet and "PYSPARK_GATEWAY_PORT" not in os.environ:  # pyspark starts the JVM: set its options now
        conf["spark.driver.extraJavaOptions"] = quiet_java_options(conf.get("spark.driver.extraJavaOptions"))
    elif quiet and not _submit_chose_logging():
        # The JVM logs with Spark's defaults already (INFO): the SparkContext sets ERROR as it starts.
        # Its first lines, before that, go only with --driver-java-options (see conf/log4j2.properties).
        conf.setdefault("spark.log.level", "ERROR")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not quiet:
        spark.sparkContext.setLogLevel("WARN")
    return spark
