"""`tagger train --data/--dev` (the user-data mode) and `tagger split`: real small TextCNN heads trained
on generated keyword data in both file formats, usage errors before anything heavy, and the split files."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import re
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from tagger.models.loading import load_head
from tagger.models.metrics import binarize, label_report
from tagger.models.training import DEFAULTS
from tagger.cli import main
from tiny_data import LABELS, make_data

FAST = ["--epochs", "8", "--max-length", "64"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def to_jsonl(path, data, itemids=True):
    with open(path, "w", encoding="utf-8") as f:
        for i, (text, labels) in enumerate(zip(*data)):
            rec = {"itemid": f"item-{i}"} if itemids else {}
            f.write(json.dumps({**rec, "text": text, "labels": labels, "source": "editor"}, ensure_ascii=False) + "\n")
    return path


def to_paddle(path, data):
    path.write_text("".join(f"{t}\t{','.join(labs)}\n" for t, labs in zip(*data)), encoding="utf-8")
    return path


def only(data, keep):
    return data[0], [[lab for lab in labs if lab in keep] for labs in data[1]]


def macro_f1_on(head, data):
    return label_report(binarize(data[1], head.labels), head.predict(data[0]), head.labels)["macro_f1"]


@pytest.fixture(scope="module")
def data():
    return {"train": make_data(400, 11), "dev": make_data(120, 12), "test": make_data(200, 13)}


def test_train_on_jsonl_files(tmp_path, data):
    train = to_jsonl(tmp_path / "train.jsonl", data["train"])
    dev = to_jsonl(tmp_path / "dev.jsonl", data["dev"], itemids=False)
    out = tmp_path / "My P1 Head"
    result = invoke("train", "--arch", "textcnn", "--data", train, "--dev", dev, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    printed = float(re.search(r"Macro-F1: ([0-9.]+)", result.output).group(1))
    assert printed >= 0.9 and "Label 谍照 - Precision: " in result.output and str(out) in result.output
    head = load_head(out, device="cpu")
    assert head.spec.head == "my-p1-head" and sorted(head.labels) == sorted(LABELS)
    assert head.spec.extra["trained_on"]["source"]["train"] == str(train.resolve())
    assert macro_f1_on(head, data["test"]) >= 0.9  # on examples neither trained nor tuned on


def test_train_binary_head_on_paddle_files(tmp_path, data):
    keep = {"谍照"}
    train = to_paddle(tmp_path / "train.txt", only(data["train"], keep))
    dev = to_paddle(tmp_path / "dev.txt", only(data["dev"], keep))
    (tmp_path / "label.txt").write_text("谍照\n", encoding="utf-8")
    result = invoke("train", "--arch", "textcnn", "--data", train, "--dev", dev, "--labels-file",
                    tmp_path / "label.txt", "--out", tmp_path / "spy", "--head", "spy_gate", "--pos-weight", "none",
                    *FAST)
    assert result.exit_code == 0, result.output
    head = load_head(tmp_path / "spy", device="cpu")
    assert head.labels == ["谍照"] and head.spec.head == "spy_gate"
    assert macro_f1_on(head, only(data["test"], keep)) >= 0.9


def test_labels_without_positives_are_named_before_training(tmp_path, data):
    dev_data = (data["dev"][0], [labs + (["新车官图"] if i < 3 else []) for i, labs in enumerate(data["dev"][1])])
    train = to_jsonl(tmp_path / "train.jsonl", data["train"])
    dev = to_jsonl(tmp_path / "dev.jsonl", dev_data)
    (tmp_path / "label.txt").write_text("\n".join(LABELS + ["新车官图", "实拍"]) + "\n", encoding="utf-8")
    result = invoke("train", "--arch", "textcnn", "--data", train, "--dev", dev, "--labels-file",
                    tmp_path / "label.txt", "--out", tmp_path / "p1", "--epochs", "1", "--max-length", "32")
    assert result.exit_code == 0, result.output
    out = result.output
    warning = out.index("WARNING: 2 labels (新车官图, 实拍) have no positives in train")
    assert "cannot be learned; each will score ~0" in out
    assert warning < out.index("epoch 1/1")
    assert "label 实拍 has no positives in dev: its threshold cannot be tuned; kept at 0.5" in out
    head = load_head(tmp_path / "p1", device="cpu")
    assert head.labels == LABELS + ["新车官图", "实拍"] and head.spec.thresholds[-1] == 0.5


def test_nothing_to_learn_is_an_error_not_a_traceback(tmp_path, data):
    empty = (data["train"][0][:50], [[] for _ in range(50)])
    train = to_paddle(tmp_path / "train.txt", empty)
    dev = to_paddle(tmp_path / "dev.txt", empty)
    (tmp_path / "label.txt").write_text("谍照\n", encoding="utf-8")
    result = invoke("train", "--arch", "textcnn", "--data", train, "--dev", dev, "--labels-file",
                    tmp_path / "label.txt", "--out", tmp_path / "m")
    assert result.exit_code == 2, result.output
    assert "Error: " in result.output and "nothing to learn" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("content,needles", [
    ('{"text": "a", "labels": ["谍照"]}\n{"text": "b", "labels": "谍照"\n', [":2: invalid JSON"]),
    ('{"text": "a", "labels": ["官图"]}\n', ["'官图' (1 example", "not in the label file"]),
])
def test_bad_input_exits_2_with_file_and_line(tmp_path, content, needles):
    (tmp_path / "train.jsonl").write_text(content, encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text('{"text": "a", "labels": ["谍照"]}\n', encoding="utf-8")
    (tmp_path / "label.txt").write_text("谍照\n", encoding="utf-8")
    result = invoke("train", "--arch", "textcnn", "--data", tmp_path / "train.jsonl", "--dev", tmp_path / "dev.jsonl",
                    "--labels-file", tmp_path / "label.txt", "--out", tmp_path / "m")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("Error: ") and str(tmp_path / "train.jsonl") in result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_out_dir_that_is_not_an_artifact_is_refused(tmp_path, data):
    train = to_jsonl(tmp_path / "train.jsonl", data["train"])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me", encoding="utf-8")
    result = invoke("train", "--arch", "textcnn", "--data", train, "--dev", train, "--out", tmp_path / "docs")
    assert result.exit_code == 2 and "Error: " in result.output and "refusing to overwrite" in result.output
    assert [p.name for p in (tmp_path / "docs").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("args,needles", [
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "textcnn", "--start", "2024-01-01"],
     ["--start/--end belong to the warehouse mode", "--data, --dev, --out, --arch belong to the user-data mode"]),
    (["--end", "2024-01-02", "--epochs", "3"], ["warehouse mode", "--epochs belong to the user-data mode"]),
    (["--epochs", "3", "--lr", "0.01"], ["--epochs, --lr belong to the user-data mode", "add --data TRAIN --dev DEV"]),
    (["--data", "t.jsonl", "--out", "m", "--arch", "textcnn"], ["--data needs --dev"]),
    (["--dev", "d.jsonl", "--out", "m", "--arch", "bert"], ["--dev needs --data"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--arch", "textcnn"], ["--out is required with --data"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m"], ["--arch is required with --data"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "textcnn", "--size", "tiny"], ["'tiny'"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "textcnn", "--size", "small"],
     ["--size only applies to --arch bert"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "textcnn", "--head", "a", "--head", "b"],
     ["--head once"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "linear", "--epochs", "3"],
     ["--epochs do not apply to --arch linear"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "textcnn", "--c", "2"],
     ["--c only applies to --arch linear"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "bert", "--tokenizer", "word"],
     ["--tokenizer only applies to --arch linear or textcnn"]),
    (["--data", "t.jsonl", "--dev", "d.jsonl", "--out", "m", "--arch", "linear", "--dictionary", "cars.txt"],
     ["--dictionary is read only when words are"]),
])
def test_mixed_or_incomplete_options_are_usage_errors(args, needles):
    started = time.perf_counter()
    result = invoke("train", *args)
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert time.perf_counter() - started < 5  # decided before any data, Spark or torch work


def test_help_tells_both_modes_and_the_real_defaults():
    out = invoke("train", "--help").output
    assert "User-data mode" in out and "Warehouse mode" in out and "tagger split" in out
    flat = " ".join(out.split())
    for key, flag in (("epochs", "Most epochs"), ("max_length", "read per text"), ("lr", "Learning rate")):
        tc, bert = DEFAULTS["textcnn"][key], DEFAULTS["bert"][key]
        fmt = (lambda v: f"{v:.0e}".replace("e-0", "e-")) if key == "lr" else str
        assert f"textcnn {fmt(tc)}, bert {fmt(bert)}" in flat, (key, flat)
    assert f"(default: {DEFAULTS['textcnn']['patience']})" in flat and DEFAULTS["bert"]["patience"] == 1


# -- tagger split ---------------------------------------------------------------------------------

def labelled_with_rare(n=300):
    texts, labels = make_data(n, 21)
    for k, count in enumerate((3, 4, 5)):  # rare labels on the first examples
        for i in range(k * 10, k * 10 + count):
            labels[i] = labels[i] + [f"稀有{k}"]
    return texts, labels


def read_split(directory):
    return {name: [json.loads(x) for x in (directory / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
            for name in ("train", "dev", "test")}


def test_split_writes_stratified_files(tmp_path):
    data = labelled_with_rare()
    src = to_jsonl(tmp_path / "all.jsonl", data)
    result = invoke("split", "--data", src, "--out", tmp_path / "s", "--seed", "5")
    assert result.exit_code == 0, result.output
    parts = read_split(tmp_path / "s")
    assert [len(parts[n]) for n in ("train", "dev", "test")] == [240, 30, 30]
    assert sorted(r["itemid"] for p in parts.values() for r in p) == sorted(f"item-{i}" for i in range(300))
    assert all(set(r) == {"itemid", "text", "labels"} for p in parts.values() for r in p)
    for label in ("稀有0", "稀有1", "稀有2"):
        assert all(any(label in r["labels"] for r in parts[n]) for n in parts), label
    out = result.output
    assert out.index("-- train: 240 examples") < out.index("-- dev: 30 examples") < out.index("-- test: 30 examples")
    assert "Label: 稀有0, Count: 1, Ratio: 3.33%" in out  # one of its 3 in each 30-example split
    again = invoke("split", "--data", src, "--out", tmp_path / "s2", "--seed", "5")
    assert again.exit_code == 0 and read_split(tmp_path / "s2") == parts


def test_split_paddle_input_with_label_file_and_bad_ratios(tmp_path):
    data = make_data(100, 3)
    src = to_paddle(tmp_path / "all.txt", data)
    (tmp_path / "label.txt").write_text("\n".join(reversed(LABELS)) + "\n", encoding="utf-8")
    result = invoke("split", "--data", src, "--out", tmp_path / "s", "--labels-file", tmp_path / "label.txt",
                    "--ratios", "0.6,0.2,0.2")
    assert result.exit_code == 0, result.output
    parts = read_split(tmp_path / "s")
    assert Counter({n: len(p) for n, p in parts.items()}) == {"train": 60, "dev": 20, "test": 20}
    assert "itemid" not in parts["train"][0]
    first = [ln for ln in result.output.splitlines() if ln.startswith("Label: ")][0]
    assert first.startswith(f"Label: {LABELS[-1]},")  # the label file's order
    bad = invoke("split", "--data", src, "--out", tmp_path / "x", "--ratios", "0.8,0.3,0.1")
    assert bad.exit_code == 2 and "add up to 1" in bad.output
    clobber = invoke("split", "--data", to_jsonl(tmp_path / "train.jsonl", data), "--out", tmp_path)
    assert clobber.exit_code == 2 and "would be overwritten" in clobber.output


def test_train_a_linear_head_with_words_and_a_team_dictionary(tmp_path, data):
    train = to_jsonl(tmp_path / "train.jsonl", data["train"])
    dev = to_jsonl(tmp_path / "dev.jsonl", data["dev"])
    cars = tmp_path / "cars.txt"
    cars.write_text("# car series\n宋PLUS\nModel 3\n", encoding="utf-8")
    out = tmp_path / "lin"
    result = invoke("train", "--arch", "linear", "--tokenizer", "char+word", "--dictionary", cars, "--data", train,
                    "--dev", dev, "--out", out)
    assert result.exit_code == 0, result.output
    head = load_head(out)
    assert head.spec.arch == "linear" and head.spec.extra["text"]["tokenizer"] == "char+word"
    assert (out / "dictionary.txt").read_text(encoding="utf-8") == "宋plus\nmodel 3\n"
    assert macro_f1_on(head, data["test"]) >= 0.9


def to_sft(path, data, sep=","):
    """The team's SFT lines: {"system", "src", "tgt"}; tgt a single label, labels joined by `sep`, or ""."""
    with open(path, "w", encoding="utf-8") as f:
        for text, labels in zip(*data):
            f.write(json.dumps({"system": "给下面的汽车资讯打标签", "src": text, "tgt": sep.join(labels)},
                               ensure_ascii=False) + "\n")
    return path


