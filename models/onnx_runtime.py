"""ONNX Runtime as a CPU inference backend for a head (an artifact option, off by default).

A textcnn or bert head directory may carry `model.onnx` (fp32, exported from its own weights by
`export_onnx` / `tagger export-onnx --model DIR`) and the sidecar key `"runtime": "onnx"`. Then
`models.loading.load_head` scores the head with an onnxruntime session instead of torch: the
same tokenization, length-sorted mini-batches and dynamic padding, the same sigmoid/softmax and,
in the cascade, the same rounding and decision code (models/decision.py). Only the forward pass
(ids, lengths -> logits) changes hands.

onnxruntime (the `onnx` extra) is imported only here, inside functions, and only when a head's
sidecar asks for it or a head is exported: a job whose heads say nothing of a runtime never
imports it (tests/test_layout.py, tests/models/test_onnx_runtime.py).

On a CUDA device the head loads with torch whatever the sidecar says (this backend is the CPU
session only). The bench's ONNX trial (`tagger bench --onnx-trial`, docs/speed.md) measured
whether it is worth turning on; see the README for the verdict.
"""
from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .spec import ONNX_ARCHS, ONNX_FILE, SIDECAR, ArtifactError, HeadSpec, read_spec, write_spec

OPSET = 17
EXPORT_MAX_DIFF = 1e-4  # an exported graph whose scores move more than this from torch's is refused
INSTALL_FIX = "install the onnx extra (pip install 'tagger[onnx]'), or drop \"runtime\" from the sidecar"
PROBE_TEXTS = ("北京车展新车上市，比亚迪汉EV售价20万起", "新款SUV谍照曝光", "试驾", "",
               "小米SU7正式上市销售。" * 12)


def runtime_of(spec: HeadSpec) -> str:
    """The runtime a head's sidecar asks for: "onnx" or "torch" (the default when the key is absent)."""
    return spec.extra.get("runtime") or "torch"


def _threads() -> int:
    import torch

    return max(1, int(torch.get_num_threads()))  # the Tagger set the task's torch threads before loading


