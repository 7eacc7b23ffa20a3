"""`tagger ablation`: what each of the tagging stage's inference choices buys, one at a time.

`tagger bench` compares the whole job with other ways of running the same models. This command
takes the job's own way apart: starting from what a Python worker does (the baseline), each
variant undoes one choice and times the model work again, on the same generated texts and the
same trained heads:

* cascade: the multi-label P0 head runs only on rows the gate passed (variant: on every row);
* length-sorted batches: rows sorted by length inside a call, so a batch pads to similar lengths
  (variant: input order);
* dynamic padding: a batch pads to its own longest row (variant: every batch to max_length);
* batch size: 64 texts per forward pass (variants: 1, 16, 256);
* inference_mode (variants: no_grad, and autograd left on);
* whole-list tokenization: one tokenizer call per batch of texts (variant: one call per text);
* through the job's Spark stage: one torch thread per task, 2 tasks on 2 cores (variant: 1 task
  of 2 threads), and the Arrow batch size `spark.sql.execution.arrow.maxRecordsPerBatch`, rows
  handed to the UDF per call (2048 in conf/tagger.yaml; variants 512 and Spark's default 10000).

The in-worker variants run in this process with no Spark and 1 torch thread, through the job's
own cascade (`tagger.udfs.cascade.run_cascade`) with the variant's switches passed into
`LoadedHead.predict_proba`: the baseline is the job's code path, not a copy that could drift. The Arrow variants run the
job's mapInPandas stage on local Spark after an untimed warm-up that loads the models in every
worker.
"""
from __future__ import annotations

import os
import time

import numpy as np

BASELINE = {"cascade": True, "order": "length", "padding": "batch", "batch_size": 64, "grad": "inference",
            "tokenize": "batch"}
VARIANTS = [  # (name, what changes from the baseline)
    ("baseline (the job)", {}),
    ("no cascade: P0 on every row", {"cascade": False}),
    ("input order, no length sort", {"order": "input"}),
    ("pad every batch to max_length", {"order": "input", "padding": "max"}),
    ("batch size 1", {"batch_size": 1}),
    ("batch size 16", {"batch_size": 16}),
    ("batch size 256", {"batch_size": 256}),
    ("torch.no_grad instead of inference_mode", {"grad": "no_grad"}),
    ("autograd on (no no_grad)", {"grad": "enabled"}),
    ("tokenize one text per call", {"tokenize": "per_text"}),
]
SPARK_SETTINGS = [  # (name, arrow maxRecordsPerBatch, partitions, torch threads per task)
    ("the job: 2 tasks x 1 thread, Arrow 2048", 2048, 2, 1),
    ("1 task x 2 threads", 2048, 1, 2),
    ("Arrow batches of 512 rows", 512, 2, 1),
    ("Arrow batches of 10000 (Spark's default)", 10000, 2, 1),
]


def cascade_seconds(heads, texts: list[str], settings: dict) -> tuple[float, int]:
    """Seconds for the job's cascade (`run_cascade`) over `texts` with one torch thread and the
    given settings (BASELINE's keys), and the number of rows the heads scored in all."""
    import torch

    from tagger.udfs.cascade import run_cascade

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one task's share of the machine
    try:
        started = time.perf_counter()
        runs = run_cascade(heads, texts, **settings)
        return time.perf_counter() - started, sum(len(r.rows) for r in runs)
    finally:
        torch.set_num_threads(before)


def _rounds(n: int, repeats: int) -> list[list[int]]:
    """Index orders for `repeats` rounds over n settings, each round rotated by one, so that no
    setting always runs first (or right after the same neighbour) on a machine whose load drifts."""
    return [[(i + r) % n for i in range(n)] for r in range(repeats)]


def spark_stage_seconds(spark, spec, items, settings, repeats: int, log) -> list[list[float]]:
    """The job's tagging stage (mapInPandas over the repartitioned input, persisted and counted)
    for each (arrow_batch, partitions, torch_threads) setting, `repeats` times in rotating order,
    each run after an untimed warm-up with the same setting (models loaded in its workers)."""
    import dataclasses

    from tagger.measure.bench import _spark_variant
    from tagger.udfs.tagging import INPUT_COLUMNS, OUTPUT_SCHEMA, tag_partitions

    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key, None)
    try:
        df = spark.createDataFrame(items[INPUT_COLUMNS]).cache()
        n = df.count()
        out: list[list[float]] = [[] for _ in settings]
        for order in _rounds(len(settings), repeats):
            for i in order:
                label, arrow, partitions, threads = settings[i]
                spark.conf.set(key, str(arrow))
                stage_spec = dataclasses.replace(spec, torch_threads=threads)

                def stage(frame):
                    return frame.repartition(partitions, "itemid").mapInPandas(tag_partitions(stage_spec),
                                                                               OUTPUT_SCHEMA)

                log(f"spark: {label} ...")
                stage(df.limit(min(n, 4 * partitions * 64))).write.format("noop").mode("overwrite").save()
                m, result = _spark_variant(spark, label, stage(df), n)
                result.unpersist()
                out[i].append(m.seconds)
        df.unpersist()
        return out
    finally:
        if before is not None:
            spark.conf.set(key, before)


