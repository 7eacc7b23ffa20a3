"""Normalize benchmark: the job's extract_normalize work on seeded days, with and without the shared
cache of tagger.job.normalize.normalize(cache=True), alternating in one process (same load for both).

    TAGGER_HOME=.tagger .venv/bin/python scripts/normalize_bench.py --date 2024-01-02 --date 2024-01-03

For each date and mode it builds the date's items and quarantine as the job does (persisted, then
counted: what PreparedDate.normalized and count_items compute), prints the seconds, and at the end the
totals and their ratio. The counts must agree between modes (else it exits 1). Needs seeded source
tables in the config's catalog (`make run` or `tagger seed`). Figures: docs/speed.md.
"""
from __future__ import annotations

import time

import click
from pyspark import StorageLevel


def normalize_once(spark, cfg, run_date: str, cache: bool) -> tuple[float, int, int]:
    """(seconds, items, quarantine rows) to build and count one date's normalize results."""
    from tagger.job.extract import extract
    from tagger.job.normalize import normalize

    sources = extract(spark, cfg, run_date)
    started = time.perf_counter()
    norm = normalize(sources.pool, sources.asr, sources.ocr, cfg.text, cache=cache)
    items = norm.items.persist(StorageLevel.MEMORY_AND_DISK)
    quarantine = norm.quarantine.persist(StorageLevel.MEMORY_AND_DISK)
    counts = items.count(), quarantine.count()
    seconds = time.perf_counter() - started
    for df in (items, quarantine, *norm.cached):
        df.unpersist(blocking=True)
    return seconds, *counts


@click.command()
@click.option("--config", "config_path", default=None, help="Job config (default: the shipped one).")
@click.option("--date", "dates", multiple=True, required=True, help="A seeded date (repeat for more).")
def main(config_path, dates):
    """Time normalize uncached vs cached on each --date, alternating; print the ratio."""
    from tagger.config import load_config
    from tagger.ops.spark_session import build_session

    cfg = load_config(config_path)
    spark = build_session(cfg, "normalize-bench")
    normalize_once(spark, cfg, dates[0], False)  # warm-up: JIT, Python workers, metastore
    totals = {False: 0.0, True: 0.0}
    for run_date in dates:
        results = {}
        for cache in (False, True):
            results[cache] = normalize_once(spark, cfg, run_date, cache)
            totals[cache] += results[cache][0]
            click.echo(f"{run_date} {'cached  ' if cache else 'uncached'} {results[cache][0]:6.2f}s  "
                       f"items {results[cache][1]:,}  quarantine {results[cache][2]:,}")
        if results[False][1:] != results[True][1:]:
            click.echo(f"{run_date}: the counts differ between modes", err=True)
            raise SystemExit(1)
    click.echo(f"total uncached {totals[False]:.1f}s, cached {totals[True]:.1f}s: "
               f"{totals[False] / totals[True]:.2f}x")


if __name__ == "__main__":
    main()
