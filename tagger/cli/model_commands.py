"""The model commands, for the people who train and tune heads: `tagger train`, `tagger split`,
`tagger evaluate`, `tagger calibrate`, `tagger ensemble`, `tagger distill`, `tagger knn-build`,
`tagger knn-add`, `tagger export-onnx` and `tagger llm-head`.

evaluate, calibrate and ensemble work on head artifacts against the team's labelled files.

No Spark and no config: a head directory (ours, an ensemble, or a Hugging Face
sequence-classification checkpoint) and a labelled file (JSON lines {"text", "labels"} or
PaddleNLP `text<TAB>a,b`, see models/data.py). Decisions are the job's own
(tagger.models.decision.decide), so what these commands measure is what the daily job emits.

Exit codes: 0 done; 2 bad input (a missing or unreadable data file, bad options); 3 the model
artifact cannot be used (tagger.models.spec.ArtifactError); 1 anything else.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from datetime import date, timedelta

from tagger.cli.common import DATE, DEMO_DATE, DEMO_START, date_range, guarded, load_job_config, session
from tagger.models.bert_head import SIZES as BERT_SIZES

from tagger.models.data import DataError, read_examples, read_label_file

EXIT_BAD_INPUT, EXIT_ARTIFACT = 2, 3
DATA_FORMATS = ("auto", "jsonl", "paddle", "sft")
_LABEL_SEP_HELP = ("SFT files: the string joining several labels in a \"tgt\" string (a JSON list needs none).")


def _fail(message, code: int = EXIT_BAD_INPUT):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _read(path: str, fmt: str = "auto", labels_file: str | None = None, label_sep: str = ","):
    """tagger.models.data.read_examples, input problems as 'Error: ...' and exit 2. With a label file,
    every label of the data must be in it (read_examples refuses others)."""
    try:
        labels = read_label_file(labels_file) if labels_file else None
        return read_examples(path, fmt=fmt, labels=labels, label_sep=label_sep), labels
    except DataError as exc:
        _fail(exc)


def _load(model: str, device: str | None):
    """(sidecar spec, loaded head); an unusable artifact is 'Error: ...' and exit 3. torch loads here."""
    from tagger.models.spec import ArtifactError, read_spec
    from tagger.models.loading import load_head

    try:
        return read_spec(model), load_head(model, device=device)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)


def _label_notes(head_labels: list[str], file_labels: list[str] | None, ignored: dict[str, int]) -> list[str]:
    """Warnings for label names the data/label file and the head do not share."""
    notes = []
    if file_labels is not None:
        extra = [x for x in file_labels if x not in head_labels]
        absent = [x for x in head_labels if x not in file_labels]
        if extra:
            notes.append(f"the label file has {len(extra)} label(s) this head does not have (ignored): {', '.join(extra)}")
        if absent:
            notes.append(f"the head has {len(absent)} label(s) the label file does not list (0 positives in the "
                         f"data): {', '.join(absent)}")
    elif ignored:
        notes.append("labels in the data that this head does not have (ignored): "
                     + ", ".join(f"{k} ({v})" for k, v in ignored.items()))
    return notes


def _plain(value):
    """JSON-safe copy (numpy scalars and arrays, tuples)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


_MODEL_HELP = ("Head artifact directory: one written by `tagger train` (tagger_head.json + model.safetensors), "
               "an ensemble, or a Hugging Face sequence-classification checkpoint (config.json + model.safetensors).")
_FORMAT_HELP = ("Data file format: auto (.tsv/.txt paddle, else sniffed), jsonl ({\"text\", \"labels\"}), paddle "
                "(text<TAB>a,b) or sft ({\"system\", \"src\", \"tgt\"}: the team's LLM fine-tuning files).")
_LABELS_HELP = ("Label file, one name per line (PaddleNLP label.txt). Every label of the data must be in it; "
                "names it and the head do not share are reported. Scoring always uses the head's labels.")


def _scoring_options(command):
    """--labels-file, --data-format, --label-sep, --batch-size, --device: how evaluate and calibrate read
    the data and score it."""
    options = [
        click.option("--labels-file", default=None, metavar="FILE", help=_LABELS_HELP),
        click.option("--data-format", "data_format", type=click.Choice(DATA_FORMATS), default="auto",
                     show_default=True, help=_FORMAT_HELP),
        click.option("--label-sep", default=",", show_default=True, help=_LABEL_SEP_HELP),
        click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
                     help="Inference batch size."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available, else cpu)."),
    ]
    for option in reversed(options):  # applied bottom-up, listed in --help in this order
        command = option(command)
    return command


@click.command("evaluate", short_help="Precision/recall/F1 of a head on labelled data; bad cases, PR curves, model card.")
@click.option("--model", "model", required=True, metavar="DIR", help=_MODEL_HELP)
@click.option("--data", "data", required=True, metavar="FILE", help="Labelled test data (JSON lines or PaddleNLP).")
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: the team's report lines, the label distribution and the files written; json: one JSON object.")
@click.option("--out", "out_dir", default=None, metavar="DIR",
              help="Where to write bad_cases.jsonl, pr_curve.png and MODEL_CARD.md (default: the model directory).")
