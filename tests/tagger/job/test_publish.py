"""Write-audit-publish on real Hive tables: versions are staged beside the live partition, readers
switch between whole versions, output and quarantine always name the same version, and a crash
between the two switches is seen and mended.

Breaks these tests catch: writing the staged rows into the live partition directory; switching
the output before the quarantine without repair (the crash test); deleting the published version
in cleanup; a new version for an identical rerun (digest not order-independent)."""
from dataclasses import replace

import pytest
from pyspark.sql import functions as F

from tagger.job.publish import (PublishError, cleanup, partition_location, publish, published_version, repair,
                                rollback, stage, version_of)
from tagger.job.write import ensure_tables

DT = "2024-02-01"
OUT = "itemid string, dtype string, gate_score double, tags array<struct<tag_id: bigint, tag_name: string, " \
      "tag_path: string, score: double, source: string>>, tag_ids string, model_version string, " \
      "rules_version string, run_id string"
Q = "itemid string, source string, scope string, reason string, raw_excerpt string, run_id string"


@pytest.fixture(scope="module")
def tables(spark, cfg):
    t = replace(cfg.tables, output="wap_tests.item_tags", quarantine="wap_tests.item_tags_quarantine",
                metrics="wap_tests.item_tags_run_metrics", versions="wap_tests.item_tags_versions",
                publish_log="wap_tests.item_tags_publish_log", daily_stats="wap_tests.item_tags_daily_stats")
    ensure_tables(spark, t)
    return t


def _frames(spark, run, items):
    out = spark.createDataFrame([(f"i{k}", "news", 0.5, [], "", "m", "r", run) for k in range(items)], OUT)
    q = spark.createDataFrame([(f"q{k}", "pool", "row", "bad", "x", run) for k in range(items % 3)], Q)
    return out, q


def _read(spark, t, dt=DT):
    out = sorted(r["itemid"] for r in spark.table(t.output).filter(F.col("dt") == dt).collect())
    runs = {r["run_id"] for r in spark.table(t.output).filter(F.col("dt") == dt).collect()}
    q_runs = {r["run_id"] for r in spark.table(t.quarantine).filter(F.col("dt") == dt).collect()}
    return out, runs, q_runs


def test_staging_changes_nothing_readers_see_and_publish_switches_whole_versions(spark, tables):
    v1 = stage(spark, tables, DT, "run1", *_frames(spark, "run1", 4))
    assert partition_location(spark, tables.output, DT) is None  # staged only
    publish(spark, tables, DT, v1.version)
    assert _read(spark, tables) == (["i0", "i1", "i2", "i3"], {"run1"}, {"run1"})

    v2 = stage(spark, tables, DT, "run2", *_frames(spark, "run2", 5))
    assert _read(spark, tables)[1] == {"run1"}  # still the old version
    publish(spark, tables, DT, v2.version)
    assert _read(spark, tables) == ([f"i{k}" for k in range(5)], {"run2"}, {"run2"})
    assert published_version(spark, tables, DT) == v2.version
    assert version_of(partition_location(spark, tables.quarantine, DT)) == v2.version

    before, now = rollback(spark, tables, DT, None, "test")
    assert (before, now) == (v2.version, v1.version)
    assert _read(spark, tables) == (["i0", "i1", "i2", "i3"], {"run1"}, {"run1"})
    log = spark.table(tables.publish_log).filter(F.col("dt") == DT).orderBy("at").collect()
    assert [r["action"] for r in log] == ["publish", "publish", "rollback"] and log[-1]["reason"] == "test"


def test_an_identical_rerun_makes_no_new_version(spark, tables):
    first = stage(spark, tables, "2024-02-02", "run1", *_frames(spark, "run1", 6))
    out, q = _frames(spark, "run1", 6)
    again = stage(spark, tables, "2024-02-02", "run1", out.repartition(3), q)  # other row order
    assert again.version == first.version and again.reused and not first.reused


def test_a_crash_between_the_two_switches_is_seen_and_repaired(spark, tables, monkeypatch):
    day = "2024-02-03"
    v1 = stage(spark, tables, day, "run1", *_frames(spark, "run1", 2))
    publish(spark, tables, day, v1.version)
    v2 = stage(spark, tables, day, "run2", *_frames(spark, "run2", 4))
    monkeypatch.setenv("TAGGER_FAILPOINT", "crash_between_switches:1")
    with pytest.raises(RuntimeError, match="crashed between"):
        publish(spark, tables, day, v2.version)
    monkeypatch.delenv("TAGGER_FAILPOINT")
    # the quarantine moved, the output did not: readers of the output still see v1 ...
    assert published_version(spark, tables, day) == v1.version
    assert version_of(partition_location(spark, tables.quarantine, day)) == v2.version
    # ... and the next run (or `tagger publish`) mends the quarantine back to the output's version
    assert repair(spark, tables, day) == v1.version
    assert _read(spark, tables, day) == (["i0", "i1"], {"run1"}, {"run1"})
    assert repair(spark, tables, day) is None


def test_old_versions_are_removed_but_never_the_published_one(spark, tables):
    day = "2024-02-04"
    staged = [stage(spark, tables, day, f"run{k}", *_frames(spark, f"run{k}", k + 1)) for k in range(5)]
    publish(spark, tables, day, staged[0].version)  # the oldest is the published one
    removed = cleanup(spark, tables, day, keep=2)
    assert set(removed) == {s.version for s in staged[1:3]}
    assert _read(spark, tables, day)[0] == ["i0"]
    with pytest.raises(PublishError, match="not staged completely"):
        publish(spark, tables, day, staged[1].version)


def test_a_table_not_created_yet_has_no_published_version(spark, tables):
    """`tagger demo` asks which history days are published before its first run created the tables.
    Break: drop the tableExists check in partition_location (TABLE_OR_VIEW_NOT_FOUND)."""
    assert published_version(spark, replace(tables, output="wap_tests.not_created_yet"), DT) is None
