"""Build the SparkSession (an edge: only jobs/ and the CLI call this), and keep its JVM quiet.

Quiet by default: every session built here logs Spark's JVM messages at ERROR only, through the
shipped conf/log4j2.properties (installed as tagger/conf/log4j2.properties). `tagger --verbose` or
TAGGER_VERBOSE=1 brings Spark's default logging back (and the session's WARN level, as before).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from tagger.config import CONF_DIR, Config, ConfigError, MetastoreDb, tagger_home

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
    """The shipped log4j2 configuration (tagger/conf/log4j2.properties) as a file on local disk
    (tagger.config.CONF_DIR is on local disk even when the package is imported from a zip).
    Raises FileNotFoundError if the package lacks the file."""
    shipped = CONF_DIR / LOG4J2_CONFIG
    if not shipped.is_file():
        raise FileNotFoundError(f"{shipped}: the package lacks its log4j2 configuration; reinstall it")
    return shipped


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


def database_catalog_conf(db: MetastoreDb, password: str) -> dict[str, str]:
    """Spark settings of a Hive metastore kept in a shared database (catalog 'database'): the JDBC
    connection (password included: never log this mapping), no schema check and no schema creation.
    The schema is created once beforehand (scripts/metastore.py init-schema): DataNucleus'
    autoCreateAll on an empty PostgreSQL database hangs on the first CREATE TABLE."""
    return {
        "spark.sql.warehouse.dir": db.warehouse,
        "spark.hadoop.javax.jdo.option.ConnectionURL": db.url,
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": db.driver_class,
        "spark.hadoop.javax.jdo.option.ConnectionUserName": db.user,
        "spark.hadoop.javax.jdo.option.ConnectionPassword": password,
        "spark.hadoop.hive.metastore.schema.verification": "false",
        "spark.hadoop.datanucleus.schema.autoCreateAll": "false",
    }


def check_metastore_db(jvm, db: MetastoreDb, password: str, under_submit: bool) -> None:
    """Before any Hive client starts: the driver JVM (`jvm`, py4j's view of it) can load the JDBC
    driver, reach the database and finds the metastore schema in it. Each failure is one ConfigError
    line saying what to do, instead of DataNucleus' thousands of lines of traces (or a hang, when
    the schema is missing). Raises ConfigError."""
    from py4j.protocol import Py4JJavaError

    try:
        jvm.java.lang.Class.forName(db.driver_class)
    except Py4JJavaError:
        how = (f"spark-submit starts the JVM before the job reads its config, so pass --driver-class-path "
               f"{db.driver_jar} (or spark.driver.extraClassPath in a --properties-file)" if under_submit else
               f"spark.metastore_db.driver_jar ({db.driver_jar}) does not hold it: point the key at the driver's jar")
        raise ConfigError(f"the metastore JDBC driver {db.driver_class} is not on the driver JVM's class path: {how}.") \
            from None
    try:
        connection = jvm.java.sql.DriverManager.getConnection(db.url, db.user, password)
    except Py4JJavaError as exc:
        reason = str(exc.java_exception.getMessage()).splitlines()[0]
        raise ConfigError(f"cannot connect to the metastore database {db.url} as {db.user}: {reason}. Check that "
                          f"it is up (make metastore-up for the local one) and the password "
                          f"(${db.password_env} or spark.metastore_db.password_file).") from None
    try:
        meta = connection.getMetaData()
        found = any(meta.getTables(None, None, name, None).next() for name in ("DBS", "dbs"))
    finally:
        connection.close()
    if not found:
        raise ConfigError(f"the metastore database {db.url} has no Hive metastore schema (no DBS table). Create it "
                          f"once: python scripts/metastore.py init-schema --config <job config> (the job never "
                          f"creates it: DataNucleus' autoCreateAll hangs on an empty PostgreSQL database).")


def _start_jvm(conf: dict[str, str], secret_keys: set[str]):
    """Start (or, under spark-submit, connect to) the driver JVM before the SparkSession, with the
    settings that only count at JVM launch (class path, Java options) and without `secret_keys`:
    pyspark passes every setting it launches with on the JVM's command line, where `ps` shows it.
    Returns py4j's JVM view."""
    from pyspark import SparkConf, SparkContext

    launch = SparkConf(loadDefaults=False)
    for key, value in conf.items():
        if key not in secret_keys:
            launch.set(key, value)
    SparkContext._ensure_initialized(conf=launch)
    return SparkContext._jvm


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
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(app_name).enableHiveSupport()
    if not under_submit:  # not under spark-submit: its --master wins there
        builder = builder.master(cfg.spark.master)
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.tagging.arrow_max_records_per_batch),
        # Overwrite only the partitions written, via a staging directory renamed at commit.
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.hive.convertMetastoreParquet": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    db = cfg.spark.metastore_db
    password = db.password() if db else ""  # before the JVM: a missing password is a config error
    if db:
        conf.update(database_catalog_conf(db, password))
        if not under_submit:  # pyspark starts the JVM: the driver jar goes on its class path now
            if not os.path.isfile(db.driver_jar):
                raise ConfigError(f"spark.metastore_db.driver_jar: {db.driver_jar}: file not found. Install the "
                                  f"JDBC driver (Debian: apt-get install libpostgresql-jdbc-java) or point the key "
                                  f"at its jar.")
            conf["spark.driver.extraClassPath"] = db.driver_jar
    elif cfg.spark.catalog == "embedded":  # 'external': the cluster's own settings apply
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
    if db:
        launch = dict(conf) if under_submit else {"spark.master": cfg.spark.master, **conf}
        check_metastore_db(_start_jvm(launch, {"spark.hadoop.javax.jdo.option.ConnectionPassword"}), db, password,
                           under_submit)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not quiet:
        spark.sparkContext.setLogLevel("WARN")
    return spark
