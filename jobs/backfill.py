"""Backfill a date range in one pass (tagger backfill): spark-submit jobs/backfill.py --start D1 --end D2 [--force]
[--max-items-per-pass N] (inclusive; docs/orchestration.md, Backfills)."""
import sys

from tagger.cli import main
from tagger.cli.common import subcommand_argv

if __name__ == "__main__":
    main(subcommand_argv("backfill", sys.argv[1:]), prog_name="backfill.py")
