"""Sampling for annotators: which unlabelled items should a person label next?

Per enabled label of a head: the items whose score is nearest the label's threshold (where the model
is least sure which side an item falls), half of them just above it and half just below, and, for rare labels (fewer than `rare_share` of the items
reach the threshold), also the highest-scoring items, since a rare label's few true positives are
where its model fails and near-threshold items may hold none. Items picked for several labels appear
once, with every reason. Scores are the job's: predict_proba rounded as the job rounds them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RARE_SHARE = 0.01


def read_unlabelled(path: str) -> tuple[list[str], list]:
    """(texts, itemids) from JSON lines {"itemid"?, "text", ...}; texts normalized as the job's doc_text
    (clean_text); an item without itemid gets its line number. Raises DataError naming the line for
    a line that is not such an object."""
    from tagger.models.data import DataError
    from tagger.models.text import clean_text

    texts, itemids = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} ({exc}). Fix: pass a UTF-8 JSON-lines file with --data.") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text = rec["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f'{path}:{i}: not an item line ({exc}). Fix: one JSON object per line, '
                            '{"itemid": "...", "text": "..."}.') from None
        texts.append(clean_text(text))
        itemids.append(rec.get("itemid", i))
    return texts, itemids


def near_threshold(s: np.ndarray, t: float, n: int) -> list[int]:
    """Indices of `n` items around threshold `t`: the n//2 (rounded up) scoring nearest at or above it and
    the rest nearest below it, so that the sample straddles the threshold (a likely false positive and
    a likely false negative per pair); one side short of items is filled from the other. Ties: lower
    index first."""
    above = [int(i) for i in np.argsort(s - t, kind="stable") if s[i] >= t]
    below = [int(i) for i in np.argsort(t - s, kind="stable") if s[i] < t]
    k_above = min(len(above), max((n + 1) // 2, n - len(below)))
    return above[:k_above] + below[:n - k_above]


def pick(scores: np.ndarray, thresholds, enabled, labels, per_label: int, rare_share: float = RARE_SHARE
         ) -> dict[int, list[dict]]:
    """{item index: [reasons]} where a reason is {label, why: 'near_threshold' | 'top_score', score,
    threshold}: per enabled label the `per_label` items around its threshold (near_threshold: half the
    nearest above, half the nearest below)
    and, for a label that fewer than `rare_share` of the items reach, the `per_label` highest-scoring
    items as well. Switched-off labels are skipped."""
    picked: dict[int, list[dict]] = {}
    n = len(scores)
    for j, (label, t, on) in enumerate(zip(labels, thresholds, enabled)):
        if not on or n == 0:
            continue
        s = scores[:, j]
        chosen = [(i, "near_threshold") for i in near_threshold(s, t, per_label)]
        if (s >= t).mean() < rare_share:
            chosen += [(int(i), "top_score") for i in np.argsort(-s, kind="stable")[:per_label]]
        for i, why in chosen:
            reasons = picked.setdefault(i, [])
            if not any(r["label"] == label for r in reasons):
                reasons.append({"label": label, "why": why, "score": float(s[i]), "threshold": float(t)})
    return picked


def sample(model_dir: str, texts: list[str], itemids: list, per_label: int, rare_share: float = RARE_SHARE,
           batch_size: int = 64) -> tuple[list[dict], dict]:
    """Score `texts` with the head in `model_dir` and pick (see pick). Returns (rows, per-label counts):
    rows {itemid, text, picked_for: [reasons], scores: {label: score}} in the order picked, and
    {label: {"near_threshold": n, "top_score": n, "rare": bool}}. Raises ArtifactError."""
    from tagger.models.decision import round_scores
    from tagger.models.loading import load_head

    head = load_head(model_dir)
    spec = head.spec
    scores = round_scores(head.predict_proba(texts, batch_size=batch_size)) if texts else np.zeros((0, len(spec.labels)))
    picked = pick(scores, spec.thresholds, spec.enabled, spec.labels, per_label, rare_share)
    rows = [{"itemid": itemids[i], "text": texts[i], "picked_for": reasons,
             "scores": {label: float(scores[i, j]) for j, label in enumerate(spec.labels)}}
            for i, reasons in picked.items()]
    counts = {label: {"near_threshold": 0, "top_score": 0, "enabled": on,
                      "rare": bool(on and len(texts) and (scores[:, j] >= t).mean() < rare_share)}
              for j, (label, t, on) in enumerate(zip(spec.labels, spec.thresholds, spec.enabled))}
    for reasons in picked.values():
        for r in reasons:
            counts[r["label"]][r["why"]] += 1
    return rows, counts
