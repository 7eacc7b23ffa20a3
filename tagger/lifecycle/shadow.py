"""The shadow run (`tagger shadow`): a candidate head scored beside the published one on a day's real
traffic, in one Spark pass, without touching anything readers see.

Flow: the date's inputs are extracted and normalized exactly as the job does (tagger.job.extract,
tagger.job.normalize) -> each Arrow batch is tagged twice, by the config's cascade (the champion)
and by the same cascade with the candidate in the head's place -> the candidate's rows go to
`tables.shadow` (default <output>_shadow), partition (dt, head), overwritten by a rerun -> the per-tag
comparison goes to `tables.shadow_stats` (default <output>_shadow_stats), same partitions.

Like for like: both cascades share every other head, so a gated candidate runs on the rows the
(unchanged) gate passed; a candidate for a gate re-runs the heads below it on the rows it passes, and
those heads' tags are compared too (`compared_heads`).

Per compared tag: items tagged by the champion and by the candidate, their rates over every item of
the day, agreement = items tagged by both / items tagged by either (None when neither tagged any), and
the `top` items with the largest |champion score - candidate score| (a row a head did not score, because
its gate did not pass it, counts as score 0), then items whose decision flipped at equal scores (a
candidate that only moved thresholds).
"""
from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from tagger.config import Config, ConfigError
from tagger.udfs.tagging import INPUT_COLUMNS, TAG_STRUCT, LoadCounter, TaggerSpec, get_tagger

SHADOW_SCHEMA = (f"itemid string, dtype string, gate_score double, tags array<{TAG_STRUCT}>, tag_ids string, "
                 "champion_tag_ids string, champion_scores map<string, double>, "
                 "candidate_scores map<string, double>, excerpt string")
EXCERPT_CHARS = 80


def compared_heads(cfg: Config, head: str) -> list[str]:
    """`head` and every head gated by it, directly or through another (config order): the heads whose
    tags can change when `head` is replaced. Raises ConfigError for a head the config lacks."""
    names = [h.name for h in cfg.heads]
    if head not in names:
        raise ConfigError(f"--head {head}: not a head of {cfg.source} (heads: {', '.join(names)}).")
    out = [head]
    for h in cfg.heads:
        if h.gate_by in out and h.name not in out:
            out.append(h.name)
    return out


def check_candidate(candidate: str) -> None:
    """Raise ConfigError, naming --candidate and the fix, unless it is a well-formed models:/ URI
    (models:/<name>@<alias> or models:/<name>/<version>) or a directory that loads as a head artifact
    (tagger_head.json, or a Hugging Face checkpoint, as the job reads heads: models.spec.read_spec)."""
    from pathlib import Path

    from tagger.lifecycle.uris import is_registry_uri, parse_model_uri
    from tagger.models.spec import ArtifactError, read_spec

    if is_registry_uri(candidate):
        try:
            parse_model_uri(candidate)
        except ValueError as exc:
            raise ConfigError(f"--candidate {exc}") from None
        return
    if not Path(candidate).is_dir():
        raise ConfigError(f"--candidate {candidate}: no such directory, and not a registry URI. Fix: a head "
                          f"directory written by `tagger train`, or models:/<name>@<alias> / models:/<name>/<version>.")
    try:
        read_spec(candidate)
    except ArtifactError as exc:
        raise ConfigError(f"--candidate {candidate}: not a usable head artifact: {exc}") from None


def with_candidate(cfg: Config, head: str, candidate: str) -> Config:
    """The config with head `head`'s path replaced by `candidate` (a directory or a models:/ URI)."""
    heads = tuple(dataclasses.replace(h, path=candidate) if h.name == head else h for h in cfg.heads)
    return dataclasses.replace(cfg, heads=heads)


def shadow_partitions(champion: TaggerSpec, candidate: TaggerSpec, heads: tuple[str, ...],
                      loads: LoadCounter | None = None):
    """A mapInPandas function: input batches with INPUT_COLUMNS; output SHADOW_SCHEMA's columns, one
    row per input row: the candidate cascade's gate_score, tags and tag_ids, the champion cascade's
    tag_ids, both cascades' scores of the `heads` labels (tag path -> score) and the first
    EXCERPT_CHARS characters of doc_text. Each cascade's models load once per Python worker."""
    from tagger.udfs.devices import task_device

    scores_of = frozenset(heads)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        device = task_device(champion.device).device
        taggers = [get_tagger(dataclasses.replace(spec, device=device), loads) for spec in (champion, candidate)]
        if loads is not None:
            loads.devices.add({(f"{socket.gethostname()}:{os.getpid()}", device)})
        for pdf in batches:
            pdf = pdf[INPUT_COLUMNS]
            if loads is not None:
                loads.rows.add(len(pdf))
            ours, theirs = (t.tag(pdf, scores_of=scores_of) for t in taggers)
            out = theirs.rename(columns={"scores": "candidate_scores"})
            out["champion_tag_ids"] = ours["tag_ids"].to_numpy()
            out["champion_scores"] = ours["scores"].to_numpy()
            out["excerpt"] = pdf["doc_text"].fillna("").str.slice(0, EXCERPT_CHARS).to_numpy()
            yield out

    return run