@_scoring_options
def evaluate_command(model, data, out_format, out_dir, labels_file, data_format, label_sep, batch_size, device):
    """Evaluate the head in --model on --data with the daily job's own decisions (rounded scores,
    per-label thresholds, switched-off labels, the sidecar's decision block).

    Prints per label precision, recall, F1 and support, macro- and micro-F1 and the label
    distribution, and writes next to the artifact (or into --out): bad_cases.jsonl (every item
    with a false positive or negative), pr_curve.png (each label's precision-recall curve, its
    threshold as a dot) and MODEL_CARD.md.

    \b
    Example:
      tagger evaluate --model .tagger/models/p0 --data .tagger/data/test.jsonl
    """
    from tagger.models.metrics import format_report

    examples, file_labels = _read(data, data_format, labels_file, label_sep)
    spec, head = _load(model, device)
    from tagger.models.spec import ArtifactError
    from tagger.models.evaluate import evaluate_artifact

    try:
        report = evaluate_artifact(model, examples.texts, examples.labels, out_dir=out_dir, itemids=examples.itemids,
                                   data_path=data, head=head, batch_size=batch_size)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)
    except OSError as exc:
        _fail(f"could not write the evaluation files ({exc}). Fix: pass a writable --out directory.")
    notes = _label_notes(list(spec.labels), file_labels, report["ignored_labels"])
    if out_format == "json":
        report["notes"] = notes
        click.echo(json.dumps(_plain(report), ensure_ascii=False, sort_keys=False))
        return
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(f"{report['head']} ({report['arch']}, {report['version']}) on {data}: {report['data']['n']:,} items")
    click.echo(format_report(report))
    click.echo(report["distribution"])
    off = [f"{name} ({m['reason']})" for name, m in report["labels"].items() if not m["enabled"]]
    if off:
        click.echo("switched off: " + ", ".join(off))
    files = report["files"]
    click.echo(f"bad cases:   {files['bad_cases']} ({report['n_bad_cases']:,} items)")
    click.echo(f"PR curves:   {files['pr_curve']}")
    click.echo(f"model card:  {files['model_card']}")


@click.command("calibrate", short_help="Per-label thresholds for a target precision on dev data; writes the sidecar.")
@click.option("--model", "model", required=True, metavar="DIR", help=_MODEL_HELP)
@click.option("--dev", "dev", required=True, metavar="FILE", help="Labelled dev data the thresholds are fitted on.")
@click.option("--precision", "precision", type=click.FloatRange(0, 1, min_open=True), default=0.80, show_default=True,
              help="Target precision per label: each threshold is the lowest that reaches it on --dev.")
@click.option("--confidence", type=click.FloatRange(0.5, 1.0, max_open=True), default=0.95, show_default=True,
              help="A threshold qualifies when the lower bound of its dev precision at this confidence (Wilson, "
                   "one-sided) reaches --precision; 0.5 uses the dev precision itself (no margin).")
@click.option("--objective", type=click.Choice(["recall", "f1"]), default="recall", show_default=True,
              help="recall: the lowest qualifying threshold (most tags at the target precision); f1: the "
                   "qualifying threshold with the best dev F1.")
@click.option("--min-positives", type=click.IntRange(min=0), default=5, show_default=True,
              help="A label with fewer dev positives is switched off (too few to tell its precision).")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Decision block: ranking mode, emit exactly the K highest-scoring enabled labels (thresholds "
                   "ignored). Not with --min-labels/--max-labels.")
@click.option("--min-labels", type=click.IntRange(min=0), default=None,
              help="Decision block: if fewer labels pass, add the next highest-scoring enabled ones up to N.")
@click.option("--max-labels", type=click.IntRange(min=1), default=None,
              help="Decision block: keep at most the N highest-scoring passing labels.")
@_scoring_options
def calibrate_command(model, dev, precision, confidence, objective, min_positives, top_k, min_labels, max_labels, labels_file, data_format, label_sep,
                      batch_size, device):
    """Fit per-label thresholds of the head in --model on --dev for a target --precision, switch
    off the labels that cannot reach it (or have too few dev positives), and write the head's
    tagger_head.json (atomically; the weights are not touched). A Hugging Face checkpoint without
    a sidecar gets one.

    Each threshold is the lowest distinct dev score (rounded to 4 decimals, as the job rounds)
    whose dev precision reaches the target, i.e. the one with the most recall (--objective f1: the
    best dev F1 among those). By default the precision must reach the target with a margin: the
    95% lower bound of the dev precision (--confidence) must reach it, so that the precision holds
    on new data too and a rare label's threshold does not rest on a handful of items.
    Switched-off labels are never emitted by the job; their reason is kept in the sidecar and shown
    in the run summary.

    Decision block: given any of --top-k, --min-labels, --max-labels, the sidecar's decision block
    becomes exactly those (the others at their defaults; --min-labels 0 alone removes the block);
    given none, it is kept. Ties in score go to the earlier label.

    \b
    Example:
      tagger calibrate --model .tagger/models/p0 --dev .tagger/data/p0/dev.jsonl --precision 0.8
    """
    examples, file_labels = _read(dev, data_format, labels_file, label_sep)
    from tagger.models.spec import ArtifactError, HeadSpec, read_spec

    try:
        before = read_spec(model)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)
    decision = None
    if top_k is not None or min_labels is not None or max_labels is not None:
        decision = {"top_k": top_k, "min_labels": min_labels or 0, "max_labels": max_labels}
        try:
            HeadSpec(**{**before.__dict__, "extra": {**before.extra, "decision": decision}}).validate(model)
        except ArtifactError as exc:
            _fail(f"bad decision options: {exc}")
    spec, head = _load(model, device)
    from tagger.models.calibrate import calibrate_artifact, format_calibration

    try:
        result = calibrate_artifact(model, examples.texts, examples.labels, precision=precision,
                                    min_positives=min_positives, decision=decision, data_path=dev, head=head,
                                    confidence=confidence, objective=objective,
                                    batch_size=batch_size, log=click.echo)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)
    except OSError as exc:
        _fail(f"could not write {Path(model) / 'tagger_head.json'} ({exc}). Fix: make the model directory writable.")
    for note in _label_notes(list(spec.labels), file_labels, result.ignored_labels):
        click.echo(f"Note: {note}", err=True)
    b, a = result.before, result.after
    click.echo(f"{a.head} ({a.arch}) calibrated on {dev}: {len(examples):,} items, target precision {precision:.2f} "
               f"(at {confidence:.0%} confidence, objective {objective}), "
               f"at least {min_positives} dev positives per label")
    click.echo(format_calibration(result))
    d = a.decision
    if d != b.decision:
        click.echo(f"decision block: {json.dumps(b.decision)} -> {json.dumps(d)}")
    click.echo(f"dev macro-F1 {result.report['macro_f1']:.4f}, micro-F1 {result.report['micro_f1']:.4f} "
               "with the final decisions")
    click.echo(f"wrote {Path(model) / 'tagger_head.json'} (decision digest {b.decision_digest()} -> "
               f"{a.decision_digest()}; the job's model version changes with it)")


