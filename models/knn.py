"""Nearest-neighbour heads (`arch: knn`): an encoder plus a bank of labelled examples.

A label's score for an item is the similarity-weighted share of the item's k nearest bank examples
that carry the label:

    q             the item's embedding (the encoder's, L2-normalised; see `Encoder`)
    neighbours    the k bank rows with the largest inner product q . b (= cosine: both are unit
                  vectors), found by faiss (IndexFlatIP: exact search, no training, no approximation)
    w_j           max(cos_j, 0) ("relu" weighting): a neighbour pointing away from the item counts
                  for nothing, a closer one counts more; the cosines are recomputed in float64
                  from the returned rows, so an item's score does not depend on which other items
                  share its batch
    score_l       sum_j w_j * y_jl / sum_j w_j   in [0, 1]; 0 for every label when all w_j are 0

`tagger calibrate` then fits thresholds on these scores like any head's, and `decide` applies them.
Adding examples to the bank (`add_examples`, `tagger knn-add`) writes a new directory whose
model.safetensors (the bank) differs, so the job's model version (models/spec.artifact_version)
changes with no training.

Artifact:
    tagger_head.json    arch "knn", labels, thresholds, enabled, max_length (the encoder's), and
                        `knn`: {k, weighting: "relu", encoder: "encoder", encoder_kind: "hf"|"head"}
    model.safetensors   bank (n, d) float32 unit rows, bank_labels (n, L) uint8
    encoder/            encoder_kind "hf": a Hugging Face encoder checkpoint (config.json,
                        model.safetensors, tokenizer files; AutoModel, the last hidden state
                        mean-pooled over real tokens); a project bert head directory is read the
                        same way (its classifier is not used). encoder_kind "head": a project
                        textcnn head directory; the embedding is its penultimate layer (the pooled
                        convolution features before dropout and the output layer, TextCNN.features)

faiss is imported only inside this module's functions: the job imports it only when a configured
head is knn (tests/test_layout.py checks a job without one never does).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .decision import HeadDecisions
from .spec import (SIDECAR, WEIGHTS, ArtifactError, HeadSpec, check_weights, read_spec, validate_knn,
                   weights_version, write_spec)
from .tokenization import normalize_texts

ENCODER_DIR = "encoder"
DEFAULT_K = 5
HF_MAX_LENGTH = 128  # tokens an HF encoder reads per text unless told otherwise
_CHUNK = 4096  # texts embedded and searched at once


# -- the encoder ----------------------------------------------------------------------------------

def encoder_kind(path: str | os.PathLike) -> str:
    """"hf" or "head" for a directory that can serve as a kNN encoder: a project textcnn head is
    "head" (its penultimate layer); a project bert head, or a directory with config.json and no
    sidecar (a Hugging Face encoder checkpoint), is "hf". Raises ArtifactError for anything else
    (a linear, ensemble or knn head, a missing directory, no config.json)."""
    d = Path(path)
    if not d.is_dir():
        raise ArtifactError(d, None, "the encoder directory does not exist",
                            "give a Hugging Face encoder checkpoint directory or a project textcnn/bert head")
    if (d / SIDECAR).is_file():
        spec = read_spec(d)
        if spec.arch == "textcnn":
            return "head"
        if spec.arch == "bert":
            return "hf"
        raise ArtifactError(d, SIDECAR, f"a {spec.arch} head has no embedding a kNN head can search",
                            "use a textcnn or bert head, or a Hugging Face encoder checkpoint, as the encoder",
                            key="arch")
    if (d / "config.json").is_file():
        return "hf"
    raise ArtifactError(d, "config.json", "neither a project head (tagger_head.json) nor a Hugging Face "
                        "checkpoint (config.json)", "give an encoder saved with save_pretrained, or a textcnn/bert head")


class Encoder:
    """Texts -> (n, d) float32 L2-normalised embeddings (a zero embedding stays zero).

    Build with `Encoder.load(directory, kind, max_length, device)`. `embed(texts, batch_size)`
    scores in mini-batches sorted by length (the rows come back in input order)."""

    def __init__(self, kind: str, model, device, *, tokenizer=None, head=None, max_length: int):
        self.kind, self.model, self.device = kind, model, device
        self.tokenizer, self.head, self.max_length = tokenizer, head, int(max_length)

    @classmethod
    def load(cls, directory: str | os.PathLike, kind: str, max_length: int | None = None,
             device: str | None = None) -> "Encoder":
        """The encoder in `directory` of `kind` ("hf" or "head"); `max_length` caps tokens (hf) or
        chars (head) per text (None: the head's own, or 128 for hf capped by the checkpoint's
        positions). Raises ArtifactError when the directory cannot be loaded."""
        d = Path(directory)
        if kind == "head":
            from .loading import load_head

            head = load_head(d, device=device, runtime="torch")
            if head.spec.arch != "textcnn":
                raise ArtifactError(d, SIDECAR, f"encoder_kind \"head\" needs a textcnn head, this is {head.spec.arch}",
                                    "write encoder_kind \"hf\" for a bert head", key="arch")
            return cls("head", head.model, head.device, head=head,
                       max_length=min(int(max_length or head.max_length), head.max_length))
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from .loading import _default_device
        from .spec import _position_cap

        dev = _default_device(device)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a classification head's unused classifier weights are expected
        hf_logging.disable_progress_bar()
        try:
            config = AutoConfig.from_pretrained(str(d), local_files_only=True)
            model = AutoModel.from_pretrained(str(d), use_safetensors=True, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - one clear artifact error
            raise ArtifactError(d, "config.json", f"could not load a Hugging Face encoder ({type(e).__name__}: {e})",
                                "save the encoder and its tokenizer with save_pretrained(dir, safe_serialization=True)"
                                ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
        model.to(dev).eval()
        cap = _position_cap(config)
        return cls("hf", model, dev, tokenizer=tokenizer, max_length=min(int(max_length or HF_MAX_LENGTH), cap))

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), d) float32 unit rows (zero rows stay zero), in input order."""
        import torch

        from .loading import padded_batches
        from .tokenization import encode_with_tokenizer

        texts = normalize_texts(texts)
        if self.kind == "head":
            ids, lengths = self.head.encode(texts)
        else:
            ids, lengths = encode_with_tokenizer(self.tokenizer, texts, self.max_length)
        n = len(texts)
        out = None
        rows = np.argsort(-lengths, kind="stable")
        min_width = self.model.min_width if self.kind == "head" else 1
        with torch.inference_mode():
            for idx, x, lens in padded_batches(ids, lengths, rows, batch_size, self.device, min_width):
                width = x.shape[1]
                if self.kind == "head":
                    z = self.model.features(x, lens)
                else:
                    mask = (torch.arange(width, device=x.device)[None, :] < lens[:, None])
                    hidden = self.model(input_ids=x, attention_mask=mask.long()).last_hidden_state.float()
                    m = mask[:, :, None].float()
                    z = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                z = z.float().cpu().numpy()
                if out is None:
                    out = np.zeros((n, z.shape[1]), dtype=np.float32)
                out[idx] = z
        if out is None:
            out = np.zeros((0, self.dim()), dtype=np.float32)
        return normalize_rows(out)

    def dim(self) -> int:
        """The embedding size d."""
        if self.kind == "head":
            return int(self.model.num_filters * len(self.model.kernel_sizes))
        return int(self.model.config.hidden_size)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """(n, d) float32 rows scaled to unit L2 norm; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


# -- scoring ----------------------------------------------------------------------------------------

def knn_scores(queries: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray, k: int, index=None) -> np.ndarray:
    """(n, L) float32 scores of the module docstring for unit `queries` (n, d) against the unit
    `bank` (m, d) with `bank_labels` (m, L) 0/1. `index`: a faiss index over `bank` (built here
    when None). Raises ValueError when the shapes disagree or k > m."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    m, d = bank.shape
    if queries.ndim != 2 or queries.shape[1] != d or bank_labels.shape[0] != m or not 1 <= k <= m:
        raise ValueError(f"knn_scores: queries {queries.shape}, bank {bank.shape}, bank_labels {bank_labels.shape}, k={k}")
    if index is None:
        index = build_index(bank)
    _, nn = index.search(queries, k)  # (n, k) row ids, nearest first
    sims = np.einsum("nkd,nd->nk", bank[nn].astype(np.float64), queries.astype(np.float64))
    w = np.maximum(sims, 0.0)
    total = w.sum(axis=1, keepdims=True)
    votes = np.einsum("nk,nkl->nl", w, bank_labels[nn].astype(np.float64))
    scores = np.where(total > 0, votes / np.where(total > 0, total, 1.0), 0.0)
    return np.clip(scores, 0.0, 1.0).astype(np.float32)


