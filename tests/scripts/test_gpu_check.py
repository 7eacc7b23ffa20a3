"""scripts/gpu_check.sh runs the job's tagging code where GPU machines leave it: no pyspark, no Java,
no installed package. Here on the CPU (no GPU in CI), from a copy of the checkout, with pyspark made
unimportable: it must print the markdown table, say it ran on the CPU, and load every tagger module
from the copy (not from this checkout's editable install).

Breaks this catches: `from pyspark.accumulators import AccumulatorParam` back at the top of
udfs/tagging.py (ImportError: the script fails); the package mapping in scripts/gpu_check.py
dropped (the modules come from the editable install or do not import); the table or the CPU note
gone from the report."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # about a minute on two busy cores: imports, three small heads, six passes
FOLDERS = ["tagger", "udfs", "models", "jobs", "sql", "conf", "scripts"]
MODULES = ["tagger", "tagger.udfs.tagging", "tagger.udfs.cascade", "tagger.models.loading", "tagger.measure.gpu",
           "tagger.demo.generator", "tagger.config"]
WITHOUT_PYSPARK = f'''
import json, runpy, sys
sys.modules["pyspark"] = None  # as on the GPU machines: any import of pyspark fails
script, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    print("MODULES " + json.dumps({{m: getattr(sys.modules.get(m), "__file__", None) for m in {MODULES!r}}}),
          file=sys.stderr)
'''


def test_gpu_check_runs_on_cpu_without_pyspark_or_the_installed_package(tmp_path):
    copy = tmp_path / "checkout"
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "without_pyspark.py").write_text(WITHOUT_PYSPARK, encoding="utf-8")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "without_pyspark.py"}" "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TAGGER_HOME")}
    env.update(PYTHON=str(python), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", TAGGER_HOME=str(tmp_path / "home"))

    done = subprocess.run(["bash", str(copy / "scripts" / "gpu_check.sh"), "--device", "cpu"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = done.stdout
    assert "CPU check on **CPU" in report
    assert "NO GPU: this ran on the CPU with small sizes" in report
    table = [ln for ln in report.splitlines() if ln.startswith("|")]
    assert table[0].startswith("| precision | batch size | items | seconds | items/s | × fp32 | tags identical to fp32 |")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table[2:]]
    assert [(r[0], r[1]) for r in rows] == [("fp32", "16"), ("bf16 autocast", "16"), ("fp32", "64"),
                                           ("bf16 autocast", "64"), ("fp32", "256"), ("bf16 autocast", "256")]
    assert all(r[2] == "200" and float(r[4].replace(",", "")) > 0 for r in rows)
    assert all(r[6].endswith("%") and 0 <= float(r[6][:-1]) <= 100 for r in rows if r[0] != "fp32")
    assert "torch " in report and "transformers " in report and "Python " in report

    modules = json.loads(done.stderr.rsplit("MODULES ", 1)[1])
    assert all(path and Path(path).resolve().is_relative_to(copy.resolve()) for path in modules.values()), modules