@click.command("ensemble", short_help="Combine two or more heads trained on the same labels into one head.")
@click.option("--member", "members", multiple=True, required=True, metavar="DIR",
              help="A member head directory (repeat: at least two, same labels in the same order).")
@click.option("--combine", type=click.Choice(["intersection", "union", "mean"]), required=True,
              help="intersection: every member says yes (precision); union: any member does (recall); "
                   "mean: the mean of the members' scores.")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="The ensemble's directory (a sidecar only).")
@click.option("--head", default=None, help="Head name (default: the --out directory's name).")
def ensemble_command(members, combine, out_dir, head):
    """Write an ensemble head over existing heads: a directory holding only tagger_head.json with
    arch "ensemble", the combine rule and the member paths (relative when the members are inside
    it, so copy members into DIR/members/ to ship one directory). Each member's scores are first
    rescaled so that its own threshold maps to 0.5; with the ensemble's thresholds at 0.5 (the
    default), intersection and union reproduce "both say yes" and "either says yes" exactly. Then
    evaluate and calibrate it like any head, and point a head's path in the job config at it.

    \b
    Example:
      tagger ensemble --member models/p0_bert --member models/p0_cnn --combine intersection --out models/p0
      tagger calibrate --model models/p0 --dev dev.jsonl --precision 0.8
    """
    if len(members) < 2:
        _fail("give --member at least twice: an ensemble combines two or more heads.")
    from tagger.models.spec import ArtifactError
    from tagger.models.ensemble import write_ensemble

    try:
        spec = write_ensemble(out_dir, members, combine, head=head)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)
    click.echo(f"wrote {Path(out_dir) / 'tagger_head.json'}: {spec.head} = {combine} of "
               f"{', '.join(spec.extra['members'])}; {len(spec.labels)} labels, thresholds 0.5 "
               f"(run `tagger calibrate --model {out_dir} --dev DEV` to fit them)")


@click.command("knn-build", short_help="Build a nearest-neighbour head: an encoder plus labelled examples, no training.")
@click.option("--encoder", "encoder", required=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="A Hugging Face encoder checkpoint (config.json, model.safetensors, tokenizer) or a project "
                   "textcnn/bert head; copied into the head as encoder/.")
@click.option("--data", "data", required=True, metavar="FILE", help="The labelled examples of the bank (JSON lines, "
              "PaddleNLP or SFT).")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="The new head's directory (must not exist or be empty).")
@click.option("--k", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours per item.")
@click.option("--head", default=None, help="Head name (default: the --out directory's name).")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Tokens (HF encoder, default 128) or chars (textcnn encoder, default its own) read per text.")
@click.option("--labels-file", default=None, metavar="FILE", help="One label per line: the head's labels in output "
              "order (default: the data's labels, most positives first).")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default="auto", show_default=True,
              help="The data file's format (auto: sniffed).")
@click.option("--label-sep", default=",", show_default=True, help=_LABEL_SEP_HELP)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Texts per encoder batch.")
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda when available, else cpu).")
def knn_build_command(encoder, data, out_dir, k, head, max_length, labels_file, fmt, label_sep, batch_size, device):
    """Write a kNN head (arch knn, models/knn.py) to --out: the --encoder copied in, and every example
    of --data embedded into its bank with its labels. A label's score is the similarity-weighted share
    of the k nearest bank examples that carry it. Thresholds start at 0.5: calibrate next, then point
    a head's path in the job config at it. Needs the `knn` extra (pip install 'tagger[knn]').

    \b
    Example:
      tagger knn-build --encoder models/gate --data few.jsonl --out models/p0_knn --k 5
      tagger calibrate --model models/p0_knn --dev dev.jsonl
    """
    from tagger.models.data import resolve_labels
    from tagger.models.spec import ArtifactError

    examples, file_labels = _read(data, fmt, labels_file, label_sep)
    try:
        labels = resolve_labels(examples, file_labels)
    except DataError as exc:
        _fail(exc)
    try:
        from tagger.models.knn import build_knn_head

        spec = build_knn_head(out_dir, encoder, examples.texts, examples.labels, labels, k=k, head=head,
                              max_length=max_length, batch_size=batch_size, device=device, source=Path(data).name)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)
    except (ValueError, FileExistsError, ImportError) as exc:
        _fail(exc)
    bank = spec.extra["bank"]
    click.echo(f"wrote {out_dir}: {spec.head} (knn, k={k}, encoder {spec.extra['knn']['encoder_kind']}), "
               f"{bank['examples']} examples, {len(labels)} labels; positives: "
               + ", ".join(f"{lab} {n}" for lab, n in bank["positives"].items())
               + f". Thresholds are 0.5: run `tagger calibrate --model {out_dir} --dev DEV`.")


