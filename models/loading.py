"""Loading a head artifact for inference, and the batched inference fast path (`LoadedHead`).

`load_head(dir)` checks the directory (models/spec.py), builds the model (TextCNN, Hugging Face
sequence classifier, the numpy linear head of models/linear.py, or an ensemble of heads) and returns an object with `predict_proba(texts)`
-> (n, L) float32 scores and `decide(scores)` -> (n, L) bool (models/decision.py).
A textcnn or bert head whose sidecar says `"runtime": "onnx"` runs its forward pass in an
onnxruntime session (models/onnx_runtime.py) on the CPU; everything around it is the same code.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .decision import HeadDecisions
from .spec import SIDECAR, VOCAB, WEIGHTS, ArtifactError, HeadSpec, _position_cap, check_weights, read_spec
from .tokenization import CharVocab, encode_with_tokenizer, normalize_texts


_GRAD_MODES = {"inference": torch.inference_mode, "no_grad": torch.no_grad, "enabled": torch.enable_grad}
AUTOCAST_MODES = ("auto", "off", "bf16")


def _default_device(device) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def padded_batches(ids: np.ndarray, lengths: np.ndarray, rows: np.ndarray, batch_size: int, device,
                   min_width: int = 1, full_width: bool = False):
    """Mini-batches of a padded (n, W) id array in the order of `rows` (e.g. longest first): yields
    (idx (b,) row numbers, x (b, w) long tensor on `device`, lens (b,) tensor), each batch cut to
    its own longest row (at least `min_width`), or kept at W with `full_width`."""
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        width = ids.shape[1] if full_width else max(int(lengths[idx].max()), min_width)
        x = torch.from_numpy(np.ascontiguousarray(ids[idx, :width])).to(device, torch.long)
        yield idx, x, torch.from_numpy(lengths[idx]).to(device)


class LoadedHead(HeadDecisions):
    """A head ready for batched inference. Build with `load_head` (or get the in-memory one
    from `tagger.models.training.train_head(...).head`)."""

    def __init__(self, spec: HeadSpec, model: torch.nn.Module | None, device: torch.device, *,
                 vocab: CharVocab | None = None, tokenizer=None, output: str = "sigmoid",
                 path: str | None = None, forward=None):
        if spec.arch == "textcnn" and vocab is None:
            raise ValueError("textcnn head needs a CharVocab (or a words.UnitVocab)")
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
        # forward: an onnx_runtime.OnnxForward ((ids, lengths) numpy -> logits) that replaces the
        # torch model's forward pass; None: torch
        self.forward = forward
        if model is None and forward is None:
            raise ValueError("a head needs a torch model or an onnxruntime forward")

    @property
    def runtime(self) -> str:
        """The backend of the forward pass: "onnx" (an onnxruntime session) or "torch"."""
        return "torch" if self.forward is None else "onnx"

    @property
    def min_width(self) -> int:
        """The narrowest padded input the forward pass takes (TextCNN: its largest kernel; else 1)."""
        if self.forward is not None:
            return self.forward.min_width
        return self.model.min_width if self.spec.arch == "textcnn" else 1

    @property
    def labels(self) -> list[str]:
        """The label names in output order (a copy of spec.labels)."""
        return list(self.spec.labels)

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize the whole list at once: (ids (n, W) padded, lengths (n,))."""
        if self.spec.arch == "textcnn":
            return self.vocab.encode(texts, self.max_length, min_width=self.min_width)
        return encode_with_tokenizer(self.tokenizer, texts, self.max_length)

    def _logits(self, ids: torch.Tensor, lengths: torch.Tensor, tables) -> torch.Tensor:
        if self.forward is not None:  # onnxruntime: the same padded batch in, logits out
            return torch.from_numpy(self.forward(ids.numpy(), lengths.numpy()))
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

    def autocast_dtype(self, autocast: str = "auto") -> torch.dtype | None:
        """The dtype predict_proba's forward passes autocast to, None for none (fp32).
        "auto" (the job's): bf16 on CUDA for BERT heads (fp16 where the GPU lacks bf16), none
        otherwise; "off": none; "bf16": bf16 on the head's device, any arch. Raises ValueError
        for another value."""
        if autocast not in AUTOCAST_MODES:
            raise ValueError(f"predict_proba: autocast={autocast!r}, expected one of {AUTOCAST_MODES}")
        if autocast == "bf16":
            return torch.bfloat16
        if autocast == "auto" and self.device.type == "cuda" and self.spec.arch == "bert":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None

    def _autocast(self, autocast: str = "auto"):
        dtype = self.autocast_dtype(autocast)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # -- inference --------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, *, order: str = "length",
                      padding: str = "batch", grad: str = "inference", tokenize: str = "batch",
                      autocast: str = "auto", progress: Callable[[int], object] | None = None) -> np.ndarray:
        """(len(texts), len(labels)) float32 probabilities in [0, 1], rows in input order.

        The job's choices are the defaults: whole-list tokenization, mini-batches of `batch_size`
        sorted by length (longest first, so the memory peak shows at once), each padded to its own
        longest row (capped at max_length), torch.inference_mode, bf16 autocast on CUDA (BERT).
        The keyword switches undo one choice each, for `tagger ablation` (same scores, other cost):
        order "input"; padding "max" (every batch padded to max_length); grad "no_grad" or
        "enabled"; tokenize "per_text" (one tokenizer call per text). autocast "off" runs fp32 on
        CUDA too and "bf16" autocasts on any device (see autocast_dtype; the GPU check compares
        them). `progress`, when given, is called with the number of texts just scored after each
        mini-batch (calibration's progress lines). None/NaN texts score as "".
        Raises ValueError for an unknown switch value.
        """
        switches = {"order": (order, ("length", "input")), "padding": (padding, ("batch", "max")),
                    "grad": (grad, tuple(_GRAD_MODES)), "tokenize": (tokenize, ("batch", "per_text")),
                    "autocast": (autocast, AUTOCAST_MODES)}
        for name, (value, allowed) in switches.items():
            if value not in allowed:
                raise ValueError(f"predict_proba: {name}={value!r}, expected one of {allowed}")
        texts = normalize_texts(texts)
        n, L = len(texts), len(self.spec.labels)
        out = np.zeros((n, L), dtype=np.float32)
        if n == 0:
            return out
        batch_size = max(1, int(batch_size))
        ids, lengths = self.encode(texts) if tokenize == "batch" else self._encode_one_by_one(texts)
        min_width = self.min_width
        if padding == "max":
            full = np.zeros((n, max(self.max_length, min_width, ids.shape[1])), dtype=ids.dtype)
            full[:, :ids.shape[1]] = ids
            ids = full
        rows = np.argsort(-lengths, kind="stable") if order == "length" else np.arange(n)
        was_training = self.model is not None and self.model.training
        if self.model is not None:
            self.model.eval()
        try:
            with _GRAD_MODES[grad](), self._autocast(autocast):
                tables = None
                if (self.forward is None and self.spec.arch == "textcnn"
                        and int(lengths.sum()) >= 2 * len(self.vocab)):
                    # whole-vocab gather tables pay off once the call has more tokens than the
                    # vocab; small calls build per-batch tables from the ids they contain
                    tables = self.model.precompute_tables()
                for idx, x, lens in padded_batches(ids, lengths, rows, batch_size, self.device, min_width,
                                                   full_width=padding == "max"):
                    proba = self._to_proba(self._logits(x, lens, tables))
                    out[idx] = proba.detach().cpu().numpy()
                    if progress is not None:
                        progress(len(idx))
        finally:
            if was_training:
                self.model.train()
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def _encode_one_by_one(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.encode([t]) for t in texts]
        lengths = np.concatenate([p[1] for p in parts])
        ids = np.zeros((len(texts), max(p[0].shape[1] for p in parts)), dtype=parts[0][0].dtype)
        for i, (row, _) in enumerate(parts):
            ids[i, :row.shape[1]] = row[0]
        return ids, lengths


    def __repr__(self) -> str:
        return (f"LoadedHead(head={self.spec.head!r}, arch={self.spec.arch!r}, labels={len(self.spec.labels)}, "
                f"version={self.spec.version!r}, device={self.device}, runtime={self.runtime})")