def build_index(bank: np.ndarray):
    """A faiss IndexFlatIP (exact inner-product search) over the (m, d) float32 `bank`. faiss uses
    as many threads as torch does in this process (the job sets torch's threads per worker).
    Raises ImportError with the install line when faiss is missing."""
    try:
        import faiss
    except ImportError:
        raise ImportError("a knn head needs faiss: pip install 'tagger[knn]' (faiss-cpu)") from None
    import torch

    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    index = faiss.IndexFlatIP(int(bank.shape[1]))
    index.add(np.ascontiguousarray(bank, dtype=np.float32))
    return index


class KnnHead(HeadDecisions):
    """A kNN head ready for inference, with the interface of `tagger.models.loading.LoadedHead`
    (spec, labels, device, max_length, predict_proba, decide, predict). Build it with
    `tagger.models.loading.load_head(dir)` or `load_knn`.

    `bank`: (m, d) float32 unit rows; `bank_labels`: (m, L) uint8; `encoder`: an Encoder."""

    def __init__(self, spec: HeadSpec, encoder: Encoder, bank: np.ndarray, bank_labels: np.ndarray,
                 path: str | None = None):
        self.spec = spec
        self.encoder = encoder
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.bank_labels = np.ascontiguousarray(bank_labels, dtype=np.uint8)
        self.k = int(spec.extra["knn"]["k"])
        self.path = path
        self.device = encoder.device
        self.max_length = int(spec.max_length)
        self.index = build_index(self.bank)

    @property
    def labels(self) -> list[str]:
        """The label names in output order (a copy of spec.labels)."""
        return list(self.spec.labels)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, *,
                      progress: Callable[[int], object] | None = None, **_torch_switches) -> np.ndarray:
        """(len(texts), L) float32 scores in [0, 1] (the module docstring's formula), rows in input
        order. None/NaN texts score as "". `batch_size` is the encoder's mini-batch; the torch heads'
        other switches are accepted and change nothing; `progress`, when given, is called with the
        number of texts scored after each chunk of 4,096."""
        texts = normalize_texts(texts)
        out = np.zeros((len(texts), len(self.spec.labels)), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            part = texts[start:start + _CHUNK]
            q = self.encoder.embed(part, batch_size=batch_size)
            out[start:start + len(part)] = knn_scores(q, self.bank, self.bank_labels, self.k, self.index)
            if progress is not None:
                progress(len(part))
        return out


    def __repr__(self) -> str:
        return (f"KnnHead(head={self.spec.head!r}, labels={len(self.spec.labels)}, bank={self.bank.shape}, "
                f"k={self.k}, encoder={self.encoder.kind!r}, version={self.spec.version!r})")


def read_bank(d: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(bank (m, d) float32, bank_labels (m, L) uint8) from <d>/model.safetensors."""
    from safetensors.numpy import load_file

    arrays = load_file(str(Path(d) / WEIGHTS))
    return arrays["bank"].astype(np.float32), arrays["bank_labels"].astype(np.uint8)


def load_knn(d: str | os.PathLike, spec: HeadSpec, shapes: dict, device: str | None = None) -> KnnHead:
    """The KnnHead of artifact directory `d` with sidecar `spec` and safetensors header `shapes`
    (spec.check_weights). Raises ArtifactError for a bank that disagrees with the labels or k, a
    missing or unloadable encoder, or an embedding size other than the bank's; ImportError when
    faiss is not installed."""
    d = Path(d)
    _, dim = validate_knn(d, spec, shapes)
    block = spec.extra["knn"]
    encoder = Encoder.load(d / block["encoder"], block["encoder_kind"], spec.max_length, device)
    if encoder.dim() != dim:
        raise ArtifactError(d, WEIGHTS, f"the bank has {dim}-dimensional rows but the encoder gives {encoder.dim()}",
                            "rebuild the bank with this encoder (`tagger knn-build`)", key="bank")
    bank, bank_labels = read_bank(d)
    return KnnHead(spec, encoder, bank, bank_labels, path=str(d))


# -- building and growing a bank ------------------------------------------------------------------------

def _staging(out_dir: Path) -> Path:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not empty. Fix: give a new directory for the head "
                              "(a knn head is never changed in place, so the old version stays usable)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))


def _publish(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked in _staging)
    os.replace(staging, out_dir)


def _write(staging: Path, bank: np.ndarray, bank_labels: np.ndarray) -> Path:
    from safetensors.numpy import save_file

    weights = staging / WEIGHTS
    save_file({"bank": np.ascontiguousarray(bank, dtype=np.float32),
               "bank_labels": np.ascontiguousarray(bank_labels, dtype=np.uint8)}, str(weights))
    return weights


def _finish(staging: Path, spec: HeadSpec, out: Path) -> HeadSpec:
    """Write the sidecar into `staging`, validate the whole head, then move it to `out`; on any
    error the staging folder is removed and `out` is left as it was."""
    try:
        write_spec(staging, spec)
        validate_knn(staging, spec, check_weights(staging))
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return spec


def _bank_block(bank_labels: np.ndarray, labels: Sequence[str], sources: list[dict]) -> dict:
    return {"examples": int(bank_labels.shape[0]),
            "positives": {lab: int(c) for lab, c in zip(labels, bank_labels.sum(axis=0).tolist())},
            "sources": sources}


def build_knn_head(out_dir: str | os.PathLike, encoder_dir: str | os.PathLike, texts: Sequence[str],
                   label_lists: Sequence[Sequence[str]], labels: Sequence[str], *, k: int = DEFAULT_K,
                   head: str | None = None, max_length: int | None = None, batch_size: int = 64,
                   device: str | None = None, source: str | None = None) -> HeadSpec:
    """Write a new knn head to `out_dir` (which must not exist or be empty): copy `encoder_dir` to
    <out_dir>/encoder, embed `texts` (n strings) with it, and store them as the bank with their
    labels (`label_lists`, names outside `labels` ignored). Thresholds start at 0.5; run
    `tagger calibrate` next. `max_length`: tokens (hf) or chars (head) read per text. `source`: the
    data file's name, recorded in the sidecar. Returns the written HeadSpec. Raises ArtifactError for
    an unusable encoder or a bank smaller than k, ValueError for bad labels or k, FileExistsError
    for a non-empty `out_dir`; the directory appears only when everything is written."""
    from .metrics import binarize

    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError("labels must be a non-empty list of distinct names")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if len(texts) != len(label_lists):
        raise ValueError(f"{len(texts)} texts but {len(label_lists)} label lists")
    if len(texts) < k:
        raise ValueError(f"the bank would hold {len(texts)} examples, fewer than k={k}. Fix: give at least k "
                         "labelled examples or a smaller --k")
    out = Path(out_dir)
    kind = encoder_kind(encoder_dir)
    staging = _staging(out)
    try:
        shutil.copytree(encoder_dir, staging / ENCODER_DIR)
        encoder = Encoder.load(staging / ENCODER_DIR, kind, max_length, device)
        bank = encoder.embed(list(texts), batch_size=batch_size)
        bank_labels = binarize(label_lists, labels)
        weights = _write(staging, bank, bank_labels)
        name = head or out.name
        spec = HeadSpec(head=name, arch="knn", labels=labels, thresholds=[0.5] * len(labels),
                        enabled=[True] * len(labels), max_length=encoder.max_length,
                        version=weights_version(name, weights),
                        extra={"knn": {"k": int(k), "weighting": "relu", "encoder": ENCODER_DIR, "encoder_kind": kind},
                               "bank": _bank_block(bank_labels, labels, [{"file": source, "examples": len(texts)}])})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _finish(staging, spec, out)


def add_examples(src_dir: str | os.PathLike, out_dir: str | os.PathLike, texts: Sequence[str],
                 label_lists: Sequence[Sequence[str]], *, batch_size: int = 64, device: str | None = None,
                 source: str | None = None) -> HeadSpec:
    """Write a NEW knn head to `out_dir` (must not exist or be empty): the head in `src_dir` with
    `texts` and their labels appended to its bank. No training: the encoder, k, thresholds and
    switches are copied (recalibrate when the bank changes much); the version string and the bank's
    bytes are new, so the job's model version is new. Returns the new HeadSpec. Raises ArtifactError
    when `src_dir` is not a usable knn head, ValueError when a label is not one of the head's (adding
    a label means building a new head) or the counts differ, FileExistsError for a non-empty
    `out_dir` (the source is never changed)."""
    from .loading import load_head
    from .metrics import binarize

    src = Path(src_dir)
    spec = read_spec(src)
    if spec.arch != "knn":
        raise ArtifactError(src, SIDECAR, f"is a {spec.arch} head; examples can only be added to a knn head",
                            "build a knn head first (`tagger knn-build`)", key="arch")
    if len(texts) != len(label_lists):
        raise ValueError(f"{len(texts)} texts but {len(label_lists)} label lists")
    known = set(spec.labels)
    unknown = sorted({lab for row in label_lists for lab in (row or []) if lab not in known})
    if unknown:
        raise ValueError(f"labels {unknown} are not labels of the head {src} ({len(spec.labels)} labels). Fix: drop "
                         "them, or build a new head with `tagger knn-build` over the full label list")
    head = load_head(src, device=device)
    out = Path(out_dir)
    if out.resolve() == src.resolve():
        raise FileExistsError(f"{out} is the source head. Fix: write the grown bank to a new directory")
    new = head.encoder.embed(list(texts), batch_size=batch_size)
    bank = np.concatenate([head.bank, new], axis=0)
    bank_labels = np.concatenate([head.bank_labels, binarize(label_lists, spec.labels)], axis=0)
    staging = _staging(out)
    try:
        for p in src.iterdir():  # the sidecar and the encoder; evaluate's reports stay with the old version
            if p.name == ENCODER_DIR or p.name == SIDECAR:
                (shutil.copytree if p.is_dir() else shutil.copy2)(p, staging / p.name)
        weights = _write(staging, bank, bank_labels)
        old_sources = (spec.extra.get("bank") or {}).get("sources", [])
        extra = {**spec.extra, "bank": _bank_block(bank_labels, spec.labels,
                                                   old_sources + [{"file": source, "examples": len(texts)}]),
                 "grown_from": spec.version}
        new_spec = HeadSpec(head=spec.head, arch="knn", labels=list(spec.labels), thresholds=list(spec.thresholds),
                            enabled=list(spec.enabled), max_length=spec.max_length,
                            version=weights_version(spec.head, weights), extra=extra)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _finish(staging, new_spec, out)
