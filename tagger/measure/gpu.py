"""The GPU check (scripts/gpu_check.py): the job's own tagging code, `Tagger.tag` on pandas batches
as the UDF runs it (rules -> gate -> P0 on gated rows -> P1 -> thresholds -> implied parents -> tag
ids, tagger.udfs.cascade.run_cascade inside), with random-weight BERT heads, in fp32 and in the
job's autocast (bf16 on a GPU), over a sweep of model batch sizes. Prints a markdown table.

No Spark and no installed package needed (GPU machines have neither Java nor pyspark): the texts
are the demo generator's, built into doc_text in pandas like the job's normalize builds it
(title。summary。OCR。ASR, each cleaned and cut to the config's budget). Speech payloads are read
here with a plain JSON rule (strings, or objects' `text`), not the job's payload parser, and the pool
filter and quarantine are left out: this measures speed, not coverage, and needs nothing beyond
torch, transformers, numpy, pandas and pyyaml.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import platform
import re
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

START_DATE = "2024-01-01"
GATE_SHARE = 0.15    # docs/domain.md: 新车资讯 is 10-20% of items
LABEL_SHARE = 0.15   # each P0/P1 label's threshold: ~15% of a sample passes, so tags exist to compare
_SPACES = re.compile(r" +")
_DTYPES = {"torch.bfloat16": "bf16", "torch.float16": "fp16"}


@dataclass(frozen=True)
class Sizes:
    """What one check runs: `items` texts, `size` of the random BERT heads (models.bert_head.SIZES),
    `max_length` tokens, the model `batch_sizes` swept, the `precisions` ("fp32": autocast off; the
    job's "auto": bf16 on a GPU, or "bf16" forced, as on CPU) and the time budget in seconds within
    which `items` may be lowered (0: never)."""
    items: int
    size: str
    max_length: int
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...]
    budget_s: float = 0.0


GPU_SIZES = Sizes(items=20_000, size="bert-base", max_length=160, batch_sizes=(16, 64, 256),
                  precisions=("off", "auto"), budget_s=390.0)
CPU_SIZES = Sizes(items=200, size="small", max_length=64, batch_sizes=(16, 64, 256), precisions=("off", "bf16"))
PRECISION_NAMES = {"off": "fp32"}


@dataclass
class Run:
    """One timed pass over all items: precision name, model batch size, items, seconds, and the
    output frame of Tagger.tag (kept to compare tags)."""
    precision: str
    batch_size: int
    items: int
    seconds: float
    output: pd.DataFrame = field(repr=False)

    @property
    def items_per_s(self) -> float:
        """Items tagged per second (0 if no time was measured)."""
        return self.items / self.seconds if self.seconds > 0 else 0.0


def environment(device: str) -> dict[str, str]:
    """Device name, torch / CUDA / cuDNN / transformers / Python versions, as strings ("-" where
    not applicable). Raises ImportError without torch or transformers."""
    import torch
    import transformers

    cuda = device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name(torch.device(device)) if cuda else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "-",
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "-",
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def clean(text) -> str:
    """The job's clean_text in Python: control, format and separator characters and whitespace
    runs become one space, trimmed; None/NaN becomes ''."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    out = "".join(" " if c.isspace() or unicodedata.category(c) in ("Cc", "Cf") or unicodedata.category(c)[0] == "Z"
                  else c for c in str(text))
    return _SPACES.sub(" ", out).strip()


