"""The head artifact format: a directory with `tagger_head.json` (the sidecar), `model.safetensors`
and the tokenizer files. This module reads, validates and writes sidecars and checks weights
without loading them (no torch), so the driver can check every head at job start.

Layout
------
textcnn:  tagger_head.json, model.safetensors (safetensors.torch.save_file), vocab.txt (chars) or,
          reading words, word_vocab.json (models/words.py UnitVocab)
bert:     tagger_head.json + a plain Hugging Face `save_pretrained` directory (config.json,
          model.safetensors, tokenizer.json/tokenizer_config.json/vocab.txt)
linear:   tagger_head.json, model.safetensors (coef, intercept, idf), linear_vocab.json (models/linear.py)
ensemble: tagger_head.json only, with `combine` and `members` (see models/ensemble.py)
knn:      tagger_head.json (the `knn` block: k, weighting, encoder, encoder_kind), model.safetensors
          (bank (n, d) float32 unit rows, bank_labels (n, L) uint8), encoder/ (an HF encoder
          checkpoint or a project textcnn/bert head; models/knn.py)
causal-lm: tagger_head.json with `prompt`, `verbalizers`, `mode` (see models/causal_lm.py) next to
          a Hugging Face causal-LM `save_pretrained` directory (the head directory itself, or the
          sub-directory named by `checkpoint`; model.safetensors or safetensors shards + tokenizer),
          and optionally a PEFT LoRA adapter directory named by `peft` (adapter_config.json,
          adapter_model.safetensors)
A head that reads words (textcnn or linear, `text.tokenizer` word | char+word) also carries the team
dictionary, dictionary.txt (models/words.py).
A textcnn or bert head may carry model.onnx (`tagger export-onnx`) and the sidecar key
`"runtime": "onnx"`: it is then scored with onnxruntime (models/onnx_runtime.py); absent = torch.
A foreign HF sequence-classification directory without a sidecar loads as-is (labels from
config.id2label, thresholds 0.5, max_length from the tokenizer, capped at 512).

Weights are only read from `model.safetensors`; pickle-based files (pytorch_model.bin, *.pt,
*.pkl, ...) are refused.

`HeadSpec.decision_digest()` is a short sha256 of labels, thresholds, enabled and the decision
block; the job puts it in the model version (`artifact_version`), so the run id, the
`model_version` column and the worker cache key change when (and only when) these change.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .decision import normalize_decision, validate_decision

FORMAT_VERSION = 1
SIDECAR = "tagger_head.json"
WEIGHTS = "model.safetensors"
VOCAB = "vocab.txt"
ARCHS = ("textcnn", "bert", "linear", "ensemble", "knn", "causal-lm")  # linear: models/linear.py;
# ensemble: models/ensemble.py; knn: models/knn.py; causal-lm: models/causal_lm.py (an LLM scored by
# label likelihood)
# Files besides the weights that decide a head's scores: their bytes are in the model version too.
SCORING_FILES = ("linear_vocab.json", "word_vocab.json", "dictionary.txt")
KNN_WEIGHTINGS = ("relu",)  # a kNN head's neighbour weights: w = max(cosine, 0) (models/knn.py)
KNN_ENCODER_KINDS = ("hf", "head")  # encoder/: a Hugging Face encoder checkpoint, or a project textcnn head
COMBINE = ("intersection", "union", "mean")  # how an ensemble combines its members' scores
ONNX_FILE = "model.onnx"  # the forward pass as an ONNX graph (models/onnx_runtime.py)
RUNTIMES = ("torch", "onnx")  # the sidecar's optional "runtime" key; absent = torch
ONNX_ARCHS = ("textcnn", "bert")  # the archs with an ONNX export
MAX_HF_LENGTH = 512
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
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
        """The sidecar's JSON object: format_version, the core fields (thresholds as floats, enabled
        as bools, max_length as int), then every `extra` key that is not a core key. Not validated."""
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
        """A validated HeadSpec from a parsed sidecar `d` (enabled defaults to all true, version to
        'unknown'; other keys go to `extra`). `directory` and `file` only name the source in errors.
        Raises ArtifactError when `d` is not an object, has another format_version, lacks head,
        arch, labels, thresholds or max_length, or fails validate."""
        if not isinstance(d, dict):
            raise ArtifactError(directory, file, "top level is not a JSON object",
                                "rewrite the sidecar with tagger.models.spec.write_spec")
        fv = d.get("format_version", FORMAT_VERSION)
        if fv != FORMAT_VERSION:
            raise ArtifactError(directory, file, f"unsupported format_version {fv!r} (this code reads "
                                f"{FORMAT_VERSION})", "upgrade the tagger package or re-export the head",
                                key="format_version")
        for key in ("head", "arch", "labels", "thresholds", "max_length"):
            if key not in d:
                raise ArtifactError(directory, file, "required key is missing",
                                    f"add '{key}' (see tagger.models.spec.HeadSpec) or retrain the head", key=key)
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
        """Return None if the spec is usable; else raise ArtifactError naming `directory`/`file` and
        the key: empty head, unknown arch, labels not a non-empty list of distinct non-empty strings,
        thresholds not one number in [0, 1] per label, enabled not one bool per label, max_length
        not a positive int, version not a string, a bad decision block or disabled_reasons, a
        runtime other than torch/onnx (onnx on a linear, ensemble or knn head), a knn head's `knn`
        block not {k: int >= 1, weighting: relu, encoder: a relative directory, encoder_kind: hf|head}."""
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
        validate_decision(self.extra.get("decision"), L, bad)
        runtime = self.extra.get("runtime")
        if runtime is not None and runtime not in RUNTIMES:
            bad("runtime", f"must be one of {list(RUNTIMES)}, got {runtime!r}",
                "write \"runtime\": \"onnx\" (with model.onnx from tagger export-onnx) or drop the key (torch)")
        if runtime == "onnx" and self.arch not in ONNX_ARCHS:
            bad("runtime", f"\"onnx\" is for {list(ONNX_ARCHS)} heads, this one is {self.arch!r}",
                "drop the key: a linear head is numpy already, an ensemble takes its members' runtimes, a "
                "causal-lm head runs in torch")
        if self.arch == "causal-lm":
            validate_causal_lm(self, bad)
        if self.arch == "knn":
            _validate_knn_block(self.extra.get("knn"), bad)
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




def artifact_version(path: str | os.PathLike, spec: HeadSpec | None = None) -> str:
    """"<version>@<digest>": what the job records as a head's model version. The digest covers the
    thresholds, switches and decision block and the bytes of the weights file that will be loaded
    (weights_digest) and of the other files that decide scores (SCORING_FILES), for a knn head of
    every file of its encoder/ (encoder_digest; its bank is its model.safetensors, so a head with
    added examples is a new version), and for an ensemble its members' as well: a recalibrated head (or member), or
    a model.safetensors replaced in place, is a new model version, and a reused Python worker
    reloads it. A head on the onnx runtime adds "+onnx" and the digest of model.onnx. Raises
    ArtifactError for a missing weights file, or a missing model.onnx when the sidecar asks for it,
    or a knn head whose bank or encoder fails validate_knn. A causal-lm head's digest also covers its
    prompt, verbalizers, mode and answers (causal_lm_digest) and every file of its checkpoint and
    adapter that decides scores (causal_lm_files: weights or shards, config, tokenizer, adapter)."""
    spec = spec or read_spec(path)
    digest = spec.decision_digest()
    if spec.arch == "causal-lm":  # weights in a sub-directory, an adapter, and a prompt that decides scores
        directory = _dir_and_sidecar(path)[0]
        parts = [digest, causal_lm_digest(spec)] + [
            f"{name}={weights_digest(file)[:8]}" for name, file in causal_lm_files(directory, spec)]
        return f"{spec.version}@{hashlib.sha256('|'.join(parts).encode('utf-8')).hexdigest()[:10]}"
    if spec.arch != "ensemble":
        directory = _dir_and_sidecar(path)[0]
        if not (directory / WEIGHTS).is_file():
            check_weights(directory)  # raises the clear error (pickle, sharded, missing)
        digest = f"{digest}+{weights_digest(directory / WEIGHTS)[:8]}"
        for name in SCORING_FILES:  # a vocabulary or dictionary replaced in place is a new version too
            if (directory / name).is_file():
                digest = f"{digest}+{weights_digest(directory / name)[:8]}"
        if spec.arch == "knn":  # the bank is in model.safetensors (above); the encoder decides the embeddings
            validate_knn(directory, spec, check_weights(directory))  # at job start, not later on a worker
            digest = f"{digest}+enc{encoder_digest(directory / spec.extra['knn']['encoder'])[:8]}"
        if spec.extra.get("runtime") == "onnx":  # another backend is another model version (worker cache key)
            if not (directory / ONNX_FILE).is_file():
                raise ArtifactError(directory, ONNX_FILE, "the sidecar asks for \"runtime\": \"onnx\" but the file "
                                    "is missing", f"run `tagger export-onnx --model {directory}` (writes it), or drop "
                                    "\"runtime\" from the sidecar", key="runtime")
            digest = f"{digest}+onnx{weights_digest(directory / ONNX_FILE)[:8]}"
    if spec.arch == "ensemble":
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
    atomically (temp file + rename; the directory is created if missing), as indented UTF-8 JSON
    (HeadSpec.to_dict). Raises ArtifactError if the spec is invalid (nothing is written) and
    OSError if the directory or file cannot be written."""
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
    a sidecar is read as a foreign Hugging Face checkpoint from config.json (+ tokenizer_config).

    `path`: a head directory or its tagger_head.json. Returns the validated HeadSpec. Raises
    ArtifactError when the directory does not exist, has neither sidecar nor config.json, the
    sidecar is not readable UTF-8 JSON or fails HeadSpec.from_dict, a small sidecar next to a
    checkpoint has unknown keys or a bad label_map, or config.json is not a usable
    sequence-classification config (or has duplicate id2label names)."""
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
                            "re-copy the artifact or rewrite the sidecar with tagger.models.spec.write_spec") from None
    if isinstance(d, dict) and (directory / "config.json").is_file() and "arch" not in d:
        d = _small_sidecar(directory, d)
    return HeadSpec.from_dict(d, directory, SIDECAR)


SMALL_SIDECAR_KEYS = {"head", "label_map", "labels", "thresholds", "enabled", "decision", "disabled_reasons", "activation",
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
    activation = d.get("activation")
    if activation is not None and activation not in ("sigmoid", "softmax"):
        raise ArtifactError(directory, SIDECAR, f"activation is {activation!r}",
                            'write "activation": "sigmoid" (multi-label: one score per label) or "softmax" '
                            "(single-label: the scores sum to 1)", key="activation")
    base = _foreign_spec(directory, activation).to_dict()
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


class ScoringGuessWarning(UserWarning):
    """A checkpoint says neither problem_type nor (in its sidecar) activation: scored as
    transformers would (softmax over the labels), which is wrong for a multi-label model."""


def _foreign_spec(directory: Path, activation: str | None = None) -> HeadSpec:
    from transformers import AutoConfig

    from .bert_head import config_labels, output_mode, scoring_is_guessed

    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        mode = output_mode(config, activation)
    except Exception as e:  # noqa: BLE001 - surface as an artifact problem
        raise ArtifactError(directory, "config.json", f"not a usable sequence-classification config ({e})",
                            "export the fine-tuned model with save_pretrained") from None
    if scoring_is_guessed(config, activation):
        warnings.warn(f"head artifact {directory}: config.json has no problem_type and no sidecar says how to "
                      f"score its {config.num_labels} labels, so they are scored as transformers would: softmax "
                      f"over the labels (single-label{', a 1-label head' if int(config.num_labels) == 2 else ''}). "
                      f"If the model is multi-label, write \"activation\": \"sigmoid\" in {directory / SIDECAR} "
                      f"(or \"softmax\" to confirm and silence this warning).", ScoringGuessWarning, stacklevel=2)
    labels = config_labels(config, activation)
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
        extra={"source": "huggingface", "output_mode": mode, **({"activation": activation} if activation else {}),
               "model_type": getattr(config, "model_type", None)},
    )


def _position_cap(config) -> int:
    mpe = getattr(config, "max_position_embeddings", None)
    if not isinstance(mpe, int) or mpe <= 0:
        return MAX_HF_LENGTH
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        mpe -= (getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after padding_idx
    return max(1, mpe)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_digest(weights_file: str | os.PathLike) -> str:
    """sha256 (hex) of a weights file's bytes. Cached by (real path, size, mtime): in this process,
    and across runs in $TAGGER_DIGEST_CACHE (default ~/.cache/tagger/weights-sha256.json), so a
    large checkpoint is hashed once, not on every run. Raises OSError if the file is unreadable."""
    real = os.path.realpath(weights_file)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    cache_file = Path(os.environ.get("TAGGER_DIGEST_CACHE") or Path.home() / ".cache" / "tagger" / "weights-sha256.json")
    disk_key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
    try:
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    digest = cached.get(disk_key) if isinstance(cached, dict) else None
    if not isinstance(digest, str):
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        try:  # best effort: a read-only home only costs a re-hash next run
            cached = cached if isinstance(cached, dict) else {}
            cached[disk_key] = digest
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cached), encoding="utf-8")
            os.replace(tmp, cache_file)
        except OSError:
            pass
    _DIGESTS[key] = digest
    return digest


def weights_version(head: str, weights_file: str | os.PathLike, when: datetime | None = None) -> str:
    """"<head>-<UTC timestamp>-<first 8 hex of sha256(model.safetensors)>"."""
    ts = (when or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{head}-{ts}-{weights_digest(weights_file)[:8]}"


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


# -- ensembles: the sidecar of a head combined from member heads (models/ensemble.py) ----------

def member_dirs(directory: str | os.PathLike, spec: HeadSpec) -> list[Path]:
    """The member head directories of an ensemble spec (extra['members']), relative entries resolved
    against `directory`, in order; [] when there are none. Existence is not checked."""
    base = Path(directory)
    return [Path(m) if os.path.isabs(m) else base / m for m in spec.extra.get("members", [])]


def validate_ensemble(directory, spec: HeadSpec) -> list[HeadSpec]:
    """Check the ensemble block and that every member has the ensemble's labels, in order."""
    combine, members = spec.extra.get("combine"), spec.extra.get("members")
    if combine not in COMBINE:
        raise ArtifactError(directory, SIDECAR, f"combine is {combine!r}",
                            f"set combine to one of {list(COMBINE)}", key="combine")
    if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, str) and m for m in members):
        raise ArtifactError(directory, SIDECAR, "members must list at least two head directories",
                            "list the member directories (relative to the ensemble directory or absolute)",
                            key="members")
    specs = []
    for path in member_dirs(directory, spec):
        if Path(path).resolve() == Path(directory).resolve():
            raise ArtifactError(directory, SIDECAR, "the ensemble lists its own directory as a member",
                                "keep the members in their own directories (e.g. <ensemble>/members/<name>)",
                                key="members")
        member = read_spec(path)
        if member.arch == "ensemble":
            raise ArtifactError(path, SIDECAR, "an ensemble cannot be a member of another ensemble",
                                "list plain textcnn/bert/linear heads as members", key="arch")
        if member.decision != normalize_decision(None):
            raise ArtifactError(path, SIDECAR, "a member has a decision block (top_k / min_labels / "
                                "max_labels), which an ensemble cannot combine",
                                "remove it from the member and set it on the ensemble (tagger calibrate --top-k ...)",
                                key="decision")
        if member.labels != spec.labels:
            raise ArtifactError(directory, SIDECAR,
                                f"member {path} has labels {member.labels}, the ensemble has {spec.labels}",
                                "train the members on the same label file (same labels, same order)", key="members")
        specs.append(member)
    return specs


