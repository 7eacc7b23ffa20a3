"""The daily job's commands, for data engineers and schedulers: run, backfill, demo, seed, sql,
preflight, and the write-audit-publish ones: publish, history, rollback, report. Exit codes: see
tagger.cli.common (0 done, 2 usage, 3 config/artifact, 4 missing input, 5 locked or HiveServer2
unreachable, 6 a gate refused, 1 anything else)."""
from __future__ import annotations

import csv
import os
import sys
import time
from datetime import date, timedelta

import click

from tagger.cli.common import (DATE, DEMO_DATE, DEMO_DAYS, DEMO_ITEMS, DEMO_START, READ_ONLY, WRITES, date_range,
                               exit_code, guarded, load_job_config, session)

# `tagger backfill`'s pass size in pool rows: measured on 2 cores, 10 days x 20k in one pass was 1.36x the
# per-date loop, and 30 days x 20k in one pass slower than the loop (docs/orchestration.md)
DEFAULT_ITEMS_PER_PASS = 200_000


@click.command(help="Tag one day: read the day's pool, ASR and OCR, tag every selected item and "
                   "overwrite exactly that dt partition of the output tables. Rerunning a date replaces "
                   "its partition; other dates are untouched.")
@click.option("--date", "run_date", type=DATE, required=True, help="Run date: the pool partition pt to tag.")
@click.pass_context
def run(ctx: click.Context, run_date: str) -> None:
    cfg = load_job_config(ctx)
    from tagger.job.pipeline import run_date as run_one

    spark = session(cfg, f"tagger-run-{run_date}")
    summary = guarded(lambda: run_one(spark, cfg, run_date, log=click.echo))
    click.echo(summary.format())


@click.command(help="Tag every date from --start to --end (inclusive). By default in one pass: the whole range is "
                   "extracted, normalized and tagged in one Spark job, then each date is staged, audited and "
                   "published on its own, with the same rows `tagger run --date D` writes. Resumable: a date "
                   "already published from the same run id and the same inputs is skipped (late-arriving speech "
                   "makes a date due again), so after a failure the same command finishes the rest. A failing "
                   "date does not stop the others; every failure is listed at the end and the exit code is the "
                   "first failure's (README, Exit codes).")
@click.option("--start", type=DATE, required=True, help="First date (yyyy-MM-dd).")
@click.option("--end", type=DATE, required=True, help="Last date, inclusive (yyyy-MM-dd).")
@click.option("--force", is_flag=True, help="Rerun dates already published from the same run id and inputs too.")
@click.option("--max-items-per-pass", type=click.IntRange(min=1), default=DEFAULT_ITEMS_PER_PASS, show_default=True,
              help="Split the range into passes of at most this many pool rows: it bounds memory, and past about "
                   "ten 20k-item days a longer pass got slower, not faster (docs/orchestration.md). A pass never "
                   "mixes tag snapshots.")
@click.option("--one-date-at-a-time", "per_date", is_flag=True,
              help="The old loop: `tagger run` for each date in turn (stops at the first failure). For comparison.")