def load_head(path: str | os.PathLike, device: str | None = None, runtime: str | None = None) -> LoadedHead:
    """Load a head directory for inference (device None: cuda if available, else cpu).

    `runtime`: None follows the sidecar's "runtime" key (absent: torch); "torch" or "onnx" force
    one (the bench and `tagger export-onnx` compare the two on one directory). "onnx" applies to
    textcnn and bert heads on the CPU: the forward pass runs in an onnxruntime session on
    <path>/model.onnx (models/onnx_runtime.py; onnxruntime is imported only then); on a CUDA
    device the head loads with torch.

    `path`: a directory written by training (textcnn or bert), a linear or knn head (models/knn.py:
    a KnnHead; faiss is imported then), an ensemble directory, a causal-lm head (models/causal_lm.py;
    `runtime` does not apply), or a Hugging Face sequence-classification checkpoint. Returns a
    LoadedHead (an EnsembleHead for an ensemble, a CausalLMHead for a causal-lm head)
    in eval mode whose predict_proba gives (n, L) float32 scores. Raises ArtifactError when the
    directory is missing, the sidecar is invalid (read_spec), the weights are missing, pickled,
    sharded or truncated, the vocabulary/config/tokenizer is missing or unreadable, the weights'
    shapes disagree with the labels or vocabulary, or an ensemble's members are invalid; for the onnx
    runtime, when model.onnx is missing or unreadable or onnxruntime is not installed. Raises
    ValueError for another `runtime`."""
    if runtime not in (None, "torch", "onnx"):
        raise ValueError(f"load_head: runtime={runtime!r}, expected None, 'torch' or 'onnx'")
    d = Path(path)
    if not d.is_dir():
        raise ArtifactError(d, None, "directory does not exist",
                            "point at a head directory written by tagger.models.training.train_head")
    spec = read_spec(d)
    if spec.arch == "ensemble":  # no weights of its own: its members are heads
        from .ensemble import EnsembleHead
        from .spec import member_dirs, validate_ensemble

        validate_ensemble(d, spec)
        return EnsembleHead(spec, [load_head(m, device=device, runtime=runtime) for m in member_dirs(d, spec)],
                            path=str(d))
    if spec.arch == "causal-lm":  # an LLM scored by label likelihood; transformers (and peft) load only now
        from .causal_lm import load_causal_lm

        return load_causal_lm(d, spec, _default_device(device))
    shapes = check_weights(d)
    if spec.arch == "linear":  # numpy only: no torch model, no device
        from .linear import load_linear

        return load_linear(d, spec, shapes)
    if spec.arch == "knn":  # an encoder plus a bank searched with faiss (imported only here)
        from .knn import load_knn

        return load_knn(d, spec, shapes, device=device)
    dev = _default_device(device)
    onnx = (runtime or spec.extra.get("runtime") or "torch") == "onnx" and dev.type == "cpu"
    if spec.arch == "textcnn":
        return _load_textcnn(d, spec, shapes, dev, onnx)
    return _load_bert(d, spec, shapes, dev, onnx)