def test_sft_files_go_through_split_train_evaluate_and_calibrate(tmp_path, data):
    """The team's {"system", "src", "tgt"} files (issue 18, item 4) are read like the other formats, with
    --label-sep for tgt strings; split keeps the system text. Break: read "tgt" with the default ','
    whatever --label-sep says, and the '|'-joined labels become one unknown label."""
    src = to_sft(tmp_path / "all.jsonl", (data["train"][0] + data["dev"][0], data["train"][1] + data["dev"][1]), "|")
    split = invoke("split", "--data", src, "--out", tmp_path / "s", "--label-sep", "|")
    assert split.exit_code == 0, split.output
    first = json.loads((tmp_path / "s" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["system"] == "给下面的汽车资讯打标签" and set(first) == {"system", "text", "labels"}

    train, dev = to_sft(tmp_path / "train.sft", data["train"], "|"), to_sft(tmp_path / "dev.sft", data["dev"], "|")
    out = tmp_path / "sft-head"
    trained = invoke("train", "--arch", "textcnn", "--data", train, "--dev", dev, "--out", out, "--format", "sft",
                     "--label-sep", "|", *FAST)
    assert trained.exit_code == 0, trained.output
    assert sorted(load_head(out, device="cpu").labels) == sorted(LABELS)
    test = to_sft(tmp_path / "test.jsonl", data["test"], "|")  # .jsonl: sniffed as sft
    evaluated = invoke("evaluate", "--model", out, "--data", test, "--label-sep", "|", "--format", "json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["macro_f1"] >= 0.9
    calibrated = invoke("calibrate", "--model", out, "--dev", dev, "--data-format", "sft", "--label-sep", "|")
    assert calibrated.exit_code == 0, calibrated.output
    wrong_sep = invoke("evaluate", "--model", out, "--data", test)
    assert wrong_sep.exit_code == 0 and "labels in the data that this head does not have" in wrong_sep.output
