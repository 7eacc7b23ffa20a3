"""Checks a run must pass: the invariant before anything is written, and the audits before a
staged version is published (write-audit-publish, tagger/job/publish.py).

Each audit compares the staged day's statistics (tagger/job/stats.py) with the published days
before it, or scores a golden set, and returns one or more results: {audit, level, status,
value, limit, message}, status one of pass | warn | fail | note. A `fail` from an audit whose
level is 'fail' refuses the publish; at level 'warn' it is reported as a warning. The defaults
and what each number means are in docs/publishing.md.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tagger.job.stats import NO_TAG

EXIT_REFUSED = 6  # a gate refused: audits here, the golden-set promote gate of the model lifecycle


class InvariantError(RuntimeError):
    """The run's output would not account for every selected item exactly once; nothing was written."""


class AuditRefused(RuntimeError):
    """A staged version failed an audit at level 'fail': nothing was published. Carries the
    version and the results; the message says which audit failed, by how much, and the ways on."""

    def __init__(self, message: str, version: str, results: list[dict]):
        super().__init__(message)
        self.version = version
        self.results = results


def check_invariant(run_date: str, selected: int, normalized: int, tagged: int, quarantined_items: int) -> None:
    """The invariant: every selected non-NULL itemid is tagged exactly once or quarantined as an item.

    `selected`: distinct non-NULL itemids the extract returned; `normalized`: items normalize kept;
    `tagged`: rows out of the tag stage; `quarantined_items`: distinct itemids quarantined with
    scope 'item'. Raises InvariantError (nothing may be written) when tagged != normalized or
    tagged + quarantined_items != selected.
    """
    if tagged != normalized or tagged + quarantined_items != selected:
        raise InvariantError(
            f"{run_date}: {selected} items selected but {tagged} tagged + {quarantined_items} quarantined as "
            f"items (normalize produced {normalized}); nothing was written. This is a bug: please report it "
            f"with the date.")


def _result(audit: str, level: str, status: str, value, limit, message: str) -> dict:
    if status == "fail" and level == "warn":
        status = "warn"
    return dict(audit=audit, level=level, status=status, value=value, limit=limit, message=message)


def _day(stats: pd.DataFrame) -> pd.Series:
    return stats.iloc[0]


def _days(history: pd.DataFrame) -> pd.DataFrame:
    """One row per history date with the day-level columns."""
    return history.drop_duplicates("dt")[["dt", "items_selected", "items_tagged", "coverage", "gate_pass_rate"]]


def audit_volume(conf, today: pd.DataFrame, history: pd.DataFrame) -> list[dict]:
    """Items selected today against the median of the trailing published days: a half-landed pool
    shows here. Fails outside [min_ratio, max_ratio] x median."""
    s = conf.settings
    median = float(np.median(_days(history)["items_selected"]))
    n = int(_day(today)["items_selected"])
    ratio = n / median if median else math.inf
    ok = s["min_ratio"] <= ratio <= s["max_ratio"]
    return [_result("volume", conf.level, "pass" if ok else "fail", round(ratio, 3), [s["min_ratio"], s["max_ratio"]],
                    f"{n:,} items selected = {ratio:.2f} x the trailing median {median:,.0f} "
                    f"(allowed {s['min_ratio']:g}-{s['max_ratio']:g} x)")]


def audit_coverage(conf, today: pd.DataFrame, history: pd.DataFrame) -> list[dict]:
    """The share of items with at least one tag and the share the gate passed, each against a band
    learnt from the trailing days: mean +- max(sigmas x standard deviation, min_band)."""
    s, out = conf.settings, []
    days = _days(history)
    for column, what in (("coverage", "share of items with a tag"), ("gate_pass_rate", "share passing the gate")):
        values = days[column].astype(float)
        mean, sd = float(values.mean()), float(values.std(ddof=0))
        half = max(s["sigmas"] * sd, s["min_band"])
        value = float(_day(today)[column])
        ok = abs(value - mean) <= half
        out.append(_result(f"coverage.{column}", conf.level, "pass" if ok else "fail", round(value, 4),
                           [round(mean - half, 4), round(mean + half, 4)],
                           f"{what} {value:.3f}, trailing mean {mean:.3f} (band {mean - half:.3f}-{mean + half:.3f})"))
    return out


def _log_poisson(i: int, lam: float) -> float:
    return -lam + i * math.log(lam) - math.lgamma(i + 1)


def _logsumexp(values) -> float:
    values = list(values)
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def poisson_p_value(k: int, lam: float) -> float:
    """Two-sided p-value of seeing k events where lam were expected (Poisson): 2 x the smaller tail,
    capped at 1. Exact sums in log space, so small counts are judged by what they are: 0 where 3 were
    expected gives 0.10, not an alarm."""
    lam = max(lam, 1e-9)
    lower = _logsumexp(_log_poisson(i, lam) for i in range(0, k + 1))  # P(X <= k)
    span = int(50 * math.sqrt(k + lam) + 100)
    upper = _logsumexp(_log_poisson(i, lam) for i in range(k, k + span))  # P(X >= k), truncated far out
    return min(1.0, 2 * math.exp(min(lower, upper)))


