"""Training of tagging heads (TextCNN gate, small BERT multi-label head) on CPU or GPU.

Multi-label BCE-with-logits, length-bucketed shuffled mini-batches with dynamic padding, progress
over each epoch's batches (a bar with an ETA on a terminal, else a line with elapsed time and ETA
every 10% of the batches or 30 s: models/progress.py), one log line per epoch, a warning up
front for labels without train/dev positives, early stopping on dev macro-F1 (at per-label F1-max
thresholds), best epoch restored, per-label thresholds chosen on dev over 0.05..0.95, artifact
written to a staging directory and moved into place when complete."""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .progress import Progress, on_terminal
from .spec import SIDECAR, VOCAB, WEIGHTS, ArtifactError, HeadSpec, weights_version, write_spec
from .loading import LoadedHead
from .data import DataError
from .decision import passes
from .metrics import THRESHOLD_GRID, best_f1_thresholds, binarize, label_report
from .tokenization import CharVocab, normalize_texts

# Per-arch defaults (train_head arguments left as None take these).
# Measured on keyword-driven synthetic data, 2 CPU cores: the gate (60k texts, ~200 chars) takes
# ~1-1.5 min/epoch and reaches its dev F1 ceiling after 1-2 epochs; the small BERT P0 head
# (10k texts) takes ~1 min/epoch at 128 tokens, dev macro-F1 0.86 / 0.94 / 0.95 / 0.98 after
# epochs 1-4.
DEFAULTS: dict[str, dict] = {
    "textcnn": {"epochs": 3, "lr": 2e-3, "max_length": 256, "patience": 1},
    "bert": {"epochs": 4, "lr": 1e-3, "max_length": 160, "patience": 1},
}
POS_WEIGHT_MAX = 30.0
TRAINING_THREADS_MAX = 1  # see training_threads
CAP_MIN_POSITIVES = 500  # cap_examples: a rare label keeps at least this many positives (or all it has)
EVAL_BATCH_SIZE = 128


@dataclass
class TrainResult:
    """What train_head returns: the artifact directory, its sidecar as written, the dev report
    (label_report at the chosen thresholds plus thresholds, best_epoch, epochs_run, history), the
    training wall time in seconds, the trained model loaded for inference, and for a linear head
    the fitted scikit-learn objects (`reference`, models/linear_training.py SklearnLinear)."""
    path: str
    spec: HeadSpec
    dev_report: dict
    seconds: float
    head: LoadedHead | None = field(default=None, repr=False)  # the in-memory trained model
    reference: object | None = field(default=None, repr=False)  # linear: the fitted scikit-learn objects


def seed_everything(seed: int) -> None:
    """Seed Python's random, numpy (seed mod 2**32) and torch (CPU and CUDA) with `seed`."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def compute_pos_weight(y: np.ndarray, mode: str | None) -> np.ndarray | None:
    """"auto": clamp(neg/pos, 1, 30) per label (a label without positives gets 30); "none": None."""
    if mode is None or str(mode).lower() == "none":
        return None
    if str(mode).lower() != "auto":
        raise ValueError(f"pos_weight must be 'auto' or 'none', got {mode!r}")
    pos = y.sum(axis=0).astype(np.float64)
    neg = y.shape[0] - pos
    w = np.divide(neg, pos, out=np.full_like(pos, POS_WEIGHT_MAX), where=pos > 0)
    return np.clip(w, 1.0, POS_WEIGHT_MAX).astype(np.float32)


def soft_target_record(targets: np.ndarray) -> dict:
    """What a sidecar's trained_on keeps of the soft targets a head was trained on: {"targets":
    "soft", "targets_sha256": the SHA-256 of the (n, L) float32 C-order bytes, "targets_mean":
    per-column means (L floats)}. A distillation test recomputes the digest from the teacher's
    scores. Raises nothing for a 2-D numeric array."""
    import hashlib

    t = np.ascontiguousarray(np.asarray(targets, dtype=np.float32))
    return {"targets": "soft", "targets_sha256": hashlib.sha256(t.tobytes()).hexdigest(),
            "targets_mean": [round(float(x), 6) for x in (t.mean(axis=0) if len(t) else np.zeros(t.shape[1]))]}


def _check_positives(head: str, labels: list[str], y_train: np.ndarray, y_dev: np.ndarray, log: Callable) -> None:
    """Say up front what this run cannot learn or tune."""
    train_pos = y_train.sum(axis=0)
    if not train_pos.any():
        raise DataError(f"[{head}] none of the {len(labels)} label(s) has a positive example in the "
                        f"{len(y_train)} training examples: there is nothing to learn. Fix: check that the "
                        "training data carries labels and that they are spelled as in the label list.")
    no_train = [lab for lab, n in zip(labels, train_pos) if n == 0]
    if no_train:
        log(f"[{head}] WARNING: {_labels_have(no_train)} no positives in train: "
            + ("it cannot be learned; it will score ~0" if len(no_train) == 1 else
               "they cannot be learned; each will score ~0") + " (add positive examples to the training data).")
    no_dev = [lab for lab, n in zip(labels, y_dev.sum(axis=0)) if n == 0]
    if len(y_dev) == 0:
        log(f"[{head}] note: no dev data: thresholds stay at 0.5 and there is no early stopping.")
    elif no_dev:
        log(f"[{head}] note: {_labels_have(no_dev)} no positives in dev: "
            + ("its threshold cannot be tuned; kept at 0.5." if len(no_dev) == 1 else
               "their thresholds cannot be tuned; kept at 0.5."))


def _labels_have(names: list[str]) -> str:
    return f"label {names[0]} has" if len(names) == 1 else f"{len(names)} labels ({', '.join(names)}) have"


@contextlib.contextmanager
def _hf_progress_bars(enabled: bool):
    """transformers' own bars (e.g. "Writing model shards") follow train_head's `progress` too."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()


