"""`tagger bench`: items/s of the job's tagging stage against a plain-Python ceiling and the usual
Spark alternatives, on the same generated texts and the same model weights.

Variants (every one does the model work on the same texts, loaded from the same artifacts):

* ``raw``: `tagger.udfs.tagging.Tagger.tag` in the driver process, no Spark, on consecutive chunks of
  `spark.sql.execution.arrow.maxRecordsPerBatch` rows: rules + gate + multi-label heads on
  gated rows + tag ids, exactly the per-batch work of the job, with as many torch threads as the
  job's concurrent tasks use in all. This is the ceiling: the job's own code without Spark.
  Model loading is included (once), as in the job.
* ``raw_models_only`` (extra): the heads' `predict_proba` on the whole list at once with the same
  cascade, no rules and no tag building, models already loaded: what the models alone cost.
* ``job``: ``repartition(partitions, itemid).mapInPandas(tag_partitions(spec), OUTPUT_SCHEMA)``
  as in `tagger.job.pipeline.run_date`, from a cached input DataFrame to a persisted, counted result
  (the pipeline's own sink). Model loading in each Python worker is included; a small untimed
  warm-up job runs first so that JVM start-up and code generation are not counted.
* ``spark_overhead`` (extra): the same stage with a function that returns empty tags without
  touching a model: the cost of shuffle + Arrow + Python workers + sink on these rows.
* ``predict_batch_udf``: `pyspark.ml.functions.predict_batch_udf` whose predict function runs
  every head on every row (no cascade), batch_size = the job's batch size.
* ``row_udf``: a plain per-row Python UDF (the cascade on one text at a time, models cached in a
  module global once per worker), on a subset of items (floor).
* ``pandas_udf_reload``: a scalar pandas UDF that loads the heads for every Arrow batch, on the
  same subset (floor).
* int8 trial (extra, CPU): raw once more with every head's Linear layers in dynamic int8: speed,
  tag agreement with fp32 over all items and per head over the items that head ran on (the 99.5%
  bar), and whether a row's scores depend on its batch neighbours (fp32: no; they must not).

* linear trial (extra): every head replaced by a linear head (``arch: linear``, numpy at inference)
  trained on these items to give the tags that head gave in raw, and raw run again (``raw_linear``):
  the fast head for CPU clusters, with each head's items/s alone next to its linear student's.

Peak memory: VmHWM of the Spark Python worker processes (read from /proc in local mode; the
peak is reset with /proc/<pid>/clear_refs before each variant), and of the driver for ``raw``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
from pyspark.accumulators import AccumulatorParam

from tagger.measure.random_heads import build_bert_heads  # shared with scripts/gpu_check.py (no Spark there)

REQUIRED_KEYS = ("raw_items_per_s", "job_items_per_s", "predict_batch_udf_items_per_s", "row_udf_items_per_s",
                 "pandas_udf_reload_items_per_s", "peak_worker_rss_mb")
TARGETS = {"job_over_raw": 0.9, "job_over_predict_batch_udf": 1.3, "job_over_row_udf": 20.0}


# ---------------------------------------------------------------------------------------------
# Python worker memory, read from /proc (local mode: the workers are descendants of the JVM)
# ---------------------------------------------------------------------------------------------
def _ppid_map() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
                parents[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
    return parents


def _jvm_pid(spark) -> int:
    proc = getattr(getattr(spark.sparkContext, "_gateway", None), "proc", None)
    return proc.pid if proc is not None else os.getppid()  # under spark-submit the JVM is our parent


def worker_pids(spark) -> list[int]:
    """Spark Python worker (and daemon) processes of this application's JVM."""
    if not os.path.isdir("/proc"):
        return []
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [_jvm_pid(spark)]
    while stack:
        pid = stack.pop()
        for child in children.get(pid, []):
            stack.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as fh:
                    cmd = fh.read()
            except OSError:
                continue
            if child != os.getpid() and b"pyspark" in cmd:
                found.append(child)
    return found


