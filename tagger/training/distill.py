"""`tagger distill`: distil a head (the teacher, e.g. the P0 BERT head) into a fast student
(textcnn or linear) trained on the teacher's soft scores over unlabelled text.

Steps (`distill` below; the CLI is tagger/cli/model_commands.py distill_command):

1. the unlabelled texts: a JSON-lines file (`{"text": ...}`, read by `read_unlabelled`) or the
   pool of a date range (`pool_scores`: the job's extract and normalize, so the student reads the
   doc_text the job will give it, scored by the teacher inside Spark with mapInPandas); with
   `gate` (a gate head, e.g. models/gate for P0) only the texts the gate passes, as the job's
   cascade runs a gated head;
2. the teacher scores them (`score_texts` on the driver, batch by batch with progress lines; or
   in Spark), scores rounded as the job rounds them (4 decimals);
3. `distill_targets`: per item and label the teacher's score, or, with `use_gold`, the gold 0/1
   labels of a row that carries a "labels" list (rule: **gold where present, else the teacher**;
   a row without a "labels" key is unlabelled);
4. a share of the items (`holdout`, default 10%) is kept out of training: the student's early
   stopping and thresholds are tuned on it against the teacher's decisions when no `--dev` file
   is given, and the agreement figures are reported on it as well as on all items;
5. the student trains on the soft targets: textcnn with the usual torch loop (BCE with float
   targets, tagger.models.training.train_head soft_targets), linear with scikit-learn (each text
   fitted as a positive with weight p and a negative with weight 1 - p, models/linear_training.py);
6. thresholds: with `--dev` (labelled) the student is tuned on it like any head (early stopping,
   F1-best thresholds) and then, when the teacher's sidecar has a `calibration` block, calibrated
   with the same target precision, confidence, objective and minimum positives
   (models/calibrate.py), so both heads decide under the same rule; without `--dev`, the
   thresholds are the F1-best ones against the teacher's decisions on the held-out items. The
   teacher's decision block (top_k / min_labels / max_labels), if any, is copied;
7. the report (`build_report`): per label the student's agreement with the teacher (share of items
   where both decide the same, Pearson correlation of the two scores), and on a labelled test file
   both heads' precision/recall/F1, macro-F1 and the share of the teacher's macro-F1 the student
   keeps; items/s of both heads on the same texts with the same batch size and torch threads,
   measured in the same run, alternately.

The student directory is an ordinary head artifact (same head name and labels as the teacher, so
it can replace it at the head's path in the job config); its sidecar's `distilled_from` names the
teacher's head, arch, version and path, and trained_on.source says where the texts came from.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger.models.data import DataError

DEFAULT_HOLDOUT = 0.1
REPORT_FILE = "distill_report.json"
STUDENT_ARCHS = ("textcnn", "linear")


@dataclass
class Unlabelled:
    """Unlabelled texts for distillation: `texts` (n), `gold` (n, each a list of label names or None
    for a row without gold), `itemids` (n, None where the row had none) and `source` (a dict for the
    sidecar: file or dates, n)."""
    texts: list[str]
    gold: list[list[str] | None]
    itemids: list[str | None]
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def read_unlabelled(path: str | os.PathLike) -> Unlabelled:
    """Read a JSON-lines file of `{"text": str, "labels": [names] (optional), "itemid": (optional)}`.
    Texts are normalized as the job normalizes doc_text (tagger.models.text.clean_text), like the
    labelled files. Empty lines are skipped; a row whose "labels" key is present carries gold labels (possibly an
    empty list: gold with no label), else its gold is None. Raises DataError for a missing file, a
    line that is not a JSON object with a string "text", a "labels" that is not a list of strings,
    or a file without rows."""
    from tagger.models.text import clean_text

    p = Path(path)
    if not p.is_file():
        raise DataError(f"--unlabeled {p}: no such file. Fix: give a JSON-lines file of {{\"text\": ...}} rows.")
    texts, gold, ids = [], [], []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}:{n}: not JSON ({exc.msg}). Fix: one JSON object per line.") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"{p}:{n}: a row must be a JSON object with a string \"text\". "
                                "Fix: write {\"text\": \"...\"} per line.")
            labels = row.get("labels")
            if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
                raise DataError(f"{p}:{n}: \"labels\" must be a list of label names, got {labels!r}.")
            texts.append(clean_text(row["text"]))  # as the job normalizes doc_text (and read_examples does)
            gold.append(labels if "labels" in row else None)
            ids.append(None if row.get("itemid") is None else str(row["itemid"]))
    if not texts:
        raise DataError(f"--unlabeled {p}: the file has no rows: there is nothing for the teacher to score. "
                        "Fix: give a file with {\"text\": ...} rows (or a date range with data).")
    return Unlabelled(texts, gold, ids, {"file": str(p.resolve()), "n": len(texts)})


def score_texts(head, texts: Sequence[str], batch_size: int = 64, log: Callable[[str], object] | None = print,
                desc: str = "teacher scoring") -> np.ndarray:
    """The head's scores for `texts` as the job writes them: (n, L) float64 rounded to 4 decimals
    (tagger.models.decision.round_scores). `head`: a loaded head (load_head); `log`, when given,
    gets progress lines (a bar on a terminal) as batches complete. Raises what predict_proba raises."""
    from tagger.models.decision import round_scores
    from tagger.models.progress import Progress

    texts = list(texts)
    members = len(getattr(head, "members", ())) or 1
    with Progress(len(texts) * members, desc, log=log or print, unit="text", enabled=log is not None) as shown:
        proba = head.predict_proba(texts, batch_size=batch_size,
                                   **({"progress": shown.update} if log is not None else {}))
    return round_scores(proba)


_WORKER_HEADS: dict = {}


def _worker_head(path: str, version: str, threads: int | None):
    """The teacher loaded once per Python worker (keyed by path and version)."""
    key = (path, version)
    if key not in _WORKER_HEADS:
        import torch

        from tagger.models.loading import load_head

        if threads:
            torch.set_num_threads(int(threads))
        if len(_WORKER_HEADS) > 4:  # a worker reused by another distillation: drop the old heads
            _WORKER_HEADS.clear()
        _WORKER_HEADS[key] = load_head(path)
    return _WORKER_HEADS[key]


def gate_passes(gate, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Which of `texts` the gate head `gate` (a loaded head) passes, as the job's cascade decides it:
    its first label's decision on the rounded scores (udfs/cascade.py). Returns an (n,) bool array."""
    from tagger.models.decision import round_scores

    if not len(texts):
        return np.zeros(0, dtype=bool)
    return gate.decide(round_scores(gate.predict_proba(list(texts), batch_size=batch_size)))[:, 0]