def speech_text(raw) -> str:
    """The text of a demo ASR/OCR payload: a JSON array of strings, or of objects with a `text`
    field, joined with spaces; '' for anything else (bad JSON included). A plain rule for the
    check's texts, not the job's payload parser."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return ""
    if not isinstance(value, list):
        return ""
    parts = [v if isinstance(v, str) else v.get("text") if isinstance(v, dict) else None for v in value]
    return " ".join(p for p in parts if isinstance(p, str) and p)


def demo_items(cfg, n_items: int, seed: int = 7) -> tuple[pd.DataFrame, dict[str, tuple[int, str]]]:
    """`n_items` demo items (tagger.demo.generator.generate, one day) as the tagging stage's input
    (itemid, dtype, doc_text), and the tag index of the demo tag dimension (active content tags of
    its newest snapshot: tag path -> (id, name), as tagger.job.tag.load_tag_index). ASR/OCR: the
    latest row per video with text (speech_text); budgets from cfg.text.max_chars. Raises
    ValueError from generate for n_items < 0."""
    from tagger.demo.generator import generate

    data = generate(n_items, START_DATE, 1, seed=seed)

    def speech(frame: pd.DataFrame, column: str) -> dict[str, str]:
        best: dict[str, str] = {}
        for row in frame.sort_values(["dt", "id"], kind="mergesort").itertuples(index=False):
            text = speech_text(getattr(row, column))
            if text:
                best[row.video_id] = text  # later rows win, as in the job
        return best

    asr, ocr = speech(data.asr, "result_asr"), speech(data.ocr, "ocr_info")
    pool = data.pool[data.pool["itemid"].notna()].drop_duplicates("itemid", keep="first")
    budget = cfg.text.max_chars
    texts = []
    for row in pool.itertuples(index=False):
        parts = [clean(row.title)[:budget["title"]], clean(row.summary)[:budget["summary"]],
                 clean(ocr.get(row.itemid))[:budget["ocr"]], clean(asr.get(row.itemid))[:budget["asr"]]]
        texts.append("。".join(p for p in parts if p))
    items = pd.DataFrame({"itemid": pool["itemid"].to_numpy(), "dtype": pool["dtype"].to_numpy(), "doc_text": texts})
    items = items[items["doc_text"] != ""].head(n_items).reset_index(drop=True)

    dim = data.tag_dim
    dim = dim[(dim["dt"] == dim["dt"].max()) & (dim["tag_type_name"] == "内容标签") & (dim["status"] == 1)
              & dim["id"].notna() & dim["tag_path_name"].notna()].sort_values("id", kind="mergesort")
    index: dict[str, tuple[int, str]] = {}
    for row in dim.itertuples(index=False):
        index.setdefault(row.tag_path_name.strip("/"), (int(row.id), row.tag_name))
    return items, index


def build_tagger(cfg, items: pd.DataFrame, tag_index, sizes: Sizes, work_dir: Path, device: str, log):
    """A tagger.udfs.tagging.Tagger over random BERT heads of sizes.size for cfg's heads (built in
    work_dir by tagger.measure.random_heads.build_bert_heads: the gate passes GATE_SHARE of a
    sample, each other label LABEL_SHARE), with cfg's rules and gate, on `device`. Raises what
    build_bert_heads, load_rules and load_head raise."""
    from tagger.measure.random_heads import build_bert_heads
    from tagger.rules_file import load_rules
    from tagger.udfs.tagging import Tagger, TaggerSpec

    texts = items["doc_text"].tolist()
    heads = build_bert_heads(cfg, work_dir, texts, tag_index, sizes.max_length, GATE_SHARE, log, size=sizes.size,
                             label_share=LABEL_SHARE)
    spec = TaggerSpec(heads=heads, gate_head=cfg.gate_head, rules=load_rules(cfg.rules_path), tag_index=tag_index,
                      batch_size=cfg.tagging.batch_size, device=device)
    return Tagger(spec)


def with_batch_size(tagger, batch_size: int):
    """The same loaded Tagger with another model batch size: a shallow copy whose spec differs in
    batch_size only (what Tagger(spec) would build, without loading the heads again)."""
    other = copy.copy(tagger)
    other.spec = dataclasses.replace(tagger.spec, batch_size=batch_size)
    return other


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed_pass(tagger, items: pd.DataFrame, batch_size: int, precision: str, arrow_rows: int, device: str) -> Run:
    """Tag `items` with `tagger` at model batch size `batch_size` and predict_proba autocast mode
    `precision`, in consecutive pandas batches of `arrow_rows` rows (the UDF's Arrow batches), after
    a one-batch warm-up. Returns the Run (seconds: wall time of the pass, device synchronized)."""
    t = with_batch_size(tagger, batch_size)
    t.tag(items.head(min(len(items), arrow_rows)), autocast=precision)  # warm-up: kernels, allocator
    _sync(device)
    started = time.perf_counter()
    parts = [t.tag(items.iloc[i:i + arrow_rows], autocast=precision) for i in range(0, len(items), arrow_rows)]
    _sync(device)
    seconds = time.perf_counter() - started
    return Run(PRECISION_NAMES.get(precision, precision), batch_size, len(items), seconds,
               pd.concat(parts, ignore_index=True))


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    """(share of items whose tag ids are identical, largest absolute gate-score difference) between
    two Tagger.tag outputs of the same items in the same order."""
    same = float(np.mean(a["tag_ids"].to_numpy() == b["tag_ids"].to_numpy())) if len(a) else 1.0
    diff = np.abs(a["gate_score"].to_numpy(dtype=float) - b["gate_score"].to_numpy(dtype=float))
    return same, float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0


def markdown_table(runs: list[Run], dtype_names: dict[str, str]) -> str:
    """The README table: one row per run, in run order; speed relative to fp32 at the same batch
    size, and each non-fp32 run's tag agreement and largest gate-score difference against it."""
    fp32 = {r.batch_size: r for r in runs if r.precision == "fp32"}
    rows = ["| precision | batch size | items | seconds | items/s | × fp32 | tags identical to fp32 | max abs gate-score diff |",
            "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        base = fp32.get(r.batch_size)
        if r.precision == "fp32" or base is None:
            ratio, same, diff = "1.00", "—", "—"
        else:
            share, gap = agreement(base.output, r.output)
            ratio, same, diff = f"{r.items_per_s / base.items_per_s:.2f}", f"{share:.2%}", f"{gap:.4f}"
        rows.append(f"| {dtype_names.get(r.precision, r.precision)} | {r.batch_size} | {r.items:,} | {r.seconds:.2f} "
                    f"| {r.items_per_s:,.0f} | {ratio} | {same} | {diff} |")
    return "\n".join(rows)


def run_check(cfg, sizes: Sizes, device: str, work_dir: Path, log=print, started: float | None = None) -> str:
    """Run the whole check and return the report (markdown): a heading line with the device and
    versions, the table, and notes (what ran, the share of items P0 saw, sizes lowered to fit the
    budget). `log` gets progress lines. `started` (perf_counter) counts earlier set-up against
    sizes.budget_s. Raises what build_tagger and Tagger.tag raise."""
    started = time.perf_counter() if started is None else started
    env = environment(device)
    log(f"device {env['device']}: torch {env['torch']}, CUDA {env['cuda']}, transformers {env['transformers']}, "
        f"Python {env['python']}")
    items, tag_index = demo_items(cfg, sizes.items)
    log(f"{len(items):,} demo texts, mean {items['doc_text'].str.len().mean():.0f} characters")
    tagger = build_tagger(cfg, items, tag_index, sizes, work_dir, device, log)
    arrow_rows = cfg.tagging.arrow_max_records_per_batch
    notes = []

    if sizes.budget_s:  # lower the item count so that every pass fits the budget (fp32 at batch 16 is the slowest)
        probe = timed_pass(tagger, items.head(min(len(items), 512)), 64, "off", arrow_rows, device)
        left = sizes.budget_s - (time.perf_counter() - started)
        passes = 2 * len(sizes.precisions) * len(sizes.batch_sizes)  # each pass has a warm-up batch too
        fit = int(max(0.0, left) * probe.items_per_s / (1.5 * passes))
        if fit < len(items):
            notes.append(f"items lowered from {len(items):,} to {max(fit, 500):,} to fit the {sizes.budget_s:.0f} s budget "
                         f"(probe: {probe.items_per_s:,.0f} items/s fp32 at batch 64)")
            items = items.head(max(fit, 500))

    runs = []
    for batch_size in sizes.batch_sizes:
        for precision in sizes.precisions:
            run = timed_pass(tagger, items, batch_size, precision, arrow_rows, device)
            runs.append(run)
            log(f"{run.precision} batch {batch_size}: {run.items_per_s:,.0f} items/s ({run.seconds:.1f}s)")

    bert = next((h for _, h in tagger.heads if h.spec.arch == "bert"), tagger.heads[0][1])
    dtype_names = {"fp32": "fp32"}
    for precision in sizes.precisions:
        dtype = bert.autocast_dtype(precision)
        label = "fp32" if dtype is None else _DTYPES.get(str(dtype), str(dtype)) + " autocast"
        dtype_names[PRECISION_NAMES.get(precision, precision)] = label + (" (the job's)" if precision == "auto" else "")
    first = runs[0].output if runs else pd.DataFrame({"tags": []})
    gated = next((h.name for h in cfg.heads if h.gate_by), "p0")
    share = {source: float(np.mean(first["tags"].map(lambda tags: any(t["source"] == source for t in tags))))
             if len(first) else 0.0 for source in (cfg.gate_head, gated)}
    dims = ", ".join(f"{h.spec.head} {len(h.spec.labels)} labels" for _, h in tagger.heads)
    lines = [
        f"{'GPU' if device.startswith('cuda') else 'CPU'} check on **{env['device']}**: torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
        f"transformers {env['transformers']}, Python {env['python']}. "
        f"`Tagger.tag` (rules, cascade, thresholds, parents, tag ids) on pandas batches of {arrow_rows:,} rows; "
        f"random-weight {sizes.size} heads ({dims}), max_length {sizes.max_length}; the gate passed "
        f"{share[cfg.gate_head]:.1%} of the items ({share[gated]:.1%} got a tag from {gated}, which runs on those only).",
        "",
        markdown_table(runs, dtype_names),
    ]
    if not device.startswith("cuda"):
        notes.insert(0, "NO GPU: this ran on the CPU with small sizes (a plumbing check, not GPU figures).")
    notes.append("Random weights: the tag agreement is a stress figure (scores of random heads crowd near "
                 "their thresholds), not the trained heads' agreement.")
    lines += [""] + [f"- {n}" for n in notes]
    log(f"done in {time.perf_counter() - started:.0f}s")
    return "\n".join(lines)


def main_check(argv: list[str] | None = None) -> int:
    """Command line of scripts/gpu_check.py (see its docstring): parse `argv`, run the check, print
    the report on stdout (progress on stderr). Returns the exit status: 0 done, 2 bad usage."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    parser.add_argument("--items", type=int, default=None, help="texts to tag (default: 20000 on a GPU, 200 on CPU)")
    parser.add_argument("--batch-sizes", default=None, help="model batch sizes, comma-separated (default 16,64,256)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds the passes may take; items are lowered to fit (default 390 on a GPU, 0 = off)")
    parser.add_argument("--config", default=None, help="job YAML (default: the shipped conf/tagger.yaml)")
    parser.add_argument("--work-dir", default=None, help="where to build the random heads (default: a temp dir)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import torch

    from tagger.config import load_config

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = GPU_SIZES if device.startswith("cuda") else CPU_SIZES
    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",")) if args.batch_sizes else sizes.batch_sizes
    except ValueError:
        parser.error(f"--batch-sizes must be integers separated by commas, got {args.batch_sizes!r}")
    sizes = dataclasses.replace(sizes, items=args.items or sizes.items, batch_sizes=batch_sizes,
                                budget_s=sizes.budget_s if args.budget_s is None else args.budget_s)
    cfg = load_config(args.config)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="tagger-gpu-check-") as tmp:
        report = run_check(cfg, sizes, device, Path(args.work_dir or tmp), log=log, started=started)
    print(report, flush=True)
    return 0