def _vm_hwm_kb(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _reset_peak(pid: int | str = "self") -> None:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")  # Linux >= 4.0: reset VmHWM to the current RSS
    except OSError:
        pass


def _worker_peak_mb(pids: list[int]) -> float:
    return round(max([_vm_hwm_kb(p) for p in pids] or [0]) / 1024, 1)


# ---------------------------------------------------------------------------------------------
# Functions shipped to the Python workers (module level: pickled by reference)
# ---------------------------------------------------------------------------------------------
class ListParam(AccumulatorParam):
    """Accumulates lists (per-partition statistics from the workers)."""

    def zero(self, value):
        """The empty list (an accumulator's start value; `value` is ignored)."""
        return []

    def addInPlace(self, a, b):
        """A new list: the items of `a` then those of `b`."""
        return list(a) + list(b)


def instrumented_tag_partitions(spec, stats):
    """`tag_partitions(spec)` with per-partition timings sent back in an accumulator: rows, time
    waiting for input batches, time in the Tagger (incl. model load), time waiting on the consumer."""
    from tagger.udfs.tagging import tag_partitions

    run = tag_partitions(spec)

    def wrapped(batches):
        import tagger.udfs.tagging as tagging  # the worker's module state, not a pickled copy of it

        t_start = time.perf_counter()
        cached = spec.fingerprint in tagging._WORKER_TAGGERS
        tagger = tagging.get_tagger(spec)  # what run() does first; timed here: imports + model load
        acc = {"rows": 0, "batches": 0, "startup_s": time.perf_counter() - t_start, "input_s": 0.0,
               "compute_s": 0.0, "output_s": 0.0, "first_output_s": None}

        def timed_input():
            it = iter(batches)
            while True:
                t = time.perf_counter()
                try:
                    pdf = next(it)
                except StopIteration:
                    acc["input_s"] += time.perf_counter() - t
                    return
                acc["input_s"] += time.perf_counter() - t
                acc["rows"] += len(pdf)
                acc["batches"] += 1
                yield pdf

        out = run(timed_input())
        while True:
            t = time.perf_counter()
            try:
                result = next(out)
            except StopIteration:
                acc["compute_s"] += time.perf_counter() - t
                break
            acc["compute_s"] += time.perf_counter() - t
            if acc["first_output_s"] is None:
                acc["first_output_s"] = time.perf_counter() - t_start
            t = time.perf_counter()
            yield result
            acc["output_s"] += time.perf_counter() - t
        acc.update(pid=os.getpid(), wall_s=time.perf_counter() - t_start, models_were_cached=cached,
                   load_s=0.0 if cached else tagger.load_seconds)
        acc["compute_s"] -= acc["input_s"]  # the Tagger pulls its input inside next(out)
        stats.add([acc])

    return wrapped


def empty_tags_partitions():
    """Same input and output schema as the tagging stage, no model: Spark's own cost."""

    def run(batches):
        for pdf in batches:
            n = len(pdf)
            yield pd.DataFrame({"itemid": pdf["itemid"].to_numpy(), "dtype": pdf["dtype"].to_numpy(),
                                "gate_score": np.full(n, np.nan), "tags": [[] for _ in range(n)],
                                "tag_ids": [""] * n})

    return run


_BENCH_HEADS: dict[str, list] = {}  # spec fingerprint -> [(HeadConf, LoadedHead)], once per worker


def bench_heads(spec) -> list:
    """[(HeadConf/HeadRef, LoadedHead)] for spec.heads, in config order, loaded once per Python worker
    (cached by spec.fingerprint) on spec.device with spec.torch_threads torch threads. Raises
    ArtifactError if a head directory cannot be loaded."""
    heads = _BENCH_HEADS.get(spec.fingerprint)
    if heads is None:
        import torch

        from tagger.models.loading import load_head

        if spec.torch_threads:
            torch.set_num_threads(spec.torch_threads)
        heads = _BENCH_HEADS[spec.fingerprint] = [(c, load_head(c.path, device=spec.device)) for c in spec.heads]
    return heads


def make_predict_fn_factory(spec):
    """make_predict_fn for predict_batch_udf: every head on every row, one struct field per head."""

    def make_predict_fn():
        heads = bench_heads(spec)

        def predict(texts: np.ndarray) -> dict[str, np.ndarray]:
            values = texts.tolist()
            return {conf.name: head.predict_proba(values, batch_size=spec.batch_size) for conf, head in heads}

        return predict

    return make_predict_fn


def _cascade(heads, texts: list[str], batch_size: int) -> list[list[float | None]]:
    """Per text: the scores of every head in order (None where the head's gate did not pass),
    from the job's own cascade."""
    from tagger.udfs.cascade import run_cascade

    n = len(texts)
    out: list[list[float | None]] = [[] for _ in range(n)]
    for run in run_cascade(heads, texts, batch_size=batch_size):
        filled = np.full((n, run.scores.shape[1]), np.nan)
        filled[run.rows] = run.scores
        for i in range(n):
            out[i].extend(None if np.isnan(v) else float(v) for v in filled[i])
    return out


def row_scores(spec, text) -> list[float | None]:
    """One text's cascade scores (NULL text as ''): every label of every head in config order, None
    for a head whose gate did not pass; heads from bench_heads (the row_udf floor)."""
    return _cascade(bench_heads(spec), ["" if text is None else text], 1)[0]


def reload_scores(spec, texts: pd.Series, loads) -> pd.Series:
    """A Series of per-text score lists (as row_scores) for one Arrow batch of texts (NULL as ''),
    the heads loaded anew for this call and `loads` (a Spark accumulator) incremented by 1: the
    pandas_udf_reload floor. Raises ArtifactError if a head cannot be loaded."""
    import torch

    from tagger.models.loading import load_head

    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    heads = [(c, load_head(c.path, device=spec.device)) for c in spec.heads]
    loads.add(1)
    return pd.Series(_cascade(heads, texts.fillna("").tolist(), spec.batch_size))


# ---------------------------------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Measure:
    """One variant's timing: `items` tagged in `seconds` (wall clock), a free-text note, and the peak
    RSS in MB (VmHWM of the Python workers, or the driver for raw; None when not measured)."""
    name: str
    items: int
    seconds: float
    note: str = ""
    peak_rss_mb: float | None = None

    @property
    def items_per_s(self) -> float:
        """items / seconds; inf when seconds is 0."""
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def _tag_in_chunks(tagger, items: pd.DataFrame, chunk: int) -> pd.DataFrame:
    """Tagger.tag over `chunk`-row slices, as the job's Arrow batches would hand them over."""
    from tagger.udfs.tagging import INPUT_COLUMNS

    parts = [tagger.tag(items.iloc[s:s + chunk][INPUT_COLUMNS]) for s in range(0, len(items), chunk)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def run_raw(spec, items: pd.DataFrame, chunk: int):
    """The `raw` ceiling: build a Tagger for `spec` in this process and tag `items` (a pandas DataFrame
    with itemid, dtype, doc_text) in `chunk`-row slices. Returns (seconds incl. model load, the
    tagged DataFrame with OUTPUT_SCHEMA's columns, the Tagger, this process's peak RSS in MB). The
    caller's torch thread count is restored. Raises ArtifactError if a head cannot be loaded."""
    from tagger.udfs.tagging import Tagger

    import torch

    _reset_peak()
    threads_before = torch.get_num_threads()
    try:
        started = time.perf_counter()
        tagger = Tagger(spec)  # sets the driver's torch threads to spec.torch_threads
        result = _tag_in_chunks(tagger, items, chunk)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads_before)
    return seconds, result, tagger, round(_vm_hwm_kb() / 1024, 1)


INT8_MIN_AGREEMENT = 0.995  # issue #6: int8 is kept only if tags agree with fp32 on >= 99.5% of items
BATCH_INVARIANT_MAX_DIFF = 1e-4  # scores are written rounded to 4 decimals: a row's must not move more


def quantize_int8(tagger) -> None:
    """Swap every head's (and ensemble member's) torch.nn.Linear layers for dynamically quantized
    int8 ones, in place (CPU only). torch.ao's eager quantize_dynamic is deprecated in favour of
    torchao, but is what torch 2.13 ships without another package."""
    import warnings

    import torch

    with warnings.catch_warnings():  # the deprecation notice comes with every call
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        for _, head in tagger.heads:
            for member in getattr(head, "members", None) or [head]:
                if getattr(member, "model", None) is not None:  # linear (numpy) and onnx heads have no torch model
                    member.model = quantize_dynamic(member.model, {torch.nn.Linear}, dtype=torch.qint8)


def run_int8(spec, items: pd.DataFrame, chunk: int):
    """The raw variant with int8 dynamic quantization of the Linear layers (model load and
    quantization untimed: they happen once per worker). Returns the seconds, the tags and the
    quantized Tagger."""
    from tagger.udfs.tagging import Tagger

    import torch

    threads_before = torch.get_num_threads()
    try:
        tagger = Tagger(spec)
        quantize_int8(tagger)
        started = time.perf_counter()
        result = _tag_in_chunks(tagger, items, chunk)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads_before)
    return seconds, result, tagger


