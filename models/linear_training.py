"""Training of the linear head (`tagger train --arch linear`): scikit-learn's TfidfVectorizer over
models/linear.py's `features` and one LogisticRegression per label, saved as arrays without pickle
(models/linear.py has the format), with thresholds chosen on dev like every other head.

scikit-learn is imported here only; the job scores the saved arrays with numpy.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from .decision import passes
from .linear import LINEAR_VOCAB, LinearHead, LinearScorer, features, linear_options, logit
from .metrics import THRESHOLD_GRID, best_f1_thresholds, binarize, label_report
from .spec import WEIGHTS, HeadSpec, weights_version, write_spec
from .tokenization import normalize_texts
from .words import text_block, write_dictionary

LINEAR_TRAIN_DEFAULTS = {"max_length": 1000, "c": 4.0, "min_df": 2, "max_features": 500_000}


def sklearn_features(opts: dict, entries: Sequence[str], max_length: int):
    """An unfitted TfidfVectorizer whose analyzer is models/linear.py's `features` (float64, l2 norm,
    smooth idf, sublinear tf as `opts` says). Imports scikit-learn."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=partial(features, opts=opts, entries=tuple(entries), max_length=max_length),
                           sublinear_tf=opts["sublinear_tf"], dtype=np.float64, norm="l2", smooth_idf=True,
                           lowercase=False)


class SklearnLinear:
    """The fitted scikit-learn objects of a linear head: `vectorizer` and one LogisticRegression per
    label (None for a label without both classes in train, scored `constant[j]`). `predict_proba(texts)`
    -> (n, L) float64, training-time scores (what the saved arrays must reproduce)."""

    def __init__(self, vectorizer, estimators: list, constant: list[float]):
        self.vectorizer, self.estimators, self.constant = vectorizer, estimators, constant

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), L) float64: column j is estimators[j].predict_proba(X)[:, 1] (or the constant)."""
        X = self.vectorizer.transform(normalize_texts(texts))
        cols = [e.predict_proba(X)[:, 1] if e is not None else np.full(X.shape[0], c)
                for e, c in zip(self.estimators, self.constant)]
        return np.column_stack(cols)

    def arrays(self) -> dict[str, np.ndarray]:
        """{"coef": (L, V), "intercept": (L,), "idf": (V,)} float64, for model.safetensors."""
        V = len(self.vectorizer.vocabulary_)
        coef = np.zeros((len(self.estimators), V))
        intercept = np.zeros(len(self.estimators))
        for j, (e, c) in enumerate(zip(self.estimators, self.constant)):
            if e is None:
                intercept[j] = logit(c)
            else:
                coef[j] = e.coef_[0]
                intercept[j] = e.intercept_[0]
        return {"coef": coef, "intercept": intercept, "idf": np.asarray(self.vectorizer.idf_, dtype=np.float64)}

    def terms(self) -> list[str]:
        """The vocabulary's feature strings in column order."""
        vocab = self.vectorizer.vocabulary_
        return sorted(vocab, key=vocab.get)