def score_partitions(path: str, version: str, batch_size: int = 64, threads: int | None = 1,
                     gate: tuple[str, str] | None = None):
    """A mapInPandas function: batches of (itemid, doc_text) -> (itemid, doc_text, scores array<double>),
    the teacher at `path` (loaded once per worker, `threads` torch threads) scoring doc_text; scores
    rounded to 4 decimals. Rows with an empty or null doc_text are dropped; with `gate` (the gate
    head's path and version) so are the rows the gate does not pass (gate_passes)."""

    def run(batches):
        import pandas as pd

        from tagger.models.decision import round_scores

        head = _worker_head(path, version, threads)
        gate_head = _worker_head(*gate, threads) if gate else None
        for pdf in batches:
            pdf = pdf[pdf["doc_text"].map(lambda t: isinstance(t, str) and bool(t))]
            if gate_head is not None and not pdf.empty:
                pdf = pdf[gate_passes(gate_head, pdf["doc_text"].tolist(), batch_size)]
            if pdf.empty:
                continue
            scores = round_scores(head.predict_proba(pdf["doc_text"].tolist(), batch_size=batch_size))
            yield pd.DataFrame({"itemid": pdf["itemid"].astype(str).values, "doc_text": pdf["doc_text"].values,
                                "scores": list(scores)})

    return run


SCORES_SCHEMA = "itemid string, doc_text string, scores array<double>"


