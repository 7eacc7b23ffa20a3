"""One run date, end to end: check inputs -> extract -> normalize -> tag -> invariant -> stage ->
audit -> publish.

This module only wires the stages (tagger/job/extract.py, normalize.py, tag.py, audit.py,
stats.py, publish.py, write.py) and times them; the caller owns the SparkSession
(jobs/tag_daily.py, the CLI, tests).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagger.config import Config
from tagger.job.audit import AuditRefused, check_invariant, outcome, run_audits
from tagger.job.extract import Sources, check_inputs, extract, input_digest
from tagger.job.normalize import Normalized, normalize
from tagger.job.publish import (publish, published_version, record_version, recorded_input_digest, repair,
                                stage)
from tagger.job.stats import daily_stats, published_history, write_daily_stats
from tagger.job.summary import RunSummary, quarantine_reasons, run_fingerprint, tag_counts
from tagger.job.tag import build_spec, load_tag_index, tag_items
from tagger.job.write import ensure_tables, write_metrics
from tagger.models.progress import Stages
from tagger.ops.run_lock import run_lock
from tagger.udfs.tagging import Tagger, TaggerSpec


def run_date(spark: SparkSession, cfg: Config, run_date: str, log=print) -> RunSummary:
    """Tag one date (yyyy-MM-dd), holding the run lock of (output table, date) throughout, and
    return its RunSummary. Stages the output and quarantine rows as a new version of the date,
    audits it and publishes it (tagger/job/publish.py); appends one metrics row. `log` gets a line
    as each stage (prepare, extract_normalize, tag, summary, stage, audit, publish) starts and ends,
    with its seconds. Raises MissingInputError (an input has not landed), ConfigError /
    ArtifactError (bad config, rules or heads), RunLockedError (another run holds the date),
    InvariantError (the output would lose or duplicate an item) and AuditRefused (the staged version
    failed an audit: it stays staged); on any of them the published partitions are left as they were."""
    with run_lock(spark, cfg.lock_dir, cfg.tables.output, run_date, cfg.lock_stale_after_hours, log=log):
        stages = Stages(log, prefix=f"[{run_date}] stage ")
        t0 = time.perf_counter()
        stages.start("prepare")
        day = prepare(spark, cfg, run_date)
        stages.start("extract_normalize")
        norm = day.normalized(cfg)
        items, quarantine = norm.items, norm.quarantine
        counts = count_items(items, quarantine, day.selected_items())
        stages.start("tag")
        tagged, loads = tag_items(spark, cfg, items, day.spec, day.run_id)
        counts["tagged"] = tagged.count()
        summary = finish(spark, cfg, day, tagged, quarantine, counts, loads, stages)
        summary.stage_seconds["total"] = round(time.perf_counter() - t0, 2)
        return record_run(spark, cfg, summary, day, [*norm.frames, tagged])


@dataclass
class PreparedDate:
    """One run date checked and ready to tag: its lazy sources, the tagging spec built from its tag
    snapshot, its run id, the digest of its inputs (tagger.job.extract.input_digest), the version a
    repair pointed the quarantine back at (or None) and the run's start time (ISO, UTC)."""
    run_date: str
    sources: Sources
    spec: TaggerSpec
    model_version: str
    disabled: list[str]
    run_id: str
    input_digest: str
    pool_rows: int
    repaired: str | None
    started_at: str

    def normalized(self, cfg: Config) -> Normalized:
        """normalize_persisted over this date's sources."""
        return normalize_persisted(self.sources.pool, self.sources.asr, self.sources.ocr, cfg, keys=())

    def selected_items(self) -> DataFrame:
        """The distinct non-null item ids the team's filter selected (one column, itemid)."""
        return self.sources.pool.filter(F.col("itemid").isNotNull()).select("itemid").distinct()


def normalize_persisted(pool: DataFrame, asr: DataFrame, ocr: DataFrame, cfg: Config, keys=()) -> Normalized:
    """tagger.job.normalize.normalize's items and quarantine (with `keys`, see there), persisted
    (memory and disk), with the intermediates they share persisted too (cache=True: payloads parsed
    once); unpersist `.frames` when done."""
    norm = normalize(pool, asr, ocr, cfg.text, cache=True, keys=keys)
    return Normalized(norm.items.persist(StorageLevel.MEMORY_AND_DISK),
                      norm.quarantine.persist(StorageLevel.MEMORY_AND_DISK), norm.cached)