# -- kNN heads: an encoder plus a bank of labelled examples (models/knn.py) ---------------------

def _validate_knn_block(block, bad) -> None:
    """Check a knn sidecar's `knn` block; `bad(key, problem, fix)` raises."""
    if not isinstance(block, dict):
        bad("knn", "a knn head needs a `knn` object {k, weighting, encoder, encoder_kind}",
            "rebuild the head with `tagger knn-build` (it writes the block)")
    unknown = sorted(set(block) - {"k", "weighting", "encoder", "encoder_kind"})
    if unknown:
        bad("knn", f"unknown keys {unknown} (known: k, weighting, encoder, encoder_kind)", "fix the spelling or drop them")
    k = block.get("k")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        bad("knn", f"k must be an integer >= 1 (neighbours per item), got {k!r}", "write e.g. \"k\": 5")
    if block.get("weighting", "relu") not in KNN_WEIGHTINGS:
        bad("knn", f"weighting must be one of {list(KNN_WEIGHTINGS)}, got {block.get('weighting')!r}",
            "write \"weighting\": \"relu\" (w = max(cosine, 0)) or drop the key")
    enc = block.get("encoder")
    if not isinstance(enc, str) or not enc or os.path.isabs(enc) or ".." in Path(enc).parts:
        bad("knn", f"encoder must name a sub-directory of the head (e.g. \"encoder\"), got {enc!r}",
            "copy the encoder into the head directory and name it relative to it")
    if block.get("encoder_kind") not in KNN_ENCODER_KINDS:
        bad("knn", f"encoder_kind must be one of {list(KNN_ENCODER_KINDS)}, got {block.get('encoder_kind')!r}",
            "write \"hf\" (a Hugging Face encoder checkpoint) or \"head\" (a project textcnn head)")


