"""Model workbench: train a head on the team's own labelled files, and split a labelled file into
train/dev/test by iterative stratification. No Spark and no config: files in, artifact or files out.

`tagger train --data ... --dev ...` (the user-data mode of `tagger train`) calls `train_from_files`;
`tagger split` is `split_command` below. torch is only imported when training starts.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from tagger.models.data import (DataError, check_labels, iterative_split, read_examples, read_label_file, resolve_labels,
                         write_jsonl)
from tagger.models.metrics import binarize, format_report, label_distribution

EXIT_USAGE = 2
SPLIT_NAMES = ("train", "dev", "test")
# Options of `tagger train` by mode (click parameter names); --head belongs to both.
DATA_MODE = ("data", "dev", "out", "arch", "labels_file", "fmt", "label_sep", "pos_weight", "epochs", "max_length", "lr",
             "batch_size", "patience", "seed", "size", "tokenizer", "dictionary", "c", "min_df", "max_features", "embeddings")
WAREHOUSE_MODE = ("start", "end")
TRAIN_OPTIONS = ("epochs", "max_length", "lr", "batch_size", "patience", "seed", "size", "pos_weight", "tokenizer",
                 "c", "min_df", "max_features", "embeddings")
ARCH_OPTIONS = {"linear": ("c", "min_df", "max_features", "tokenizer", "dictionary"),
                "textcnn": ("tokenizer", "dictionary", "embeddings")}  # options for one arch only (--size: bert, below)


def _flag(name: str) -> str:
    return "--format" if name == "fmt" else "--" + name.replace("_", "-")


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(EXIT_USAGE)


def default_head_name(out: str) -> str:
    """The out directory's name, lower-cased, runs of other than letters/digits/_.- turned into '-'."""
    name = re.sub(r"[^\w.-]+", "-", Path(out).resolve().name.lower()).strip("-.")
    return name or "head"


def is_data_mode(ctx: click.Context) -> bool:
    """Which mode `tagger train` runs in; a UsageError (exit 2) for mixed or incomplete options."""
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
    p = ctx.params
    data_given = sorted(given & set(DATA_MODE), key=DATA_MODE.index)
    if not data_given:
        return False
    flags = ", ".join(_flag(n) for n in data_given)
    if given & set(WAREHOUSE_MODE):
        raise click.UsageError(
            f"--start/--end belong to the warehouse mode (train the config's heads from Hive), but {flags} "
            "belong to the user-data mode (--data/--dev files). Use one set of options.")
    if not p["data"] or not p["dev"]:
        if p["data"] or p["dev"]:
            have, need = ("--data", "--dev") if p["data"] else ("--dev", "--data")
            raise click.UsageError(f"{have} needs {need}: the user-data mode trains on --data and tunes "
                                   "thresholds and early stopping on --dev (make both with `tagger split`).")
        raise click.UsageError(f"{flags} belong to the user-data mode: add --data TRAIN --dev DEV "
                               "(without --data, `tagger train` trains the config's heads from the warehouse).")
    for name in ("out", "arch"):
        if not p[name]:
            raise click.UsageError(f"{_flag(name)} is required with --data.")
    if len(p["heads"]) > 1:
        raise click.UsageError("with --data, give --head once: the name of the head being trained.")
    if "size" in given and p["arch"] != "bert":
        raise click.UsageError("--size only applies to --arch bert.")
    if p["arch"] == "linear":
        epoch_options = [_flag(n) for n in ("epochs", "lr", "batch_size", "patience") if n in given]
        if epoch_options:
            raise click.UsageError(f"{', '.join(epoch_options)} do not apply to --arch linear (fitted in one pass; "
                                   "its options are --c, --min-df, --max-features, --tokenizer, --max-length).")
    for name in ("tokenizer", "dictionary", "c", "min_df", "max_features", "embeddings"):
        if name in given and name not in ARCH_OPTIONS.get(p["arch"], ()):
            archs = " or ".join(a for a, names in ARCH_OPTIONS.items() if name in names)
            raise click.UsageError(f"{_flag(name)} only applies to --arch {archs}.")
    if "dictionary" in given and p["tokenizer"] in (None, "char"):
        raise click.UsageError("--dictionary is read only when words are: add --tokenizer word or char+word.")
    return True


