"""The tagging pass: rules -> binary gate -> multi-label heads on gated rows (udfs/cascade.py)
-> implied parent tags (udfs/hierarchy.py) -> tag ids.

`Tagger.tag(pdf)` works on a plain pandas DataFrame (tests, benchmarks); `tag_partitions(spec)`
is the same thing as a `mapInPandas` function. Models are loaded once per Python worker
(cached by the spec's fingerprint), not per Arrow batch.

Executor side: imports nothing from the driver side (tagger.config, tagger.job, ...). Nor does
it import pyspark: `Tagger` runs where there is no Spark at all (scripts/gpu_check.py); only
`LoadCounter` needs a SparkContext, handed in by the driver.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import pandas as pd

from tagger.udfs.cascade import HeadRef, run_cascade
from tagger.udfs.devices import task_device
from tagger.udfs.hierarchy import add_implied_parents, ancestors_by_path
from tagger.udfs.rules import RuleSet

TAG_STRUCT = "struct<tag_id: bigint, tag_name: string, tag_path: string, score: double, source: string>"
OUTPUT_SCHEMA = (f"itemid string, dtype string, gate_score double, tags array<{TAG_STRUCT}>, "
                 "tag_ids string")
INPUT_COLUMNS = ["itemid", "dtype", "doc_text"]
RULE_SOURCE = "rule"
# scores are rounded (tagger.models.decision.SCORE_DECIMALS, round_scores) so that reruns compare equal row for row


@dataclass(frozen=True)
class TaggerSpec:
    """Everything a worker needs to tag; small and picklable (shipped inside the UDF closure).

    `heads` accepts any objects with name, path, parent and gate_by (tagger.config.HeadConf);
    they are stored as HeadRef, so a worker unpickles no driver-side class.
    """
    heads: tuple[HeadRef, ...]
    gate_head: str
    rules: RuleSet
    tag_index: dict[str, tuple[int, str]] = field(hash=False)  # tag path -> (tag id, tag name)
    batch_size: int = 64
    torch_threads: int | None = None
    device: str | None = None  # None: cuda when available, else cpu
    # Fault injection for the reliability tests (env TAGGER_FAILPOINT=tag_after_batches:N):
    # each task raises after tagging N batches. Never set in production.
    fail_after_batches: int | None = None
    # TAGGER_FAILPOINT=tag_drop_rows:N: each task drops N rows of its first batch (a lost row, which
    # the run's invariant check must catch before anything is written). Never set in production.
    drop_rows: int | None = None
    model_version: str = ""  # the artifacts' versions: a retrained head at the same path is reloaded

    def __post_init__(self):
        object.__setattr__(self, "heads", tuple(HeadRef.of(h) for h in self.heads))

    @property
    def fingerprint(self) -> str:
        """16 hex characters: a SHA-256 digest of the heads, gate head, rules version, device, torch
        threads, batch size, model version and tag index (the key of the worker's Tagger cache)."""
        # Everything a cached Tagger reads from its spec: a worker reused by a later date (backfill)
        # must not tag with an earlier tag-dimension snapshot or an older artifact.
        heads = [[h.name, h.path, h.parent, h.gate_by] for h in self.heads]
        payload = json.dumps([heads, self.gate_head, self.rules.version, self.device, self.torch_threads,
                              self.batch_size, self.model_version, sorted(self.tag_index.items())],
                             sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class Tagger:
    """Loaded rules and model heads; `tag` maps an input batch to output rows.

    Built once per Python worker and spec (`get_tagger`). Raises models.spec.ArtifactError when a
    head directory cannot be loaded.
    """

    def __init__(self, spec: TaggerSpec):
        from tagger.models.loading import load_head  # torch import stays off the driver's start-up path

        import torch

        if spec.torch_threads:
            torch.set_num_threads(spec.torch_threads)
        started = time.perf_counter()
        self.spec = spec
        self.heads = [(conf, load_head(conf.path, device=spec.device)) for conf in spec.heads]
        # a label switched off in its artifact is never emitted, not even as an implied parent
        head_paths = {f"{conf.parent}/{label}": on for conf, head in self.heads
                      for label, on in zip(head.spec.labels, head.spec.enabled)}
        off = {path for path, on in head_paths.items() if not on}
        emittable = [r.tag for r in spec.rules.rules] + [path for path, on in head_paths.items() if on]
        self.ancestors = ancestors_by_path(p for p in emittable if p in spec.tag_index and p not in off)
        self.load_seconds = time.perf_counter() - started
        self.pid = os.getpid()

    def tag(self, pdf: pd.DataFrame, scores_of: frozenset[str] = frozenset(), **predict_options) -> pd.DataFrame:
        """Tag one batch.

        Input: a DataFrame with INPUT_COLUMNS (itemid, dtype, doc_text; doc_text may be null).
        Output: one row per input row, in input order, with OUTPUT_SCHEMA's columns: itemid, dtype,
        gate_score (float, NaN where the gate did not run), tags (list of dicts tag_id, tag_name,
        tag_path, score, source) and tag_ids (comma-separated tag ids). With `scores_of` (head names),
        one more column, scores: per row a dict tag path -> rounded score of every label of those
        heads, for the rows each head scored (a gated-out row has no entry), hit or not (the shadow
        run compares them). Raises KeyError if a rule or an enabled label's tag path is missing from
        the spec's tag index (the driver checks this first). `predict_options` go to every head's
        predict_proba (run_cascade); the job passes none (the GPU check passes autocast="off" for fp32).
        """
        texts = pdf["doc_text"].fillna("")
        n = len(pdf)
        tags: list[list[dict]] = [[] for _ in range(n)]
        index = self.spec.tag_index
        for i, hits in enumerate(self.spec.rules.apply(texts)):
            for path, _rule_id in hits:
                tag_id, name = index[path]
                tags[i].append(dict(tag_id=tag_id, tag_name=name, tag_path=path, score=1.0, source=RULE_SOURCE))

        gate_score = np.full(n, np.nan)
        scores: list[dict[str, float]] = [{} for _ in range(n)]
        for run in run_cascade(self.heads, texts.tolist(), batch_size=self.spec.batch_size, **predict_options):
            if run.ref.name == self.spec.gate_head:
                gate_score[run.rows] = run.scores[:, 0]
            paths = [f"{run.ref.parent}/{label}" for label in run.head.spec.labels]
            if run.ref.name in scores_of:
                for r, row in enumerate(run.rows):
                    scores[row].update(zip(paths, run.scores[r].tolist()))
            for r, c in zip(*np.nonzero(run.hit)):
                tag_id, name = index[paths[c]]
                tags[run.rows[r]].append(dict(tag_id=tag_id, tag_name=name, tag_path=paths[c],
                                              score=float(run.scores[r, c]), source=run.ref.name))
        add_implied_parents(tags, self.ancestors, index)
        out = pd.DataFrame({
            "itemid": pdf["itemid"].to_numpy(),
            "dtype": pdf["dtype"].to_numpy(),
            "gate_score": gate_score,
            "tags": tags,
            "tag_ids": [",".join(str(t["tag_id"]) for t in row) for row in tags],
        })
        if scores_of:
            out["scores"] = scores
        return out


_WORKER_TAGGERS: dict[str, Tagger] = {}
_NOTED: set[str] = set()  # device notes this worker has printed


def get_tagger(spec: TaggerSpec, loads=None) -> Tagger:
    """The worker's Tagger for this spec, loading models on first use only.

    `loads`, when given, is a LoadCounter: it records each model load and the worker's pid, so
    the run's metrics can show models were loaded once per Python worker, not per batch.
    """
    tagger = _WORKER_TAGGERS.get(spec.fingerprint)
    if tagger is None:
        tagger = _WORKER_TAGGERS[spec.fingerprint] = Tagger(spec)
        if loads is not None:
            loads.models.add(len(tagger.heads))
    elif spec.torch_threads:
        import torch

        # a reused worker may have run a spec with other threads since: 2 tasks x 2 threads on 2
        # cores ran the tagging stage 2-4x slower in tagger ablation
        torch.set_num_threads(spec.torch_threads)
    if loads is not None:
        loads.workers.add({os.getpid()})
    return tagger


class _SetParam:
    """pyspark.accumulators.AccumulatorParam's protocol (zero, addInPlace) for sets of pids. Not a
    subclass, so that this module imports without pyspark: Spark only calls the two methods."""

    def zero(self, value):
        return set()

    def addInPlace(self, a, b):
        a |= b
        return a


class LoadCounter:
    """Spark accumulators over one stage: model loads, distinct Python worker pids, rows tagged, and
    devices (a set of ("host:pid", device description) pairs, udfs/devices.py)."""

    def __init__(self, spark_context):
        self.models = spark_context.accumulator(0)
        self.workers = spark_context.accumulator(set(), _SetParam())
        self.devices = spark_context.accumulator(set(), _SetParam())
        self.rows = spark_context.accumulator(0)  # rows through the models: the items once, unless recomputed


def tag_partitions(spec: TaggerSpec, loads: LoadCounter | None = None, carry: tuple[str, ...] = ()):
    """A `mapInPandas` function: an iterator of pandas batches with INPUT_COLUMNS (and the `carry`
    columns) in, an iterator of batches with OUTPUT_SCHEMA's columns (then the `carry` columns, values
    passed through unchanged) out, one row per input row. Models load once per worker."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        choice = task_device(spec.device)  # the task's Spark GPU, cuda:0, or the CPU
        tagger = get_tagger(replace(spec, device=choice.device), loads)
        if loads is not None:
            loads.devices.add({(f"{socket.gethostname()}:{os.getpid()}", choice.describe())})
        if choice.note and choice.describe() not in _NOTED:
            _NOTED.add(choice.describe())
            print(f"tagger: {choice.describe()}", file=sys.stderr, flush=True)  # once per worker, in the executor log
        for done, pdf in enumerate(batches):
            if spec.fail_after_batches is not None and done >= spec.fail_after_batches:
                raise RuntimeError(f"TAGGER_FAILPOINT: injected failure after {done} batches")
            if spec.drop_rows and done == 0:
                pdf = pdf.iloc[spec.drop_rows:]
            if loads is not None:
                loads.rows.add(len(pdf))
            out = tagger.tag(pdf[INPUT_COLUMNS])
            for column in carry:
                out[column] = pdf[column].to_numpy()
            yield out

    return run