@click.command("knn-add", short_help="Add labelled examples to a kNN head's bank, as a new head version (no training).")
@click.option("--model", "model", required=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="The knn head to grow (never changed).")
@click.option("--data", "data", required=True, metavar="FILE", help="The labelled examples to add.")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="The new version's directory (must not exist or be empty).")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default="auto", show_default=True,
              help="The data file's format (auto: sniffed).")
@click.option("--label-sep", default=",", show_default=True, help=_LABEL_SEP_HELP)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Texts per encoder batch.")
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda when available, else cpu).")
def knn_add_command(model, data, out_dir, fmt, label_sep, batch_size, device):
    """Write --out: the knn head in --model with the examples of --data appended to its bank. Nothing
    is trained; k, the encoder, thresholds and switches are kept (recalibrate when the bank has grown
    much). The new directory's bank bytes and version differ, so the job records a new model version
    once a head's path points at it; the old directory stays as it was (roll back by pointing back).

    \b
    Example:
      tagger knn-add --model models/p0_knn --data more.jsonl --out models/p0_knn_v2
    """
    from tagger.models.spec import ArtifactError

    examples, _ = _read(data, fmt, None, label_sep)
    try:
        from tagger.models.knn import add_examples

        spec = add_examples(model, out_dir, examples.texts, examples.labels, batch_size=batch_size, device=device,
                            source=Path(data).name)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)
    except (ValueError, FileExistsError, ImportError) as exc:
        _fail(exc)
    click.echo(f"wrote {out_dir}: {spec.head} version {spec.version} (grown from {spec.extra['grown_from']}), "
               f"{spec.extra['bank']['examples']} examples (+{len(examples)})")


TRAIN_HELP = """Train a tagging head. Two modes; the options below say which mode they belong to.

\b
User-data mode (--data, --dev, --out, --arch): train one head on your own labelled files
(JSON lines {"text": ..., "labels": [...]} or PaddleNLP text<TAB>label1,label2), with no Spark
and no config. Thresholds and early stopping use --dev; the per-label precision/recall/F1 on
--dev is printed at the end. The artifact (tagger_head.json, model.safetensors, vocabulary) is
written to --out, replacing a head already there; load it with tagger.models.loading.load_head or
point a head's path in the job config at it. Cost on 2 CPU cores: textcnn ~1-1.5 min per epoch
per 60k texts; bert (small) ~1 min per epoch per 10k texts at 128 tokens; linear (TF-IDF +
logistic regression, scikit-learn, stored without pickle) seconds per 10k texts; a GPU is used
when present. --tokenizer word|char+word (textcnn, linear) adds jieba words, with --dictionary
for the team's car names. On a terminal each epoch shows a progress bar with an ETA. Make --data/--dev from one
file with `tagger split`.

\b
  tagger train --arch textcnn --data train.jsonl --dev dev.jsonl --out models/mine
  tagger train --arch bert --data train.txt --dev dev.txt --labels-file label.txt --out models/p1
  tagger train --arch linear --tokenizer char+word --dictionary cars.txt --data train.jsonl --dev dev.jsonl --out models/lin

\b
Warehouse mode (no --data): train the config's heads from labelled data in the warehouse (the
demo's true-label table) for --start..--end, report per-label precision/recall/F1 on a held-out
split, and save the artifacts where the config's heads point. A few minutes on 2 CPU cores for
the demo."""


@click.command("train", help=TRAIN_HELP)
@click.option("--start", type=DATE, default=DEMO_START, show_default=True,
              help="[warehouse] First day of training data.")
@click.option("--end", type=DATE, default=(date.fromisoformat(DEMO_DATE) - timedelta(days=1)).isoformat(),
              show_default=True, help="[warehouse] Last day of training data (inclusive).")
@click.option("--head", "heads", multiple=True,
              help="[warehouse] Train only this configured head (repeatable; default: all). [user data] The "
                   "head's name (default: the --out directory's name, lower-cased).")
@click.option("--data", type=click.Path(dir_okay=False),
              help="[user data] Training file (JSON lines .jsonl, or PaddleNLP .txt/.tsv).")
@click.option("--dev", type=click.Path(dir_okay=False),
              help="[user data] Dev file, same format: thresholds, early stopping, the printed report.")
@click.option("--out", type=click.Path(file_okay=False), help="[user data] Artifact directory to write.")
@click.option("--arch", type=click.Choice(["textcnn", "bert", "linear"]),
              help="[user data] textcnn: character CNN, fast (the gate); bert: small BERT trained from scratch, "
                   "slower, better on many labels; linear: TF-IDF n-grams + logistic regression per label, seconds "
                   "to train, the fastest to serve.")
@click.option("--tokenizer", type=click.Choice(["char", "word", "char+word"]),
              help="[user data] textcnn and linear: what the head reads, characters, jieba words, or both "
                   "(default: char).")
@click.option("--dictionary", type=click.Path(dir_okay=False),
              help="[user data] Team dictionary for word cutting: one car series or brand name per line (宋PLUS, "
                   "ID.4, Model 3), each kept as one word. Copied into the artifact. Needs --tokenizer word or char+word.")