def validate_knn(directory, spec: HeadSpec, shapes: dict[str, list[int]]) -> tuple[int, int]:
    """Check a knn head's bank against its sidecar without reading the bank: `shapes` is
    check_weights(directory). Returns (bank size n, embedding size d). Raises ArtifactError when
    `bank` or `bank_labels` is missing, bank is not (n, d), bank_labels is not (n, len(labels)),
    the bank holds fewer than k examples, or the encoder directory is missing."""
    d = Path(directory)
    block = spec.extra["knn"]
    fix = "rebuild the head with `tagger knn-build` (or add examples with `tagger knn-add`), which writes both together"
    for name in ("bank", "bank_labels"):
        if name not in shapes:
            raise ArtifactError(d, WEIGHTS, f"not a kNN bank: tensor '{name}' is missing (tensors: "
                                f"{sorted(shapes)[:6]})", fix, key=name)
    bank, lab = shapes["bank"], shapes["bank_labels"]
    if len(bank) != 2 or bank[0] < 1 or bank[1] < 1:
        raise ArtifactError(d, WEIGHTS, f"bank must be (examples, dimensions), got shape {bank}", fix, key="bank")
    L = len(spec.labels)
    if len(lab) != 2 or lab[0] != bank[0] or lab[1] != L:
        raise ArtifactError(d, WEIGHTS, f"bank_labels has shape {lab}, expected ({bank[0]}, {L}): one row per bank "
                            f"example and one column per sidecar label", fix, key="bank_labels")
    if bank[0] < block["k"]:
        raise ArtifactError(d, SIDECAR, f"k is {block['k']} but the bank holds only {bank[0]} examples",
                            f"lower k to at most {bank[0]} or add examples (`tagger knn-add`)", key="knn")
    enc = d / block["encoder"]
    if not enc.is_dir():
        raise ArtifactError(d, block["encoder"], "the encoder directory is missing",
                            "copy the complete head directory (the encoder lives inside it)", key="knn")
    return int(bank[0]), int(bank[1])