@click.pass_context
def backfill(ctx: click.Context, start: str, end: str, force: bool, max_items_per_pass: int | None,
             per_date: bool) -> None:
    if start > end:
        raise click.BadParameter(f"--start {start} is after --end {end}.", param_hint="--start/--end")
    cfg = load_job_config(ctx)
    spark = session(cfg, f"tagger-backfill-{start}-{end}")
    dates = date_range(start, end)
    if per_date:
        from tagger.job.pipeline import run_date as run_one

        for i, day in enumerate(dates, 1):
            click.echo(f"[{i}/{len(dates)}] {day}")
            try:
                summary = guarded(lambda: run_one(spark, cfg, day, log=click.echo))
            except SystemExit:
                click.echo(f"Backfill stopped at {day}: {i - 1} of {len(dates)} dates done. "
                           f"Fix the error above, then rerun with --start {day} --end {end}.", err=True)
                raise
            click.echo(summary.format())
        return
    from tagger.job.backfill import backfill as run_backfill

    result = guarded(lambda: run_backfill(spark, cfg, dates, force=force, max_items_per_pass=max_items_per_pass,
                                          log=click.echo))
    for summary in result.done:
        click.echo(summary.format())
    click.echo(f"backfill {start}..{end}: {len(result.done)} date(s) written, {len(result.skipped)} skipped "
               f"(already published from the same run id and inputs), {len(result.failed)} failed")
    if result.failed:
        for day, exc in sorted(result.failed.items()):
            click.echo(f"  {day}: exit {exit_code(exc)}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                       err=True)
        click.echo("Fix the causes, then rerun the same command: the dates done are skipped.", err=True)
        sys.exit(exit_code(result.failed[min(result.failed)]))


@click.command(help="Generate deterministic demo data and write it into the source tables of the config "
                   "(production names) in the embedded catalog: pool, ASR, OCR, tag dimension, true labels.")
@click.option("--items", type=click.IntRange(min=1), default=DEMO_ITEMS, show_default=True,
              help="Items the team's filter selects, over all days (about 8% more rows are written).")
@click.option("--start", type=DATE, default=DEMO_START, show_default=True, help="First day.")
@click.option("--days", type=click.IntRange(min=1), default=DEMO_DAYS, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_context
def seed(ctx: click.Context, items: int, start: str, days: int, seed: int) -> None:
    cfg = load_job_config(ctx)
    from tagger.demo.seed import seed as seed_demo

    spark = session(cfg, "tagger-seed")
    guarded(lambda: seed_demo(spark, cfg, items, start, days, seed=seed, log=click.echo))


@click.command(help=f"Seed demo data, train the demo models, tag the days before the demo date that its "
                   f"audits compare with (publish.min_history_days, in one backfill pass) and the demo date "
                   f"({DEMO_DATE}), all in the embedded catalog under $TAGGER_HOME. Seeding and training are skipped when "
                   "their results exist already (use --fresh to redo them).")
@click.option("--items", type=click.IntRange(min=1), default=DEMO_ITEMS, show_default=True)
@click.option("--fresh", is_flag=True, help="Re-seed and retrain even if data and models exist.")
@click.pass_context
def demo(ctx: click.Context, items: int, fresh: bool) -> None:
    cfg = load_job_config(ctx)
    from pathlib import Path

    from tagger.demo.seed import seed as seed_demo
    from tagger.job.extract import partitions
    from tagger.job.pipeline import run_date as run_one
    from tagger.training.from_warehouse import train_all, training_workers

    spark = session(cfg, "tagger-demo")
    took = DemoClock()
    # The truth table is written last by the seed: its partition means the seed completed.
    if fresh or f"pt={DEMO_DATE}" not in guarded(lambda: partitions(spark, cfg.tables.truth)):
        click.echo("== seeding demo data")
        guarded(lambda: seed_demo(spark, cfg, items, DEMO_START, DEMO_DAYS, log=click.echo))
        click.echo(took.lap("seeding"))
    missing = [h.name for h in cfg.heads if h.train and not (Path(h.path) / "tagger_head.json").is_file()]
    if fresh or missing:  # a head added to the config later is trained alone
        click.echo("== training demo models" + ("" if fresh else f": {', '.join(missing)}"))
        train_end = (date.fromisoformat(DEMO_DATE) - timedelta(days=1)).isoformat()
        # the heads train side by side, one torch thread each: both cores busy, no thread waiting on another
        guarded(lambda: train_all(spark, cfg, date_range(DEMO_START, train_end), None if fresh else missing,
                                   log=click.echo, workers=training_workers(len(cfg.heads))))
        _register_demo_heads(cfg, [h.name for h in cfg.heads if h.train and (fresh or h.name in missing)])
        click.echo(took.lap("training and registering the heads"))
    from tagger.job.publish import published_version

    window = demo_history_window(cfg.publish.min_history_days)
    history = [d for d in window if fresh or not guarded(lambda d=d: published_version(spark, cfg.tables, d))]
    if history:  # the audits compare a day with the published days before it
        click.echo(f"== tagging {', '.join(history)}: the history the audits of {DEMO_DATE} compare with "
                   "(one backfill pass)")
        from tagger.job.backfill import backfill

        # one pass pays the fixed costs of a run (Spark jobs, warming the workers) once for the days
        pass_lines = lambda line: click.echo(f"  {line}") if line.startswith("[pass ") else None  # noqa: E731
        result = guarded(lambda: backfill(spark, cfg, history, force=fresh, log=pass_lines))
        for failed in result.failed.values():
            guarded(lambda exc=failed: _raise(exc))  # the first failure: its line and exit code
        for done in result.done:
            click.echo(f"  {done.run_date}: {done.items_tagged:,} items, version {done.version} {done.outcome} "
                       f"({done.stage_seconds['total']:.0f}s as its share of the pass)")
        click.echo(took.lap("tagging the history"))
    click.echo(f"== tagging {DEMO_DATE}")
    summary = guarded(lambda: run_one(spark, cfg, DEMO_DATE, log=click.echo))
    click.echo(summary.format())
    click.echo(took.lap(f"tagging {DEMO_DATE}"))
    from tagger.config import tagger_home
    from tagger.job.report import build_report, read_report_data

    report = Path(tagger_home()) / "report.html"
    first = window[0] if window else DEMO_DATE
    guarded(lambda: report.write_text(build_report(read_report_data(spark, cfg.tables, first, DEMO_DATE)),
                                      encoding="utf-8"))
    click.echo(f"report of {first}..{DEMO_DATE} (drift, coverage, audits, versions): {report}")
    click.echo(f"demo {took.total()}. Look at the result with:\n"
               f"  tagger sql \"SELECT itemid, tag_ids, gate_score FROM {cfg.tables.output} "
               f"WHERE dt = '{DEMO_DATE}' LIMIT 10\"")


def demo_history_window(min_history_days: int) -> list[str]:
    """The demo days (yyyy-MM-dd, in order) to publish before the demo date: the last
    `min_history_days` seeded days before it (all of them if fewer were seeded), so that its history
    audits run instead of passing with a note; the earlier seeded days are training data only."""
    before = date_range(DEMO_START, DEMO_DATE)[:-1]
    return before[-min_history_days:] if min_history_days > 0 else []


def _raise(exc: BaseException):
    raise exc


class DemoClock:
    """Wall time and CPU seconds of the demo, for its progress lines: CPU seconds are those of this
    process and every process below it (the Spark JVM and its Python workers; tagger.models.progress
    tree_cpu_seconds), since on a shared machine wall time alone says little. lap(name) returns the
    line for the part since the last lap, total() the closing figures; both add the 1-minute load
    average. Raises nothing."""

    def __init__(self):
        from tagger.models.progress import tree_cpu_seconds

        self._cpu = tree_cpu_seconds
        self.wall0 = self.wall = time.perf_counter()
        self.cpu0 = self.cpu = tree_cpu_seconds()

    @staticmethod
    def _load() -> str:
        try:
            return f"load average {os.getloadavg()[0]:.1f}"
        except OSError:
            return "load average unknown"

    def lap(self, name: str) -> str:
        """'-- <name>: 12s wall, 20 CPU-s (load average 1.3)' for the time since the last lap."""
        wall, cpu = time.perf_counter(), self._cpu()
        line = f"-- {name}: {wall - self.wall:.0f}s wall, {cpu - self.cpu:.0f} CPU-s ({self._load()})"
        self.wall, self.cpu = wall, cpu
        return line

    def total(self) -> str:
        """'done in 170s wall, 290 CPU-s (load average 1.9)' since the clock was made."""
        return (f"done in {time.perf_counter() - self.wall0:.0f}s wall, {self._cpu() - self.cpu0:.0f} CPU-s "
                f"({self._load()})")


def _register_demo_heads(cfg, names: list[str]) -> None:
    """Register each newly trained demo head as the next version of its registered model (the model
    registry of docs/lifecycle.md), so `tagger promote`, `tagger shadow --candidate models:/...` and
    `models:/` head paths have versions to work with. Without mlflow (the `lifecycle` extra), or when
    the registry refuses, it says so and goes on: the demo's job reads the directories."""
    from tagger.config import ConfigError

    started = time.perf_counter()
    try:
        from tagger.lifecycle.registry import Registry

        registry = Registry()  # imports mlflow
        versions = [registry.register(h.name, h.path) for h in cfg.heads if h.name in names]
    except ImportError as exc:
        click.echo(f"  (the heads are not registered in the model registry: mlflow is not installed ({exc}); "
                   "pip install -e '.[lifecycle]', then tagger register --head NAME --model DIR)")
        return
    except ConfigError as exc:  # RegistryError: an unreachable or refusing store
        click.echo(f"  (the heads are not registered in the model registry: {exc} Register them later with "
                   "tagger register --head NAME --model DIR)")
        return
    click.echo(f"  registered {', '.join(v.uri for v in versions)} in {registry.uri} "
               f"({time.perf_counter() - started:.0f}s); make one live with: tagger promote --head NAME --version N")


@click.command(help="Run one read-only query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) against the configured "
                   "catalog and print the rows. --format csv prints a header line and plain rows.")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Print at most this many rows.")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str, limit: int) -> None:
    if not READ_ONLY.match(query) or WRITES.search(query) or ";" in query.strip().rstrip(";"):
        raise click.BadParameter("only one read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) is allowed.",
                                 param_hint="QUERY")
    cfg = load_job_config(ctx)
    spark = session(cfg, "tagger-sql")
    guarded(lambda: _print_query(spark, query.strip().rstrip(";"), fmt, limit))


def _print_query(spark, query: str, fmt: str, limit: int) -> None:
    """Print up to `limit` rows of `query` as a table or CSV (header line, plain rows)."""
    df = spark.sql(query)
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(df.columns)
        writer.writerows([_plain(v) for v in row] for row in df.limit(limit).collect())
    else:
        df.show(n=limit, truncate=80)


def _plain(value):
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_plain(v)) for v in value) + "]"
    if hasattr(value, "asDict"):
        return str(value.asDict())
    return "" if value is None else value


