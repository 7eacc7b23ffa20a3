"""Evaluate a head artifact on labelled data, with the job's own decisions.

`evaluate_artifact(model_dir, texts, label_lists)` scores the texts, decides with
tagger.models.decision.decide (rounded scores, thresholds, enabled labels, decision block: exactly what
the daily job emits) and returns a report dict: per label precision, recall, F1, support (plus
threshold, on/off and the reason a label is off), macro- and micro-F1 over all labels (a label
switched off counts with its misses), the label distribution table of the data, and the paths of
the files it writes next to the artifact (or into `out_dir`):

  bad_cases.jsonl  every item with a false positive or a false negative: line, itemid (when the
                   data has them), the first 200 characters of the text, true and predicted labels,
                   the false positives / negatives, and the scores of the labels involved;
  pr_curve.png     one figure: each label's precision-recall curve (over the rounded scores), its
                   threshold marked as a dot on it (models/plots.py for the Chinese font);
  MODEL_CARD.md    models/model_card.py.

Data labels are binarized by the head's labels: names the head does not have are ignored (and
listed in the report under ignored_labels), a head label absent from the data has support 0.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .decision import round_scores
from .calibrate import file_sha256, unknown_labels
from .metrics import binarize, label_distribution, label_report, precision_recall_at, threshold_curve

BAD_CASES = "bad_cases.jsonl"
PR_CURVE = "pr_curve.png"
MODEL_CARD = "MODEL_CARD.md"
EXCERPT_CHARS = 200


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")  # same directory: os.replace is atomic


def _atomic_write(path: Path, write) -> None:
    """Write through a temp file in the same directory, then rename (ordinary file mode, like write_spec)."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def bad_cases(texts: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray,
              labels: Sequence[str], itemids: Sequence | None = None) -> list[dict]:
    """One record per item with at least one false positive or false negative (in data order)."""
    yt, yp = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    out = []
    for i in np.flatnonzero((yt != yp).any(axis=1)):
        i = int(i)
        involved = np.flatnonzero(yt[i] | yp[i])
        rec = {"line": i + 1}
        if itemids is not None:
            rec["itemid"] = itemids[i]
        text = texts[i] if isinstance(texts[i], str) else ""
        rec.update(
            text=text[:EXCERPT_CHARS],
            true=[labels[j] for j in np.flatnonzero(yt[i])],
            predicted=[labels[j] for j in np.flatnonzero(yp[i])],
            false_positives=[labels[j] for j in np.flatnonzero(yp[i] & ~yt[i])],
            false_negatives=[labels[j] for j in np.flatnonzero(yt[i] & ~yp[i])],
            scores={labels[j]: float(scores[i, j]) for j in involved},
        )
        out.append(rec)
    return out


def pr_curves(y_true: np.ndarray, scores: np.ndarray, labels: Sequence[str], thresholds: Sequence[float],
              enabled: Sequence[bool]) -> list[dict]:
    """Per label: the precision-recall curve over the (rounded) scores and the point of its threshold."""
    yt = np.asarray(y_true).astype(bool)
    curves = []
    for j, name in enumerate(labels):
        c = threshold_curve(yt[:, j], scores[:, j])
        entry = {"label": name, "enabled": bool(enabled[j]), "recall": [], "precision": [], "point": None}
        if c["positives"] > 0:
            entry["recall"] = c["tp"] / c["positives"]
            entry["precision"] = c["tp"] / np.maximum(c["predicted"], 1)
            at = precision_recall_at(yt[:, j], scores[:, j] >= thresholds[j])
            if at["predicted"]:
                entry["point"] = (at["recall"], at["precision"])
            else:  # nothing reaches the threshold: recall 0, precision undefined -> draw at (0, 1)
                entry["point"] = (0.0, 1.0)
        curves.append(entry)
    return curves


