"""Catalogue of bad source data, seeded into the real source tables and run through the real job.

Each kind ends as a tagged item (possibly with a quarantine row naming the bad source row), an
item quarantined with a reason, or a clear error before any Spark work; the invariant
(itemids out = itemids selected) is checked on the whole day as well.
"""
from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from tagger.config import ConfigError
from tagger.job.extract import MissingInputError
from tagger.job.pipeline import run_date
from test_pipeline import POOL_SCHEMA, insert_rows, partition

DAY = "2024-04-01"
ASR = "id bigint, video_id string, result_asr string, dt string"
OCR = "id bigint, video_id string, ocr_info string, dt string"
TAGGED, DROPPED, ABSENT = "tagged", "quarantined item", "not selected"


def pool_row(itemid, title="标题", summary="摘要", dtype="yichehao_news", create_time=f"{DAY} 08:00:00",
             grade="A", gc="PGC"):
    return (itemid, title, summary, "", dtype, grade, gc, create_time, DAY)


def video(itemid, title="今天带大家看一下这台车"):
    return pool_row(itemid, title=title, summary="", dtype="yichehao_video")


# kind -> (pool rows, asr rows, ocr rows, expected outcome, quarantine reason prefix expected or None)
CATALOGUE = {
    "null_title_and_summary": ([pool_row("b01", None, None)], [], [], DROPPED, "empty_text"),
    "empty_title_and_summary": ([pool_row("b02", "", "")], [], [], DROPPED, "empty_text"),
    "whitespace_only_text": ([pool_row("b03", " \t\n", "\u3000\u00a0 ")], [], [], DROPPED, "empty_text"),
    "null_title_good_summary": ([pool_row("b04", None, "比亚迪汉正式上市，售价20万起")], [], [], TAGGED, None),
    "megabyte_title": ([pool_row("b05", "新车上市" * 262_144)], [], [], TAGGED, None),
    "emoji_and_mixed_scripts": ([pool_row("b06", "🚗🔥 New BYD 汉 EV 正式上市 ёжик العربية 😀", "🚙")], [], [],
                                TAGGED, None),
    "control_characters": ([pool_row("b07", "\x00\x07标题\x1b[31m", "摘要\r\n\x7f")], [], [], TAGGED, None),
    "lone_surrogate_in_title": ([pool_row("b08", "标题\ud800尾", "摘要")], [], [], TAGGED, None),
    "asr_truncated_json": ([video("b09")], [(1, "b09", '["今天我们来看', DAY)], [], TAGGED, "asr_malformed_json"),
    "asr_object_not_list": ([video("b10")], [(2, "b10", '{"transcript": "一段话"}', DAY)], [], TAGGED,
                            "asr_not_a_list"),  # an object no configured path reads ({"text": ...} is Whisper's)
    "asr_nested_list": ([video("b11")], [(3, "b11", '[["嵌套"]]', DAY)], [], TAGGED, "asr_unsupported_element"),
    "asr_numeric": ([video("b12")], [(4, "b12", "404", DAY)], [], TAGGED, "asr_not_a_list"),
    "asr_huge_payload": ([video("b13")], [(5, "b13", json.dumps(["很长的语音"] * 200_000, ensure_ascii=False), DAY)],
                         [], TAGGED, None),
    "asr_lone_surrogate_escape": ([video("b14")], [(6, "b14", '["\\ud800北京车展"]', DAY)], [], TAGGED, None),
    "ocr_plain_text_not_json": ([video("b15")], [], [(7, "b15", "ERROR: ocr timeout", DAY)], TAGGED,
                                "ocr_malformed_json"),
    "duplicate_itemid_different_content": ([pool_row("b16", "旧标题", create_time=f"{DAY} 08:00:00"),
                                            pool_row("b16", "新标题", create_time=f"{DAY} 09:00:00")], [], [],
                                           TAGGED, "duplicate_itemid_conflict"),
    "duplicate_itemid_same_content": ([pool_row("b17"), pool_row("b17")], [], [], TAGGED, None),
    "blank_itemid": ([pool_row("   ")], [], [], DROPPED, "blank_itemid"),
    "video_without_asr_or_ocr": ([video("b19", "理想L6正式上市")], [], [], TAGGED, None),
    "asr_two_days_late": ([video("b20")], [(8, "b20", '["我们在2024北京车展现场"]', "2024-04-03")], [], TAGGED, None),
    "asr_outside_the_window": ([video("b21")], [(9, "b21", '["上海车展"]', "2024-04-09")], [], TAGGED, None),
    "unknown_dtype": ([pool_row("b22", dtype="podcast")], [], [], ABSENT, None),
    "malformed_create_time": ([pool_row("b23", create_time="yesterday")], [], [], TAGGED, "malformed_create_time"),
    "null_create_time": ([pool_row("b24", create_time=None)], [], [], ABSENT, None),
    "sql_in_itemid": ([pool_row("b25'; DROP TABLE tagging.item_tags; --")], [], [], TAGGED, None),
    "null_grade_and_gc": ([pool_row("b26", grade=None, gc=None)], [], [], ABSENT, None),
}
NULL_ITEMID_MARK = "无id的行b27"