def _row(name: str, n: int, times: list[float], baseline: list[float]) -> dict:
    """Median seconds over the repeats, items/s, and the median time relative to the baseline."""
    median, base = float(np.median(times)), float(np.median(baseline))
    return {"variant": name, "seconds": round(median, 3), "runs_s": [round(t, 3) for t in times],
            "items_per_s": round(n / median, 1), "times_baseline": round(median / base, 3)}


def run_ablation(cfg, n_items: int, seed: int, with_spark: bool, log, repeats: int = 3) -> dict:
    """Time every variant `repeats` times in rotating order on `n_items` generated items with the
    config's heads; returns the report dict (variants, spark_stage or None, config) that
    format_text prints. Raises ArtifactError if a head cannot be loaded."""
    from tagger.measure.inputs import bench_session

    spark, own_session = bench_session(cfg)
    try:
        return _run_ablation(spark, cfg, n_items, seed, with_spark, log, repeats)
    finally:
        if own_session:
            spark.stop()


def _run_ablation(spark, cfg, n_items: int, seed: int, with_spark: bool, log, repeats: int) -> dict:
    import torch

    from tagger.job.tag import build_spec
    from tagger.measure.inputs import bench_inputs
    from tagger.models.loading import load_head
    from tagger.udfs.cascade import HeadRef

    items, tag_index = bench_inputs(spark, cfg, n_items, seed=seed)
    texts = items["doc_text"].tolist()
    heads = [(HeadRef.of(conf), load_head(conf.path, device="cpu")) for conf in cfg.heads]
    log(f"{len(items):,} generated items")
    cascade_seconds(heads, texts[:500], BASELINE)  # warm-up: allocator, first-call costs
    runs: list[list[float]] = [[] for _ in VARIANTS]
    scored = [0] * len(VARIANTS)
    for order in _rounds(len(VARIANTS), repeats):
        for i in order:
            name, change = VARIANTS[i]
            log(f"{name} ...")
            seconds, scored[i] = cascade_seconds(heads, texts, {**BASELINE, **change})
            runs[i].append(seconds)
    rows = [_row(name, len(texts), times, runs[0]) | {"change": change, "rows_scored": n_scored}
            for (name, change), times, n_scored in zip(VARIANTS, runs, scored)]
    stage = None
    if with_spark:
        spec, _, _ = build_spec(cfg, tag_index, "generated tag dimension", 1)
        times = spark_stage_seconds(spark, spec, items, SPARK_SETTINGS, repeats, log)
        stage = [_row(label, len(items), t, times[0]) | {"max_records_per_batch": arrow, "partitions": partitions,
                                                         "torch_threads": threads}
                 for (label, arrow, partitions, threads), t in zip(SPARK_SETTINGS, times)]
    return {"items": len(items), "variants": rows, "spark_stage": stage,
            "config": {"cores": os.cpu_count(), "torch": torch.__version__, "seed": seed, "repeats": repeats,
                       "heads": [c.name for c, _ in heads], "baseline": BASELINE, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}}


def format_text(r: dict) -> str:
    """The run_ablation report `r` as a multi-line text table: per variant median seconds, items/s,
    rows scored and time relative to the baseline, then the Spark settings (if measured)."""
    lines = [f"tagger ablation: {r['items']:,} items, heads {', '.join(r['config']['heads'])}, model work only "
             f"(no Spark), 1 torch thread; seconds are the median of {r['config']['repeats']} runs", "",
             f"  {'variant':<42} {'seconds':>8} {'items/s':>9} {'rows scored':>12} {'x baseline time':>16}"]
    for row in r["variants"]:
        lines.append(f"  {row['variant']:<42} {row['seconds']:>8.2f} {row['items_per_s']:>9,.0f} "
                     f"{row['rows_scored']:>12,} {row['times_baseline']:>16.2f}")
    if r["spark_stage"]:
        lines += ["", "  the job's tagging stage on local Spark (models loaded in the workers):",
                  f"  {'setting':<42} {'seconds':>8} {'items/s':>9} {'':>12} {'x baseline time':>16}"]
        for a in r["spark_stage"]:
            lines.append(f"  {a['variant']:<42} {a['seconds']:>8.2f} {a['items_per_s']:>9,.0f} {'':>12} "
                         f"{a['times_baseline']:>16.2f}")
    lines += ["", f"  load average at end {r['config']['loadavg_at_end']} on {r['config']['cores']} cores"]
    return "\n".join(lines)
