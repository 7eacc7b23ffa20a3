"""The `tagger` CLI: usage errors before Spark starts, backfill failures and order, sql output."""
import csv
import io
import re
import time

import pytest
from click.testing import CliRunner

from tagger.cli import main
from tagger.cli.common import date_range, subcommand_argv


@pytest.mark.parametrize("args,needle", [
    (["run", "--date", "2024-13-01"], "not a date"),
    (["run", "--date", "2024-01-05'; DROP TABLE x; --"], "not a date"),
    (["run", "--date", "20240105"], "not a date"),
    (["backfill", "--start", "2024-01-05", "--end", "2024-01-01"], "is after --end"),
    (["report", "--start", "2024-01-05", "--end", "2024-01-01"], "is after --end"),
    (["report", "--start", "2024-01-01", "--end", "2024-02-30"], "not a date"),
    (["sql", "DROP TABLE tagging.item_tags"], "read-only"),
    (["sql", "SELECT 1; DROP TABLE tagging.item_tags"], "read-only"),
    (["sql", "WITH t AS (SELECT 1 AS a) INSERT OVERWRITE TABLE tagging.item_tags SELECT * FROM t"], "read-only"),
])
def test_usage_errors_come_before_spark(args, needle):
    started = time.perf_counter()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert time.perf_counter() - started < 5  # no SparkSession was built


def test_bad_config_exits_3_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: {}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(bad), "run", "--date", "2024-01-05"])
    assert result.exit_code == 3 and str(bad) in result.output and "tables.pool" in result.output


def test_job_arguments_put_config_before_the_subcommand():
    assert subcommand_argv("run", ["--date", "D", "--config", "c.yaml"]) == ["--config", "c.yaml", "run", "--date", "D"]
    assert subcommand_argv("backfill", ["--start", "A", "--end", "B"]) == ["backfill", "--start", "A", "--end", "B"]
    assert subcommand_argv("run", ["--date", "D", "--verbose", "--config", "c.yaml"]) == [
        "--config", "c.yaml", "--verbose", "run", "--date", "D"]
    assert subcommand_argv("run", ["--verbose", "--date", "D"]) == ["--verbose", "run", "--date", "D"]


def test_the_demo_publishes_just_the_history_its_audits_need():
    """tagger demo tags and publishes the min_history_days days right before the demo date, so the
    demo date's history audits run (with fewer published days they only pass with a note). Break:
    tag one day fewer, or days that do not end right before the demo date."""
    from datetime import date, timedelta

    from tagger.cli.common import DEMO_DATE, DEMO_DAYS
    from tagger.cli.job_commands import demo_history_window
    from tagger.config import load_config

    need = load_config().publish.min_history_days
    window = demo_history_window(need)
    assert len(window) == need <= DEMO_DAYS - 1
    assert window == date_range((date.fromisoformat(DEMO_DATE) - timedelta(days=need)).isoformat(),
                                (date.fromisoformat(DEMO_DATE) - timedelta(days=1)).isoformat())
    assert demo_history_window(0) == [] and len(demo_history_window(99)) == DEMO_DAYS - 1


def test_date_range_is_inclusive_and_ordered():
    assert date_range("2024-02-28", "2024-03-01") == ["2024-02-28", "2024-02-29", "2024-03-01"]


def test_backfill_goes_past_a_missing_date_and_exits_with_its_code(spark, cfg_path, trained):
    # 2024-01-04 and 01-05 were never seeded: the one-pass backfill tags 01-02 and 01-03, lists both
    # missing dates at the end and exits 4 (a missing input, the first failure's code).
    result = CliRunner().invoke(main, ["--config", str(cfg_path), "backfill", "--start", "2024-01-02",
                                       "--end", "2024-01-05"])
    assert result.exit_code == 4, result.output
    out = result.output
    # each seeded date is tagged, or skipped when an earlier test published it from the same inputs
    for day in ("2024-01-02", "2024-01-03"):
        assert f"run {day}" in out or f"{day}: skipped" in out, out
    done = re.search(r"backfill 2024-01-02..2024-01-05: (\d+) date\(s\) written, (\d+) skipped .*, (\d+) failed", out)
    assert done and int(done.group(1)) + int(done.group(2)) == 2 and done.group(3) == "2", out
    assert "2024-01-04: exit 4: Partition pt=2024-01-04" in out and "2024-01-05: exit 4" in out
    assert "rerun the same command" in out


def test_the_per_date_loop_runs_in_order_and_stops_at_the_first_failing_date(spark, cfg_path, trained):
    result = CliRunner().invoke(main, ["--config", str(cfg_path), "backfill", "--one-date-at-a-time",
                                       "--start", "2024-01-02", "--end", "2024-01-05"])
    assert result.exit_code == 4, result.output
    out = result.output
    assert out.index("[1/4] 2024-01-02") < out.index("[2/4] 2024-01-03") < out.index("[3/4] 2024-01-04")
    assert "[4/4]" not in out
    assert "Backfill stopped at 2024-01-04" in out and "--start 2024-01-04 --end 2024-01-05" in out


def test_sql_csv_prints_a_header_and_plain_rows(spark, cfg_path, trained):
    spark.sql("CREATE OR REPLACE TEMP VIEW tiny AS SELECT * FROM VALUES ('a', 1), ('b', NULL) AS t(name, n)")
    result = CliRunner().invoke(main, ["--config", str(cfg_path), "sql", "--format", "csv",
                                       "SELECT name, n FROM tiny ORDER BY name"])
    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.output))) == [["name", "n"], ["a", "1"], ["b", ""]]