def batch_dependence(tagger, texts: list[str], batch_size: int) -> float:
    """The largest change of any head's score when `texts` are scored in batches of `batch_size`
    instead of one at a time. The job's batches are not evaluate's or a rerun's, so a row's score
    must not depend on its batch neighbours: fp32 moves by float rounding (~1e-7); dynamic int8
    computes each activation scale over the whole batch, so its scores move with the batch."""
    worst = 0.0
    for _, head in tagger.heads:
        together = head.predict_proba(texts, batch_size=batch_size)
        alone = np.vstack([head.predict_proba([t], batch_size=1) for t in texts])
        worst = max(worst, float(np.abs(together - alone).max()) if len(texts) else 0.0)
    return worst


def first_label_path(conf, head) -> str:
    """The tag path of a head's first label: for a gate, the tag its pass emits."""
    return f"{conf.parent}/{head.spec.labels[0]}"


def head_tags_agreement(a: pd.DataFrame, b: pd.DataFrame, heads) -> dict[str, dict]:
    """Per head: among the items it ran on in either output (a gated head: where its gate passed),
    the share whose tags from that head are the same in both. Agreement over all items hides a
    gated head's changes: P0 runs on ~15% of them."""
    def own(frame, name):
        return frame["tags"].map(lambda row: frozenset(t["tag_path"] for t in row if t["source"] == name))

    a, b = a.sort_values("itemid").reset_index(drop=True), b.sort_values("itemid").reset_index(drop=True)
    by_name = {c.name: (c, h) for c, h in heads}
    out = {}
    for conf, head in heads:
        if conf.gate_by is None:
            ran = np.ones(len(a), dtype=bool)
        else:
            gate_path = first_label_path(*by_name[conf.gate_by])
            ran = ((own(a, conf.gate_by).map(lambda s: gate_path in s))
                   | (own(b, conf.gate_by).map(lambda s: gate_path in s))).to_numpy()
        same = (own(a, conf.name) == own(b, conf.name)).to_numpy()[ran]
        out[conf.name] = {"items": int(ran.sum()), "agree_ratio": round(float(same.mean()) if len(same) else 1.0, 6)}
    return out


