"""The house plan (README, "Layout"): which package may import which. Checked on the source with
`ast`, so a newcomer's import that crosses a line fails here, not on a cluster.

Breaks each test catches: `from tagger.config import HeadConf` in udfs/tagging.py (the executor
side importing the driver side); `from tagger.measure.bench import ...` at the top of a job module
or of tagger/cli/job_commands.py (the daily job loading the benchmarks)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder in the repository -> its installed package (setup.py's package_dir)
PACKAGES = {"udfs": "tagger.udfs", "models": "tagger.models", "jobs": "tagger.jobs", "tagger": "tagger"}
# package -> packages it must not import (anywhere in the module, lazily or not)
FORBIDDEN = {
    "tagger.udfs": ["tagger.config", "tagger.job", "tagger.ops", "tagger.cli", "tagger.training", "tagger.measure",
                    "tagger.demo", "tagger.rules_file", "tagger.sql_files", "tagger.lifecycle", "mlflow", "cleanlab"],
    "tagger.models": ["tagger.config", "tagger.job", "tagger.ops", "tagger.cli", "tagger.training",
                      "tagger.measure", "tagger.demo", "tagger.udfs", "tagger.lifecycle", "mlflow", "cleanlab"],
    "tagger.job": ["tagger.cli", "tagger.training", "tagger.measure", "tagger.demo"],
    "tagger.ops": ["tagger.cli", "tagger.training", "tagger.measure", "tagger.demo", "tagger.job"],
}


def _modules():
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([package, *parts]), path


def _imports(path: Path, module: str) -> set[str]:
    out = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            else:
                out.add(node.module)
    return out


def _crossings() -> list[str]:
    bad = []
    for module, path in _modules():
        for scope, forbidden in FORBIDDEN.items():
            if module == scope or module.startswith(scope + "."):
                for name in _imports(path, module):
                    if any(name == f or name.startswith(f + ".") for f in forbidden):
                        bad.append(f"{path.relative_to(REPO)} imports {name} ({scope} may not)")
    return bad


def test_no_package_imports_across_the_house_plan():
    assert _crossings() == []


JOB_PACKAGES = ("tagger.job", "tagger.udfs", "tagger.models", "tagger.ops", "tagger.config")


def _job_modules():
    """(module, path, names imported at module level) of every module on the daily job's side."""
    for module, path in _modules():
        if any(module == p or module.startswith(p + ".") for p in JOB_PACKAGES):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            yield module, path, {n.module if isinstance(n, ast.ImportFrom) else a.name for n in tree.body
                                 if isinstance(n, (ast.Import, ast.ImportFrom)) for a in getattr(n, "names", [])}


@pytest.mark.parametrize("libraries, owner", [
    (("onnxruntime", "onnx"), "tagger.models.onnx_runtime"),
    (("faiss",), "tagger.models.knn"),
    (("peft",), "tagger.models.causal_lm"),
], ids=["onnxruntime", "faiss", "peft"])
def test_optional_libraries_are_imported_only_inside_their_owners_functions(libraries, owner):
    """The job's hot path imports an optional extra's library only when a head needs it: on the job's
    side (tagger.udfs, tagger.models, tagger.job, tagger.ops) only the owner module names the library
    (onnxruntime: a sidecar's "runtime": "onnx"; faiss: a knn head; peft: a causal-lm head's adapter),
    only inside functions, and no module imports the owner at module level (models/loading.py reaches
    it inside load_head). Breaks: `import onnxruntime` at the top of models/loading.py or
    udfs/tagging.py; `import faiss` at the top of models/knn.py or `from .knn import load_knn` at the
    top of models/loading.py; `import peft` at the top of models/causal_lm.py or `from .causal_lm
    import load_causal_lm` at the top of models/loading.py. tests/models/test_onnx_runtime.py,
    test_knn.py and test_causal_lm.py check the same at run time on loaded heads."""
    short = owner.rsplit(".", 1)[1]
    bad = []
    for module, path, top in _job_modules():
        for name in _imports(path, module):
            if (name or "").split(".")[0] in libraries and module != owner:
                bad.append(f"{path.relative_to(REPO)} imports {name}")
        for name in top:
            if name and (name.split(".")[0] in libraries or name == owner
                         or (name == short or name.endswith("." + short)) and module != owner):
                bad.append(f"{path.relative_to(REPO)} imports {name} at module level")
    assert bad == []


