"""`tagger train`: build labelled examples from the warehouse and train every configured head.

Examples use the job's own normalize step, so a model sees at training time exactly the
doc_text it will see in the daily run (title, summary, OCR, ASR, same budgets).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from tagger.config import Config, ConfigError, HeadConf, TrainConf, head_labels, tagger_home
from tagger.job.extract import extract
from tagger.job.normalize import normalize
from tagger.sql_files import run_sql

SPLITS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def labelled_examples(spark: SparkSession, cfg: Config, dates: list[str]) -> pd.DataFrame:
    """itemid, doc_text, labels (true tag paths), pt for the given dates."""
    frames = []
    for date in dates:
        sources = extract(spark, cfg, date)
        items = normalize(sources.pool, sources.asr, sources.ocr, cfg.text).items
        items.createOrReplaceTempView("tagger_training_items")
        df = run_sql(spark, "training_examples", items_view="tagger_training_items",
                     truth_table=cfg.tables.truth, run_date=date).toPandas()
        frames.append(df.assign(pt=date))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def split_of(itemid: str) -> str:
    """Stable split by a hash of the item id: the same item is in the same split on every run."""
    bucket = int(hashlib.md5(itemid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if bucket < SPLITS["train"] else "dev" if bucket < SPLITS["train"] + SPLITS["dev"] else "test"


def head_targets(head: HeadConf, labels: list[str], truth: pd.Series) -> list[list[str]]:
    """Per example, the head's labels it is a positive of (its true tag or a descendant)."""
    paths = [f"{head.parent}/{label}" for label in labels]
    return [[lab for lab, p in zip(labels, paths) if any(t == p or t.startswith(p + "/") for t in tags)]
            for tags in truth]


def labelled_at_head_level(head: HeadConf, truth: pd.Series) -> np.ndarray:
    """False for an item whose true tags stop at the head's parent (e.g. 内容标签/导购 with no child):
    annotated at a coarser level, its labels for this head are unknown, not negative."""
    parent = head.parent
    below = parent + "/"
    return np.array([not (parent in tags and not any(t.startswith(below) for t in tags)) for tags in truth])


def export_splits(examples: pd.DataFrame, out: Path) -> None:
    """Write out/<split>.jsonl (out created if missing; existing files replaced) from `examples`, a
    pandas DataFrame with itemid, doc_text, labels (list of true tag paths) and split: one JSON
    object {"itemid", "text", "labels"} per line, UTF-8. OSError if `out` cannot be written."""
    out.mkdir(parents=True, exist_ok=True)
    for name, part in examples.groupby("split"):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for row in part.itertuples():
                fh.write(json.dumps({"itemid": row.itemid, "text": row.doc_text, "labels": list(row.labels)},
                                    ensure_ascii=False) + "\n")


def swap_in(staging: Path, target: Path) -> None:
    """Replace `target` by the complete artifact in `staging`: the old one is renamed aside first,
    so a reader sees either the old or the new directory, never a half-deleted one."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def export_head_splits(split: dict[str, pd.DataFrame], data: dict[str, tuple[list, list]], out: Path) -> dict[str, Path]:
    """Write one head's examples (its labels, not tag paths) to out/{train,dev,test}.jsonl: the
    files `tagger evaluate` and `tagger calibrate` take."""
    from tagger.models.data import write_jsonl

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, frame in split.items():
        files[name] = out / f"{name}.jsonl"
        write_jsonl(files[name], data[name][0], data[name][1], itemids=frame["itemid"].tolist())
    return files


def train_artifact(head: HeadConf, labels: list[str], data: dict[str, tuple[list, list]], out_dir: Path,
                   log=print) -> None:
    """Train one configured head into `out_dir`; an ensemble trains each member below it
    (members/<i>-<arch>) and writes the ensemble's sidecar over them. torch trains with the
    `threads` option's intra-op threads, else tagger.models.training.training_threads()."""
    from tagger.models.ensemble import write_ensemble
    from tagger.models.training import torch_threads, train_head, training_threads

    def train(conf: TrainConf, name: str, directory: Path, options: dict) -> None:
        options = dict(options)
        if conf.arch == "knn":  # no training: the training examples become the bank (models/knn.py)
            from tagger.models.knn import build_knn_head
            from tagger.models.training import cap_examples

            texts, label_lists = data["train"]
            cap = options.get("max_examples")
            if cap and len(texts) > cap:
                keep = cap_examples(label_lists, labels, cap, options.get("seed", 0))
                texts, label_lists = [texts[i] for i in keep], [label_lists[i] for i in keep]
            with torch_threads(options.get("threads") or training_threads()):
                build_knn_head(directory, options["encoder"], texts, label_lists, labels, k=options.get("k", 5),
                               head=name, max_length=options.get("max_length"),
                               batch_size=options.get("batch_size", 64))
            log(f"[{name}] knn bank of {len(texts):,} examples under the encoder {options['encoder']} (no training)")
            return
        with torch_threads(options.pop("threads", None) or training_threads()):
            train_head(arch=conf.arch, head=name, labels=labels, train_texts=data["train"][0],
                       train_labels=data["train"][1], dev_texts=data["dev"][0], dev_labels=data["dev"][1],
                       out_dir=str(directory), log=log, **options)

    conf = head.train
    if conf.arch != "ensemble":
        train(conf, head.name, out_dir, conf.options)
        return
    members = []
    for i, member in enumerate(conf.members):
        directory = out_dir / "members" / f"{i}-{member.arch}"
        train(member, f"{head.name}_{i}_{member.arch}", directory, {**conf.options, **member.options})
        members.append(directory)
    write_ensemble(out_dir, members, conf.combine, head=head.name)
    log(f"[{head.name}] ensemble ({conf.combine}) of {', '.join(m.name for m in members)}")