@click.option("--embeddings", type=click.Path(dir_okay=False, exists=True),
              help="[user data] textcnn: a word2vec text file (e.g. from `tagger embeddings`) whose vectors "
                   "initialise the embedding rows of the units it has; the share of the vocabulary found is printed.")
@click.option("--c", "c", type=click.FloatRange(min=0, min_open=True),
              help="[user data] linear: LogisticRegression's C, the inverse regularization (default 4).")
@click.option("--min-df", type=click.IntRange(min=1),
              help="[user data] linear: keep n-grams seen in at least this many training texts (default 2).")
@click.option("--max-features", type=click.IntRange(min=1),
              help="[user data] linear: keep at most this many of the most frequent n-grams (default 500000).")
@click.option("--labels-file", type=click.Path(dir_okay=False),
              help="[user data] label.txt, one label per line: fixes the output order; a label of the data not in "
                   "it is an error. One line = a binary head. Default: every label of the data, most frequent first.")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default="auto", show_default=True,
              help="[user data] " + _FORMAT_HELP)
@click.option("--label-sep", default=",", show_default=True, help="[user data] " + _LABEL_SEP_HELP)
@click.option("--pos-weight", type=click.Choice(["auto", "none"]), default="auto", show_default=True,
              help="[user data] auto: weigh each label's positives by neg/pos (1..30), for rare labels.")
@click.option("--epochs", type=click.IntRange(min=1), help="[user data] Most epochs (default: textcnn 3, bert 4).")
@click.option("--max-length", type=click.IntRange(min=1),
              help="[user data] Characters (textcnn) or tokens (bert) read per text (default: textcnn 256, bert 160).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="[user data] Learning rate (default: textcnn 2e-3, bert 1e-3).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="[user data] Examples per training step.")
@click.option("--patience", type=click.IntRange(min=1),
              help="[user data] Stop after this many epochs without a dev macro-F1 gain (default: 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="[user data] Same data and seed, same model.")
@click.option("--size", type=click.Choice(list(BERT_SIZES)), default="small", show_default=True,
              help="[user data] BERT size (--arch bert only). small/medium train from scratch on CPU; "
                   "bert-base (768 wide, 12 layers) is many times slower: use a GPU.")
@click.pass_context
def train_command(ctx: click.Context, start: str, end: str, heads: tuple[str, ...], **_user_data) -> None:
    from tagger.training.from_files import is_data_mode, run_train

    if is_data_mode(ctx):
        run_train(ctx)
        return
    if start > end:
        raise click.BadParameter(f"--start {start} is after --end {end}.", param_hint="--start/--end")
    cfg = load_job_config(ctx)
    from tagger.training.from_warehouse import train_all

    spark = session(cfg, "tagger-train")
    guarded(lambda: train_all(spark, cfg, date_range(start, end), list(heads) or None, log=click.echo))


@click.command("split", help="Split one labelled file (JSON lines or PaddleNLP text<TAB>labels) into "
                             "OUT/train.jsonl, dev.jsonl and test.jsonl by iterative stratification (Sechidis "
                             "et al. 2011): each split keeps about the label shares of the whole, and every label "
                             "with at least 3 positives has positives in every split (a note names any label "
                             "that could not be spread). Seconds, no Spark. "
                             "Prints each split's label distribution; feed the files to `tagger train --data "
                             "OUT/train.jsonl --dev OUT/dev.jsonl`.")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="The labelled file to split.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for train.jsonl, dev.jsonl, test.jsonl (created; those files are replaced).")
@click.option("--ratios", default="0.8,0.1,0.1", show_default=True, help="Shares of train,dev,test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same data and seed, same split.")
@click.option("--format", "fmt", type=click.Choice(DATA_FORMATS), default="auto", show_default=True, help=_FORMAT_HELP)
@click.option("--label-sep", default=",", show_default=True, help=_LABEL_SEP_HELP)
@click.option("--labels-file", type=click.Path(dir_okay=False),
              help="label.txt, one label per line: a label of the data not in it is an error; also the print order.")
def split_command(data: str, out: str, ratios: str, seed: int, fmt: str, label_sep: str, labels_file: str | None) -> None:
    from tagger.models.data import DataError
    from tagger.training.from_files import _fail, parse_ratios, split_data

    fractions = parse_ratios(ratios)
    try:
        split_data(data, out, fractions, seed, fmt, labels_file, label_sep=label_sep)
    except DataError as exc:
        _fail(exc)


@click.command("embeddings", help="Train word vectors on the pool's own unlabelled text (--start..--end, the job's "
               "doc_text) with gensim's Word2Vec and write them in word2vec text format, for `tagger train "
               "--embeddings FILE`. Needs the `embeddings` extra (pip install -e '.[embeddings]').")
@click.option("--start", type=DATE, required=True, help="First day of pool text.")
@click.option("--end", type=DATE, required=True, help="Last day (inclusive).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The vectors file to write.")
@click.option("--tokenizer", type=click.Choice(["word", "char", "char+word"]), default="word", show_default=True,
              help="Units to learn vectors for: jieba words, chars, or both (as the TextCNN will read them).")
@click.option("--dictionary", type=click.Path(dir_okay=False, exists=True),
              help="Team dictionary (one car name per line), kept whole when cutting words.")
@click.option("--dim", type=click.IntRange(min=2), default=128, show_default=True,
              help="Vector size; the TextCNN's embed_dim is 128.")