@click.command("preflight", help="Check over HiveServer2 (PyHive) that the inputs of a run date are in Hive: the "
                                 "pool partition, ASR/OCR and the tag dimension per the lag policy of "
                                 "conf/orchestration.yaml. Exit 0 ready, 3 configuration/auth problem, "
                                 "4 a required input is missing (retry later), 5 HiveServer2 unreachable "
                                 "or failing (retry later).")
@click.option("--date", "run_date", required=True, metavar="yyyy-MM-dd", type=DATE,
              help="Run date: the pool partition pt to check.")
@click.option("--config", "job_config", type=click.Path(dir_okay=False), default=None,
              help="Job YAML config for the table names (default: the `tagger --config`, else conf/tagger.yaml).")
@click.option("--orchestration", "orchestration", type=click.Path(dir_okay=False), default=None,
              envvar="TAGGER_ORCHESTRATION_CONFIG", show_envvar=True,
              help="HiveServer2 and lag-policy YAML (default: conf/orchestration.yaml).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--count-rows", is_flag=True, help="Also SELECT count(*) of the run date's pool partition.")
@click.pass_context
def preflight_command(ctx: click.Context, run_date: str, job_config: str | None, orchestration: str | None,
                      fmt: str, count_rows: bool) -> None:
    from tagger.config import ConfigError
    from tagger.ops.hive_client import HiveServer2AuthError, HiveServer2Error
    from tagger.ops.preflight import EXIT_CONFIG, EXIT_HIVESERVER2, run_preflight

    job_config = job_config or (ctx.obj or {}).get("config")
    try:
        report = run_preflight(run_date, job_config, orchestration, count_rows=count_rows)
    except (ConfigError, HiveServer2AuthError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except HiveServer2Error as exc:  # unreachable, or a statement failed on the server
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_HIVESERVER2)
    click.echo(report.to_json() if fmt == "json" else report.format())
    sys.exit(report.exit_code)


