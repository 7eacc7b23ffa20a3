"""Head artifacts: a directory with `tagger_head.json` (sidecar), `model.safetensors` and the
tokenizer files, and the batched inference fast path.

Layout
------
textcnn: tagger_head.json, model.safetensors (safetensors.torch.save_file), vocab.txt (chars)
bert:    tagger_head.json + a plain Hugging Face `save_pretrained` directory (config.json,
         model.safetensors, tokenizer.json/tokenizer_config.json/vocab.txt)
A foreign HF sequence-classification directory without a sidecar loads as-is (labels from
config.id2label, thresholds 0.5, max_length from the tokenizer, capped at 512).

Weights are only read from `model.safetensors`; pickle-based files (pytorch_model.bin, *.pt,
*.pkl, ...) are refused.

Decisions
---------
One function, `decide(scores, spec)` (and `LoadedHead.decide`), turns scores into labels for the
job (udfs/tagging.py), `tagger evaluate` and `tagger calibrate` alike:

1. scores are rounded to SCORE_DECIMALS (4) decimals (`round_scores`; the job writes these scores);
2. a label passes when its rounded score >= its threshold and it is enabled;
3. the optional per-head `decision` block of the sidecar is applied (DECISION_HELP below).

A label switched off (`enabled: false`) is never emitted, whatever the decision block says.
`HeadSpec.decision_digest()` is a short sha256 of labels, thresholds, enabled and the decision
block; the job puts it in the model version, so the run id, the `model_version` column and the
worker cache key change when (and only when) these change.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .tokenization import CharVocab, encode_with_tokenizer, normalize_texts

FORMAT_VERSION = 1
SIDECAR = "tagger_head.json"
WEIGHTS = "model.safetensors"
VOCAB = "vocab.txt"
ARCHS = ("textcnn", "bert", "ensemble")  # ensemble: see models/ensemble.py
MAX_HF_LENGTH = 512
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
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
_CORE_KEYS = ("format_version", "head", "arch", "labels", "thresholds", "enabled", "max_length", "version")
_SAFE_FIX = ("re-save the model with model.save_pretrained(dir, safe_serialization=True) "
             "(or safetensors.torch.save_file(state_dict, 'model.safetensors'))")


class ArtifactError(ValueError):
    """A head artifact directory is missing, incomplete, inconsistent or unsafe to load.

    The message names the directory, the file, the key (when one is at fault) and the fix;
    the same pieces are available as attributes."""

    def __init__(self, directory, file: str | None, problem: str, fix: str, key: str | None = None):
        self.directory = str(directory)
        self.file = file
        self.key = key
        self.fix = fix
        where = self.directory if not file else os.path.join(self.directory, file)
        what = f" key '{key}'" if key else ""
        super().__init__(f"head artifact {where}{what}: {problem}. Fix: {fix}")


@dataclass
class HeadSpec:
    """What tagger_head.json holds. `extra` carries every other sidecar key (trained_on,
    metrics, textcnn hyperparameters, ...)."""

    head: str
    arch: str
    labels: list[str]
    thresholds: list[float]
    enabled: list[bool]
    max_length: int
    version: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {
            "format_version": FORMAT_VERSION,
            "head": self.head,
            "arch": self.arch,
            "labels": list(self.labels),
            "thresholds": [float(t) for t in self.thresholds],
            "enabled": [bool(e) for e in self.enabled],
            "max_length": int(self.max_length),
            "version": self.version,
        }
        for k, v in (self.extra or {}).items():
            if k not in _CORE_KEYS:
                d[k] = v
        return d

    @classmethod
    def from_dict(cls, d: dict, directory="<memory>", file: str = SIDECAR) -> "HeadSpec":
        if not isinstance(d, dict):
            raise ArtifactError(directory, file, "top level is not a JSON object",
                                "rewrite the sidecar with models.artifact.write_spec")
        fv = d.get("format_version", FORMAT_VERSION)
        if fv != FORMAT_VERSION:
            raise ArtifactError(directory, file, f"unsupported format_version {fv!r} (this code reads "
                                f"{FORMAT_VERSION})", "upgrade the tagger package or re-export the head",
                                key="format_version")
        for key in ("head", "arch", "labels", "thresholds", "max_length"):
            if key not in d:
                raise ArtifactError(directory, file, "required key is missing",
                                    f"add '{key}' (see models.artifact.HeadSpec) or retrain the head", key=key)
        labels = d["labels"]
        spec = cls(
            head=d["head"],
            arch=d["arch"],
            labels=list(labels) if isinstance(labels, list) else labels,
            thresholds=d["thresholds"],
            enabled=d["enabled"] if "enabled" in d else (
                [True] * len(labels) if isinstance(labels, list) else None),
            max_length=d["max_length"],
            version=d.get("version", "unknown"),
            extra={k: v for k, v in d.items() if k not in _CORE_KEYS},
        )
        spec.validate(directory, file)
        return spec

    def validate(self, directory="<memory>", file: str = SIDECAR) -> None:
        def bad(key, problem, fix):
            raise ArtifactError(directory, file, problem, fix, key=key)

        if not isinstance(self.head, str) or not self.head:
            bad("head", f"must be a non-empty string, got {self.head!r}", "set the head name")
        if self.arch not in ARCHS:
            bad("arch", f"must be one of {list(ARCHS)}, got {self.arch!r}", "set the architecture the weights were trained with")
        if (not isinstance(self.labels, list) or not self.labels
                or not all(isinstance(x, str) and x for x in self.labels)):
            bad("labels", "must be a non-empty list of non-empty strings", "list the label names in output order")
        if len(set(self.labels)) != len(self.labels):
            bad("labels", "has duplicate names", "list each label once, in output order")
        L = len(self.labels)
        if not isinstance(self.thresholds, list) or len(self.thresholds) != L:
            bad("thresholds", f"must be a list of {L} numbers (one per label)",
                "write one threshold in [0, 1] per label")
        for i, t in enumerate(self.thresholds):
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.0 <= t <= 1.0:
                bad("thresholds", f"thresholds[{i}] ({self.labels[i]}) = {t!r} is outside [0, 1]",
                    "use a probability threshold in [0, 1] for every label")
        if not isinstance(self.enabled, list) or len(self.enabled) != L or not all(isinstance(e, bool) for e in self.enabled):
            bad("enabled", f"must be a list of {L} booleans (one per label)", "write true/false per label")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1:
            bad("max_length", f"must be a positive integer, got {self.max_length!r}", "set the tokenizer truncation length")
        if not isinstance(self.version, str):
            bad("version", f"must be a string, got {self.version!r}", "set a version string")
        if not isinstance(self.extra, dict):
            bad("extra", "must be a dict", "pass a dict")
        _validate_decision(self.extra.get("decision"), L, bad)
        reasons = self.extra.get("disabled_reasons")
        if reasons is not None and (not isinstance(reasons, dict)
                                    or not all(isinstance(k, str) and isinstance(v, str) for k, v in reasons.items())):
            bad("disabled_reasons", "must be an object of label -> reason text",
                "write {\"label\": \"why it is switched off\"} or drop the key (tagger calibrate writes it)")

    @property
    def decision(self) -> dict:
        """The decision block with its defaults filled in: {top_k, min_labels, max_labels}."""
        return normalize_decision(self.extra.get("decision"))

    def decision_digest(self) -> str:
        """Short sha256 (10 hex) of what decides the emitted labels besides the weights: labels,
        thresholds, enabled flags and the decision block (defaults filled in, so an explicit
        default block digests like no block)."""
        payload = json.dumps([list(self.labels), [float(t) for t in self.thresholds],
                              [bool(e) for e in self.enabled], self.decision],
                             sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:10]


# -- decisions (see the module docstring and DECISION_HELP) -----------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _validate_decision(block, n_labels: int, bad) -> None:
    if block is None:
        return
    fix = ("write \"decision\": {\"top_k\": null, \"min_labels\": 0, \"max_labels\": null} with integers "
           f"between 1 and {n_labels} (the number of labels); see models.artifact.DECISION_HELP")
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


def decide(scores, spec: HeadSpec) -> np.ndarray:
    """Boolean (n, L) decisions from (n, L) scores: rounded scores >= thresholds, enabled labels
    only, then the spec's decision block (top_k / min_labels / max_labels, see DECISION_HELP)."""
    s = round_scores(scores)
    L = len(spec.labels)
    if s.ndim != 2 or s.shape[1] != L:
        raise ValueError(f"scores must have shape (n, {L}) for head {spec.head!r}, got {s.shape}")
    enabled = np.asarray(spec.enabled, dtype=bool)[None, :]
    hit = (s >= np.asarray(spec.thresholds, dtype=np.float64)[None, :]) & enabled
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