@click.option("--min-count", type=click.IntRange(min=1), default=3, show_default=True,
              help="Units seen fewer times get no vector.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def embeddings_command(ctx, start, end, out, tokenizer, dictionary, dim, min_count, epochs, seed):
    if start > end:
        raise click.BadParameter(f"--start {start} is after --end {end}.", param_hint="--start/--end")
    from tagger.models.words import read_dictionary
    from tagger.training.embeddings import pool_texts, train_vectors

    entries = read_dictionary(dictionary) if dictionary else []
    cfg = load_job_config(ctx)
    spark = session(cfg, "tagger-embeddings")

    def work():
        texts = pool_texts(spark, cfg, date_range(start, end), log=click.echo)
        try:
            train_vectors(texts, out, tokenizer=tokenizer, dictionary=entries, dim=dim, min_count=min_count,
                          epochs=epochs, seed=seed, log=click.echo)
        except (ImportError, ValueError) as exc:
            _fail(exc)

    guarded(work)


@click.command("export-onnx", short_help="Export a head to ONNX (fp32) and score it with onnxruntime.")
@click.option("--model", "model", required=True, type=click.Path(exists=True, file_okay=False),
              help="A textcnn or bert head directory (written there: model.onnx, and the sidecar's runtime key).")
@click.option("--enable/--no-enable", default=True, show_default=True,
              help="Set \"runtime\": \"onnx\" in the sidecar (the job, evaluate and calibrate then score the head "
                   "with onnxruntime); --no-enable writes model.onnx only.")
def export_onnx_command(model, enable):
    """Export the head's forward pass to DIR/model.onnx (torch.onnx, fp32, dynamic batch and width),
    check onnxruntime's scores against torch's on probe texts (max |diff| <= 1e-4, alone and in
    batches), and with --enable point the sidecar at it ("runtime": "onnx"). The head's model
    version then changes (the digest covers model.onnx), so reused workers reload it. Needs the
    `onnx` extra (pip install 'tagger[onnx]'). Not the default: see the ONNX Runtime trial in
    docs/speed.md. To go back: delete "runtime" from tagger_head.json.

    \b
    Example:
      tagger export-onnx --model models/p1
      tagger evaluate --model models/p1 --data test.jsonl
    """
    from tagger.models.onnx_runtime import export_onnx
    from tagger.models.spec import ArtifactError

    try:
        export_onnx(model, enable=enable, log=click.echo)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)


@click.command("distill", short_help="Distil a head into a fast textcnn or linear student on the teacher's soft scores.")
@click.option("--teacher", required=True, metavar="DIR", help="The teacher head directory (e.g. models/p0, the BERT head).")
@click.option("--student-arch", type=click.Choice(["textcnn", "linear"]), required=True,
              help="textcnn: character CNN trained on the soft scores (BCE with float targets); linear: TF-IDF + "
                   "logistic regression, each text a positive with weight p and a negative with weight 1-p.")
@click.option("--unlabeled", "unlabeled", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="JSON lines {\"text\": ...} (\"labels\" read only with --use-gold). Or give --start/--end.")
@click.option("--start", type=DATE, default=None, help="First day of pool text (instead of --unlabeled): the job's "
              "doc_text, scored by the teacher in Spark: every selected item with text (with --gate, those it passes).")
@click.option("--end", type=DATE, default=None, help="Last day of pool text (inclusive).")
@click.option("--gate", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="A gate head (e.g. models/gate for P0): only the unlabelled texts it passes are scored and trained on, "
                   "as the job runs a gated head.")
@click.option("--use-gold", is_flag=True, help="Rows of --unlabeled with a \"labels\" list train on those gold labels "
              "instead of the teacher's scores (gold where present, else the teacher).")
@click.option("--dev", type=click.Path(dir_okay=False, exists=True), default=None, metavar="FILE",
              help="Labelled dev file over the teacher's labels: the student's early stopping and thresholds, then a "
                   "calibration with the teacher's own settings when it has them. Without it: tuned on the teacher's "
                   "decisions on the held-out items.")
@click.option("--test", type=click.Path(dir_okay=False, exists=True), default=None, metavar="FILE",
              help="Labelled test file: both heads' precision/recall/F1, macro-F1 and the share retained; the speed is "
                   "timed on its texts.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The student's directory (a head artifact; "
              "distill_report.json is written into it).")