@click.command("publish", help="Publish a staged version of a date: point the date's output and quarantine partitions "
                               "at it (after review of a version the audits refused, or to re-publish). Also mends a "
                               "date left half-published by a crash. Recorded with who and why in the publish log.")
@click.option("--date", "run_date", type=DATE, required=True, help="The date (dt) to publish.")
@click.option("--version", "version", required=True, help="A version listed by `tagger history --date D`.")
@click.option("--reason", required=True, help="Why (kept in the publish log), e.g. \"volume drop confirmed: holiday\".")
@click.pass_context
def publish_command(ctx: click.Context, run_date: str, version: str, reason: str) -> None:
    cfg = load_job_config(ctx)
    from tagger.job.publish import publish, repair, staged_versions
    from tagger.job.write import ensure_tables

    spark = session(cfg, f"tagger-publish-{run_date}")

    def go():
        ensure_tables(spark, cfg.tables)
        repair(spark, cfg.tables, run_date)
        known = staged_versions(spark, cfg.tables, run_date)
        refused = not known.empty and (known.loc[known["version"] == version, "outcome"] == "refused").any()
        before = publish(spark, cfg.tables, run_date, version, action="override" if refused else "publish",
                         reason=reason, keep_versions=cfg.publish.keep_versions)
        click.echo(f"{run_date}: published {version} (before: {before or 'nothing'})")

    guarded(go)


