"""One run date, end to end: check inputs -> extract -> normalize -> tag -> write.

The caller owns the SparkSession (jobs/tag_daily.py, the CLI, tests).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagger.config import Config, ConfigError
from tagger.job.extract import check_inputs, extract
from tagger.ops.failpoints import failpoint
from tagger.job.normalize import normalize
from tagger.ops.run_lock import run_lock
from tagger.job.write import append_partition, ensure_tables, overwrite_partition
from tagger.udfs.hierarchy import SOURCE as HIERARCHY
from tagger.udfs.rules import load_rules
from tagger.udfs.tagging import OUTPUT_SCHEMA, LoadCounter, TaggerSpec, tag_partitions


class InvariantError(RuntimeError):
    """The run's output would not account for every selected item exactly once; nothing was written."""


@dataclass
class RunSummary:
    run_date: str
    run_id: str
    items_selected: int = 0
    items_tagged: int = 0
    items_with_tags: int = 0
    items_quarantined: int = 0
    quarantine_rows: int = 0
    tag_counts: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    rules_version: str = ""
    disabled_labels: list[str] = field(default_factory=list)
    model_loads: int = 0  # heads loaded, summed over Python workers
    python_workers: int = 0  # distinct Python worker processes that tagged
    implied_parents: int = 0  # parent tags added because a child tag was emitted without its parent
    rows_through_models: int = 0  # = items_tagged when the tag stage ran once (a recompute shows here)

    def format(self) -> str:
        lines = [
            f"run {self.run_date}  run_id={self.run_id}",
            f"  items selected     {self.items_selected:>9,}",
            f"  items tagged       {self.items_tagged:>9,}   ({self.items_with_tags:,} with at least one tag)",
            f"  items quarantined  {self.items_quarantined:>9,}   ({self.quarantine_rows:,} quarantine rows in all)",
        ]
        for reason, n in sorted(self.quarantine_reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {n:>7,}  {reason}")
        lines.append("  tags:")
        for path, n in sorted(self.tag_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"      {n:>7,}  {path}")
        if self.implied_parents:
            lines.append(f"  {self.implied_parents:,} parent tags implied by a child tag the heads disagreed on "
                         f"(source 'hierarchy')")
        if self.disabled_labels:
            lines.append("  labels switched off in their artifacts: " + ", ".join(self.disabled_labels))
        lines.append(f"  models loaded {self.model_loads} times in {self.python_workers} Python worker(s); "
                     f"{self.rows_through_models:,} rows through the models")
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
        lines.append(f"  seconds: {stages}")
        lines.append(f"  models: {self.model_version}   rules: {self.rules_version}")
        return "\n".join(lines)


def load_tag_index(tag_dim: DataFrame) -> dict[str, tuple[int, str]]:
    """Active content tags: tag path name -> (id, name). A path listed twice keeps its lowest id."""
    index: dict[str, tuple[int, str]] = {}
    for row in tag_dim.orderBy("id").collect():  # extract_tag_dim.sql excludes NULL ids and paths
        index.setdefault(row["tag_path_name"].strip("/"), (int(row["id"]), row["tag_name"]))
    return index


def build_spec(cfg: Config, tag_index: dict[str, tuple[int, str]], tag_dim_table: str,
               torch_threads: int | None) -> tuple[TaggerSpec, str, list[str]]:
    """Read the rules and the artifacts' sidecars; refuse tags the tag dimension lacks.

    Returns the spec, the model version string and the labels switched off in artifacts.
    """
    from tagger.models.spec import artifact_version, read_spec

    rules = load_rules(cfg.rules_path)
    missing = [f"rule '{r.id}' -> {r.tag}" for r in rules.rules if r.tag not in tag_index]
    versions, disabled = [], []
    for head in cfg.heads:
        spec = read_spec(head.path)
        # version@digest: a recalibrated artifact (or ensemble member) is a new model version
        versions.append(f"{head.name}={artifact_version(head.path, spec)}")
        reasons = spec.extra.get("disabled_reasons") or {}
        for label, on in zip(spec.labels, spec.enabled):
            path = f"{head.parent}/{label}"
            if not on:
                disabled.append(f"{head.name}:{label}" + (f" ({reasons[label]})" if reasons.get(label) else ""))
            elif path not in tag_index:
                missing.append(f"head '{head.name}' label '{label}' -> {path}")
    if missing:
        raise ConfigError(
            f"These tags are not active content tags (tag_type_name='内容标签', status=1) in {tag_dim_table}: "
            + "; ".join(missing) + f". Fix: add them to the tag dimension, correct the rule in {cfg.rules_path}, "
            f"the head's parent in {cfg.source}, or switch the label off in its artifact's tagger_head.json.")
    spec = TaggerSpec(heads=cfg.heads, gate_head=cfg.gate_head, rules=rules, tag_index=tag_index,
                      batch_size=cfg.tagging.batch_size, torch_threads=torch_threads,
                      fail_after_batches=failpoint("tag_after_batches"), model_version=";".join(versions))
    return spec, spec.model_version, disabled


def run_fingerprint(run_date: str, cfg: Config, model_version: str, rules_version: str) -> str:
    """Deterministic run id: same date, models, rules and config -> same id, identical rows."""
    payload = json.dumps([model_version, rules_version, cfg.raw], sort_keys=True, ensure_ascii=False, default=str)
    return f"{run_date}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def _timed(stages: dict[str, float], name: str, started: float) -> float:
    now = time.perf_counter()
    stages[name] = round(now - started, 2)
    return now


def run_date(spark: SparkSession, cfg: Config, run_date: str, log=print) -> RunSummary:
    """Tag one date, holding the run lock of (output table, date) throughout."""
    with run_lock(spark, cfg.lock_dir, cfg.tables.output, run_date, cfg.lock_stale_after_hours, log=log):
        return _run_locked(spark, cfg, run_date)


def _run_locked(spark: SparkSession, cfg: Config, run_date: str) -> RunSummary:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stages: dict[str, float] = {}
    t0 = clock = time.perf_counter()

    check_inputs(spark, cfg, run_date)
    sources = extract(spark, cfg, run_date)
    tag_index = load_tag_index(sources.tag_dim)
    threads = cfg.tagging.torch_threads or int(spark.conf.get("spark.task.cpus", "1"))
    spec, model_version, disabled = build_spec(cfg, tag_index, cfg.tables.tag_dim, threads)
    run_id = run_fingerprint(run_date, cfg, model_version, spec.rules.version)
    ensure_tables(spark, cfg.tables)
    clock = _timed(stages, "prepare", clock)

    norm = normalize(sources.pool, sources.asr, sources.ocr, cfg.text)
    items = norm.items.persist(StorageLevel.MEMORY_AND_DISK)
    quarantine = norm.quarantine.persist(StorageLevel.MEMORY_AND_DISK)
    selected = sources.pool.filter(F.col("itemid").isNotNull()).select("itemid").distinct().count()
    n_items, n_quarantine = items.count(), quarantine.count()
    clock = _timed(stages, "extract_normalize", clock)

    partitions = cfg.tagging.partitions or spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.tagging.arrow_max_records_per_batch))
    loads = LoadCounter(spark.sparkContext)
    # Sorted inside each partition: shuffle order is not fixed, and it decides which rows share a
    # batch (and its padding), so without it a rerun could differ in the last bits of a score.
    tagged = (items.select("itemid", "dtype", "doc_text").repartition(partitions, "itemid")
              .sortWithinPartitions("itemid")
              .mapInPandas(tag_partitions(spec, loads), OUTPUT_SCHEMA)
              .withColumn("model_version", F.lit(model_version))
              .withColumn("rules_version", F.lit(spec.rules.version))
              .withColumn("run_id", F.lit(run_id))
              .persist(StorageLevel.MEMORY_AND_DISK))
    n_tagged = tagged.count()
    clock = _timed(stages, "tag", clock)

    dropped_items = (quarantine.filter("scope = 'item' AND itemid IS NOT NULL").select("itemid").distinct().count())
    if n_tagged != n_items or n_tagged + dropped_items != selected:
        raise InvariantError(
            f"{run_date}: {selected} items selected but {n_tagged} tagged + {dropped_items} quarantined as items "
            f"(normalize produced {n_items}); nothing was written. This is a bug: please report it with the date.")

    # The summary is read from the cached results before they are written: Spark drops the cache of
    # a DataFrame once it has been inserted into a table, and anything read from `tagged` after the
    # write would run the models again (measured: the summary stage took longer than tagging).
    tag_counts: dict[str, int] = {}
    implied = 0
    for r in (tagged.select(F.explode("tags").alias("t"))
              .groupBy(F.col("t.tag_path").alias("tag_path"), F.col("t.source").alias("source"))
              .agg(F.count("*").alias("n")).collect()):
        tag_counts[r["tag_path"]] = tag_counts.get(r["tag_path"], 0) + r["n"]
        implied += r["n"] if r["source"] == HIERARCHY else 0
    reasons = {r["reason"]: r["n"] for r in quarantine
               .select(F.regexp_extract("reason", r"^[^:]*", 0).alias("reason"))
               .groupBy("reason").agg(F.count("*").alias("n")).collect()}
    with_tags = tagged.filter(F.size("tags") > 0).count()
    clock = _timed(stages, "summary", clock)

    overwrite_partition(spark, tagged, cfg.tables.output, run_date, empty=n_tagged == 0)
    overwrite_partition(spark, quarantine.withColumn("run_id", F.lit(run_id)), cfg.tables.quarantine, run_date,
                        empty=n_quarantine == 0)
    _timed(stages, "write", clock)

    summary = RunSummary(
        run_date=run_date, run_id=run_id, items_selected=selected, items_tagged=n_tagged,
        items_with_tags=with_tags, items_quarantined=dropped_items,
        quarantine_rows=n_quarantine, tag_counts=tag_counts, quarantine_reasons=reasons,
        model_version=model_version, rules_version=spec.rules.version, disabled_labels=disabled,
        # read after the write: a write that ran the models again would show here
        model_loads=loads.models.value, python_workers=len(loads.workers.value), implied_parents=implied,
        rows_through_models=loads.rows.value)
    stages["total"] = round(time.perf_counter() - t0, 2)
    summary.stage_seconds = stages
    write_metrics(spark, cfg, summary, started_at)
    items.unpersist()
    quarantine.unpersist()
    tagged.unpersist()
    return summary


def write_metrics(spark: SparkSession, cfg: Config, s: RunSummary, started_at: str) -> None:
    row = dict(run_id=s.run_id, started_at=started_at, seconds=s.stage_seconds["total"],
               items_selected=s.items_selected, items_tagged=s.items_tagged, items_with_tags=s.items_with_tags,
               items_quarantined=s.items_quarantined, quarantine_rows=s.quarantine_rows, tag_counts=s.tag_counts,
               quarantine_reasons=s.quarantine_reasons, stage_seconds=s.stage_seconds,
               model_version=s.model_version, rules_version=s.rules_version,
               model_loads=s.model_loads, python_workers=s.python_workers, implied_parents=s.implied_parents)
    schema = spark.table(cfg.tables.metrics).drop("dt").schema
    append_partition(spark, spark.createDataFrame([row], schema), cfg.tables.metrics, s.run_date)