def train_from_files(*, arch: str, data: str, dev: str, out: str, labels_file: str | None = None,
                     head: str | None = None, fmt: str = "auto", label_sep: str = ",", log=click.echo, **options):
    """Read the files (`fmt`, `label_sep`: as read_examples), fix the labels, train with
    tagger.models.training.train_head, print the dev report. Returns the TrainResult. DataError /
    FileExistsError for unusable input."""
    label_file_labels = read_label_file(labels_file) if labels_file else None
    train = read_examples(data, fmt, label_sep=label_sep)
    devset = read_examples(dev, fmt, label_sep=label_sep)
    labels = resolve_labels([train, devset], label_file_labels)
    head = head or default_head_name(out)
    order = f"order of {labels_file}" if labels_file else "by number of positives"
    log(f"train: {len(train):,} examples from {data} ({train.format}); dev: {len(devset):,} from {dev} "
        f"({devset.format}); {len(labels)} label(s), {order}: {', '.join(labels)}")
    log("-- train label distribution\n" + label_distribution(train.labels, labels))
    log("-- dev label distribution\n" + label_distribution(devset.labels, labels))

    from tagger.models.training import train_head  # torch loads here, after the inputs are known to be good

    source = {"train": str(Path(data).resolve()), "dev": str(Path(dev).resolve()), "format": train.format,
              "labels_file": str(Path(labels_file).resolve()) if labels_file else None}
    result = train_head(arch=arch, head=head, labels=labels, train_texts=train.texts, train_labels=train.labels,
                        dev_texts=devset.texts, dev_labels=devset.labels, out_dir=out, log=log, source=source,
                        **{k: v for k, v in options.items() if v is not None})
    log(f"\n-- {head} on dev ({len(devset):,} examples), per-label thresholds tuned on dev:")
    log(format_report(result.dev_report))
    log("thresholds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.dev_report["thresholds"].items()))
    log(f"artifact: {result.path} (head {head}, version {result.spec.version}). Load it with "
        f"tagger.models.loading.load_head('{result.path}'), or point a head's path in the job config at it.")
    return result


def run_train(ctx: click.Context) -> None:
    """The user-data mode of `tagger train`, with input errors as 'Error: ...' and exit 2."""
    p = ctx.params
    try:
        from tagger.models.words import read_dictionary

        try:
            dictionary = read_dictionary(p["dictionary"]) if p["dictionary"] else None
        except (OSError, ValueError) as exc:
            raise DataError(f"--dictionary {p['dictionary']}: {exc}. Fix: give a UTF-8 file, one name per line.") from None
        train_from_files(arch=p["arch"], data=p["data"], dev=p["dev"], out=p["out"], labels_file=p["labels_file"],
                         head=p["heads"][0] if p["heads"] else None, fmt=p["fmt"], label_sep=p["label_sep"], dictionary=dictionary,
                         **{k: p[k] for k in TRAIN_OPTIONS})
    except (DataError, FileExistsError) as exc:
        _fail(exc)
    except ValueError as exc:  # EmbeddingsError: a bad --embeddings file
        from tagger.models.embeddings import EmbeddingsError

        if not isinstance(exc, EmbeddingsError):
            raise
        _fail(exc)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1): the train, dev, test shares. Raises click.BadParameter
    (for --ratios) unless there are three positive numbers that add up to 1 (within 1e-6)."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise click.BadParameter(f"{text!r}: give three positive shares of train, dev, test that add up to 1, "
                                 "e.g. 0.8,0.1,0.1.", param_hint="--ratios")
    return values


def split_data(data: str, out: str, ratios=(0.8, 0.1, 0.1), seed: int = 0, fmt: str = "auto",
               labels_file: str | None = None, log=click.echo, label_sep: str = ",") -> dict[str, int]:
    """Write OUT/{train,dev,test}.jsonl from one labelled file by iterative stratification; print each
    split's label distribution. An SFT file's "system" texts are kept in the split files. Returns
    examples per split."""
    ex = read_examples(data, fmt, label_sep=label_sep)
    if labels_file:
        labels = read_label_file(labels_file)
        check_labels([ex], labels)
    else:
        labels = resolve_labels(ex)
    out_dir = Path(out)
    paths = {name: out_dir / f"{name}.jsonl" for name in SPLIT_NAMES}
    if any(p.resolve() == Path(data).resolve() for p in paths.values()):
        raise DataError(f"{data} would be overwritten by the split. Fix: choose another --out directory.")
    assign = iterative_split(ex.labels, ratios, seed)
    counts = {}
    for s, name in enumerate(SPLIT_NAMES):
        rows = [i for i, a in enumerate(assign) if a == s]
        write_jsonl(paths[name], [ex.texts[i] for i in rows], [ex.labels[i] for i in rows],
                    None if ex.itemids is None else [ex.itemids[i] for i in rows],
                    None if ex.systems is None else [ex.systems[i] for i in rows])
        counts[name] = len(rows)
        log(f"-- {name}: {len(rows):,} examples ({len(rows) / len(ex):.1%}) -> {paths[name]}")
        log(label_distribution([ex.labels[i] for i in rows], labels))
    y = binarize(ex.labels, labels)
    for j, name in enumerate(labels):
        present = {assign[i] for i in y[:, j].nonzero()[0]}
        if len(present) < len(SPLIT_NAMES):
            why = ("fewer positives than splits" if y[:, j].sum() < len(SPLIT_NAMES)
                   else "its examples share rarer labels that could not all be spread")
            log(f"note: label {name} ({int(y[:, j].sum())} positives) is not in every split: {why}.")
    return counts