def int8_trial(raw_spec, items: pd.DataFrame, chunk: int, tagger, raw_s: float, raw_out: pd.DataFrame,
               batch_size: int, log, dependence_texts: int = 200) -> tuple[dict, float]:
    """Every head in int8 against raw (fp32), on the same items: speed, tag agreement over all
    items and per head over the items it ran on, and the batch dependence of both. Returns the
    report and the int8 run's seconds."""
    log("raw_int8 ...")
    int8_s, int8_out, int8_tagger = run_int8(raw_spec, items, chunk)
    fp32_s = raw_s - tagger.load_seconds
    agree, _, gate_diff = tags_agreement(int8_out, raw_out)
    per_head = head_tags_agreement(int8_out, raw_out, tagger.heads)
    sample = items["doc_text"].tolist()[:dependence_texts]
    log(f"batch dependence on {len(sample)} texts ...")
    dependence = {"texts": len(sample), "batch_size": batch_size,
                  "fp32_max_abs_diff": batch_dependence(tagger, sample, batch_size),
                  "int8_max_abs_diff": batch_dependence(int8_tagger, sample, batch_size)}
    return {"items_per_s": round(len(items) / int8_s, 2), "speedup_over_raw_fp32": round(fp32_s / int8_s, 3),
            "tags_agree_ratio": round(agree, 6), "per_head": per_head, "gate_score_max_abs_diff": gate_diff,
            "batch_dependence": dependence, "min_agreement": INT8_MIN_AGREEMENT,
            "batch_invariant_max_diff": BATCH_INVARIANT_MAX_DIFF,
            "meets_bar": bool(agree >= INT8_MIN_AGREEMENT and fp32_s > int8_s
                              and all(h["agree_ratio"] >= INT8_MIN_AGREEMENT for h in per_head.values())
                              and dependence["int8_max_abs_diff"] <= BATCH_INVARIANT_MAX_DIFF)}, int8_s


HEAD_SPEED_TEXTS = 1000  # texts each head scores alone in the per-head items/s (bert-base on CPU is slow)


def head_items_per_s(heads, texts: list[str], batch_size: int, threads: int | None) -> dict[str, dict]:
    """Per head of `heads` ([(conf, loaded head)]): its arch and its predict_proba items/s on every
    text of `texts` (no cascade, models loaded), with `threads` torch threads (None: as is)."""
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or threads_before)
    out = {}
    try:
        for conf, head in heads:
            started = time.perf_counter()
            head.predict_proba(texts, batch_size=batch_size)
            seconds = time.perf_counter() - started
            out[conf.name] = {"arch": head.spec.arch, "items_per_s": round(len(texts) / seconds, 2) if seconds else None}
    finally:
        torch.set_num_threads(threads_before)
    return out


def train_linear_students(heads, texts: list[str], raw_out: pd.DataFrame, out_dir: Path, log) -> tuple:
    """For every (conf, loaded head) of `heads`: a linear head (char n-grams, models/linear_training.py
    defaults) with the head's labels, trained on `texts` (one in five held out to set thresholds)
    to give the tags that head gave in `raw_out` (the raw run's output, in the order of `texts`),
    written to out_dir/<head name>. A gated head's students thus pass about as many rows on to it
    as its teacher, so the cascade does the same share of work. Returns the heads' confs with their
    paths replaced (HeadConf tuple). Raises DataError (models/training.py) when a head gave no tag
    at all on these texts (nothing to learn)."""
    from tagger.models.linear_training import train_linear_head

    students = []
    for conf, head in heads:
        prefix = f"{conf.parent}/"
        decided = [[t["tag_path"][len(prefix):] for t in row if t["source"] == conf.name
                    and t["tag_path"].startswith(prefix)] for row in raw_out["tags"]]
        dev = np.zeros(len(texts), dtype=bool)
        dev[::5] = True
        path = Path(out_dir) / conf.name
        train_linear_head(head=conf.name, labels=list(head.spec.labels),
                          train_texts=[t for t, d in zip(texts, dev) if not d],
                          train_labels=[y for y, d in zip(decided, dev) if not d],
                          dev_texts=[t for t, d in zip(texts, dev) if d], dev_labels=[y for y, d in zip(decided, dev) if d],
                          out_dir=str(path), log=lambda *_: None)
        students.append(dataclasses.replace(conf, path=str(path)))
        log(f"linear student of {conf.name} trained ({len(head.spec.labels)} labels)")
    return tuple(students)


def linear_trial(raw_spec, items: pd.DataFrame, chunk: int, tagger, raw_s: float, raw_out: pd.DataFrame,
                 batch_size: int, log) -> tuple[dict, float]:
    """Every head replaced by a linear head (train_linear_students, trained on these items in a temp
    dir, untimed) and the raw variant run again: the fast head for CPU clusters against the torch
    heads. Returns (report, the linear raw run's seconds incl. model load). The report holds
    items_per_s, speedup_over_raw (both incl. model load), tags_agree_ratio with the fp32 heads,
    train_seconds, the per-head items/s of both (head_items_per_s on the first HEAD_SPEED_TEXTS
    texts) under `per_head`, and `skipped` (None, or why no linear head could be trained). Raises
    ArtifactError if a head cannot be loaded."""
    from tagger.models.data import DataError

    texts = items["doc_text"].tolist()
    by_item = raw_out.set_index("itemid").loc[items["itemid"]].reset_index()  # raw_out in the order of texts
    with tempfile.TemporaryDirectory(prefix="tagger-bench-linear-") as tmp:
        log("linear students ...")
        started = time.perf_counter()
        try:
            heads = train_linear_students(tagger.heads, texts, by_item, Path(tmp), log)
        except DataError as exc:
            return {"skipped": str(exc)}, 0.0
        train_s = time.perf_counter() - started
        log("raw_linear ...")
        lin_s, lin_out, lin_tagger, _ = run_raw(dataclasses.replace(raw_spec, heads=heads), items, chunk)
        sample = texts[:HEAD_SPEED_TEXTS]
        torch_heads = head_items_per_s(tagger.heads, sample, batch_size, raw_spec.torch_threads)
        linear_heads = head_items_per_s(lin_tagger.heads, sample, batch_size, raw_spec.torch_threads)
    agree, _, _ = tags_agreement(lin_out, raw_out)
    per_head = {name: {"arch": torch_heads[name]["arch"], "items_per_s": torch_heads[name]["items_per_s"],
                       "linear_items_per_s": linear_heads[name]["items_per_s"],
                       "linear_arch": linear_heads[name]["arch"]} for name in torch_heads}
    return {"skipped": None, "items_per_s": round(len(items) / lin_s, 2), "speedup_over_raw": round(raw_s / lin_s, 3),
            "tags_agree_ratio": round(agree, 6), "train_seconds": round(train_s, 1), "head_texts": len(sample),
            "per_head": per_head}, lin_s


