"""Per-label thresholds for a target precision, fitted on a dev set, written into the sidecar.

For each label the threshold is the LOWEST candidate whose precision on the dev data reaches the
target (the highest recall meeting it: recall only falls as the threshold rises); the candidates
are the distinct dev scores rounded as the job rounds them (tagger.models.decision.round_scores, 4
decimals), so the job's decisions on these same texts have exactly the fitted precision.

"Reaches" is judged with a margin by default (`confidence` 0.95): the one-sided 95% Wilson lower
bound of the dev precision must reach the target, not only the dev precision itself. Without it
the chosen threshold sits exactly on the edge of the target, where half of all new samples fall
below it, and a rare label's edge rests on a handful of items (measured on the demo: with the
plain rule, 新车官图 reached 0.82 on dev and 0.60 on test). `confidence` 0.5 is the plain rule.
`objective` "f1" takes, among the thresholds that reach the target, the one with the best dev F1
instead of the lowest (for a gate, where extra recall at the cost of precision feeds every head
below it).

A label is switched off (enabled: false, its threshold kept as it was) with a reason when
  * it has fewer than `min_positives` dev positives: "3 dev positives < 5 needed to tell", or
  * no threshold reaches the target: "dev precision at best 0.71 < target 0.80", or reaches it
    only on too few items to be sure at `confidence`.
Calibration decides on/off for every label from the data: a label switched off before is switched
back on when it now reaches the target.

Thresholds are fitted label by label. A decision block (top_k / min_labels / max_labels, see
tagger.models.decision.DECISION_HELP) is applied on top of them by the job; the calibration block then
also records the dev macro/micro-F1 of the final decisions (tagger.models.decision.decide).

A Hugging Face sequence-classification directory without a sidecar gets one written here: that
is how a foreign checkpoint gets thresholds (and label switches).
"""
from __future__ import annotations

import hashlib
import os
from statistics import NormalDist
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .spec import HeadSpec, read_spec, write_spec
from .decision import decide, normalize_decision, round_scores
from .metrics import binarize, label_report, precision_recall_at, threshold_curve

DEFAULT_PRECISION = 0.80
DEFAULT_MIN_POSITIVES = 5
DEFAULT_CONFIDENCE = 0.95
OBJECTIVES = ("recall", "f1")
DEFAULT_OBJECTIVE = "recall"
_EPS = 1e-9  # precision >= target, robust to the last bit of a division


@dataclass
class Calibration:
    """Per label (lists in label order): new threshold, on/off, reason (None when on), and the
    dev figures at that threshold (as if the label were on): precision, recall, f1, positives,
    predicted, plus best_precision over all candidates."""

    thresholds: list[float]
    enabled: list[bool]
    reasons: list[str | None]
    figures: list[dict]
    target: float
    min_positives: int
    confidence: float
    objective: str


def _fmt(value: float, target: float) -> str:
    """2 decimals, unless that would print a miss as reaching the target (0.798 -> "0.7980")."""
    text = f"{value:.2f}"
    return text if float(text) < target else f"{value:.4f}"


def precision_lower_bound(tp, predicted, confidence: float) -> np.ndarray:
    """One-sided Wilson lower bound of the precision tp/predicted at `confidence` (0.5: the plain
    tp/predicted). It is what a threshold's precision is, at least, on new data like the dev set:
    20 of 24 predictions right (0.83) bounds it at 0.68 with 95% confidence, 830 of 1000 at 0.81."""
    tp = np.asarray(tp, dtype=np.float64)
    n = np.asarray(predicted, dtype=np.float64)
    p = np.divide(tp, n, out=np.zeros_like(tp), where=n > 0)
    z = NormalDist().inv_cdf(confidence) if confidence > 0.5 else 0.0
    if z == 0.0:
        return p
    n_safe = np.maximum(n, 1.0)
    centre = p + z * z / (2 * n_safe)
    spread = z * np.sqrt(p * (1 - p) / n_safe + z * z / (4 * n_safe * n_safe))
    return np.where(n > 0, (centre - spread) / (1 + z * z / n_safe), 0.0)