def prepare(spark: SparkSession, cfg: Config, run_date: str) -> PreparedDate:
    """Check the date's inputs, read its tag snapshot, build the tagging spec and run id, digest its
    inputs, make sure the output tables exist and mend a half-published earlier run. Raises
    MissingInputError, ConfigError and ArtifactError as run_date does."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    check_inputs(spark, cfg, run_date)
    sources = extract(spark, cfg, run_date)
    tag_index = load_tag_index(sources.tag_dim)
    threads = cfg.tagging.torch_threads or int(spark.conf.get("spark.task.cpus", "1"))
    spec, model_version, disabled = build_spec(cfg, tag_index, cfg.tables.tag_dim, threads)
    run_id = run_fingerprint(run_date, cfg, model_version, spec.rules.version, tag_index)
    digest, pool_rows = input_digest(sources)
    ensure_tables(spark, cfg.tables)
    repaired = repair(spark, cfg.tables, run_date)  # a crash between two switches of an earlier run
    return PreparedDate(run_date, sources, spec, model_version, disabled, run_id, digest, pool_rows, repaired,
                        started_at)


def count_items(items: DataFrame, quarantine: DataFrame, selected: DataFrame) -> dict[str, int]:
    """{selected, items, quarantine, dropped}: distinct item ids selected, items to tag, quarantine
    rows, and distinct items quarantined whole (scope 'item'), for the invariant check."""
    return {"selected": selected.count(), "items": items.count(), "quarantine": quarantine.count(),
            "dropped": quarantine.filter("scope = 'item' AND itemid IS NOT NULL").select("itemid").distinct().count()}


def finish(spark: SparkSession, cfg: Config, day: PreparedDate, tagged: DataFrame, quarantine: DataFrame,
           counts: dict[str, int], loads, stages: Stages) -> RunSummary:
    """After tagging: the invariant check, the summary's counts, stage -> audit -> publish of the
    date's version. `tagged`: the date's tagged rows (tag_items' columns, computed and persisted);
    `counts`: count_items' values plus 'tagged'; `loads`: the tag stage's LoadCounter. Returns the
    RunSummary (stage seconds from `stages`, without the total). Raises InvariantError before
    anything is written; an audit refusal leaves the version staged and shows in summary.outcome."""
    run_date, spec, model_version = day.run_date, day.spec, day.model_version
    stages.start("summary")
    check_invariant(run_date, counts["selected"], counts["items"], counts["tagged"], counts["dropped"])
    # The summary is read from the cached results before they are written: Spark drops the cache of
    # a DataFrame once it has been inserted into a table, and anything read from `tagged` after the
    # write would run the models again (measured: the summary stage took longer than tagging).
    tag_count, implied, with_tags, sources = tag_counts(tagged)
    reasons = quarantine_reasons(quarantine)

    stages.start("stage")
    staged = stage(spark, cfg.tables, run_date, day.run_id, tagged, quarantine.withColumn("run_id", F.lit(day.run_id)))
    stats = daily_stats(tagged, reasons, counts["selected"], cfg.gate_head, run_date, staged.version)
    write_daily_stats(spark, cfg.tables.daily_stats, stats)

    stages.start("audit")
    if published_version(spark, cfg.tables, run_date) == staged.version:
        results = [dict(audit="publish", level="warn", status="note", value=None, limit=None,
                        message=f"version {staged.version} is already published: nothing to do")]
    else:
        history = published_history(spark, cfg.tables, run_date, cfg.publish.history_days)
        # the golden set is scored here on the driver while the executors wait: torch's own thread
        # count (the driver's cores), not the one thread per task the workers use
        results = run_audits(cfg.publish, stats, history, model_version,
                             lambda: Tagger(replace(spec, torch_threads=None)))
    verdict = outcome(results)

    stages.start("publish")
    if staged.reused is False or verdict != "passed" or \
            recorded_input_digest(spark, cfg.tables, run_date, staged.version) != day.input_digest:
        record_version(spark, cfg.tables, staged, model_version, spec.rules.version, verdict, results,
                       day.input_digest)
    if verdict != "refused":
        publish(spark, cfg.tables, run_date, staged.version, keep_versions=cfg.publish.keep_versions)
    stages.end()

    summary = RunSummary(
        run_date=run_date, run_id=day.run_id, items_selected=counts["selected"], items_tagged=counts["tagged"],
        items_with_tags=with_tags, items_quarantined=counts["dropped"],
        quarantine_rows=counts["quarantine"], tag_counts=tag_count, tag_sources=sources,
        quarantine_reasons=reasons,
        model_version=model_version, rules_version=spec.rules.version, disabled_labels=day.disabled,
        # read after the write: a write that ran the models again would show here
        model_loads=loads.models.value, python_workers=len(loads.workers.value), implied_parents=implied,
        rows_through_models=loads.rows.value, version=staged.version, outcome=verdict, audits=results,
        repaired=day.repaired, worker_devices=dict(loads.devices.value))
    summary.stage_seconds = dict(stages.seconds)
    return summary


def record_run(spark: SparkSession, cfg: Config, summary: RunSummary, day: PreparedDate,
               cached: list[DataFrame]) -> RunSummary:
    """Append the run's metrics row, drop the `cached` DataFrames, and return `summary`; raises
    AuditRefused (with the refusal message) when the audits refused the staged version."""
    write_metrics(spark, cfg, summary, day.started_at)
    for df in cached:
        df.unpersist()
    if summary.outcome == "refused":
        raise AuditRefused(refusal_message(day.run_date, summary.version, summary.audits), summary.version,
                           summary.audits)
    return summary


def refusal_message(run_date: str, version: str, results: list[dict]) -> str:
    """What failed, by how much, and the two ways on."""
    failed = "\n".join(f"  {r['audit']}: {r['message']}" for r in results if r["status"] == "fail")
    return (f"{run_date}: the audits refused version {version}; nothing was published (readers still see the "
            f"previous version). Failed:\n{failed}\nEither review it and publish it anyway:\n"
            f"  tagger publish --date {run_date} --version {version} --reason \"...\"\n"
            f"or fix the cause (inputs, models, rules) and rerun the date. All results: "
            f"tagger history --date {run_date}")