def run_models_only(tagger, texts: list[str], batch_size: int) -> float:
    """Seconds for the job's cascade alone (no rules, no tags) over `texts` with the loaded heads."""
    import torch

    from tagger.udfs.cascade import run_cascade

    threads_before = torch.get_num_threads()
    torch.set_num_threads(tagger.spec.torch_threads or threads_before)
    try:
        started = time.perf_counter()
        run_cascade(tagger.heads, texts, batch_size=batch_size)  # the job's cascade, no rules or tags
        return time.perf_counter() - started
    finally:
        torch.set_num_threads(threads_before)


def _materialize(df):
    from pyspark import StorageLevel

    started = time.perf_counter()
    out = df.persist(StorageLevel.MEMORY_AND_DISK)
    n = out.count()
    return time.perf_counter() - started, out, n


def _spark_variant(spark, name: str, df, n_expected: int, note: str = "") -> tuple[Measure, object]:
    pids = worker_pids(spark)
    for pid in pids:
        _reset_peak(pid)
    seconds, out, n = _materialize(df)
    if n != n_expected:
        raise RuntimeError(f"{name}: {n} rows out for {n_expected} in")
    peak = _worker_peak_mb(worker_pids(spark))
    return Measure(name, n, seconds, note, peak), out


def tags_agreement(job: pd.DataFrame, raw: pd.DataFrame) -> tuple[float, int, float]:
    """Share of items with the same tag set in both, the number of items missing from one side,
    and the largest gate score difference."""
    j = job.set_index("itemid")
    r = raw.set_index("itemid")
    common = j.index.intersection(r.index)
    missing = len(j.index.symmetric_difference(r.index))
    jt = j.loc[common, "tag_ids"].map(lambda s: frozenset(filter(None, s.split(","))))
    rt = r.loc[common, "tag_ids"].map(lambda s: frozenset(filter(None, s.split(","))))
    same = int((jt == rt).sum())
    total = len(common) + missing
    diff = (j.loc[common, "gate_score"] - r.loc[common, "gate_score"]).abs()
    return (same / total if total else 1.0), missing, float(diff.max()) if len(diff) else 0.0