def train_all(spark: SparkSession, cfg: Config, dates: list[str], heads: list[str] | None = None,
              log=print, workers: int = 1) -> dict[str, dict]:
    """Train the configured heads (or those named) on `dates`; report on the held-out test split.
    Returns {head name: test report}. workers: heads trained at once (1: one after another in this
    process; more: spawned worker processes, see run_head_jobs; `tagger demo` passes
    training_workers()). Raises ConfigError for unknown or untrainable heads, no examples, or a head
    whose calibration switched off every label."""

    trainable = [h.name for h in cfg.heads if h.train is not None]
    unknown = sorted(set(heads or []) - set(trainable))
    if unknown:
        raise ConfigError(f"--head {', '.join(unknown)}: not a head with a train section in {cfg.source}; "
                          f"trainable heads: {', '.join(trainable)}.")
    from tagger.lifecycle.uris import is_registry_uri

    registry_heads = [h.name for h in cfg.heads if h.train is not None and (not heads or h.name in heads)
                      and is_registry_uri(h.path)]
    if registry_heads:
        raise ConfigError(f"head(s) {', '.join(registry_heads)}: the path in {cfg.source} is a registry URI "
                          f"(models:/...), and training writes a directory. Fix: train with a config whose path is "
                          f"a directory, then `tagger register --head NAME --model DIR` and `tagger promote` it.")
    examples = labelled_examples(spark, cfg, dates)
    if examples.empty:
        raise ConfigError(f"No labelled examples for {dates[0]}..{dates[-1]} in {cfg.tables.truth}: "
                          f"run `tagger seed` first (or pass dates that have data).")
    examples["labels"] = examples["labels"].map(list)
    examples["split"] = examples["itemid"].map(split_of)
    export_splits(examples, tagger_home() / "data")
    tag_paths = [r[0] for r in run_sql(spark, "extract_tag_dim", tag_dim_table=cfg.tables.tag_dim,
                                       run_date=max(dates)).orderBy("id").select("tag_path_name").collect()]
    log(f"{len(examples):,} labelled examples from {dates[0]}..{dates[-1]}: "
        + ", ".join(f"{k} {v:,}" for k, v in examples["split"].value_counts().sort_index().items()))

    reports: dict[str, dict] = {}
    jobs: list[HeadJob] = []
    gate_positive: dict[str, np.ndarray] = {}
    for head in cfg.heads:
        if head.train is None:
            continue
        labels = head_labels(head, tag_paths)
        targets = pd.Series(head_targets(head, labels, examples["labels"]), index=examples.index)
        if head.gate_by is not None and head.gate_by not in gate_positive:
            raise ConfigError(f"head '{head.name}' is gated by '{head.gate_by}', which has no train section in "
                              f"{cfg.source}: its positives cannot be told. Add heads[].train to '{head.gate_by}'.")
        rows = examples.index.to_numpy() if head.gate_by is None else np.flatnonzero(gate_positive[head.gate_by])
        gate_positive[head.name] = targets.map(lambda t: labels[0] in t).to_numpy()
        if heads and head.name not in heads:
            continue  # its positives were needed by the heads it gates
        known = labelled_at_head_level(head, examples["labels"])
        coarse = int((~known[rows]).sum())
        rows = rows[known[rows]]
        part = examples.loc[rows]
        split = {name: part[part["split"] == name] for name in SPLITS}
        data = {name: (frame["doc_text"].tolist(), targets.loc[frame.index].tolist()) for name, frame in split.items()}
        files = export_head_splits(split, data, tagger_home() / "data" / head.name)
        intro = (f"\n== head {head.name} ({head.train.arch}), {len(labels)} labels, {len(part):,} examples"
                 + (f" (true positives of {head.gate_by})" if head.gate_by else ""))
        if coarse:
            intro += (f"\n{coarse:,} examples labelled {head.parent} without a child label are left out: their "
                      f"{head.name} labels are unknown, not negative")
        jobs.append(HeadJob(head, labels, data, {k: str(v) for k, v in files.items()},
                            split["test"]["itemid"].tolist(), intro, str(cfg.source)))
    workers = max(1, min(workers, len(jobs)))
    if workers > 1:
        log(f"training {len(jobs)} heads, {workers} at a time in worker processes of one torch thread each "
            "(each head's lines appear when it is done)")
    for name, report in run_head_jobs(jobs, workers, log):
        reports[name] = report
    return reports


