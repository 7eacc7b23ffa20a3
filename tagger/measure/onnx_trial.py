"""`tagger bench --onnx-trial`: ONNX Runtime against torch on the CPU, in one run, on the bench's
generated texts (issue 17, item 5; docs/speed.md, "ONNX Runtime trial").

For the demo heads (the config's trained heads, or --models-dir) and for one random-weight
BERT-base head (tagger/measure/random_heads.py, nothing downloaded), each head is copied and
exported to ONNX (models/onnx_runtime.py, untimed), then, with the same number of threads on both
sides (torch.set_num_threads and the onnxruntime session's intra-op threads):

* items/s of each head's predict_proba alone, torch and onnxruntime alternating, median of
  `repeats` (the job's batch size, length-sorted batches, dynamic padding: the job's path);
* demo heads: items/s of the job's whole tagging code (`Tagger.tag` on Arrow-sized chunks: rules,
  cascade, rounding, decisions, tag ids; models loaded before timing), alternating, median;
* batch independence: the largest change of any score between a row scored alone and in a
  batch of the job's batch size (onnxruntime, and torch for reference);
* tag agreement with torch: per head, the share of texts whose emitted labels (the job's
  rounding and decision code) are identical; for the demo heads also over the job's cascade
  output, per head over the items it ran on (bench.head_tags_agreement).

The verdict applies the issue's rule: on by default only if onnxruntime is >= SPEEDUP_BAR x torch
for the demo heads (their cascade) and for the bert-base head, every head's batch dependence is
<= bench.BATCH_INVARIANT_MAX_DIFF and every head's tags agree on >= MIN_AGREEMENT of its items.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tagger.measure.bench import BATCH_INVARIANT_MAX_DIFF, _tag_in_chunks, head_tags_agreement, tags_agreement

SPEEDUP_BAR = 1.25
MIN_AGREEMENT = 0.999


def _copy_head(src: str, dst: Path, runtime: str | None) -> str:
    """Copy a head directory to `dst` and set (or, with None, drop) its sidecar's runtime key."""
    from tagger.models.spec import read_spec, write_spec

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.onnx", "bad_cases.jsonl", "*.png"))
    spec = read_spec(dst)
    spec.extra.pop("runtime", None)
    if runtime:
        spec.extra["runtime"] = runtime
    write_spec(dst, spec)
    return str(dst)