def run_bench(cfg, n_items: int, model: str, models_dir: str | None, floor_items: int, skip_floors: bool,
              extras: bool = True, seed: int = 7, max_length: int | None = None, gate_share: float = 0.15,
              log=lambda msg: click.echo(msg, err=True)) -> dict:
    """Run every variant (module docstring) on `n_items` generated items and return the report dict
    (REQUIRED_KEYS, ratios against TARGETS, per-variant items/s, seconds and peak RSS in MB, job
    partition timings, config) that format_text prints. `model`: 'demo' (the config's heads, or
    <models_dir>/<head>) or 'bert-base' (random-weight heads built in models_dir or a temp dir,
    max_length tokens, the gate passing `gate_share` of texts). Floors run on min(n_items,
    floor_items) items unless skip_floors. Raises ArtifactError for a missing or unreadable head
    and ConfigError for a label the tag dimension lacks."""
    import torch
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType, FloatType, StructField, StructType

    from tagger.config import tagger_home
    from tagger.job.tag import build_spec
    from tagger.measure.inputs import bench_inputs, bench_session
    from tagger.udfs.tagging import INPUT_COLUMNS, OUTPUT_SCHEMA

    bench_started = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]  # other processes on the machine skew every number
    spark, own_session = bench_session(cfg)
    items, tag_index = bench_inputs(spark, cfg, n_items, seed=seed)
    texts = items["doc_text"].tolist()
    log(f"{len(items):,} generated items, doc_text {np.mean([len(t) for t in texts]):.0f} chars on average")

    workdir = None
    if model == "demo":
        heads = cfg.heads if not models_dir else tuple(
            dataclasses.replace(h, path=str(Path(models_dir) / h.name)) for h in cfg.heads)
    else:
        if models_dir:
            out_dir = Path(models_dir)
        else:
            home = tagger_home()
            workdir = tempfile.TemporaryDirectory(prefix="tagger-bench-", dir=str(home) if home.is_dir() else None)
            out_dir = Path(workdir.name)
        if max_length is None:
            p0 = next((h for h in cfg.heads if h.train is not None and h.train.arch == "bert"), None)
            max_length = int((p0.train.options.get("max_length") if p0 else None) or 128)
        heads = build_bert_heads(cfg, out_dir, texts, tag_index, max_length, gate_share, log)
    bench_cfg = dataclasses.replace(cfg, heads=heads)

    try:
        sc = spark.sparkContext
        task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
        threads = cfg.tagging.torch_threads or task_cpus  # as tagger.job.pipeline.run_date
        partitions = cfg.tagging.partitions or sc.defaultParallelism
        slots = max(1, sc.defaultParallelism // task_cpus)
        concurrent = min(partitions, slots)
        cores = os.cpu_count() or 1
        raw_threads = max(1, min(cores, concurrent * threads))
        arrow_batch = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "10000"))
        spec, model_version, _ = build_spec(bench_cfg, tag_index, "generated tag dimension", threads)
        raw_spec = dataclasses.replace(spec, torch_threads=raw_threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        device_name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
        n = len(items)
        n_floor = min(n, floor_items)
        master = sc.master

        # Input DataFrames, cached and counted: creating them is not timed.
        df = spark.createDataFrame(items[INPUT_COLUMNS]).cache()
        df.count()
        floor_df = spark.createDataFrame(items[INPUT_COLUMNS].iloc[:n_floor]).cache()
        floor_df.count()

        def stage(frame):
            return frame.repartition(partitions, "itemid")

        # Warm-up (untimed): JVM, code generation, shuffle, Arrow and Python workers, no model.
        warm = stage(df.limit(min(n, 2000))).mapInPandas(empty_tags_partitions(), OUTPUT_SCHEMA)
        warm.write.format("noop").mode("overwrite").save()
        log(f"warm-up done; partitions={partitions} x torch threads={threads}, raw threads={raw_threads}, "
            f"arrow batch={arrow_batch}, device={device}")

        measures: dict[str, Measure] = {}
        log("raw ...")
        raw_s, raw_out, tagger, driver_peak = run_raw(raw_spec, items, arrow_batch)
        measures["raw"] = Measure("raw", n, raw_s, f"Tagger.tag in the driver, {arrow_batch}-row chunks, "
                                  f"{raw_threads} torch threads, incl. model load {tagger.load_seconds:.1f}s",
                                  driver_peak)
        if extras:
            models_only_s = run_models_only(tagger, texts, spec.batch_size)
            measures["raw_models_only"] = Measure("raw_models_only", n, models_only_s,
                                                  "heads' predict_proba on the whole list, cascade, no rules/tags, "
                                                  "models loaded")
        int8 = None
        if extras and device == "cpu":
            int8, int8_s = int8_trial(raw_spec, items, arrow_batch, tagger, raw_s, raw_out, spec.batch_size, log)
            measures["raw_int8"] = Measure("raw_int8", n, int8_s, "raw with int8 dynamic quantization of Linear "
                                           "layers, models loaded + quantized before timing")
        linear = None
        if extras:
            linear, lin_s = linear_trial(raw_spec, items, arrow_batch, tagger, raw_s, raw_out, spec.batch_size, log)
            if not linear["skipped"]:
                measures["raw_linear"] = Measure("raw_linear", n, lin_s, "raw with every head replaced by a linear "
                                                 "head trained on these items to give its tags, incl. model load")
        with_model_tags = int(sum(any(t["source"] != "rule" for t in row) for row in raw_out["tags"]))
        gate_conf, gate_model = next((c, h) for c, h in tagger.heads if c.name == spec.gate_head)
        gate_path = first_label_path(gate_conf, gate_model)  # the gate's own decision, as the job made it
        gate_pass_share = float(np.mean([any(t["source"] == spec.gate_head and t["tag_path"] == gate_path
                                             for t in row) for row in raw_out["tags"]]))
        del tagger, gate_model

        log("spark_overhead ...")
        m, out = _spark_variant(spark, "spark_overhead", stage(df).mapInPandas(empty_tags_partitions(), OUTPUT_SCHEMA),
                                n, "same stage, empty tags, no model")
        measures["spark_overhead"] = m
        out.unpersist()

        log("job ...")
        stats = sc.accumulator([], ListParam())
        job_df = stage(df).mapInPandas(instrumented_tag_partitions(spec, stats), OUTPUT_SCHEMA)
        m, job_out = _spark_variant(spark, "job", job_df, n, "mapInPandas(tag_partitions(spec)), incl. model load "
                                    "per worker, persisted + counted")
        measures["job"] = m
        job_pdf = job_out.select("itemid", "gate_score", "tag_ids").toPandas()
        job_out.unpersist()
        agree, missing, gate_diff = tags_agreement(job_pdf, raw_out)
        partition_stats = sorted(stats.value, key=lambda s: -s["wall_s"])

        log("predict_batch_udf ...")
        return_type = StructType([StructField(c.name, ArrayType(FloatType())) for c in spec.heads])
        pbu = predict_batch_udf(make_predict_fn_factory(spec), return_type=return_type, batch_size=spec.batch_size)
        m, out = _spark_variant(spark, "predict_batch_udf", stage(df).select("itemid", pbu("doc_text").alias("p")), n,
                                f"every head on every row, batch_size={spec.batch_size}, incl. model load per worker")
        measures["predict_batch_udf"] = m
        gate_field = spec.gate_head
        pbu_gate = out.select("itemid", F.col(f"p.{gate_field}")[0].alias("g")).toPandas().set_index("itemid")["g"]
        out.unpersist()
        raw_gate = raw_out.set_index("itemid")["gate_score"]
        pbu_diff = float((pbu_gate.astype(np.float64) - raw_gate.loc[pbu_gate.index]).abs().max())

        if not skip_floors:
            log(f"row_udf on {n_floor:,} items ...")
            arrow_udf = spark.conf.get("spark.sql.execution.pythonUDF.arrow.enabled", "false")
            row_udf = F.udf(lambda text: row_scores(spec, text), ArrayType(DoubleType()))
            m, out = _spark_variant(spark, "row_udf", stage(floor_df).select("itemid", row_udf("doc_text").alias("s")),
                                    n_floor, f"per-row Python UDF (arrow-optimized: {arrow_udf}), cascade one text "
                                    f"at a time, subset of {n_floor:,} items")
            measures["row_udf"] = m
            out.unpersist()

            log(f"pandas_udf_reload on {n_floor:,} items ...")
            loads = sc.accumulator(0)

            def reload_batch(batch: pd.Series) -> pd.Series:
                return reload_scores(spec, batch, loads)

            reload_udf = F.pandas_udf(reload_batch, ArrayType(DoubleType()))
            m, out = _spark_variant(spark, "pandas_udf_reload",
                                    stage(floor_df).select("itemid", reload_udf("doc_text").alias("s")), n_floor,
                                    f"scalar pandas UDF, loads the heads per batch, subset of {n_floor:,} items")
            out.unpersist()
            m.note += f", {loads.value} loads"
            measures["pandas_udf_reload"] = m
        df.unpersist()
        floor_df.unpersist()
    finally:
        if own_session:
            spark.stop()
        if workdir is not None:
            workdir.cleanup()

    ips = {k: round(v.items_per_s, 2) for k, v in measures.items()}
    # The job without its per-worker start-up (imports + model load): what a longer run tends to.
    steady_s = max((p["wall_s"] - p["startup_s"] for p in partition_stats), default=0.0)
    startup_s = max((p["startup_s"] for p in partition_stats), default=0.0)

    def ratio(a: str, b: str):
        return round(ips[a] / ips[b], 3) if a in ips and b in ips and ips[b] else None

    report = {
        "items": n, "model": model, "device": device, "device_name": device_name,
        "raw_items_per_s": ips["raw"], "job_items_per_s": ips["job"],
        "predict_batch_udf_items_per_s": ips["predict_batch_udf"],
        "row_udf_items_per_s": ips.get("row_udf"), "pandas_udf_reload_items_per_s": ips.get("pandas_udf_reload"),
        "peak_worker_rss_mb": measures["job"].peak_rss_mb,
        "job_worker_startup_s": round(startup_s, 2),
        "job_steady_items_per_s": round(n / steady_s, 2) if steady_s > 0 else None,
        "driver_raw_peak_rss_mb": driver_peak,
        "job_over_raw": ratio("job", "raw"), "job_over_predict_batch_udf": ratio("job", "predict_batch_udf"),
        "job_over_row_udf": ratio("job", "row_udf"), "job_over_pandas_udf_reload": ratio("job", "pandas_udf_reload"),
        "targets": TARGETS,
        "tags_agree_ratio": round(agree, 6), "tags_items_missing": missing,
        "gate_score_max_abs_diff_job_vs_raw": gate_diff,
        "gate_score_max_abs_diff_predict_batch_udf_vs_raw": pbu_diff,
        "items_with_model_tags": with_model_tags, "gate_pass_share": round(gate_pass_share, 4),
        "int8": int8, "linear": linear,
        "variants": {k: {"items": v.items, "seconds": round(v.seconds, 3), "items_per_s": ips[k], "note": v.note,
                         "peak_rss_mb": v.peak_rss_mb} for k, v in measures.items()},
        "job_partitions": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
                           for s in partition_stats],
        "config": {
            "cores": cores, "spark_master": master, "partitions": partitions,
            "concurrent_tasks": concurrent, "spark_task_cpus": task_cpus, "torch_threads_per_task": threads,
            "raw_torch_threads": raw_threads, "arrow_max_records_per_batch": arrow_batch,
            "batch_size": spec.batch_size, "floor_items": n_floor if not skip_floors else 0,
            "floors_skipped": skip_floors, "seed": seed, "models": model_version,
            "bert_max_length": max_length if model == "bert-base" else None,
            "bert_gate_share": gate_share if model == "bert-base" else None,
            "sink": "persist(MEMORY_AND_DISK) + count, as the pipeline's tag stage",
            "warmup": "one untimed no-model mapInPandas job; model loading per worker is timed",
            "python": sys.version.split()[0], "torch": torch.__version__,
            "loadavg_at_start": load_at_start, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "bench_seconds": round(time.perf_counter() - bench_started, 1),
    }
    return report


def format_text(r: dict) -> str:
    """The run_bench report `r` as a multi-line human-readable text (no trailing newline)."""
    lines = [f"tagger bench: {r['items']:,} items, model {r['model']}, device {r['device']} ({r['device_name']})", "",
             f"  {'variant':<20} {'items':>8} {'seconds':>9} {'items/s':>10}  peak RSS MB  note"]
    for name, v in r["variants"].items():
        rss = "" if v["peak_rss_mb"] is None else f"{v['peak_rss_mb']:.0f}"
        lines.append(f"  {name:<20} {v['items']:>8,} {v['seconds']:>9.2f} {v['items_per_s']:>10,.1f}  {rss:>11}  "
                     f"{v['note']}")
    if r["config"]["floors_skipped"]:
        lines.append("  (row_udf and pandas_udf_reload skipped: --skip)")
    lines.append("")
    for key, target in r["targets"].items():
        value = r.get(key)
        mark = "n/a" if value is None else ("ok" if value >= target else "BELOW TARGET")
        lines.append(f"  {key:<28} {'' if value is None else f'{value:.3f}':>8}   target >= {target:g}  {mark}")
    if r.get("job_over_pandas_udf_reload") is not None:
        lines.append(f"  {'job_over_pandas_udf_reload':<28} {r['job_over_pandas_udf_reload']:>8.3f}")
    lines.append("")
    lines.append(f"  tags agree job vs raw: {r['tags_agree_ratio']:.4%} of items ({r['tags_items_missing']} missing); "
                 f"gate score max |diff| job {r['gate_score_max_abs_diff_job_vs_raw']:.2g}, "
                 f"predict_batch_udf {r['gate_score_max_abs_diff_predict_batch_udf_vs_raw']:.2g}")
    if r.get("int8"):
        q, dep = r["int8"], r["int8"]["batch_dependence"]
        heads = ", ".join(f"{name} {h['agree_ratio']:.2%} of {h['items']:,}" for name, h in q["per_head"].items())
        lines.append(f"  int8 trial (every head, load excluded): {q['speedup_over_raw_fp32']:.2f}x the fp32 raw "
                     f"models; tags agree with fp32 on {q['tags_agree_ratio']:.4%} of items, per head on the items "
                     f"it ran on: {heads} (bar {q['min_agreement']:.1%})")
        lines.append(f"    a score's largest move between batches of {dep['batch_size']} and one at a time "
                     f"({dep['texts']} texts): fp32 {dep['fp32_max_abs_diff']:.2g}, int8 {dep['int8_max_abs_diff']:.2g} "
                     f"(bar {q['batch_invariant_max_diff']:g}): " + ("meets the bar" if q["meets_bar"] else
                                                                     "fails the bar") + "; the job runs fp32")
    if r.get("linear"):
        lin = r["linear"]
        if lin["skipped"]:
            lines.append(f"  linear trial skipped: {lin['skipped']}")
        else:
            heads = ", ".join(f"{name} {h['arch']} {h['items_per_s']:,.0f} / linear {h['linear_items_per_s']:,.0f}"
                              for name, h in lin["per_head"].items())
            lines.append(f"  linear heads (trained on these items to give each head's tags, {lin['train_seconds']:.0f}s): "
                         f"{lin['speedup_over_raw']:.2f}x raw; tags agree with the heads on "
                         f"{lin['tags_agree_ratio']:.2%} of items")
            lines.append(f"    items/s per head alone on {lin['head_texts']:,} texts: {heads}")
    lines.append(f"  gate passes {r['gate_pass_share']:.1%} of items; items with model tags: "
                 f"{r['items_with_model_tags']:,}")
    lines.append(f"  peak Python worker RSS (job): {r['peak_worker_rss_mb']} MB; driver during raw: "
                 f"{r['driver_raw_peak_rss_mb']} MB")
    lines.append(f"  job worker start-up (imports + model load, timed in the job): up to "
                 f"{r['job_worker_startup_s']:.1f}s; job without it: {r['job_steady_items_per_s'] or 0:,.1f} items/s")
    lines.append("  job partitions, seconds: wall = start-up + input wait + tagging + output wait; of start-up, "
                 "model load; first batch out after:")
    for p in r["job_partitions"]:
        lines.append(f"    pid {p['pid']}: {p['rows']:,} rows in {p['batches']} batches: {p['wall_s']:.2f} = "
                     f"{p['startup_s']:.2f} + {p['input_s']:.2f} + {p['compute_s']:.2f} + {p['output_s']:.2f}; "
                     f"load {p['load_s']:.2f}; first {p['first_output_s'] or 0:.2f}"
                     + ("  (models were already loaded in this worker)" if p["models_were_cached"] else ""))
    c = r["config"]
    lines.append("")
    lines.append(f"  machine: {c['cores']} cores, master {c['spark_master']}, {c['partitions']} partitions "
                 f"({c['concurrent_tasks']} concurrent) x {c['torch_threads_per_task']} torch thread(s) per task; "
                 f"raw: {c['raw_torch_threads']} torch threads; "
                 f"arrow maxRecordsPerBatch {c['arrow_max_records_per_batch']}, "
                 f"model batch {c['batch_size']}")
    lines.append(f"  raw = the job's Tagger.tag without Spark (ceiling); timings include model loading; "
                 f"sink: {c['sink']}; warm-up: {c['warmup']}")
    if c["floors_skipped"] is False:
        lines.append(f"  row_udf and pandas_udf_reload ran on the first {c['floor_items']:,} items; their items/s "
                     f"are per item of that subset")
    lines.append(f"  models: {c['models']}")
    lines.append(f"  load average (1/5/15 min) at start {c['loadavg_at_start']}, at end {c['loadavg_at_end']} "
                 f"on {c['cores']} cores")
    lines.append(f"  bench took {r['bench_seconds']:.0f}s")
    return "\n".join(lines)


def emit_report(report: dict, fmt: str, out_path: str | None, to_text) -> None:
    """Print the report as text (`to_text(report)`) or JSON, and write the JSON to out_path too."""
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(text + "\n", encoding="utf-8")
    click.echo(text if fmt == "json" else to_text(report))