@click.option("--holdout", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="Share of the unlabelled items kept out of training (agreement on unseen items; thresholds without --dev).")
@click.option("--max-examples", type=click.IntRange(min=1), default=None,
              help="Train on at most this many items (a draw stratified on the teacher's decisions).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="textcnn: most epochs (default 3).")
@click.option("--max-length", type=click.IntRange(min=1), default=None,
              help="Characters the student reads (default: textcnn 256, linear 1000).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="textcnn: learning rate.")
@click.option("--tokenizer", type=click.Choice(["char", "word", "char+word"]), default=None,
              help="What the student reads (default: char).")
@click.option("--c", "c", type=click.FloatRange(min=0, min_open=True), default=None, help="linear: LogisticRegression's C.")
@click.option("--min-df", type=click.IntRange(min=1), default=None, help="linear: minimum document frequency.")
@click.option("--pos-weight", type=click.Choice(["auto", "none"]), default="auto", show_default=True,
              help="auto: weigh each label's positives by neg/pos of the soft targets' sums (1..30).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Scoring batch size, the same for both heads when they are timed.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch intra-op threads for training, scoring and timing (both heads alike).")
@click.option("--speed-repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed runs per head (alternating); the median is reported.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: progress lines and the table; json: the report as one JSON object on stdout.")
@click.pass_context
def distill_command(ctx, teacher, student_arch, unlabeled, start, end, gate, use_gold, dev, test, out, holdout, max_examples,
                    epochs, max_length, lr, tokenizer, c, min_df, pos_weight, batch_size, threads, speed_repeats, seed,
                    out_format):
    """Distil the head in --teacher into a fast --student-arch head: the teacher scores unlabelled text
    (--unlabeled FILE on this machine, or the pool of --start..--end in Spark), the student trains on
    those soft scores (gold labels where --use-gold says so), and the report gives per label the
    student's agreement with the teacher, both heads' test figures and items/s, measured in the same
    run. The student is a normal head directory with the teacher's head name and labels: evaluate,
    calibrate or point the job's head path at it. Details: docs/playbooks/distill.md.

    \b
    Example:
      tagger distill --teacher models/p0 --student-arch textcnn --unlabeled data/p0/train.jsonl \\
          --dev data/p0/dev.jsonl --test data/p0/test.jsonl --out models/p0_student
    """
    if (unlabeled is None) == (start is None and end is None):
        _fail("give either --unlabeled FILE or --start D --end D (the pool of those days), not both nor neither.")
    if unlabeled is None and (start is None or end is None):
        _fail("--start and --end go together: give both days of the pool range.")
    if start is not None and start > end:
        _fail(f"--start {start} is after --end {end}.")
    if use_gold and unlabeled is None:
        _fail("--use-gold reads the \"labels\" of --unlabeled rows; the pool has none.")
    if student_arch == "linear":
        given = [f for f, v in (("--epochs", epochs), ("--lr", lr)) if v is not None]
        if given:
            _fail(f"{', '.join(given)} do not apply to --student-arch linear (fitted in one pass).")
    elif c is not None or min_df is not None:
        _fail("--c and --min-df only apply to --student-arch linear.")
    from tagger.models.spec import ArtifactError
    from tagger.training.distill import distill, format_report, read_unlabelled

    say = click.echo if out_format == "text" else (lambda *a, **k: click.echo(*a, err=True, **k))
    options = dict(epochs=epochs, max_length=max_length, lr=lr, tokenizer=tokenizer, c=c, min_df=min_df,
                   pos_weight=pos_weight)

    def run(data, scores=None):
        try:
            report = distill(teacher=teacher, student_arch=student_arch, out=out, unlabelled=data, teacher_scores=scores,
                             dev=dev, test=test, use_gold=use_gold, holdout=holdout, max_examples=max_examples,
                             batch_size=batch_size, threads=threads, speed_repeats=speed_repeats, seed=seed, log=say,
                             gate=gate, **options)
        except ArtifactError as exc:
            _fail(exc, EXIT_ARTIFACT)
        except (DataError, FileExistsError) as exc:
            _fail(exc)
        if out_format == "json":
            click.echo(json.dumps(_plain(report), ensure_ascii=False))
        else:
            click.echo("\n" + format_report(report))
            click.echo(f"student: {out} (report {Path(out) / 'distill_report.json'})")

    if unlabeled is not None:
        try:
            data = read_unlabelled(unlabeled)
        except DataError as exc:
            _fail(exc)
        _check_teacher(teacher)
        _check_teacher(gate, "--gate")
        run(data)
        return
    _check_teacher(teacher)
    _check_teacher(gate, "--gate")
    cfg = load_job_config(ctx)
    spark = session(cfg, "tagger-distill")
    from tagger.training.distill import pool_scores

    def work():
        try:
            data, scores = pool_scores(spark, cfg, date_range(start, end), teacher, batch_size=batch_size,
                                       threads=threads, log=say, gate=gate)
        except DataError as exc:
            _fail(exc)
        run(data, scores)

    guarded(work)


def _check_teacher(teacher: str | None, option: str = "--teacher") -> None:
    """The teacher (or gate) must be a head directory with a readable sidecar: 'Error: ...' and exit 3
    otherwise. None (no --gate) passes."""
    from tagger.models.spec import ArtifactError, read_spec

    if teacher is None:
        return
    if not Path(teacher).is_dir():
        _fail(f"{option} {teacher}: not a directory. Fix: give a head directory (tagger_head.json + weights), "
              f"e.g. $TAGGER_HOME/models/{'p0' if option == '--teacher' else 'gate'}.", EXIT_ARTIFACT)
    try:
        read_spec(teacher)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)


@click.command("llm-head", short_help="Make an LLM head (causal LM scored by label likelihood) from a checkpoint.")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="A Hugging Face causal-LM directory (save_pretrained: config.json, safetensors weights, tokenizer).")
@click.option("--peft", "peft", default=None, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="A PEFT LoRA adapter directory trained on that checkpoint (needs pip install 'tagger[llm]').")
@click.option("--template", default=None, metavar="TEXT",
              help="The prompt, with {text} where the item's text goes, e.g. 'News: {text}\\nCategory:' (\\n: a line "
                   "break, here and in --question).")
@click.option("--sft", "sft", default=None, type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="The team's SFT file ({\"system\", \"src\", \"tgt\"} lines): its first system text becomes the "
                   "prompt (followed by '\\n{text}\\n' unless it holds {text}), and without --label its labels are "
                   "the head's labels, each its own verbalizer.")
@click.option("--label-sep", default=",", show_default=True, metavar="SEP",
              help="--sft: the separator between labels in a \"tgt\" string (\"新车解析|新车上市\" with --label-sep '|').")