def artifact_version(path: str | os.PathLike, spec: HeadSpec | None = None) -> str:
    """"<version>@<digest>": what the job records as a head's model version. The digest covers the
    thresholds, switches and decision block, and for an ensemble its members' as well, so a
    recalibrated head (or member) is a new model version."""
    spec = spec or read_spec(path)
    digest = spec.decision_digest()
    if spec.arch == "ensemble":
        from .ensemble import member_dirs, validate_ensemble

        directory = _dir_and_sidecar(path)[0]
        validate_ensemble(directory, spec)  # at job start, not later on a Spark worker
        parts = [digest, str(spec.extra.get("combine"))] + [
            f"{m}={artifact_version(m)}" for m in member_dirs(directory, spec)]
        digest = hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:10]
    return f"{spec.version}@{digest}"


def _dir_and_sidecar(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.name == SIDECAR and not p.is_dir():
        return p.parent, p
    return p, p / SIDECAR


def write_spec(path: str | os.PathLike, spec: HeadSpec) -> None:
    """Validate and write `spec` to <path>/tagger_head.json (or to `path` if it names the file),
    atomically (temp file + rename)."""
    directory, file = _dir_and_sidecar(path)
    spec.validate(directory, SIDECAR)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(spec.to_dict(), f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, file)


def read_spec(path: str | os.PathLike) -> HeadSpec:
    """Cheap validation at job start: reads the sidecar only (no weights). A directory without
    a sidecar is read as a foreign Hugging Face checkpoint from config.json (+ tokenizer_config)."""
    directory, file = _dir_and_sidecar(path)
    if not directory.is_dir():
        raise ArtifactError(directory, None, "directory does not exist",
                            "point the job at a head directory written by models.training.train_head")
    if not file.is_file():
        if (directory / "config.json").is_file():
            return _foreign_spec(directory)
        raise ArtifactError(directory, SIDECAR, "no sidecar and no config.json",
                            "train/export the head with models.training.train_head, or point at a "
                            "Hugging Face sequence-classification directory")
    try:
        with open(file, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(directory, SIDECAR, f"unreadable JSON ({e})",
                            "re-copy the artifact or rewrite the sidecar with models.artifact.write_spec") from None
    if isinstance(d, dict) and (directory / "config.json").is_file() and "arch" not in d:
        d = _small_sidecar(directory, d)
    return HeadSpec.from_dict(d, directory, SIDECAR)


SMALL_SIDECAR_KEYS = {"head", "label_map", "labels", "thresholds", "enabled", "decision", "disabled_reasons",
                      "max_length", "version"}


def _small_sidecar(directory: Path, d: dict) -> dict:
    """A hand-written sidecar next to a Hugging Face checkpoint may hold only what the checkpoint
    lacks: `label_map` ({config.id2label name: tag label}) or `labels` (tag labels in output
    order), and `thresholds`; the rest comes from config.json as for a checkpoint without one."""
    unknown = sorted(set(d) - SMALL_SIDECAR_KEYS)
    if unknown:
        raise ArtifactError(directory, SIDECAR, f"unknown keys {unknown} in a sidecar next to a Hugging Face "
                            f"checkpoint (known: {sorted(SMALL_SIDECAR_KEYS)})",
                            "fix the spelling (e.g. 'thresholds'), or write a full sidecar with \"arch\"")
    base = _foreign_spec(directory).to_dict()
    label_map = d.get("label_map")
    if label_map is not None:
        if not isinstance(label_map, dict) or "labels" in d:
            raise ArtifactError(directory, SIDECAR, "label_map must be an object {id2label name: tag label} "
                                "and cannot be combined with labels", "keep one of label_map or labels",
                                key="label_map")
        unmapped = [name for name in base["labels"] if name not in label_map]
        if unmapped:
            raise ArtifactError(directory, SIDECAR, f"label_map has no entry for {unmapped} (config.json "
                                f"id2label: {base['labels']})", "map every output of the model to a tag label",
                                key="label_map")
        d = {**d, "labels": [label_map[name] for name in base["labels"]]}
    return {**base, **d}


def _foreign_spec(directory: Path) -> HeadSpec:
    from transformers import AutoConfig

    from .bert_head import config_labels, output_mode

    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        mode = output_mode(config)
    except Exception as e:  # noqa: BLE001 - surface as an artifact problem
        raise ArtifactError(directory, "config.json", f"not a usable sequence-classification config ({e})",
                            "export the fine-tuned model with save_pretrained") from None
    labels = config_labels(config)
    if len(set(labels)) != len(labels):
        raise ArtifactError(directory, "config.json", f"id2label has duplicate names {labels}",
                            "give each class a distinct name in config.id2label", key="id2label")
    max_length = MAX_HF_LENGTH
    tok_cfg = directory / "tokenizer_config.json"
    if tok_cfg.is_file():
        try:
            mml = json.loads(tok_cfg.read_text(encoding="utf-8")).get("model_max_length")
            if isinstance(mml, (int, float)) and 0 < mml:
                max_length = int(min(mml, MAX_HF_LENGTH))
        except (OSError, ValueError):
            pass
    max_length = min(max_length, _position_cap(config))
    digest = hashlib.sha256((directory / "config.json").read_bytes()).hexdigest()[:8]
    return HeadSpec(
        head=directory.name or "hf-head",
        arch="bert",
        labels=labels,
        thresholds=[0.5] * len(labels),
        enabled=[True] * len(labels),
        max_length=max_length,
        version=f"{directory.name}-hf-{digest}",
        extra={"source": "huggingface", "output_mode": mode,
               "model_type": getattr(config, "model_type", None)},
    )


def _position_cap(config) -> int:
    mpe = getattr(config, "max_position_embeddings", None)
    if not isinstance(mpe, int) or mpe <= 0:
        return MAX_HF_LENGTH
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        mpe -= (getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after padding_idx
    return max(1, mpe)


def weights_version(head: str, weights_file: str | os.PathLike, when: datetime | None = None) -> str:
    """"<head>-<UTC timestamp>-<first 8 hex of sha256(model.safetensors)>"."""
    h = hashlib.sha256()
    with open(weights_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    ts = (when or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{head}-{ts}-{h.hexdigest()[:8]}"


def check_weights(directory: str | os.PathLike) -> dict[str, list[int]]:
    """Refuse pickle / missing / truncated weights; return {tensor name: shape} from the
    safetensors header (no tensor data is read)."""
    d = Path(directory)
    w = d / WEIGHTS
    if not w.is_file():
        pickles = sorted(p.name for p in d.iterdir() if p.is_file() and p.suffix.lower() in _PICKLE_SUFFIXES) \
            if d.is_dir() else []
        if pickles:
            raise ArtifactError(d, pickles[0], f"refusing pickle-based weights (found {', '.join(pickles)}, "
                                f"no {WEIGHTS}); pickle can run code when loaded, only safetensors is accepted",
                                f"{_SAFE_FIX} so the directory holds {WEIGHTS}, then remove {pickles[0]}")
        if (d / f"{WEIGHTS}.index.json").is_file():
            raise ArtifactError(d, f"{WEIGHTS}.index.json", "sharded weights are not supported",
                                f"re-save with save_pretrained(dir, max_shard_size='10GB') to get one {WEIGHTS}")
        raise ArtifactError(d, WEIGHTS, "weights file is missing",
                            "copy the complete artifact directory (training writes model.safetensors) or "
                            + _SAFE_FIX)
    from safetensors import safe_open

    try:
        with safe_open(str(w), framework="pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError and OS errors alike
        raise ArtifactError(d, WEIGHTS, f"unreadable or truncated safetensors file ({e})",
                            "re-copy the artifact directory from its source (the copy is incomplete) or re-export "
                            "the head") from None
    if not shapes:
        raise ArtifactError(d, WEIGHTS, "contains no tensors", "re-export the head")
    return shapes


def _default_device(device) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class LoadedHead:
    """A head ready for batched inference. Build with `load_head` (or get the in-memory one
    from `models.training.train_head(...).head`)."""

    def __init__(self, spec: HeadSpec, model: torch.nn.Module, device: torch.device, *,
                 vocab: CharVocab | None = None, tokenizer=None, output: str = "sigmoid",
                 path: str | None = None):
        if spec.arch == "textcnn" and vocab is None:
            raise ValueError("textcnn head needs a CharVocab")
        if spec.arch == "bert" and tokenizer is None:
            raise ValueError("bert head needs a tokenizer")
        self.spec = spec
        self.model = model
        self.device = torch.device(device)
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.output = output
        self.path = path
        self.max_length = int(spec.max_length)

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize the whole list at once: (ids (n, W) padded, lengths (n,))."""
        if self.spec.arch == "textcnn":
            return self.vocab.encode(texts, self.max_length, min_width=self.model.min_width)
        return encode_with_tokenizer(self.tokenizer, texts, self.max_length)

    def _logits(self, ids: torch.Tensor, lengths: torch.Tensor, tables) -> torch.Tensor:
        if self.spec.arch == "textcnn":
            return self.model(ids, lengths, tables)
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).long()
        return self.model(input_ids=ids, attention_mask=mask).logits

    def _to_proba(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.output == "softmax1":
            return torch.softmax(logits, dim=-1)[:, 1:2]
        if self.output == "softmax":
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)

    def _autocast(self):
        if self.device.type == "cuda" and self.spec.arch == "bert":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    # -- inference --------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), len(labels)) float32 probabilities, rows in input order.

        Whole-list tokenization, length-sorted mini-batches padded to their own longest row
        (capped at max_length), inference_mode, bf16 autocast on CUDA (BERT). None/NaN texts
        score as empty strings."""
        texts = normalize_texts(texts)
        n, L = len(texts), len(self.spec.labels)
        out = np.zeros((n, L), dtype=np.float32)
        if n == 0:
            return out
        batch_size = max(1, int(batch_size))
        ids, lengths = self.encode(texts)
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peak shows up at once
        min_width = self.model.min_width if self.spec.arch == "textcnn" else 1
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), self._autocast():
                tables = None
                if self.spec.arch == "textcnn" and int(lengths.sum()) >= 2 * len(self.vocab):
                    # whole-vocab gather tables pay off once the call has more tokens than the
                    # vocab; small calls build per-batch tables from the ids they contain
                    tables = self.model.precompute_tables()
                for start in range(0, n, batch_size):
                    idx = order[start:start + batch_size]
                    width = max(int(lengths[idx[0]]), min_width)
                    x = torch.from_numpy(np.ascontiguousarray(ids[idx, :width])).to(self.device, torch.long)
                    lens = torch.from_numpy(lengths[idx]).to(self.device)
                    proba = self._to_proba(self._logits(x, lens, tables))
                    out[idx] = proba.cpu().numpy()
        finally:
            if was_training:
                self.model.train()
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def decide(self, proba) -> np.ndarray:
        """Boolean (n, L) decisions from this head's scores: `decide(proba, self.spec)` (rounded
        scores vs thresholds, enabled labels only, then the sidecar's decision block)."""
        return decide(proba, self.spec)

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Boolean (n, L) decisions for texts: `self.decide(self.predict_proba(texts))`."""
        return self.decide(self.predict_proba(texts, batch_size=batch_size))

    def __repr__(self) -> str:
        return (f"LoadedHead(head={self.spec.head!r}, arch={self.spec.arch!r}, labels={len(self.spec.labels)}, "
                f"version={self.spec.version!r}, device={self.device})")


def load_head(path: str | os.PathLike, device: str | None = None) -> LoadedHead:
    """Load a head directory for inference (device None: cuda if available, else cpu)."""
    d = Path(path)
    if not d.is_dir():
        raise ArtifactError(d, None, "directory does not exist",
                            "point at a head directory written by models.training.train_head")
    spec = read_spec(d)
    if spec.arch == "ensemble":  # no weights of its own: its members are heads
        from .ensemble import load_ensemble

        return load_ensemble(d, spec, device=device)
    shapes = check_weights(d)
    dev = _default_device(device)
    if spec.arch == "textcnn":
        return _load_textcnn(d, spec, shapes, dev)
    return _load_bert(d, spec, shapes, dev)


def _load_textcnn(d: Path, spec: HeadSpec, shapes: dict, device: torch.device) -> LoadedHead:
    from safetensors.torch import load_file

    from .textcnn import DEFAULT_HPARAMS, build_textcnn

    hp = {**DEFAULT_HPARAMS, **(spec.extra.get("textcnn") or {})}
    if not (d / VOCAB).is_file():
        raise ArtifactError(d, VOCAB, "char vocabulary is missing",
                            "copy the complete artifact directory (training writes vocab.txt next to the weights)")
    try:
        vocab = CharVocab.load(d / VOCAB, lowercase=bool(hp.get("lowercase", True)))
    except (OSError, ValueError) as e:
        raise ArtifactError(d, VOCAB, f"invalid char vocabulary ({e})", "re-copy or retrain the head") from None
    L = len(spec.labels)
    fc = shapes.get("fc.weight")
    emb = shapes.get("embedding.weight")
    if fc is None or emb is None:
        raise ArtifactError(d, WEIGHTS, f"not TextCNN weights (tensors: {sorted(shapes)[:6]}...)",
                            "check the sidecar 'arch' matches the weights, or retrain the head", key="fc.weight")
    if fc[0] != L:
        raise ArtifactError(d, SIDECAR, f"lists {L} labels but {WEIGHTS} fc.weight has {fc[0]} outputs",
                            "use the sidecar that was written with these weights (labels must match the "
                            "model's outputs, in order) or retrain", key="labels")
    if emb[0] != len(vocab):
        raise ArtifactError(d, VOCAB, f"has {len(vocab)} entries but {WEIGHTS} embedding.weight has {emb[0]} rows",
                            "use the vocab.txt that was written with these weights", key="embedding.weight")
    model = build_textcnn(len(vocab), L, hp)
    try:
        state = load_file(str(d / WEIGHTS))
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(d, WEIGHTS, f"weights do not fit the TextCNN hyperparameters in {SIDECAR} ({e})",
                            "use the sidecar written with these weights (key 'textcnn') or retrain",
                            key="textcnn") from None
    model.to(device).eval()
    return LoadedHead(spec, model, device, vocab=vocab, path=str(d))


def _load_bert(d: Path, spec: HeadSpec, shapes: dict, device: torch.device) -> LoadedHead:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from .bert_head import n_outputs, output_mode

    if not (d / "config.json").is_file():
        raise ArtifactError(d, "config.json", "missing (a bert head is a Hugging Face save_pretrained directory)",
                            "save the model with model.save_pretrained(dir, safe_serialization=True)")
    try:
        config = AutoConfig.from_pretrained(str(d), local_files_only=True)
        mode = output_mode(config)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(d, "config.json", f"not a usable sequence-classification config ({e})",
                            "export the fine-tuned model with save_pretrained") from None
    L = len(spec.labels)
    if n_outputs(config) != L:
        raise ArtifactError(d, SIDECAR, f"lists {L} labels but config.json/{WEIGHTS} has {config.num_labels} "
                            f"outputs ({mode})", "use the sidecar written with these weights (labels must "
                            "match the model's outputs, in order) or retrain", key="labels")
    cls_keys = [k for k in shapes if k.endswith("classifier.weight") or k.endswith("classifier.out_proj.weight")]
    if cls_keys and shapes[cls_keys[0]][0] != int(config.num_labels):
        raise ArtifactError(d, WEIGHTS, f"{cls_keys[0]} has {shapes[cls_keys[0]][0]} outputs but config.json "
                            f"says num_labels={config.num_labels}", "re-export config and weights together "
                            "with save_pretrained", key=cls_keys[0])
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per worker is noise in the job's log
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(d), use_safetensors=True,
                                                                   local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(d, WEIGHTS, f"could not load the weights ({type(e).__name__}: {e})",
                            "re-export with model.save_pretrained(dir, safe_serialization=True)") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(d, "tokenizer_config.json", f"could not load the tokenizer ({type(e).__name__}: {e})",
                            "save the tokenizer next to the model with tokenizer.save_pretrained(dir)") from None
    max_length = min(int(spec.max_length), _position_cap(config))
    if max_length != spec.max_length:
        spec = HeadSpec(**{**spec.__dict__, "max_length": max_length})
    model.to(device).eval()
    return LoadedHead(spec, model, device, tokenizer=tokenizer, output=mode, path=str(d))
