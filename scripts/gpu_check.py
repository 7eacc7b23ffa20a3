#!/usr/bin/env python3
"""GPU check of the job's tagging code, runnable from a bare checkout on a GPU machine:

    scripts/gpu_check.sh                 # or: python3 scripts/gpu_check.py [--items N] [--batch-sizes 16,64,256]

`Tagger.tag` (the cascade and heads on pandas batches, as the UDF runs it) with random-weight
BERT-base heads, fp32 against the job's bf16 autocast, model batch sizes 16/64/256: items/s, the
speed-up, the share of items whose tags are identical, the device and the torch/CUDA versions, as a
markdown table on stdout (progress on stderr). Fits in 8 minutes on a GPU (the item count is lowered
to fit a budget). Without a GPU it runs on the CPU with 200 items and small heads, and says so.

Needs Python >= 3.10 with torch, transformers (and its tokenizers, safetensors, pyyaml), numpy and
pandas. No pyspark, no Java, no installed `tagger`: this file maps the repository onto the
`tagger` package the way setup.py's package_dir does (udfs/ -> tagger.udfs, models/ ->
tagger.models, conf/ -> tagger.conf, ...) before anything of it is imported.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEEDED = ("torch", "transformers", "tokenizers", "safetensors", "yaml", "numpy", "pandas")


def use_repository_packages(repo: Path = REPO) -> None:
    """Make `import tagger...` load this checkout: `tagger` from repo/tagger, its subpackages from
    repo/tagger/<name> or, for the folders setup.py maps (udfs, models, jobs, sql, conf), from
    repo/<name>. Whatever `tagger` was imported before is dropped; the repository root is not put
    on sys.path (no top-level `models` or `udfs`). Raises FileNotFoundError if repo/tagger is missing."""
    init = repo / "tagger" / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"{init} not found: run this from a checkout of the project")
    for name in [m for m in sys.modules if m == "tagger" or m.startswith("tagger.")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("tagger", init,
                                                  submodule_search_locations=[str(repo / "tagger"), str(repo)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tagger"] = module
    spec.loader.exec_module(module)


def missing_modules() -> list[str]:
    """The third-party modules of NEEDED that cannot be found."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    """Check the environment, map the packages, run tagger.measure.gpu.main_check(argv). Returns its
    exit status, or 3 when a needed module is missing (named on stderr)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the heads are built here
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    lacking = missing_modules()
    if lacking:
        print(f"gpu_check: missing Python modules: {', '.join(lacking)} (pip install them; pyspark is not needed)",
              file=sys.stderr)
        return 3
    use_repository_packages()
    print(f"gpu_check: the tagger code of {REPO}", file=sys.stderr)
    from tagger.measure.gpu import main_check

    status = main_check(argv)
    if sys.modules.get("pyspark") is not None:  # the check's promise: this path never needs Spark
        print("gpu_check: pyspark was imported on a path that must not need it", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