@dataclass
class HeadJob:
    """One head's training job, picklable for a worker process: its config, labels, examples per split
    ({split: (texts, label lists)}), the split files, the test itemids, its opening log lines and the
    config's path (for messages)."""
    head: HeadConf
    labels: list[str]
    data: dict[str, tuple[list, list]]
    files: dict[str, str]
    test_itemids: list[str]
    intro: str
    source: str


def training_workers(n_jobs: int, cores: int | None = None) -> int:
    """How many heads train at once: one per core this process may use (`cores`, None: counted),
    at most `n_jobs`, at least 1. Each worker trains with one torch thread, so two heads on a
    2-core machine use both cores without any thread waiting for another. Raises nothing."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
    return max(1, min(n_jobs, cores))


def run_head_jobs(jobs: list["HeadJob"], workers: int, log=print):
    """Yield (head name, test report) for each job in `jobs` order, training them one by one in this
    process (workers 1: lines logged as they come) or `workers` at a time in spawned worker processes
    (each head's lines logged in one block when it is done; the longest jobs start first). A job's
    error (ConfigError, DataError, ...) is raised here, after the jobs already running have ended."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job.head.name, train_one_head(job, log)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    longest_first = sorted(range(len(jobs)), key=lambda i: -_job_cost(jobs[i]))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {i: pool.submit(_train_in_worker, jobs[i]) for i in longest_first}
        for i, job in enumerate(jobs):
            lines, report = futures[i].result()
            for line in lines:
                log(line)
            yield job.head.name, report


def _job_cost(job: "HeadJob") -> float:
    """A rough relative cost, to start the longest jobs first: examples x epochs, x4 for bert."""
    options = job.head.train.options
    n = min(len(job.data["train"][0]), options.get("max_examples") or len(job.data["train"][0]))
    return n * (options.get("epochs") or 3) * (4 if job.head.train.arch == "bert" else 1)


def _train_in_worker(job: "HeadJob") -> tuple[list[str], dict]:
    lines: list[str] = []
    report = train_one_head(job, lines.append)
    return lines, report


def train_one_head(job: "HeadJob", log=print) -> dict:
    """Train, calibrate and evaluate one head (HeadJob) and swap its artifact in at the head's path;
    returns its test report. Everything runs with the training's torch threads (the `threads` option,
    else training_threads()). Raises ConfigError when calibration switched off every label (the new
    artifact stays in <path>.training, the old one is kept)."""
    from tagger.models.calibrate import calibrate_artifact, format_calibration
    from tagger.models.evaluate import evaluate_artifact
    from tagger.models.metrics import format_report, label_distribution
    from tagger.models.spec import read_spec
    from tagger.models.training import torch_threads, training_threads

    head, labels, data, files = job.head, job.labels, job.data, job.files
    log(job.intro)
    log(label_distribution(data["train"][1], labels))
    staging = Path(head.path + ".training")
    shutil.rmtree(staging, ignore_errors=True)
    started = time.perf_counter()
    with torch_threads(head.train.options.get("threads") or training_threads()):
        train_artifact(head, labels, data, staging, log)
        if head.train.precision is not None:
            changes = calibrate_artifact(staging, *data["dev"], precision=head.train.precision,
                                         min_positives=head.train.min_dev_positives, data_path=Path(files["dev"]),
                                         confidence=head.train.confidence, objective=head.train.objective,
                                         log=log)
            log(f"-- {head.name}: thresholds calibrated on dev to precision {head.train.precision:.2f}")
            log(format_calibration(changes))
        report = evaluate_artifact(staging, *data["test"], itemids=job.test_itemids, data_path=Path(files["test"]))
    log(f"-- {head.name} on the held-out test split ({len(data['test'][0]):,} items), thresholds in the artifact:")
    log(format_report(report))
    if head.train.precision is not None and not any(read_spec(staging).enabled):
        raise ConfigError(f"head '{head.name}': calibration at precision {head.train.precision} switched off "
                          f"every label ({'; '.join(changes.after.extra.get('disabled_reasons', {}).values())}). "
                          f"The previous artifact at {head.path} is kept; the new one is in {staging}. Fix: more "
                          f"dev data, a lower train.precision or confidence in {job.source}.")
    swap_in(staging, Path(head.path))
    log(f"saved {head.path} ({time.perf_counter() - started:.0f}s), model card {head.path}/MODEL_CARD.md")
    return report
