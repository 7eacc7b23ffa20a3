"""Files through the Hadoop FileSystem API, so the same code works on the local disk of the
embedded default, on HDFS and on object stores mounted as Hadoop file systems."""
from __future__ import annotations

from pyspark.sql import SparkSession


def fs_path(spark: SparkSession, path: str):
    """(Hadoop FileSystem, Hadoop Path) for a path or URI string."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def exists(spark: SparkSession, path: str) -> bool:
    """True if the file or directory exists."""
    fs, hpath = fs_path(spark, path)
    return bool(fs.exists(hpath))


def delete(spark: SparkSession, path: str) -> None:
    """Remove a file or a directory tree; nothing happens if it is absent."""
    fs, hpath = fs_path(spark, path)
    fs.delete(hpath, True)


def subdirectories(spark: SparkSession, path: str) -> list[tuple[str, int]]:
    """(name, modification time in ms) of each directory directly under `path`; [] if it is absent."""
    fs, hpath = fs_path(spark, path)
    if not fs.exists(hpath):
        return []
    return [(s.getPath().getName(), int(s.getModificationTime())) for s in fs.listStatus(hpath) if s.isDirectory()]
