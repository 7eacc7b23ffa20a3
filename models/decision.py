"""The one decision rule: scores -> emitted labels, for the job, `tagger evaluate` and
`tagger calibrate` alike.

1. scores are rounded to SCORE_DECIMALS (4) decimals (`round_scores`; the job writes these scores);
2. a label passes when its rounded score >= its threshold and it is enabled;
3. the optional per-head `decision` block of the sidecar is applied (DECISION_HELP below).

A label switched off (`enabled: false`) is never emitted, whatever the decision block says.
No torch here: the driver and the evaluation code import this without loading a model.
"""
from __future__ import annotations

import numpy as np

SCORE_DECIMALS = 4  # scores are rounded so that reruns compare equal row for row (the job writes these)
DECISION_KEYS = ("top_k", "min_labels", "max_labels")
DECISION_HELP = """\
Optional per-head `decision` block in tagger_head.json, applied after the thresholds:
  "decision": {"top_k": null, "min_labels": 0, "max_labels": null}
  max_labels  keep only the max_labels highest-scoring labels among those that pass their threshold.
  min_labels  if fewer than min_labels labels pass, add the next highest-scoring enabled labels
              (whatever their score) until there are min_labels.
  top_k       ranking mode: ignore the thresholds and emit exactly the top_k highest-scoring enabled
              labels (fewer only if fewer labels are enabled); cannot be combined with min/max_labels.
Ties in score are broken by label order (the earlier label wins). Scores are compared after
rounding to 4 decimals. Disabled labels (enabled: false) are never emitted. Without the block
(or with the defaults above) a label is emitted iff score >= threshold and it is enabled."""


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def validate_decision(block, n_labels: int, bad) -> None:
    """Check a sidecar's `decision` block (None: no block, fine) for a head of n_labels labels: an
    object with only top_k / min_labels / max_labels, each null or an integer in range, min_labels
    <= max_labels, top_k not combined with the others. On the first problem calls
    bad("decision", problem, fix), which must raise (HeadSpec.validate raises ArtifactError)."""
    if block is None:
        return
    fix = ("write \"decision\": {\"top_k\": null, \"min_labels\": 0, \"max_labels\": null} with integers "
           f"between 1 and {n_labels} (the number of labels); see models.decision.DECISION_HELP")
    if not isinstance(block, dict):
        bad("decision", f"must be an object, got {block!r}", fix)
    unknown = sorted(set(block) - set(DECISION_KEYS))
    if unknown:
        bad("decision", f"has unknown keys {unknown} (known: {list(DECISION_KEYS)})", fix)
    top_k, lo, hi = block.get("top_k"), block.get("min_labels", 0), block.get("max_labels")
    if top_k is not None and (not _is_int(top_k) or not 1 <= top_k <= n_labels):
        bad("decision", f"top_k must be null or an integer in [1, {n_labels}], got {top_k!r}", fix)
    if lo is None:
        lo = 0
    if not _is_int(lo) or not 0 <= lo <= n_labels:
        bad("decision", f"min_labels must be an integer in [0, {n_labels}], got {lo!r}", fix)
    if hi is not None and (not _is_int(hi) or not 1 <= hi <= n_labels):
        bad("decision", f"max_labels must be null or an integer in [1, {n_labels}], got {hi!r}", fix)
    if hi is not None and lo > hi:
        bad("decision", f"min_labels ({lo}) is greater than max_labels ({hi})", fix)
    if top_k is not None and (lo or hi is not None):
        bad("decision", "top_k (ranking mode, thresholds ignored) cannot be combined with min_labels/max_labels",
            "use either top_k alone, or min_labels/max_labels with the thresholds")


def normalize_decision(block: dict | None) -> dict:
    """{top_k, min_labels, max_labels} with defaults (None, 0, None); validate first."""
    block = block or {}
    top_k, hi = block.get("top_k"), block.get("max_labels")
    return {"top_k": None if top_k is None else int(top_k), "min_labels": int(block.get("min_labels") or 0),
            "max_labels": None if hi is None else int(hi)}


def round_scores(scores) -> np.ndarray:
    """Scores as the job writes them: float64 rounded to SCORE_DECIMALS decimals (idempotent)."""
    return np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS)


def passes(scores, thresholds, enabled=None) -> np.ndarray:
    """Rules 1-2 alone: boolean (n, L), rounded score >= the label's threshold and the label enabled.
    `scores` (n, L), `thresholds` (L,), `enabled` (L,) or None (all on). Training uses this to pick
    its epoch; `decide` adds the decision block."""
    hit = round_scores(scores) >= np.asarray(thresholds, dtype=np.float64)[None, :]
    if enabled is not None:
        hit &= np.asarray(enabled, dtype=bool)[None, :]
    return hit


def decide(scores, spec) -> np.ndarray:
    """Boolean (n, L) decisions from (n, L) scores: rounded scores >= thresholds, enabled labels
    only, then the spec's decision block (top_k / min_labels / max_labels, see DECISION_HELP).

    `scores`: array-like (n, L) of probabilities (any float dtype; rounded to SCORE_DECIMALS here);
    `spec`: a HeadSpec (labels, thresholds, enabled, decision). Returns an (n, L) bool ndarray.
    Raises ValueError when scores are not 2-D with L = len(spec.labels) columns."""
    s = round_scores(scores)
    L = len(spec.labels)
    if s.ndim != 2 or s.shape[1] != L:
        raise ValueError(f"scores must have shape (n, {L}) for head {spec.head!r}, got {s.shape}")
    enabled = np.asarray(spec.enabled, dtype=bool)[None, :]
    hit = passes(s, spec.thresholds, spec.enabled)
    d = spec.decision
    if d["top_k"] is None and not d["min_labels"] and d["max_labels"] is None:
        return hit
    n = s.shape[0]
    if n == 0:
        return hit
    # rank labels per row: highest score first, ties by label order (stable sort); disabled last
    order = np.argsort(-np.where(enabled, s, -np.inf), axis=1, kind="stable")
    enabled_sorted = np.take_along_axis(np.broadcast_to(enabled, s.shape), order, axis=1)
    if d["top_k"] is not None:
        keep = enabled_sorted & (np.arange(L)[None, :] < d["top_k"])
    else:
        keep = np.take_along_axis(hit, order, axis=1)
        if d["min_labels"]:
            short = d["min_labels"] - keep.sum(axis=1, keepdims=True)
            extra = enabled_sorted & ~keep
            keep = keep | (extra & (np.cumsum(extra, axis=1) <= short))
        if d["max_labels"] is not None:
            keep = keep & (np.cumsum(keep, axis=1) <= d["max_labels"])
    out = np.zeros_like(hit)
    np.put_along_axis(out, order, keep, axis=1)
    return out


class HeadDecisions:
    """The decisions every head kind shares (LoadedHead, LinearHead, EnsembleHead, KnnHead, ...):
    a subclass provides `spec` (a HeadSpec) and `predict_proba(texts, batch_size=...)` -> (n, L)
    float32 scores; this adds `decide` and `predict`."""

    def decide(self, proba) -> np.ndarray:
        """Boolean (n, L) decisions from this head's (n, L) scores: `decide(proba, self.spec)` (rounded
        scores vs thresholds, enabled labels only, then the sidecar's decision block)."""
        return decide(proba, self.spec)

    def predict(self, texts, batch_size: int = 64) -> np.ndarray:
        """Boolean (n, L) decisions for n texts: `self.decide(self.predict_proba(texts))`."""
        return self.decide(self.predict_proba(texts, batch_size=batch_size))