def _load_textcnn(d: Path, spec: HeadSpec, shapes: dict, device: torch.device, onnx: bool = False) -> LoadedHead:
    from safetensors.torch import load_file

    from .textcnn import DEFAULT_HPARAMS, build_textcnn

    hp = {**DEFAULT_HPARAMS, **(spec.extra.get("textcnn") or {})}
    tokenizer = (spec.extra.get("text") or {}).get("tokenizer", "char")
    if tokenizer != "char":
        from .words import UNIT_VOCAB, UnitVocab, dictionary_in

        try:
            vocab = UnitVocab.load(d / UNIT_VOCAB, dictionary_in(d))
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(d, UNIT_VOCAB, f"missing or invalid word vocabulary for tokenizer {tokenizer!r} "
                                f"({type(e).__name__}: {e})", "copy the complete artifact directory or retrain") from None
        if vocab.tokenizer != tokenizer:
            raise ArtifactError(d, UNIT_VOCAB, f"was built for tokenizer {vocab.tokenizer!r}, the sidecar says "
                                f"{tokenizer!r}", "use the files written together, or retrain", key="text")
    elif not (d / VOCAB).is_file():
        raise ArtifactError(d, VOCAB, "char vocabulary is missing",
                            "copy the complete artifact directory (training writes vocab.txt next to the weights)")
    if tokenizer == "char":
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
    if onnx:  # the weights' shapes were checked above; the graph carries the weights
        from .onnx_runtime import OnnxForward, open_session

        forward = OnnxForward(open_session(d), min_width=max(int(k) for k in hp["kernel_sizes"]))
        return LoadedHead(spec, None, torch.device("cpu"), vocab=vocab, path=str(d), forward=forward)
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


