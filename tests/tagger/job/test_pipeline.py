"""The daily job end to end on the embedded catalog: real tables, real trained models."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from tagger.config import ConfigError, load_config
from tagger.job.extract import MissingInputError
from tagger.job.pipeline import run_date
from conftest import REPO, RUN_DATE, write_config

POOL_SCHEMA = ("itemid string, title string, summary string, relate_app_tag_id string, dtype string, "
               "recommend_grade string, gc string, create_time string, pt string")


def selected_itemids(pool: pd.DataFrame, day: str) -> set[str]:
    """The team's extract filter, written independently of sql/extract_pool.sql (the oracle)."""
    grade, gc, created = pool["recommend_grade"], pool["gc"], pool["create_time"]
    # SQL semantics: a comparison with NULL is not true, so NULL grade, gc or create_time drops the row.
    p = pool[(pool["pt"] == day) & pool["dtype"].isin(["news", "yichehao_news", "yichehao_video"])
             & grade.notna() & (grade != "Z") & gc.notna() & ~gc.isin(["AGC-XIAOYI", "AGC-XIAOSHA"])
             & created.notna() & (created >= day)]
    return set(p["itemid"].dropna())


def partition(spark, table: str, day: str):
    return spark.table(table).filter(F.col("dt") == day)


def insert_rows(spark, table: str, rows: list[tuple], schema: str) -> None:
    df = spark.createDataFrame(rows, schema)
    df.select(*[f.name for f in spark.table(table).schema.fields]).write.insertInto(table, overwrite=True)


def speech(*texts: str) -> str:
    return json.dumps([{"text": t} for t in texts], ensure_ascii=False)


@pytest.fixture(scope="module")
def first_run_and_log(spark, cfg, trained):
    lines = []
    return run_date(spark, cfg, RUN_DATE, log=lines.append), lines


@pytest.fixture(scope="module")
def first_run(first_run_and_log):
    return first_run_and_log[0]


def test_each_stage_logs_a_line_as_it_starts_and_ends(first_run_and_log):
    summary, lines = first_run_and_log
    stages = ["prepare", "extract_normalize", "tag", "summary", "stage", "audit", "publish"]
    expected = [f"[{RUN_DATE}] stage {name} {when}" for name in stages for when in ("...", "done in")]
    staged = [ln for ln in lines if ln.startswith(f"[{RUN_DATE}] stage ")]
    assert [ln[:len(e)] for ln, e in zip(staged, expected)] == expected and len(staged) == len(expected)
    assert all("(elapsed " in ln for ln in staged if " done in " in ln)
    assert list(summary.stage_seconds) == [*stages, "total"]


def test_every_selected_item_is_output_once_or_quarantined(spark, cfg, demo_data, first_run):
    expected = selected_itemids(demo_data.pool, RUN_DATE)
    out = partition(spark, cfg.tables.output, RUN_DATE).toPandas()
    q = partition(spark, cfg.tables.quarantine, RUN_DATE).toPandas()
    dropped = set(q.loc[q["scope"] == "item", "itemid"].dropna())

    assert len(expected) > 900
    assert out["itemid"].is_unique
    assert set(out["itemid"]) | dropped == expected
    assert not set(out["itemid"]) & dropped
    assert q["reason"].str.len().gt(0).all()
    # The generator seeds bad speech rows, conflicting duplicates and NULL itemids on every day.
    assert {"asr", "ocr", "pool"} <= set(q["source"])
    assert first_run.items_selected == len(expected) and first_run.items_tagged == len(out)


def test_output_rows_carry_tag_ids_from_the_tag_dimension(spark, cfg, first_run):
    dim = spark.table(cfg.tables.tag_dim).filter("status = 1 AND tag_type_name = '内容标签'")
    ids = {r["tag_path_name"]: r["id"] for r in dim.select("tag_path_name", "id").distinct().collect()}
    rows = partition(spark, cfg.tables.output, RUN_DATE).collect()
    tagged = [r for r in rows if r["tags"]]
    assert len(tagged) > 50
    for r in tagged:
        assert all(t["tag_id"] == ids[t["tag_path"]] for t in r["tags"])
        assert r["tag_ids"] == ",".join(str(t["tag_id"]) for t in r["tags"])
        assert r["model_version"] == first_run.model_version and r["run_id"] == first_run.run_id
    # The P0 head only runs on rows the gate passed, and the gate's own tag is on those rows.
    for r in tagged:
        sources = {t["source"] for t in r["tags"]}
        if "p0" in sources:
            assert "gate" in sources and r["gate_score"] >= 0
    assert any(t["source"] == "p0" for r in tagged for t in r["tags"])
    assert any(t["source"] == "rule" for r in tagged for t in r["tags"])
    # The P1 head, added by configuration alone, tags buying guides on any row, gated or not.
    p1 = [t for r in tagged for t in r["tags"] if t["source"] == "p1"]
    assert p1 and all(t["tag_path"].startswith("内容标签/导购/") for t in p1)
    # The cascade never disagrees with the gate, so no parent had to be implied.
    assert first_run.implied_parents == 0 and not any(t["source"] == "hierarchy" for r in tagged for t in r["tags"])


def test_one_metrics_row_per_run(spark, cfg, first_run):
    metrics = partition(spark, cfg.tables.metrics, RUN_DATE).filter(F.col("run_id") == first_run.run_id).collect()
    assert len(metrics) >= 1
    m = metrics[0]
    assert m["items_selected"] == first_run.items_selected and m["items_tagged"] == first_run.items_tagged
    assert m["tag_counts"] == first_run.tag_counts
    assert set(m["stage_seconds"]) >= {"extract_normalize", "tag", "stage", "audit", "publish", "total"}


