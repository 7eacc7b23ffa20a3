"""Ensemble heads: two or more member heads trained on the same labels, combined per label.

An ensemble is an artifact directory like any other head, so the job, `tagger evaluate` and
`tagger calibrate` treat it the same way. Its `tagger_head.json` has `arch: ensemble`,
`combine` and `members` (directories, relative to the ensemble's own directory or absolute);
it has no weights of its own.

Scores. Each member's score (rounded as the job rounds it) is first rescaled so that the
member's own threshold maps to 0.5, piecewise linear: [0, t) -> [0, 0.49), [t, 1] -> [0.5, 1]
(the small gap keeps "below its threshold" below 0.5 after rounding); a label the member has
switched off scores 0, and a member may not carry a decision block (set one on the ensemble).
Then, per label:
  intersection: the minimum of the members' rescaled scores (>= 0.5 iff every member says yes)
  union:        the maximum (>= 0.5 iff any member says yes)
  mean:         the mean
With the ensemble's thresholds at 0.5 (the default), intersection and union reproduce "both
models say yes" and "either model says yes" exactly; `tagger calibrate` then moves the
ensemble's thresholds like any head's.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .decision import HeadDecisions, round_scores
from .spec import COMBINE, ArtifactError, HeadSpec, read_spec, validate_ensemble, write_spec
BELOW = 0.49  # a score under its member's threshold maps below this


def rescale(proba: np.ndarray, thresholds: Sequence[float], enabled: Sequence[bool] | None = None) -> np.ndarray:
    """Map each label's own threshold to 0.5, keeping 0 -> 0 and 1 -> 1 (monotone). A label the
    member has switched off scores 0: that member says no.

    `proba`: (n, L) scores in [0, 1] (rounded to 4 decimals first); `thresholds`: (L,); `enabled`:
    (L,) bools or None (all on). Returns (n, L) float64 in [0, 1]. numpy raises ValueError when
    thresholds or enabled do not broadcast against the L columns."""
    p = round_scores(proba)
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    below = BELOW * p / np.maximum(t, 1e-6)
    above = 0.5 + 0.5 * (p - t) / np.maximum(1 - t, 1e-6)
    out = np.where(p < t, below, np.minimum(above, 1.0))
    if enabled is not None:
        out = np.where(np.asarray(enabled, dtype=bool)[None, :], out, 0.0)
    return out


def combine_scores(member_scores: Sequence[np.ndarray], member_thresholds: Sequence[Sequence[float]],
                   combine: str, member_enabled: Sequence[Sequence[bool]] | None = None) -> np.ndarray:
    """The ensemble's (n, L) float32 scores from M members' (n, L) scores: each rescaled by its own
    (L,) thresholds and enabled flags (rescale; member_enabled None: all on), then per label the
    min ('intersection'), max ('union') or mean ('mean') over the members. Raises ValueError for
    another `combine`, for no members, or when the members' score shapes differ."""
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
    enabled = member_enabled or [None] * len(member_scores)
    stacked = np.stack([rescale(s, t, e) for s, t, e in zip(member_scores, member_thresholds, enabled)])
    reduce = {"intersection": np.min, "union": np.max, "mean": np.mean}[combine]
    return reduce(stacked, axis=0).astype(np.float32)


class EnsembleHead(HeadDecisions):
    """A head whose scores are combined from its members' (see the module docstring).

    It has the inference interface of `tagger.models.loading.LoadedHead` (spec, labels, device,
    predict_proba, decide, predict) and no model of its own. Build it with `load_head(dir)`.
    """

    def __init__(self, spec: HeadSpec, members: list, path: str | None = None):
        self.spec = spec
        self.members = members
        self.device = members[0].device
        self.path = path
        self.max_length = int(spec.max_length)

    @property
    def labels(self) -> list[str]:
        """The label names in output order."""
        return list(self.spec.labels)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, **options) -> np.ndarray:
        """(len(texts), L) float32 combined scores; `options` go to every member's predict_proba."""
        scores = [m.predict_proba(texts, batch_size=batch_size, **options) for m in self.members]
        return combine_scores(scores, [m.spec.thresholds for m in self.members], self.spec.extra["combine"],
                              [m.spec.enabled for m in self.members])


    def __repr__(self) -> str:
        return (f"EnsembleHead(head={self.spec.head!r}, combine={self.spec.extra['combine']!r}, "
                f"members={[m.spec.head for m in self.members]}, version={self.spec.version!r})")


def write_ensemble(out_dir: str | os.PathLike, members: Sequence[str | os.PathLike], combine: str,
                   head: str | None = None, thresholds: Sequence[float] | None = None) -> HeadSpec:
    """Write an ensemble artifact over existing member heads (paths stored relative to out_dir
    when the members live below it, so the directory can be copied as a whole)."""
    out = Path(out_dir)
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
    if (out / "model.safetensors").exists() or any(Path(m).resolve() == out.resolve() for m in members):
        raise ArtifactError(out, None, "already holds a head with weights (or is one of the members); writing the "
                            "ensemble there would replace that head's sidecar",
                            "write the ensemble to a new directory and copy the members below it")
    specs = [read_spec(m) for m in members]
    labels = specs[0].labels
    stored = []
    for m in members:
        m = Path(m).resolve()
        try:
            stored.append(str(m.relative_to(out.resolve())))
        except ValueError:
            stored.append(str(m))
    digest = hashlib.sha256("|".join([combine, *(s.version for s in specs)]).encode()).hexdigest()[:8]
    spec = HeadSpec(head=head or out.name, arch="ensemble", labels=list(labels),
                    thresholds=list(thresholds) if thresholds is not None else [0.5] * len(labels),
                    enabled=[True] * len(labels), max_length=max(s.max_length for s in specs),
                    version=f"{head or out.name}-{combine}-{digest}",
                    extra={"combine": combine, "members": stored})
    validate_ensemble(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    write_spec(out, spec)
    return spec