def pool_scores(spark, cfg, dates: Sequence[str], teacher_dir: str, batch_size: int = 64, threads: int | None = 1,
                log: Callable[[str], object] = print, gate: str | None = None) -> tuple[Unlabelled, np.ndarray]:
    """The pool's items of `dates` (the job's extract and normalize: the doc_text the job tags),
    scored by the teacher at `teacher_dir` inside Spark (one mapInPandas pass, the teacher loaded
    once per Python worker), collected to the driver. Returns (Unlabelled without gold, (n, L)
    float64 scores). Every selected item with text is scored, or with `gate` (a gate head directory,
    e.g. models/gate for P0) only those the gate passes, as the job's cascade runs a gated head.
    Raises MissingInputError
    for a date whose inputs are missing, DataError when the range has no item with text."""
    from functools import reduce

    from tagger.job.extract import pool_items
    from tagger.models.spec import artifact_version

    frames = [pool_items(spark, cfg, date).select("itemid", "doc_text") for date in dates]
    items = reduce(lambda a, b: a.unionByName(b), frames)
    started = time.perf_counter()
    fn = score_partitions(str(Path(teacher_dir).resolve()), artifact_version(teacher_dir), batch_size, threads,
                          (str(Path(gate).resolve()), artifact_version(gate)) if gate else None)
    pdf = items.mapInPandas(fn, SCORES_SCHEMA).toPandas()
    if pdf.empty:
        raise DataError(f"the pool of {dates[0]}..{dates[-1]} has no item with text: there is nothing for the teacher "
                        "to score. Fix: pass dates that have data (tagger sql \"SHOW PARTITIONS ...\").")
    log(f"teacher scored {len(pdf):,} pool items of {dates[0]}..{dates[-1]}{' passed by the gate' if gate else ''} in Spark in "
        f"{time.perf_counter() - started:.1f}s")
    scores = np.stack([np.asarray(s, dtype=np.float64) for s in pdf["scores"]])
    data = Unlabelled(pdf["doc_text"].tolist(), [None] * len(pdf), pdf["itemid"].tolist(),
                      {"dates": [dates[0], dates[-1]], "n": len(pdf),
                       **({"gate": str(Path(gate).resolve())} if gate else {})})
    return data, scores


def distill_targets(scores: np.ndarray, gold: Sequence[Sequence[str] | None], labels: Sequence[str],
                    use_gold: bool = False) -> np.ndarray:
    """The student's training targets: (n, L) float32, row i = the teacher's `scores[i]`, or with
    `use_gold` and a gold list for row i (not None) its 0/1 labels over `labels`. Raises ValueError
    when the shapes disagree."""
    from tagger.models.metrics import binarize

    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2 or s.shape != (len(gold), len(labels)):
        raise ValueError(f"scores {s.shape} do not match {len(gold)} rows x {len(labels)} labels")
    out = s.copy()
    if use_gold:
        rows = [i for i, g in enumerate(gold) if g is not None]
        if rows:
            out[rows] = binarize([gold[i] for i in rows], labels).astype(np.float32)
    return out


MIN_UNLABELLED = 20  # unlabelled items with text, at the least, to train a student on


