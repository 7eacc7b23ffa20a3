"""A date's statistics (the `daily_stats` table): per emitted tag and for the day, computed once
from the run's cached results, so the next days' audits and `tagger report` never rescan old
partitions."""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

NO_TAG = "<none>"  # the tag_path of the row counting the items with no tag


def daily_stats(tagged: DataFrame, quarantine_reasons: dict[str, int], items_selected: int, gate_head: str,
                dt: str, version: str) -> pd.DataFrame:
    """One row per emitted tag path plus one NO_TAG row, with the daily_stats table's columns.

    `tagged`: the run's output rows (itemid, tags: array of {tag_id, tag_path, source, ...});
    `quarantine_reasons`: {reason code: rows}; `gate_head`: the head whose tags count as "passed the
    gate". rate = items / items_tagged; coverage = share of tagged items with any tag;
    gate_pass_rate = share carrying a tag whose source is the gate head.
    """
    per_source = (tagged.select("itemid", F.explode("tags").alias("t"))
                  .groupBy(F.col("t.tag_id").alias("tag_id"), F.col("t.tag_path").alias("tag_path"),
                           F.col("t.source").alias("source"))
                  .agg(F.countDistinct("itemid").alias("n")).toPandas())
    day = tagged.agg(F.count(F.lit(1)).alias("items"),
                     F.sum(F.when(F.size("tags") > 0, 1).otherwise(0)).alias("with_tags"),
                     F.sum(F.when(F.exists("tags", lambda t: t["source"] == gate_head), 1).otherwise(0))
                     .alias("gated")).collect()[0]
    items_tagged = int(day["items"])
    with_tags, gated = int(day["with_tags"] or 0), int(day["gated"] or 0)
    denominator = max(items_tagged, 1)
    rows = []
    for (tag_id, path), part in per_source.groupby(["tag_id", "tag_path"], dropna=False):
        items = int(part["n"].sum())  # an item carries a tag once (one source per tag)
        rows.append(dict(tag_id=None if pd.isna(tag_id) else int(tag_id), tag_path=path, items=items,
                         source_counts={str(s): int(n) for s, n in zip(part["source"], part["n"])}))
    rows.append(dict(tag_id=None, tag_path=NO_TAG, items=items_tagged - with_tags, source_counts={}))
    out = pd.DataFrame(rows)
    out["rate"] = out["items"] / denominator
    out["version"] = version
    out["items_selected"] = int(items_selected)
    out["items_tagged"] = items_tagged
    out["coverage"] = with_tags / denominator
    out["gate_pass_rate"] = gated / denominator
    out["quarantine_reasons"] = [dict(quarantine_reasons)] * len(out)
    out["dt"] = dt
    return out


def write_daily_stats(spark: SparkSession, table: str, stats: pd.DataFrame) -> None:
    """Append the rows of one staged version (the table keeps every version's statistics; the
    audits read the published ones). A version already recorded is not written twice."""
    version, dt = stats["version"].iloc[0], stats["dt"].iloc[0]
    if spark.table(table).filter((F.col("dt") == dt) & (F.col("version") == version)).limit(1).count():
        return
    schema = spark.table(table).schema
    columns = [f.name for f in schema.fields]
    # pandas makes a float64 column of ints beside the NO_TAG row's None: BIGINT columns get ints back
    integral = [f.dataType.typeName() in ("long", "integer") for f in schema.fields]

    def plain(value, is_int):
        if isinstance(value, dict):
            return value
        if pd.isna(value):
            return None
        return int(value) if is_int else value.item() if hasattr(value, "item") else value

    records = [tuple(plain(v, i) for v, i in zip(row, integral))
               for row in stats[columns].itertuples(index=False, name=None)]
    spark.createDataFrame(records, schema).write.insertInto(table)


def published_history(spark: SparkSession, tables, dt: str, days: int) -> pd.DataFrame:
    """The daily_stats rows of the published versions of the `days` latest dates before dt (pandas,
    the table's columns plus model_version from the versions table); empty if there are none."""
    from tagger.job.publish import partition_location, version_of

    dates = sorted(r[0][3:] for r in spark.sql("SHOW PARTITIONS IDENTIFIER(:t)", args={"t": tables.output}).collect()
                   if r[0][3:] < dt)[-days:]
    pairs = [(d, version_of(partition_location(spark, tables.output, d))) for d in dates]
    pairs = [(d, v) for d, v in pairs if v]
    if not pairs:
        return pd.DataFrame()
    wanted = spark.createDataFrame(pairs, "dt string, version string")
    stats = spark.table(tables.daily_stats).join(wanted, ["dt", "version"], "inner")
    versions = (spark.table(tables.versions).join(wanted, ["dt", "version"], "inner")
                .groupBy("dt", "version").agg(F.max("model_version").alias("model_version")))
    return stats.join(versions, ["dt", "version"], "left").toPandas()
