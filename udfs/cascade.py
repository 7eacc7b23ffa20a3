"""The cascade: the binary gate, then each head on the rows its gate passed. One function, used by
the job's tagging pass (udfs/tagging.py), `tagger bench` and `tagger ablation` alike, so what
they measure is the job's own code.

Executor side: imports nothing from the driver side (tagger.config, tagger.job, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeadRef:
    """What a worker needs to know of one configured head: its name, the artifact directory,
    the tag path its labels hang under, and the head whose first label gates it (None: every row)."""

    name: str
    path: str
    parent: str
    gate_by: str | None = None

    @classmethod
    def of(cls, head) -> "HeadRef":
        """A HeadRef from any object with name, path, parent and gate_by (e.g. tagger.config.HeadConf)."""
        return head if isinstance(head, cls) else cls(head.name, head.path, head.parent, head.gate_by)


@dataclass
class HeadRun:
    """One head's part of a cascade over n texts.

    rows:   (m,) int64 indices of the texts the head scored (all n unless gated)
    scores: (m, L) float64 scores rounded as the job writes them (models.decision.round_scores)
    hit:    (m, L) bool decisions (models.decision.decide: thresholds, switches, decision block)
    passed: (n,) bool, the head's first label decided yes (False where the head did not run);
            the rows a head gated by this one runs on
    """

    ref: HeadRef
    head: object
    rows: np.ndarray
    scores: np.ndarray
    hit: np.ndarray
    passed: np.ndarray


def run_cascade(heads: Sequence[tuple[HeadRef, object]], texts: Sequence[str], *, batch_size: int = 64,
                cascade: bool = True, **predict_options) -> list[HeadRun]:
    """Score `texts` (n strings) with every head in order, a gated head only on the rows its gate
    passed. `heads` are (HeadRef, loaded head) pairs in config order (a gate before the heads it
    gates); loaded heads come from models.loading.load_head.

    `cascade=False` runs every head on every row (what `tagger ablation` compares against), and
    `predict_options` go to each head's `predict_proba` (its inference switches; the defaults are
    the job's). Returns one HeadRun per head, in order. Raises KeyError if a head's gate_by names
    a head that does not come before it.
    """
    from tagger.models.decision import round_scores

    n = len(texts)
    passed: dict[str, np.ndarray] = {}
    out = []
    for ref, head in heads:
        if ref.gate_by is None or not cascade:
            rows = np.arange(n)
        else:
            rows = np.flatnonzero(passed[ref.gate_by])
        scores = round_scores(head.predict_proba([texts[r] for r in rows], batch_size=batch_size,
                                                 **predict_options))
        hit = head.decide(scores)
        first = np.zeros(n, dtype=bool)
        first[rows] = hit[:, 0]
        passed[ref.name] = first
        out.append(HeadRun(ref, head, rows, scores, hit, first))
    return out