def audit_tag_drift(conf, today: pd.DataFrame, history: pd.DataFrame) -> list[dict]:
    """Two checks of the tag distribution.

    PSI over the buckets "each tag path" and "no tag" (shares of the items counted in them), today
    against the trailing days pooled: psi_warn / psi_fail. Then, per tag, its count today against
    its trailing rate x today's items (Poisson, two-sided): flagged when p < p_value and the count
    moved by at least min_change (0.5: -50% or +50%). A tag the history never saw is expected at
    0.5 items, so a handful of new ones is not an alarm but a new head's hundreds are.
    """
    s = conf.settings
    hist = history.groupby("tag_path")["items"].sum()
    now = today.set_index("tag_path")["items"]
    buckets = sorted(set(hist.index) | set(now.index))
    p = np.array([now.get(b, 0) for b in buckets], dtype=float)
    q = np.array([hist.get(b, 0) for b in buckets], dtype=float)
    p, q = np.maximum(p / max(p.sum(), 1), 1e-4), np.maximum(q / max(q.sum(), 1), 1e-4)
    psi = float(np.sum((p - q) * np.log(p / q)))
    status = "fail" if psi >= s["psi_fail"] else "warn" if psi >= s["psi_warn"] else "pass"
    results = [_result("tag_drift.psi", conf.level if status == "fail" else "warn", status, round(psi, 4),
                       [s["psi_warn"], s["psi_fail"]], f"PSI of the tag distribution {psi:.3f} (warn at "
                       f"{s['psi_warn']:g}, fail at {s['psi_fail']:g})")]
    tagged_hist = float(_days(history)["items_tagged"].sum())
    n_today = float(_day(today)["items_tagged"])
    moved = []
    for path in buckets:
        if path == NO_TAG:
            continue
        k = int(now.get(path, 0))
        lam = max(float(hist.get(path, 0)) / max(tagged_hist, 1) * n_today, 0.5)
        change = k / lam - 1
        if abs(change) >= s["min_change"]:
            pv = poisson_p_value(k, lam)
            if pv < s["p_value"]:
                moved.append((path, k, lam, change, pv))
    if moved:
        detail = "; ".join(f"{path}: {k:,} items, {lam:,.1f} expected ({change:+.0%}, p={pv:.1g})"
                           for path, k, lam, change, pv in sorted(moved, key=lambda m: m[4])[:8])
        results.append(_result("tag_drift.rates", conf.level, "fail", len(moved), s["p_value"],
                               f"{len(moved)} tag(s) moved beyond chance: {detail}"))
    else:
        results.append(_result("tag_drift.rates", conf.level, "pass", 0, s["p_value"],
                               "every tag's count is within chance of its trailing rate"))
    return results


def audit_quarantine(conf, today: pd.DataFrame) -> list[dict]:
    """Each quarantine reason's rows as a share of the items selected, against max_share: a flood of
    one kind of bad input (an upstream format change) shows here. Needs no history."""
    s = conf.settings
    day = _day(today)
    reasons = day["quarantine_reasons"] or {}
    selected = max(int(day["items_selected"]), 1)
    over = {r: n / selected for r, n in reasons.items() if n / selected > s["max_share"]}
    top = max(((n / selected, r) for r, n in reasons.items()), default=(0.0, "-"))
    if over:
        detail = ", ".join(f"{r} {share:.1%}" for r, share in sorted(over.items(), key=lambda kv: -kv[1]))
        return [_result("quarantine", conf.level, "fail", round(max(over.values()), 4), s["max_share"],
                        f"quarantine rows per item selected over {s['max_share']:.0%}: {detail}")]
    return [_result("quarantine", conf.level, "pass", round(top[0], 4), s["max_share"],
                    f"largest quarantine reason {top[1]} at {top[0]:.1%} of the items selected")]


def golden_set_counts(tagger, path: str) -> dict[str, dict[str, int]]:
    """Tag a golden set with a loaded tagger.udfs.tagging.Tagger and count, per tag path:
    {"predicted": items it was emitted on, "correct": of those, items labelled with it, "labelled":
    items labelled with it}. The file is JSON lines {"text", "labels": [true tag paths]} (what
    `tagger train` exports as data/test.jsonl); texts are normalized as the job normalizes doc_text.
    An item labelled only at a tag's parent (内容标签/导购 with no child) does not count for that
    tag: annotated at a coarser level, it is unknown there, not a false positive (the rule training
    uses). Raises DataError for an unreadable file."""
    from tagger.models.data import DataError
    from tagger.models.text import clean_text

    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    rows.append((clean_text(rec["text"]), set(rec["labels"])))
                except (ValueError, KeyError, TypeError) as exc:
                    raise DataError(f"{path}:{i}: not a golden-set line ({exc}). Fix: one JSON object per line, "
                                    '{"text": "...", "labels": ["内容标签/..."]}.') from None
    pdf = pd.DataFrame({"itemid": [str(i) for i in range(len(rows))], "dtype": "news",
                        "doc_text": [t for t, _ in rows]})
    out = tagger.tag(pdf)
    counts: dict[str, dict[str, int]] = {}

    def count(tag: str) -> dict[str, int]:
        return counts.setdefault(tag, {"predicted": 0, "correct": 0, "labelled": 0})

    for tags, (_, truth) in zip(out["tags"], rows):
        for tag in truth:
            count(tag)["labelled"] += 1
        for t in tags:
            path = t["tag_path"]
            parent = path.rsplit("/", 1)[0]
            if parent in truth and not any(x.startswith(parent + "/") for x in truth):
                continue  # labelled only at the parent: this tag is unknown for the item, not wrong
            c = count(path)
            c["predicted"] += 1
            c["correct"] += path in truth
    return counts


