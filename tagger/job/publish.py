"""Write-audit-publish on plain Hive tables: versioned partitions, a metastore pointer switch,
history and rollback.

Hive has neither Iceberg's branches nor Delta's RESTORE, but a partition is only a pointer in the
metastore. So a run never writes into the live partition:

1. stage: the run's output and quarantine rows go to new directories,
   `<table location>/_versions/dt=<D>/<version>/` (parquet, committed by Spark with `_SUCCESS`);
   readers do not see them. A version is `<run_id>-<8 hex of a digest of the rows>`, so an
   identical rerun finds its version already staged and writes nothing.
2. audit (tagger/job/audit.py) the staged version against the trailing published days.
3. publish: `ALTER TABLE ... PARTITION (dt = D) SET LOCATION` (or ADD PARTITION ... LOCATION),
   one metastore call per table: readers see the old partition or the new one, never a mix of
   files. The quarantine is switched first and the output last, so the output switch is the
   commit point. Two calls are not one transaction: a crash between them leaves the two
   partitions naming different versions, which `repair` (run at the start of every run and by
   `tagger publish`) sees and mends by pointing the quarantine back at the output's version.
   Every switch is a row in the publish log; every staged version a row in the versions table.
4. keep the last `publish.keep_versions` versions of a date on disk (never the published one).

Older partitions written in place (<table>/dt=D, before versioning) stay readable; the first
publish of such a date points it at a versioned directory and leaves the old files unread.
"""
from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagger.config import Tables
from tagger.ops import storage
from tagger.ops.failpoints import failpoint, stall_after_first_batch

VERSIONS_DIR = "_versions"
VERSION = re.compile(r"^[0-9A-Za-z_.-]{1,120}$")


class PublishError(RuntimeError):
    """A publish, rollback or repair cannot be done as asked (unknown version, files missing)."""


@dataclass
class StagedVersion:
    """A version of one date written to its own directories: identity, where, how many rows, and
    whether it was already there (an identical rerun)."""
    dt: str
    version: str
    run_id: str
    output_location: str
    quarantine_location: str
    items: int
    quarantine_rows: int
    reused: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def actor() -> str:
    """Who is publishing: $TAGGER_ACTOR (e.g. the Airflow DAG sets 'airflow:<dag>'), else the OS user."""
    return os.environ.get("TAGGER_ACTOR") or getpass.getuser()


def table_location(spark: SparkSession, table: str) -> str:
    """The table's root location (a URI) from the metastore."""
    rows = spark.sql("DESCRIBE TABLE EXTENDED IDENTIFIER(:t)", args={"t": table}).collect()
    return next(r["data_type"] for r in rows if r["col_name"] == "Location")


def partition_location(spark: SparkSession, table: str, dt: str) -> str | None:
    """Where partition dt of the table points, or None if the partition (or the table) does not exist."""
    if not spark.catalog.tableExists(table):
        return None
    if f"dt={dt}" not in {r[0] for r in spark.sql("SHOW PARTITIONS IDENTIFIER(:t)", args={"t": table}).collect()}:
        return None
    rows = spark.sql("DESCRIBE TABLE EXTENDED IDENTIFIER(:t) PARTITION (dt = :dt)",
                     args={"t": table, "dt": dt}).collect()
    return next(r["data_type"] for r in rows if r["col_name"] == "Location")


def version_of(location: str | None) -> str | None:
    """The version a partition location names (…/_versions/dt=D/<version>), else None (no partition,
    or one written in place before versioning)."""
    if not location:
        return None
    parts = location.rstrip("/").split("/")
    return parts[-1] if len(parts) >= 3 and parts[-3] == VERSIONS_DIR else None


def version_dir(spark: SparkSession, table: str, dt: str, version: str) -> str:
    """The directory of one version of a date: <table location>/_versions/dt=<dt>/<version>."""
    return f"{table_location(spark, table).rstrip('/')}/{VERSIONS_DIR}/dt={dt}/{version}"


def published_version(spark: SparkSession, tables: Tables, dt: str) -> str | None:
    """The version readers of the output table see for dt (None: none, or an unversioned partition)."""
    return version_of(partition_location(spark, tables.output, dt))


def _digest(df: DataFrame) -> tuple[int, str]:
    """(rows, order-independent digest) of a DataFrame: count and the sum of xxhash64 of every row."""
    row = df.agg(F.count(F.lit(1)).alias("n"),
                 F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)")).alias("h")).collect()[0]
    return int(row["n"]), f"{int(row['h'] or 0) & 0xFFFFFFFFFFFFFFFF:016x}"


def _columns(spark: SparkSession, table: str) -> list[str]:
    return [f.name for f in spark.table(table).schema.fields if f.name != "dt"]


