"""`tagger`: the command line of the daily tagging job.

Exit codes a scheduler can act on: 0 done; 2 bad usage (nothing ran); 3 bad configuration or
model artifact (fix it, then rerun); 4 an input is missing (retry later); 5 another run holds the
same table and date, or the embedded metastore, or (preflight) HiveServer2 is unreachable
(retry later); 1 anything else.
"""
from __future__ import annotations

import csv
import re
import sys
import time
from datetime import date, timedelta

import click

from tagger.models.bert_head import SIZES as BERT_SIZES
from tagger.config import ConfigError, load_config

DEMO_START, DEMO_DAYS, DEMO_ITEMS = "2024-01-01", 5, 100_000
DEMO_DATE = "2024-01-05"  # the last seeded day; the models train on the days before it
READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN)\b", re.IGNORECASE)
# `WITH t AS (...) INSERT ...` starts like a query: refuse any writing keyword anywhere (a string
# literal holding one of these words is refused too; quote around it with a LIKE pattern instead).
WRITES = re.compile(r"\b(INSERT|MERGE|CREATE|DROP|ALTER|TRUNCATE|DELETE|UPDATE|LOAD|REPLACE|MSCK|REFRESH|"
                    r"CACHE|UNCACHE|SET|RESET|ADD|GRANT|REVOKE|ANALYZE|REPAIR|USE)\b", re.IGNORECASE)
EXIT_CONFIG, EXIT_MISSING_INPUT, EXIT_LOCKED = 3, 4, 5


def parse_date(value: str, name: str = "date") -> str:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise click.BadParameter(f"'{value}' is not a date of the form yyyy-MM-dd (e.g. 2024-01-05).",
                             param_hint=f"--{name}")


class DateType(click.ParamType):
    name = "yyyy-MM-dd"

    def convert(self, value, param, ctx):
        return parse_date(value, param.name if param else "date")


DATE = DateType()


def subcommand_argv(command: str, args: list[str]) -> list[str]:
    """argv for `main` from a job's arguments: a --config anywhere moves before the subcommand,
    where the `tagger` group expects it (spark-submit jobs/tag_daily.py --date D --config C)."""
    if "--config" in args:
        i = args.index("--config")
        return ["--config", *args[i + 1:i + 2], command, *args[:i], *args[i + 2:]]
    return [command, *args]


def date_range(start: str, end: str) -> list[str]:
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    return [(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def _config(ctx: click.Context):
    """Load and validate the config before Spark starts."""
    try:
        return load_config(ctx.obj["config"])
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _session(cfg, app: str):
    from tagger.ops.spark_session import build_session

    return build_session(cfg, app)


def _guarded(fn):
    """Turn the job's known failures into one clear line and an exit code, not a traceback."""
    from pyspark.errors import PySparkException

    from tagger.models.spec import ArtifactError
    from tagger.models.data import DataError
    from tagger.job.extract import MissingInputError
    from tagger.job.pipeline import InvariantError
    from tagger.ops.run_lock import RunLockedError

    try:
        return fn()
    except (ConfigError, ArtifactError, DataError) as exc:  # DataError: e.g. a head with no positives to learn
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except MissingInputError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_MISSING_INPUT)
    except RunLockedError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    except InvariantError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except PySparkException as exc:
        if "Another instance of Derby may have already booted" in str(exc):
            _derby_busy()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"Error: Spark refused the statement: {first}", err=True)
        sys.exit(1)
    except Exception as exc:
        if "Another instance of Derby may have already booted" not in str(exc):
            raise
        _derby_busy()


def _derby_busy():
    from tagger.config import tagger_home

    click.echo(f"Error: the embedded metastore {tagger_home() / 'metastore_db'} is in use by another "
               f"process (a tagger command or a Thrift Server on the same TAGGER_HOME). Derby allows one "
               f"process at a time: wait for it to finish, or use another TAGGER_HOME.", err=True)
    sys.exit(EXIT_LOCKED)


@click.group(help=__doc__)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Job YAML config (default: conf/tagger.yaml of this checkout).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path


@main.command(help="Tag one day: read the day's pool, ASR and OCR, tag every selected item and "
                   "overwrite exactly that dt partition of the output tables. Rerunning a date replaces "
                   "its partition; other dates are untouched.")
@click.option("--date", "run_date", type=DATE, required=True, help="Run date: the pool partition pt to tag.")
@click.pass_context
def run(ctx: click.Context, run_date: str) -> None:
    cfg = _config(ctx)
    from tagger.job.pipeline import run_date as run_one

    spark = _session(cfg, f"tagger-run-{run_date}")
    summary = _guarded(lambda: run_one(spark, cfg, run_date))
    click.echo(summary.format())


@main.command(help="Tag every date from --start to --end (inclusive), in date order, in one Spark session. "
                   "Stops at the first failing date and names it; dates before it are done, rerun from it.")
