"""Label-noise triage: which labelled items look mislabelled?

Out-of-fold scores from k-fold training (each fold's head trained by the workbench's own
tagger.models.training.train_head on the other folds, folds by tagger.models.data.iterative_split),
then cleanlab's multi-label label-issue finder
(cleanlab.multilabel_classification.filter.find_label_issues, confident learning, ranked by
self-confidence) and its per-item label quality score. For every suspected item the labels the
fold's model disagrees with are named: suspected missing (not given, scored at or above the fold
model's threshold) and suspected extra (given, scored below it).

Confident learning estimates each label's noise rates from its positives: with few positives
(`min_positives`, default 20) those estimates are weak, so such labels are reported apart, with
a warning, and an item is listed for them only when cleanlab flags it anyway.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

RARE_POSITIVES = 20


@dataclass
class TriageResult:
    """What triage returns: the labels (output order), their positives, the out-of-fold scores (N, K) and
    decisions, the suspected items ranked (dicts as written to the output file), a per-label summary
    (label -> counts) and the rare labels (fewer than min_positives positives)."""
    labels: list[str]
    positives: dict[str, int]
    scores: np.ndarray
    decisions: np.ndarray
    issues: list[dict]
    summary: dict[str, dict]
    rare: list[str] = field(default_factory=list)


def out_of_fold_scores(texts: list[str], label_lists: list[list[str]], labels: list[str], *, arch: str,
                       folds: int, seed: int = 0, log: Callable = print, **train_options
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, decisions), each (N, K): every item scored and decided (at its fold model's per-label
    thresholds) by a head trained without it. Folds come from iterative_split (stratified, so rare
    labels have positives in every fold); each fold's head is trained by train_head on the other
    folds, one tenth of them held back as its dev set (thresholds, early stopping). Raises
    ValueError for fewer than 2 folds or more folds than items."""
    from tagger.models.data import iterative_split
    from tagger.models.training import train_head

    n = len(texts)
    if folds < 2 or folds > n:
        raise ValueError(f"--folds must be between 2 and the number of items ({n}), got {folds}")
    fold_of = np.asarray(iterative_split(label_lists, [1.0] * folds, seed=seed))
    scores = np.zeros((n, len(labels)), dtype=np.float64)
    decisions = np.zeros((n, len(labels)), dtype=bool)
    with tempfile.TemporaryDirectory(prefix="tagger-triage-") as work:
        for k in range(folds):
            held = np.flatnonzero(fold_of == k)
            rest = np.flatnonzero(fold_of != k)
            dev = rest[::10]
            train = np.setdiff1d(rest, dev)
            log(f"fold {k + 1}/{folds}: training on {len(train):,} items (dev {len(dev):,}), scoring {len(held):,}")
            result = train_head(arch=arch, head="triage", labels=labels,
                                train_texts=[texts[i] for i in train], train_labels=[label_lists[i] for i in train],
                                dev_texts=[texts[i] for i in dev], dev_labels=[label_lists[i] for i in dev],
                                out_dir=str(Path(work) / f"fold{k}"), seed=seed, log=lambda *_a, **_k: None,
                                progress=False, **train_options)
            proba = np.asarray(result.head.predict_proba([texts[i] for i in held]), dtype=np.float64)
            scores[held] = proba
            decisions[held] = proba >= np.asarray(result.spec.thresholds)[None, :]
    return scores, decisions