def _write(spark: SparkSession, df: DataFrame, path: str, may_stall: bool = False) -> None:
    stall = failpoint("write_stall_seconds") if may_stall else None
    if stall:  # the kill test: the output's write stalls with files half-written
        df = df.mapInPandas(stall_after_first_batch(stall), df.schema)
    df.write.mode("overwrite").parquet(path)


def stage(spark: SparkSession, tables: Tables, dt: str, run_id: str, tagged: DataFrame,
          quarantine: DataFrame) -> StagedVersion:
    """Write the run's rows as a new version of dt (nothing readers see changes).

    `tagged` and `quarantine` hold the output and quarantine tables' columns (dt excluded; picked by
    name). Returns the StagedVersion; reused=True when the same version was already staged
    completely (an identical rerun), in which case nothing is written.
    """
    out = tagged.select(*_columns(spark, tables.output))
    q = quarantine.select(*_columns(spark, tables.quarantine))
    n_out, h_out = _digest(out)
    n_q, h_q = _digest(q)
    version = f"{run_id}-{(int(h_out, 16) ^ int(h_q, 16) ^ (n_out << 20) ^ n_q) & 0xFFFFFFFF:08x}"
    out_dir = version_dir(spark, tables.output, dt, version)
    q_dir = version_dir(spark, tables.quarantine, dt, version)
    complete = storage.exists(spark, f"{out_dir}/_SUCCESS") and storage.exists(spark, f"{q_dir}/_SUCCESS")
    if not complete:
        _write(spark, q, q_dir)
        _write(spark, out, out_dir, may_stall=True)
    return StagedVersion(dt, version, run_id, out_dir, q_dir, n_out, n_q, reused=complete)


def record_version(spark: SparkSession, tables: Tables, staged: StagedVersion, model_version: str,
                   rules_version: str, outcome: str, audits: list[dict], input_digest: str | None = None) -> None:
    """Append the staged version, its audit results, outcome and the digest of the inputs it was
    made from (tagger.job.extract.input_digest) to the versions table."""
    row = dict(version=staged.version, run_id=staged.run_id, model_version=model_version, input_digest=input_digest,
               rules_version=rules_version, staged_at=_now(), output_location=staged.output_location,
               quarantine_location=staged.quarantine_location, items=staged.items,
               quarantine_rows=staged.quarantine_rows, outcome=outcome,
               audits=json.dumps(audits, ensure_ascii=False, default=str), dt=staged.dt)
    _append(spark, tables.versions, [row])


def _append(spark: SparkSession, table: str, rows: list[dict]) -> None:
    columns = [f.name for f in spark.table(table).schema.fields]
    schema = spark.table(table).schema
    spark.createDataFrame([tuple(r[c] for c in columns) for r in rows], schema).write.insertInto(table)


def _point(spark: SparkSession, table: str, dt: str, location: str) -> None:
    args = {"t": table, "dt": dt, "loc": location}
    if partition_location(spark, table, dt) is None:
        spark.sql("ALTER TABLE IDENTIFIER(:t) ADD IF NOT EXISTS PARTITION (dt = :dt) LOCATION :loc", args=args)
    else:
        spark.sql("ALTER TABLE IDENTIFIER(:t) PARTITION (dt = :dt) SET LOCATION :loc", args=args)
    spark.catalog.refreshTable(table)


def publish(spark: SparkSession, tables: Tables, dt: str, version: str, action: str = "publish",
            reason: str = "", keep_versions: int | None = None) -> str | None:
    """Point dt of the quarantine table, then of the output table, at `version`, and log it.

    `action`: publish | override | rollback. Returns the version published before (None if none).
    A version that is already published is left as it is (no log row). Raises PublishError when the
    version's directories are not both complete. With keep_versions, older staged versions of dt
    beyond that many are removed afterwards (never the published one).
    """
    if not VERSION.match(version):
        raise PublishError(f"'{version}' is not a version name (see `tagger history --date {dt}`).")
    out_dir = version_dir(spark, tables.output, dt, version)
    q_dir = version_dir(spark, tables.quarantine, dt, version)
    missing = [d for d in (out_dir, q_dir) if not storage.exists(spark, f"{d}/_SUCCESS")]
    if missing:
        raise PublishError(f"version {version} of {dt} is not staged completely (missing {', '.join(missing)}). "
                           f"List the staged versions with `tagger history --date {dt}`.")
    before = published_version(spark, tables, dt)
    if before == version and version_of(partition_location(spark, tables.quarantine, dt)) == version:
        return before
    _point(spark, tables.quarantine, dt, q_dir)
    if failpoint("crash_between_switches"):
        raise RuntimeError("TAGGER_FAILPOINT: crashed between the quarantine and the output switch")
    _point(spark, tables.output, dt, out_dir)
    _append(spark, tables.publish_log, [dict(version=version, previous_version=before, action=action, actor=actor(),
                                             reason=reason, at=_now(), dt=dt)])
    if keep_versions:
        cleanup(spark, tables, dt, keep_versions)
    return before