def encoder_digest(directory: str | os.PathLike) -> str:
    """sha256 (hex) over the relative paths and byte digests of every file under a kNN head's encoder
    directory, in sorted order: replacing any encoder file is a new model version. Raises OSError if
    a file is unreadable."""
    base = Path(directory)
    h = hashlib.sha256()
    for p in sorted(x for x in base.rglob("*") if x.is_file()):
        h.update(f"{p.relative_to(base).as_posix()}={weights_digest(p)}\n".encode("utf-8"))
    return h.hexdigest()


# -- causal-lm: an LLM head scored by the likelihood of each label's text (models/causal_lm.py) --

CAUSAL_LM_MODES = ("single", "multi")
CAUSAL_LM_KEYS = ("prompt", "verbalizers", "mode", "length_normalize", "question", "answers", "checkpoint", "peft")
DEFAULT_QUESTION = "\n{label}?"  # multi mode: appended to the filled prompt, then an answer is scored
DEFAULT_ANSWERS = {"yes": " yes", "no": " no"}
# the checkpoint's files that decide scores besides the weights (digested into the model version)
LM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
            "merges.txt", "vocab.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def causal_lm_options(spec: HeadSpec) -> dict:
    """The causal-lm keys of a sidecar with their defaults filled in: prompt, verbalizers, mode,
    length_normalize (False), question (DEFAULT_QUESTION), answers ({"yes", "no"}), checkpoint
    ("."), peft (None). Not validated (HeadSpec.validate does that)."""
    x = spec.extra
    return {"prompt": x.get("prompt"), "verbalizers": x.get("verbalizers"), "mode": x.get("mode"),
            "length_normalize": x.get("length_normalize", False), "question": x.get("question", DEFAULT_QUESTION),
            "answers": x.get("answers", dict(DEFAULT_ANSWERS)), "checkpoint": x.get("checkpoint", "."),
            "peft": x.get("peft")}


