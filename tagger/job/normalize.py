"""Pure DataFrame -> DataFrame functions between extract and tag.

Nothing is dropped silently: every source row that cannot be used goes to the quarantine
DataFrame (QUARANTINE_COLUMNS) with a reason. scope='item' means the item is not in the output
(nothing of it was usable); scope='row' means one source row was skipped and the item was still
tagged from the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from tagger.config import TextConf
from tagger.job.payloads import parse_payload

QUARANTINE_COLUMNS = ["itemid", "source", "scope", "reason", "raw_excerpt"]
ITEM_COLUMNS = ["itemid", "dtype", "doc_text", "has_asr", "has_ocr"]
EXCERPT_CHARS = 200
VIDEO_DTYPE = "yichehao_video"  # the only dtype whose items have ASR/OCR rows (docs/domain.md)
CREATE_TIME = r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d+)?)?$"


@dataclass
class Normalized:
    """What normalize returns: two lazy DataFrames, the items to tag and the quarantined rows, and the
    intermediate DataFrames normalize persisted so that both share them (empty unless cache=True;
    unpersist them when done)."""
    items: DataFrame  # ITEM_COLUMNS, one row per usable itemid
    quarantine: DataFrame  # QUARANTINE_COLUMNS
    cached: tuple[DataFrame, ...] = ()

    @property
    def frames(self) -> tuple[DataFrame, ...]:
        """items, quarantine and the cached intermediates: everything to unpersist when done."""
        return (self.items, self.quarantine, *self.cached)


def _quarantine(df: DataFrame, itemid: Column, source: str, scope: str, reason: Column, raw: Column,
                keys: Sequence[str] = ()) -> DataFrame:
    return df.select(itemid.alias("itemid"), F.lit(source).alias("source"), F.lit(scope).alias("scope"),
                     reason.alias("reason"), F.substring(raw, 1, EXCERPT_CHARS).alias("raw_excerpt"), *keys)


def _row_as_text(*cols: str) -> Column:
    return F.to_json(F.struct(*cols))


def speech_parser(paths: Sequence[str] | None, fields: Sequence[str]):
    """An Arrow-batched pandas UDF: a string column of raw ASR/OCR JSON -> struct(text string, error
    string), per row as tagger.job.payloads.parse_payload with `paths` (JMESPath expressions tried
    in order; None: the defaults for `fields`, the object fields holding the text).
    (NULL, NULL): nothing to read; (NULL, reason): a bad payload; never raises on bad JSON."""
    paths = None if paths is None else tuple(paths)
    fields = tuple(fields)

    @pandas_udf("text string, error string")
    def parse(raw: pd.Series) -> pd.DataFrame:
        parsed = [parse_payload(None if pd.isna(r) else r, paths, fields) for r in raw]
        return pd.DataFrame(parsed, columns=["text", "error"], dtype=object)

    return parse


def dedupe_pool(pool: DataFrame, keys: Sequence[str] = ()) -> tuple[DataFrame, DataFrame]:
    """One row per itemid (per itemid and `keys`). Exact duplicate rows are merged (the team's SELECT
    DISTINCT); among rows of one itemid that differ, the latest create_time wins and the others are
    quarantined.

    `pool`: the extracted pool (itemid, title, summary, dtype, create_time, any other columns and the
    `keys` columns: a backfill pass's run_date, so that dates never mix). Returns (kept: the same
    columns, one row per non-blank itemid and keys; quarantine: QUARANTINE_COLUMNS and `keys`,
    source 'pool': NULL/blank itemids with scope 'item', losing duplicates with scope 'row')."""
    blank = F.col("itemid").isNull() | (F.trim("itemid") == "")
    raw = _row_as_text("itemid", "title", "summary", "dtype", "create_time")
    bad_ids = _quarantine(pool.filter(blank), F.col("itemid"), "pool", "item",
                          F.when(F.col("itemid").isNull(), "null_itemid").otherwise("blank_itemid"), raw, keys)
    rank = Window.partitionBy("itemid", *keys).orderBy(F.col("create_time").desc_nulls_last(), "title", "summary", "dtype")
    ranked = pool.filter(~blank).distinct().withColumn("_rank", F.row_number().over(rank))
    kept = ranked.filter("_rank = 1").drop("_rank")
    conflicts = _quarantine(ranked.filter("_rank > 1"), F.col("itemid"), "pool", "row",
                            F.lit("duplicate_itemid_conflict: another row of this itemid with a later "
                                  "create_time was used"), raw, keys)
    return kept, bad_ids.unionByName(conflicts)


def latest_speech(rows: DataFrame, videos: DataFrame, source: str, fields: Sequence[str],
                  paths: Sequence[str] | None = None, persist=None,
                  keys: Sequence[str] = ()) -> tuple[DataFrame, DataFrame]:
    """Parse ASR/OCR rows of the run's videos; keep the latest usable row per video.

    `rows`: id, video_id, raw, dt. `videos`: the run's video itemids (column itemid). `source`:
    'asr' or 'ocr'; `fields`: the object fields holding the text (text.speech_text_fields).
    Returns (latest: video_id, <source>_text, one row per video with usable speech, the newest dt
    then id winning; bad: QUARANTINE_COLUMNS rows, scope 'row', reason '<source>_<parse error>').
    Rows of videos outside this run are ignored here: they are another day's concern. `persist`,
    when given, is called on the parsed rows (both results read them: without it each parses every
    payload again). `keys`: columns both `rows` and `videos` carry and the results keep (a backfill
    pass's run_date: a row matches the videos of its own date only).
    """
    parse = speech_parser(paths, fields)
    mine = rows.join(videos.select(F.col("itemid").alias("video_id"), *keys), ["video_id", *keys], "left_semi")
    parsed = mine.withColumn("_p", parse("raw"))
    if persist is not None:
        parsed = persist(parsed)
    bad = _quarantine(parsed.filter(F.col("_p.error").isNotNull()), F.col("video_id"), source, "row",
                      F.concat(F.lit(f"{source}_"), F.col("_p.error")), F.col("raw"), keys)
    usable = parsed.filter(F.col("_p.error").isNull() & F.col("_p.text").isNotNull())
    newest = Window.partitionBy("video_id", *keys).orderBy(F.col("dt").desc(), F.col("id").desc_nulls_last(), "raw")
    latest = (usable.withColumn("_rank", F.row_number().over(newest)).filter("_rank = 1")
              .select("video_id", *keys, F.col("_p.text").alias(f"{source}_text")))
    return latest, bad


def build_doc_text(title: Column, summary: Column, ocr: Column, asr: Column, text: TextConf) -> Column:
    """A string Column: title。summary。OCR。ASR, each part normalized by tagger.models.text.clean_text
    (HTML removed, format characters removed, NFKC, whitespace runs as one space) and cut to its own
    budget of text.max_chars (characters); empty parts are left out, so '' when all four are
    empty/NULL. Never NULL. Runs as one Arrow-batched pandas UDF over the four columns."""
    budgets = [text.max_chars[name] for name in ("title", "summary", "ocr", "asr")]

    @pandas_udf("string")
    def doc_text(*parts: pd.Series) -> pd.Series:
        from tagger.models.text import clean_text

        rows = zip(*(s.tolist() for s in parts))
        return pd.Series(["。".join(p for p in (clean_text(v)[:n] for v, n in zip(row, budgets)) if p)
                          for row in rows], dtype=object)

    return doc_text(title, summary, ocr, asr)


def normalize(pool: DataFrame, asr: DataFrame, ocr: DataFrame, text: TextConf, cache: bool = False,
              keys: Sequence[str] = ()) -> Normalized:
    """The run's items ready to tag, and every source row that could not be used (lazy, pure).

    pool: a DataFrame with itemid, title, summary, dtype, create_time (as extract returns it);
    asr / ocr: id, video_id, raw, dt. Returns Normalized(items: ITEM_COLUMNS = itemid, dtype,
    doc_text (build_doc_text with `text`), has_asr, has_ocr, one row per itemid with a non-empty
    doc_text; quarantine: QUARANTINE_COLUMNS = itemid, source, scope, reason, raw_excerpt (first
    EXCERPT_CHARS characters)). Bad data never raises: it is quarantined (see dedupe_pool,
    latest_speech; also malformed_create_time rows and empty_text items). A missing input column
    raises pyspark's AnalysisException.

    `cache=True` (what the job uses: it computes both results) persists, memory and disk, the parsed
    speech rows and the joined items with their doc_text, which items and quarantine both read:
    without it, computing both parses every ASR/OCR payload and builds every doc_text twice. They
    are listed in Normalized.cached for the caller to unpersist.

    `keys`: columns that pool, asr and ocr all carry and that both results keep, normalizing several
    runs in one plan without mixing them (a backfill pass: run_date, each date's pool and speech
    window tagged with it). Items are then one row per itemid and keys, speech joins within its
    keys; with keys=() (a daily run) the results are exactly the columns above."""
    cached: list[DataFrame] = []

    def persist(df: DataFrame) -> DataFrame:
        from pyspark import StorageLevel

        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    keep = persist if cache else None
    keys = tuple(keys)
    items, pool_bad = dedupe_pool(pool, keys)
    videos = items.filter(F.col("dtype") == VIDEO_DTYPE).select("itemid", *keys)
    asr_text, asr_bad = latest_speech(asr, videos, "asr", text.speech_text_fields, text.paths("asr"), keep, keys)
    ocr_text, ocr_bad = latest_speech(ocr, videos, "ocr", text.speech_text_fields, text.paths("ocr"), keep, keys)
    joined = (items
              .join(asr_text.withColumnRenamed("video_id", "itemid"), ["itemid", *keys], "left")
              .join(ocr_text.withColumnRenamed("video_id", "itemid"), ["itemid", *keys], "left")
              .withColumn("doc_text", build_doc_text(F.col("title"), F.col("summary"), F.col("ocr_text"),
                                                     F.col("asr_text"), text))
              .withColumn("has_asr", F.col("asr_text").isNotNull())
              .withColumn("has_ocr", F.col("ocr_text").isNotNull()))
    if cache:
        joined = persist(joined)
    # The team's filter compares create_time as a string, so 'garbage' >= '2024-01-05' selects a
    # row: it is tagged like any selected item, and flagged here for the source's owners.
    odd_time = _quarantine(items.filter(~F.col("create_time").rlike(CREATE_TIME)), F.col("itemid"), "pool", "row",
                           F.lit("malformed_create_time: not yyyy-MM-dd HH:mm:ss; the item was tagged"),
                           _row_as_text("itemid", "create_time"), keys)
    empty = _quarantine(joined.filter(F.col("doc_text") == ""), F.col("itemid"), "pool", "item",
                        F.lit("empty_text: title, summary, ASR and OCR are all empty"),
                        _row_as_text("itemid", "title", "summary", "dtype", "create_time"), keys)
    usable = joined.filter(F.col("doc_text") != "").select(*ITEM_COLUMNS, *keys)
    quarantine = pool_bad.unionByName(odd_time).unionByName(asr_bad).unionByName(ocr_bad).unionByName(empty)
    return Normalized(items=usable, quarantine=quarantine, cached=tuple(cached))
