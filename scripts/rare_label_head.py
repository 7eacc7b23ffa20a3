"""The rare-label playbook on the demo (docs/playbooks/rare-labels.md): a label whose training
positives are thinned until the multi-label head switches it off comes back on through its own
one-label binary head, trained on the same examples with pos_weight.

    python scripts/rare_label_head.py --home $TAGGER_HOME [--label 新车到店] [--keep 48,24,12,6,3]

Reads the head's split files that `tagger demo` / `tagger train` exported
($TAGGER_HOME/data/<head>/{train,dev,test}.jsonl) and the head's train section from the config.
For each --keep, largest first: keep that many of the label's training positives (the other
positive examples are left out, not relabelled), train the multi-label head with the config's
options and calibrate it on dev; stop at the first that switches the label off. Then train the
binary head (train section: --binary-arch, the same precision target and calibration) on the same
thinned examples and report both heads' test figures for the label. Nothing in $TAGGER_HOME is
changed: the heads go to --out (default $TAGGER_HOME/experiments/rare_label).

Cost on the demo (2 cores): one BERT P0 training per --keep tried (about 100 s each on a quiet
machine) plus a TextCNN binary head (about 10 s). Prints a table and writes report.json in --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def thin_positives(texts: list[str], labels: list[list[str]], label: str, keep: int, seed: int = 0
                   ) -> tuple[list[str], list[list[str]]]:
    """The examples with all but `keep` (a seeded draw) of `label`'s positives left out. Raises
    ValueError when there are fewer than `keep` positives."""
    positives = [i for i, labs in enumerate(labels) if label in labs]
    if len(positives) < keep:
        raise ValueError(f"{label}: only {len(positives)} training positives, cannot keep {keep}")
    kept = set(random.Random(seed).sample(positives, keep))
    rows = [i for i in range(len(texts)) if label not in labels[i] or i in kept]
    return [texts[i] for i in rows], [labels[i] for i in rows]


def main(argv=None) -> int:
    """Run the experiment (see the module docstring); returns 0, or 1 when no --keep switched the
    label off or the binary head did not bring it back on."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--home", default=os.environ.get("TAGGER_HOME"), help="the demo's TAGGER_HOME (default: $TAGGER_HOME)")
    ap.add_argument("--config", default=str(REPO / "conf" / "tagger.yaml"), help="config whose head's train section is used")
    ap.add_argument("--head", default="p0", help="the multi-label head (default p0)")
    ap.add_argument("--label", help="the label to thin (default: the one with the fewest training positives)")
    ap.add_argument("--keep", default="48,24,12,6,3", help="training positives to keep, tried largest first (default 48,24,12,6,3)")
    ap.add_argument("--binary-arch", default="textcnn", choices=("textcnn", "linear", "bert"),
                    help="the rare label's own head (default textcnn)")
    ap.add_argument("--binary-epochs", type=int, default=3, help="its training epochs (default 3; not for linear)")
    ap.add_argument("--out", help="output folder (default $TAGGER_HOME/experiments/rare_label)")
    args = ap.parse_args(argv)
    if not args.home:
        ap.error("--home (or $TAGGER_HOME): the folder `tagger demo` wrote")
    os.environ["TAGGER_HOME"] = str(Path(args.home).resolve())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from tagger.config import HeadConf, TrainConf, load_config
    from tagger.models.data import read_examples
    from tagger.models.spec import read_spec
    from tagger.training.from_warehouse import HeadJob, train_one_head

    cfg = load_config(args.config)
    head = next((h for h in cfg.heads if h.name == args.head), None)
    if head is None or head.train is None:
        ap.error(f"--head {args.head}: not a head with a train section in {args.config}")
    data_dir = Path(args.home) / "data" / head.name
    files = {s: data_dir / f"{s}.jsonl" for s in ("train", "dev", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        ap.error(f"missing {', '.join(missing)}: run `tagger demo` (or `tagger train`) with this TAGGER_HOME first")
    split = {s: read_examples(p) for s, p in files.items()}
    labels = read_spec(head.path).labels if Path(head.path, "tagger_head.json").is_file() else None
    counts = {}
    for labs in split["train"].labels:
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
    labels = labels or sorted(counts)
    label = args.label or min(labels, key=lambda lab: counts.get(lab, 0))
    if label not in labels:
        ap.error(f"--label {label}: not a label of {head.name} ({', '.join(labels)})")
    out = Path(args.out or Path(args.home) / "experiments" / "rare_label")
    out.mkdir(parents=True, exist_ok=True)
    quiet = lambda *a, **k: None  # noqa: E731
    print(f"{head.name}: {len(labels)} labels; {label} has {counts.get(label, 0)} training positives "
          f"in {len(split['train'].texts):,} examples; dev {sum(label in l for l in split['dev'].labels)}, "
          f"test {sum(label in l for l in split['test'].labels)}")

    def train(conf: HeadConf, head_labels, texts, labs) -> dict:
        test_labels = [[x for x in l if x in head_labels] for l in split["test"].labels]
        dev_labels = [[x for x in l if x in head_labels] for l in split["dev"].labels]
        job = HeadJob(conf, list(head_labels), {"train": (texts, labs), "dev": (split["dev"].texts, dev_labels),
                                                "test": (split["test"].texts, test_labels)},
                      {k: str(v) for k, v in files.items()},
                      list(split["test"].itemids or [str(i) for i in range(len(split["test"]))]), "", args.config)
        started = time.perf_counter()
        report = train_one_head(job, log=quiet)
        report["seconds"] = round(time.perf_counter() - started, 1)
        return report

    tried, thinned = [], None
    for keep in sorted({int(k) for k in args.keep.split(",")}, reverse=True):
        texts, labs = thin_positives(split["train"].texts, split["train"].labels, label, keep)
        conf = dataclasses.replace(head, name=head.name, path=str(out / f"{head.name}_keep{keep}"))
        print(f"training {head.name} ({head.train.arch}) with {keep} {label} positives ...", flush=True)
        report = train(conf, labels, texts, labs)
        row = report["labels"][label]
        tried.append({"keep": keep, "enabled": row["enabled"], "reason": row.get("reason"),
                      "macro_f1_enabled": report["macro_f1_enabled"], "seconds": report["seconds"]})
        print(f"  {label}: {'on' if row['enabled'] else 'OFF (' + str(row.get('reason')) + ')'}; "
              f"macro-F1 over its enabled labels {report['macro_f1_enabled']:.4f} ({report['seconds']:.0f}s)")
        if not row["enabled"]:
            thinned = (keep, texts, labs)
            break
    if thinned is None:
        print(f"no --keep in {args.keep} switched {label} off in {head.name}: try smaller values")
        return 1
    keep, texts, labs = thinned
    binary = HeadConf(name=f"{head.name}_rare", path=str(out / f"{head.name}_rare"), parent=head.parent,
                      gate_by=head.gate_by,
                      train=TrainConf(arch=args.binary_arch, labels=(label,), precision=head.train.precision,
                                      min_dev_positives=head.train.min_dev_positives,
                                      confidence=head.train.confidence, objective=head.train.objective,
                                      options={"epochs": args.binary_epochs, "pos_weight": "auto"}
                                      if args.binary_arch != "linear" else {"pos_weight": "auto"}))
    print(f"training the binary head {binary.name} ({args.binary_arch}, pos_weight auto) on the same "
          f"{len(texts):,} examples ({keep} positives) ...", flush=True)
    try:
        rare = train(binary, [label], texts, [[label] if label in l else [] for l in labs])
    except Exception as exc:  # calibration switched its one label off: ConfigError
        print(f"  the binary head did not bring {label} back on: {exc}")
        return 1
    r = rare["labels"][label]
    print(f"\n| {label}, {keep} training positives | on? | test precision | recall | F1 | predicted |")
    print("|---|---|---|---|---|---|")
    m = tried[-1]
    print(f"| {head.name} ({head.train.arch}, multi-label) | off: {m['reason']} | - | - | - | 0 |")
    print(f"| {binary.name} ({args.binary_arch}, binary, pos_weight) | {'on' if r['enabled'] else 'off'} | "
          f"{r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['predicted']} |")
    report = {"head": head.name, "label": label, "tried": tried, "binary": {"name": binary.name, "arch": args.binary_arch,
              "seconds": rare["seconds"], **{k: r[k] for k in ("enabled", "precision", "recall", "f1", "predicted",
                                                                 "threshold")}},
              "config": args.config, "home": str(Path(args.home).resolve())}
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\nheads and report.json in {out}. In the job: add {binary.name} under parent '{head.parent}' with "
          f"gate_by '{head.gate_by}', and switch {label} off in {head.name} (it is, in the thinned artifact).")
    return 0 if r["enabled"] else 1


if __name__ == "__main__":
    sys.exit(main())