def repair(spark: SparkSession, tables: Tables, dt: str) -> str | None:
    """If a crash between the two switches left the quarantine and the output naming different
    versions, point the quarantine back at the output's version (what readers of the output see)
    and log a 'repair'. Returns the version repaired to, or None when nothing was wrong."""
    out_version = published_version(spark, tables, dt)
    q_version = version_of(partition_location(spark, tables.quarantine, dt))
    if out_version is None or q_version == out_version:
        return None
    q_dir = version_dir(spark, tables.quarantine, dt, out_version)
    _point(spark, tables.quarantine, dt, q_dir)
    _append(spark, tables.publish_log, [dict(version=out_version, previous_version=q_version, action="repair",
                                             actor=actor(), reason="the quarantine named another version than the "
                                             "output (a crash between the two switches)", at=_now(), dt=dt)])
    return out_version


def cleanup(spark: SparkSession, tables: Tables, dt: str, keep: int) -> list[str]:
    """Remove staged versions of dt beyond the `keep` newest, never the published one; returns the
    removed version names."""
    published = published_version(spark, tables, dt)
    removed = []
    for table in (tables.output, tables.quarantine):
        root = f"{table_location(spark, table).rstrip('/')}/{VERSIONS_DIR}/dt={dt}"
        versions = sorted(storage.subdirectories(spark, root), key=lambda v: v[1], reverse=True)
        for name, _ in versions[keep:]:
            if name != published:
                storage.delete(spark, f"{root}/{name}")
                removed.append(name)
    return sorted(set(removed))


def staged_versions(spark: SparkSession, tables: Tables, dt: str):
    """The versions table's rows for dt (newest row per version), newest first, as a pandas
    DataFrame with the table's columns plus `on_disk` (both directories still there)."""
    df = spark.table(tables.versions).filter(F.col("dt") == dt).toPandas()
    if df.empty:
        return df
    df = df.sort_values("staged_at").drop_duplicates("version", keep="last").sort_values("staged_at", ascending=False)
    df["on_disk"] = [storage.exists(spark, f"{o}/_SUCCESS") and storage.exists(spark, f"{q}/_SUCCESS")
                     for o, q in zip(df["output_location"], df["quarantine_location"])]
    return df.reset_index(drop=True)


def recorded_input_digest(spark: SparkSession, tables: Tables, dt: str, version: str) -> str | None:
    """The input digest of `version`'s newest row in the versions table (None: no row, or a row
    written before digests were recorded)."""
    rows = staged_versions(spark, tables, dt)
    row = rows[rows["version"] == version] if not rows.empty else rows
    return None if row.empty or not isinstance(row.iloc[0].get("input_digest"), str) else row.iloc[0]["input_digest"]


def published_with(spark: SparkSession, tables: Tables, dt: str, run_id: str, input_digest: str) -> str | None:
    """The version published for dt if it was made by run `run_id` from inputs with `input_digest`
    (so rerunning the date would write the same rows), else None. Reads catalog metadata and the
    versions table."""
    current = published_version(spark, tables, dt)
    if current is None or not current.startswith(f"{run_id}-"):  # a version is "<run_id>-<8 hex>" (stage)
        return None
    return current if recorded_input_digest(spark, tables, dt, current) == input_digest else None


def publish_log(spark: SparkSession, tables: Tables, dt: str):
    """The publish log's rows for dt, oldest first (pandas)."""
    return spark.table(tables.publish_log).filter(F.col("dt") == dt).toPandas().sort_values("at").reset_index(drop=True)


def rollback(spark: SparkSession, tables: Tables, dt: str, to: str | None, reason: str) -> tuple[str | None, str]:
    """Point dt back at `to`, or (None) at the version published before the current one. Returns
    (the version published until now, the version published now). Raises PublishError when there is
    nothing to roll back to or the version is no longer on disk."""
    current = published_version(spark, tables, dt)
    if to is None:
        log = publish_log(spark, tables, dt)
        earlier = [v for v in log.loc[log["action"] != "repair", "version"].tolist() if v != current]
        if not earlier:
            raise PublishError(f"{dt} has no earlier published version to roll back to "
                               f"(see `tagger history --date {dt}`).")
        to = earlier[-1]
    publish(spark, tables, dt, to, action="rollback", reason=reason)
    return current, to
