"""LLM heads scored by label likelihood (`arch: causal-lm`): a causal language model reads a prompt
with the item's text and the score of each label comes from how likely the model finds that
label's text after it. Nothing is generated and nothing is parsed, so the head cannot drift out of
format: every item gets one score per label, like any other head.

Sidecar keys (validated by tagger.models.spec.validate_causal_lm):
  prompt       template with the placeholder {text} once, e.g. "新闻：{text}\\n类别：" (for a head made
               from an SFT file, its `system` text; `tagger llm-head`)
  verbalizers  one text per label, in label order: what the model should say for that label
  mode         "single": one label per item. Score of label j = softmax over the labels of the
               log-likelihood of verbalizer j after the prompt (the scores sum to 1). The
               log-likelihood is the SUM of the verbalizer's token log-probabilities (favours short
               verbalizers: keep them of similar token length), or with "length_normalize": true
               their MEAN.
               "multi": each label on its own. The prompt is followed by `question` with {label}
               replaced by the verbalizer, then score = P(yes) / (P(yes) + P(no)), where P(answer)
               is the likelihood of the answer's tokens there (`answers`, default " yes" / " no").
  question     multi mode, default "\\n{label}?"
  answers      multi mode, default {"yes": " yes", "no": " no"}
  checkpoint   the Hugging Face causal-LM directory, relative to the head directory (default ".")
  peft         optional: a PEFT LoRA adapter directory, relative to the head directory (peft is
               imported only then; the adapter is merged into the weights once at load)
  max_length   the item text's token budget: the text is cut to its first max_length tokens

Tokenization. The prompt is split at {text}; the part before it (with the tokenizer's BOS token
when the tokenizer adds one), the text and the part after it are tokenized separately and
concatenated (the context), and each continuation (a verbalizer; or question + answer) is
tokenized on its own and appended. So a continuation's tokens are the same for every item, and the
scores equal a plain transformers forward pass over `context + continuation`.

Cost. One forward pass per (item, continuation): L continuations per item in single mode, 2L in
multi mode, never `generate`. Shared prefix (default): the context is run once per item with
use_cache=True, and its key/value cache is repeated over that item's continuations, which then
run as short sequences; without it (`share_prefix=False`, or a model whose cache is not a plain
DynamicCache, e.g. sliding-window or linear-attention layers) every continuation is run with its
whole context, padded into one batch. Both give the same scores (within float rounding).
"""
from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .decision import HeadDecisions
from .spec import ArtifactError, HeadSpec, causal_lm_dirs, causal_lm_files, causal_lm_options
from .tokenization import normalize_texts

AUTOCAST_MODES = ("auto", "off", "bf16")