def _length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                             pool: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length inside pools of `pool` batches, cut, shuffle the batch order."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * pool
    batches = []
    for s in range(0, len(perm), chunk):
        c = perm[s:s + chunk]
        c = c[np.argsort(lengths[c], kind="stable")]
        batches.extend(c[i:i + batch_size] for i in range(0, len(c), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"out_dir {out_dir} exists and is not a directory")
        entries = list(out_dir.iterdir())
        if entries and not ((out_dir / SIDECAR).exists() or (out_dir / WEIGHTS).exists()):
            raise FileExistsError(f"out_dir {out_dir} is a non-empty directory that is not a head artifact; "
                                  "refusing to overwrite it")


def _readable(directory: Path) -> None:
    """mkdtemp makes the staging directory (and safetensors its file) owner-only: give the artifact
    the modes of a file written normally, so the job running as another user can read it."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [directory, *directory.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _publish(staging: Path, out_dir: Path) -> None:
    _readable(staging)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)


def _build(arch: str, labels: list[str], train_texts: list[str], staging: Path, max_length: int, size: str,
           device: torch.device, log: Callable, tokenizer: str = "char",
           dictionary: Sequence[str] = (), embeddings: str | None = None) -> tuple[LoadedHead, dict]:
    spec = HeadSpec(head="<training>", arch=arch, labels=list(labels), thresholds=[0.5] * len(labels),
                    enabled=[True] * len(labels), max_length=int(max_length), version="untrained")
    if arch == "textcnn":
        from .textcnn import DEFAULT_HPARAMS, build_textcnn
        from .words import UNIT_VOCAB, UnitVocab, check_tokenizer, text_block, write_dictionary

        hp = dict(DEFAULT_HPARAMS)
        if check_tokenizer(tokenizer) == "char":
            vocab = CharVocab.build(train_texts, lowercase=hp["lowercase"])
            vocab.save(staging / VOCAB)
            info = {}
        else:  # the chars and/or jieba words of each text (models/words.py), the team dictionary kept whole
            vocab = UnitVocab.build(train_texts, tokenizer, dictionary, max_length)
            vocab.save(staging / UNIT_VOCAB)
            write_dictionary(staging, dictionary)
            info = {"text": text_block(tokenizer, dictionary)}
            spec.extra["text"] = info["text"]
        model = build_textcnn(len(vocab), len(labels), hp)
        hp["vocab_size"] = len(vocab)
        if embeddings:
            info["embeddings"] = _init_embeddings(model, vocab.tokens, embeddings, log)
        return LoadedHead(spec, model.to(device), device, vocab=vocab), {"textcnn": hp, **info}
    from .bert_head import build_model, make_config
    from .tokenization import build_wordpiece_tokenizer

    tokenizer = build_wordpiece_tokenizer(train_texts, staging, model_max_length=max_length)
    config = make_config(size, len(tokenizer), labels, max_length, pad_token_id=tokenizer.pad_token_id)
    model = build_model(config)
    info = {"bert": {"size": size, "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
                     "num_attention_heads": config.num_attention_heads, "vocab_size": len(tokenizer)}}
    return LoadedHead(spec, model.to(device), device, tokenizer=tokenizer), info


def _init_embeddings(model: torch.nn.Module, units: Sequence[str], path: str, log: Callable) -> dict:
    """Initialise the TextCNN's embedding rows found in the word2vec file `path`; log and return
    the share of the vocabulary found (the sidecar's `embeddings` record)."""
    from .embeddings import init_embedding_rows

    with torch.no_grad():
        found = init_embedding_rows(model.embedding.weight.data, list(units), path)
    n = max(len(units) - 2, 1)
    log(f"embeddings {path}: {len(found):,} of {n:,} vocabulary units found ({len(found) / n:.1%}); "
        "the others keep their random initialisation")
    return {"file": str(Path(path).resolve()), "found": len(found), "vocabulary": n,
            "share": round(len(found) / n, 4)}


def _optimizer(arch: str, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    if arch == "textcnn":
        return torch.optim.Adam(model.parameters(), lr=lr)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def _schedule(arch: str, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    # linear decay to 10% over the planned steps; BERT warms up over the first ~third epoch
    warmup = 0 if arch == "textcnn" else max(1, min(steps_per_epoch // 3, total_steps // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, total_steps - warmup)
        return max(0.1, 1.0 - 0.9 * frac)

    return factor


def _evaluate(head: LoadedHead, dev_texts: list[str], y_dev: np.ndarray) -> tuple[float, float, np.ndarray]:
    proba = head.predict_proba(dev_texts, batch_size=EVAL_BATCH_SIZE)
    thr = best_f1_thresholds(y_dev, proba)
    tuned = label_report(y_dev, passes(proba, thr), head.spec.labels)["macro_f1"]
    at05 = label_report(y_dev, proba >= 0.5, head.spec.labels)["macro_f1"]
    return tuned, at05, proba


def training_threads(cores: int | None = None) -> int:
    """torch intra-op threads for training on this machine: `cores` (None: the CPUs this process may
    run on, os.sched_getaffinity, else os.cpu_count) capped at TRAINING_THREADS_MAX. Returns an
    int >= 1; raises nothing. Why a cap (docs/models.md#training-time): the demo heads are small,
    a second thread buys little, and when another job takes a core every parallel region waits for
    the descheduled thread, which made training up to twentyfold slower on a busy 2-core machine."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
    return max(1, min(int(cores), TRAINING_THREADS_MAX))


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with torch.set_num_threads(threads) (None: leave the setting alone), restoring
    the previous count afterwards, also on an error. Raises ValueError for threads < 1."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cap_examples(label_lists: Sequence[Sequence[str]], labels: Sequence[str], cap: int, seed: int = 0,
                 min_positives: int = CAP_MIN_POSITIVES) -> np.ndarray:
    """Which examples to train on when there are more than `cap`: the sorted indices of at most
    `cap` of the examples whose label lists are `label_lists`, stratified so that rare labels keep
    their positives. The quota is min(min_positives, cap // (2 * len(labels))); each rare label of
    `labels` (one a uniform draw would give fewer positives than the quota), rarest first, is topped
    up to min(its positives, the quota) kept positives, drawn at random; the rest of the cap is filled by a uniform random draw from the
    examples not yet kept, so common labels and negatives keep their shares. Deterministic for a given `seed`. Returns all indices when there are at most
    `cap` examples. Raises ValueError if cap < 1."""
    n = len(label_lists)
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    y = binarize(label_lists, labels).astype(bool)
    quota = min(int(min_positives), cap // (2 * max(1, len(labels))))
    kept = np.zeros(n, dtype=bool)
    positives = y.sum(axis=0)
    for j in np.argsort(positives, kind="stable"):
        if positives[j] * cap / n >= quota:
            break  # a uniform draw gives this label (and every commoner one) its quota already
        need = min(int(positives[j]), quota) - int((kept & y[:, j]).sum())
        if need > 0:
            candidates = np.flatnonzero(y[:, j] & ~kept)
            kept[rng.choice(candidates, size=need, replace=False)] = True
    room = cap - int(kept.sum())
    if room > 0:
        kept[rng.choice(np.flatnonzero(~kept), size=room, replace=False)] = True
    return np.flatnonzero(kept)


def train_head(*, arch: str, head: str, labels: list[str], train_texts: list[str], train_labels: list[list[str]],
               dev_texts: list[str], dev_labels: list[list[str]], out_dir: str, epochs: int | None = None,
               max_length: int | None = None, lr: float | None = None, batch_size: int = 32, seed: int = 0,
               pos_weight: str = "auto", size: str = "small", log: Callable[..., object] = print,
               patience: int | None = None, device: str | None = None, progress: bool | None = None,
               source: dict | None = None, tokenizer: str = "char", dictionary: Sequence[str] = (),
               c: float | None = None, min_df: int | None = None, max_features: int | None = None,
               embeddings: str | None = None, max_examples: int | None = None,
               soft_targets: np.ndarray | None = None) -> TrainResult:
    """Train a head and write its artifact to `out_dir` (replaced if it already holds a head).

    epochs / lr / max_length / patience None -> per-arch DEFAULTS. Early stopping: stop after
    `patience` epochs without a dev macro-F1 gain, or at once on a perfect dev score; the best
    epoch's weights are kept. device None: cuda if available, else cpu. progress: None (default)
    draws a tqdm bar per epoch on stderr on a terminal (tagger.models.progress.on_terminal) and
    otherwise logs a line with elapsed time and ETA every 10% of the epoch's batches or 30 s;
    True forces the bar, False shows neither. Labels without train positives are
    named in a WARNING before training; if no label has any, DataError (a ValueError). source:
    where the examples came from (files, format), kept in the sidecar under trained_on.source.
    tokenizer: char | word | char+word (textcnn and linear; models/words.py), dictionary: the team
    dictionary's entries for word cutting. arch "linear" is trained by
    models/linear_training.py train_linear_head (c, min_df, max_features are its options; the
    epoch options do not apply). embeddings: a word2vec text file whose vectors initialise the
    textcnn's embedding rows (models/embeddings.py; the share found is logged and kept in the
    sidecar); EmbeddingsError (a ValueError) for a bad file or another dimension, ValueError for
    another arch. max_examples: train on at most this many of the training examples, a stratified
    draw that keeps the rare labels' positives (cap_examples; None: all); a textcnn or bert
    sidecar's trained_on records n_train and n_train_available. soft_targets: an (n_train, L) float
    array in [0, 1] trained on instead of the 0/1 matrix of `train_labels` (distillation,
    tagger/training/distill.py: a teacher's scores, gold labels where given); `train_labels` then
    only names each example's positives for the logs and the max_examples draw; the BCE loss (and
    pos_weight "auto", from the column sums) takes the floats as they are. ValueError for another
    shape or values outside [0, 1]."""
    if soft_targets is not None:
        soft_targets = np.asarray(soft_targets, dtype=np.float32)
        if soft_targets.shape != (len(train_texts), len(labels)):
            raise ValueError(f"soft_targets must have shape ({len(train_texts)}, {len(labels)}), got {soft_targets.shape}")
        if soft_targets.size and (not np.isfinite(soft_targets).all() or soft_targets.min() < 0 or soft_targets.max() > 1):
            raise ValueError("soft_targets must be finite values in [0, 1]")
    if embeddings and arch != "textcnn":
        raise ValueError(f"embeddings initialise a textcnn's embedding table; arch {arch!r} has none")
    available = len(train_texts)
    if max_examples is not None and len(train_texts) == len(train_labels) and available > max_examples:
        keep = cap_examples(train_labels, labels, max_examples, seed)
        train_texts = [train_texts[i] for i in keep]
        train_labels = [train_labels[i] for i in keep]
        if soft_targets is not None:
            soft_targets = soft_targets[keep]
        log(f"[{head}] training on {len(keep):,} of {available:,} examples (max_examples, stratified: each label "
            f"keeps at least {min(CAP_MIN_POSITIVES, max_examples // (2 * max(1, len(labels)))):,} positives or all it has)")
    if arch == "linear":
        from .linear_training import train_linear_head

        return train_linear_head(head=head, labels=labels, train_texts=train_texts, train_labels=train_labels,
                                 dev_texts=dev_texts, dev_labels=dev_labels, out_dir=out_dir, tokenizer=tokenizer,
                                 dictionary=dictionary, max_length=max_length, c=c, min_df=min_df,
                                 max_features=max_features, pos_weight=pos_weight, seed=seed, log=log, source=source,
                                 soft_targets=soft_targets)
    t0 = time.time()
    if arch not in DEFAULTS:
        raise ValueError(f"arch must be one of {sorted(DEFAULTS)}, got {arch!r}")
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError("labels must be a non-empty list of distinct names")
    if len(train_texts) != len(train_labels) or len(dev_texts) != len(dev_labels):
        raise ValueError("texts and label lists must have the same length")
    if not len(train_texts):
        raise ValueError("no training data")
    d = DEFAULTS[arch]
    epochs = int(epochs if epochs is not None else d["epochs"])
    lr = float(lr if lr is not None else d["lr"])
    max_length = int(max_length if max_length is not None else d["max_length"])
    patience = int(patience if patience is not None else d["patience"])
    batch_size = max(1, int(batch_size))
    dev_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out_dir)
    _check_out_dir(out)

    seed_everything(seed)
    rng = np.random.default_rng(seed)
    train_texts = normalize_texts(train_texts)
    dev_texts = normalize_texts(dev_texts)
    y_train = binarize(train_labels, labels).astype(np.float32) if soft_targets is None else soft_targets
    y_dev = binarize(dev_labels, labels)
    _check_positives(head, labels, y_train, y_dev, log)
    pw = compute_pos_weight(y_train, pos_weight)
    bar = on_terminal() if progress is None else progress  # None: lines through `log` off a terminal

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        loaded, arch_info = _build(arch, labels, train_texts, staging, max_length, size, dev_, log,
                                   tokenizer if arch == "textcnn" else "char", dictionary, embeddings)
        model = loaded.model
        ids, lengths = loaded.encode(train_texts)
        min_width = model.min_width if arch == "textcnn" else 1
        log(f"[{head}] {arch}{'/' + size if arch == 'bert' else ''}: train={len(train_texts)} dev={len(dev_texts)} "
            f"labels={len(labels)} vocab={arch_info[arch]['vocab_size']}"
            f"{' tokenizer=' + tokenizer if arch == 'textcnn' and tokenizer != 'char' else ''} max_length={max_length} epochs<={epochs} "
            f"lr={lr:g} batch={batch_size} device={dev_} positives={y_train.sum(axis=0).astype(int).tolist()} "
            f"pos_weight={None if pw is None else [round(float(w), 2) for w in pw]}")

        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=None if pw is None else torch.from_numpy(pw).to(dev_))
        opt = _optimizer(arch, model, lr)
        steps_per_epoch = (len(train_texts) + batch_size - 1) // batch_size
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(arch, epochs * steps_per_epoch, steps_per_epoch))
        y_t = torch.from_numpy(y_train)
        best = (-1.0, 0, None)  # (score, epoch, state)
        history = []
        bad_epochs = 0
        epoch = 0
        for epoch in range(1, epochs + 1):
            te = time.time()
            model.train()
            total, count = 0.0, 0
            batches = _length_bucketed_batches(lengths, batch_size, rng)
            with Progress(len(batches), f"[{head}] epoch {epoch}/{epochs}", log=log, unit="batch", bar=bar,
                          enabled=progress is not False) as shown:
                for idx in batches:
                    width = max(int(lengths[idx].max()), min_width)
                    x = torch.from_numpy(np.ascontiguousarray(ids[idx, :width])).to(dev_, torch.long)
                    lens = torch.from_numpy(lengths[idx]).to(dev_)
                    yb = y_t[idx].to(dev_)
                    loss = loss_fn(loaded._logits(x, lens, None), yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if arch == "bert":
                        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    total += loss.item() * len(idx)
                    count += len(idx)
                    shown.update(1)
            train_loss = total / max(1, count)
            if len(dev_texts):
                tuned, at05, _ = _evaluate(loaded, dev_texts, y_dev)
            else:
                tuned = at05 = float("nan")
            secs = time.time() - te
            history.append({"epoch": epoch, "loss": round(train_loss, 6), "dev_macro_f1": round(tuned, 6),
                            "dev_macro_f1_at_0.5": round(at05, 6), "seconds": round(secs, 2)})
            log(f"[{head}] epoch {epoch}/{epochs} loss {train_loss:.4f} dev macro-F1 {tuned:.4f} "
                f"(@0.5 {at05:.4f}) {secs:.1f}s")
            if not len(dev_texts):
                continue
            if tuned > best[0]:
                best = (tuned, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
                bad_epochs = 0
            else:
                bad_epochs += 1
            if tuned >= 1.0 and at05 >= 1.0:
                log(f"[{head}] perfect dev score, stopping")
                break
            if bad_epochs >= patience and epoch < epochs:
                log(f"[{head}] no dev gain for {bad_epochs} epoch(s), stopping; best epoch {best[1]}")
                break
        epochs_run = epoch
        if best[2] is not None:
            model.load_state_dict(best[2])
        model.eval()

        if len(dev_texts):
            proba = loaded.predict_proba(dev_texts, batch_size=EVAL_BATCH_SIZE)
            thresholds = best_f1_thresholds(y_dev, proba, THRESHOLD_GRID)
            report = label_report(y_dev, passes(proba, thresholds), labels)
            r05 = label_report(y_dev, proba >= 0.5, labels)
            report["macro_f1_at_0.5"] = r05["macro_f1"]
            report["micro_f1_at_0.5"] = r05["micro_f1"]
        else:
            thresholds = [0.5] * len(labels)
            report = {"labels": {}, "macro_f1": 0.0, "micro_f1": 0.0, "note": "no dev data"}
        report["thresholds"] = dict(zip(labels, thresholds))
        report["best_epoch"] = best[1] or epochs_run
        report["epochs_run"] = epochs_run
        report["history"] = history

        # -- write the artifact -----------------------------------------------------------------
        if arch == "textcnn":
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(staging / WEIGHTS), metadata={"format": "pt"})
        else:
            from .bert_head import save_hf_dir

            with _hf_progress_bars(bar):
                save_hf_dir(model, loaded.tokenizer, staging)
        seconds = time.time() - t0
        spec = HeadSpec(
            head=head, arch=arch, labels=labels, thresholds=[float(t) for t in thresholds],
            enabled=[True] * len(labels), max_length=max_length,
            version=weights_version(head, staging / WEIGHTS),
            extra={
                "trained_on": {
                    "n_train": len(train_texts), "n_train_available": available, "n_dev": len(dev_texts),
                    "train_positives": dict(zip(labels, y_train.sum(axis=0).round().astype(int).tolist())),
                    "dev_positives": dict(zip(labels, y_dev.sum(axis=0).astype(int).tolist())),
                    **(soft_target_record(soft_targets) if soft_targets is not None else {}),
                    "epochs": epochs_run, "max_epochs": epochs, "best_epoch": report["best_epoch"],
                    "lr": lr, "batch_size": batch_size, "seed": seed, "pos_weight": pos_weight,
                    "pos_weight_values": None if pw is None else [float(x) for x in pw],
                    "max_length": max_length, "seconds": round(seconds, 1), "device": str(dev_),
                    "torch": torch.__version__,
                    **({"source": source} if source else {}),
                },
                "metrics": {k: v for k, v in report.items() if k != "history"},
                **arch_info,
            },
        )
        write_spec(staging, spec)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    loaded.spec = spec
    loaded.path = str(out)
    log(f"[{head}] saved {out} version {spec.version}: dev macro-F1 {report['macro_f1']:.4f} "
        f"micro-F1 {report['micro_f1']:.4f} in {seconds:.1f}s")
    return TrainResult(path=str(out), spec=spec, dev_report=report, seconds=seconds, head=loaded)


def build_random_bert_head(out_dir: str | os.PathLike, labels: Sequence[str], vocab_texts: Sequence[str],
                           size: str = "bert-base", max_length: int = 512, head: str = "random-bert",
                           seed: int = 0) -> HeadSpec:
    """Save an untrained BERT head (random weights, WordPiece vocab built on `vocab_texts`) in the
    standard artifact format, for inference speed benchmarks."""
    from .bert_head import build_model, make_config, save_hf_dir
    from .tokenization import build_wordpiece_tokenizer

    labels = list(labels)
    out = Path(out_dir)
    _check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        tokenizer = build_wordpiece_tokenizer(normalize_texts(vocab_texts), staging, model_max_length=max_length)
        config = make_config(size, len(tokenizer), labels, max_length, pad_token_id=tokenizer.pad_token_id)
        model = build_model(config).eval()
        with _hf_progress_bars(on_terminal()):  # no "Writing model shards" bar in a log file
            save_hf_dir(model, tokenizer, staging)
        spec = HeadSpec(head=head, arch="bert", labels=labels, thresholds=[0.5] * len(labels),
                        enabled=[True] * len(labels), max_length=int(max_length),
                        version=weights_version(head, staging / WEIGHTS),
                        extra={"trained_on": {"note": "random weights, speed benchmarks only", "seed": seed},
                               "metrics": {},
                               "bert": {"size": size, "hidden_size": config.hidden_size,
                                        "num_hidden_layers": config.num_hidden_layers,
                                        "num_attention_heads": config.num_attention_heads,
                                        "vocab_size": len(tokenizer)}})
        write_spec(staging, spec)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return spec


__all__ = ["TrainResult", "train_head", "build_random_bert_head", "compute_pos_weight", "DEFAULTS", "ArtifactError"]
