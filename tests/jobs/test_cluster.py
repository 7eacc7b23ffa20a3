"""The job on a real Spark standalone cluster (a master and two one-core workers started from the pip
pyspark, tests/conftest.py) against a shared PostgreSQL metastore, built the way docs/cluster.md says:
`make dist-code` makes the project's code archive for --py-files, the executors' Python is
`./environment/bin/python` from a venv-pack archive shipped with --archives ...#environment, and the
driver gets the JDBC driver with --driver-class-path (client mode). Its rows must equal those of a
local[2] run of the same date on the same catalog, with the same run id although the master, the
executor sizing and the way the metastore password arrives differ; its metrics must show the models
loaded once per Python worker, the worker daemon (torch imported before fork) on the executors, and
each worker's Spark GPU address with the CPU fallback (the workers announce GPUs 0 and 1; there is
no CUDA here).

The local[2] reference run is a one-pass `tagger backfill` over two dates (tagger/job/backfill.py;
tests/tagger/job/test_backfill.py compares it with per-date runs).

Trade-off (docs/cluster.md): the real `make dist-env` installs torch, pyspark and transformers
into a fresh virtualenv and packs ~1.5 GB, minutes on two cores, so here the packed environment is
an empty virtualenv (venv-pack, the same tool) and the executors find the third-party packages through
spark.executorEnv.PYTHONPATH pointing at the project virtualenv's site-packages. That path is not a
site dir, so its .pth files (the editable install of this checkout) are not processed: the
project's own code can only come from the --py-files archive.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import yaml

from conftest import REPO, database_config, warehouse_rows

pytestmark = pytest.mark.slow
D1, D2 = "2024-03-11", "2024-03-12"
PY = Path(sys.executable)
BIN = PY.parent
COLUMNS = ["itemid", "dtype", "gate_score", "tag_ids", "model_version", "rules_version", "run_id", "dt"]
METRICS = ["dt", "run_id", "started_at", "seconds", "items_tagged", "model_loads", "python_workers", "version",
           "worker_devices"]



def _run(cmd, env, cwd=REPO, timeout=900) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def _version(home: Path, table: str, dt: str, version: str, columns: list[str]) -> list[dict]:
    """Rows of one staged version of a date (tagger/job/publish.py: <table>/_versions/dt=D/<version>),
    straight from its Parquet files."""
    import pyarrow.dataset as ds

    path = home / "warehouse" / "tagging.db" / table / "_versions" / f"dt={dt}" / version
    rows = ds.dataset(path, format="parquet").to_table(columns=[c for c in columns if c != "dt"]).to_pylist()
    return [{**r, "dt": dt} for r in rows]


def _packed_executor_env(tmp_path: Path, env: dict) -> Path:
    """A virtualenv packed by venv-pack for spark.archives (thin: see the module docstring)."""
    venv = tmp_path / "executor-env"
    _run([PY, "-m", "venv", "--without-pip", venv], env)
    tools = tmp_path / "venv-pack"
    _run([PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", tools, "venv-pack"],
         env, timeout=300)
    archive = tmp_path / "executor-env.tar.gz"
    _run([PY, "-m", "venv_pack", "--prefix", venv, "--output", archive], dict(env, PYTHONPATH=str(tools)))
    return archive


def test_standalone_cluster_run_with_dist_artifacts_matches_local_run(tmp_path, tagger_home, trained, cfg,
                                                                      pg_metastore, standalone_cluster):
    home = tmp_path / "home"
    shutil.copytree(tagger_home / "models", home / "models")  # the small models trained by the session fixture
    config = database_config(tmp_path, pg_metastore, "cluster_test")
    env = dict(os.environ, TAGGER_HOME=str(home), PYSPARK_PYTHON=str(PY), PYSPARK_DRIVER_PYTHON=str(PY),
               HF_HUB_OFFLINE="1")
    tagger = [BIN / "tagger", "--config", config]
    _run([*tagger, "seed", "--items", "400", "--start", D1, "--days", "2"], env)

    # Reference: local[2], the whole range with a one-pass `tagger backfill`.
    log = _run([*tagger, "backfill", "--start", D1, "--end", D2], env)
    assert "pass 1/1: 2 date(s)" in log and f"run {D1}" in log and f"run {D2}" in log, log[-3000:]
    local_metrics = sorted(warehouse_rows(home, "item_tags_run_metrics", METRICS), key=lambda r: r["dt"])
    local_rows = sorted(_version(home, "item_tags", D2, local_metrics[1]["version"], COLUMNS), key=lambda r: r["itemid"])
    local = {"rows": local_rows, "metrics": local_metrics}
    assert len(local["rows"]) > 150
    first, second = local["metrics"]
    assert (first["dt"], second["dt"]) == (D1, D2)

    # What `make dist` builds: the project's code for --py-files, and a packed environment.
    dist = tmp_path / "dist"
    _run(["make", "-s", "dist-code", f"DIST_DIR={dist}"], env)
    code = dist / "tagger-0.1.0.zip"
    assert code.is_file() and (dist / "spark-cluster.properties").is_file()
    archive = _packed_executor_env(tmp_path, env)
    site_packages = sysconfig.get_paths()["purelib"]
    # The executors' interpreter sees the dependencies but not this checkout's code.
    probe = dict(env, PYTHONPATH=site_packages)
    unpacked = tmp_path / "probe"
    shutil.unpack_archive(archive, unpacked)
    check = subprocess.run([unpacked / "bin" / "python", "-c", "import torch, pandas, pyarrow\nimport udfs"],
                           cwd=tmp_path, env=probe, capture_output=True, text=True)
    assert "No module named 'udfs'" in check.stderr, check.stderr

    # The cluster's copy of the config: another master and executor sizing, the password from the
    # environment instead of a file. None of that may change the run id.
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["spark"]["master"] = standalone_cluster.master_url
    raw["spark"]["conf"]["spark.executor.memory"] = "1500m"
    db = raw["spark"]["metastore_db"]
    db["password_env"] = "CLUSTER_METASTORE_PASSWORD"
    del db["password_file"]
    cluster_config = tmp_path / "cluster" / "tagger.yaml"
    cluster_config.parent.mkdir()
    cluster_config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    cluster_env = {k: v for k, v in env.items() if k != "PYSPARK_PYTHON"}
    cluster_env["CLUSTER_METASTORE_PASSWORD"] = pg_metastore.password()
    submitted = _run([
        BIN / "spark-submit", "--master", standalone_cluster.master_url, "--deploy-mode", "client",
        "--driver-class-path", db["driver_jar"] if "driver_jar" in db else "/usr/share/java/postgresql.jar",
        "--py-files", code, "--archives", f"{archive}#environment",
        "--conf", "spark.pyspark.python=./environment/bin/python",
        "--conf", f"spark.pyspark.driver.python={PY}",
        # the code archive first: the worker daemon imports tagger.udfs.worker_daemon from it
        "--conf", f"spark.executorEnv.PYTHONPATH={code.name}:{site_packages}",
        "--conf", "spark.python.daemon.module=tagger.udfs.worker_daemon",
        "--conf", "spark.executor.resource.gpu.amount=2",
        "--conf", f"spark.executor.resource.gpu.discoveryScript={standalone_cluster.gpu_discovery_script}",
        "--conf", "spark.task.resource.gpu.amount=1",
        "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",  # both executors before the first task
        "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=300s",
        REPO / "jobs" / "tag_daily.py", "--date", D2, "--config", cluster_config],
        cluster_env, cwd=tmp_path, timeout=900)
    remote_metrics = sorted(warehouse_rows(home, "item_tags_run_metrics", METRICS, D2), key=lambda r: r["started_at"])
    # the cluster run's version: the same as local[2]'s when its rows are identical (nothing new is
    # staged), else a version of its own, compared below with the 4-decimal tolerance
    remote = {"rows": sorted(_version(home, "item_tags", D2, remote_metrics[-1]["version"], COLUMNS),
                             key=lambda r: r["itemid"]), "metrics": remote_metrics}

    # Same items, tags, versions and run id; scores equal up to the 4-decimal rounding of the UDF
    # (Arrow batches, hence padding widths, can differ between the two runs).
    assert [r["itemid"] for r in remote["rows"]] == [r["itemid"] for r in local["rows"]]
    exact = [c for c in COLUMNS if c != "gate_score"]
    differing = [(a, b) for a, b in zip(local["rows"], remote["rows"])
                 if any(a[c] != b[c] for c in exact) or abs((a["gate_score"] or 0) - (b["gate_score"] or 0)) > 2e-4]
    assert not differing, differing[:5]
    runs = remote["metrics"]
    assert len(runs) == 2 and runs[0]["run_id"] == runs[1]["run_id"] == local["metrics"][1]["run_id"]
    cluster_run = runs[-1]
    assert cluster_run["items_tagged"] == len(local["rows"])
    # Models are loaded once per Python worker, not per Arrow batch: every head once in every worker.
    heads = len(cfg.heads)
    assert cluster_run["python_workers"] >= 2, cluster_run  # two executor JVMs, each its own Python workers
    assert cluster_run["model_loads"] == heads * cluster_run["python_workers"], cluster_run
    # Each Python worker's device: Spark assigned it GPU 0 or 1; torch has no CUDA here -> CPU, said once.
    devices = cluster_run["worker_devices"]
    assert len(devices) == cluster_run["python_workers"], devices
    for device in dict(devices).values():
        assert device in {f"cpu (spark gpu {a}; no CUDA in this Python: tagging on CPU)" for a in "01"}, devices
    assert "devices: cpu (spark gpu " in submitted
    # The local run took no GPU: no resources were scheduled there.
    assert set(dict(local["metrics"][1]["worker_devices"]).values()) == {"cpu"}
