"""Faults mid-run, reruns and concurrent runs: the partition is never half-written, nothing is lost."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pyspark.testing import assertDataFrameEqual

from conftest import REPO, RUN_DATE, TRAIN_DATES, write_config
from tagger.config import load_config
from tagger.job.pipeline import run_date
from test_pipeline import partition


def frozen(spark, table, day):
    """The partition's rows, detached from the table (a later overwrite cannot change them)."""
    df = partition(spark, table, day)
    return spark.createDataFrame(df.toPandas(), df.schema)


def _a_failed_run_changes_nothing(spark, cfg, monkeypatch, failpoint: str, error, match: str):
    """Run the date, then run it again with `failpoint` set: it must raise `error` and leave the
    output, the quarantine and the metrics as they were. Returns the output rows before."""
    run_date(spark, cfg, RUN_DATE)
    before = {t: frozen(spark, t, RUN_DATE) for t in (cfg.tables.output, cfg.tables.quarantine)}
    runs_before = partition(spark, cfg.tables.metrics, RUN_DATE).count()
    monkeypatch.setenv("TAGGER_FAILPOINT", failpoint)
    with pytest.raises(error, match=match):
        run_date(spark, cfg, RUN_DATE)
    monkeypatch.delenv("TAGGER_FAILPOINT")
    for table, rows in before.items():
        assertDataFrameEqual(partition(spark, table, RUN_DATE), rows)
    assert partition(spark, cfg.tables.metrics, RUN_DATE).count() == runs_before
    return before[cfg.tables.output]


def test_a_failure_inside_tagging_leaves_the_partition_and_a_rerun_completes(spark, trained, tagger_home,
                                                                              monkeypatch):
    cfg = load_config(write_config(tagger_home, "faults.yaml",
                                   lambda raw: raw["tagging"].update(arrow_max_records_per_batch=50)))
    before = _a_failed_run_changes_nothing(spark, cfg, monkeypatch, "tag_after_batches:2", Exception,
                                           "TAGGER_FAILPOINT")
    summary = run_date(spark, cfg, RUN_DATE)  # the failed run released its lock
    after = partition(spark, cfg.tables.output, RUN_DATE)
    assertDataFrameEqual(after, before)
    assert after.count() == after.select("itemid").distinct().count() == summary.items_tagged


def test_a_row_lost_inside_tagging_is_refused_before_the_write(spark, trained, tagger_home, monkeypatch):
    """The invariant check before the write: each tag task drops one row (failpoint
    tag_drop_rows:1), so the run must raise InvariantError and leave the published partition and the
    metrics as they were. Break: remove the check_invariant(...) call in tagger/job/pipeline.py and
    the lossy run publishes a partition with rows missing."""
    from tagger.job.audit import InvariantError

    cfg = load_config(write_config(tagger_home, "lossy.yaml"))
    _a_failed_run_changes_nothing(spark, cfg, monkeypatch, "tag_drop_rows:1", InvariantError, "nothing was written")


def test_the_same_backfill_range_twice_gives_identical_partitions(spark, cfg, trained):
    first = {}
    for day in TRAIN_DATES:
        run_date(spark, cfg, day)
        first[day] = frozen(spark, cfg.tables.output, day)
    for day in TRAIN_DATES:
        run_date(spark, cfg, day)
    for day in TRAIN_DATES:
        assertDataFrameEqual(partition(spark, cfg.tables.output, day), first[day])


def _read_partition(run, day: str) -> pd.DataFrame:
    """What readers see for the day, through the catalog (`tagger sql`), sorted by itemid."""
    import io

    text = run("sql", "--format", "csv", "--limit", "100000",
               f"SELECT itemid, tag_ids, gate_score, run_id FROM tagging.item_tags WHERE dt = '{day}' ORDER BY itemid")
    lines = [ln for ln in text[text.index("itemid,tag_ids"):].splitlines() if not ln.startswith("WARNING:")]  # JVM notice
    return pd.read_csv(io.StringIO("\n".join(lines)), dtype={"itemid": str, "tag_ids": str, "run_id": str},
                       keep_default_na=False)


@pytest.mark.slow
def test_driver_killed_mid_write_and_a_concurrent_run(tmp_path, tagger_home, trained):
    """Run A stalls inside the write of its staged version and is killed with SIGKILL; run B,
    started while A holds the date, refuses naming A; readers still see the published version;
    run C takes over A's dead lock and publishes its version whole. Break: write the staged rows
    into the live partition (dt=D) instead of _versions/, and readers see A's half-written files."""
    day = "2024-05-01"
    home = tmp_path / "home"
    shutil.copytree(tagger_home / "models", home / "models")
    config = write_config(tmp_path)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, TAGGER_HOME=str(home), PYSPARK_PYTHON=sys.executable)
    env.pop("TAGGER_FAILPOINT", None)
    tagger = [str(bin_dir / "tagger"), "--config", str(config)]

    def run(*args, extra_env=None, expect=0):
        done = subprocess.run([*tagger, *args], cwd=REPO, env={**env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == expect, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    run("seed", "--items", "2000", "--start", day, "--days", "1")
    run("run", "--date", day)
    baseline = _read_partition(run, day)
    assert len(baseline) > 1800 and baseline["itemid"].is_unique
    run("seed", "--items", "2000", "--start", day, "--days", "1", "--seed", "8")  # new content: a new version

    table_dir = home / "warehouse" / "tagging.db" / "item_tags"
    a = subprocess.Popen([*tagger, "run", "--date", day], cwd=REPO, start_new_session=True,
                         env={**env, "TAGGER_FAILPOINT": "write_stall_seconds:900"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 900  # the whole run up to its write; generous for a loaded CI machine
        while not list(table_dir.glob(f"_versions/dt={day}/*/_temporary")):  # the staged write has started
            assert a.poll() is None, "run A ended before its write stalled"
            assert time.time() < deadline, "run A never reached its write"
            time.sleep(0.2)
        refused = run("run", "--date", day, expect=5)
        assert f"pid {a.pid}" in refused and "Another run is writing tagging.item_tags" in refused
    finally:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait()

    pd.testing.assert_frame_equal(_read_partition(run, day), baseline)  # A's half-written files are not read

    resumed = run("run", "--date", day)
    assert "taking over the lock" in resumed
    after = _read_partition(run, day)
    assert after["itemid"].is_unique and len(after) > 1800 and after["run_id"].nunique() == 1
    assert set(after["itemid"]) != set(baseline["itemid"])  # the new version, whole
    history = run("history", "--date", day)  # two published versions, the newest one current
    current = history.split("readers see ")[1].split()[0]
    assert f"* {current}" in history and history.count("  publish ") == 2