def _items_per_s(head, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    head.predict_proba(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - started)


def alone_vs_batch(head, texts: list[str], batch_size: int) -> float:
    """The largest |score difference| of `head` between `texts` scored in batches of `batch_size`
    and each text scored alone (batch of 1). Returns 0.0 for no texts."""
    if not texts:
        return 0.0
    together = head.predict_proba(texts, batch_size=batch_size)
    alone = np.vstack([head.predict_proba([t], batch_size=1) for t in texts])
    return float(np.abs(together - alone).max())


def label_agreement(a, b, texts: list[str], batch_size: int) -> tuple[float, float]:
    """(share of `texts` whose emitted label sets are identical, largest |score diff|) between two
    loaded heads with the same spec: scores rounded and decided by the job's own code
    (models.decision.round_scores, the head's decide)."""
    from tagger.models.decision import round_scores

    pa, pb = a.predict_proba(texts, batch_size=batch_size), b.predict_proba(texts, batch_size=batch_size)
    da, db = a.decide(round_scores(pa)), b.decide(round_scores(pb))
    same = (da == db).all(axis=1)
    return (float(same.mean()) if len(same) else 1.0), float(np.abs(pa - pb).max()) if len(pa) else 0.0


def compare_heads(pairs, texts: list[str], batch_size: int, repeats: int, dependence_texts: int, log) -> dict:
    """Per (name, torch head, onnx head) of `pairs`: items/s of both on `texts` (alternating, median
    of `repeats`), the speed-up, batch dependence of both on the first `dependence_texts` texts,
    and label agreement on all `texts`. Returns {name: {...}}."""
    out = {}
    for name, torch_head, onnx_head in pairs:
        runs = {"torch": [], "onnx": []}
        _items_per_s(torch_head, texts[:batch_size], batch_size)  # warm both (first-call allocations)
        _items_per_s(onnx_head, texts[:batch_size], batch_size)
        for r in range(repeats):
            order = (("torch", torch_head), ("onnx", onnx_head)) if r % 2 == 0 else (("onnx", onnx_head), ("torch", torch_head))
            for side, head in order:
                runs[side].append(_items_per_s(head, texts, batch_size))
        sample = texts[:dependence_texts]
        agree, diff = label_agreement(torch_head, onnx_head, texts, batch_size)
        t_med, o_med = statistics.median(runs["torch"]), statistics.median(runs["onnx"])
        out[name] = {"arch": torch_head.spec.arch, "texts": len(texts),
                     "torch_items_per_s": round(t_med, 2), "onnx_items_per_s": round(o_med, 2),
                     "speedup": round(o_med / t_med, 3),
                     "torch_runs": [round(x, 1) for x in runs["torch"]], "onnx_runs": [round(x, 1) for x in runs["onnx"]],
                     "dependence_texts": len(sample),
                     "onnx_alone_vs_batch_max_abs_diff": alone_vs_batch(onnx_head, sample, batch_size),
                     "torch_alone_vs_batch_max_abs_diff": alone_vs_batch(torch_head, sample, batch_size),
                     "labels_agree_ratio": round(agree, 6), "score_max_abs_diff_vs_torch": diff}
        log(f"  {name}: torch {t_med:,.1f}/s, onnxruntime {o_med:,.1f}/s ({o_med / t_med:.2f}x); alone vs batch "
            f"{out[name]['onnx_alone_vs_batch_max_abs_diff']:.2g}; labels agree {agree:.4%}")
    return out


def compare_cascades(torch_spec, onnx_spec, items, chunk: int, repeats: int, log) -> dict:
    """The job's tagging code (Tagger.tag on `chunk`-row slices of `items`) with torch heads and
    with onnx heads, models loaded before timing, alternating, median of `repeats`: items/s of
    both, the speed-up, tag agreement over all items and per head over the items it ran on."""
    from tagger.udfs.tagging import Tagger

    taggers = {"torch": Tagger(torch_spec), "onnx": Tagger(onnx_spec)}
    runs, outs = {"torch": [], "onnx": []}, {}
    for r in range(repeats):
        for side in (("torch", "onnx") if r % 2 == 0 else ("onnx", "torch")):
            started = time.perf_counter()
            outs[side] = _tag_in_chunks(taggers[side], items, chunk)
            runs[side].append(len(items) / (time.perf_counter() - started))
    agree, missing, gate_diff = tags_agreement(outs["onnx"], outs["torch"])
    per_head = head_tags_agreement(outs["onnx"], outs["torch"], taggers["torch"].heads)
    t_med, o_med = statistics.median(runs["torch"]), statistics.median(runs["onnx"])
    log(f"  cascade (Tagger.tag): torch {t_med:,.1f}/s, onnxruntime {o_med:,.1f}/s ({o_med / t_med:.2f}x); "
        f"tags agree on {agree:.4%} of items")
    return {"items": len(items), "torch_items_per_s": round(t_med, 2), "onnx_items_per_s": round(o_med, 2),
            "speedup": round(o_med / t_med, 3), "torch_runs": [round(x, 1) for x in runs["torch"]],
            "onnx_runs": [round(x, 1) for x in runs["onnx"]], "tags_agree_ratio": round(agree, 6),
            "items_missing": missing, "gate_score_max_abs_diff": gate_diff, "per_head": per_head}


def run_onnx_trial(cfg, n_items: int, models_dir: str | None, *, bert_items: int = 64, head_items: int = 2000,
                   repeats: int = 3, threads: int = 1, dependence_texts: int = 200, bert_dependence_texts: int = 16,
                   max_length: int | None = None, seed: int = 7, bert_dir: str | None = None,
                   log=lambda msg: print(msg, file=sys.stderr)) -> dict:
    """Run the ONNX Runtime trial (module docstring) and return its report: per-head figures for the
    demo heads (`head_items` texts each) and the bert-base head (`bert_items` texts, `max_length`
    tokens: default the config's BERT head's, else 128), the demo cascade on `n_items` items,
    `threads` threads on both sides, and the verdict (`meets_bar`, with which criterion failed).
    `bert_dir` keeps the built bert-base head for a rerun (default: a temp dir). Raises
    ArtifactError for a missing or unreadable demo head (or one that does not export) and
    ConfigError for a label the tag dimension lacks."""
    import onnxruntime
    import torch

    from tagger.job.tag import build_spec
    from tagger.measure.inputs import bench_inputs, bench_session
    from tagger.measure.random_heads import build_bert_heads
    from tagger.models.loading import load_head
    from tagger.models.onnx_runtime import export_onnx

    started_all = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    spark, own_session = bench_session(cfg)
    try:
        items, tag_index = bench_inputs(spark, cfg, n_items, seed=seed)
        chunk = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "10000"))
    finally:
        if own_session:
            spark.stop()
    texts = items["doc_text"].tolist()
    log(f"{len(items):,} generated items, doc_text {np.mean([len(t) for t in texts]):.0f} chars on average; "
        f"{threads} thread(s) for torch and onnxruntime alike")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the onnxruntime sessions take torch's thread count when they load
    heads = cfg.heads if not models_dir else tuple(
        dataclasses.replace(h, path=str(Path(models_dir) / h.name)) for h in cfg.heads)
    if max_length is None:
        p0 = next((h for h in cfg.heads if h.train is not None and h.train.arch == "bert"), None)
        max_length = int((p0.train.options.get("max_length") if p0 else None) or 128)
    try:
        with tempfile.TemporaryDirectory(prefix="tagger-bench-onnx-") as tmp:
            tmp = Path(tmp)
            torch_heads, onnx_heads, export_s = [], [], {}
            for h in heads:
                torch_heads.append(dataclasses.replace(h, path=_copy_head(h.path, tmp / "torch" / h.name, None)))
                dst = _copy_head(h.path, tmp / "onnx" / h.name, None)
                t0 = time.perf_counter()
                export_onnx(dst, enable=True, log=log)
                export_s[h.name] = round(time.perf_counter() - t0, 1)
                onnx_heads.append(dataclasses.replace(h, path=dst))
            torch_spec, _, _ = build_spec(dataclasses.replace(cfg, heads=tuple(torch_heads)), tag_index,
                                          "generated tag dimension", threads)
            onnx_spec, _, _ = build_spec(dataclasses.replace(cfg, heads=tuple(onnx_heads)), tag_index,
                                         "generated tag dimension", threads)
            torch_spec = dataclasses.replace(torch_spec, device="cpu")
            onnx_spec = dataclasses.replace(onnx_spec, device="cpu")

            log(f"demo heads alone, {min(head_items, len(texts)):,} texts each ...")
            pairs = [(h.name, load_head(t.path, device="cpu"), load_head(o.path, device="cpu"))
                     for h, t, o in zip(heads, torch_heads, onnx_heads)]
            demo = compare_heads(pairs, texts[:head_items], torch_spec.batch_size, repeats, dependence_texts, log)
            del pairs
            log(f"demo cascade on {len(items):,} items ...")
            cascade = compare_cascades(torch_spec, onnx_spec, items, chunk, repeats, log)

            gate = next(h for h in cfg.heads if h.name == cfg.gate_head)
            bert_root = Path(bert_dir) if bert_dir else tmp / "bert-base"
            log(f"bert-base head ({gate.name}'s labels, random weights, {max_length} tokens) ...")
            (built,) = build_bert_heads(dataclasses.replace(cfg, heads=(gate,)), bert_root, texts, tag_index,
                                        max_length, 0.15, log)
            bert_onnx = _copy_head(built.path, tmp / "onnx-bert" / gate.name, None)
            t0 = time.perf_counter()
            export_onnx(bert_onnx, enable=True, log=log)
            export_s["bert-base"] = round(time.perf_counter() - t0, 1)
            pairs = [("bert-base", load_head(built.path, device="cpu", runtime="torch"), load_head(bert_onnx, device="cpu"))]
            bert = compare_heads(pairs, texts[:bert_items], torch_spec.batch_size, repeats, bert_dependence_texts, log)
            del pairs
    finally:
        torch.set_num_threads(threads_before)

    per_head = {**demo, **bert}
    failed = []
    if cascade["speedup"] < SPEEDUP_BAR:
        failed.append(f"demo cascade {cascade['speedup']:.2f}x < {SPEEDUP_BAR}x")
    if bert["bert-base"]["speedup"] < SPEEDUP_BAR:
        failed.append(f"bert-base {bert['bert-base']['speedup']:.2f}x < {SPEEDUP_BAR}x")
    for name, h in per_head.items():
        if h["onnx_alone_vs_batch_max_abs_diff"] > BATCH_INVARIANT_MAX_DIFF:
            failed.append(f"{name} alone vs batch {h['onnx_alone_vs_batch_max_abs_diff']:.2g} > {BATCH_INVARIANT_MAX_DIFF:g}")
        if h["labels_agree_ratio"] < MIN_AGREEMENT:
            failed.append(f"{name} labels agree {h['labels_agree_ratio']:.4%} < {MIN_AGREEMENT:.1%}")
    for name, h in cascade["per_head"].items():
        if h["agree_ratio"] < MIN_AGREEMENT:
            failed.append(f"{name} (cascade) tags agree {h['agree_ratio']:.4%} < {MIN_AGREEMENT:.1%}")
    return {
        "items": len(items), "threads": threads, "repeats": repeats, "batch_size": torch_spec.batch_size,
        "arrow_chunk": chunk, "head_texts": min(head_items, len(texts)), "bert_texts": min(bert_items, len(texts)),
        "bert_max_length": max_length, "per_head": per_head, "cascade": cascade, "export_seconds": export_s,
        "speedup_bar": SPEEDUP_BAR, "min_agreement": MIN_AGREEMENT,
        "batch_invariant_max_diff": BATCH_INVARIANT_MAX_DIFF, "meets_bar": not failed, "failed": failed,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "loadavg_at_start": load_at_start, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(), "seconds": round(time.perf_counter() - started_all, 1),
    }