@click.option("--chat", is_flag=True, help="Wrap the prompt in the checkpoint's chat template (a chat model fine-tuned "
              "on SFT lines: system = the SFT system text, user = the item's text, or user = --template), the "
              "assistant turn opened.")
@click.option("--label", "label_args", multiple=True, metavar="LABEL[=VERBALIZER]",
              help="A label and the text the model should say for it (default: the label name). Repeat, in order.")
@click.option("--mode", type=click.Choice(["single", "multi"]), required=True,
              help="single: one label per item, softmax over the labels' likelihoods; multi: a yes/no question per "
                   "label, score P(yes) / (P(yes) + P(no)).")
@click.option("--question", default=None, metavar="TEXT", help="multi: the question after the prompt, with {label} "
              "(default '\\n{label}?').")
@click.option("--yes", "yes", default=None, metavar="TEXT", help="multi: the yes answer (default ' yes').")
@click.option("--no", "no", default=None, metavar="TEXT", help="multi: the no answer (default ' no').")
@click.option("--length-normalize", is_flag=True, help="single: mean log-probability per verbalizer token instead "
              "of the sum (use when verbalizers differ much in length).")
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(min=1),
              help="The item text's token budget (the text is cut to its first N tokens).")
@click.option("--link", is_flag=True, help="Symlink the checkpoint and adapter into --out instead of copying them "
              "(a large checkpoint on the same machine; ship the directory with the links resolved).")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="The head directory to write.")
@click.option("--head", default=None, help="Head name (default: the --out directory's name).")
def llm_head_command(checkpoint, peft, template, sft, label_sep, chat, label_args, mode, question, yes, no, length_normalize,
                     max_length, link, out_dir, head):
    """Write an LLM head: the checkpoint (and adapter) copied into --out as lm/ (and adapter/), and
    a tagger_head.json with arch "causal-lm", the prompt, one verbalizer per label and the mode. A
    label's score is the model's likelihood of its verbalizer after the prompt, never parsed from
    generated text (models/causal_lm.py; docs/playbooks/causal-lm.md). Thresholds start at 0.5:
    calibrate and evaluate it like any head, then point a head's path in the job config at it.

    \b
    Example:
      tagger llm-head --checkpoint ckpt/qwen --peft ckpt/qwen-lora --sft train_sft.jsonl --mode single --out models/p0_llm
      tagger calibrate --model models/p0_llm --dev dev.jsonl --precision 0.8
      tagger evaluate --model models/p0_llm --data test.jsonl
    """
    if (template is None) == (sft is None):
        _fail("give exactly one of --template TEXT or --sft FILE (the prompt).")
    # a shell passes \n as two characters: in --template and --question it means a line break
    template = template.replace("\\n", "\n") if template is not None else None
    question = question.replace("\\n", "\n") if question is not None else None
    labels, verbalizers = [], []
    for arg in label_args:
        name, sep, verbalizer = arg.partition("=")
        if not name.strip() or (sep and not verbalizer.strip()):
            _fail(f"--label {arg!r}: write LABEL or LABEL=VERBALIZER with both parts non-empty.")
        labels.append(name)
        verbalizers.append(verbalizer if sep else name)
    if sft is not None:
        examples, _ = _read(sft, "sft", label_sep=label_sep)
        systems = [x for x in (examples.systems or []) if x and x.strip()]
        if not systems:
            _fail(f"{sft} has no \"system\" text. Fix: pass --template TEXT, or add the prompt as \"system\".")
        system = systems[0]
        template = system if "{text}" in system else system + "\n{text}\n"
        if len(set(systems)) > 1:
            click.echo(f"Note: {sft} has {len(set(systems))} different system texts; the first one is the prompt.",
                       err=True)
        if not labels:
            from tagger.models.data import resolve_labels

            try:
                labels = resolve_labels(examples)
            except DataError as exc:
                _fail(exc)
            verbalizers = list(labels)
        if mode == "single" and any(len(labs) > 1 for labs in examples.labels):
            click.echo(f"Note: {sft} has items with more than one label; --mode single scores labels as exclusive "
                       "(a softmax). For independent labels use --mode multi.", err=True)
    if not labels:
        _fail("give the labels: --label LABEL[=VERBALIZER], once per label, in output order.")
    from tagger.models.causal_lm import chat_prompt, write_causal_lm_head
    from tagger.models.spec import ArtifactError

    if chat:
        try:
            template = chat_prompt(checkpoint, "{text}", system) if sft is not None else chat_prompt(checkpoint, template)
        except ArtifactError as exc:
            _fail(exc, EXIT_ARTIFACT)
    extra = {}
    if question is not None:
        extra["question"] = question
    if yes is not None or no is not None:
        extra["answers"] = {"yes": " yes" if yes is None else yes, "no": " no" if no is None else no}
    if length_normalize:
        extra["length_normalize"] = True
    try:
        spec = write_causal_lm_head(out_dir, checkpoint, labels, verbalizers, template, mode, peft=peft, head=head,
                                    max_length=max_length, link=link, extra=extra)
    except ArtifactError as exc:
        _fail(exc, EXIT_ARTIFACT)
    click.echo(f"wrote {Path(out_dir) / 'tagger_head.json'}: {spec.head} (causal-lm, {mode}), {len(labels)} labels, "
               f"prompt {spec.extra['prompt']!r}{', adapter ' + spec.extra['peft'] if 'peft' in spec.extra else ''}; "
               f"thresholds 0.5 (run `tagger calibrate --model {out_dir} --dev DEV` to fit them)")