@click.option("--start", type=DATE, required=True, help="First date (yyyy-MM-dd).")
@click.option("--end", type=DATE, required=True, help="Last date, inclusive (yyyy-MM-dd).")
@click.pass_context
def backfill(ctx: click.Context, start: str, end: str) -> None:
    if start > end:
        raise click.BadParameter(f"--start {start} is after --end {end}.", param_hint="--start/--end")
    cfg = _config(ctx)
    from tagger.job.pipeline import run_date as run_one

    spark = _session(cfg, f"tagger-backfill-{start}-{end}")
    dates = date_range(start, end)
    for i, day in enumerate(dates, 1):
        click.echo(f"[{i}/{len(dates)}] {day}")
        try:
            summary = _guarded(lambda: run_one(spark, cfg, day))
        except SystemExit:
            click.echo(f"Backfill stopped at {day}: {i - 1} of {len(dates)} dates done. "
                       f"Fix the error above, then rerun with --start {day} --end {end}.", err=True)
            raise
        click.echo(summary.format())


@main.command(help="Generate deterministic demo data and write it into the source tables of the config "
                   "(production names) in the embedded catalog: pool, ASR, OCR, tag dimension, true labels.")
@click.option("--items", type=click.IntRange(min=1), default=DEMO_ITEMS, show_default=True,
              help="Items the team's filter selects, over all days (about 8% more rows are written).")
@click.option("--start", type=DATE, default=DEMO_START, show_default=True, help="First day.")
@click.option("--days", type=click.IntRange(min=1), default=DEMO_DAYS, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_context
def seed(ctx: click.Context, items: int, start: str, days: int, seed: int) -> None:
    cfg = _config(ctx)
    from tagger.demo.seed import seed as seed_demo

    spark = _session(cfg, "tagger-seed")
    _guarded(lambda: seed_demo(spark, cfg, items, start, days, seed=seed, log=click.echo))


TRAIN_HELP = """Train a tagging head. Two modes; the options below say which mode they belong to.

\b
User-data mode (--data, --dev, --out, --arch): train one head on your own labelled files
(JSON lines {"text": ..., "labels": [...]} or PaddleNLP text<TAB>label1,label2), with no Spark
and no config. Thresholds and early stopping use --dev; the per-label precision/recall/F1 on
--dev is printed at the end. The artifact (tagger_head.json, model.safetensors, vocabulary) is
written to --out, replacing a head already there; load it with tagger.models.spec.load_head or
point a head's path in the job config at it. Cost on 2 CPU cores: textcnn ~1-1.5 min per epoch
per 60k texts; bert (small) ~1 min per epoch per 10k texts at 128 tokens; a GPU is used when
present. On a terminal each epoch shows a progress bar with an ETA. Make --data/--dev from one
file with `tagger split`.

\b
  tagger train --arch textcnn --data train.jsonl --dev dev.jsonl --out models/mine
  tagger train --arch bert --data train.txt --dev dev.txt --labels-file label.txt --out models/p1

\b
Warehouse mode (no --data): train the config's heads from labelled data in the warehouse (the
demo's true-label table) for --start..--end, report per-label precision/recall/F1 on a held-out
split, and save the artifacts where the config's heads point. A few minutes on 2 CPU cores for
the demo."""


@main.command(help=TRAIN_HELP)
@click.option("--start", type=DATE, default=DEMO_START, show_default=True,
              help="[warehouse] First day of training data.")
@click.option("--end", type=DATE, default=(date.fromisoformat(DEMO_DATE) - timedelta(days=1)).isoformat(),
              show_default=True, help="[warehouse] Last day of training data (inclusive).")
@click.option("--head", "heads", multiple=True,
              help="[warehouse] Train only this configured head (repeatable; default: all). [user data] The "
                   "head's name (default: the --out directory's name, lower-cased).")
@click.option("--data", type=click.Path(dir_okay=False),
              help="[user data] Training file (JSON lines .jsonl, or PaddleNLP .txt/.tsv).")
@click.option("--dev", type=click.Path(dir_okay=False),
              help="[user data] Dev file, same format: thresholds, early stopping, the printed report.")
@click.option("--out", type=click.Path(file_okay=False), help="[user data] Artifact directory to write.")
@click.option("--arch", type=click.Choice(["textcnn", "bert"]),
              help="[user data] textcnn: character CNN, fast (the gate); bert: small BERT trained from scratch, "
                   "slower, better on many labels.")
@click.option("--labels-file", type=click.Path(dir_okay=False),
              help="[user data] label.txt, one label per line: fixes the output order; a label of the data not in "
                   "it is an error. One line = a binary head. Default: every label of the data, most frequent first.")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "paddle"]), default="auto", show_default=True,
              help="[user data] Input format; auto: by extension (.jsonl/.json, .tsv/.txt), else sniffed.")
@click.option("--pos-weight", type=click.Choice(["auto", "none"]), default="auto", show_default=True,
              help="[user data] auto: weigh each label's positives by neg/pos (1..30), for rare labels.")
