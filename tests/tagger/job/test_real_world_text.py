"""Text as CMS, OCR services and speech services really deliver it, through the job's own normalize
step (real Spark) and the auto-show rules: the right tag comes out. Each case stands for a kind.

Breaks these tests catch: clean_text turning format characters into spaces instead of removing
them (case 1 loses 北京车展); skipping strip_html (case 2); dropping the PaddleOCR or Whisper
expressions from text.payload_paths (case 3 quarantines the payload)."""
import json

import pytest

from tagger.config import CONF_DIR, load_config
from tagger.job.normalize import normalize
from tagger.models.text import clean_text
from tagger.rules_file import load_rules

POOL = "itemid string, title string, summary string, relate_app_tag_id string, dtype string, " \
       "recommend_grade string, gc string, create_time string"
SPEECH = "id bigint, video_id string, raw string, dt string"
DAY = "2024-01-05"
RULES = load_rules(CONF_DIR / "autoshow_rules.yaml")


def _run(spark, titles, asr=(), ocr=(), dtype="yichehao_news"):
    """{itemid: (doc_text, [rule tags])} and the quarantine rows, for items with these titles."""
    pool = spark.createDataFrame([(f"i{k}", t, "", "", dtype, "A", "PGC", f"{DAY} 08:00:00")
                                  for k, t in enumerate(titles)], POOL)
    result = normalize(pool, spark.createDataFrame(list(asr), SPEECH), spark.createDataFrame(list(ocr), SPEECH),
                       load_config().text)
    items = result.items.toPandas().sort_values("itemid")
    tags = RULES.apply(items["doc_text"])
    out = {i: (text, [path.rsplit("/", 1)[-1] for path, _ in hit])
           for i, text, hit in zip(items["itemid"], items["doc_text"], tags)}
    return out, [r.asDict() for r in result.quarantine.collect()]


FORMAT_TITLES = ["2024北京\u200b车展新车盘点", "2024北京\u200c车展新车盘点", "2024北京\u200d车展新车盘点",
                 "2024北京\u2060车展新车盘点", "\ufeff2024北京车展新车盘点", "2024北\u00ad京车展新车盘点"]


def test_format_characters_inside_a_keyword_are_removed_and_the_rule_fires(spark):
    items, quarantine = _run(spark, FORMAT_TITLES)  # one Spark job for every kind of format character
    assert items == {f"i{k}": ("2024北京车展新车盘点", ["北京车展"]) for k in range(len(FORMAT_TITLES))}
    assert quarantine == []


def test_full_width_forms_are_folded():
    assert clean_text("全新ＳＵＶ售价１２．９８万起") == "全新SUV售价12.98万起"


HTML = [("&#21271;&#20140;&#36710;&#23637;新车盘点", "北京车展新车盘点"),
        ("<b>北京</b>车展新车盘点", "北京车展新车盘点"),
        ("<p>北京车展</p><p>新车盘点</p>", "北京车展 新车盘点"),
        ("北京车展 &amp; 上海车展", "北京车展 & 上海车展")]


def test_html_entities_are_decoded_and_elements_removed(spark):
    items, _ = _run(spark, [title for title, _ in HTML])
    for k, (_, doc_text) in enumerate(HTML):
        assert items[f"i{k}"][0] == doc_text and "北京车展" in items[f"i{k}"][1]


def test_a_literal_less_than_sign_stays():
    assert clean_text("价格<10万的北京车展新车") == "价格<10万的北京车展新车"
    assert clean_text("5<6 且 7>3") == "5<6 且 7>3"


PADDLE = [[[[26, 37], [120, 37], [120, 60], [26, 60]], ["成都车展", 0.9946]],
          [[[30, 70], [200, 70], [200, 90], [30, 90]], ["新车亮相", 0.9871]]]
PADDLE_PAGED = [PADDLE, [[[[1, 2], [3, 4], [5, 6], [7, 8]], ["第二页", 0.95]]]]
WHISPER = {"text": " 我们现在在成都车展 ", "segments": [{"id": 0, "text": " 我们现在在成都车展 "}], "language": "zh"}


SHAPES = [("ocr", PADDLE, "成都车展 新车亮相"),
          ("ocr", PADDLE_PAGED, "成都车展 新车亮相 第二页"),
          ("asr", WHISPER, "我们现在在成都车展"),
          ("asr", {"segments": [{"text": "我们在"}, {"text": "成都车展"}]}, "我们在 成都车展")]


def test_paddleocr_and_whisper_payloads_are_read(spark):
    rows = {"asr": [], "ocr": []}
    for k, (source, payload, _) in enumerate(SHAPES):
        rows[source].append((k, f"i{k}", json.dumps(payload, ensure_ascii=False), DAY))
    items, quarantine = _run(spark, ["视频"] * len(SHAPES), **rows, dtype="yichehao_video")
    assert items == {f"i{k}": (f"视频。{text}", ["成都车展"]) for k, (_, _, text) in enumerate(SHAPES)}
    assert quarantine == []


def test_a_shape_no_path_reads_is_quarantined_with_its_reason(spark):
    rows = [(1, "i0", json.dumps({"result": {"lines": ["成都车展"]}}, ensure_ascii=False), DAY)]
    items, quarantine = _run(spark, ["视频"], ocr=rows, dtype="yichehao_video")
    assert items["i0"] == ("视频", [])
    assert [(q["source"], q["reason"].split(":")[0]) for q in quarantine] == [("ocr", "ocr_not_a_list")]
    assert "object with keys ['result']" in quarantine[0]["reason"]


def test_a_new_shape_is_one_line_of_config(spark, tmp_path):
    """Adding an expression to text.payload_paths reads a shape the defaults do not."""
    from dataclasses import replace

    cfg = load_config()
    text = replace(cfg.text, payload_paths={"asr": cfg.text.paths("asr"),
                                            "ocr": (*cfg.text.paths("ocr"), "result.lines")})
    pool = spark.createDataFrame([("i0", "视频", "", "", "yichehao_video", "A", "PGC", f"{DAY} 08:00:00")], POOL)
    ocr = spark.createDataFrame([(1, "i0", json.dumps({"result": {"lines": ["成都车展"]}}, ensure_ascii=False),
                                  DAY)], SPEECH)
    result = normalize(pool, spark.createDataFrame([], SPEECH), ocr, text)
    assert [r["doc_text"] for r in result.items.collect()] == ["视频。成都车展"]
    assert result.quarantine.count() == 0


def test_a_bad_expression_stops_the_job_at_start_naming_the_key(tmp_path):
    import yaml

    from tagger.config import DEFAULT_CONFIG, ConfigError

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["rules"] = str(CONF_DIR / "autoshow_rules.yaml")
    raw["text"]["payload_paths"]["ocr"].append("[*][1")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"text\.payload_paths\.ocr\[5\]"):
        load_config(path)