def holdout_split(n: int, share: float = DEFAULT_HOLDOUT, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), sorted, a seeded random `share` of range(n) held out
    (at least 1 item when share > 0 and n >= 2; none when share is 0). Raises ValueError for a share
    outside [0, 0.5] or when fewer than 2 items leave nothing to train on."""
    if not 0 <= share <= 0.5:
        raise ValueError(f"holdout must be in [0, 0.5], got {share}")
    if n < 2:
        raise DataError(f"{n} unlabelled item(s): too few to train a student. Fix: give more unlabelled text.")
    k = 0 if share == 0 else max(1, int(round(n * share)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two 1-D arrays; None when either is constant or empty."""
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def agreement(teacher_dec: np.ndarray, student_dec: np.ndarray, teacher_scores: np.ndarray,
              student_scores: np.ndarray, labels: Sequence[str]) -> dict:
    """Student-vs-teacher agreement over n items: per label {"agreement": share of items where both
    decide the same, "correlation": Pearson r of the two scores (None when one is constant),
    "teacher_positive", "student_positive": items each decides yes, "both_positive"}, plus "n",
    "mean_agreement" (mean over labels) and "exact_match" (share of items with identical decisions on
    every label). Inputs: (n, L) bool decisions and (n, L) float scores. Raises ValueError on shapes."""
    t, s = np.asarray(teacher_dec, bool), np.asarray(student_dec, bool)
    ts, ss = np.asarray(teacher_scores, float), np.asarray(student_scores, float)
    if not (t.shape == s.shape == ts.shape == ss.shape) or t.shape[1] != len(labels):
        raise ValueError(f"shapes disagree: {t.shape} {s.shape} {ts.shape} {ss.shape}, {len(labels)} labels")
    per = {}
    for j, name in enumerate(labels):
        per[name] = {"agreement": float((t[:, j] == s[:, j]).mean()) if len(t) else 0.0,
                     "correlation": _pearson(ts[:, j], ss[:, j]),
                     "teacher_positive": int(t[:, j].sum()), "student_positive": int(s[:, j].sum()),
                     "both_positive": int((t[:, j] & s[:, j]).sum())}
    return {"n": int(len(t)), "labels": per,
            "mean_agreement": float(np.mean([m["agreement"] for m in per.values()])) if per else 0.0,
            "exact_match": float((t == s).all(axis=1).mean()) if len(t) else 0.0}


def compare_on_test(y_true: np.ndarray, teacher_dec: np.ndarray, student_dec: np.ndarray,
                    labels: Sequence[str]) -> dict:
    """Both heads on a labelled test set: {"n", "teacher": label_report, "student": label_report,
    "retained": student macro-F1 / teacher macro-F1 (None when the teacher's is 0),
    "labels": {name: {"teacher_f1", "student_f1", "support"}}}. Inputs (n, L) 0/1 or bool arrays."""
    from tagger.models.metrics import label_report

    t = label_report(y_true, teacher_dec, labels)
    s = label_report(y_true, student_dec, labels)
    return {"n": int(len(y_true)), "teacher": t, "student": s,
            "retained": s["macro_f1"] / t["macro_f1"] if t["macro_f1"] else None,
            "labels": {n: {"teacher_f1": t["labels"][n]["f1"], "student_f1": s["labels"][n]["f1"],
                           "support": t["labels"][n]["support"]} for n in labels}}


def items_per_second(heads: dict, texts: Sequence[str], batch_size: int = 64, threads: int | None = 1,
                     repeats: int = 3) -> dict:
    """Scoring speed of each head in `heads` ({name: loaded head}) on the same `texts`, same
    `batch_size` and torch intra-op `threads` (None: as set), in this process: one warm-up batch
    each, then `repeats` rounds that time every head once in turn (alternating, so a change of
    machine load hits all). Returns {name: {"items_per_s": median rate, "runs": [rates],
    "seconds": [wall seconds]}}; each run is predict_proba over all texts (the job's tokenization
    and forward passes; no decisions). Raises ValueError for no texts."""
    from tagger.models.training import torch_threads

    texts = list(texts)
    if not texts:
        raise ValueError("no texts to time the heads on")
    out = {name: {"runs": [], "seconds": []} for name in heads}
    with torch_threads(threads):
        for head in heads.values():
            head.predict_proba(texts[:batch_size], batch_size=batch_size)
        for _ in range(max(1, repeats)):
            for name, head in heads.items():
                t0 = time.perf_counter()
                head.predict_proba(texts, batch_size=batch_size)
                secs = time.perf_counter() - t0
                out[name]["seconds"].append(round(secs, 4))
                out[name]["runs"].append(len(texts) / secs if secs > 0 else math.inf)
    for m in out.values():
        m["items_per_s"] = float(np.median(m["runs"]))
    return out