def evaluate_artifact(model_dir: str | os.PathLike, texts: Sequence[str], label_lists,
                      out_dir: str | os.PathLike | None = None, itemids: Sequence | None = None,
                      data_path: str | os.PathLike | None = None, head=None, batch_size: int = 64,
                      device: str | None = None, write_files: bool = True) -> dict:
    """Evaluate the head in `model_dir` on (texts, label_lists); see the module docstring."""
    from .loading import load_head
    from .spec import read_spec

    texts = list(texts)
    label_lists = list(label_lists)
    if len(texts) != len(label_lists):
        raise ValueError(f"{len(texts)} texts but {len(label_lists)} label lists")
    if itemids is not None and len(itemids) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(itemids)} itemids")
    if head is None:
        head = load_head(model_dir, device=device)
    spec = read_spec(model_dir)  # as written (load_head may cap a BERT max_length for inference)
    labels = list(spec.labels)
    y = binarize(label_lists, labels)
    scores = round_scores(head.predict_proba(texts, batch_size=batch_size))
    pred = head.decide(scores)
    rep = label_report(y, pred, labels)
    reasons = spec.extra.get("disabled_reasons") or {}
    per = {}
    for j, name in enumerate(labels):
        m = dict(rep["labels"][name])
        m.update(predicted=int(pred[:, j].sum()), threshold=float(spec.thresholds[j]), enabled=bool(spec.enabled[j]))
        if not spec.enabled[j]:
            m["reason"] = reasons.get(name, "switched off in the sidecar")
        per[name] = m
    on = [name for name, m in per.items() if m["enabled"]]
    counts = y.sum(axis=0)
    report = {
        "head": spec.head, "arch": spec.arch, "version": spec.version,
        "decision_digest": spec.decision_digest(), "model_dir": str(model_dir),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"file": Path(data_path).name if data_path else None, "path": str(data_path) if data_path else None,
                 "n": len(texts), "sha256": file_sha256(data_path) if data_path else None},
        "labels": per,
        "macro_f1": rep["macro_f1"], "micro_f1": rep["micro_f1"],
        "macro_f1_enabled": float(np.mean([per[n]["f1"] for n in on])) if on else 0.0,
        "distribution": label_distribution(label_lists, labels),
        "distribution_counts": {name: int(counts[j]) for j, name in enumerate(labels)},
        "thresholds": dict(zip(labels, map(float, spec.thresholds))),
        "enabled": dict(zip(labels, map(bool, spec.enabled))),
        "disabled_reasons": {n: per[n]["reason"] for n in labels if not per[n]["enabled"]},
        "decision": spec.decision,
        "ignored_labels": unknown_labels(label_lists, labels),
    }
    cases = bad_cases(texts, y, pred, scores, labels, itemids)
    report["n_bad_cases"] = len(cases)
    report["files"] = {}
    if not write_files:
        return report

    from .model_card import render_model_card
    from .plots import pr_curve_figure

    out = Path(out_dir) if out_dir is not None else Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"bad_cases": str(out / BAD_CASES), "pr_curve": str(out / PR_CURVE), "model_card": str(out / MODEL_CARD)}
    _atomic_write(out / BAD_CASES, lambda f: f.write("".join(
        json.dumps(c, ensure_ascii=False) + "\n" for c in cases).encode("utf-8")))
    tmp_png = _tmp_name(out / PR_CURVE)
    try:
        plot = pr_curve_figure(tmp_png, pr_curves(y, scores, labels, spec.thresholds, spec.enabled),
                               title=f"Precision-recall: {spec.head} ({len(texts):,} items)")
        os.replace(tmp_png, out / PR_CURVE)
    finally:
        if tmp_png.exists():
            tmp_png.unlink()
    report["pr_curve_font"] = plot["font"]
    report["pr_curve_legend"] = plot["legend"]
    report["files"] = files
    card = render_model_card(report, spec, png_name=PR_CURVE)
    _atomic_write(out / MODEL_CARD, lambda f: f.write(card.encode("utf-8")))
    return report


__all__ = ["evaluate_artifact", "bad_cases", "pr_curves", "BAD_CASES", "PR_CURVE", "MODEL_CARD"]
