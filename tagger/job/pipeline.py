"""One run date, end to end: check inputs -> extract -> normalize -> tag -> invariant -> stage ->
audit -> publish.

This module only wires the stages (tagger/job/extract.py, normalize.py, tag.py, audit.py,
stats.py, publish.py, write.py) and times them; the caller owns the SparkSession
(jobs/tag_daily.py, the CLI, tests).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tagger.config import Config
from tagger.job.audit import AuditRefused, check_invariant, outcome, run_audits
from tagger.job.extract import check_inputs, extract
from tagger.job.normalize import normalize
from tagger.job.publish import publish, published_version, record_version, repair, stage
from tagger.job.stats import daily_stats, published_history, write_daily_stats
from tagger.job.summary import RunSummary, quarantine_reasons, run_fingerprint, tag_counts
from tagger.job.tag import build_spec, load_tag_index, tag_items
from tagger.job.write import ensure_tables, write_metrics
from tagger.models.progress import Stages
from tagger.ops.run_lock import run_lock
from tagger.udfs.tagging import Tagger


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
        return _run_locked(spark, cfg, run_date, log)


def _run_locked(spark: SparkSession, cfg: Config, run_date: str, log) -> RunSummary:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stages = Stages(log, prefix=f"[{run_date}] stage ")
    t0 = time.perf_counter()

    stages.start("prepare")
    check_inputs(spark, cfg, run_date)
    sources = extract(spark, cfg, run_date)
    tag_index = load_tag_index(sources.tag_dim)
    threads = cfg.tagging.torch_threads or int(spark.conf.get("spark.task.cpus", "1"))
    spec, model_version, disabled = build_spec(cfg, tag_index, cfg.tables.tag_dim, threads)
    run_id = run_fingerprint(run_date, cfg, model_version, spec.rules.version, tag_index)
    ensure_tables(spark, cfg.tables)
    repaired = repair(spark, cfg.tables, run_date)  # a crash between two switches of an earlier run

    stages.start("extract_normalize")
    norm = normalize(sources.pool, sources.asr, sources.ocr, cfg.text)
    items = norm.items.persist(StorageLevel.MEMORY_AND_DISK)
    quarantine = norm.quarantine.persist(StorageLevel.MEMORY_AND_DISK)
    selected = sources.pool.filter(F.col("itemid").isNotNull()).select("itemid").distinct().count()
    n_items, n_quarantine = items.count(), quarantine.count()

    stages.start("tag")
    tagged, loads = tag_items(spark, cfg, items, spec, run_id)
    n_tagged = tagged.count()

    stages.start("summary")
    dropped_items = (quarantine.filter("scope = 'item' AND itemid IS NOT NULL").select("itemid").distinct().count())
    check_invariant(run_date, selected, n_items, n_tagged, dropped_items)
    # The summary is read from the cached results before they are written: Spark drops the cache of
    # a DataFrame once it has been inserted into a table, and anything read from `tagged` after the
    # write would run the models again (measured: the summary stage took longer than tagging).
    counts, implied, with_tags = tag_counts(tagged)
    reasons = quarantine_reasons(quarantine)

    stages.start("stage")
    staged = stage(spark, cfg.tables, run_date, run_id, tagged, quarantine.withColumn("run_id", F.lit(run_id)))
    stats = daily_stats(tagged, reasons, selected, cfg.gate_head, run_date, staged.version)
    write_daily_stats(spark, cfg.tables.daily_stats, stats)

    stages.start("audit")
    if published_version(spark, cfg.tables, run_date) == staged.version:
        results = [dict(audit="publish", level="warn", status="note", value=None, limit=None,
                        message=f"version {staged.version} is already published: nothing to do")]
    else:
        history = published_history(spark, cfg.tables, run_date, cfg.publish.history_days)
        results = run_audits(cfg.publish, stats, history, model_version, lambda: Tagger(spec))
    verdict = outcome(results)

    stages.start("publish")
    if staged.reused is False or verdict != "passed":
        record_version(spark, cfg.tables, staged, model_version, spec.rules.version, verdict, results)
    if verdict != "refused":
        publish(spark, cfg.tables, run_date, staged.version, keep_versions=cfg.publish.keep_versions)
    stages.end()

    summary = RunSummary(
        run_date=run_date, run_id=run_id, items_selected=selected, items_tagged=n_tagged,
        items_with_tags=with_tags, items_quarantined=dropped_items,
        quarantine_rows=n_quarantine, tag_counts=counts, quarantine_reasons=reasons,
        model_version=model_version, rules_version=spec.rules.version, disabled_labels=disabled,
        # read after the write: a write that ran the models again would show here
        model_loads=loads.models.value, python_workers=len(loads.workers.value), implied_parents=implied,
        rows_through_models=loads.rows.value, version=staged.version, outcome=verdict, audits=results,
        repaired=repaired, worker_devices=dict(loads.devices.value))
    summary.stage_seconds = {**stages.seconds, "total": round(time.perf_counter() - t0, 2)}
    write_metrics(spark, cfg, summary, started_at)
    items.unpersist()
    quarantine.unpersist()
    tagged.unpersist()
    if verdict == "refused":
        raise AuditRefused(refusal_message(run_date, staged.version, results), staged.version, results)
    return summary


def refusal_message(run_date: str, version: str, results: list[dict]) -> str:
    """What failed, by how much, and the two ways on."""
    failed = "\n".join(f"  {r['audit']}: {r['message']}" for r in results if r["status"] == "fail")
    return (f"{run_date}: the audits refused version {version}; nothing was published (readers still see the "
            f"previous version). Failed:\n{failed}\nEither review it and publish it anyway:\n"
            f"  tagger publish --date {run_date} --version {version} --reason \"...\"\n"
            f"or fix the cause (inputs, models, rules) and rerun the date. All results: "
            f"tagger history --date {run_date}")