def fit_linear(texts: Sequence[str], y: np.ndarray, opts: dict, entries: Sequence[str] = (), *,
               max_length: int = 1000, c: float = 4.0, min_df: int = 2, max_features: int | None = 500_000,
               pos_weight: np.ndarray | None = None, seed: int = 0, soft: bool = False) -> SklearnLinear:
    """Fit the TF-IDF vocabulary and one liblinear LogisticRegression (inverse regularization `c`)
    per label column of `y` ((n, L) 0/1); `pos_weight` (L,) weighs each label's positives (None: 1).
    A label without both classes gets no estimator: it scores its train share (0 or 1) everywhere.
    soft=True: `y` holds float targets p in [0, 1] (distillation); each text is then fitted twice,
    as a positive with sample weight p (x pos_weight) and as a negative with weight 1 - p, which is
    the logistic loss with soft targets; a column whose targets are all 0 or all 1 gets no estimator.
    Raises ValueError (scikit-learn's) when no term reaches min_df."""
    from sklearn.linear_model import LogisticRegression

    vectorizer = sklearn_features(opts, entries, max_length)
    vectorizer.set_params(min_df=min_df, max_features=max_features)
    X = vectorizer.fit_transform(normalize_texts(texts))
    estimators, constant = [], []
    if soft:
        import scipy.sparse as sp

        XX = sp.vstack([X, X]).tocsr()
        side = np.r_[np.ones(X.shape[0], dtype=int), np.zeros(X.shape[0], dtype=int)]
        for j in range(y.shape[1]):
            p = np.asarray(y[:, j], dtype=np.float64)
            share = float(p.mean()) if len(p) else 0.0
            if not len(p) or p.min() == p.max() and p[0] in (0.0, 1.0):
                estimators.append(None)
                constant.append(share)
                continue
            w1 = float(pos_weight[j]) if pos_weight is not None else 1.0
            weight = np.r_[p * w1, 1.0 - p]
            keep = weight > 0
            est = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=seed)
            estimators.append(est.fit(XX[keep], side[keep], sample_weight=weight[keep]))
            constant.append(share)
        return SklearnLinear(vectorizer, estimators, constant)
    for j in range(y.shape[1]):
        col = np.asarray(y[:, j]).astype(int)
        share = float(col.mean()) if len(col) else 0.0
        if col.min() == col.max():
            estimators.append(None)
            constant.append(share)
            continue
        weight = {0: 1.0, 1: float(pos_weight[j]) if pos_weight is not None else 1.0}
        est = LogisticRegression(C=c, solver="liblinear", class_weight=weight, max_iter=1000, random_state=seed)
        estimators.append(est.fit(X, col))
        constant.append(share)
    return SklearnLinear(vectorizer, estimators, constant)


