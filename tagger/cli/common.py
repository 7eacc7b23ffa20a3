"""What every `tagger` command shares: date options, config loading, the Spark session, and the
mapping of the job's known failures to one clear line and an exit code."""
from __future__ import annotations

import re
import sys
from datetime import date, timedelta

import click

from tagger.config import ConfigError, check_date, load_config

DEMO_START, DEMO_DAYS, DEMO_ITEMS = "2024-01-01", 5, 50_000  # 10,000 items a day
DEMO_DATE = "2024-01-05"  # the last seeded day; the models train on the days before it
READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN)\b", re.IGNORECASE)
# `WITH t AS (...) INSERT ...` starts like a query: refuse any writing keyword anywhere (a string
# literal holding one of these words is refused too; quote around it with a LIKE pattern instead).
WRITES = re.compile(r"\b(INSERT|MERGE|CREATE|DROP|ALTER|TRUNCATE|DELETE|UPDATE|LOAD|REPLACE|MSCK|REFRESH|"
                    r"CACHE|UNCACHE|SET|RESET|ADD|GRANT|REVOKE|ANALYZE|REPAIR|USE)\b", re.IGNORECASE)
EXIT_USAGE, EXIT_CONFIG, EXIT_MISSING_INPUT, EXIT_LOCKED, EXIT_REFUSED = 2, 3, 4, 5, 6


def parse_date(value: str, name: str = "date") -> str:
    """`value` if it is a real date written yyyy-MM-dd; else click.BadParameter naming --`name`."""
    try:
        return check_date(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.", param_hint=f"--{name}") from None


class DateType(click.ParamType):
    """A click option type for yyyy-MM-dd dates (see parse_date)."""
    name = "yyyy-MM-dd"

    def convert(self, value, param, ctx):
        """`value` (a string) as the same yyyy-MM-dd string; click.BadParameter naming the option
        if it is not a real date."""
        return parse_date(value, param.name if param else "date")


DATE = DateType()


def subcommand_argv(command: str, args: list[str]) -> list[str]:
    """argv for `main` from a job's arguments: a --config (with its value) and a --verbose anywhere
    move before the subcommand, where the `tagger` group expects them (spark-submit
    jobs/tag_daily.py --date D --config C --verbose)."""
    group = []
    if "--verbose" in args:
        args = [a for a in args if a != "--verbose"]
        group.append("--verbose")
    if "--config" in args:
        i = args.index("--config")
        return ["--config", *args[i + 1:i + 2], *group, command, *args[:i], *args[i + 2:]]
    return [*group, command, *args]


def date_range(start: str, end: str) -> list[str]:
    """Every date from start to end, both included, as yyyy-MM-dd strings."""
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    return [(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def load_job_config(ctx: click.Context):
    """Load and validate the config before Spark starts."""
    try:
        return load_config(ctx.obj["config"])
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def session(cfg, app: str):
    """A SparkSession built from the config (tagger.ops.spark_session.build_session). A catalog
    that cannot be reached (no metastore password, no JDBC driver, database down or without its
    schema) is one line on stderr and exit 3."""
    from tagger.ops.spark_session import build_session

    try:
        return build_session(cfg, app)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _exit_codes():
    """The job's known failures -> the exit code a scheduler acts on (README, Exit codes)."""
    from tagger.models.spec import ArtifactError
    from tagger.models.data import DataError
    from tagger.job.extract import MissingInputError
    from tagger.job.audit import AuditRefused, InvariantError
    from tagger.job.publish import PublishError
    from tagger.ops.run_lock import RunLockedError

    return [
        ((ConfigError, ArtifactError, DataError), EXIT_CONFIG),  # DataError: e.g. a head with no positives
        ((MissingInputError,), EXIT_MISSING_INPUT),
        ((RunLockedError,), EXIT_LOCKED),
        ((AuditRefused,), EXIT_REFUSED),
        ((PublishError,), EXIT_USAGE),
        ((InvariantError,), 1),
    ]


def exit_code(exc: BaseException) -> int:
    """The exit code for one of the job's failures (the README's table); 1 for anything else."""
    return next((code for kinds, code in _exit_codes() if isinstance(exc, kinds)), 1)


def guarded(fn):
    """Turn the job's known failures into one clear line and an exit code, not a traceback."""
    from pyspark.errors import PySparkException

    known = tuple(kind for kinds, _ in _exit_codes() for kind in kinds)
    try:
        return fn()
    except known as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exit_code(exc))
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
