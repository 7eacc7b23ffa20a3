"""Daily tagging job for spark-submit:

    spark-submit jobs/tag_daily.py --date 2024-01-05 [--config conf/tagger.yaml]

Does exactly what `tagger run --date D` does; spark-submit's --master and --conf win over the
config's spark.master.
"""
import sys

from tagger.cli import main
from tagger.cli.common import subcommand_argv

if __name__ == "__main__":
    main(subcommand_argv("run", sys.argv[1:]), prog_name="tag_daily.py")