def test_no_generic_top_level_names_are_imported():
    """Only the installed names: `models.x`, `udfs.x` or `jobs.x` would pick up whatever else on
    the path is so named."""
    bad = [f"{path.relative_to(REPO)}: {name}" for module, path in _modules() for name in _imports(path, module)
           if name.split(".")[0] in ("models", "udfs", "jobs")]
    assert bad == []


@pytest.mark.parametrize("entry", ["tagger.cli.job_commands", "tagger.job.pipeline"])
def test_the_daily_job_does_not_load_the_workbench_or_the_benchmarks(entry):
    code = (f"import sys, {entry}; print(sorted(m for m in sys.modules if m.startswith(('tagger.measure', "
            f"'tagger.training', 'tagger.demo', 'tagger.cli.model_commands', 'tagger.cli.measure_commands', "
            f"'mlflow', 'cleanlab', 'tagger.lifecycle.registry', 'tagger.lifecycle.gate', 'tagger.cli.lifecycle_commands', "
            f"'gensim', 'faiss', 'peft', 'tagger.models.causal_lm', 'onnxruntime', 'sklearn', 'jieba'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_job_reaches_mlflow_only_through_a_models_uri():
    """The daily job's modules (tagger.job, tagger.udfs, tagger.models, tagger.ops, tagger.config) import
    mlflow and cleanlab nowhere, and of the lifecycle package only `uris` at module level: the registry
    is imported inside build_spec when a head path is models:/... (tagger/job/tag.py), so a config of
    directories never loads it. Break: `from tagger.lifecycle.registry import resolve_heads` at the
    top of tagger/job/tag.py, or `import mlflow` anywhere in tagger/job/."""
    bad = []
    for module, path, top in _job_modules():
        for name in _imports(path, module):
            if name and name.split(".")[0] in ("mlflow", "cleanlab"):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
        for name in top:
            if name and name.startswith("tagger.lifecycle") and name != "tagger.lifecycle.uris":
                bad.append(f"{path.relative_to(REPO)} imports {name} at module level")
    assert bad == []


def test_a_plain_checkout_imports_like_the_installed_package(tmp_path):
    """An Airflow worker or a GPU machine may put the repository on sys.path without installing it.
    Break: drop the __path__ line in tagger/__init__.py, and tagger.udfs / tagger.conf are not found
    (the DAG's pre-flight sensor then fails on import)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import importlib.resources as r, tagger.udfs, "
            "tagger.models, tagger.conf; print(tagger.udfs.__file__); "
            "print(r.files('tagger.conf').joinpath('tagger.yaml').is_file())")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(REPO)], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout.split()
    assert out == [str(REPO / "udfs" / "__init__.py"), "True"]


def test_every_package_folder_has_an_init_so_the_wheel_carries_it():
    """setuptools' find_packages skips a folder without __init__.py: an editable install still finds
    it (a namespace package), the built wheel does not. Break: delete tagger/job/__init__.py."""
    from setuptools import find_packages

    folders = {p.parent for root in ("tagger", "udfs", "models") for p in (REPO / root).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file()) == []
    assert {"tagger.job", "tagger.ops", "tagger.cli", "tagger.training", "tagger.measure"} <= set(
        find_packages(str(REPO), include=["tagger", "tagger.*"]))


def test_python_dash_m_tagger_cli_is_the_tagger_command():
    """scripts/scale_run.py and schedulers without the console script run `python -m tagger.cli`.
    Break: delete tagger/cli/__main__.py."""
    done = subprocess.run([sys.executable, "-m", "tagger.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "Commands:" in done.stdout and "publish" in done.stdout, done.stderr