@click.option("--epochs", type=click.IntRange(min=1), help="[user data] Most epochs (default: textcnn 3, bert 4).")
@click.option("--max-length", type=click.IntRange(min=1),
              help="[user data] Characters (textcnn) or tokens (bert) read per text (default: textcnn 256, bert 160).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="[user data] Learning rate (default: textcnn 2e-3, bert 1e-3).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="[user data] Examples per training step.")
@click.option("--patience", type=click.IntRange(min=1),
              help="[user data] Stop after this many epochs without a dev macro-F1 gain (default: 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="[user data] Same data and seed, same model.")
@click.option("--size", type=click.Choice(list(BERT_SIZES)), default="small", show_default=True,
              help="[user data] BERT size (--arch bert only). small/medium train from scratch on CPU; "
                   "bert-base (768 wide, 12 layers) is many times slower: use a GPU.")
@click.pass_context
def train(ctx: click.Context, start: str, end: str, heads: tuple[str, ...], **_user_data) -> None:
    from tagger.training.from_files import is_data_mode, run_train

    if is_data_mode(ctx):
        run_train(ctx)
        return
    if start > end:
        raise click.BadParameter(f"--start {start} is after --end {end}.", param_hint="--start/--end")
    cfg = _config(ctx)
    from tagger.training.from_warehouse import train_all

    spark = _session(cfg, "tagger-train")
    _guarded(lambda: train_all(spark, cfg, date_range(start, end), list(heads) or None, log=click.echo))


@main.command(help=f"Seed demo data, train the demo models and tag the demo date ({DEMO_DATE}), "
                   "all in the embedded catalog under $TAGGER_HOME. Seeding and training are skipped when "
                   "their results exist already (use --fresh to redo them).")
@click.option("--items", type=click.IntRange(min=1), default=DEMO_ITEMS, show_default=True)
@click.option("--fresh", is_flag=True, help="Re-seed and retrain even if data and models exist.")
@click.pass_context
def demo(ctx: click.Context, items: int, fresh: bool) -> None:
    cfg = _config(ctx)
    from pathlib import Path

    from tagger.demo.seed import seed as seed_demo
    from tagger.job.extract import partitions
    from tagger.job.pipeline import run_date as run_one
    from tagger.training.from_warehouse import train_all

    spark = _session(cfg, "tagger-demo")
    started = time.perf_counter()
    # The truth table is written last by the seed: its partition means the seed completed.
    if fresh or f"pt={DEMO_DATE}" not in _guarded(lambda: partitions(spark, cfg.tables.truth)):
        click.echo("== seeding demo data")
        _guarded(lambda: seed_demo(spark, cfg, items, DEMO_START, DEMO_DAYS, log=click.echo))
    missing = [h.name for h in cfg.heads if h.train and not (Path(h.path) / "tagger_head.json").is_file()]
    if fresh or missing:  # a head added to the config later is trained alone
        click.echo("== training demo models" + ("" if fresh else f": {', '.join(missing)}"))
        train_end = (date.fromisoformat(DEMO_DATE) - timedelta(days=1)).isoformat()
        _guarded(lambda: train_all(spark, cfg, date_range(DEMO_START, train_end), None if fresh else missing,
                                   log=click.echo))
    click.echo(f"== tagging {DEMO_DATE}")
    summary = _guarded(lambda: run_one(spark, cfg, DEMO_DATE))
    click.echo(summary.format())
    click.echo(f"demo done in {time.perf_counter() - started:.0f}s. Look at the result with:\n"
               f"  tagger sql \"SELECT itemid, tag_ids, gate_score FROM {cfg.tables.output} "
               f"WHERE dt = '{DEMO_DATE}' LIMIT 10\"")


@main.command(help="Run one read-only query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) against the configured "
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
    cfg = _config(ctx)
    spark = _session(cfg, "tagger-sql")
    _guarded(lambda: _print_query(spark, query.strip().rstrip(";"), fmt, limit))


def _print_query(spark, query: str, fmt: str, limit: int) -> None:
    df = spark.sql(query)
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(df.columns)
        writer.writerows([_plain(v) for v in row] for row in df.limit(limit).collect())
    else:
        df.show(n=limit, truncate=80)


def _register_extensions() -> None:
    """Commands that live in their own modules."""
    from tagger.measure.ablation import ablation_command
    from tagger.measure.bench import bench_command
    from tagger.cli.model_commands import COMMANDS as MODEL_COMMANDS
    from tagger.ops.preflight import preflight_command
    from tagger.training.from_files import split_command

    main.add_command(bench_command)
    main.add_command(ablation_command)
    for command in MODEL_COMMANDS:  # evaluate, calibrate, ensemble
        main.add_command(command)
    main.add_command(preflight_command)
    main.add_command(split_command)


_register_extensions()


def _plain(value):
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_plain(v)) for v in value) + "]"
    if hasattr(value, "asDict"):
        return str(value.asDict())
    return "" if value is None else value


if __name__ == "__main__":
    main()
