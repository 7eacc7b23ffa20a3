"""The ONNX Runtime backend (models/onnx_runtime.py, `"runtime": "onnx"` in a head's sidecar) on tiny
heads trained here: its scores are torch's, a row's score does not depend on its batch, the job's
cascade emits the same tags, a plain head never imports onnxruntime, and a broken option fails at
load with the fix.

Breaks tried: the BERT export without the length mask (attention over padding) fails the
alone-vs-batch and the equal-to-torch tests; `import onnxruntime` at the top of models/loading.py
fails the import test."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tagger.models.loading import load_head
from tagger.models.onnx_runtime import export_onnx
from tagger.models.spec import ArtifactError, artifact_version, read_spec, write_spec
from tagger.models.training import train_head
from tiny_data import DEV, LABELS, NOISE, QUIET, TRAIN

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

MAX_DIFF = 1e-4  # scores are written rounded to 4 decimals


def probe_texts() -> list:
    """Very different lengths, unsorted, with empty, None and over-long texts."""
    return ["谍照", "", "".join(NOISE) * 3 + "开启预售", "正式上市销售" + "比亚迪" * 40, None, "工信部申报图", "车",
            "路试谍照曝光" * 3, "内饰座椅" * 20 + "申报信息曝光", "盲订通道开启吉利"] + TRAIN[0][:30]


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """{arch: (torch head dir, onnx head dir)}: one tiny textcnn and one tiny bert head, trained once;
    the onnx dir is a copy exported with `tagger export-onnx`."""
    base = tmp_path_factory.mktemp("onnx-heads")
    out = {}
    for arch in ("textcnn", "bert"):
        plain = base / arch
        train_head(arch=arch, head=f"p0-{arch}", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
                   dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(plain), epochs=1, max_length=48, log=QUIET)
        onnx = base / f"{arch}-onnx"
        shutil.copytree(plain, onnx)
        done = CliRunner().invoke(_cli(), ["export-onnx", "--model", str(onnx)])
        assert done.exit_code == 0, done.output
        out[arch] = (plain, onnx)
    return out


def _cli():
    from tagger.cli import main

    return main


@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_exported_head_scores_like_torch_and_emits_the_same_labels(heads, arch):
    plain, onnx = heads[arch]
    assert read_spec(onnx).extra["runtime"] == "onnx" and (onnx / "model.onnx").is_file()
    torch_head, onnx_head = load_head(plain, device="cpu"), load_head(onnx, device="cpu")
    assert (torch_head.runtime, onnx_head.runtime) == ("torch", "onnx") and onnx_head.model is None
    texts = probe_texts()
    a, b = torch_head.predict_proba(texts), onnx_head.predict_proba(texts)
    assert a.shape == b.shape == (len(texts), len(LABELS))
    assert float(np.abs(a - b).max()) <= MAX_DIFF
    from tagger.models.decision import round_scores

    assert (torch_head.decide(round_scores(a)) == onnx_head.decide(round_scores(b))).all()


@pytest.mark.parametrize("arch", ["textcnn", "bert"])
def test_a_rows_onnx_score_alone_equals_its_score_in_a_batch(heads, arch):
    onnx_head = load_head(heads[arch][1], device="cpu")
    texts = probe_texts()
    together = onnx_head.predict_proba(texts, batch_size=64)
    alone = np.vstack([onnx_head.predict_proba([t], batch_size=1) for t in texts])
    assert float(np.abs(together - alone).max()) <= MAX_DIFF
    # and in the input order, whatever batch and sort: the batch of 7 mixes lengths differently
    assert float(np.abs(onnx_head.predict_proba(texts, batch_size=7, order="input") - alone).max()) <= MAX_DIFF


def test_the_jobs_cascade_with_onnx_heads_emits_torch_tags(heads):
    from tagger.udfs.cascade import HeadRef, run_cascade

    texts = [t or "" for t in probe_texts()] + DEV[0][:60]

    def cascade(i):
        refs = [(HeadRef("gate", str(heads["textcnn"][i]), "内容标签/新车资讯", None), load_head(heads["textcnn"][i], device="cpu")),
                (HeadRef("p0", str(heads["bert"][i]), "内容标签/新车资讯", "gate"), load_head(heads["bert"][i], device="cpu"))]
        return run_cascade(refs, texts, batch_size=16)

    for t, o in zip(cascade(0), cascade(1)):
        assert o.head.runtime == "onnx" and t.head.runtime == "torch"
        assert np.array_equal(t.rows, o.rows) and np.array_equal(t.hit, o.hit)
        assert float(np.abs(t.scores - o.scores).max(initial=0.0)) <= MAX_DIFF


def test_a_plain_head_never_imports_onnxruntime_and_an_onnx_head_does(heads):
    """The job's hot path: the Tagger's module and load_head + predict_proba of a head whose sidecar
    says nothing of a runtime. Break: `import onnxruntime` at the top of models/loading.py."""
    code = ("import sys; import tagger.udfs.tagging, tagger.udfs.cascade; from tagger.models.loading import load_head; "
            "h = load_head(sys.argv[1], device='cpu'); h.predict_proba(['谍照']); "
            "print(h.runtime, 'onnxruntime' in sys.modules, 'onnx' in sys.modules)")
    for path, expected in ((heads["textcnn"][0], "torch False False"), (heads["textcnn"][1], "onnx True False")):
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_runtime_switch_is_a_new_model_version_and_a_missing_graph_fails_with_the_fix(heads, tmp_path):
    plain, onnx = heads["textcnn"]
    assert artifact_version(onnx) != artifact_version(plain)
    assert "+onnx" in artifact_version(onnx) and "+onnx" not in artifact_version(plain)
    broken = tmp_path / "broken"
    shutil.copytree(onnx, broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="tagger export-onnx --model"):
        artifact_version(broken)  # at job start, on the driver
    with pytest.raises(ArtifactError, match="model.onnx"):
        load_head(broken, device="cpu")
    # forcing torch on an onnx directory still works (the bench compares the two on one directory)
    assert load_head(broken, device="cpu", runtime="torch").runtime == "torch"


def test_runtime_key_is_validated(heads, tmp_path):
    spec = read_spec(heads["textcnn"][0])
    spec.extra["runtime"] = "tensorrt"
    with pytest.raises(ArtifactError, match="runtime"):
        write_spec(tmp_path / "x", spec)
    linear = json.loads((heads["textcnn"][0] / "tagger_head.json").read_text(encoding="utf-8"))
    linear.update(arch="linear", runtime="onnx")
    (tmp_path / "lin").mkdir()
    (tmp_path / "lin" / "tagger_head.json").write_text(json.dumps(linear), encoding="utf-8")
    with pytest.raises(ArtifactError, match="runtime"):
        read_spec(tmp_path / "lin")


def test_export_onnx_no_enable_leaves_the_runtime_and_refuses_a_linear_head(heads, tmp_path):
    target = tmp_path / "cnn"
    shutil.copytree(heads["textcnn"][0], target)
    block = export_onnx(target, enable=False)
    assert (target / "model.onnx").is_file() and block["check_max_abs_diff"] <= MAX_DIFF
    assert "runtime" not in read_spec(target).extra and load_head(target, device="cpu").runtime == "torch"
    lin = tmp_path / "lin"
    spec = read_spec(target)
    spec.arch = "linear"
    write_spec(lin, spec)
    done = CliRunner().invoke(_cli(), ["export-onnx", "--model", str(lin)])
    assert done.exit_code == 3 and "textcnn and bert only" in done.output
