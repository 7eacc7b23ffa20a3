"""Seed the demo source tables: spark-submit jobs/seed_demo.py [--items N --start D --days K]."""
import sys

from tagger.cli import main
from tagger.cli.common import subcommand_argv

if __name__ == "__main__":
    main(subcommand_argv("seed", sys.argv[1:]), prog_name="seed_demo.py")