def calibrate_thresholds(y_true, proba, precision: float = DEFAULT_PRECISION,
                         min_positives: int = DEFAULT_MIN_POSITIVES,
                         current: Sequence[float] | None = None, confidence: float = DEFAULT_CONFIDENCE,
                         objective: str = DEFAULT_OBJECTIVE) -> Calibration:
    """Fit per-label thresholds on (n, L) `y_true` (0/1) and `proba` (see the module docstring).

    `current`: the thresholds a switched-off label keeps (default 0.5). `confidence`: a threshold
    qualifies when the lower bound of its dev precision at this confidence reaches the target (0.5:
    the dev precision itself). `objective`: "recall" takes the lowest qualifying threshold, "f1"
    the qualifying threshold with the best dev F1."""
    if not 0.0 < float(precision) <= 1.0:
        raise ValueError(f"precision target must be in (0, 1], got {precision!r}")
    if not 0.5 <= float(confidence) < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if float(precision) >= 1.0 and confidence > 0.5:
        raise ValueError("precision target 1.0 can never be reached with a confidence margin (the lower bound of "
                         "a precision is below 1): use a lower target, or confidence 0.5")
    if int(min_positives) < 0:
        raise ValueError(f"min_positives must be >= 0, got {min_positives!r}")
    yt = np.asarray(y_true).astype(bool)
    s = round_scores(proba)
    if yt.ndim != 2 or yt.shape != s.shape:
        raise ValueError(f"shape mismatch: y_true {yt.shape}, proba {s.shape}")
    L = yt.shape[1]
    current = [0.5] * L if current is None else [float(t) for t in current]
    target, need = float(precision), int(min_positives)
    thresholds, enabled, reasons, figures = [], [], [], []
    for j in range(L):
        curve = threshold_curve(yt[:, j], s[:, j])
        prec = np.divide(curve["tp"], curve["predicted"], out=np.zeros(len(curve["tp"])),
                         where=curve["predicted"] > 0)
        best = float(prec.max()) if len(prec) else 0.0
        if confidence > 0.5:
            bound = precision_lower_bound(curve["tp"], curve["predicted"], confidence)
            ok = np.flatnonzero(bound >= target - _EPS)
        else:
            ok = np.flatnonzero(curve["tp"] >= target * curve["predicted"] - _EPS)  # ascending thresholds
        positives = curve["positives"]
        if positives < need:
            on, t = False, current[j]
            why = f"{positives} dev positive{'s' if positives != 1 else ''} < {need} needed to tell"
        elif not len(ok):
            on, t = False, current[j]
            why = f"dev precision at best {_fmt(best, target)} < target {target:.2f}"
            if best >= target - _EPS:
                why = (f"dev precision reaches {best:.2f} only on too few items: its "
                       f"{confidence:.0%} lower bound stays under the target {target:.2f}")
        else:
            if objective == "f1" and len(ok) > 1:
                tp, pred = curve["tp"][ok].astype(np.float64), curve["predicted"][ok].astype(np.float64)
                f1 = 2 * tp / (pred + positives)
                ok = ok[[int(np.argmax(f1))]]  # first maximum: the lowest threshold among ties
            on, t, why = True, float(curve["thresholds"][ok[0]]), None
        fig = precision_recall_at(yt[:, j], s[:, j] >= t)
        fig["positives"] = fig.pop("support")
        fig["best_precision"] = best
        thresholds.append(t)
        enabled.append(on)
        reasons.append(why)
        figures.append(fig)
    return Calibration(thresholds, enabled, reasons, figures, target, need, float(confidence), objective)


