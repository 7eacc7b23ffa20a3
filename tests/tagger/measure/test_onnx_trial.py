"""The bench's ONNX Runtime trial helpers (tagger/measure/onnx_trial.py) on a tiny TextCNN head trained
here: what the report's per-head row holds, and that a head whose scores depend on the batch is
caught (the bar the verdict applies)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tagger.models.loading import load_head
from tagger.models.training import train_head
from tiny_data import DEV, LABELS, QUIET, TRAIN

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tagger.models.onnx_runtime import export_onnx

    base = tmp_path_factory.mktemp("trial")
    train_head(arch="textcnn", head="p1", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(base / "torch"), epochs=1, max_length=48, log=QUIET)
    shutil.copytree(base / "torch", base / "onnx")
    export_onnx(base / "onnx")
    return load_head(base / "torch", device="cpu"), load_head(base / "onnx", device="cpu")


def test_compare_heads_reports_speed_batch_dependence_and_agreement(pair):
    from tagger.measure.onnx_trial import compare_heads

    torch_head, onnx_head = pair
    row = compare_heads([("p1", torch_head, onnx_head)], DEV[0][:80], 16, 3, 20, QUIET)["p1"]
    assert row["arch"] == "textcnn" and row["texts"] == 80 and len(row["torch_runs"]) == len(row["onnx_runs"]) == 3
    assert row["speedup"] == pytest.approx(row["onnx_items_per_s"] / row["torch_items_per_s"], rel=1e-2)
    assert row["labels_agree_ratio"] == 1.0 and row["score_max_abs_diff_vs_torch"] <= 1e-4
    assert row["onnx_alone_vs_batch_max_abs_diff"] <= 1e-4


def test_alone_vs_batch_catches_a_head_whose_scores_depend_on_the_batch(pair):
    """Break: a forward pass that centres the logits on the batch mean (as dynamic int8's per-batch
    scales do, in spirit) must show up above the 1e-4 bar."""
    from tagger.measure.onnx_trial import alone_vs_batch

    _, onnx_head = pair
    texts = DEV[0][:20]
    assert alone_vs_batch(onnx_head, texts, 16) <= 1e-4
    inner = onnx_head.forward

    class BatchDependent:
        min_width = inner.min_width

        def __call__(self, ids, lengths):
            logits = inner(ids, lengths)
            return logits - logits.mean(axis=0, keepdims=True)

    onnx_head.forward = BatchDependent()
    try:
        assert alone_vs_batch(onnx_head, texts, 16) > 1e-4
    finally:
        onnx_head.forward = inner
    assert np.isfinite(alone_vs_batch(onnx_head, [], 16))