@click.command("history", help="List the versions of a date: run id, model and rules versions, audit outcome, "
                               "which one readers see, and every publish, override, rollback and repair.")
@click.option("--date", "run_date", type=DATE, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def history_command(ctx: click.Context, run_date: str, fmt: str) -> None:
    cfg = load_job_config(ctx)
    from tagger.job.publish import publish_log, published_version, staged_versions
    from tagger.job.write import ensure_tables

    spark = session(cfg, f"tagger-history-{run_date}")

    def go():
        ensure_tables(spark, cfg.tables)
        versions, log = staged_versions(spark, cfg.tables, run_date), publish_log(spark, cfg.tables, run_date)
        current = published_version(spark, cfg.tables, run_date)
        if fmt == "json":
            import json

            click.echo(json.dumps({"date": run_date, "published": current,
                                   "versions": versions.to_dict(orient="records"),
                                   "log": log.to_dict(orient="records")}, ensure_ascii=False, default=str, indent=2))
            return
        click.echo(f"{run_date}: readers see {current or 'no versioned partition'}")
        for row in versions.itertuples():
            mark = "*" if row.version == current else " "
            click.echo(f" {mark} {row.version}  {row.outcome:<8} staged {row.staged_at}  items {row.items:,}  "
                       f"{'on disk' if row.on_disk else 'removed'}\n      models {row.model_version}\n"
                       f"      rules {row.rules_version}")
            for r in _audits(row.audits):
                click.echo(f"      {r['status']:<4} {r['audit']}: {r['message']}")
        if not log.empty:
            click.echo("publish log:")
            for row in log.itertuples():
                click.echo(f"  {row.at}  {row.action:<8} {row.version}  by {row.actor}"
                           + (f"  ({row.reason})" if row.reason else ""))

    guarded(go)


def _audits(text: str | None) -> list[dict]:
    """The audit results stored with a version (JSON), or []."""
    import json

    try:
        return json.loads(text or "[]")
    except ValueError:
        return []


@click.command("rollback", help="Point a date back at an earlier published version (default: the one before the "
                                "current one). Recorded in the publish log.")
@click.option("--date", "run_date", type=DATE, required=True)
@click.option("--to", "to", default=None, help="The version to go back to (default: the previously published one).")
@click.option("--reason", required=True, help="Why (kept in the publish log).")
@click.pass_context
def rollback_command(ctx: click.Context, run_date: str, to: str | None, reason: str) -> None:
    cfg = load_job_config(ctx)
    from tagger.job.publish import rollback
    from tagger.job.write import ensure_tables

    spark = session(cfg, f"tagger-rollback-{run_date}")

    def go():
        ensure_tables(spark, cfg.tables)
        before, now = rollback(spark, cfg.tables, run_date, to, reason)
        click.echo(f"{run_date}: rolled back from {before} to {now}")

    guarded(go)


@click.command("report", help="Write one self-contained HTML page over a range of dates (open it in a browser): "
                              "per-tag rates, volume and coverage, quarantine reasons, model and rules versions "
                              "with the days they changed, drift flags and every audit result, the publish log. "
                              "Each date is shown as its published version; refused versions are shown too.")
@click.option("--start", type=DATE, required=True, help="First date (yyyy-MM-dd).")
@click.option("--end", type=DATE, required=True, help="Last date, inclusive (yyyy-MM-dd).")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default="report.html",
              show_default=True, help="The HTML file to write (replaced if it exists).")
@click.pass_context
def report_command(ctx: click.Context, start: str, end: str, out: str) -> None:
    if start > end:
        raise click.BadParameter(f"--start {start} is after --end {end}.", param_hint="--start/--end")
    cfg = load_job_config(ctx)
    from pathlib import Path

    from tagger.job.report import build_report, read_report_data
    from tagger.job.write import ensure_tables

    spark = session(cfg, f"tagger-report-{start}-{end}")

    def go():
        ensure_tables(spark, cfg.tables)
        data = read_report_data(spark, cfg.tables, start, end)
        html = build_report(data)
        Path(out).write_text(html, encoding="utf-8")
        published = int(data.days["version"].notna().sum())
        click.echo(f"wrote {out}: {len(data.days)} day(s) from {start} to {end}, {published} with a published "
                   f"version ({len(html.encode('utf-8')) / 1024:,.0f} KiB)")

    guarded(go)