@dataclass
class CalibrationResult:
    """What calibrate_artifact returns: the head directory, the sidecar before and after (as
    written), the Calibration it came from, the dev label_report of the final decisions, and the
    data's labels the head does not have, with their counts."""
    path: str
    before: HeadSpec
    after: HeadSpec
    calibration: Calibration
    report: dict  # label_report of the final decisions (tagger.models.decision.decide) on the dev data
    ignored_labels: dict = field(default_factory=dict)  # data labels the head does not have -> count


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file's bytes as 64 hex characters (read in 1 MB chunks). OSError
    (e.g. FileNotFoundError) if it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unknown_labels(label_lists, labels: Sequence[str]) -> dict[str, int]:
    """Labels in the data that `labels` lacks, with their counts (binarize ignores them)."""
    known, out = set(labels), {}
    for row in label_lists:
        for name in ([row] if isinstance(row, str) else (row or [])):
            if name not in known:
                out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def calibrate_artifact(model_dir: str | os.PathLike, texts: Sequence[str], label_lists,
                       precision: float = DEFAULT_PRECISION, min_positives: int = DEFAULT_MIN_POSITIVES,
                       decision: dict | None = None, data_path: str | os.PathLike | None = None,
                       head=None, batch_size: int = 64, device: str | None = None,
                       confidence: float = DEFAULT_CONFIDENCE, objective: str = DEFAULT_OBJECTIVE,
                       log=None) -> CalibrationResult:
    """Score the dev data with the head in `model_dir`, fit thresholds and switches, and write the
    sidecar atomically (tagger.models.spec.write_spec) with thresholds, enabled, disabled_reasons and
    a `calibration` block. The weights and the version string are not touched (the job's model
    version changes through HeadSpec.decision_digest).

    `decision`: None keeps the sidecar's decision block; a dict replaces it ({} or all defaults
    removes it). Data labels are binarized by the head's labels: other names are ignored (and
    counted in the result), a head label absent from the data has 0 positives. `log`, when given,
    shows the scoring's progress (tagger.models.progress.Progress: a bar on a terminal, else a
    line with elapsed time and ETA every 10% or 30 s)."""
    from .loading import load_head
    from .progress import Progress

    if len(texts) != len(label_lists):
        raise ValueError(f"{len(texts)} texts but {len(label_lists)} label lists")
    before = read_spec(model_dir)  # the sidecar as written (a foreign checkpoint's synthesized one)
    if head is None:
        head = load_head(model_dir, device=device)
    labels = list(before.labels)
    y = binarize(label_lists, labels)
    members = len(getattr(head, "members", ())) or 1  # an ensemble scores the texts once per member
    with Progress(len(texts) * members, f"calibrating {before.head}: scoring dev", log=log or print, unit="text",
                  enabled=log is not None) as shown:
        proba = head.predict_proba(list(texts), batch_size=batch_size,
                                   **({"progress": shown.update} if log is not None else {}))
    cal = calibrate_thresholds(y, proba, precision, min_positives, current=before.thresholds, confidence=confidence,
                               objective=objective)

    extra = dict(before.extra)
    if decision is not None:
        block = normalize_decision(decision)
        if block == normalize_decision(None):
            extra.pop("decision", None)
        else:
            extra["decision"] = block
    reasons = {lab: why for lab, why in zip(labels, cal.reasons) if why}
    if reasons:
        extra["disabled_reasons"] = reasons
    else:
        extra.pop("disabled_reasons", None)
    after = HeadSpec(head=before.head, arch=before.arch, labels=labels, thresholds=list(cal.thresholds),
                     enabled=list(cal.enabled), max_length=before.max_length, version=before.version, extra=extra)
    after.validate(model_dir)  # a bad decision block fails here, before anything is written
    final = label_report(y, decide(proba, after), labels)
    ignored = unknown_labels(label_lists, labels)
    data = None
    if data_path is not None:
        data = {"file": Path(data_path).name, "sha256": file_sha256(data_path)}
    extra["calibration"] = {
        "target_precision": cal.target,
        "min_positives": cal.min_positives,
        "confidence": cal.confidence,
        "objective": cal.objective,
        "n_items": len(texts),
        "data": data,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "decision": after.decision,
        "labels": {lab: {"threshold": t, "enabled": on, **({"reason": why} if why else {}),
                         **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in fig.items()}}
                   for lab, t, on, why, fig in zip(labels, cal.thresholds, cal.enabled, cal.reasons, cal.figures)},
        "dev_macro_f1": round(final["macro_f1"], 6),
        "dev_micro_f1": round(final["micro_f1"], 6),
        **({"ignored_data_labels": ignored} if ignored else {}),
    }
    after.extra = extra
    write_spec(model_dir, after)
    return CalibrationResult(path=str(model_dir), before=before, after=after, calibration=cal, report=final,
                             ignored_labels=ignored)


def format_calibration(result: CalibrationResult) -> str:
    """One line per label: old -> new threshold, on/off, dev figures or the reason it is off."""
    b, a, cal = result.before, result.after, result.calibration
    lines = []
    for j, name in enumerate(a.labels):
        state = ("on" if a.enabled[j] else "off") if b.enabled[j] == a.enabled[j] else \
            f"{'on' if b.enabled[j] else 'off'} -> {'on' if a.enabled[j] else 'off'}"
        fig = cal.figures[j]
        line = f"  {name}: threshold {b.thresholds[j]:.4f} -> {a.thresholds[j]:.4f}, {state}; "
        if a.enabled[j]:
            line += (f"dev precision {fig['precision']:.4f}, recall {fig['recall']:.4f}, F1 {fig['f1']:.4f}, "
                     f"positives {fig['positives']}")
        else:
            line += f"positives {fig['positives']} ({cal.reasons[j]})"
        lines.append(line)
    return "\n".join(lines)


__all__ = ["calibrate_thresholds", "format_calibration", "calibrate_artifact", "Calibration", "CalibrationResult",
           "DEFAULT_PRECISION", "DEFAULT_MIN_POSITIVES", "file_sha256", "unknown_labels"]
