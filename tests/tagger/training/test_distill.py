"""`tagger distill` (tagger/training/distill.py): a real tiny teacher (a textcnn trained here on
tests/tiny_data.py) scores unlabelled text, a linear and a textcnn student train on those soft
scores; the students agree with the teacher on items they never saw, their training targets are the
teacher's scores (gold where asked), the report is a recomputation from the two heads' decisions,
the student is an ordinary head, a dev file calibrates it like the teacher, input errors are one
line with the CLI's exit codes, and the date-range path scores the pool in Spark."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tagger.cli import main
from tagger.models.calibrate import calibrate_artifact
from tagger.models.loading import load_head
from tagger.models.metrics import binarize, label_report
from tagger.models.spec import read_spec
from tagger.models.text import clean_text
from tagger.models.training import soft_target_record, train_head
from tagger.training.distill import (REPORT_FILE, agreement, distill, distill_targets, gate_passes, holdout_split,
                                     read_unlabelled, score_texts)
from tiny_data import DEV, LABELS, QUIET, TRAIN, make_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNLABELLED = make_data(600, 3)  # texts for the teacher to score; their labels are not given to distill
TEST = make_data(200, 4)
# the files' texts as distill reads them (the job's normalization: full-width punctuation folded)
UNLABELLED = ([clean_text(t) for t in UNLABELLED[0]], UNLABELLED[1])
TEST = ([clean_text(t) for t in TEST[0]], TEST[1])


def _write(path, texts, labels=None):
    with open(path, "w", encoding="utf-8") as fh:
        for i, text in enumerate(texts):
            row = {"text": text}
            if labels is not None and labels[i] is not None:
                row["labels"] = labels[i]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("distill")
    teacher = train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
                         dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(base / "teacher"), epochs=3, log=QUIET,
                         progress=False)
    return {"base": base, "teacher": teacher.path,
            "unlabelled": _write(base / "unlabelled.jsonl", UNLABELLED[0]),
            "dev": _write(base / "dev.jsonl", *DEV), "test": _write(base / "test.jsonl", *TEST)}


@pytest.fixture(scope="module")
def students(files):
    out = {}
    for arch in ("linear", "textcnn"):
        report = distill(teacher=files["teacher"], student_arch=arch, out=str(files["base"] / arch),
                         unlabelled=read_unlabelled(files["unlabelled"]), test=files["test"], log=QUIET,
                         speed_repeats=1, **({"epochs": 3} if arch == "textcnn" else {}))
        out[arch] = report
    return out


@pytest.mark.parametrize("arch", ["linear", "textcnn"])
def test_students_agree_with_the_teacher_on_items_they_never_saw(students, arch):
    held = students[arch]["agreement"]["holdout"]
    assert held["n"] == 60
    # trained on shuffled soft scores (rows permuted), held-out mean agreement fell to 0.45 (linear) and 0.53
    # (textcnn), test macro-F1 retained to 42-46%
    assert held["mean_agreement"] >= 0.95, held
    assert min(m["agreement"] for m in held["labels"].values()) >= 0.9, held
    assert min(m["correlation"] for m in students[arch]["agreement"]["all"]["labels"].values()) >= 0.9
    assert students[arch]["test"]["retained"] >= 0.9


@pytest.mark.parametrize("arch", ["linear", "textcnn"])
def test_the_students_targets_are_the_teachers_scores(files, students, arch):
    teacher = load_head(files["teacher"])
    scores = score_texts(teacher, UNLABELLED[0], log=None)
    train_idx, hold_idx = holdout_split(len(UNLABELLED[0]), 0.1, 0)
    trained_on = read_spec(files["base"] / arch).extra["trained_on"]
    expected = soft_target_record(distill_targets(scores, [None] * len(scores), LABELS)[train_idx])
    assert trained_on["targets"] == "soft"
    assert trained_on["targets_sha256"] == expected["targets_sha256"]
    assert trained_on["n_train"] == len(train_idx) == 540
    # not the teacher's 0/1 decisions, not the true labels of the texts
    decisions = teacher.decide(scores)[train_idx].astype(np.float32)
    assert trained_on["targets_sha256"] != soft_target_record(decisions)["targets_sha256"]
    assert 0 < ((scores > 0.02) & (scores < 0.98)).sum()  # soft scores really are soft somewhere


def test_gold_labels_replace_the_teachers_scores_where_given(files, tmp_path):
    # every other row carries gold labels, here the reverse of the truth so they differ from the teacher's view
    gold = [[lab for lab in LABELS if lab not in tags] if i % 2 == 0 else None
            for i, tags in enumerate(UNLABELLED[1])]
    gold[2] = []  # gold with no label: all zeros, not "unlabelled"
    path = _write(tmp_path / "mixed.jsonl", UNLABELLED[0], gold)
    data = read_unlabelled(path)
    assert data.gold[2] == [] and data.gold[1] is None
    distill(teacher=files["teacher"], student_arch="linear", out=str(tmp_path / "gold"), unlabelled=data,
            use_gold=True, log=QUIET, speed_repeats=1)
    scores = score_texts(load_head(files["teacher"]), UNLABELLED[0], log=None)
    targets = distill_targets(scores, data.gold, LABELS, use_gold=True)
    assert (targets[0::2] == binarize(gold[0::2], LABELS)).all()
    assert (targets[1::2] == scores[1::2].astype(np.float32)).all()
    assert (targets[2] == 0).all()
    train_idx, _ = holdout_split(len(UNLABELLED[0]), 0.1, 0)
    spec = read_spec(tmp_path / "gold")
    assert spec.extra["trained_on"]["targets_sha256"] == soft_target_record(targets[train_idx])["targets_sha256"]
    assert spec.extra["trained_on"]["source"]["gold"] == "300 rows trained on their gold labels"


@pytest.mark.parametrize("arch", ["linear", "textcnn"])
def test_the_report_is_a_recomputation_from_the_two_heads_decisions(files, students, arch):
    report = students[arch]
    teacher, student = load_head(files["teacher"]), load_head(files["base"] / arch)
    t_scores = score_texts(teacher, UNLABELLED[0], log=None)
    s_scores = score_texts(student, UNLABELLED[0], log=None)
    t_dec, s_dec = teacher.decide(t_scores), student.decide(s_scores)
    _, hold = holdout_split(len(UNLABELLED[0]), 0.1, 0)
    for name, rows in (("all", slice(None)), ("holdout", hold)):
        got = report["agreement"][name]
        for j, label in enumerate(LABELS):
            m = got["labels"][label]
            assert m["agreement"] == pytest.approx(float((t_dec[rows, j] == s_dec[rows, j]).mean()), abs=1e-12)
            assert m["correlation"] == pytest.approx(np.corrcoef(t_scores[rows, j], s_scores[rows, j])[0, 1], abs=1e-9)
            assert m["teacher_positive"] == int(t_dec[rows, j].sum())
            assert m["student_positive"] == int(s_dec[rows, j].sum())
        assert got["exact_match"] == pytest.approx(float((t_dec[rows] == s_dec[rows]).all(axis=1).mean()))
    y = binarize(TEST[1], LABELS)
    t_rep = label_report(y, teacher.decide(score_texts(teacher, TEST[0], log=None)), LABELS)
    s_rep = label_report(y, student.decide(score_texts(student, TEST[0], log=None)), LABELS)
    test = report["test"]
    assert test["teacher"]["macro_f1"] == pytest.approx(t_rep["macro_f1"], abs=1e-12)
    assert test["student"]["macro_f1"] == pytest.approx(s_rep["macro_f1"], abs=1e-12)
    assert test["retained"] == pytest.approx(s_rep["macro_f1"] / t_rep["macro_f1"])
    for label in LABELS:
        for key in ("precision", "recall", "f1"):
            assert test["student"]["labels"][label][key] == pytest.approx(s_rep["labels"][label][key], abs=1e-12)
            assert test["teacher"]["labels"][label][key] == pytest.approx(t_rep["labels"][label][key], abs=1e-12)
    speed = report["speed"]
    assert speed["n"] == len(TEST[0]) and speed["batch_size"] == 64 and speed["threads"] == 1
    assert speed["speedup"] == pytest.approx(speed["student"]["items_per_s"] / speed["teacher"]["items_per_s"])
    on_disk = json.loads((files["base"] / arch / REPORT_FILE).read_text(encoding="utf-8"))
    assert on_disk["test"]["student"]["macro_f1"] == test["student"]["macro_f1"]


@pytest.mark.parametrize("arch", ["linear", "textcnn"])
def test_the_student_is_an_ordinary_head_of_the_teachers_labels(files, students, arch):
    t_spec, s_spec = read_spec(files["teacher"]), read_spec(files["base"] / arch)
    assert (s_spec.head, s_spec.labels, s_spec.arch) == (t_spec.head, t_spec.labels, arch)
    assert s_spec.extra["distilled_from"] == {"head": "p0", "arch": "textcnn", "version": t_spec.version,
                                              "path": str(files["teacher"])}
    assert s_spec.version != t_spec.version
    student = load_head(files["base"] / arch)
    decided = student.predict(["比亚迪工信部申报图曝光", "理想开启预售", "", "完全无关"])
    assert decided.shape == (4, len(LABELS)) and decided.dtype == bool
    assert decided[0, LABELS.index("申报图")] and decided[1, LABELS.index("预售")]


@pytest.mark.parametrize("arch", ["linear", "textcnn"])
def test_the_jobs_tagger_runs_the_student_in_the_teachers_place(files, students, arch):
    import pandas as pd

    from tagger.config import HeadConf
    from tagger.udfs.rules import RuleSet
    from tagger.udfs.tagging import Tagger, TaggerSpec

    parent = "内容标签/新车资讯"
    path = str(files["base"] / arch)
    index = {f"{parent}/{name}": (100 + j, name) for j, name in enumerate(LABELS)}
    spec = TaggerSpec(heads=(HeadConf(name="p0", path=path, parent=parent),), gate_head="p0",
                      rules=RuleSet(version="none", rules=()), tag_index=index, device="cpu", model_version=arch)
    pdf = pd.DataFrame({"itemid": [str(i) for i in range(len(TEST[0]))], "dtype": "article", "doc_text": TEST[0]})
    out = Tagger(spec).tag(pdf)
    got = np.zeros((len(pdf), len(LABELS)), dtype=bool)
    for i, row in enumerate(out["tags"]):
        for t in row:
            got[i, LABELS.index(t["tag_name"])] = True
    student = load_head(path)
    np.testing.assert_array_equal(got, student.decide(score_texts(student, TEST[0], log=None)))
    assert got.any()


def test_a_dev_file_calibrates_the_student_like_the_teacher(files, tmp_path):
    teacher = tmp_path / "calibrated_teacher"
    shutil.copytree(files["teacher"], teacher)
    calibrate_artifact(teacher, *DEV, precision=0.9, confidence=0.5, objective="f1", min_positives=3)
    distill(teacher=str(teacher), student_arch="linear", out=str(tmp_path / "s"),
            unlabelled=read_unlabelled(files["unlabelled"]), dev=files["dev"], log=QUIET, speed_repeats=1)
    cal = read_spec(tmp_path / "s").extra["calibration"]
    assert (cal["target_precision"], cal["confidence"], cal["objective"], cal["min_positives"]) == (0.9, 0.5, "f1", 3)
    assert cal["data"]["file"] == "dev.jsonl" and cal["n_items"] == len(DEV[0])
    assert read_spec(tmp_path / "s").extra["trained_on"]["source"]["thresholds_tuned_on"].startswith("dev file")


def test_a_gate_keeps_only_the_texts_it_passes(files, tmp_path):
    gate = train_head(arch="linear", head="gate", labels=["预售"], train_texts=TRAIN[0], train_labels=TRAIN[1],
                      dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(tmp_path / "gate"), log=QUIET)
    passed = gate_passes(load_head(gate.path), UNLABELLED[0])
    assert 100 < passed.sum() < 500  # the gate drops some texts and keeps others
    report = distill(teacher=files["teacher"], student_arch="linear", out=str(tmp_path / "s"),
                     unlabelled=read_unlabelled(files["unlabelled"]), gate=gate.path, log=QUIET, speed_repeats=1)
    assert report["unlabelled"]["n"] == int(passed.sum()) and report["unlabelled"]["n_before_gate"] == 600
    assert report["agreement"]["all"]["n"] == int(passed.sum())
    kept = [t for t, p in zip(UNLABELLED[0], passed) if p]
    train_idx, _ = holdout_split(len(kept), 0.1, 0)
    scores = score_texts(load_head(files["teacher"]), kept, log=None)
    trained_on = read_spec(tmp_path / "s").extra["trained_on"]
    assert trained_on["targets_sha256"] == soft_target_record(scores[train_idx].astype(np.float32))["targets_sha256"]


def test_agreement_counts_each_label_alone():
    t = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], bool)
    s = np.array([[1, 1], [0, 1], [0, 0], [0, 1]], bool)
    ts = np.array([[.9, .1], [.8, .7], [.1, .2], [.2, .9]])
    got = agreement(t, s, ts, ts, ["a", "b"])
    assert got["labels"]["a"]["agreement"] == 0.75 and got["labels"]["b"]["agreement"] == 0.75
    assert got["exact_match"] == 0.5 and got["labels"]["a"]["correlation"] == pytest.approx(1.0)
    assert agreement(t, s, np.ones((4, 2)), ts, ["a", "b"])["labels"]["a"]["correlation"] is None


def test_cli_distils_and_prints_the_report(files, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["distill", "--teacher", files["teacher"], "--student-arch", "linear",
                                       "--unlabeled", files["unlabelled"], "--test", files["test"], "--out", str(out),
                                       "--speed-repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "retained" in result.output and "items/s" in result.output and "申报图" in result.output
    assert (out / REPORT_FILE).is_file() and load_head(out).spec.head == "p0"


@pytest.mark.parametrize("case, code, says", [
    ("no_teacher", 3, "not a directory"),
    ("not_a_head", 3, "tagger_head.json"),
    ("empty", 2, "has no rows"),
    ("foreign_test_labels", 2, "none of its labels"),
    ("both_sources", 2, "either --unlabeled FILE or --start D --end D"),
    ("out_is_teacher", 2, "is the teacher's directory"),
    ("holdout_zero", 2, "--holdout 0 without --dev"),
    ("no_text", 2, "too few to train a student"),
])
def test_cli_input_errors_are_one_line_with_the_exit_code(files, tmp_path, case, code, says):
    args = {"--teacher": files["teacher"], "--student-arch": "linear", "--unlabeled": files["unlabelled"],
            "--out": str(tmp_path / "s")}
    if case == "no_teacher":
        args["--teacher"] = str(tmp_path / "nowhere")
    elif case == "not_a_head":
        (tmp_path / "plain").mkdir()
        (tmp_path / "plain" / "notes.txt").write_text("x")
        args["--teacher"] = str(tmp_path / "plain")
    elif case == "empty":
        args["--unlabeled"] = _write(tmp_path / "empty.jsonl", [])
    elif case == "foreign_test_labels":
        args["--test"] = _write(tmp_path / "foreign.jsonl", ["试驾体验"], [["试驾"]])
    elif case == "both_sources":
        args["--start"] = "2024-01-01"
    elif case == "out_is_teacher":
        args["--out"] = files["teacher"]
    elif case == "holdout_zero":
        args["--holdout"] = "0"
    elif case == "no_text":  # rows without text: the linear student's vocabulary would be empty
        args["--unlabeled"] = _write(tmp_path / "blank.jsonl", [""] * 30 + ["新车"] * 3)
    result = CliRunner().invoke(main, ["distill", *[x for kv in args.items() for x in kv]])
    assert result.exit_code == code, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and says in error[0], result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_the_date_range_is_scored_by_the_teacher_in_spark(spark, cfg, cfg_path, demo_data, files, tmp_path):
    from conftest import SEED_START
    from tagger.job.extract import extract
    from tagger.job.normalize import normalize
    from tagger.training.distill import pool_scores

    data, scores = pool_scores(spark, cfg, [SEED_START], files["teacher"], log=QUIET)
    sources = extract(spark, cfg, SEED_START)
    items = normalize(sources.pool, sources.asr, sources.ocr, cfg.text).items.select("itemid", "doc_text").toPandas()
    items = items[items["doc_text"].map(lambda t: isinstance(t, str) and bool(t))]
    assert sorted(data.itemids) == sorted(items["itemid"].astype(str))  # every selected item with text, once
    by_id = dict(zip(items["itemid"].astype(str), items["doc_text"]))
    assert data.texts == [by_id[i] for i in data.itemids]  # the job's doc_text
    on_driver = score_texts(load_head(files["teacher"]), data.texts, log=None)
    assert np.abs(scores - on_driver).max() <= 1e-4  # the same teacher scores, in Spark as on the driver

    gate = train_head(arch="linear", head="gate", labels=["预售"], train_texts=TRAIN[0], train_labels=TRAIN[1],
                      dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(tmp_path / "gate"), log=QUIET)
    gated, _ = pool_scores(spark, cfg, [SEED_START], files["teacher"], log=QUIET, gate=gate.path)
    passed = gate_passes(load_head(gate.path), data.texts)
    assert 0 < len(gated) < len(data)
    assert sorted(gated.itemids) == sorted(i for i, p in zip(data.itemids, passed) if p)  # the gate's items only

    result = CliRunner().invoke(main, ["--config", str(cfg_path), "distill", "--teacher", files["teacher"],
                                       "--student-arch", "linear", "--start", SEED_START, "--end", SEED_START,
                                       "--out", str(tmp_path / "pool"), "--speed-repeats", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["unlabelled"]["n"] == len(items) and report["unlabelled"]["dates"] == [SEED_START, SEED_START]


@pytest.mark.parametrize("arch", ["linear", "textcnn"])
def test_soft_targets_reach_the_loss(tmp_path, arch):
    # label 0 has no positive in the label lists, but a soft target of 0.6 on every text: a head
    # trained on the floats scores ~0.6 there, one trained on the label lists would score ~0
    soft = binarize(TRAIN[1], LABELS).astype(np.float32)
    soft[:, 0] = 0.6
    lists = [[lab for lab in tags if lab != LABELS[0]] for tags in TRAIN[1]]
    result = train_head(arch=arch, head="soft", labels=LABELS, train_texts=TRAIN[0], train_labels=lists,
                        dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(tmp_path / arch), epochs=3, log=QUIET,
                        progress=False, pos_weight="none", soft_targets=soft)
    scores = load_head(result.path).predict_proba(DEV[0])
    assert 0.45 <= float(scores[:, 0].mean()) <= 0.75, scores[:, 0].mean()
    assert result.spec.extra["trained_on"]["targets_sha256"] == soft_target_record(soft)["targets_sha256"]


def test_a_label_the_teacher_switched_off_stays_off_in_the_student(files, tmp_path):
    """A student put at the teacher's path must not emit a tag the teacher never emits. Break: drop the
    teacher_off block in distill() (the student had every label on at threshold 0.5)."""
    teacher = tmp_path / "teacher"
    shutil.copytree(files["teacher"], teacher)
    sidecar = json.loads((teacher / "tagger_head.json").read_text(encoding="utf-8"))
    sidecar["enabled"][0] = False
    (teacher / "tagger_head.json").write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
    distill(teacher=str(teacher), student_arch="linear", out=str(tmp_path / "student"),
            unlabelled=read_unlabelled(files["unlabelled"]), log=QUIET, speed_repeats=1)
    spec = read_spec(tmp_path / "student")
    assert spec.enabled[0] is False and spec.extra["disabled_reasons"][LABELS[0]] == "switched off in the teacher"
    assert all(spec.enabled[1:])
