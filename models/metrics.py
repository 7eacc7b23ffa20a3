"""Multi-label metrics in the team's report style (0/0 is reported as 0.0)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def binarize(label_lists: Iterable[Iterable[str] | None], labels: Sequence[str]) -> np.ndarray:
    """(n, len(labels)) uint8 indicator matrix. Names not in `labels` are ignored; a None row
    (or a bare string, treated as a one-element list) is handled."""
    index = {name: j for j, name in enumerate(labels)}
    rows = list(label_lists)
    out = np.zeros((len(rows), len(labels)), dtype=np.uint8)
    for i, row in enumerate(rows):
        if row is None:
            continue
        if isinstance(row, str):
            row = [row]
        for name in row:
            j = index.get(name)
            if j is not None:
                out[i, j] = 1
    return out


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if (p + r) else 0.0


def label_report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Per-label precision/recall/F1/support plus macro- and micro-F1.

    `y_true`, `y_pred`: (n, L) binary arrays (bool or 0/1). Macro-F1 is the unweighted mean over
    all labels (labels with no support and no predictions count as 0.0, like sklearn's
    zero_division=0)."""
    yt = np.asarray(y_true).astype(bool)
    yp = np.asarray(y_pred).astype(bool)
    if yt.ndim == 1:
        yt = yt[:, None]
    if yp.ndim == 1:
        yp = yp[:, None]
    if yt.shape != yp.shape or yt.shape[1] != len(labels):
        raise ValueError(f"shape mismatch: y_true {yt.shape}, y_pred {yp.shape}, {len(labels)} labels")
    tp = (yt & yp).sum(axis=0)
    fp = (~yt & yp).sum(axis=0)
    fn = (yt & ~yp).sum(axis=0)
    per = {}
    f1s = []
    for j, name in enumerate(labels):
        p = _div(tp[j], tp[j] + fp[j])
        r = _div(tp[j], tp[j] + fn[j])
        f = _f1(p, r)
        f1s.append(f)
        per[name] = {"precision": p, "recall": r, "f1": f, "support": int(tp[j] + fn[j])}
    TP, FP, FN = int(tp.sum()), int(fp.sum()), int(fn.sum())
    micro = _f1(_div(TP, TP + FP), _div(TP, TP + FN))
    return {"labels": per, "macro_f1": float(np.mean(f1s)) if f1s else 0.0, "micro_f1": micro}


def format_report(report: dict) -> str:
    """A label_report dict as text: 'Label <name> - Precision: p, Recall: r, F1-Score: f, Support: n'
    per label (4 decimals), then a 'Macro-F1 ... Micro-F1 ...' line. KeyError if a key is missing."""
    lines = [
        f"Label {name} - Precision: {m['precision']:.4f}, Recall: {m['recall']:.4f}, "
        f"F1-Score: {m['f1']:.4f}, Support: {int(m['support'])}"
        for name, m in report["labels"].items()
    ]
    lines.append(f"Macro-F1: {report['macro_f1']:.4f}  Micro-F1: {report['micro_f1']:.4f}")
    return "\n".join(lines)


def label_distribution(label_lists: Iterable[Iterable[str] | None], labels: Sequence[str]) -> str:
    """One line per label: how many items carry it and the share of all items."""
    y = binarize(label_lists, labels)
    n = y.shape[0]
    counts = y.sum(axis=0)
    return "\n".join(
        f"Label: {name}, Count: {int(counts[j])}, Ratio: {_div(counts[j], n) * 100:.2f}%"
        for j, name in enumerate(labels)
    )


def f1_by_threshold(y_true: np.ndarray, proba: np.ndarray, grid: np.ndarray = THRESHOLD_GRID
                    ) -> np.ndarray:
    """(L, G) F1 of each label at each threshold of `grid` (prediction: proba >= threshold)."""
    yt = np.asarray(y_true).astype(bool)
    pr = np.asarray(proba, dtype=np.float32)
    L = yt.shape[1]
    out = np.zeros((L, len(grid)), dtype=np.float64)
    for j in range(L):
        pos = pr[:, j][:, None] >= grid[None, :].astype(np.float32)  # (n, G)
        t = yt[:, j][:, None]
        tp = (pos & t).sum(axis=0).astype(np.float64)
        fp = (pos & ~t).sum(axis=0)
        fn = (~pos & t).sum(axis=0)
        denom = 2 * tp + fp + fn
        out[j] = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return out


def best_f1_thresholds(y_true: np.ndarray, proba: np.ndarray, grid: np.ndarray = THRESHOLD_GRID,
                       default: float = 0.5) -> list[float]:
    """Per label, the grid threshold maximizing F1 (ties: the one closest to 0.5). A label
    whose F1 is 0 everywhere (e.g. no positives in dev) keeps `default`."""
    f1 = f1_by_threshold(y_true, proba, grid)
    out = []
    for j in range(f1.shape[0]):
        best = f1[j].max()
        if best <= 0:
            out.append(float(default))
            continue
        cands = np.flatnonzero(np.isclose(f1[j], best, rtol=0, atol=1e-12))
        k = cands[np.argmin(np.abs(grid[cands] - 0.5))]
        out.append(float(grid[k]))
    return out


def threshold_curve(y_true: np.ndarray, scores: np.ndarray) -> dict:
    """One label's counts at every candidate threshold: the distinct values of `scores`.

    Returns {"thresholds": ascending distinct scores, "tp": true positives and "predicted": items
    predicted at each (prediction: score >= threshold), "positives": positives in y_true}.
    Pass scores already rounded the way the job rounds them (tagger.models.decision.round_scores), so
    these counts are exactly what the job's decisions give."""
    yt = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if yt.shape != s.shape:
        raise ValueError(f"shape mismatch: y_true {yt.shape}, scores {s.shape}")
    values, inverse = np.unique(s, return_inverse=True)
    at_value = np.bincount(inverse, minlength=len(values))
    pos_at_value = np.bincount(inverse, weights=yt.astype(np.float64), minlength=len(values)).astype(np.int64)
    # predicted at threshold values[k] = every item scoring >= values[k]: a reversed cumulative sum
    predicted = np.cumsum(at_value[::-1])[::-1].astype(np.int64)
    tp = np.cumsum(pos_at_value[::-1])[::-1].astype(np.int64)
    return {"thresholds": values, "tp": tp, "predicted": predicted, "positives": int(yt.sum())}


def precision_recall_at(y_true: np.ndarray, pred: np.ndarray) -> dict:
    """Precision, recall, F1, support and predicted count of one label's boolean decisions."""
    yt = np.asarray(y_true).astype(bool).ravel()
    yp = np.asarray(pred).astype(bool).ravel()
    tp = int((yt & yp).sum())
    p, r = _div(tp, yp.sum()), _div(tp, yt.sum())
    return {"precision": p, "recall": r, "f1": _f1(p, r), "support": int(yt.sum()), "predicted": int(yp.sum())}