def _check_file_labels(name: str, path: str, label_lists, labels: Sequence[str]) -> list[str]:
    """Names in a labelled file that the teacher does not have: none in common is a DataError,
    some extra are returned (reported as a note)."""
    seen = sorted({x for row in label_lists for x in (row or [])})
    extra = [x for x in seen if x not in labels]
    if seen and len(extra) == len(seen):
        raise DataError(f"{name} {path}: none of its labels ({', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''}) "
                        f"is a label of the teacher ({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}). "
                        "Fix: give a file labelled with the teacher head's labels (e.g. the head's own "
                        "data/<head>/test.jsonl).")
    return extra


def distill(*, teacher: str, student_arch: str, out: str, unlabelled: Unlabelled | None = None,
            teacher_scores: np.ndarray | None = None, dev: str | None = None, test: str | None = None,
            use_gold: bool = False, holdout: float = DEFAULT_HOLDOUT, max_examples: int | None = None,
            batch_size: int = 64, threads: int | None = 1, speed_repeats: int = 3, seed: int = 0,
            gate: str | None = None, log: Callable[[str], object] = print, **train_options) -> dict:
    """Distil the head in `teacher` into a `student_arch` (textcnn | linear) head written to `out`,
    and return the report (also written to OUT/distill_report.json).

    `unlabelled`: the texts (read_unlabelled, or pool_scores's first value); `teacher_scores`:
    their (n, L) teacher scores when already computed (pool_scores), else they are scored here.
    `dev` / `test`: labelled JSON-lines or PaddleNLP files (models/data.py) over the teacher's
    labels. `use_gold`: rows of the unlabelled file with "labels" train on them instead of the
    teacher's scores. `holdout`: the share of items kept out of training (thresholds without dev,
    agreement). `max_examples`: train on at most this many (a draw stratified on the teacher's
    decisions). batch_size / threads: scoring and timing (torch threads for training too). `gate`:
    a gate head directory; the unlabelled texts it does not pass are dropped before the teacher
    scores them (gate_passes; ignored when `teacher_scores` are given: pool_scores gated them).
    `train_options`: train_head options (epochs, lr, max_length, c, min_df, tokenizer,
    pos_weight, ...). Raises ArtifactError (teacher not a head; the student not loadable), DataError
    (empty or unusable data, labels that do not match), FileExistsError (out not a head dir),
    ValueError for a bad arch or option."""
    from tagger.models.calibrate import calibrate_artifact
    from tagger.models.data import read_examples
    from tagger.models.loading import load_head
    from tagger.models.metrics import binarize
    from tagger.models.spec import read_spec, write_spec
    from tagger.models.training import cap_examples, torch_threads, train_head

    if student_arch not in STUDENT_ARCHS:
        raise ValueError(f"student arch must be one of {', '.join(STUDENT_ARCHS)}, got {student_arch!r}")
    if unlabelled is None or not len(unlabelled):
        raise DataError("the unlabelled set is empty: there is nothing for the teacher to score. "
                        "Fix: give --unlabeled FILE with {\"text\": ...} rows, or --start/--end dates with data.")
    with_text = sum(bool(t and t.strip()) for t in unlabelled.texts)
    if with_text < MIN_UNLABELLED:
        raise DataError(f"only {with_text:,} of the {len(unlabelled):,} unlabelled items have text: too few to train a "
                        f"student (at least {MIN_UNLABELLED}). Fix: give more unlabelled text (a longer --start/--end "
                        "range, or a bigger --unlabeled file).")
    if not dev and holdout == 0:
        raise DataError("--holdout 0 without --dev leaves nothing to tune the student's thresholds on. "
                        "Fix: give --dev FILE (labelled), or a holdout share above 0 (default 0.1).")
    if Path(out).resolve() == Path(teacher).resolve():
        raise DataError(f"--out {out} is the teacher's directory. Fix: write the student elsewhere.")
    t_spec = read_spec(teacher)
    labels = list(t_spec.labels)
    t_head = load_head(teacher, device="cpu")
    gold_extra = _check_file_labels("--unlabeled", unlabelled.source.get("file", "(pool)"),
                                     [g for g in unlabelled.gold if g is not None], labels) if use_gold else []
    if gold_extra:
        raise DataError(f"--unlabeled: gold labels {', '.join(gold_extra)} are not labels of the teacher "
                        f"{t_spec.head}. Fix: drop them, or leave out --use-gold.")
    devset = read_examples(dev) if dev else None
    testset = read_examples(test) if test else None
    notes = []
    for name, path, ex in (("--dev", dev, devset), ("--test", test, testset)):
        if ex is not None:
            extra = _check_file_labels(name, path, ex.labels, labels)
            if extra:
                notes.append(f"{name}: labels the teacher does not have (ignored): {', '.join(extra)}")
    for note in notes:
        log(f"note: {note}")

    with torch_threads(threads):
        if gate and teacher_scores is None:
            keep = gate_passes(load_head(gate, device="cpu"), unlabelled.texts, batch_size)
            log(f"gate {read_spec(gate).head} passed {int(keep.sum()):,} of {len(unlabelled):,} unlabelled texts")
            if not keep.any():
                raise DataError(f"the gate {gate} passed none of the {len(unlabelled):,} unlabelled texts: there is "
                                "nothing for the teacher to score. Fix: check --gate, or give more text.")
            rows = np.flatnonzero(keep)
            unlabelled = Unlabelled([unlabelled.texts[i] for i in rows], [unlabelled.gold[i] for i in rows],
                                    [unlabelled.itemids[i] for i in rows],
                                    {**unlabelled.source, "n": len(rows), "n_before_gate": len(keep),
                                     "gate": str(Path(gate).resolve())})
        if teacher_scores is None:
            teacher_scores = score_texts(t_head, unlabelled.texts, batch_size, log,
                                         desc=f"teacher {t_spec.head} scoring {len(unlabelled):,} texts")
        teacher_scores = np.asarray(teacher_scores, dtype=np.float64)
        if teacher_scores.shape != (len(unlabelled), len(labels)):
            raise DataError(f"teacher scores {teacher_scores.shape} do not match {len(unlabelled)} items x "
                            f"{len(labels)} labels")
        t_dec_all = t_head.decide(teacher_scores)
        targets = distill_targets(teacher_scores, unlabelled.gold, labels, use_gold)
        n_gold = sum(g is not None for g in unlabelled.gold) if use_gold else 0
        train_idx, hold_idx = holdout_split(len(unlabelled), holdout, seed)
        texts = unlabelled.texts
        # label lists standing for the targets: the teacher's decisions (gold where used), for the
        # stratified cap and the training logs
        decided = t_dec_all.copy()
        if n_gold:
            gold_rows = [i for i, g in enumerate(unlabelled.gold) if g is not None]
            decided[gold_rows] = targets[gold_rows] >= 0.5
        as_lists = [[labels[j] for j in np.flatnonzero(row)] for row in decided]
        if max_examples is not None and len(train_idx) > max_examples:
            keep = cap_examples([as_lists[i] for i in train_idx], labels, max_examples, seed)
            log(f"training on {len(keep):,} of {len(train_idx):,} items (--max-examples, stratified on the "
                "teacher's decisions)")
            train_idx = train_idx[keep]
        if devset is not None:
            dev_texts, dev_labels, tuned_on = devset.texts, devset.labels, f"dev file {dev}"
        else:
            dev_texts = [texts[i] for i in hold_idx]
            dev_labels = [as_lists[i] for i in hold_idx]
            tuned_on = f"the teacher's decisions on the {len(hold_idx):,} held-out items"
        source = {"kind": "distillation", "teacher": {"head": t_spec.head, "arch": t_spec.arch,
                                                      "version": t_spec.version, "path": str(Path(teacher).resolve())},
                  "unlabelled": unlabelled.source, "n_train": int(len(train_idx)), "n_holdout": int(len(hold_idx)),
                  "gold": f"{n_gold} rows trained on their gold labels" if use_gold else "not used",
                  "thresholds_tuned_on": tuned_on}
        log(f"student {student_arch}: {len(train_idx):,} items of soft targets, {len(hold_idx):,} held out; "
            f"thresholds tuned on {tuned_on}")
        opts = {k: v for k, v in train_options.items() if v is not None}
        if student_arch == "linear":
            for k in ("epochs", "lr", "patience", "size", "embeddings"):
                opts.pop(k, None)
        result = train_head(arch=student_arch, head=t_spec.head, labels=labels,
                            train_texts=[texts[i] for i in train_idx], train_labels=[as_lists[i] for i in train_idx],
                            dev_texts=dev_texts, dev_labels=dev_labels, out_dir=out, seed=seed, log=log,
                            source=source, soft_targets=targets[train_idx], **opts)
        spec = read_spec(out)
        spec.extra["distilled_from"] = source["teacher"]
        if t_spec.extra.get("decision"):
            spec.extra["decision"] = dict(t_spec.extra["decision"])
        write_spec(out, spec)
        cal = t_spec.extra.get("calibration")
        if devset is not None and cal:
            calibrate_artifact(out, devset.texts, devset.labels, precision=cal["target_precision"],
                               min_positives=cal.get("min_positives", 5), confidence=cal.get("confidence", 0.95),
                               objective=cal.get("objective", "recall"), data_path=dev, batch_size=batch_size)
            log(f"student calibrated on {dev} like the teacher: precision {cal['target_precision']}, confidence "
                f"{cal.get('confidence')}, objective {cal.get('objective')}, min positives {cal.get('min_positives')}")
        teacher_off = [lab for lab, on in zip(t_spec.labels, t_spec.enabled) if not on]
        if teacher_off:  # a student at the teacher's path must not emit a tag the teacher never emits
            off_spec = read_spec(out)
            off_spec.enabled = [on and t_on for on, t_on in zip(off_spec.enabled, t_spec.enabled)]
            off_spec.extra["disabled_reasons"] = {**(off_spec.extra.get("disabled_reasons") or {}),
                                                  **{lab: "switched off in the teacher" for lab in teacher_off}}
            write_spec(out, off_spec)
            log(f"switched off in the student as in the teacher: {', '.join(teacher_off)}")
        s_head = load_head(out, device="cpu")
        s_spec = read_spec(out)

        # -- agreement on the unlabelled set ------------------------------------------------------
        s_scores = score_texts(s_head, texts, batch_size, log, desc=f"student scoring {len(texts):,} texts")
        s_dec_all = s_head.decide(s_scores)
        report = {
            "teacher": {"path": str(Path(teacher).resolve()), "head": t_spec.head, "arch": t_spec.arch,
                        "version": t_spec.version},
            "student": {"path": str(Path(out).resolve()), "head": s_spec.head, "arch": s_spec.arch,
                        "version": s_spec.version, "seconds_to_train": round(result.seconds, 1)},
            "unlabelled": {**unlabelled.source, "n_train": int(len(train_idx)), "n_holdout": int(len(hold_idx)),
                           "n_gold": n_gold},
            "thresholds_tuned_on": tuned_on,
            "notes": notes,
            "labels": labels,
            "agreement": {"all": agreement(t_dec_all, s_dec_all, teacher_scores, s_scores, labels),
                          "holdout": agreement(t_dec_all[hold_idx], s_dec_all[hold_idx], teacher_scores[hold_idx],
                                               s_scores[hold_idx], labels)},
        }
        # -- both heads on the test file, and their speed -----------------------------------------
        speed_texts, speed_on = ([texts[i] for i in hold_idx], "the held-out unlabelled texts") if len(hold_idx) \
            else (texts, "the unlabelled texts")
        if testset is not None:
            y = binarize(testset.labels, labels)
            t_test = t_head.decide(score_texts(t_head, testset.texts, batch_size, None))
            s_test = s_head.decide(score_texts(s_head, testset.texts, batch_size, None))
            report["test"] = {"file": str(Path(test).resolve()), **compare_on_test(y, t_test, s_test, labels)}
            speed_texts, speed_on = testset.texts, f"the {len(testset):,} test texts"
        log(f"timing both heads on {speed_on} (batch {batch_size}, {threads or torch_threads_now()} torch thread(s), "
            f"{speed_repeats} alternating runs each)")
    speed = items_per_second({"teacher": t_head, "student": s_head}, speed_texts, batch_size, threads, speed_repeats)
    report["speed"] = {"texts": speed_on, "n": len(speed_texts), "batch_size": batch_size, "threads": threads,
                       "repeats": speed_repeats, **speed,
                       "speedup": speed["student"]["items_per_s"] / speed["teacher"]["items_per_s"]}
    Path(out, REPORT_FILE).write_text(json.dumps(_plain(report), ensure_ascii=False, indent=1), encoding="utf-8")
    return report