def train_linear_head(*, head: str, labels: list[str], train_texts: list[str], train_labels: list[list[str]],
                      dev_texts: list[str], dev_labels: list[list[str]], out_dir: str, tokenizer: str = "char",
                      dictionary: Sequence[str] = (), max_length: int | None = None, c: float | None = None,
                      min_df: int | None = None, max_features: int | None = None, char_ngrams=None,
                      word_ngrams=None, pos_weight: str = "auto", seed: int = 0,
                      log: Callable[..., object] = print, source: dict | None = None,
                      soft_targets: np.ndarray | None = None, **ignored):
    """Train a linear head and write its artifact to `out_dir` (replaced if it already holds a head).

    Inputs as tagger.models.training.train_head; `tokenizer` char | word | char+word, `dictionary`
    the team dictionary's entries (models/words.py read_dictionary), `c` LogisticRegression's C,
    `min_df` / `max_features` the vocabulary's limits, `char_ngrams` / `word_ngrams` [lo, hi]
    (None: LINEAR_TRAIN_DEFAULTS and models/linear.py LINEAR_DEFAULTS). Options of the torch heads
    (epochs, lr, ...) are ignored. Returns a tagger.models.training.TrainResult whose `head` is the
    LinearHead read back from the arrays and `reference` the SklearnLinear (training-time scores).
    soft_targets: (n_train, L) floats in [0, 1] fitted instead of `train_labels` (fit_linear soft=True;
    distillation), recorded in the sidecar (tagger.models.training.soft_target_record).
    Raises ValueError for bad labels or options, DataError when no label has a train positive,
    FileExistsError when out_dir is another non-empty directory."""
    from .training import TrainResult, _check_out_dir, _check_positives, _publish, compute_pos_weight, soft_target_record

    t0 = time.time()
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError("labels must be a non-empty list of distinct names")
    if len(train_texts) != len(train_labels) or len(dev_texts) != len(dev_labels) or not train_texts:
        raise ValueError("texts and label lists must have the same length, and there must be training data")
    block = {"tokenizer": tokenizer}
    if char_ngrams is not None:
        block["char_ngrams"] = list(char_ngrams)
    if word_ngrams is not None:
        block["word_ngrams"] = list(word_ngrams)
    opts = linear_options(block)
    d = LINEAR_TRAIN_DEFAULTS
    max_length = int(max_length if max_length is not None else d["max_length"])
    c = float(c if c is not None else d["c"])
    min_df = int(min_df if min_df is not None else d["min_df"])
    max_features = int(max_features if max_features is not None else d["max_features"])
    entries = list(dictionary) if opts["tokenizer"] != "char" else []
    out = Path(out_dir)
    _check_out_dir(out)
    train_texts, dev_texts = normalize_texts(train_texts), normalize_texts(dev_texts)
    y_train, y_dev = binarize(train_labels, labels), binarize(dev_labels, labels)
    if soft_targets is not None:
        y_train = np.asarray(soft_targets, dtype=np.float32)
        if y_train.shape != (len(train_texts), len(labels)):
            raise ValueError(f"soft_targets must have shape ({len(train_texts)}, {len(labels)}), got {y_train.shape}")
    _check_positives(head, labels, y_train, y_dev, log)
    pw = compute_pos_weight(y_train, pos_weight)
    log(f"[{head}] linear: train={len(train_texts)} dev={len(dev_texts)} labels={len(labels)} tokenizer={opts['tokenizer']}"
        f" char_ngrams={opts['char_ngrams']} word_ngrams={opts['word_ngrams'] if opts['tokenizer'] != 'char' else '-'}"
        f" dictionary={len(entries)} C={c:g} min_df={min_df} max_features={max_features} max_length={max_length}")
    fitted = fit_linear(train_texts, y_train, opts, entries, max_length=max_length, c=c, min_df=min_df,
                        max_features=max_features, pos_weight=pw, seed=seed, soft=soft_targets is not None)
    arrays, terms = fitted.arrays(), fitted.terms()
    scorer = LinearScorer(terms, arrays["idf"], arrays["coef"], arrays["intercept"], opts, entries, max_length)
    spec = HeadSpec(head=head, arch="linear", labels=labels, thresholds=[0.5] * len(labels),
                    enabled=[True] * len(labels), max_length=max_length, version="untrained", extra={"linear": opts})
    loaded = LinearHead(spec, scorer)
    if len(dev_texts):
        proba = loaded.predict_proba(dev_texts)
        thresholds = best_f1_thresholds(y_dev, proba, THRESHOLD_GRID)
        report = label_report(y_dev, passes(proba, thresholds), labels)
        r05 = label_report(y_dev, proba >= 0.5, labels)
        report["macro_f1_at_0.5"], report["micro_f1_at_0.5"] = r05["macro_f1"], r05["micro_f1"]
    else:
        thresholds = [0.5] * len(labels)
        report = {"labels": {}, "macro_f1": 0.0, "micro_f1": 0.0, "note": "no dev data"}
    report["thresholds"] = dict(zip(labels, thresholds))
    report["best_epoch"] = report["epochs_run"] = 1
    report["history"] = []

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        from safetensors.numpy import save_file
        import sklearn

        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(staging / WEIGHTS),
                  metadata={"format": "np"})
        (staging / LINEAR_VOCAB).write_text(json.dumps({"terms": terms}, ensure_ascii=False), encoding="utf-8")
        write_dictionary(staging, entries)
        seconds = time.time() - t0
        spec = HeadSpec(
            head=head, arch="linear", labels=labels, thresholds=[float(t) for t in thresholds],
            enabled=[True] * len(labels), max_length=max_length, version=weights_version(head, staging / WEIGHTS),
            extra={
                "trained_on": {
                    "n_train": len(train_texts), "n_dev": len(dev_texts),
                    "train_positives": dict(zip(labels, y_train.sum(axis=0).round().astype(int).tolist())),
                    "dev_positives": dict(zip(labels, y_dev.sum(axis=0).astype(int).tolist())),
                    **(soft_target_record(y_train) if soft_targets is not None else {}),
                    "epochs": 1, "C": c, "min_df": min_df, "max_features": max_features, "terms": len(terms),
                    "pos_weight": pos_weight, "pos_weight_values": None if pw is None else [float(x) for x in pw],
                    "seed": seed, "max_length": max_length, "seconds": round(seconds, 1),
                    "scikit_learn": sklearn.__version__, **({"source": source} if source else {}),
                },
                "metrics": {k: v for k, v in report.items() if k != "history"},
                "linear": opts,
                "text": text_block(opts["tokenizer"], entries),
            },
        )
        write_spec(staging, spec)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    loaded.spec, loaded.path = spec, str(out)
    log(f"[{head}] saved {out} version {spec.version}: {len(terms):,} terms, dev macro-F1 {report['macro_f1']:.4f} "
        f"micro-F1 {report['micro_f1']:.4f} in {seconds:.1f}s")
    return TrainResult(path=str(out), spec=spec, dev_report=report, seconds=seconds, head=loaded, reference=fitted)
