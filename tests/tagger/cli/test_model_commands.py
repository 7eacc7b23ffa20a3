"""`tagger evaluate` and `tagger calibrate` through the CLI (click's CliRunner), on a tiny TextCNN
head trained here and on a foreign Hugging Face checkpoint built here (nothing is downloaded)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import random
import shutil

import pytest
import torch
from click.testing import CliRunner

from tagger.models.loading import load_head
from tagger.models.spec import read_spec
from tagger.models.tokenization import build_wordpiece_tokenizer
from tagger.models.training import train_head
from tagger.cli import main

LABELS = ["预售", "谍照", "新车上市"]
PHRASES = {"预售": ["开启预售", "预售价格公布"], "谍照": ["路试谍照曝光", "伪装测试车谍照"],
           "新车上市": ["正式上市销售", "上市发布会召开"]}
NOISE = ["比亚迪", "吉利", "长安", "小米", "理想", "车身", "轴距", "动力", "内饰", "续航"]
QUIET = lambda *a, **k: None  # noqa: E731


def make_data(n, seed, rates=(0.3, 0.3, 0.3)):
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        tags = [t for t, rate in zip(LABELS, rates) if rng.random() < rate]
        words = [rng.choice(NOISE) for _ in range(rng.randint(4, 10))]
        for t in tags:
            words.insert(rng.randint(0, len(words)), rng.choice(PHRASES[t]))
        texts.append("".join(words))
        labels.append(tags)
    return texts, labels


def write_jsonl(path, texts, labels):
    path.write_text("".join(json.dumps({"text": t, "labels": y}, ensure_ascii=False) + "\n"
                            for t, y in zip(texts, labels)), encoding="utf-8")
    return path


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("cmd")
    train, dev = make_data(240, 1), make_data(80, 2)
    train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=train[0], train_labels=train[1],
               dev_texts=dev[0], dev_labels=dev[1], out_dir=str(base / "p0"), epochs=3, max_length=48, log=QUIET)
    write_jsonl(base / "dev.jsonl", *dev)
    test = make_data(60, 3)
    write_jsonl(base / "test.jsonl", *test)
    return base


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_evaluate_text_prints_the_team_report_and_the_files(workdir, tmp_path):
    r = run("evaluate", "--model", workdir / "p0", "--data", workdir / "test.jsonl", "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    report_lines = [x for x in out if x.startswith("Label ") and " - Precision: " in x]
    assert [x.split(" - ")[0] for x in report_lines] == [f"Label {n}" for n in LABELS]
    assert all(", Recall: " in x and ", F1-Score: " in x and ", Support: " in x for x in report_lines)
    macro = next(i for i, x in enumerate(out) if x.startswith("Macro-F1: "))
    assert "Micro-F1: " in out[macro]
    assert [x.split(",")[0] for x in out[macro + 1:macro + 4]] == [f"Label: {n}" for n in LABELS]
    for name in ("bad_cases.jsonl", "pr_curve.png", "MODEL_CARD.md"):
        assert str(tmp_path / "ev" / name) in r.stdout and (tmp_path / "ev" / name).is_file()


def test_evaluate_json_prints_one_object(workdir, tmp_path):
    r = run("evaluate", "--model", workdir / "p0", "--data", workdir / "test.jsonl", "--format", "json",
            "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert set(report["labels"]) == set(LABELS) and report["data"]["n"] == 60
    assert 0 <= report["macro_f1"] <= 1 and report["files"]["pr_curve"] == str(tmp_path / "ev" / "pr_curve.png")
    assert report["head"] == "p0" and report["notes"] == []


def test_evaluate_with_a_labels_file_reports_names_the_head_lacks(workdir, tmp_path):
    labels_file = tmp_path / "label.txt"
    labels_file.write_text("预售\n谍照\n新车上市\n官图\n", encoding="utf-8")
    r = run("evaluate", "--model", workdir / "p0", "--data", workdir / "test.jsonl", "--labels-file", labels_file,
            "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    assert "Note: the label file has 1 label(s) this head does not have (ignored): 官图" in r.stderr
    # a data label outside the label file is refused (tagger.models.data), not dropped silently
    labels_file.write_text("预售\n谍照\n", encoding="utf-8")
    r = run("evaluate", "--model", workdir / "p0", "--data", workdir / "test.jsonl", "--labels-file", labels_file)
    assert r.exit_code == 2 and r.stderr.startswith("Error: ") and "新车上市" in r.stderr


def test_calibrate_prints_old_and_new_thresholds_and_writes_the_sidecar(workdir, tmp_path):
    d = tmp_path / "p0"
    shutil.copytree(workdir / "p0", d)
    before = read_spec(d)
    r = run("calibrate", "--model", d, "--dev", workdir / "dev.jsonl", "--precision", "0.9", "--min-positives", "5",
            "--max-labels", "2")
    assert r.exit_code == 0, r.output
    after = read_spec(d)
    for j, name in enumerate(LABELS):
        line = next(x for x in r.stdout.splitlines() if x.startswith(f"  {name}: "))
        assert f"threshold {before.thresholds[j]:.4f} -> {after.thresholds[j]:.4f}" in line
    assert after.extra["calibration"]["target_precision"] == 0.9
    assert after.extra["calibration"]["data"]["file"] == "dev.jsonl"
    assert after.decision == {"top_k": None, "min_labels": 0, "max_labels": 2}
    assert "decision block: " in r.stdout and "tagger_head.json" in r.stdout
    assert after.decision_digest() != before.decision_digest() and after.version == before.version
    # too few positives everywhere: every label off, with its reason on its line
    r = run("calibrate", "--model", d, "--dev", workdir / "dev.jsonl", "--min-positives", "1000")
    assert r.exit_code == 0, r.output
    assert read_spec(d).enabled == [False] * 3 and "on -> off" in r.stdout
    assert "dev positives < 1000 needed to tell" in r.stdout
    assert read_spec(d).decision["max_labels"] == 2  # no decision option given: the block is kept


@pytest.mark.parametrize("args, code, words", [
    (["--top-k", "1", "--max-labels", "2"], 2, "cannot be combined"),
    (["--top-k", "9"], 2, "top_k"),
    (["--precision", "0"], 2, "precision"),
])
def test_calibrate_refuses_bad_options(workdir, tmp_path, args, code, words):
    d = tmp_path / "p0"
    shutil.copytree(workdir / "p0", d)
    sidecar = (d / "tagger_head.json").read_bytes()
    r = run("calibrate", "--model", d, "--dev", workdir / "dev.jsonl", *args)
    assert r.exit_code == code and words in r.stderr and "Traceback" not in r.output
    assert (d / "tagger_head.json").read_bytes() == sidecar


def test_bad_input_is_one_error_line_not_a_traceback(workdir, tmp_path):
    missing = run("evaluate", "--model", workdir / "p0", "--data", tmp_path / "nope.jsonl")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: ") and "nope.jsonl" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n', encoding="utf-8")
    r = run("calibrate", "--model", workdir / "p0", "--dev", bad)
    assert r.exit_code == 2 and "labels" in r.stderr
    (tmp_path / "empty").mkdir()
    for cmd in (["evaluate", "--data"], ["calibrate", "--dev"]):
        for model in (tmp_path / "no-such-dir", tmp_path / "empty"):
            r = run(cmd[0], "--model", model, cmd[1], workdir / "test.jsonl")
            assert r.exit_code == 3, r.output
            assert r.stderr.startswith("Error: head artifact") and len(r.stderr.strip().splitlines()) == 1
            assert "Traceback" not in r.output


def test_help_texts():
    for cmd, words in (("evaluate", ["--model", "--data", "--format", "--out", "--labels-file", "bad_cases.jsonl"]),
                       ("calibrate", ["--dev", "--precision", "--min-positives", "--top-k", "--min-labels",
                                      "--max-labels", "lowest"])):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and all(w in r.output for w in words), r.output
    r = run("--help")
    assert "evaluate" in r.output and "calibrate" in r.output


def _foreign_dir(tmp_path, texts):
    """A Hugging Face multi-label checkpoint without a sidecar (tiny random BERT, as a fine-tuned
    chinese-bert would be saved)."""
    from transformers import BertConfig, BertForSequenceClassification

    d = tmp_path / "hf"
    tok = build_wordpiece_tokenizer(texts, model_max_length=48)
    torch.manual_seed(0)
    id2label = {0: "预售", 1: "谍照", 2: "官图"}
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3, id2label=id2label,
                     label2id={v: k for k, v in id2label.items()}, problem_type="multi_label_classification")
    BertForSequenceClassification(cfg).eval().save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


def test_calibrate_gives_a_foreign_checkpoint_a_sidecar_that_load_head_uses(tmp_path):
    dev = make_data(60, 5, rates=(0.6, 0.5, 0.3))
    d = _foreign_dir(tmp_path, dev[0])
    assert not (d / "tagger_head.json").exists()
    data = write_jsonl(tmp_path / "dev.jsonl", *dev)
    # a random model: with a target below the base rate, the lowest candidate (every item) reaches it
    r = run("calibrate", "--model", d, "--dev", data, "--precision", "0.4", "--min-positives", "5")
    assert r.exit_code == 0, r.output
    assert "labels in the data that this head does not have (ignored): 新车上市" in r.stderr
    assert (d / "tagger_head.json").is_file()
    spec = read_spec(d)
    assert spec.labels == ["预售", "谍照", "官图"] and spec.extra["source"] == "huggingface"
    assert spec.enabled == [True, True, False]
    assert spec.extra["disabled_reasons"] == {"官图": "0 dev positives < 5 needed to tell"}
    assert spec.thresholds[2] == 0.5  # an off label keeps the synthesized threshold
    head = load_head(d, device="cpu")
    assert head.spec.thresholds == spec.thresholds and head.spec.enabled == spec.enabled
    assert spec.thresholds[:2] != [0.5, 0.5]
    decided = head.predict(dev[0])
    assert not decided[:, 2].any() and decided[:, :2].all()  # the lowest candidate: every item passes
    r = run("evaluate", "--model", d, "--data", data, "--format", "json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["labels"]["官图"]["reason"] == "0 dev positives < 5 needed to tell"
    assert report["ignored_labels"] == {"新车上市": sum("新车上市" in y for y in dev[1])}


def test_ensemble_command_writes_a_head_that_evaluate_and_calibrate_take(workdir, tmp_path):
    import shutil

    model = workdir / "p0"
    for name in ("a", "b"):
        shutil.copytree(model, tmp_path / "ens" / "members" / name)
    result = run("ensemble", "--member", tmp_path / "ens" / "members" / "a", "--member",
                 tmp_path / "ens" / "members" / "b", "--combine", "intersection", "--out", tmp_path / "ens")
    assert result.exit_code == 0, result.output
    assert "members/a, members/b" in result.output
    from tagger.models.loading import load_head

    head = load_head(tmp_path / "ens")
    assert head.spec.arch == "ensemble" and head.spec.labels == load_head(model).spec.labels
    result = run("calibrate", "--model", tmp_path / "ens", "--dev", workdir / "dev.jsonl", "--precision", "0.8")
    assert result.exit_code == 0, result.output
    result = run("evaluate", "--model", tmp_path / "ens", "--data", workdir / "test.jsonl", "--format", "json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ens" / "MODEL_CARD.md").is_file()
    only_one = run("ensemble", "--member", model, "--combine", "union", "--out", tmp_path / "one")
    assert only_one.exit_code == 2 and "at least twice" in only_one.output
