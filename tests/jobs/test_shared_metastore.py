"""catalog: database — one Hive metastore in PostgreSQL shared by every process (docs/cluster.md):
the job and a Thrift Server (pre-flight over PyHive) on the catalog at once; two dates in two
processes at once; a second run of a date refused (exit 5) by the run lock across real processes;
and the metastore password never on a command line, in the output or in the metrics.

The PostgreSQL server is the session's (tests/conftest.py, pg_metastore); this module has its own
database in it. Every run here is a `tagger` subprocess: the pytest process already holds a Spark
session on the embedded catalog, and one process has one SparkSession.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import database_config, load_script, warehouse_rows

pytestmark = pytest.mark.slow
D1, D2, D3 = "2024-04-01", "2024-04-02", "2024-04-03"
BIN = Path(sys.executable).parent


def _tagger(shared, *args: str, env: dict | None = None) -> list[str]:
    return [str(BIN / "tagger"), "--config", str(shared.config), *args]


def _start(shared, *args: str, **env) -> subprocess.Popen:
    return subprocess.Popen(_tagger(shared, *args), env=dict(shared.env, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _metrics(home: Path) -> list[dict]:
    return warehouse_rows(home, "item_tags_run_metrics", ["dt", "run_id", "started_at", "seconds", "outcome"])


def _command_lines_holding(secret: str) -> list[str]:
    """Command lines of this machine's processes that contain `secret`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if secret in text:
            found.append(text[:200])
    return found


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tagger_home, trained, pg_metastore):
    """A TAGGER_HOME with the session's small models and three seeded days, on a database of its own."""
    base = tmp_path_factory.mktemp("shared")
    home = base / "home"
    shutil.copytree(tagger_home / "models", home / "models")
    config = database_config(base, pg_metastore, "shared_test")
    env = dict(os.environ, TAGGER_HOME=str(home), PYSPARK_PYTHON=sys.executable, HF_HUB_OFFLINE="1")
    done = subprocess.run([str(BIN / "tagger"), "--config", str(config), "seed", "--items", "300", "--start", D1,
                           "--days", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return SimpleNamespace(home=home, config=config, env=env, secret=pg_metastore.password())


def test_the_job_and_a_thrift_server_share_the_catalog(shared, tmp_path):
    ThriftServer = load_script("thrift_server").ThriftServer
    with ThriftServer(tmp_path / "thrift", config=str(shared.config)) as server:
        job = _start(shared, "run", "--date", D1)
        leaked = []
        orchestration = tmp_path / "orchestration.yaml"
        orchestration.write_text(yaml.safe_dump({
            "hiveserver2": {"host": "127.0.0.1", "port": server.port, "username": "etl", "auth": "NONE",
                            "timeout_seconds": 30},
            "preflight": {"inputs": {"pool": {"max_lag_days": 0}, "asr": {"max_lag_days": 2},
                                     "ocr": {"max_lag_days": 2}, "tag_dim": {"max_lag_days": 7}}}}))
        # pre-flight over PyHive while the job runs: both hold the metastore at once
        preflight = subprocess.run(_tagger(shared, "preflight", "--date", D1, "--orchestration", str(orchestration)),
                                   env=shared.env, capture_output=True, text=True, timeout=300)
        while job.poll() is None:
            leaked += _command_lines_holding(shared.secret)
            time.sleep(1)
        code, output = _finish(job)
        assert preflight.returncode == 0, preflight.stdout + preflight.stderr
        assert code == 0, output[-3000:]
        # the server sees the partition the job just published
        from tagger.ops.hive_client import HiveClient, HiveServer2Settings

        with HiveClient.connect(HiveServer2Settings("127.0.0.1", server.port, "etl", timeout_seconds=60)) as client:
            partitions = [row[0] for row in client.query("SHOW PARTITIONS tagging.item_tags")]
        assert f"dt={D1}" in partitions
    # the password came from its file: never on a command line, in the output or in the metrics
    assert not leaked, leaked
    assert shared.secret not in output
    assert shared.secret not in str(_metrics(shared.home))


def test_two_dates_at_once_and_a_second_run_of_a_date_refused(shared):
    lock = shared.home / "locks" / "tagging.item_tags" / f"dt={D2}.lock"
    first = _start(shared, "run", "--date", D2, TAGGER_FAILPOINT="write_stall_seconds:20")  # holds its lock longer
    other_date = _start(shared, "run", "--date", D3)
    deadline = time.monotonic() + 600
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lock.exists(), _finish(first)[1][-3000:]
    second = subprocess.run(_tagger(shared, "run", "--date", D2), env=shared.env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 5, second.stdout + second.stderr
    assert f"Another run is writing tagging.item_tags dt={D2}: pid {first.pid}" in second.stderr
    code_first, out_first = _finish(first)
    code_other, out_other = _finish(other_date)
    assert code_first == 0, out_first[-3000:]
    assert code_other == 0, out_other[-3000:]
    # the two dates ran at the same time (Derby would have refused the second process)
    runs = {r["dt"]: r for r in _metrics(shared.home) if r["dt"] in (D2, D3)}
    start = {dt: datetime.fromisoformat(r["started_at"]).timestamp() for dt, r in runs.items()}
    assert start[D3] < start[D2] + runs[D2]["seconds"] and start[D2] < start[D3] + runs[D3]["seconds"], runs
    assert {r["outcome"] for r in runs.values()} == {"passed"}


def test_each_catalog_problem_is_one_line_and_exit_3(shared, pg_metastore, tmp_path):
    raw = yaml.safe_load(shared.config.read_text(encoding="utf-8"))
    db = raw["spark"]["metastore_db"]

    def attempt(name: str, edit, env=None, submit=False) -> str:
        changed = yaml.safe_load(yaml.safe_dump(raw))
        edit(changed["spark"]["metastore_db"])
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(changed, allow_unicode=True), encoding="utf-8")
        if submit:  # spark-submit without --driver-class-path: the JVM runs before the config is read
            script = tmp_path / "show.py"
            script.write_text(f"from tagger.cli import main\nmain(['--config', '{path}', 'sql', 'SHOW DATABASES'])\n")
            cmd = [str(BIN / "spark-submit"), "--master", "local[1]", str(script)]
        else:
            cmd = [str(BIN / "tagger"), "--config", str(path), "sql", "SHOW DATABASES"]
        done = subprocess.run(cmd, env=dict(shared.env, **(env or {})), capture_output=True, text=True, timeout=300)
        # spark-submit merges the Python driver's stderr into its stdout: read both
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error:")]
        assert done.returncode == 3 and len(errors) == 1, done.stdout[-2000:] + done.stderr[-3000:]
        # no Python traceback, no Java stack trace (DataNucleus' thousands of lines start with one)
        assert not any(word in done.stdout + done.stderr for word in ("Traceback", "\tat ", "Exception")), \
            done.stdout[-2000:] + done.stderr[-3000:]
        assert shared.secret not in done.stdout + done.stderr
        return errors[0]

    assert "export NO_SUCH_VARIABLE" in attempt(
        "no_password", lambda m: (m.pop("password_file"), m.update(password_env="NO_SUCH_VARIABLE")))
    assert "password authentication failed" in attempt(
        "wrong_password", lambda m: (m.pop("password_file"), m.update(password_env="WRONG_PW")), {"WRONG_PW": "nope"})
    pg_metastore._psql("CREATE DATABASE empty_catalog OWNER hive")
    assert "has no Hive metastore schema" in attempt(
        "empty", lambda m: m.update(url=db["url"].rsplit("/", 1)[0] + "/empty_catalog"))
    assert "pass --driver-class-path /usr/share/java/postgresql.jar" in attempt("submit", lambda m: None, submit=True)
