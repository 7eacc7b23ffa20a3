"""The linear head (`arch: linear`): TF-IDF over character n-grams (and jieba words) with one
logistic regression per label, scored with numpy alone.

scikit-learn fits it (models/linear_training.py, `tagger train` only); this module is what the job,
`tagger evaluate` and `tagger calibrate` run, and it imports neither scikit-learn nor pickle:

    features(text)  the n-gram strings of the text (`features`, shared with training, which hands
                    it to TfidfVectorizer as its analyzer, so both see the same terms)
    tf-idf          per term count c: (1 + ln c) * idf (sublinear) or c * idf, the row scaled to unit
                    L2 norm; terms not in the vocabulary are dropped (as TfidfVectorizer.transform)
    score           sigmoid(row . coef[label] + intercept[label]) in float64, returned as float32

Artifact (no pickle anywhere; a pickle file in the directory is refused):
    tagger_head.json      arch "linear", the `linear` block (tokenizer, n-gram ranges, sublinear_tf)
    model.safetensors     coef (L, V) float64, intercept (L,) float64, idf (V,) float64
    linear_vocab.json     {"terms": [V strings, in column order]}
    dictionary.txt        the team dictionary, when the tokenizer reads words (models/words.py)

Features are namespaced: "c:" + a char n-gram, "w:" + a word n-gram (words joined by a space).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .decision import HeadDecisions
from .spec import SIDECAR, WEIGHTS, ArtifactError, HeadSpec
from .tokenization import normalize_texts
from .words import check_tokenizer, dictionary_in, word_cutter

LINEAR_VOCAB = "linear_vocab.json"
LINEAR_DEFAULTS = {"tokenizer": "char", "char_ngrams": [1, 3], "word_ngrams": [1, 2], "sublinear_tf": True}
_PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
_CHUNK = 4096  # texts featurized at once (bounds the memory of the flat term arrays)


def linear_options(block: dict | None) -> dict:
    """The `linear` sidecar block with its defaults filled in. Raises ValueError for an unknown key,
    an unknown tokenizer or an n-gram range that is not [lo, hi] with 1 <= lo <= hi <= 6."""
    opts = {**LINEAR_DEFAULTS, **(block or {})}
    unknown = sorted(set(opts) - set(LINEAR_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown linear option(s) {unknown}; known: {sorted(LINEAR_DEFAULTS)}")
    check_tokenizer(opts["tokenizer"])
    for key in ("char_ngrams", "word_ngrams"):
        r = opts[key]
        if (not isinstance(r, (list, tuple)) or len(r) != 2 or not all(isinstance(x, int) for x in r)
                or not 1 <= r[0] <= r[1] <= 6):
            raise ValueError(f"{key} must be [lo, hi] with 1 <= lo <= hi <= 6, got {r!r}")
        opts[key] = [int(r[0]), int(r[1])]
    opts["sublinear_tf"] = bool(opts["sublinear_tf"])
    return opts


def features(text: str, opts: dict, entries: Sequence[str] = (), max_length: int | None = None) -> list[str]:
    """The feature strings of one text (see the module docstring): char n-grams of the lower-cased
    text (cut to `max_length` chars) when the tokenizer reads chars, word n-grams of its jieba words
    when it reads words. `opts`: linear_options(...); `entries`: the team dictionary."""
    t = text[:max_length] if max_length else text
    out: list[str] = []
    tokenizer = opts["tokenizer"]
    if tokenizer != "word":
        low = t.lower()
        lo, hi = opts["char_ngrams"]
        for n in range(lo, hi + 1):
            out.extend(["c:" + low[i:i + n] for i in range(len(low) - n + 1)])
    if tokenizer != "char":
        words = word_cutter(entries).cut(t)
        lo, hi = opts["word_ngrams"]
        for n in range(lo, hi + 1):
            out.extend(["w:" + " ".join(words[i:i + n]) for i in range(len(words) - n + 1)])
    return out


class LinearScorer:
    """TF-IDF rows and logistic scores from saved arrays (numpy only).

    `terms`: V feature strings in column order; `idf`: (V,); `coef`: (L, V); `intercept`: (L,);
    `opts`: linear_options(...); `entries`: the team dictionary; `max_length`: chars read per text.
    Raises ValueError when the shapes disagree."""

    def __init__(self, terms: Sequence[str], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 opts: dict, entries: Sequence[str] = (), max_length: int | None = None):
        V = len(terms)
        idf = np.asarray(idf, dtype=np.float64)
        coef = np.asarray(coef, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64)
        if idf.shape != (V,) or coef.ndim != 2 or coef.shape[1] != V or intercept.shape != (coef.shape[0],):
            raise ValueError(f"linear arrays disagree: {V} terms, idf {idf.shape}, coef {coef.shape}, "
                             f"intercept {intercept.shape}")
        self.index = {t: i for i, t in enumerate(terms)}
        if len(self.index) != V:
            raise ValueError("linear vocabulary has duplicate terms")
        self.idf, self.intercept = idf, intercept
        self.coef_t = np.ascontiguousarray(coef.T)  # (V, L): one gathered row per term
        self.opts, self.entries, self.max_length = opts, list(entries), max_length

    def tfidf(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The unit-L2 TF-IDF rows of `texts` as flat (row (nnz,), column (nnz,), value (nnz,)) arrays,
        one entry per distinct known term of a row (a row with none has no entry)."""
        get = self.index.get
        rows, cols = [], []
        for r, text in enumerate(texts):
            ids = [i for i in map(get, features(text, self.opts, self.entries, self.max_length)) if i is not None]
            rows.append(np.full(len(ids), r, dtype=np.int64))
            cols.append(np.asarray(ids, dtype=np.int64))
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        V = max(len(self.index), 1)
        keys, counts = np.unique(row * V + col, return_counts=True)
        row, col = keys // V, keys % V
        tf = counts.astype(np.float64)
        if self.opts["sublinear_tf"]:
            tf = np.log(tf) + 1.0
        val = tf * self.idf[col]
        norms = np.sqrt(np.bincount(row, weights=val * val, minlength=len(texts)))
        val = val / norms[row]
        return row, col, val

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """(n, L) float64 logits: each row's TF-IDF dotted with coef, plus intercept."""
        n, L = len(texts), len(self.intercept)
        out = np.empty((n, L), dtype=np.float64)
        row, col, val = self.tfidf(texts)
        gathered = self.coef_t[col] * val[:, None]  # (nnz, L)
        for j in range(L):
            out[:, j] = np.bincount(row, weights=gathered[:, j], minlength=n)
        return out + self.intercept[None, :]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, L) float64 probabilities: the logistic sigmoid of decision_function."""
        z = self.decision_function(texts)
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow warnings


class LinearHead(HeadDecisions):
    """A linear head ready for inference, with the interface of `tagger.models.loading.LoadedHead`
    (spec, labels, device, max_length, predict_proba, decide, predict). Build it with
    `tagger.models.loading.load_head(dir)` or `load_linear(dir, spec)`."""

    def __init__(self, spec: HeadSpec, scorer: LinearScorer, path: str | None = None):
        self.spec = spec
        self.scorer = scorer
        self.path = path
        self.device = "cpu"
        self.max_length = int(spec.max_length)

    @property
    def labels(self) -> list[str]:
        """The label names in output order (a copy of spec.labels)."""
        return list(self.spec.labels)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, *,
                      progress: Callable[[int], object] | None = None, **_torch_switches) -> np.ndarray:
        """(len(texts), L) float32 probabilities in [0, 1], rows in input order. None/NaN texts score
        as "". `batch_size` and the torch heads' switches (order, padding, grad, tokenize, autocast)
        change nothing here and are accepted so that every head takes the job's call; `progress`, when
        given, is called with the number of texts scored after each chunk of 4,096."""
        texts = normalize_texts(texts)
        out = np.zeros((len(texts), len(self.spec.labels)), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            part = texts[start:start + _CHUNK]
            out[start:start + len(part)] = self.scorer.predict_proba(part)
            if progress is not None:
                progress(len(part))
        return out


    def __repr__(self) -> str:
        return (f"LinearHead(head={self.spec.head!r}, labels={len(self.spec.labels)}, "
                f"terms={len(self.scorer.index)}, tokenizer={self.scorer.opts['tokenizer']!r}, "
                f"version={self.spec.version!r})")


def refuse_pickles(directory: str | os.PathLike) -> None:
    """Raise ArtifactError if `directory` holds any pickle-like file (.pkl, .joblib, .bin, .npy, ...):
    a linear artifact is safetensors and JSON only, and pickle can run code when loaded."""
    d = Path(directory)
    found = sorted(p.name for p in d.iterdir() if p.is_file() and p.suffix.lower() in _PICKLES)
    if found:
        raise ArtifactError(d, found[0], f"refusing a linear artifact that holds pickle-based files ({', '.join(found)}); "
                            "pickle can run code when loaded, and this head is safetensors and JSON only",
                            f"retrain with `tagger train --arch linear` (it writes {WEIGHTS} and {LINEAR_VOCAB}), "
                            f"then remove {found[0]}")


def load_linear(d: str | os.PathLike, spec: HeadSpec, shapes: dict) -> LinearHead:
    """The LinearHead of artifact directory `d` with sidecar `spec` and safetensors header `shapes`
    (spec.check_weights). Raises ArtifactError for a pickle file in the directory, a missing or
    unreadable linear_vocab.json or dictionary, a bad `linear` block, tensors missing or of the
    wrong shape (naming the tensor), or labels that disagree with coef's rows."""
    d = Path(d)
    refuse_pickles(d)
    for name in ("coef", "intercept", "idf"):
        if name not in shapes:
            raise ArtifactError(d, WEIGHTS, f"not linear weights: tensor '{name}' is missing (tensors: "
                                f"{sorted(shapes)[:6]})", "check the sidecar 'arch' matches the weights, or retrain",
                                key=name)
    L = len(spec.labels)
    if shapes["coef"][0] != L:
        raise ArtifactError(d, SIDECAR, f"lists {L} labels but {WEIGHTS} coef has {shapes['coef'][0]} rows",
                            "use the sidecar that was written with these weights or retrain", key="labels")
    try:
        opts = linear_options(spec.extra.get("linear"))
    except ValueError as e:
        raise ArtifactError(d, SIDECAR, str(e), "use the sidecar written with these weights or retrain",
                            key="linear") from None
    try:
        terms = json.loads((d / LINEAR_VOCAB).read_text(encoding="utf-8"))["terms"]
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ValueError("'terms' must be a list of strings")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(d, LINEAR_VOCAB, f"missing or unreadable vocabulary ({type(e).__name__}: {e})",
                            "copy the complete artifact directory (training writes it next to the weights)") from None
    try:
        entries = dictionary_in(d)
    except (OSError, ValueError) as e:
        raise ArtifactError(d, "dictionary.txt", f"unreadable team dictionary ({e})", "re-copy or retrain") from None
    from safetensors.numpy import load_file

    arrays = load_file(str(d / WEIGHTS))
    try:
        scorer = LinearScorer(terms, arrays["idf"], arrays["coef"], arrays["intercept"], opts, entries,
                              int(spec.max_length))
    except ValueError as e:
        raise ArtifactError(d, LINEAR_VOCAB, str(e), "use the vocabulary written with these weights or retrain",
                            key="terms") from None
    return LinearHead(spec, scorer, path=str(d))


def logit(p: float) -> float:
    """ln(p / (1 - p)) with p clipped to [1e-12, 1 - 1e-12]: the intercept of a constant predictor."""
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))
