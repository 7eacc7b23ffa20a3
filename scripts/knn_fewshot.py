"""Few-shot labels: a kNN head (models/knn.py) against the multi-label head trained on the same data.

From the demo's P0 splits ($TAGGER_HOME/data/p0/{train,dev,test}.jsonl, the children of
内容标签/新车资讯), three labels get only n training positives (n = 10, 20, 30): n positive examples
of each are kept at random and every other training example carrying one of them is DROPPED (not
relabelled: a relabelled positive would be a false negative the multi-label head is trained to
reject, and a bank example that says "no" to an item that is one). The other nine labels keep all
their examples; dev and test are untouched. Then, per n:

  multi-label  a textcnn over all 12 labels trained on the subsample (3 epochs, 256 chars: the
               project's cheapest torch head; the demo's own P0 is a small BERT, too slow here)
  knn/own      a kNN head (k=5) whose bank is the same subsample and whose encoder is that
               multi-label textcnn's penultimate layer: it learnt from exactly the same examples
  knn/gate     the same bank under the demo's gate head (a textcnn trained for 新车资讯 alone: it
               never saw a P0 label, and the P0 test items are in its held-out split too)
  knn/grown    (n > the smallest size) the smallest size's knn/own head with this size's extra examples
               added by `add_examples` (tagger knn-add): no training, the encoder stays the one trained
               on the smallest subsample; recalibrated on dev
  knn/p1       the same bank under the demo's P1 head (a textcnn for the 12 children of 导购: it
               never saw a P0 label either)

Every size is run with each --seeds value (another subsample and another training seed); the table
gives the mean over the seeds. `all` in --sizes is the full training set (no subsampling), for
reference. Each head is calibrated on dev the same way (tagger calibrate's defaults: precision 0.80 with the 95%
margin, at least 5 dev positives) and scored on test. A label calibration switches off counts as
precision/recall/F1 0 ("off").

    python scripts/knn_fewshot.py --data $TAGGER_HOME/data/p0 --gate $TAGGER_HOME/models/gate \
        --p1 $TAGGER_HOME/models/p1 --out /tmp/knn_fewshot

Prints a table (markdown) and writes results.json under --out. Options: --labels, --sizes, --seeds,
--epochs, --k.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

DEFAULT_LABELS = ("预热", "实车曝光", "预售")


def read_jsonl(path: Path) -> tuple[list[str], list[list[str]]]:
    """(texts, label lists) of a JSON-lines file of {"text", "labels"}."""
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            texts.append(d["text"])
            labels.append(list(d["labels"]))
    return texts, labels


def subsample(label_lists: list[list[str]], few: tuple[str, ...], n: int, seed: int) -> list[int]:
    """Indices of the training examples kept: every example without a `few` label, plus at most n
    positives of each `few` label (greedy over a seeded shuffle; an example positive for two of them
    counts for both and is kept only while neither is full)."""
    rng = random.Random(seed)
    keep = [i for i, labs in enumerate(label_lists) if not set(labs) & set(few)]
    counts = dict.fromkeys(few, 0)
    for label in few:
        pos = [i for i, labs in enumerate(label_lists) if label in labs]
        rng.shuffle(pos)
        for i in pos:
            if counts[label] >= n:
                break
            mine = [lab for lab in label_lists[i] if lab in counts]
            if i in keep or any(counts[lab] >= n for lab in mine):
                continue
            keep.append(i)
            for lab in mine:
                counts[lab] += 1
    return sorted(keep)


def score(head_dir: Path, texts, label_lists, few) -> dict:
    """Test precision/recall/F1 of `few` labels with the head's calibrated decisions."""
    from tagger.models.loading import load_head
    from tagger.models.metrics import binarize, label_report

    head = load_head(head_dir, device="cpu")
    hit = head.decide(head.predict_proba(texts))
    report = label_report(binarize(label_lists, head.labels), hit, head.labels)
    out = {}
    for label in few:
        j = head.labels.index(label)
        out[label] = {**{k: round(float(v), 4) for k, v in report["labels"][label].items()},
                      "on": bool(head.spec.enabled[j]), "threshold": head.spec.thresholds[j]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="folder with the P0 train/dev/test.jsonl")
    ap.add_argument("--gate", required=True, type=Path, help="the demo's gate head (an encoder that never saw P0 labels)")
    ap.add_argument("--p1", type=Path, default=None, help="the demo's P1 head (another encoder that never saw P0 labels)")
    ap.add_argument("--out", required=True, type=Path, help="work folder (replaced)")
    ap.add_argument("--labels", default=",".join(DEFAULT_LABELS))
    ap.add_argument("--sizes", default="10,20,30,all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args(argv)

    import torch

    from tagger.models.calibrate import calibrate_artifact
    from tagger.models.knn import add_examples, build_knn_head
    from tagger.models.training import train_head

    torch.set_num_threads(1)
    started, load0 = time.perf_counter(), os.getloadavg()
    few = tuple(args.labels.split(","))
    sizes = args.sizes.split(",")
    seeds = [int(x) for x in args.seeds.split(",")]
    encoders = [("knn/gate", args.gate)] + ([("knn/p1", args.p1)] if args.p1 else [])
    train, dev, test = (read_jsonl(args.data / f"{s}.jsonl") for s in ("train", "dev", "test"))
    all_labels = sorted({lab for labs in train[1] for lab in labs})
    for label in few:
        if label not in all_labels:
            raise SystemExit(f"label {label!r} is not in {args.data}/train.jsonl; labels: {all_labels}")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    quiet = lambda *a, **k: None  # noqa: E731
    results = {"labels": list(few), "seeds": seeds, "k": args.k, "epochs": args.epochs, "runs": {}}
    print(f"test positives: " + ", ".join(f"{lab} {sum(lab in labs for labs in test[1])}" for lab in few)
          + f"; dev positives: " + ", ".join(f"{lab} {sum(lab in labs for labs in dev[1])}" for lab in few), flush=True)
    base = {}  # seed -> (knn/own directory, kept indices) of the smallest size
    smallest = next((n for n in sizes if n != "all"), None)
    for n, seed in [(n, seed) for n in sizes for seed in seeds]:
        keep = list(range(len(train[0]))) if n == "all" else subsample(train[1], few, int(n), seed)
        texts = [train[0][i] for i in keep]
        labels = [train[1][i] for i in keep]
        got = {lab: sum(lab in labs for labs in labels) for lab in few}
        t0 = time.perf_counter()
        run = args.out / f"n{n}_seed{seed}"
        ml = run / "multilabel"
        train_head(arch="textcnn", head=f"p0-n{n}", labels=all_labels, train_texts=texts, train_labels=labels,
                   dev_texts=dev[0], dev_labels=dev[1], out_dir=str(ml), epochs=args.epochs, max_length=256,
                   seed=seed, patience=args.epochs, log=quiet, progress=False, device="cpu")
        t_train = time.perf_counter() - t0
        heads = {"multi-label": ml}
        for name, encoder in [("knn/own", ml)] + encoders:
            d = run / name.replace("/", "_")
            build_knn_head(d, encoder, texts, labels, all_labels, k=args.k, head=f"p0-knn-n{n}", device="cpu")
            heads[name] = d
        if n == smallest:
            base[seed] = (heads["knn/own"], set(keep))
        elif n != "all" and seed in base:
            extra = sorted(set(keep) - base[seed][1])
            d = run / "knn_grown"
            add_examples(base[seed][0], d, [train[0][i] for i in extra], [train[1][i] for i in extra], device="cpu")
            heads["knn/grown"] = d
        row = {"train_examples": len(texts), "train_positives": got, "heads": {}}
        for name, d in heads.items():
            calibrate_artifact(d, dev[0], dev[1], device="cpu")  # tagger calibrate's defaults
            row["heads"][name] = score(d, test[0], test[1], few)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["train_seconds"] = round(t_train, 1)
        results["runs"][f"{n}/{seed}"] = row
        print(f"n={n} seed {seed}: {len(texts)} training examples, positives {got}; {row['seconds']} s "
              f"(multi-label training {row['train_seconds']} s)", flush=True)

    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average"] = {"start": [round(x, 2) for x in load0], "end": [round(x, 2) for x in os.getloadavg()]}
    (args.out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    names = ["multi-label", "knn/own", "knn/grown"] + [name for name, _ in encoders]
    print()
    print("| label | n | " + " | ".join(f"{h} P / R / F1" for h in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for label in few:
        for n in sizes:
            cells = []
            for h in names:
                ms = [results["runs"][f"{n}/{seed}"]["heads"].get(h, {}).get(label) for seed in seeds]
                if None in ms:
                    cells.append("")
                    continue
                mean = {key: float(np.mean([m[key] for m in ms])) for key in ("precision", "recall", "f1")}
                off = sum(not m["on"] for m in ms)
                cells.append(f"{mean['precision']:.2f} / {mean['recall']:.2f} / **{mean['f1']:.2f}**"
                             + (f" ({off} off)" if off else ""))
            print(f"| {label} | {n} | " + " | ".join(cells) + " |")
    print(f"\nmean over seeds {seeds}; a label switched off by calibration counts as 0 (how many runs: 'off')")
    print(f"\n{results['seconds']} s in all; load average {results['load_average']['start'][0]} at the start, "
          f"{results['load_average']['end'][0]} at the end (1-minute); torch on 1 thread", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