def golden_set_precision(tagger, path: str, min_predicted: int) -> dict[str, tuple[float, int]]:
    """Score a golden set (golden_set_counts): {tag path: (precision, predicted)} for every tag the
    tagger emitted at least `min_predicted` times (fewer: too few to judge, not scored). Raises
    DataError for an unreadable file."""
    return precision_of(golden_set_counts(tagger, path), min_predicted)


def precision_of(counts: dict[str, dict[str, int]], min_predicted: int) -> dict[str, tuple[float, int]]:
    """{tag: (precision, predicted)} from golden_set_counts, for tags predicted at least `min_predicted` times."""
    return {p: (c["correct"] / c["predicted"], c["predicted"]) for p, c in counts.items()
            if c["predicted"] >= max(min_predicted, 1)}


def below_floor(scores: dict[str, tuple[float, int]], min_precision: float) -> dict[str, tuple[float, int]]:
    """The golden-set rule, shared by the publish audit and the promote gate (tagger/lifecycle/gate.py):
    the scored tags (golden_set_precision) whose precision is under `min_precision`."""
    return {p: v for p, v in scores.items() if v[0] < min_precision}


def audit_golden_set(conf, tagger_factory, model_version: str, previous_model_version: str | None) -> list[dict]:
    """Only when a model version differs from the last published day's (or there is none): score
    the golden set with the run's models; every emitted tag's precision must reach min_precision.
    `tagger_factory()` builds the Tagger (loaded only when the audit runs)."""
    s = conf.settings
    if previous_model_version == model_version:
        return [_result("golden_set", conf.level, "note", None, s["min_precision"],
                        "models unchanged since the last published day: golden set not scored")]
    if not s["path"] or not Path(s["path"]).is_file():
        return [_result("golden_set", conf.level, "note", None, s["min_precision"],
                        f"no golden set at {s['path'] or '(publish.audits.golden_set.path not set)'}: not scored")]
    scores = golden_set_precision(tagger_factory(), s["path"], int(s["min_predicted"]))
    low = below_floor(scores, s["min_precision"])
    if low:
        detail = "; ".join(f"{p}: {prec:.2f} over {n}" for p, (prec, n) in sorted(low.items(), key=lambda kv: kv[1][0]))
        return [_result("golden_set", conf.level, "fail", round(min(v[0] for v in low.values()), 4),
                        s["min_precision"], f"golden-set precision under {s['min_precision']:g}: {detail}")]
    worst = min(scores.values(), default=(1.0, 0))
    return [_result("golden_set", conf.level, "pass", round(worst[0], 4), s["min_precision"],
                    f"{len(scores)} tags scored on the golden set, lowest precision {worst[0]:.2f}")]


def run_audits(publish_conf, today: pd.DataFrame, history: pd.DataFrame, model_version: str,
               tagger_factory) -> list[dict]:
    """Every configured audit of one staged day. `today`: its daily_stats rows; `history`: the
    published days' rows (tagger.job.stats.published_history). With fewer than min_history_days
    days of history, the history audits pass with a note."""
    audits = publish_conf.audits
    results = audit_quarantine(audits["quarantine"], today)
    n_days = 0 if history.empty else history["dt"].nunique()
    if n_days < publish_conf.min_history_days:
        results.append(_result("history", "warn", "note", n_days, publish_conf.min_history_days,
                               f"{n_days} published day(s) before this one, {publish_conf.min_history_days} needed: "
                               "volume, coverage and tag drift not compared"))
    else:
        results += audit_volume(audits["volume"], today, history)
        results += audit_coverage(audits["coverage"], today, history)
        results += audit_tag_drift(audits["tag_drift"], today, history)
    previous = None if history.empty else history.sort_values("dt")["model_version"].iloc[-1]
    results += audit_golden_set(audits["golden_set"], tagger_factory, model_version, previous)
    return results


def outcome(results: list[dict]) -> str:
    """refused (a fail at level fail), warned (any warning), or passed."""
    if any(r["status"] == "fail" for r in results):
        return "refused"
    return "warned" if any(r["status"] == "warn" for r in results) else "passed"


def format_results(results: list[dict]) -> str:
    """One line per audit result, for the run summary."""
    marks = {"pass": "ok  ", "warn": "WARN", "fail": "FAIL", "note": "note"}
    return "\n".join(f"    {marks[r['status']]} {r['audit']:<24} {r['message']}" for r in results)