def validate_causal_lm(spec: HeadSpec, bad) -> None:
    """Check a causal-lm sidecar's own keys (no files): `bad(key, problem, fix)` raises. A prompt
    with exactly one {text}; one distinct non-empty verbalizer per label; mode single (at least two
    labels: the scores are a softmax over them) or multi; length_normalize a bool; question a
    string with {label}; answers {"yes": text, "no": text}, distinct; checkpoint and peft relative
    paths inside the head directory."""
    o = causal_lm_options(spec)
    L = len(spec.labels)
    prompt = o["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        bad("prompt", "is missing or empty", 'write the prompt template, e.g. "Text: {text}\\nCategory:" '
            "(or make the head with `tagger llm-head --template/--sft`)")
    if prompt.count("{text}") != 1:
        bad("prompt", f"must hold the placeholder {{text}} exactly once, it holds it {prompt.count('{text}')} times",
            "put {text} where the item's text goes, once")
    verbalizers = o["verbalizers"]
    if not isinstance(verbalizers, list) or not all(isinstance(v, str) and v.strip() for v in verbalizers):
        bad("verbalizers", "must be a list of non-empty strings (the text the model should say for each label)",
            "write one verbalizer per label, in label order")
    if len(verbalizers) != L:
        missing = f" (no verbalizer for {spec.labels[len(verbalizers):]})" if len(verbalizers) < L else ""
        bad("verbalizers", f"has {len(verbalizers)} entries for {L} labels{missing}",
            "write one verbalizer per label, in label order")
    if len(set(verbalizers)) != L:
        bad("verbalizers", "has duplicates: two labels would always get the same score",
            "give each label its own text")
    if o["mode"] not in CAUSAL_LM_MODES:
        bad("mode", f"must be one of {list(CAUSAL_LM_MODES)}, got {o['mode']!r}",
            '"single": one label per item (softmax over the labels); "multi": a yes/no question per label')
    if o["mode"] == "single" and L < 2:
        bad("mode", "\"single\" needs at least two labels (a softmax over one label is always 1)",
            'use "multi" for a one-label head, or list the other labels')
    if not isinstance(o["length_normalize"], bool):
        bad("length_normalize", f"must be true or false, got {o['length_normalize']!r}",
            "true: mean log-probability per verbalizer token; false (default): the sum")
    if not isinstance(o["question"], str) or "{label}" not in o["question"]:
        bad("question", "must be a string holding {label}", 'e.g. "\\n{label}?" (multi mode; the verbalizer '
            "goes in {label}, then the yes/no answer is scored)")
    answers = o["answers"]
    if (not isinstance(answers, dict) or set(answers) != {"yes", "no"}
            or not all(isinstance(v, str) and v.strip() for v in answers.values())):
        bad("answers", f"must be {{\"yes\": text, \"no\": text}} with non-empty texts, got {answers!r}",
            'e.g. {"yes": " yes", "no": " no"} or {"yes": "是", "no": "否"}')
    if answers["yes"] == answers["no"]:
        bad("answers", "yes and no are the same text", "give the two answers different texts")
    for key in ("checkpoint", "peft"):
        value = o[key]
        if value is None and key == "peft":
            continue
        if not isinstance(value, str) or not value or os.path.isabs(value) or ".." in Path(value).parts:
            bad(key, f"must be a relative path inside the head directory, got {value!r}",
                "copy the directory into the head directory and name it relative to it (e.g. \"lm\", \"adapter\")")