def test_models_load_once_per_python_worker_not_per_batch(spark, trained, tagger_home):
    # Small Arrow batches: a per-batch load would show as at least one load per batch.
    cfg_small = load_config(write_config(tagger_home, "small_batches.yaml",
                                         lambda raw: raw["tagging"].update(arrow_max_records_per_batch=50)))
    summary = run_date(spark, cfg_small, RUN_DATE)
    batches = summary.items_tagged // 50
    heads = len(cfg_small.heads)
    assert summary.python_workers >= 1
    # Workers that tagged an earlier run of this spec reuse their models (0 loads); a fresh
    # worker loads each head once. Per-batch loading would need heads x batches loads.
    assert summary.model_loads <= heads * summary.python_workers < heads * batches
    # The models ran once per item: nothing read after the write made Spark run the tag stage again.
    assert summary.rows_through_models == summary.items_tagged


def test_rerun_is_identical_and_other_dates_are_untouched(spark, cfg, first_run):
    other = "2024-01-02"
    run_date(spark, cfg, other)
    before_other = partition(spark, cfg.tables.output, other).toPandas()
    # The baseline comes from this config: other tests rewrite the date with other settings.
    first = run_date(spark, cfg, RUN_DATE)
    before = partition(spark, cfg.tables.output, RUN_DATE)
    before_rows = spark.createDataFrame(before.toPandas(), before.schema)

    again = run_date(spark, cfg, RUN_DATE)

    assert again.run_id == first.run_id == first_run.run_id
    assertDataFrameEqual(partition(spark, cfg.tables.output, RUN_DATE), before_rows)
    after_other = partition(spark, cfg.tables.output, other).toPandas()
    pd.testing.assert_frame_equal(after_other.sort_values("itemid").reset_index(drop=True),
                                  before_other.sort_values("itemid").reset_index(drop=True))


def test_words_only_in_speech_decide_the_tag(spark, cfg, trained):
    day = "2024-02-01"
    vague = "今天带大家看一下这台车"
    rows = [(f"sp{i}", vague, "", "", "yichehao_video", "A", "PGC", f"{day} 09:00:00", day) for i in range(4)]
    insert_rows(spark, cfg.tables.pool, rows, POOL_SCHEMA)
    # sp0: show named only in ASR (landed a day late); sp1: only in OCR; sp2: no speech; sp3: ASR is '[]'.
    insert_rows(spark, cfg.tables.asr, [(900001, "sp0", speech("我们现在在2024北京车展现场"), "2024-02-02"),
                                        (900002, "sp3", "[]", day)], "id bigint, video_id string, result_asr string, dt string")
    insert_rows(spark, cfg.tables.ocr, [(900003, "sp1", speech("上海车展 首发"), day)],
                "id bigint, video_id string, ocr_info string, dt string")
    run_date(spark, cfg, day)
    tags = {r["itemid"]: {t["tag_path"] for t in r["tags"]} for r in partition(spark, cfg.tables.output, day).collect()}
    assert "内容标签/车展/北京车展" in tags["sp0"]
    assert "内容标签/车展/上海车展" in tags["sp1"]
    assert not any(t.startswith("内容标签/车展/") for t in tags["sp2"] | tags["sp3"])


def test_a_show_added_to_the_rules_yaml_is_tagged_without_code_change(spark, cfg, trained, tagger_home):
    day = "2024-02-03"
    insert_rows(spark, cfg.tables.pool, [("cq1", "重庆车展开幕，多款新车亮相", "", "", "yichehao_news", "A", "PGC",
                                          f"{day} 08:00:00", day)], POOL_SCHEMA)
    run_date(spark, cfg, day)
    before = partition(spark, cfg.tables.output, day).collect()[0]
    assert not any(t["tag_path"] == "内容标签/车展/重庆车展" for t in before["tags"])

    rules = tagger_home / "rules_plus_chongqing.yaml"
    rules.write_text((REPO / "conf" / "autoshow_rules.yaml").read_text(encoding="utf-8")
                     + '  - {id: chongqing, tag: 内容标签/车展/重庆车展, version: 1, patterns: ["重庆(国际)?车展"]}\n',
                     encoding="utf-8")
    cfg2 = load_config(write_config(tagger_home, "with_chongqing.yaml", lambda raw: raw.update(rules=str(rules))))
    summary = run_date(spark, cfg2, day)
    after = partition(spark, cfg.tables.output, day).collect()[0]
    cq = [t for t in after["tags"] if t["tag_path"] == "内容标签/车展/重庆车展"]
    assert len(cq) == 1 and cq[0]["source"] == "rule" and cq[0]["tag_id"] > 0
    assert after["rules_version"] == summary.rules_version != before["rules_version"]


def test_missing_pool_partition_fails_before_writing(spark, cfg, trained):
    with pytest.raises(MissingInputError, match="pt=2031-01-01"):
        run_date(spark, cfg, "2031-01-01")
    assert partition(spark, cfg.tables.output, "2031-01-01").count() == 0


def test_a_rule_tag_missing_from_the_tag_dimension_is_refused_at_start(spark, cfg, trained, tagger_home):
    rules = tagger_home / "rules_unknown_tag.yaml"
    rules.write_text('version: "x"\nrules:\n  - {id: mars, tag: 内容标签/车展/火星车展, version: 1, patterns: ["火星车展"]}\n',
                     encoding="utf-8")
    cfg2 = load_config(write_config(tagger_home, "unknown_tag.yaml", lambda raw: raw.update(rules=str(rules))))
    with pytest.raises(ConfigError, match="火星车展"):
        run_date(spark, cfg2, RUN_DATE)
