"""Run in a subprocess by test_quiet_output.py (directly, and under spark-submit): build the
project's SparkSession from the config given as argv[1], start the Hive catalog, then log one WARN
and one ERROR line through the driver JVM's log4j. The test reads what reached stdout/stderr."""
import sys

from tagger.config import load_config
from tagger.ops.spark_session import build_session

if __name__ == "__main__":
    spark = build_session(load_config(sys.argv[1]), "tagger-log-probe")
    spark.sql("SHOW DATABASES").collect()  # the Hive client and its metastore start here
    logger = spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getLogger("tagger.log_probe")
    logger.warn("log-probe-warn-line")
    logger.error("log-probe-error-line")
    print("log-probe done", flush=True)
    spark.stop()
