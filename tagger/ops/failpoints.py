"""Fault injection for the reliability tests, switched on by one environment variable:

    TAGGER_FAILPOINT=tag_after_batches:N    each tag task raises after N Arrow batches
    TAGGER_FAILPOINT=tag_drop_rows:N        each tag task drops N rows of its first batch (a lost
                                            row: the invariant check must refuse the write)
    TAGGER_FAILPOINT=crash_between_switches:1  the publish raises after the quarantine's switch and
                                            before the output's (tagger/job/publish.py)
    TAGGER_FAILPOINT=write_stall_seconds:S  the output write stalls S seconds inside its Spark
                                            job (files half-written in staging), so a test can
                                            kill the driver mid-write
    TAGGER_FAILPOINT=backfill_fail_date:D   a one-pass backfill fails date D (yyyy-MM-dd) after
                                            tagging, before anything of D is written

Read on the driver only. Never set in production.
"""
from __future__ import annotations

import os
import time
from typing import Iterator

import pandas as pd


def failpoint(name: str) -> int | None:
    """N (a non-negative int) when TAGGER_FAILPOINT is `name:N`; None when it is unset, names another
    failpoint, or N is not a plain digit string. Never raises."""
    point, _, value = os.environ.get("TAGGER_FAILPOINT", "").partition(":")
    return int(value) if point == name and value.isdigit() else None


def failing_date() -> str | None:
    """D when TAGGER_FAILPOINT is `backfill_fail_date:D`, else None. Never raises."""
    point, _, value = os.environ.get("TAGGER_FAILPOINT", "").partition(":")
    return value if point == "backfill_fail_date" and value else None


def stall_after_first_batch(seconds: int):
    """A mapInPandas identity that passes one batch on, then sleeps."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for i, pdf in enumerate(batches):
            yield pdf
            if i == 0:
                time.sleep(seconds)

    return run
