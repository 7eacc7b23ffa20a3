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

The in-worker variants run in this process with no Spark and 1 torch thread; the baseline's scores are checked against the job's own `LoadedHead.predict_proba`,
so the baseline is the job's code path, not a copy that could drift. The Arrow variants run the
job's mapInPandas stage on local Spark after an untimed warm-up that loads the models in every
worker.
"""
from __future__ import annotations

import os
import sys
import time

import click
import numpy as np

BASELINE = {"cascade": True, "order": "length", "padding": "dynamic", "batch_size": 64, "grad": "inference",
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


def _encode(head, texts: list[str], tokenize: str) -> tuple[np.ndarray, np.ndarray]:
    if tokenize == "batch":
        return head.encode(texts)
    parts = [head.encode([t]) for t in texts]  # one tokenizer call per text, then one padded matrix
    lengths = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    width = max([p[0].shape[1] for p in parts] or [1])
    ids = np.zeros((len(texts), width), dtype=parts[0][0].dtype if parts else np.int64)
    for i, (row, _) in enumerate(parts):
        ids[i, :row.shape[1]] = row[0]
    return ids, lengths


def _grad_mode(grad: str):
    import torch

    return {"inference": torch.inference_mode, "no_grad": torch.no_grad, "enabled": torch.enable_grad}[grad]()


def score(head, texts: list[str], *, order: str, padding: str, batch_size: int, grad: str,
          tokenize: str) -> np.ndarray:
    """`LoadedHead.predict_proba` with each of its choices switchable (the baseline settings give
    the same scores: checked in `run_ablation`)."""
    import torch

    from tagger.models.tokenization import normalize_texts

    texts = normalize_texts(texts)
    out = np.zeros((len(texts), len(head.spec.labels)), dtype=np.float32)
    if not texts:
        return out
    ids, lengths = _encode(head, texts, tokenize)
    min_width = head.model.min_width if head.spec.arch == "textcnn" else 1
    if padding == "max":
        full = np.zeros((len(texts), max(head.max_length, min_width)), dtype=ids.dtype)
        full[:, :ids.shape[1]] = ids
        ids = full
    rows = np.argsort(-lengths, kind="stable") if order == "length" else np.arange(len(texts))
    head.model.eval()
    with _grad_mode(grad):
        tables = None
        if head.spec.arch == "textcnn" and int(lengths.sum()) >= 2 * len(head.vocab):
            tables = head.model.precompute_tables()
        for start in range(0, len(texts), batch_size):
            idx = rows[start:start + batch_size]
            width = ids.shape[1] if padding == "max" else max(int(lengths[idx].max()), min_width)
            x = torch.from_numpy(np.ascontiguousarray(ids[idx, :width])).to(head.device, torch.long)
            lens = torch.from_numpy(lengths[idx]).to(head.device)
            out[idx] = head._to_proba(head._logits(x, lens, tables)).detach().cpu().numpy()
    np.clip(out, 0.0, 1.0, out=out)
    return out


def cascade_seconds(heads, texts: list[str], settings: dict) -> tuple[float, int]:
    """Seconds for every head over `texts` as the job runs them (a gated head on the rows its gate
    passed, unless settings['cascade'] is off), and the number of rows the heads scored in all."""
    import torch

    from tagger.models.decision import round_scores

    kw = {k: settings[k] for k in ("order", "padding", "batch_size", "grad", "tokenize")}
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one task's share of the machine
    try:
        started = time.perf_counter()
        passed, scored = {}, 0
        for conf, head in heads:
            if conf.gate_by is None or not settings["cascade"]:
                rows = np.arange(len(texts))
            else:
                rows = np.flatnonzero(passed[conf.gate_by])
            scores = score(head, [texts[r] for r in rows], **kw)
            hit = head.decide(round_scores(scores))
            first = np.zeros(len(texts), dtype=bool)
            first[rows] = hit[:, 0]
            passed[conf.name] = first
            scored += len(rows)
        return time.perf_counter() - started, scored
    finally:
        torch.set_num_threads(before)


def _check_baseline(heads, texts: list[str]) -> float:
    """Largest |difference| between the baseline's scores and the job's predict_proba."""
    kw = {k: BASELINE[k] for k in ("order", "padding", "batch_size", "grad", "tokenize")}
    return max(float(np.abs(score(h, texts, **kw) - h.predict_proba(texts, batch_size=64)).max()) for _, h in heads)


def _rounds(n: int, repeats: int) -> list[list[int]]:
    """Index orders for `repeats` rounds over n settings, each round rotated by one, so that no
    setting always runs first (or right after the same neighbour) on a machine whose load drifts."""
    return [[(i + r) % n for i in range(n)] for r in range(repeats)]


def spark_stage_seconds(cfg, spec, items, settings, repeats: int, log) -> list[list[float]]:
    """The job's tagging stage (mapInPandas over the repartitioned input, persisted and counted)
    for each (arrow_batch, partitions, torch_threads) setting, `repeats` times in rotating order,
    each run after an untimed warm-up with the same setting (models loaded in its workers)."""
    import dataclasses

    from tagger.measure.bench import _session, _spark_variant
    from tagger.udfs.tagging import INPUT_COLUMNS, OUTPUT_SCHEMA, tag_partitions

    spark, own = _session(cfg)
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
        if own:
            spark.stop()


def _row(name: str, n: int, times: list[float], baseline: list[float]) -> dict:
    """Median seconds over the repeats, items/s, and the median time relative to the baseline."""
    median, base = float(np.median(times)), float(np.median(baseline))
    return {"variant": name, "seconds": round(median, 3), "runs_s": [round(t, 3) for t in times],
            "items_per_s": round(n / median, 1), "times_baseline": round(median / base, 3)}


def run_ablation(cfg, n_items: int, seed: int, with_spark: bool, log, repeats: int = 3) -> dict:
    import torch

    from tagger.models.loading import load_head
    from tagger.measure.bench import bench_items, tag_index_of
    from tagger.job.pipeline import build_spec

    items, tag_dim = bench_items(n_items, cfg.text.max_chars, seed=seed)
    texts = items["doc_text"].tolist()
    heads = [(conf, load_head(conf.path, device="cpu")) for conf in cfg.heads]
    check = _check_baseline(heads, texts[:300])
    if check > 1e-5:
        raise RuntimeError(f"the ablation's baseline scores differ from the job's by {check:.2g}: "
                           "tagger/ablation.py score() has drifted from tagger.models.spec.predict_proba")
    log(f"{len(items):,} generated items; baseline matches the job's scores (max |diff| {check:.1g})")
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
        spec, _, _ = build_spec(cfg, tag_index_of(tag_dim), "generated tag dimension", 1)
        times = spark_stage_seconds(cfg, spec, items, SPARK_SETTINGS, repeats, log)
        stage = [_row(label, len(items), t, times[0]) | {"max_records_per_batch": arrow, "partitions": partitions,
                                                         "torch_threads": threads}
                 for (label, arrow, partitions, threads), t in zip(SPARK_SETTINGS, times)]
    return {"items": len(items), "variants": rows, "spark_stage": stage,
            "config": {"cores": os.cpu_count(), "torch": torch.__version__, "seed": seed, "repeats": repeats,
                       "heads": [c.name for c, _ in heads], "baseline": BASELINE,
                       "baseline_check_max_abs_diff": check, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}}


def format_text(r: dict) -> str:
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


@click.command("ablation", help="Time the tagging stage's model work with each of its inference choices undone, one "
                                "at a time (cascade, length sort, dynamic padding, batch size, inference_mode, "
                                "batched tokenization; threads and Arrow batch size in Spark), on the same generated texts and "
                                "trained heads. About 10 min at 10,000 items and 3 repeats with the demo heads on 2 cores.")
@click.option("--items", "n_items", type=click.IntRange(min=10), default=20000, show_default=True)
@click.option("--spark/--no-spark", "with_spark", default=True, show_default=True,
              help="Also time the job's Spark stage with other thread and Arrow batch settings (starts local Spark).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs of every variant, in rotating order; the report gives the median (the machine is shared).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Job YAML config (default: the tagger group's --config, else conf/tagger.yaml).")
@click.option("--seed", type=int, default=7, show_default=True, help="Generator seed (same texts as tagger bench).")
@click.pass_context
def ablation_command(ctx, n_items, with_spark, repeats, fmt, out_path, config_path, seed):
    from tagger.models.spec import ArtifactError
    from tagger.measure.bench import emit_report
    from tagger.config import ConfigError, load_config

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parent = ctx.find_root().obj if ctx.find_root() is not ctx else None
    try:
        cfg = load_config(config_path or (parent or {}).get("config"))
        report = run_ablation(cfg, n_items, seed, with_spark, log=lambda msg: click.echo(msg, err=True),
                              repeats=repeats)
    except (ConfigError, ArtifactError) as exc:
        hint = " Train the demo heads first (`tagger demo` or `tagger train`)." if isinstance(exc, ArtifactError) else ""
        click.echo(f"Error: {exc}{hint}", err=True)
        sys.exit(3)
    emit_report(report, fmt, out_path, format_text)


__all__ = ["ablation_command", "run_ablation", "score", "VARIANTS", "BASELINE"]