def _load_bert(d: Path, spec: HeadSpec, shapes: dict, device: torch.device, onnx: bool = False) -> LoadedHead:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .bert_head import n_outputs, output_mode

    if not (d / "config.json").is_file():
        raise ArtifactError(d, "config.json", "missing (a bert head is a Hugging Face save_pretrained directory)",
                            "save the model with model.save_pretrained(dir, safe_serialization=True)")
    try:
        config = AutoConfig.from_pretrained(str(d), local_files_only=True)
        activation = spec.extra.get("activation")
        mode = output_mode(config, activation)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(d, "config.json", f"not a usable sequence-classification config ({e})",
                            "export the fine-tuned model with save_pretrained") from None
    L = len(spec.labels)
    if n_outputs(config, activation) != L:
        raise ArtifactError(d, SIDECAR, f"lists {L} labels but config.json/{WEIGHTS} has {config.num_labels} "
                            f"outputs ({mode})", "use the sidecar written with these weights (labels must "
                            "match the model's outputs, in order) or retrain", key="labels")
    cls_keys = [k for k in shapes if k.endswith("classifier.weight") or k.endswith("classifier.out_proj.weight")]
    if cls_keys and shapes[cls_keys[0]][0] != int(config.num_labels):
        raise ArtifactError(d, WEIGHTS, f"{cls_keys[0]} has {shapes[cls_keys[0]][0]} outputs but config.json "
                            f"says num_labels={config.num_labels}", "re-export config and weights together "
                            "with save_pretrained", key=cls_keys[0])
    if onnx:
        from .onnx_runtime import OnnxForward, open_session

        forward = OnnxForward(open_session(d))
        tokenizer = _load_tokenizer(d, config)
        max_length = min(int(spec.max_length), _position_cap(config))
        if max_length != spec.max_length:
            spec = HeadSpec(**{**spec.__dict__, "max_length": max_length})
        return LoadedHead(spec, None, torch.device("cpu"), tokenizer=tokenizer, output=mode, path=str(d),
                          forward=forward)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per worker is noise in the job's log
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(d), use_safetensors=True,
                                                                   local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(d, WEIGHTS, f"could not load the weights ({type(e).__name__}: {e})",
                            "re-export with model.save_pretrained(dir, safe_serialization=True)") from None
    tokenizer = _load_tokenizer(d, config)
    max_length = min(int(spec.max_length), _position_cap(config))
    if max_length != spec.max_length:
        spec = HeadSpec(**{**spec.__dict__, "max_length": max_length})
    model.to(device).eval()
    return LoadedHead(spec, model, device, tokenizer=tokenizer, output=mode, path=str(d))


# Texts a Chinese automotive checkpoint must be able to read; a tokenizer that turns all of them
# into special or unknown tokens cannot be what the model was trained with.
PROBE_TEXTS = ("北京车展新车上市", "比亚迪汉EV售价20万起", "新款SUV谍照曝光")


def _load_tokenizer(d: Path, config):
    """The checkpoint's tokenizer, checked against the model before anything is scored.

    Community Chinese RoBERTa checkpoints (hfl/chinese-roberta-wwm-ext and its fine-tunes) ship a
    BERT WordPiece vocab.txt and no tokenizer files of their own; transformers would build a
    byte-level RobertaTokenizer from nothing and encode every text to [<s>, </s>]. Such a directory
    (model_type roberta, vocab.txt, no tokenizer.json / tokenizer_config.json / merges.txt) gets the
    WordPiece tokenizer it was trained with. Then: a tokenizer larger than the model's vocabulary,
    or one that reads every probe text as special or unknown tokens, is refused (ArtifactError).
    """
    from transformers import AutoTokenizer, BertTokenizerFast

    has = {name: (d / name).is_file() for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                                                   "merges.txt")}
    wordpiece_only = (getattr(config, "model_type", "") in ("roberta", "xlm-roberta") and has["vocab.txt"]
                      and not (has["tokenizer.json"] or has["tokenizer_config.json"] or has["merges.txt"]))
    try:
        if wordpiece_only:
            tokenizer = BertTokenizerFast.from_pretrained(str(d), local_files_only=True)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(d, "tokenizer_config.json", f"could not load the tokenizer ({type(e).__name__}: {e})",
                            "save the tokenizer next to the model with tokenizer.save_pretrained(dir)") from None
    fix = ("save the tokenizer the model was fine-tuned with next to it (tokenizer.save_pretrained(dir)); for a "
           "Chinese BERT/RoBERTa checkpoint that is the WordPiece vocab.txt of its base model")
    vocab_size = getattr(config, "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ArtifactError(d, "vocab.txt", f"the tokenizer has {len(tokenizer)} tokens but the model's embedding has "
                            f"{vocab_size} rows (config.vocab_size): ids past the end would index nothing", fix)
    special = set(tokenizer.all_special_ids)
    encoded = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in PROBE_TEXTS]
    if all(all(i in special for i in ids) for ids in encoded):
        shown = tokenizer.convert_ids_to_tokens(encoded[0])
        raise ArtifactError(d, "vocab.txt", f"the tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) "
                            f"reads every probe text as special or unknown tokens (e.g. {PROBE_TEXTS[0]!r} -> {shown}): "
                            "every item would get the same score", fix)
    return tokenizer
