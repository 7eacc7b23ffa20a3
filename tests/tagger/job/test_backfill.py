"""`tagger backfill` in one pass (tagger/job/backfill.py): each date's published partition holds the
same items and tags as `tagger run --date D` (scores within the job's 4-decimal rounding: the items
of several dates share Arrow batches, hence padding widths), a failed date does not stop the others,
rerunning the same command finishes only what is missing, and rows that land late make a date due
again.

The module writes its own copy of the session's demo data into source tables of its own (it adds
a late ASR row) and uses three sets of output tables: per-date runs, a clean one-pass range, and a
range resumed after an injected failure.
"""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from conftest import SEED_DAYS, SEED_START, write_config
from tagger.cli.common import date_range
from tagger.config import load_config
from tagger.job.backfill import backfill, plan_passes
from tagger.job.pipeline import run_date

pytestmark = pytest.mark.slow
DATES = date_range(SEED_START, "2024-01-03")[:SEED_DAYS]
COLUMNS = ["itemid", "dtype", "tag_ids", "model_version", "rules_version", "run_id"]


def _config(tmp_path, db: str):
    def edit(raw):
        raw["tables"].update(pool="bf_src.pool", asr="bf_src.asr", ocr="bf_src.ocr", tag_dim="bf_src.tag_dim",
                             truth="bf_src.truth", output=f"{db}.item_tags", quarantine=f"{db}.item_tags_quarantine",
                             metrics=f"{db}.item_tags_run_metrics")
    return load_config(write_config(tmp_path, f"{db}.yaml", edit))


def _rows(spark, cfg, day: str) -> list[dict]:
    df = spark.table(cfg.tables.output).filter(F.col("dt") == day)
    return sorted((r.asDict() for r in df.select(*COLUMNS, "gate_score").collect()), key=lambda r: r["itemid"])


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert [r["itemid"] for r in a] == [r["itemid"] for r in b]
    differing = [(x, y) for x, y in zip(a, b) if any(x[c] != y[c] for c in COLUMNS)
                 or abs((x["gate_score"] or 0) - (y["gate_score"] or 0)) > 2e-4]
    assert not differing, differing[:3]


@pytest.fixture(scope="module")
def configs(spark, trained, demo_data, tmp_path_factory):
    from tagger.demo.seed import write_demo

    tmp = tmp_path_factory.mktemp("backfill")
    cfgs = {name: _config(tmp, name) for name in ("bf_ref", "bf_clean", "bf_resumed")}
    write_demo(spark, cfgs["bf_ref"], demo_data)  # the sources, once (the three configs share them)
    return cfgs


@pytest.fixture(scope="module")
def per_date(spark, configs):
    cfg = configs["bf_ref"]
    for day in DATES:
        run_date(spark, cfg, day, log=lambda *_: None)
    return {day: _rows(spark, cfg, day) for day in DATES}


def test_one_pass_equals_per_date_runs_and_a_resumed_range_equals_a_clean_one(spark, configs, per_date, monkeypatch):
    lines = []
    clean = backfill(spark, configs["bf_clean"], DATES, log=lines.append)
    assert [s.run_date for s in clean.done] == DATES and not clean.failed
    assert len([ln for ln in lines if ln.startswith("pass 1/1")]) == 1  # one pass for the whole range
    assert all("items/s" in ln and "ETA" in ln for ln in lines if "dates written" in ln)

    monkeypatch.setenv("TAGGER_FAILPOINT", f"backfill_fail_date:{DATES[1]}")
    broken = backfill(spark, configs["bf_resumed"], DATES, log=lambda *_: None)
    assert list(broken.failed) == [DATES[1]] and [s.run_date for s in broken.done] == [DATES[0], DATES[2]]
    assert spark.table(configs["bf_resumed"].tables.output).filter(F.col("dt") == DATES[1]).count() == 0
    monkeypatch.delenv("TAGGER_FAILPOINT")
    resumed = backfill(spark, configs["bf_resumed"], DATES, log=lambda *_: None)
    assert [s.run_date for s in resumed.done] == [DATES[1]] and sorted(resumed.skipped) == [DATES[0], DATES[2]]

    for day in DATES:
        _assert_same(_rows(spark, configs["bf_clean"], day), per_date[day])
        _assert_same(_rows(spark, configs["bf_resumed"], day), _rows(spark, configs["bf_clean"], day))


def test_rows_landing_late_make_a_date_due_again(spark, configs, per_date):
    cfg = configs["bf_ref"]  # every date published by per-date runs: nothing is due
    again = backfill(spark, cfg, DATES, log=lambda *_: None)
    assert not again.done and sorted(again.skipped) == DATES
    video = (spark.table(cfg.tables.pool).filter((F.col("pt") == DATES[1]) & (F.col("dtype") == "yichehao_video"))
             .select("itemid").first()["itemid"])
    late = DATES[1][:-2] + f"{int(DATES[1][-2:]) + 2:02d}"  # two days after the video: inside its late window
    spark.createDataFrame([(999_999_001, video, '[{"text": "补录的语音 新车上市"}]', late)],
                          "id bigint, video_id string, result_asr string, dt string").write.insertInto(cfg.tables.asr)
    due = backfill(spark, cfg, DATES, log=lambda *_: None)
    # D1's speech window ends before `late`; D2 (the video's date) and D3 (whose window holds `late`) are due
    assert [s.run_date for s in due.done] == DATES[1:] and list(due.skipped) == [DATES[0]]


def test_passes_split_by_tag_snapshot_and_size():
    from types import SimpleNamespace as NS

    days = [NS(run_date=f"d{i}", pool_rows=n, spec=NS(fingerprint=fp))
            for i, (n, fp) in enumerate([(5, "a"), (5, "a"), (5, "b"), (20, "b"), (1, "b")])]
    assert [[d.run_date for d in p] for p in plan_passes(days, None)] == [["d0", "d1"], ["d2", "d3", "d4"]]
    assert [[d.run_date for d in p] for p in plan_passes(days, 10)] == [["d0", "d1"], ["d2"], ["d3"], ["d4"]]
