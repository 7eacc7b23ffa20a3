"""normalize() on small hand-made DataFrames in a real SparkSession."""
import json
import re

import pytest

from tagger.config import TextConf
from tagger.job.normalize import ITEM_COLUMNS, QUARANTINE_COLUMNS, normalize

POOL = "itemid string, title string, summary string, relate_app_tag_id string, dtype string, " \
       "recommend_grade string, gc string, create_time string"
SPEECH = "id bigint, video_id string, raw string, dt string"
TEXT = TextConf(max_chars={"title": 10, "summary": 20, "ocr": 15, "asr": 15}, speech_text_fields=("text",))


def _pool(spark, rows):
    full = [(i, t, s, "", d, "A", "PGC", c) for i, t, s, d, c in rows]
    return spark.createDataFrame(full, POOL)


def _norm(spark, pool_rows, asr_rows=(), ocr_rows=()):
    result = normalize(_pool(spark, pool_rows), spark.createDataFrame(list(asr_rows), SPEECH),
                       spark.createDataFrame(list(ocr_rows), SPEECH), TEXT)
    items = {r["itemid"]: r.asDict() for r in result.items.collect()}
    quarantine = [r.asDict() for r in result.quarantine.collect()]
    assert result.items.columns == ITEM_COLUMNS and result.quarantine.columns == QUARANTINE_COLUMNS
    return items, quarantine


def test_latest_usable_speech_row_per_video_is_joined(spark):
    asr = [
        (1, "v1", json.dumps(["旧的一行"], ensure_ascii=False), "2024-01-05"),
        (2, "v1", json.dumps([{"text": "最新一行"}], ensure_ascii=False), "2024-01-06"),
        (3, "v1", '["broken', "2024-01-07"),  # newest but unusable: quarantined, older good row used
        (4, "other", json.dumps(["不属于本次"], ensure_ascii=False), "2024-01-05"),
    ]
    ocr = [(9, "v1", json.dumps(["屏幕文字"], ensure_ascii=False), "2024-01-05")]
    items, quarantine = _norm(spark, [("v1", "视频", "", "yichehao_video", "2024-01-05 10:00:00")], asr, ocr)
    assert items["v1"]["doc_text"] == "视频。屏幕文字。最新一行"
    assert items["v1"]["has_asr"] and items["v1"]["has_ocr"]
    assert [(q["itemid"], q["source"], q["scope"], q["reason"].split(":")[0]) for q in quarantine] == \
        [("v1", "asr", "row", "asr_malformed_json")]
    assert quarantine[0]["raw_excerpt"] == '["broken'


def test_latest_usable_ocr_row_is_joined_and_a_bad_one_quarantined(spark):
    """OCR goes through the same rule as ASR, with its own source and reason codes. Break: drop the
    OCR rows from the quarantine union in tagger/job/normalize.py, and the bad OCR row is lost."""
    ocr = [
        (7, "v2", json.dumps(["旧字幕"], ensure_ascii=False), "2024-01-05"),
        (8, "v2", json.dumps([{"text": "新字幕"}], ensure_ascii=False), "2024-01-06"),
        (9, "v2", '{"text": 1', "2024-01-07"),  # newest but unusable
    ]
    items, quarantine = _norm(spark, [("v2", "视频", "", "yichehao_video", "2024-01-05 10:00:00")], ocr_rows=ocr)
    assert items["v2"]["doc_text"] == "视频。新字幕"
    assert items["v2"]["has_ocr"] and not items["v2"]["has_asr"]
    assert [(q["itemid"], q["source"], q["scope"], q["reason"].split(":")[0]) for q in quarantine] == \
        [("v2", "ocr", "row", "ocr_malformed_json")]
    assert quarantine[0]["raw_excerpt"] == '{"text": 1'