def causal_lm_digest(spec: HeadSpec) -> str:
    """Short sha256 (10 hex) of what decides a causal-lm head's scores in its sidecar: prompt,
    verbalizers, mode, length_normalize, question, answers (defaults filled in), checkpoint, peft."""
    payload = json.dumps(causal_lm_options(spec), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:10]


def causal_lm_dirs(directory: str | os.PathLike, spec: HeadSpec) -> tuple[Path, Path | None]:
    """(checkpoint directory, adapter directory or None) of a causal-lm head in `directory`.
    Existence is not checked (causal_lm_files does)."""
    o = causal_lm_options(spec)
    base = Path(directory)
    return base / o["checkpoint"], (base / o["peft"] if o["peft"] else None)


def causal_lm_files(directory: str | os.PathLike, spec: HeadSpec) -> list[tuple[str, Path]]:
    """(name, path) of every file that decides a causal-lm head's scores: the checkpoint's weights
    (model.safetensors, or every shard its model.safetensors.index.json lists), config and tokenizer
    files (LM_FILES, those present), and the adapter's ADAPTER_FILES. Raises ArtifactError for a
    missing checkpoint directory, config.json, tokenizer or weights, pickle-only or pickle-sharded
    weights, a missing adapter directory, or an adapter without adapter_config.json or
    adapter_model.safetensors (a pickled adapter_model.bin is refused)."""
    ckpt, adapter = causal_lm_dirs(directory, spec)
    fix = "save the model with model.save_pretrained(dir) and tokenizer.save_pretrained(dir) there"
    if not ckpt.is_dir():
        raise ArtifactError(directory, None, f"the causal-LM checkpoint directory {ckpt} does not exist",
                            f"copy the checkpoint there or fix \"checkpoint\" in {SIDECAR}", key="checkpoint")
    if not (ckpt / "config.json").is_file():
        raise ArtifactError(ckpt, "config.json", "missing (a causal-lm head needs a Hugging Face checkpoint)", fix)
    if not ((ckpt / "tokenizer.json").is_file() or (ckpt / "tokenizer_config.json").is_file()):
        raise ArtifactError(ckpt, "tokenizer.json", "missing: the checkpoint has no tokenizer", fix)
    files: list[tuple[str, Path]] = []
    index = ckpt / f"{WEIGHTS}.index.json"
    if (ckpt / WEIGHTS).is_file():
        files.append((WEIGHTS, ckpt / WEIGHTS))
    elif index.is_file():  # a large LLM is saved in shards; each must be safetensors
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise ArtifactError(ckpt, index.name, f"unreadable shard index ({e})", "re-copy the checkpoint") from None
        for shard in shards:
            if not shard.endswith(".safetensors"):
                raise ArtifactError(ckpt, shard, "refusing a pickle-based shard; only safetensors is accepted", _SAFE_FIX)
            if not (ckpt / shard).is_file():
                raise ArtifactError(ckpt, shard, "a shard listed in the index is missing", "re-copy the checkpoint")
            files.append((shard, ckpt / shard))
    else:
        check_weights(ckpt)  # raises the clear error (pickle or missing)
    files += [(name, ckpt / name) for name in LM_FILES if (ckpt / name).is_file()]
    if adapter is not None:
        if not adapter.is_dir():
            raise ArtifactError(directory, None, f"the LoRA adapter directory {adapter} does not exist",
                                f"copy the adapter (peft_model.save_pretrained(dir)) there or drop \"peft\" from "
                                f"{SIDECAR}", key="peft")
        if not (adapter / "adapter_config.json").is_file():
            raise ArtifactError(adapter, "adapter_config.json", "missing: not a PEFT adapter directory",
                                "save the adapter with peft_model.save_pretrained(dir)")
        if not (adapter / "adapter_model.safetensors").is_file():
            pickles = sorted(p.name for p in adapter.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
            raise ArtifactError(adapter, "adapter_model.safetensors",
                                f"missing{' (refusing pickle-based ' + ', '.join(pickles) + ')' if pickles else ''}",
                                "save the adapter with peft_model.save_pretrained(dir, safe_serialization=True)")
        files += [(f"peft/{name}", adapter / name) for name in ADAPTER_FILES]
    return files
