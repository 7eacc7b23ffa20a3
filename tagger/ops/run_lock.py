"""One run at a time per output table and date.

A second run for the same table and dt refuses at start, naming the run that holds the lock
(host, pid, date, start time). The lock is a small file created with the Hadoop FileSystem API
(create without overwrite), so it works on the local disk of the embedded default and on HDFS
alike. A lock whose holder is gone (same host, process dead) or older than `stale_after_hours`
is taken over with a warning; a run that ends, well or badly, removes its lock.

It is taken before anything touches the metastore: with the embedded Derby metastore a second
process could not even open the catalog, and this way it learns who holds it.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from tagger.ops.storage import fs_path


class RunLockedError(RuntimeError):
    """Another run is writing the same output table and date."""


def _read(spark: SparkSession, fs, hpath) -> dict:
    try:
        stream = fs.open(hpath)
        try:
            text = spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()
        return json.loads(text)
    except Exception:  # unreadable or half-written lock: treat its holder as unknown
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(holder: dict, modified_epoch: float, stale_after_hours: float) -> str | None:
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
            and not _alive(holder["pid"]):
        return f"its process {holder['pid']} on this host is gone"
    age = time.time() - modified_epoch  # the file's own time: also right for an empty, crashed lock
    if age > stale_after_hours * 3600:
        return f"it is {age / 3600:.1f} h old (stale after {stale_after_hours} h)"
    return None


def _create(fs, hpath, payload: str) -> bool:
    try:
        out = fs.create(hpath, False)  # fails if the file exists
    except Exception as exc:  # py4j wraps FileAlreadyExistsException
        if "FileAlreadyExists" in str(exc) or "already exists" in str(exc):
            return False
        raise
    try:
        out.write(bytearray(payload.encode("utf-8")))
    finally:
        out.close()
    return True


@contextmanager
def run_lock(spark: SparkSession, lock_dir: str, table: str, dt: str, stale_after_hours: float, log=print):
    """Context manager: hold <lock_dir>/<table>/dt=<dt>.lock (a JSON file: host, pid, table, dt,
    started_at, epoch) for the block and yield its path; removed when the block ends, well or badly.
    A lock whose process on this host is gone, or older than stale_after_hours (hours), is taken over
    with a warning to `log`. Raises RunLockedError when a live run holds it, or another run took it
    over at the same moment."""
    path = f"{lock_dir.rstrip('/')}/{table}/dt={dt}.lock"
    fs, hpath = fs_path(spark, path)
    now = datetime.now(timezone.utc)
    payload = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "table": table, "dt": dt,
                          "started_at": now.isoformat(timespec="seconds"), "epoch": now.timestamp()})
    fs.mkdirs(hpath.getParent())
    if not _create(fs, hpath, payload):
        holder = _read(spark, fs, hpath)
        why = _stale(holder, fs.getFileStatus(hpath).getModificationTime() / 1000.0, stale_after_hours)
        if why is None:
            raise RunLockedError(
                f"Another run is writing {table} dt={dt}: pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {holder.get('started_at', '?')}. Wait for it to finish; "
                f"if it is dead, remove {path} and rerun.")
        log(f"WARNING: taking over the lock {path} ({why}).")
        fs.delete(hpath, False)
        # Two runs may both find the lock stale: both delete, both create. Only one file survives,
        # so each reads it back and the one that does not find itself there backs off.
        if not _create(fs, hpath, payload) or _read(spark, fs, hpath).get("pid") != os.getpid():
            raise RunLockedError(f"Another run took the lock {path} at the same moment; rerun later.")
    try:
        yield path
    finally:
        fs.delete(hpath, False)
