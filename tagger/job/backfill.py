"""Backfill a range of dates in one pass: the fixed costs of a run (Spark jobs per stage, warming the
Python workers, the tag stage's scheduling) are paid once per pass, not once per date.

For each date: prepare it (check its inputs, spec, run id, input digest), and skip it when the
version published for it came from the same run id and the same inputs (`published_with`), unless
forced. The due dates are grouped into passes: dates that share a tagging spec (the same tag
snapshot) and, with `max_items_per_pass`, at most that many pool rows together. In a pass the
sources of all dates (each row carrying its date) are normalized in one plan by the same code as
`tagger run` (tagger.job.normalize with keys=(run_date,)), the items of all dates are tagged in one
mapInPandas (the date rides along as a column), and then each date is checked, staged, audited and
published on its own (tagger/job/pipeline.py, finish). A date that fails does not stop the others:
the result lists every failure. Each pass holds the run locks of all its dates.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tagger.config import Config
from tagger.job.audit import AuditRefused
from tagger.job.pipeline import PreparedDate, finish, normalize_persisted, prepare, record_run
from tagger.job.publish import published_with
from tagger.job.summary import RunSummary
from tagger.job.tag import tag_items
from tagger.models.progress import Stages, format_seconds
from tagger.ops.failpoints import failing_date
from tagger.ops.run_lock import run_lock

RUN_DATE = "run_date"  # the column that carries each row's date through a pass


@dataclass
class BackfillResult:
    """What a backfill did: summaries of the dates published (or refused) by this command, dates
    skipped as already published from the same run id and inputs ({date: version}), and failures
    ({date: the exception})."""
    done: list[RunSummary] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, BaseException] = field(default_factory=dict)


def plan_passes(days: list[PreparedDate], max_items_per_pass: int | None) -> list[list[PreparedDate]]:
    """Group due dates (in date order) into passes: consecutive dates with the same tagging spec
    (spec fingerprint), each pass at most `max_items_per_pass` pool rows (a single larger date is a
    pass of its own; None: no limit). Pure; raises nothing."""
    passes: list[list[PreparedDate]] = []
    rows = 0
    for day in days:
        if (not passes or passes[-1][-1].spec.fingerprint != day.spec.fingerprint
                or (max_items_per_pass is not None and rows + day.pool_rows > max_items_per_pass)):
            passes.append([])
            rows = 0
        passes[-1].append(day)
        rows += day.pool_rows
    return passes


def backfill(spark: SparkSession, cfg: Config, dates: list[str], force: bool = False,
             max_items_per_pass: int | None = None, log=print) -> BackfillResult:
    """Tag, stage, audit and publish every date of `dates` (yyyy-MM-dd, in order) in passes (see the
    module docstring). force: also dates already published from the same run id and inputs. `log`
    gets one line per stage of a pass and per date written, with items/s and an ETA. Returns a
    BackfillResult; never raises for a single date's failure (MissingInputError, RunLockedError,
    InvariantError, AuditRefused, ...): those are in result.failed."""
    result = BackfillResult()
    due: list[PreparedDate] = []
    for i, run_date in enumerate(dates, 1):
        try:
            day = prepare(spark, cfg, run_date)
        except Exception as exc:  # reported with the others at the end
            result.failed[run_date] = exc
            log(f"[{i}/{len(dates)}] {run_date}: cannot run: {exc}")
            continue
        version = None if force else published_with(spark, cfg.tables, run_date, day.run_id, day.input_digest)
        if version:
            result.skipped[run_date] = version
            log(f"[{i}/{len(dates)}] {run_date}: skipped, version {version} is published from the same run id "
                f"and inputs (--force reruns it)")
        else:
            due.append(day)
    passes = plan_passes(due, max_items_per_pass)
    started, written = time.perf_counter(), 0
    for n, days in enumerate(passes, 1):
        log(f"pass {n}/{len(passes)}: {len(days)} date(s) {days[0].run_date}..{days[-1].run_date}, "
            f"{sum(d.pool_rows for d in days):,} pool rows")
        for summary in _run_pass(spark, cfg, days, result, log):
            written += 1
            result.done.append(summary)
            elapsed = time.perf_counter() - started
            left = len(due) - written - sum(1 for d in due if d.run_date in result.failed)
            rate = summary.items_tagged / max(summary.stage_seconds.get("total", 0.0), 1e-9)
            log(f"[{summary.run_date}] {summary.outcome or 'done'}: {summary.items_tagged:,} items "
                f"({rate:,.0f} items/s in its share of the pass), {written}/{len(due)} dates written, "
                f"elapsed {format_seconds(elapsed)}, ETA {format_seconds(elapsed / written * left)}")
    return result


def _run_pass(spark: SparkSession, cfg: Config, days: list[PreparedDate], result: BackfillResult, log):
    """Normalize, tag and finish the dates of one pass; yields each finished date's RunSummary and
    records failures in `result`."""
    stages = Stages(log, prefix=f"[pass {days[0].run_date}..{days[-1].run_date}] stage ")
    t0 = time.perf_counter()
    with ExitStack() as locks:
        held = []
        for day in days:
            try:
                locks.enter_context(run_lock(spark, cfg.lock_dir, cfg.tables.output, day.run_date,
                                             cfg.lock_stale_after_hours, log=log))
                held.append(day)
            except Exception as exc:
                result.failed[day.run_date] = exc
                log(f"{day.run_date}: {exc}")
        if not held:
            return
        stages.start("extract_normalize")
        # One plan for the whole pass: each date's sources carry its run_date, and normalize keys its
        # dedupe, speech windows and joins on it, so dates never mix and the stages (and their tasks)
        # do not multiply with the number of dates.
        norm = normalize_persisted(*(_union([getattr(day.sources, name).withColumn(RUN_DATE, F.lit(day.run_date))
                                             for day in held]) for name in ("pool", "asr", "ocr")),
                                   cfg, keys=(RUN_DATE,))
        items = norm.items
        selected = _union([day.selected_items().withColumn(RUN_DATE, F.lit(day.run_date)) for day in held])
        counts = _counts_by_date(items, norm.quarantine, selected)
        stages.start("tag")
        tagged, loads = tag_items(spark, cfg, items, held[0].spec, held[0].run_id, carry=(RUN_DATE,))
        # Cut the lineage before the dates are finished: each date's summary, digests and writes plan
        # against these two frames, and with the pass's whole normalize and tag plan under them the
        # planning alone took about a second per action (a date's finish 6.0 s -> 2.3 s measured on
        # 10,000 items). localCheckpoint keeps the rows on the executors (memory and disk); an
        # executor lost before the pass ends fails the dates not yet written, and rerunning the same
        # command finishes them. Spark's cleaner drops the blocks once the frames are unreferenced.
        tagged, quarantine = _cut_lineage(tagged), _cut_lineage(norm.quarantine)
        for df in norm.frames:
            df.unpersist()
        tagged_rows = {r[RUN_DATE]: r["n"] for r in tagged.groupBy(RUN_DATE).agg(F.count("*").alias("n")).collect()}
        stages.end()
        shared = {k: v / len(held) for k, v in stages.seconds.items()}  # each date's share of the pass
        fail_on = failing_date()
        for day in held:
            d = day.run_date
            day_stages = Stages(log, prefix=f"[{d}] stage ")
            day_t0 = time.perf_counter()
            try:
                if fail_on == d:
                    raise RuntimeError(f"TAGGER_FAILPOINT: injected failure of {d}")
                day_tagged = (tagged.filter(F.col(RUN_DATE) == d).drop(RUN_DATE)
                              .withColumn("run_id", F.lit(day.run_id)).persist(StorageLevel.MEMORY_AND_DISK))
                day_counts = {**counts.get(d, dict(selected=0, items=0, quarantine=0, dropped=0)),
                              "tagged": tagged_rows.get(d, 0)}
                day_quarantine = quarantine.filter(F.col(RUN_DATE) == d).drop(RUN_DATE)
                summary = finish(spark, cfg, day, day_tagged, day_quarantine, day_counts, loads, day_stages)
                summary.stage_seconds = {**{f"pass_{k}": round(v, 2) for k, v in shared.items()},
                                         **summary.stage_seconds}
                summary.stage_seconds["total"] = round(time.perf_counter() - day_t0 + sum(shared.values()), 2)
                yield record_run(spark, cfg, summary, day, [day_tagged])
            except Exception as exc:
                result.failed[d] = exc
                if isinstance(exc, AuditRefused):
                    log(f"[{d}] REFUSED by the audits: version {exc.version} stays staged")
                else:
                    log(f"[{d}] FAILED: {exc}")
        log(f"[pass {days[0].run_date}..{days[-1].run_date}] done in {format_seconds(time.perf_counter() - t0)}")


def _cut_lineage(df: DataFrame) -> DataFrame:
    """The rows of `df` (computed now, once) under a plan that no longer holds how they were made;
    `df`'s own cache is dropped."""
    out = df.localCheckpoint(eager=True)
    df.unpersist()
    return out


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out


def _counts_by_date(items: DataFrame, quarantine: DataFrame, selected: DataFrame) -> dict[str, dict[str, int]]:
    """pipeline.count_items' counts for every date of a pass, in three Spark jobs instead of four per date."""
    counts: dict[str, dict[str, int]] = {}

    def add(df: DataFrame, key: str) -> None:
        for r in df.groupBy(RUN_DATE).agg(F.count("*").alias("n")).collect():
            counts.setdefault(r[RUN_DATE], dict(selected=0, items=0, quarantine=0, dropped=0))[key] = r["n"]

    add(selected, "selected")
    add(items, "items")
    add(quarantine, "quarantine")
    add(quarantine.filter("scope = 'item' AND itemid IS NOT NULL").select(RUN_DATE, "itemid").distinct(), "dropped")
    return counts