def test_speech_is_not_joined_to_articles(spark):
    asr = [(1, "n1", json.dumps(["语音"], ensure_ascii=False), "2024-01-05")]
    items, quarantine = _norm(spark, [("n1", "文章", "摘要", "yichehao_news", "2024-01-05 10:00:00")], asr)
    assert items["n1"]["doc_text"] == "文章。摘要" and not items["n1"]["has_asr"]
    assert quarantine == []


def test_duplicates_merge_or_quarantine_and_null_ids_are_quarantined(spark):
    rows = [
        ("a", "标题", "摘要", "yichehao_news", "2024-01-05 08:00:00"),
        ("a", "标题", "摘要", "yichehao_news", "2024-01-05 08:00:00"),  # exact duplicate: merged
        ("b", "旧标题", "摘要", "yichehao_news", "2024-01-05 08:00:00"),
        ("b", "新标题", "摘要", "yichehao_news", "2024-01-05 09:00:00"),  # latest wins
        (None, "无id", "摘要", "yichehao_news", "2024-01-05 08:00:00"),
        ("  ", "空id", "摘要", "yichehao_news", "2024-01-05 08:00:00"),
    ]
    items, quarantine = _norm(spark, rows)
    assert sorted(items) == ["a", "b"]
    assert items["b"]["doc_text"].startswith("新标题")
    reasons = sorted(((q["itemid"] or "<null>"), q["scope"], q["reason"].split(":")[0]) for q in quarantine)
    assert reasons == [("  ", "item", "blank_itemid"), ("<null>", "item", "null_itemid"),
                       ("b", "row", "duplicate_itemid_conflict")]


def test_doc_text_is_bounded_per_part_and_cleaned(spark):
    title = "标题" * 50
    summary = "a\u0000b\u200b\tc   d" + "摘" * 100
    asr = [(1, "v", json.dumps(["语" * 1000], ensure_ascii=False), "2024-01-05")]
    items, _ = _norm(spark, [("v", title, summary, "yichehao_video", "2024-01-05 08:00:00")], asr)
    text = items["v"]["doc_text"]
    assert text == "标题" * 5 + "。" + "a b c d" + "摘" * 13 + "。" + "语" * 15


@pytest.mark.parametrize("title,summary", [(None, None), ("", "  \t "), ("\u0000", None)])
def test_item_with_no_text_at_all_is_quarantined_as_an_item(spark, title, summary):
    items, quarantine = _norm(spark, [("e", title, summary, "yichehao_news", "2024-01-05 08:00:00")])
    assert items == {}
    assert [(q["itemid"], q["scope"], q["reason"].split(":")[0]) for q in quarantine] == [("e", "item", "empty_text")]


def _udf_runs(df) -> int:
    """pandas UDF evaluations (ArrowEvalPython nodes) Spark would run to compute df now: nodes inside
    the plan of a cached relation (InMemoryRelation) are not run, so they are not counted."""
    stack, count = [], 0
    for line in df._jdf.queryExecution().executedPlan().toString().splitlines():
        first = re.search(r"[A-Za-z*]", line)
        if not first:
            continue
        depth = first.start()
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if "ArrowEvalPython" in line and not any(cached for _, cached in stack):
            count += 1
        stack.append((depth, "InMemoryRelation" in line))
    return count