def format_onnx_text(r: dict) -> str:
    """The run_onnx_trial report `r` as human-readable lines, with a markdown table (no trailing newline)."""
    lines = [f"ONNX Runtime trial: {r['items']:,} items, {r['threads']} thread(s) each side, median of "
             f"{r['repeats']} alternating runs, batch {r['batch_size']} (load average {r['loadavg_at_start']} -> "
             f"{r['loadavg_at_end']} on {r['cores']} cores; torch {r['versions']['torch']}, onnxruntime "
             f"{r['versions']['onnxruntime']})", "",
             "| head | arch | texts | torch items/s | onnxruntime items/s | speed-up | alone vs batch (ORT) | "
             "alone vs batch (torch) | labels agree |", "|---|---|---|---|---|---|---|---|---|"]
    for name, h in r["per_head"].items():
        lines.append(f"| {name} | {h['arch']} | {h['texts']:,} | {h['torch_items_per_s']:,.1f} | "
                     f"{h['onnx_items_per_s']:,.1f} | **{h['speedup']:.2f}x** | {h['onnx_alone_vs_batch_max_abs_diff']:.2g} | "
                     f"{h['torch_alone_vs_batch_max_abs_diff']:.2g} | {h['labels_agree_ratio']:.2%} |")
    c = r["cascade"]
    per = ", ".join(f"{n} {h['agree_ratio']:.2%} of {h['items']:,}" for n, h in c["per_head"].items())
    lines.append(f"| demo cascade (Tagger.tag) | gate+p0+p1 | {c['items']:,} | {c['torch_items_per_s']:,.1f} | "
                 f"{c['onnx_items_per_s']:,.1f} | **{c['speedup']:.2f}x** | | | {c['tags_agree_ratio']:.2%} |")
    lines += ["", f"cascade tags agree per head over the items it ran on: {per}",
              "runs (items/s): " + "; ".join(f"{n} torch {h['torch_runs']} ORT {h['onnx_runs']}"
                                             for n, h in {**r["per_head"], "cascade": c}.items()),
              f"export seconds: {r['export_seconds']}",
              f"bar: >= {r['speedup_bar']}x (demo cascade and bert-base), alone vs batch <= "
              f"{r['batch_invariant_max_diff']:g}, labels agree >= {r['min_agreement']:.1%} per head",
              "verdict: " + ("meets the bar: on by default" if r["meets_bar"] else
                             "fails the bar, stays off: " + "; ".join(r["failed"])),
              f"trial took {r['seconds']:.0f}s"]
    return "\n".join(lines)


def emit(report: dict, fmt: str, out_path: str | None) -> str:
    """The report as text (format_onnx_text) or JSON; the JSON also written to `out_path` when given."""
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(text + "\n", encoding="utf-8")
    return text if fmt == "json" else format_onnx_text(report)