def find_issues(label_lists: list[list[str]], labels: list[str], scores: np.ndarray, decisions: np.ndarray,
                min_positives: int = RARE_POSITIVES) -> tuple[list[int], np.ndarray, dict[str, dict], list[str]]:
    """cleanlab's multi-label finder on out-of-fold scores: (ranked item indices with a suspected issue,
    most suspect first; each item's label quality score in [0, 1], low = suspect; a per-label summary
    {label: {positives, suspected_missing, suspected_extra, rare}}; the rare labels)."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    index = {name: i for i, name in enumerate(labels)}
    given = [sorted(index[x] for x in labs if x in index) for labs in label_lists]
    ranked = [int(i) for i in find_label_issues(given, scores, return_indices_ranked_by="self_confidence")]
    quality = np.asarray(get_label_quality_scores(given, scores), dtype=np.float64)
    y = np.zeros_like(decisions)
    for i, labs in enumerate(given):
        y[i, labs] = True
    positives = y.sum(axis=0)
    rare = [name for name, p in zip(labels, positives) if p < min_positives]
    summary = {name: {"positives": int(positives[j]), "suspected_missing": 0, "suspected_extra": 0,
                      "rare": name in rare} for j, name in enumerate(labels)}
    for i in ranked:
        for j, name in enumerate(labels):
            if decisions[i, j] and not y[i, j]:
                summary[name]["suspected_missing"] += 1
            elif y[i, j] and not decisions[i, j]:
                summary[name]["suspected_extra"] += 1
    return ranked, quality, summary, rare


def triage(texts: list[str], label_lists: list[list[str]], labels: list[str], *, itemids=None, arch: str = "textcnn",
           folds: int = 5, seed: int = 0, min_positives: int = RARE_POSITIVES, log: Callable = print,
           **train_options) -> TriageResult:
    """Out-of-fold scores (out_of_fold_scores), then find_issues; the suspected items as output rows,
    ranked: {rank, itemid (the line number when the file has none), text, labels (given),
    suspected_missing, suspected_extra, label_quality, scores {label: out-of-fold score}}.
    Raises ValueError (bad folds), DataError (no label with positives in training)."""
    scores, decisions = out_of_fold_scores(texts, label_lists, labels, arch=arch, folds=folds, seed=seed, log=log,
                                           **train_options)
    ranked, quality, summary, rare = find_issues(label_lists, labels, scores, decisions, min_positives)
    issues = []
    for rank, i in enumerate(ranked, 1):
        given = set(label_lists[i])
        issues.append({
            "rank": rank, "itemid": itemids[i] if itemids is not None and itemids[i] is not None else i + 1,
            "text": texts[i], "labels": list(label_lists[i]),
            "suspected_missing": [x for j, x in enumerate(labels) if decisions[i, j] and x not in given],
            "suspected_extra": [x for j, x in enumerate(labels) if x in given and not decisions[i, j]],
            "label_quality": round(float(quality[i]), 4),
            "scores": {x: round(float(scores[i, j]), 4) for j, x in enumerate(labels)},
        })
    positives = {name: s["positives"] for name, s in summary.items()}
    return TriageResult(labels=labels, positives=positives, scores=scores, decisions=decisions, issues=issues,
                        summary=summary, rare=rare)


def format_summary(result: TriageResult, n_items: int, min_positives: int = RARE_POSITIVES) -> str:
    """The per-label summary: positives, items suspected of missing / having an extra label; rare labels
    apart, under a warning."""
    from tagger.lifecycle.tables import format_table

    def table(names):
        rows = [["label", "positives", "suspected missing", "suspected extra"]]
        rows += [[n, str(result.summary[n]["positives"]), str(result.summary[n]["suspected_missing"]),
                  str(result.summary[n]["suspected_extra"])] for n in names]
        return format_table(rows)

    common = [n for n in result.labels if n not in result.rare]
    text = [f"{len(result.issues):,} of {n_items:,} items suspected ({len(result.issues) / max(n_items, 1):.1%})",
            table(common) if common else "(no label with enough positives)"]
    if result.rare:
        text += [f"WARNING: {len(result.rare)} label(s) with fewer than {min_positives} positives: the noise "
                 f"estimate is weak there, so missing suspects are likely and real errors may go unflagged; "
                 f"review these labels by hand or label more items (tagger sample):", table(result.rare)]
    return "\n".join(text)