def torch_threads_now() -> int:
    """torch's current intra-op thread count."""
    import torch

    return torch.get_num_threads()


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _pad(name: str, width: int) -> str:
    """`name` left-aligned in `width` terminal columns (CJK characters take two)."""
    import unicodedata

    cols = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in name)
    return name + " " * max(0, width - cols)


def _f(x, fmt="{:.4f}") -> str:
    return "-" if x is None else fmt.format(x)


def format_report(report: dict) -> str:
    """The distillation report as a printed table: per label the agreement (share, score r) on all
    unlabelled items and on the held-out ones, the test F1 of teacher and student, then macro-F1,
    the share retained and items/s of both. KeyError for a report that lacks a part."""
    a_all, a_hold = report["agreement"]["all"], report["agreement"]["holdout"]
    test = report.get("test")
    t, s = report["teacher"], report["student"]
    lines = [f"teacher {t['head']} ({t['arch']}, {t['version']}) -> student {s['arch']} ({s['version']}), "
             f"{report['unlabelled']['n_train']:,} items trained on, {a_hold['n']:,} held out"]
    head = f"{'label':<14} {'agree(all)':>10} {'r(all)':>7} {'agree(held)':>11} {'r(held)':>8}"
    if test:
        head += f" {'test F1 T':>9} {'test F1 S':>9} {'support':>7}"
    lines.append(head)
    for name in report["labels"]:
        m, h = a_all["labels"][name], a_hold["labels"][name]
        held = _f(h["agreement"] if a_hold["n"] else None)
        row = (f"{_pad(name, 14)} {m['agreement']:>10.4f} {_f(m['correlation'], '{:.3f}'):>7} {held:>11} "
               f"{_f(h['correlation'], '{:.3f}'):>8}")
        if test:
            x = test["labels"][name]
            row += f" {x['teacher_f1']:>9.4f} {x['student_f1']:>9.4f} {x['support']:>7}"
        lines.append(row)
    if a_hold["n"]:
        lines.append(f"mean agreement {a_all['mean_agreement']:.4f} (held out {a_hold['mean_agreement']:.4f}); all labels "
                     f"the same on {a_all['exact_match']:.1%} of items (held out {a_hold['exact_match']:.1%})")
    else:
        lines.append(f"mean agreement {a_all['mean_agreement']:.4f}; all labels the same on {a_all['exact_match']:.1%} "
                     "of items (none held out: every item was trained on)")
    if test:
        lines.append(f"test ({test['n']:,} items): macro-F1 teacher {test['teacher']['macro_f1']:.4f}, student "
                     f"{test['student']['macro_f1']:.4f}, retained {_f(test['retained'], '{:.1%}')}")
    sp = report["speed"]
    lines.append(f"speed on {sp['texts']} (batch {sp['batch_size']}, {sp['threads']} thread(s), median of "
                 f"{sp['repeats']}): teacher {sp['teacher']['items_per_s']:,.0f} items/s, student "
                 f"{sp['student']['items_per_s']:,.0f} items/s, {sp['speedup']:.1f}x")
    return "\n".join(lines)


__all__ = ["Unlabelled", "read_unlabelled", "score_texts", "gate_passes", "score_partitions", "pool_scores", "distill_targets",
           "holdout_split", "agreement", "compare_on_test", "items_per_second", "distill", "format_report",
           "REPORT_FILE", "STUDENT_ARCHS"]