@dataclass
class ShadowResult:
    """What `run_shadow` wrote and found: the date, head, both model versions, items scored, the
    per-tag comparison (pandas, the columns of sql/ddl_shadow_stats.sql but disagreements) and the
    disagreements (pandas: compare's columns)."""
    run_date: str
    head: str
    champion_version: str
    candidate_version: str
    items: int
    per_tag: pd.DataFrame
    disagreements: pd.DataFrame
    seconds: float = 0.0
    top: int = 5  # disagreements asked for per tag


def score_both(spark: SparkSession, cfg: Config, items: DataFrame, champion: TaggerSpec, candidate: TaggerSpec,
               heads: list[str]) -> DataFrame:
    """The day's normalized items (itemid, dtype, doc_text) through both cascades in one pass:
    SHADOW_SCHEMA's columns, persisted (memory and disk), not yet computed."""
    partitions = cfg.tagging.partitions or spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.tagging.arrow_max_records_per_batch))
    return (items.select(*INPUT_COLUMNS).repartition(partitions, "itemid").sortWithinPartitions("itemid")
            .mapInPandas(shadow_partitions(champion, candidate, tuple(heads)), SHADOW_SCHEMA)
            .persist(StorageLevel.MEMORY_AND_DISK))


def compare(rows: DataFrame, tags: dict[str, tuple[int, str]], top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-tag comparison of score_both's rows over `tags` (tag path -> (tag id, source head)).

    Returns (per_tag, disagreements): per_tag has one row per tag, sorted by tag path: tag_id,
    tag_path, source_head, items, champion_items, candidate_items, champion_rate, candidate_rate,
    both_items, either_items, agreement (None when either_items is 0); disagreements has, per tag,
    at most `top` rows whose score or decision differs, the largest score difference first (then a
    flipped decision, then itemid): tag_path, rank (1..top), itemid, excerpt, champion_score,
    candidate_score (0.0 where a head did not score the row), tagged_by (both, champion, candidate or
    neither)."""
    champ = F.split(F.coalesce(F.col("champion_tag_ids"), F.lit("")), ",")
    cand = F.split(F.coalesce(F.col("tag_ids"), F.lit("")), ",")
    exprs = [F.count(F.lit(1)).alias("items")]
    for i, (path, (tag_id, _)) in enumerate(sorted(tags.items())):
        a, b = F.array_contains(champ, str(tag_id)), F.array_contains(cand, str(tag_id))
        exprs += [F.sum((a).cast("long")).alias(f"c{i}"), F.sum(b.cast("long")).alias(f"n{i}"),
                  F.sum((a & b).cast("long")).alias(f"b{i}"), F.sum((a | b).cast("long")).alias(f"e{i}")]
    counts = rows.agg(*exprs).first()
    n = counts["items"]
    records = []
    for i, (path, (tag_id, source)) in enumerate(sorted(tags.items())):
        c, k, both, either = (counts[f"{x}{i}"] or 0 for x in "cnbe")
        records.append(dict(tag_id=tag_id, tag_path=path, source_head=source, items=n, champion_items=c,
                            candidate_items=k, champion_rate=c / n if n else None,
                            candidate_rate=k / n if n else None, both_items=both, either_items=either,
                            agreement=both / either if either else None))
    per_tag = pd.DataFrame.from_records(records, columns=[
        "tag_id", "tag_path", "source_head", "items", "champion_items", "candidate_items", "champion_rate",
        "candidate_rate", "both_items", "either_items", "agreement"])

    if not tags:
        return per_tag, pd.DataFrame(columns=["tag_path", "itemid", "excerpt", "champion_score", "candidate_score",
                                              "tagged_by", "rank"])
    ids = F.create_map(*[F.lit(x) for path, (tag_id, _) in sorted(tags.items()) for x in (path, str(tag_id))])
    keys = F.array_intersect(F.array_union(F.map_keys("champion_scores"), F.map_keys("candidate_scores")),
                             F.map_keys(ids))
    exploded = (rows.select("itemid", "excerpt", "champion_scores", "candidate_scores", champ.alias("champ"),
                            cand.alias("cand"), F.explode(keys).alias("tag_path"))
                .select("tag_path", "itemid", "excerpt",
                        F.coalesce(F.col("champion_scores")[F.col("tag_path")], F.lit(0.0)).alias("champion_score"),
                        F.coalesce(F.col("candidate_scores")[F.col("tag_path")], F.lit(0.0)).alias("candidate_score"),
                        F.array_contains("champ", ids[F.col("tag_path")]).alias("a"),
                        F.array_contains("cand", ids[F.col("tag_path")]).alias("b"))
                .withColumn("flipped", F.col("a") != F.col("b"))
                .withColumn("tagged_by", F.when(F.col("a") & F.col("b"), "both").when(F.col("a"), "champion")
                            .when(F.col("b"), "candidate").otherwise("neither"))
                .drop("a", "b")
                .withColumn("diff", F.abs(F.col("champion_score") - F.col("candidate_score")))
                .filter("diff > 0 OR flipped"))
    # the largest score difference first; equal scores (a threshold change) with a flipped decision still count
    ranked = exploded.withColumn("rank", F.row_number().over(
        Window.partitionBy("tag_path").orderBy(F.desc("diff"), F.desc("flipped"), "itemid"))).filter(F.col("rank") <= top)
    disagreements = pd.DataFrame(
        [r.asDict() for r in ranked.drop("diff", "flipped").orderBy("tag_path", "rank").collect()],
        columns=["tag_path", "itemid", "excerpt", "champion_score", "candidate_score", "tagged_by", "rank"])
    return per_tag, disagreements


def compared_tags(cfg: Config, heads: list[str], specs: list, tag_index: dict[str, tuple[int, str]]
                  ) -> dict[str, tuple[int, str]]:
    """Tag path -> (tag id, head) for every label enabled in either model (`specs`: the champion and
    candidate configs' (HeadConf, HeadSpec) pairs) of the compared `heads` that the tag index holds."""
    out = {}
    for pairs in specs:
        for conf, spec in pairs:
            if conf.name in heads:
                for label, on in zip(spec.labels, spec.enabled):
                    path = f"{conf.parent}/{label}"
                    if on and path in tag_index:
                        out[path] = (tag_index[path][0], conf.name)
    return out


def ensure_shadow_tables(spark: SparkSession, cfg: Config) -> None:
    """Create tables.shadow and tables.shadow_stats if missing (sql/ddl_shadow*.sql)."""
    from tagger.sql_files import run_sql

    for table in (cfg.tables.shadow, cfg.tables.shadow_stats):
        run_sql(spark, "ddl_database", database=table.split(".")[0])
    run_sql(spark, "ddl_shadow", table=cfg.tables.shadow)
    run_sql(spark, "ddl_shadow_stats", table=cfg.tables.shadow_stats)


def overwrite_partition(spark: SparkSession, df: DataFrame, table: str, dt: str, head: str) -> None:
    """Replace partition (dt, head) of `table` with df's rows (df holds the table's other columns, by
    name); no other partition changes."""
    from tagger.job.write import table_rows_view

    with table_rows_view(spark, df, table, ("dt", "head")) as view:
        spark.sql("INSERT OVERWRITE TABLE IDENTIFIER(:table) PARTITION (dt = :dt, head = :head) "
                  "SELECT * FROM IDENTIFIER(:view)", args={"table": table, "dt": dt, "head": head, "view": view})


def run_shadow(spark: SparkSession, cfg: Config, run_date: str, head: str, candidate: str, top: int = 5,
               log=print) -> ShadowResult:
    """Shadow-run `candidate` (a head artifact directory or a models:/ URI) for config head `head` on
    `run_date` (module docstring); write tables.shadow and tables.shadow_stats partition (run_date,
    head) and return the ShadowResult. Reads the date as the job does, takes no run lock and writes
    nothing else. Raises MissingInputError (an input has not landed), ConfigError (unknown head, a
    label the tag dimension lacks, an unknown registry version), ArtifactError (unreadable artifact)."""
    import time
    from datetime import datetime, timezone

    from tagger.job.extract import check_inputs, extract
    from tagger.job.normalize import normalize
    from tagger.job.tag import build_spec, load_tag_index
    from tagger.models.spec import read_spec

    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    heads = compared_heads(cfg, head)
    check_candidate(candidate)
    check_inputs(spark, cfg, run_date)
    sources = extract(spark, cfg, run_date)
    tag_index = load_tag_index(sources.tag_dim)
    threads = cfg.tagging.torch_threads or int(spark.conf.get("spark.task.cpus", "1"))
    champion, champion_version, _ = build_spec(cfg, tag_index, cfg.tables.tag_dim, threads)
    challenger, candidate_version, _ = build_spec(with_candidate(cfg, head, candidate), tag_index,
                                                  cfg.tables.tag_dim, threads)
    tags = compared_tags(cfg, heads, [[(h, read_spec(h.path)) for h in spec.heads] for spec in (champion, challenger)],
                         tag_index)
    log(f"shadow {run_date}: head {head}, champion {_head_version(champion_version, head)}, candidate "
        f"{_head_version(candidate_version, head)}; comparing {len(tags)} tags of {', '.join(heads)}")
    ensure_shadow_tables(spark, cfg)  # before the scoring pass: a table that cannot be created fails in seconds
    items = normalize(sources.pool, sources.asr, sources.ocr, cfg.text).items
    rows = score_both(spark, cfg, items, champion, challenger, heads)
    n = rows.count()
    log(f"  scored {n:,} items with both cascades ({time.perf_counter() - t0:.0f}s)")
    overwrite_partition(spark, rows.withColumn("champion_version", F.lit(champion_version))
                        .withColumn("candidate_version", F.lit(candidate_version)), cfg.tables.shadow, run_date, head)
    per_tag, disagreements = compare(rows, tags, top)
    _write_stats(spark, cfg, per_tag, disagreements, run_date, head, champion_version, candidate_version, started)
    rows.unpersist()
    log(f"  wrote {cfg.tables.shadow} and {cfg.tables.shadow_stats} partition dt={run_date}/head={head} "
        f"({time.perf_counter() - t0:.0f}s)")
    return ShadowResult(run_date, head, champion_version, candidate_version, n, per_tag, disagreements,
                        round(time.perf_counter() - t0, 1), top)


def _head_version(model_version: str, head: str) -> str:
    return next((p.split("=", 1)[1] for p in model_version.split(";") if p.startswith(f"{head}=")), "?")


def _write_stats(spark, cfg, per_tag: pd.DataFrame, disagreements: pd.DataFrame, run_date: str, head: str,
                 champion_version: str, candidate_version: str, started: str) -> None:
    def plain(value):
        return None if value is None or pd.isna(value) else value.item() if hasattr(value, "item") else value

    by_tag = {path: [dict(rank=int(r["rank"]), itemid=r["itemid"], excerpt=r["excerpt"],
                          champion_score=float(r["champion_score"]), candidate_score=float(r["candidate_score"]),
                          tagged_by=r["tagged_by"])
                     for _, r in group.iterrows()] for path, group in disagreements.groupby("tag_path")}
    schema = spark.table(cfg.tables.shadow_stats).drop("dt", "head").schema
    records = [tuple([*(plain(v) for v in row), by_tag.get(row[1], []), champion_version, candidate_version, started])
               for row in per_tag.itertuples(index=False, name=None)]
    overwrite_partition(spark, spark.createDataFrame(records, schema), cfg.tables.shadow_stats, run_date, head)


def format_shadow(result: ShadowResult) -> str:
    """The per-tag table (champion and candidate rates, agreement) and, per tag, the items they
    disagree on most (itemid, both scores, an excerpt), as printed by `tagger shadow`."""
    from tagger.lifecycle.tables import format_table

    def pct(x):
        return "-" if x is None or pd.isna(x) else f"{100 * x:.2f}%"

    rows = [["tag", "head", "champion", "candidate", "both", "either", "agreement"]]
    for r in result.per_tag.itertuples(index=False):
        rows.append([r.tag_path, r.source_head, f"{r.champion_items:,} ({pct(r.champion_rate)})",
                     f"{r.candidate_items:,} ({pct(r.candidate_rate)})", f"{r.both_items:,}", f"{r.either_items:,}",
                     pct(r.agreement)])
    lines = [f"shadow {result.run_date} head {result.head}: {result.items:,} items, champion "
             f"{_head_version(result.champion_version, result.head)} vs candidate "
             f"{_head_version(result.candidate_version, result.head)}", format_table(rows)]
    if len(result.disagreements):
        lines.append("largest score disagreements (champion -> candidate):")
        for path, group in result.disagreements.groupby("tag_path", sort=True):
            lines.append(f"  {path}")
            for r in group.itertuples(index=False):
                lines.append(f"    {r.itemid}  {r.champion_score:.3f} -> {r.candidate_score:.3f}  "
                             f"tagged by {r.tagged_by:<9}  {r.excerpt[:40]}")
    elif result.top:
        lines.append("no score or decision differs between champion and candidate on any compared tag.")
    return "\n".join(lines)