def open_session(directory: str | os.PathLike, threads: int | None = None):
    """An onnxruntime InferenceSession on <directory>/model.onnx, CPU provider, `threads` intra-op
    threads (None: torch's current thread count, which the job sets per task) and one inter-op
    thread. Raises ArtifactError when model.onnx is missing or unreadable, or onnxruntime is not
    installed."""
    d = Path(directory)
    if not (d / ONNX_FILE).is_file():
        raise ArtifactError(d, ONNX_FILE, "the sidecar asks for \"runtime\": \"onnx\" but the file is missing",
                            f"run `tagger export-onnx --model {d}` (writes it), or drop \"runtime\" from the "
                            "sidecar", key="runtime")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ArtifactError(d, SIDECAR, "asks for \"runtime\": \"onnx\" but onnxruntime is not installed",
                            INSTALL_FIX, key="runtime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or _threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: a warning per worker is noise in the job's log
    try:
        return ort.InferenceSession(str(d / ONNX_FILE), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ArtifactError(d, ONNX_FILE, f"onnxruntime cannot load it ({type(e).__name__}: {e})",
                            f"re-export it: tagger export-onnx --model {d}") from None


class OnnxForward:
    """The forward pass of a head as an onnxruntime session: (ids, lengths) int64 numpy arrays ->
    (n, outputs) float32 logits. `min_width` is the narrowest input the graph takes (TextCNN's
    largest kernel; 1 for BERT)."""

    def __init__(self, session, min_width: int = 1):
        self.session = session
        self.min_width = int(min_width)

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Logits for one padded mini-batch: ids (n, W) with W >= min_width, lengths (n,)."""
        feeds = {"input_ids": np.ascontiguousarray(ids, dtype=np.int64),
                 "lengths": np.ascontiguousarray(lengths, dtype=np.int64)}
        return self.session.run(None, feeds)[0]


def _export_module(head):
    """The torch module that export_onnx traces: (input_ids, lengths) -> logits, the head's own
    inference path (TextCNN with whole-vocab gather tables, BERT with the length mask)."""
    import torch

    class TextCNNForward(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.tables = [t.clone() for t in model.precompute_tables()]

        def forward(self, input_ids, lengths):
            return self.model(input_ids, lengths, self.tables)

    class BertForward(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, lengths):
            mask = (torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]).long()
            return self.model(input_ids=input_ids, attention_mask=mask).logits

    module = TextCNNForward(head.model) if head.spec.arch == "textcnn" else BertForward(head.model)
    return module.eval()


def export_onnx(path: str | os.PathLike, *, enable: bool = True, opset: int = OPSET, log=lambda msg: None) -> dict:
    """Export the head at `path` (a textcnn or bert directory) to <path>/model.onnx (fp32, dynamic
    batch and width, torch.onnx's TorchScript exporter), check that onnxruntime's scores match
    torch's on probe texts (PROBE_TEXTS, alone and batched) within EXPORT_MAX_DIFF, and with
    `enable` set the sidecar's "runtime" to "onnx" (else leave it as it was). The sidecar also
    gets an "onnx" block (opset, torch and onnxruntime versions, the check's max |diff|, when).

    Returns that block. Raises ArtifactError when the head cannot be loaded, is not textcnn/bert,
    onnxruntime is missing, or the check fails (model.onnx is then removed and the sidecar left
    unchanged); OSError when the directory is not writable."""
    import torch

    from .loading import load_head

    d = Path(path)
    spec = read_spec(d)
    if spec.arch not in ONNX_ARCHS:
        raise ArtifactError(d, SIDECAR, f"arch {spec.arch!r} has no ONNX export (textcnn and bert only)",
                            "export an ensemble's members one by one; a linear head is numpy already", key="arch")
    try:
        import onnxruntime
    except ImportError:
        raise ArtifactError(d, SIDECAR, "onnxruntime is not installed", INSTALL_FIX) from None
    head = load_head(d, device="cpu", runtime="torch")
    module = _export_module(head)
    texts = list(PROBE_TEXTS)
    ids, lengths = head.encode(texts)
    width = max(ids.shape[1], head.min_width)
    example = (torch.zeros((2, width), dtype=torch.long), torch.full((2,), width, dtype=torch.long))
    example[0][:, :ids.shape[1]] = torch.from_numpy(ids[:2]).long()
    tmp = d / f".{ONNX_FILE}.tmp-{os.getpid()}"
    with warnings.catch_warnings():  # the tracer's notes on shape arithmetic; the check below is what counts
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(tmp), dynamo=False, opset_version=opset,
                          input_names=["input_ids", "lengths"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "width"}, "lengths": {0: "batch"},
                                        "logits": {0: "batch"}})
    os.replace(tmp, d / ONNX_FILE)
    try:
        onnx_head = load_head(d, device="cpu", runtime="onnx")
        reference = head.predict_proba(texts, batch_size=len(texts))
        worst = max(float(np.abs(onnx_head.predict_proba(texts, batch_size=b) - reference).max()) for b in (1, 2, 64))
    except Exception:
        (d / ONNX_FILE).unlink(missing_ok=True)
        raise
    if not worst <= EXPORT_MAX_DIFF:
        (d / ONNX_FILE).unlink(missing_ok=True)
        raise ArtifactError(d, ONNX_FILE, f"onnxruntime's scores differ from torch's by up to {worst:.2g} on the "
                            f"probe texts (allowed {EXPORT_MAX_DIFF:g})", "keep the torch runtime for this head")
    block = {"opset": opset, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
             "check_max_abs_diff": float(f"{worst:.3g}"),
             "exported": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    spec = read_spec(d)
    spec.extra["onnx"] = block
    if enable:
        spec.extra["runtime"] = "onnx"
    write_spec(d, spec)
    log(f"wrote {d / ONNX_FILE} ({(d / ONNX_FILE).stat().st_size / 1e6:.1f} MB); onnxruntime vs torch on "
        f"{len(texts)} probe texts: max |diff| {worst:.2g}; runtime: {runtime_of(spec)}")
    return block