class CausalLMHead(HeadDecisions):
    """A causal-lm head ready for inference, with the interface of tagger.models.loading.LoadedHead
    (spec, labels, device, max_length, predict_proba, decide, predict). Build it with
    `tagger.models.loading.load_head(dir)`.

    `model`: a transformers causal LM (adapter already merged) in eval mode on `device` (None:
    tokens only, for checking a sidecar against its tokenizer; nothing can be scored);
    `tokenizer`: its tokenizer; `share_prefix`: run each item's context once and reuse its cache
    over the continuations (set False when the model's cache cannot be reused; see the module
    docstring)."""

    def __init__(self, spec: HeadSpec, model, tokenizer, device, path: str | None = None, share_prefix: bool = True):
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.path = path
        self.max_length = int(spec.max_length)
        self.options = causal_lm_options(spec)
        self.mode = self.options["mode"]
        self.share_prefix = bool(share_prefix)
        params = inspect.signature(model.forward).parameters if model is not None else {}
        self._keep = "logits_to_keep" in params
        # transformers >= 5.2x names the key/value cache argument `cache` (past_key_values is deprecated)
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._pieces()

    runtime = "torch"

    @property
    def labels(self) -> list[str]:
        """The label names in output order (a copy of spec.labels)."""
        return list(self.spec.labels)

    # -- token sequences -------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _pieces(self) -> None:
        """Tokenize the fixed parts once: the prompt around {text} and the continuations."""
        tok, d = self.tokenizer, self.path or "<memory>"
        before, after = self.options["prompt"].split("{text}")
        probe_with = list(tok("a", add_special_tokens=True)["input_ids"])
        probe_without = self._ids("a")
        bos = tok.bos_token_id
        adds_bos = bos is not None and len(probe_with) > len(probe_without) and probe_with[0] == bos
        self.head_ids = ([bos] if adds_bos else []) + self._ids(before)
        if not self.head_ids:  # the first continuation token needs something to be predicted from
            start = bos if bos is not None else tok.eos_token_id
            if start is None:
                raise ArtifactError(d, None, "the prompt starts with {text} and the tokenizer has neither a BOS nor "
                                    "an EOS token: an empty text would leave nothing to score the labels after",
                                    "put some text before {text} in the prompt", key="prompt")
            self.head_ids = [start]
        self.tail_ids = self._ids(after)
        conts, scored = [], []
        for label, verbalizer in zip(self.spec.labels, self.options["verbalizers"]):
            ids = self._ids(verbalizer)
            if not ids or all(i == tok.unk_token_id for i in ids):
                raise ArtifactError(d, None, f"the verbalizer of {label!r} ({verbalizer!r}) is no token, or only "
                                    "unknown tokens, for this tokenizer", "write a verbalizer the tokenizer reads",
                                    key="verbalizers")
        if self.mode == "single":
            for verbalizer in self.options["verbalizers"]:
                ids = self._ids(verbalizer)
                conts.append(ids)
                scored.append(len(ids))
            if len({tuple(c) for c in conts}) != len(conts):
                raise ArtifactError(d, None, "two verbalizers are the same tokens for this tokenizer (unknown "
                                    "characters?): their labels would always score the same",
                                    "write verbalizers the tokenizer tells apart", key="verbalizers")
        else:
            yes, no = (self._ids(self.options["answers"][k]) for k in ("yes", "no"))
            unknown = [ids for ids in (yes, no) if all(i == tok.unk_token_id for i in ids)]
            if not yes or not no or yes == no or unknown:
                raise ArtifactError(d, None, f"the answers {self.options['answers']} are no tokens, the same "
                                    "tokens, or unknown tokens only, for this tokenizer",
                                    "write answers the tokenizer reads and tells apart", key="answers")
            for verbalizer in self.options["verbalizers"]:
                q = self._ids(self.options["question"].replace("{label}", verbalizer))
                conts += [q + yes, q + no]
                scored += [len(yes), len(no)]
        self.continuations, self.scored = conts, scored
        C, m = len(conts), max(len(c) for c in conts)
        ids = torch.zeros((C, m), dtype=torch.long)
        mask = torch.zeros((C, m), dtype=torch.long)
        score_mask = torch.zeros((C, m), dtype=torch.float64)  # the answer / verbalizer tokens that count
        for i, (c, s) in enumerate(zip(conts, scored)):
            ids[i, :len(c)] = torch.tensor(c)
            mask[i, :len(c)] = 1
            score_mask[i, len(c) - s:len(c)] = 1.0
        self._cont_ids, self._cont_mask, self._score_mask = ids, mask, score_mask
        # positions (continuation coordinates, -1: the context's last token) whose logits predict a
        # scored token: all of a verbalizer's in single mode, only the answers' in multi mode
        self._needed = sorted({j - 1 for c, s in zip(conts, scored) for j in range(len(c) - s, len(c))})

    def contexts(self, texts: Sequence[str]) -> list[list[int]]:
        """The context token ids of each text: prompt head (+ BOS), the text's first max_length
        tokens, prompt tail. One list of ints per text."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [self.head_ids + list(ids[:self.max_length]) + self.tail_ids for ids in encoded]

    # -- scoring ---------------------------------------------------------------------------
    def autocast_dtype(self, autocast: str = "auto") -> torch.dtype | None:
        """The dtype the forward passes autocast to, None for fp32: "auto" bf16 on CUDA (fp16 where
        the GPU lacks bf16), none on the CPU; "off" none; "bf16" bf16 on any device. Log-softmax is
        always taken in fp32. Raises ValueError for another value."""
        if autocast not in AUTOCAST_MODES:
            raise ValueError(f"predict_proba: autocast={autocast!r}, expected one of {AUTOCAST_MODES}")
        if autocast == "bf16":
            return torch.bfloat16
        if autocast == "auto" and self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None

    def _forward(self, **kw):
        return self.model(**kw)

    def _logprobs(self, logits: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """(rows, m) float64 log-probabilities of the continuation tokens `cont` (rows, m) from
        `logits` (rows, len(self._needed), V), the logits at the positions self._needed (continuation
        coordinates: -1 is the context's last token); tokens no position predicts get 0 (they are
        not scored)."""
        q = torch.tensor(self._needed, device=cont.device) + 1  # the tokens these positions predict
        logits = logits.float()
        picked = logits.gather(-1, cont[:, q][:, :, None])[..., 0]
        out = torch.zeros(cont.shape, dtype=torch.float64, device=cont.device)
        out[:, q] = (picked - torch.logsumexp(logits, dim=-1)).double()
        return out

    def _chunk_scores(self, ctx: torch.Tensor, ctx_mask: torch.Tensor, k: int, share: bool) -> torch.Tensor:
        """(B, C) float64 summed log-likelihoods of every continuation for a batch of B left-padded
        contexts (B, Tc), continuations run k items at a time. Logits (the vocabulary projection)
        are computed only at the positions that predict a scored token (self._needed) where the
        model takes `logits_to_keep`."""
        B, Tc = ctx.shape
        C, m = self._cont_ids.shape
        dev = self.device
        cont_ids, cont_mask = self._cont_ids.to(dev), self._cont_mask.to(dev)
        score_mask = self._score_mask.to(dev)
        needed = torch.tensor(self._needed, device=dev)
        inner = needed[needed >= 0]  # positions inside the continuation
        ctx_len = ctx_mask.sum(dim=1)
        ctx_pos = (ctx_mask.cumsum(dim=1) - 1).clamp(min=0)
        out = torch.empty((B, C), dtype=torch.float64, device=dev)
        kv = None
        if share:
            keep = {"logits_to_keep": 1} if self._keep else {}
            res = self._forward(input_ids=ctx, attention_mask=ctx_mask, position_ids=ctx_pos, use_cache=True, **keep)
            last = res.logits[:, -1, :]
            kv = _cache_tensors(getattr(res, "cache", None) or getattr(res, "past_key_values", None))
            del res
            if kv is None:  # not a plain DynamicCache: score this head without the shared prefix from now on
                self.share_prefix = share = False
        for a in range(0, B, k):
            items = torch.arange(a, min(a + k, B), device=dev)
            rows = items.repeat_interleave(C)
            c_ids = cont_ids.repeat(len(items), 1)
            c_mask = cont_mask.repeat(len(items), 1)
            c_pos = ctx_len[rows][:, None] + torch.arange(m, device=dev)[None, :]
            mask = torch.cat([ctx_mask[rows], c_mask], dim=1)
            if share:
                cache = _make_cache([(kk[rows], vv[rows]) for kk, vv in kv])
                keep = {"logits_to_keep": inner} if self._keep else {}
                res = self._forward(input_ids=c_ids, attention_mask=mask, position_ids=c_pos, use_cache=True,
                                    **{self._cache_arg: cache}, **keep)
                logits = res.logits if self._keep else res.logits[:, inner, :]
                if self._needed[0] == -1:  # the first continuation token is scored: the context's last logits
                    logits = torch.cat([last[rows][:, None, :], logits], dim=1)
            else:
                ids = torch.cat([ctx[rows], c_ids], dim=1)
                pos = torch.cat([ctx_pos[rows], c_pos], dim=1)
                keep = {"logits_to_keep": Tc + needed} if self._keep else {}
                res = self._forward(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **keep)
                logits = res.logits if self._keep else res.logits[:, Tc + needed, :]
            del res
            lp = self._logprobs(logits, c_ids)
            out[items] = (lp * score_mask.repeat(len(items), 1)).sum(dim=1).view(len(items), C)
        return out

    def loglik(self, texts: Sequence[str], batch_size: int = 64, *, share_prefix: bool | None = None,
               autocast: str = "auto", progress: Callable[[int], object] | None = None) -> np.ndarray:
        """(len(texts), C) float64 log-likelihoods of each continuation's scored tokens after each
        text's context: single mode C = L (a verbalizer's summed token log-probabilities), multi mode
        C = 2L (label j's yes answer in column 2j, its no answer in 2j+1). Items are run
        `batch_size` contexts at a time, longest first, and their continuations max(1,
        batch_size // C) items at a time. `share_prefix` None: the head's setting."""
        texts = normalize_texts(texts)
        n, C = len(texts), len(self.continuations)
        out = np.zeros((n, C), dtype=np.float64)
        if n == 0:
            return out
        share = self.share_prefix if share_prefix is None else bool(share_prefix)
        batch_size = max(1, int(batch_size))
        k = max(1, batch_size // C)
        contexts = self.contexts(texts)
        lengths = np.array([len(c) for c in contexts])
        order = np.argsort(-lengths, kind="stable")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        dtype = self.autocast_dtype(autocast)
        amp = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                Tc = int(lengths[idx].max())
                ctx = torch.full((len(idx), Tc), pad, dtype=torch.long)
                ctx_mask = torch.zeros((len(idx), Tc), dtype=torch.long)
                for r, i in enumerate(idx):  # left padding: every context ends at column Tc - 1
                    ctx[r, Tc - lengths[i]:] = torch.tensor(contexts[i])
                    ctx_mask[r, Tc - lengths[i]:] = 1
                scores = self._chunk_scores(ctx.to(self.device), ctx_mask.to(self.device), k, share)
                out[idx] = scores.cpu().numpy()
                if progress is not None:
                    progress(len(idx))
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, *, autocast: str = "auto",
                      share_prefix: bool | None = None, progress: Callable[[int], object] | None = None,
                      **_torch_switches) -> np.ndarray:
        """(len(texts), L) float32 scores in [0, 1], rows in input order (None/NaN texts score as "").

        single mode: softmax over the labels of the verbalizers' log-likelihoods (loglik; divided by
        their token counts when length_normalize); multi mode: per label P(yes) / (P(yes) + P(no)) =
        sigmoid(loglik(yes) - loglik(no)). `batch_size`: contexts per forward pass (see loglik);
        `autocast`: see autocast_dtype; `share_prefix`: see the module docstring; `progress`: called
        with the number of texts scored after each batch. The other heads' switches (order,
        padding, grad, tokenize) are accepted and change nothing. Raises ValueError for a bad
        autocast value."""
        ll = self.loglik(texts, batch_size, share_prefix=share_prefix, autocast=autocast, progress=progress)
        if self.mode == "single":
            if self.options["length_normalize"]:
                ll = ll / np.asarray(self.scored, dtype=np.float64)[None, :]
            z = ll - ll.max(axis=1, keepdims=True) if len(ll) else ll
            e = np.exp(z)
            proba = e / e.sum(axis=1, keepdims=True) if len(ll) else e
        else:
            diff = ll[:, 0::2] - ll[:, 1::2]
            proba = 0.5 * (1.0 + np.tanh(0.5 * diff))  # sigmoid without overflow warnings
        return np.clip(proba, 0.0, 1.0).astype(np.float32)

    def __repr__(self) -> str:
        return (f"CausalLMHead(head={self.spec.head!r}, mode={self.mode!r}, labels={len(self.spec.labels)}, "
                f"model_type={getattr(self.model.config, 'model_type', None)!r}, "
                f"adapter={self.options['peft']!r}, share_prefix={self.share_prefix}, device={self.device})")


def _cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Per layer (keys, values) of a plain DynamicCache (transformers >= 4.56: .layers of
    DynamicLayer; older: .key_cache / .value_cache), else None (sliding-window, linear-attention,
    quantized or other caches are not reused)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        if not all(type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
                   for layer in layers):
            return None
        return [(layer.keys, layer.values) for layer in layers]
    keys, values = getattr(cache, "key_cache", None), getattr(cache, "value_cache", None)
    if type(cache).__name__ == "DynamicCache" and keys is not None and values is not None:
        return list(zip(keys, values))
    return None


def _make_cache(kv: list[tuple[torch.Tensor, torch.Tensor]]):
    """A fresh DynamicCache holding these per-layer (keys, values)."""
    from transformers import DynamicCache

    if hasattr(DynamicCache, "from_legacy_cache"):
        try:
            return DynamicCache.from_legacy_cache(tuple(kv))
        except Exception:  # noqa: BLE001 - removed or changed in this version: the constructor below
            pass
    return DynamicCache(ddp_cache_data=kv)


def load_causal_lm(d: str | os.PathLike, spec: HeadSpec, device: torch.device,
                   share_prefix: bool = True) -> CausalLMHead:
    """The CausalLMHead of head directory `d` with sidecar `spec`, on `device`: the checkpoint
    (AutoModelForCausalLM, safetensors only, local files only; bf16 weights on a CUDA device with
    bf16, fp32 otherwise) and its tokenizer, with the LoRA
    adapter of `peft` merged in when the sidecar names one (peft is imported only then).
    max_length is capped so that prompt + text + the longest continuation fit the model's
    positions. Raises ArtifactError for missing or pickled files (spec.causal_lm_files), a
    checkpoint or tokenizer transformers cannot load, an adapter that does not fit the model, peft
    not installed, or verbalizers/answers the tokenizer cannot read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    d = Path(d)
    causal_lm_files(d, spec)  # the clear errors for missing or pickled files
    ckpt, adapter = causal_lm_dirs(d, spec)
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(ckpt), local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(ckpt, "tokenizer.json", f"could not load the tokenizer ({type(e).__name__}: {e})",
                            "save the tokenizer next to the model with tokenizer.save_pretrained(dir)") from None
    # bf16 weights on a GPU that has bf16 (half the memory of fp32), fp32 elsewhere
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    import transformers

    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(ckpt), use_safetensors=True, local_files_only=True,
                                                     **{dtype_key: dtype})
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(ckpt, "model.safetensors", f"could not load the causal LM ({type(e).__name__}: {e})",
                            "save it with AutoModelForCausalLM...save_pretrained(dir, safe_serialization=True)") from None
    if adapter is not None:
        try:
            from peft import PeftModel
        except ImportError:
            raise ArtifactError(d, None, "the sidecar names a LoRA adapter but peft is not installed",
                                "pip install 'tagger[llm]' (or drop \"peft\" from the sidecar)", key="peft") from None
        try:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False).merge_and_unload()
        except Exception as e:  # noqa: BLE001
            raise ArtifactError(adapter, "adapter_config.json", f"could not apply the adapter ({type(e).__name__}: "
                                f"{e})", "use the adapter trained on this checkpoint") from None
    model.to(device).eval()
    head = CausalLMHead(spec, model, tokenizer, device, path=str(d), share_prefix=share_prefix)
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        fixed = len(head.head_ids) + len(head.tail_ids) + max(len(c) for c in head.continuations)
        room = positions - fixed
        if room < 1:
            raise ArtifactError(d, None, f"the prompt and the longest continuation take {fixed} tokens, the model "
                                f"has {positions} positions", "shorten the prompt or the verbalizers", key="prompt")
        if room < head.max_length:
            head.max_length = room
            head.spec = HeadSpec(**{**spec.__dict__, "max_length": room})
    return head


def write_causal_lm_head(out_dir: str | os.PathLike, checkpoint: str | os.PathLike, labels: Sequence[str],
                         verbalizers: Sequence[str], prompt: str, mode: str, *, peft: str | os.PathLike | None = None,
                         head: str | None = None, max_length: int = 256, link: bool = False,
                         extra: dict | None = None) -> HeadSpec:
    """Write a causal-lm head to `out_dir`: the checkpoint directory goes to out_dir/lm and the
    adapter (if any) to out_dir/adapter, copied (or symlinked with `link`, for a large checkpoint
    on the same machine; a directory already inside out_dir is referenced where it is), then the
    sidecar (labels, one verbalizer per label, prompt, mode, thresholds 0.5, `extra` keys such as
    question / answers / length_normalize) is validated and written, and the head is loaded once
    so that a tokenizer that cannot read a verbalizer fails here, not in the job (the model itself
    is not loaded: `tagger evaluate` does that).
    A new (or empty) `out_dir` is built in a staging folder beside it and appears only when every
    check passed. A non-empty `out_dir` is refused unless the checkpoint (and adapter) are already
    inside it: then only its sidecar is re-written, after the checks; nothing else is touched.
    Returns the HeadSpec written. Raises ArtifactError for an invalid sidecar, unusable files or a
    non-empty `out_dir` holding other files; on any error `out_dir` is left as it was."""
    import hashlib
    import shutil
    import tempfile

    from .spec import SIDECAR, causal_lm_digest, write_spec

    out = Path(out_dir)
    given = [Path(p).resolve() for p in (checkpoint, peft) if p is not None]
    in_place = out.is_dir() and any(out.iterdir())
    if in_place and not all(p.is_relative_to(out.resolve()) for p in given):
        raise ArtifactError(out, None, "is not empty: refusing to replace the files of the head already there",
                            "write to a new directory (or delete this one first); to re-write only the sidecar "
                            "of a head whose checkpoint is already inside it, pass --checkpoint OUT/lm (and "
                            "--peft OUT/adapter)")
    out.parent.mkdir(parents=True, exist_ok=True)
    target = out if in_place else Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))

    def place(src, name: str) -> str:
        src = Path(src).resolve()
        if in_place:  # inside out (checked above): referenced where it is
            return str(src.relative_to(out.resolve())) or "."
        if not src.is_dir():
            raise ArtifactError(src, None, "directory does not exist", f"pass the {name} directory")
        dest = target / name
        if link:
            dest.symlink_to(src, target_is_directory=True)
        else:
            shutil.copytree(src, dest)
        return name

    try:
        options = {"prompt": prompt, "verbalizers": list(verbalizers), "mode": mode,
                   "checkpoint": place(checkpoint, "lm"), **(extra or {})}
        if peft is not None:
            options["peft"] = place(peft, "adapter")
        name = head or out.name
        spec = HeadSpec(head=name, arch="causal-lm", labels=list(labels), thresholds=[0.5] * len(labels),
                        enabled=[True] * len(labels), max_length=int(max_length), version="pending", extra=options)
        spec.validate(target, SIDECAR)
        digest = hashlib.sha256(causal_lm_digest(spec).encode()).hexdigest()[:8]
        spec.version = f"{name}-{mode}-{digest}"
        causal_lm_files(target, spec)  # missing or pickled files fail now, not in the job
        from transformers import AutoTokenizer

        ckpt = causal_lm_dirs(target, spec)[0]
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(ckpt), local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise ArtifactError(ckpt, "tokenizer.json", f"could not load the tokenizer ({type(e).__name__}: {e})",
                                "save the tokenizer next to the model with tokenizer.save_pretrained(dir)") from None
        CausalLMHead(spec, None, tokenizer, "cpu", path=str(target))  # verbalizers and answers the tokenizer cannot read
        write_spec(target, spec)
        if not in_place:
            if out.exists():
                out.rmdir()  # empty (checked above)
            target.rename(out)
    except BaseException:
        if not in_place:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return spec


def chat_prompt(checkpoint: str | os.PathLike, user: str, system: str | None = None) -> str:
    """A prompt template in the checkpoint's own chat format: its tokenizer's chat template applied
    to [system (when given), user] with the assistant turn opened (add_generation_prompt), as a
    chat model was fine-tuned (an SFT line's system, src -> user, tgt -> assistant). `user` holds
    {text}. Raises ArtifactError when the tokenizer cannot be loaded or has no chat template, or
    when the rendered template lost the {text} placeholder."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(checkpoint, "tokenizer.json", f"could not load the tokenizer ({type(e).__name__}: {e})",
                            "save the tokenizer next to the model with tokenizer.save_pretrained(dir)") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ArtifactError(checkpoint, "tokenizer_config.json", "the tokenizer has no chat template",
                            "drop --chat and write the prompt's format yourself with --template")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if prompt.count("{text}") != 1:
        raise ArtifactError(checkpoint, "tokenizer_config.json", "the chat template does not keep the {text} "
                            "placeholder of the user message exactly once", "write the prompt with --template")
    return prompt


def continuation_count(spec: HeadSpec) -> int:
    """How many continuations each item is scored with: L (single) or 2L (multi)."""
    return len(spec.labels) * (1 if causal_lm_options(spec)["mode"] == "single" else 2)


__all__ = ["CausalLMHead", "load_causal_lm", "write_causal_lm_head", "chat_prompt", "continuation_count"]