def test_the_cached_normalize_parses_speech_once_for_items_and_quarantine(spark):
    """cache=True (the job's): items and quarantine equal the uncached ones, and once items are
    computed, the quarantine runs no pandas UDF again (parsed payloads and doc_text come from the
    cache; uncached, it parses every payload and builds every doc_text again). Break: drop the
    `persist` of the parsed rows in latest_speech, or of the joined items in normalize."""
    pool = [("v1", "视频", "", "yichehao_video", "2024-01-05 10:00:00"), ("a1", "", "", "news", "2024-01-05")]
    asr = [(1, "v1", json.dumps(["一行"], ensure_ascii=False), "2024-01-05"), (2, "v1", '["bad', "2024-01-06")]
    ocr = [(3, "v1", '{"text": 1', "2024-01-05")]
    args = (_pool(spark, pool), spark.createDataFrame(asr, SPEECH), spark.createDataFrame(ocr, SPEECH), TEXT)
    plain = normalize(*args)
    # before anything is cached: Spark reads a cached plan wherever an equal plan occurs
    assert _udf_runs(plain.quarantine) > 0
    plain_items, plain_quarantine = sorted(map(tuple, plain.items.collect())), sorted(map(tuple, plain.quarantine.collect()))
    cached = normalize(*args, cache=True)
    assert len(cached.cached) == 3 and all(df.is_cached for df in cached.cached)
    assert sorted(map(tuple, cached.items.collect())) == plain_items
    assert _udf_runs(cached.quarantine) == 0
    assert sorted(map(tuple, cached.quarantine.collect())) == plain_quarantine
    assert len(plain_quarantine) == 3  # the empty a1, the bad ASR row, the bad OCR row
    for df in cached.frames[2:]:
        df.unpersist()


def test_keys_normalize_several_runs_in_one_plan_as_each_alone(spark):
    """A backfill pass normalizes all its dates in one plan (keys=("run_date",)). The same itemid
    on two dates, with its own duplicates and its own speech window on each, must come out exactly
    as two separate runs would give it. Breaks that fail this: drop `keys` from dedupe_pool's window
    (one date's row loses to the other's as a duplicate), from latest_speech's window (a date takes
    the other's newer ASR), or from normalize's speech joins (rows multiply)."""
    from pyspark.sql import functions as F

    runs = {
        "2024-01-05": dict(
            pool=[("v1", "周五视频", "", "yichehao_video", "2024-01-05 10:00:00"),
                  ("v1", "周五旧标题", "", "yichehao_video", "2024-01-05 09:00:00"),  # loses on 01-05
                  ("a1", "文章", "", "news", "garbage")],
            asr=[(1, "v1", json.dumps(["周五语音"], ensure_ascii=False), "2024-01-05"),
                 (2, "v1", '["bad', "2024-01-04")]),
        "2024-01-06": dict(
            pool=[("v1", "周六视频", "", "yichehao_video", "2024-01-06 08:00:00"),
                  ("a2", "", "", "news", "2024-01-06")],  # empty text: quarantined
            asr=[(1, "v1", json.dumps(["周五语音"], ensure_ascii=False), "2024-01-05"),  # in both windows
                 (3, "v1", json.dumps(["周六语音"], ensure_ascii=False), "2024-01-07")]),
    }

    def frames(run):
        pool, asr = _pool(spark, run["pool"]), spark.createDataFrame(run["asr"], SPEECH)
        return pool, asr, spark.createDataFrame([], SPEECH)

    alone = {}
    for d, run in runs.items():
        result = normalize(*frames(run), TEXT)
        alone[d] = (sorted(map(tuple, result.items.collect())), sorted(map(tuple, result.quarantine.collect())))

    def tagged(i):
        out = None
        for d, run in runs.items():
            df = frames(run)[i].withColumn("run_date", F.lit(d))
            out = df if out is None else out.unionByName(df)
        return out

    together = normalize(tagged(0), tagged(1), tagged(2), TEXT, keys=("run_date",))
    assert together.items.columns == [*ITEM_COLUMNS, "run_date"]
    assert together.quarantine.columns == [*QUARANTINE_COLUMNS, "run_date"]
    for d in runs:
        items = together.items.filter(F.col("run_date") == d).drop("run_date")
        quarantine = together.quarantine.filter(F.col("run_date") == d).drop("run_date")
        assert (sorted(map(tuple, items.collect())), sorted(map(tuple, quarantine.collect()))) == alone[d], d
    # and the runs really differ, so a mix-up cannot pass unseen
    assert alone["2024-01-05"][0] != alone["2024-01-06"][0]
    assert [r for r in alone["2024-01-06"][0] if r[0] == "v1"][0][2] == "周六视频。周六语音"
