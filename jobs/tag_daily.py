"""Daily tagging job for spark-submit:

    spark-submit jobs/tag_daily.py --date 2024-01-05 [--config conf/tagger.yaml]

Does exactly what `tagger run --date D` does; spark-submit's --master and --conf win over the
config's spark.master.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a plain checkout works too

from tagger.cli import main  # noqa: E402


def _argv(args: list[str]) -> list[str]:
    """Move a --config given after the run options to where the `tagger` group expects it."""
    if "--config" in args:
        i = args.index("--config")
        return ["--config", *args[i + 1:i + 2], "run", *args[:i], *args[i + 2:]]
    return ["run", *args]


if __name__ == "__main__":
    main(_argv(sys.argv[1:]), prog_name="tag_daily.py")