@pytest.fixture(scope="module")
def bad_day(spark, cfg, trained):
    pool, asr, ocr = [], [], []
    for rows, a, o, _, _ in CATALOGUE.values():
        pool += rows
        asr += a
        ocr += o
    pool.append(pool_row(None, NULL_ITEMID_MARK))
    insert_rows(spark, cfg.tables.pool, pool, POOL_SCHEMA)
    for table, rows, schema in ((cfg.tables.asr, asr, ASR), (cfg.tables.ocr, ocr, OCR)):
        by_dt = {}
        for r in rows:
            by_dt.setdefault(r[3], []).append(r)
        for dt_rows in by_dt.values():
            insert_rows(spark, table, dt_rows, schema)
    summary = run_date(spark, cfg, DAY)
    out = {r["itemid"]: r for r in partition(spark, cfg.tables.output, DAY).collect()}
    quarantine = [r.asDict() for r in partition(spark, cfg.tables.quarantine, DAY).collect()]
    return summary, out, quarantine


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_bad_input_kind(bad_day, kind):
    _, out, quarantine = bad_day
    rows, _, _, outcome, reason = CATALOGUE[kind]
    itemid = rows[0][0]
    mine = [q for q in quarantine if q["itemid"] == itemid]
    if outcome == TAGGED:
        assert itemid in out, f"{kind}: selected item missing from the output"
        assert not [q for q in mine if q["scope"] == "item"]
    elif outcome == DROPPED:
        assert itemid not in out
        assert [q for q in mine if q["scope"] == "item"], f"{kind}: no item-level quarantine row"
    else:
        assert itemid not in out and not mine, f"{kind}: a row the team's filter drops leaked through"
    if reason:
        assert any(q["reason"].startswith(reason) for q in mine), f"{kind}: expected reason {reason}: {mine}"
    else:
        assert not mine, f"{kind}: unexpected quarantine rows {mine}"


def test_null_itemid_is_quarantined_with_its_excerpt(bad_day):
    _, _, quarantine = bad_day
    assert [q["reason"] for q in quarantine if NULL_ITEMID_MARK in (q["raw_excerpt"] or "")] == ["null_itemid"]


def test_speech_rules_on_bad_days(bad_day):
    _, out, _ = bad_day
    paths = lambda itemid: {t["tag_path"] for t in out[itemid]["tags"]}  # noqa: E731
    assert "内容标签/车展/北京车展" in paths("b20")  # late ASR inside the window is used
    assert "内容标签/车展/上海车展" not in paths("b21")  # outside the window it is not
    assert "内容标签/车展/北京车展" in paths("b14")  # a lone-surrogate escape does not lose the rest


def test_invariant_holds_on_the_bad_day(spark, bad_day):
    summary, out, quarantine = bad_day
    selected = {rows[0][0] for rows, _, _, outcome, _ in CATALOGUE.values() if outcome != ABSENT}
    dropped = {q["itemid"] for q in quarantine if q["scope"] == "item" and q["itemid"] is not None}
    assert set(out) | dropped == selected and not set(out) & dropped
    assert summary.items_selected == len(selected)
    assert spark.catalog.tableExists("tagging.item_tags")  # the itemid carrying SQL was only data


def test_a_day_with_no_items_writes_an_empty_partition(spark, cfg, trained):
    day = "2024-04-20"
    spark.sql(f"ALTER TABLE {cfg.tables.pool} ADD IF NOT EXISTS PARTITION (pt = '{day}')")
    summary = run_date(spark, cfg, day)
    assert summary.items_selected == summary.items_tagged == 0
    assert f"dt={day}" in [r[0] for r in spark.sql(f"SHOW PARTITIONS {cfg.tables.output}").collect()]
    assert partition(spark, cfg.tables.output, day).count() == 0


def test_a_missing_source_partition_is_a_clear_error(spark, cfg, trained):
    with pytest.raises(MissingInputError, match="landed"):
        run_date(spark, cfg, "2024-04-21")


def test_a_model_tag_retired_in_the_tag_dimension_stops_the_run_at_start(spark, cfg, trained):
    from tagger.models.spec import read_spec

    p0 = read_spec(next(h for h in cfg.heads if h.name == "p0").path)
    label = next(lab for lab, on in zip(p0.labels, p0.enabled) if on)  # a label the artifact emits
    day = "2030-01-01"
    insert_rows(spark, cfg.tables.pool, [pool_row("r1", "新车谍照曝光")[:-1] + (day,)], POOL_SCHEMA)
    snapshot = spark.table(cfg.tables.tag_dim).filter(F.col("dt") == "2024-01-01")
    dim = (spark.createDataFrame(snapshot.toPandas(), snapshot.schema)  # not read and written at once
           .withColumn("status", F.when(F.col("tag_path_name") == f"内容标签/新车资讯/{label}", 0)
                       .otherwise(F.col("status")))
           .withColumn("dt", F.lit(day)))
    dim.select(*snapshot.columns).write.insertInto(cfg.tables.tag_dim, overwrite=True)
    with pytest.raises(ConfigError, match=label):
        run_date(spark, cfg, day)
    # refused at start: nothing written (the table itself may not exist yet when this runs alone)
    assert not spark.catalog.tableExists(cfg.tables.output) or partition(spark, cfg.tables.output, day).count() == 0
