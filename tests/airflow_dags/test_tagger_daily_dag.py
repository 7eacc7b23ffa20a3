"""The daily DAG in a real Airflow 3.3 (its own virtualenv, built here on first use): the DagBag loads,
schedule/tasks/templates are what the docstring promises, the job's exit codes become a final
failure or a retry (a real spark-submit subprocess through the real operator and hook), `airflow
backfill create` maps dates to runs one to one, and `dag.test()` runs the pre-flight against a Spark
Thrift Server and the real job through spark-submit (local mode, embedded warehouse), D's task and
then the re-tag of D-2, or fails clearly when the day never arrived.

Breaks these tests catch: mapping exit 6 to a plain AirflowException (a refused day retried for
an hour); dropping the job's message from the failure; retag_late_speech tagging D instead of D-2;
the re-tag running in backfill runs or with the Variable at 0.

The Airflow virtualenv is `.airflow-venv` at the repository root (gitignored), reused when its
marker matches AIRFLOW_REQUIREMENTS; the first build takes a few minutes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_config

pytestmark = pytest.mark.slow

AIRFLOW_VENV = REPO / ".airflow-venv"
AIRFLOW_REQUIREMENTS = ("apache-airflow==3.3.2", "apache-airflow-providers-apache-spark",
                        "apache-airflow-providers-apache-hive")
DAG_ID = "tagger_daily"
DAGS = REPO / "airflow_dags"
DAY = "2024-03-05"  # seeded below; a Tuesday, nothing special
LATE_DAY = "2024-03-03"  # DAY - 2: the run for DAY re-tags it (late ASR/OCR), seeded too
NEVER_ARRIVES = "2024-03-09"  # not seeded: its pool partition never lands
PROJECT_PYTHON = Path(sys.executable)  # the project's virtualenv: pyspark, torch, the tagger CLI

INSPECT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(sys.argv[1])
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
dag = bag.dags.get("tagger_daily")
if dag is not None:
    tt = dag.timetable
    out["timetable"] = {"type": type(tt).__name__, "expression": tt.expression, "timezone": str(tt.timezone)}
    out["dag"] = {"max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
                  "dagrun_timeout_h": dag.dagrun_timeout.total_seconds() / 3600}
    out["tasks"] = {}
    for t in dag.tasks:
        out["tasks"][t.task_id] = {
            "type": type(t).__name__, "upstream": sorted(t.upstream_task_ids),
            "downstream": sorted(t.downstream_task_ids), "retries": t.retries,
            "backoff": t.retry_exponential_backoff, "pool": t.pool, "pool_slots": t.pool_slots,
            "execution_timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None,
            "mode": getattr(t, "mode", None)}
    class TI:  # what {{ ti.xcom_pull(...) }} asks: the late-speech date the upstream task returned
        def xcom_pull(self, task_ids):
            return {"late_speech_date": "2024-01-03"}[task_ids]

    # Render the templated fields the way a run of logical date 2024-01-05 would (Variables unset).
    ctx = {"ds": "2024-01-05", "var": {"value": {}, "json": {}}, "ti": TI()}
    for task_id in ("tag_daily", "retag_late_speech"):
        spark = dag.get_task(task_id)
        out[task_id] = {
            "conn_id": spark._conn_id, "spark_binary": spark._spark_binary, "application": spark.application,
            "raw_args": spark.application_args, "template_fields": list(spark.template_fields),
            "args": spark.render_template(spark.application_args, ctx),
            "name": spark.render_template(spark.name, ctx),
            "properties_file": spark.render_template(spark.properties_file, ctx),
            "trigger_rule": getattr(spark.trigger_rule, "value", spark.trigger_rule)}
    out["trigger_rules"] = {t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in dag.tasks}
print("RESULT " + json.dumps(out))
"""

# Runs the DAG file's own operator and functions (imported as a module): the tag task's execute()
# against a fake spark-submit that prints what the job prints and exits with a given code.
EXIT_CODES = r"""
import copy, importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("tagger_daily_dag", sys.argv[1])
dag_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dag_module)
from airflow.sdk.exceptions import AirflowFailException

out = {"codes": {}, "late": []}
for code in sys.argv[2].split(","):
    task = copy.deepcopy(dag_module.dag.get_task("tag_daily"))
    task.application_args = ["--date", "2024-01-05", "--config", "job.yaml"]  # as rendered for that day
    os.environ["FAKE_EXIT"] = code
    try:
        task.execute({})
        out["codes"][code] = {"raised": None}
    except Exception as exc:
        out["codes"][code] = {"raised": type(exc).__name__, "final": isinstance(exc, AirflowFailException),
                              "message": str(exc)}
for args in (["2024-01-05", "2", "scheduled"], ["2024-03-01", 3, "manual"], ["2024-01-05", "0", "scheduled"],
             ["2024-01-05", "2", "backfill"], ["2024-01-05", "-1", "scheduled"], ["2024-01-05", "two", "scheduled"]):
    try:
        out["late"].append({"args": args, "date": dag_module.late_speech_date_for(*args)})
    except Exception as exc:
        out["late"].append({"args": args, "raised": type(exc).__name__, "message": str(exc)})
print("RESULT " + json.dumps(out))
"""

FAKE_SPARK_SUBMIT = """#!/bin/sh
# Prints what spark-submit prints around the tagger CLI's failure, and exits with $FAKE_EXIT.
echo "26/01/05 10:00:00 WARN Utils: Your hostname, vm, resolves to a loopback address"
if [ -f "$FAKE_DIR/$FAKE_EXIT.txt" ]; then cat "$FAKE_DIR/$FAKE_EXIT.txt" >&2; fi
echo "26/01/05 10:00:09 WARN ShutdownHookManager: deleting a directory" >&2
exit "$FAKE_EXIT"
"""

DAG_TEST = r"""
import json, sys
import pendulum
from airflow.dag_processing.dagbag import DagBag

dag = DagBag(sys.argv[1]).dags["tagger_daily"]
run = dag.test(logical_date=pendulum.parse(sys.argv[2], tz="UTC"))
print("RESULT " + json.dumps({"state": str(run.state), "ds": run.logical_date.strftime("%Y-%m-%d"),
                              "interval": [str(run.data_interval_start), str(run.data_interval_end)]}))
"""


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line in:\n{stdout[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _run(cmd, env, timeout=900, check=True, cwd=REPO):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{cmd}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def airflow_python() -> Path:
    """Python of the Airflow 3.3 virtualenv, built once (a few minutes) and reused while its marker matches."""
    python, marker = AIRFLOW_VENV / "bin" / "python", AIRFLOW_VENV / ".tagger-requirements"
    wanted = "\n".join(AIRFLOW_REQUIREMENTS)
    if python.exists() and marker.is_file() and marker.read_text() == wanted:
        return python
    _run([sys.executable, "-m", "venv", "--clear", AIRFLOW_VENV], dict(os.environ), timeout=300)
    # --no-compile: byte-compiling ~700 MB of packages costs more than compiling the few modules used.
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
          *AIRFLOW_REQUIREMENTS],
         dict(os.environ), timeout=1200)
    marker.write_text(wanted)
    return python


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, airflow_python) -> dict:
    """An AIRFLOW_HOME of our own (SQLite metadata DB, migrated), the repo's DAG folder, no examples."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYSPARK", "TAGGER"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(DAGS), AIRFLOW__LOGGING__LOGGING_LEVEL="INFO")
    _run([airflow_python.parent / "airflow", "db", "migrate"], env, timeout=300)
    return env


def test_dagbag_loads_with_schedule_tasks_and_templated_date(airflow_python, airflow_env):
    out = _result(_run([airflow_python, "-c", INSPECT, DAGS], airflow_env, timeout=300).stdout)

    assert out["import_errors"] == {}
    assert DAG_ID in out["dag_ids"]
    # Data-interval semantics: the run for day D fires at D+1 00:00 UTC and has logical date D.
    assert out["timetable"] == {"type": "CronDataIntervalTimetable", "expression": "0 0 * * *", "timezone": "UTC"}
    assert out["dag"]["max_active_runs"] == 1 and out["dag"]["catchup"] is False

    tasks = out["tasks"]
    assert set(tasks) == {"preflight", "tag_daily", "late_speech_date", "retag_late_speech", "fail_run_if_any_failed"}
    assert tasks["preflight"]["downstream"] == ["fail_run_if_any_failed", "tag_daily"]
    assert tasks["tag_daily"]["upstream"] == ["preflight"]
    # D-2 is re-tagged after D's task, whatever its outcome; a failure anywhere still fails the run
    assert tasks["late_speech_date"]["upstream"] == ["tag_daily"]
    assert tasks["retag_late_speech"]["upstream"] == ["late_speech_date"]
    assert tasks["fail_run_if_any_failed"]["upstream"] == ["preflight", "retag_late_speech", "tag_daily"]
    assert out["trigger_rules"]["late_speech_date"] == "all_done"
    assert out["trigger_rules"]["retag_late_speech"] == "all_success"
    assert out["trigger_rules"]["fail_run_if_any_failed"] == "one_failed"
    assert tasks["preflight"]["mode"] == "reschedule"  # waiting for data holds no worker slot
    for name in ("preflight", "tag_daily", "retag_late_speech"):
        t = tasks[name]
        assert t["retries"] >= 1 and t["backoff"] is True and t["execution_timeout_s"]
    for name in ("tag_daily", "retag_late_speech"):
        assert tasks[name]["type"] == "TaggerSparkSubmitOperator"
        assert tasks[name]["pool"] == "tagger_item_tags" and tasks[name]["pool_slots"] == 1
        assert tasks[name]["execution_timeout_s"] == 4 * 3600

    for name, date, app in (("tag_daily", "2024-01-05", "tagger-daily-2024-01-05"),
                            ("retag_late_speech", "2024-01-03", "tagger-retag-2024-01-03")):
        spark = out[name]
        assert spark["conn_id"] == "tagger_spark"
        assert spark["application"] == str(REPO / "jobs" / "tag_daily.py")
        assert {"application_args", "name", "properties_file"} <= set(spark["template_fields"])
        assert spark["args"] == ["--date", date, "--config", str(REPO / "conf" / "tagger.yaml")]
        assert spark["name"] == app
        assert spark["properties_file"] == ""  # no Variable: spark-submit gets no --properties-file
    assert out["tag_daily"]["raw_args"][:2] == ["--date", "{{ ds }}"]


def test_the_jobs_exit_codes_become_a_final_failure_or_a_retry(tmp_path, airflow_python, airflow_env):
    from tagger.job.pipeline import refusal_message

    audits = [dict(audit="volume", level="fail", status="fail", value=0.41, limit=[0.6, 2.0],
                   message="412 items selected = 0.41 x the trailing median 1,000 (allowed 0.6-2 x)")]
    refusal = refusal_message("2024-01-05", "2024-01-05-abc-0001", audits)
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    (fake_dir / "6.txt").write_text(f"Error: {refusal}\n", encoding="utf-8")
    (fake_dir / "4.txt").write_text("Error: pool ycrc_rc_eng.dws_all_reco_pool_a pt=2024-01-05 is missing\n",
                                    encoding="utf-8")
    (fake_dir / "3.txt").write_text("Error: conf/tagger.yaml: heads[0].path: no such directory\n", encoding="utf-8")
    spark_submit = fake_dir / "spark-submit"
    spark_submit.write_text(FAKE_SPARK_SUBMIT, encoding="utf-8")
    spark_submit.chmod(0o755)
    env = dict(airflow_env, TAGGER_SPARK_SUBMIT=str(spark_submit), FAKE_DIR=str(fake_dir),
               AIRFLOW_CONN_TAGGER_SPARK=json.dumps({"conn_type": "spark", "host": "local[2]"}))

    out = _result(_run([airflow_python, "-c", EXIT_CODES, DAGS / "tagger_daily.py", "0,1,2,3,4,5,6"], env,
                       timeout=300).stdout)
    codes = out["codes"]
    assert codes["0"] == {"raised": None}
    final = {c for c, r in codes.items() if r["raised"] and r["final"]}
    retried = {c for c, r in codes.items() if r["raised"] and not r["final"]}
    assert final == {"2", "3", "6"} and retried == {"1", "4", "5"}
    refused = codes["6"]
    assert refused["raised"] == "AirflowFailException"
    assert "tagging 2024-01-05 exited 6: a gate refused" in refused["message"]
    assert "Error: 2024-01-05: the audits refused version 2024-01-05-abc-0001" in refused["message"]
    assert "volume: 412 items selected = 0.41 x the trailing median" in refused["message"]
    assert "tagger publish --date 2024-01-05 --version 2024-01-05-abc-0001" in refused["message"]
    assert "WARN" not in refused["message"]  # Spark's own log lines are not the job's message
    assert codes["4"]["raised"] == "AirflowException" and "pt=2024-01-05 is missing" in codes["4"]["message"]
    assert "heads[0].path" in codes["3"]["message"]

    late = {json.dumps(r["args"]): r for r in out["late"]}
    assert late['["2024-01-05", "2", "scheduled"]']["date"] == "2024-01-03"
    assert late['["2024-03-01", 3, "manual"]']["date"] == "2024-02-27"
    assert late['["2024-01-05", "0", "scheduled"]']["raised"] == "AirflowSkipException"
    assert late['["2024-01-05", "2", "backfill"]']["raised"] == "AirflowSkipException"
    for bad in ('["2024-01-05", "-1", "scheduled"]', '["2024-01-05", "two", "scheduled"]'):
        assert late[bad]["raised"] == "AirflowFailException" and "tagger_late_speech_days" in late[bad]["message"]


def test_airflow_backfill_create_makes_one_run_per_date_each_tagging_its_own_day(airflow_python, airflow_env):
    airflow = airflow_python.parent / "airflow"
    _run([airflow, "dags", "reserialize"], airflow_env, timeout=300)
    done = _run([airflow, "backfill", "create", "--dag-id", DAG_ID, "--from-date", "2024-01-03",
                 "--to-date", "2024-01-05", "--max-active-runs", "1", "--dry-run"], airflow_env, timeout=300)

    logical_dates = re.findall(r"^\|\s*(\d{4}-\d{2}-\d{2}) 00:00:00\+00:00\s*\|", done.stdout, re.MULTILINE)
    # Inclusive range, one run per day; each run's {{ ds }} (its tag date) is its logical date.
    assert logical_dates == ["2024-01-03", "2024-01-04", "2024-01-05"], done.stdout[-3000:]
    assert "max_active_runs = 1" in done.stdout


def test_dag_test_runs_preflight_and_the_job_or_fails_clearly_when_the_day_never_arrives(
        tmp_path, tagger_home, trained, airflow_python, airflow_env):
    from scripts.thrift_server import ThriftServer

    home = tmp_path / "home"
    shutil.copytree(tagger_home / "models", home / "models")  # small models trained by the session fixture
    config = write_config(tmp_path)
    bin_dir = PROJECT_PYTHON.parent
    project_env = dict(os.environ, TAGGER_HOME=str(home), PYSPARK_PYTHON=str(PROJECT_PYTHON),
                       PYSPARK_DRIVER_PYTHON=str(PROJECT_PYTHON))
    _run([bin_dir / "tagger", "--config", config, "seed", "--items", "900", "--start", LATE_DAY, "--days", "3"],
         project_env, timeout=600)

    # HiveServer2 for the pre-flight. Derby lets one process open a metastore, and the job needs its
    # own, so the server reads a copy of the seeded metastore (same tables, partitions and files):
    # on a cluster both would talk to the one shared metastore.
    hs2_home = tmp_path / "hs2"
    shutil.copytree(home / "metastore_db", hs2_home / "metastore_db")
    with ThriftServer(hs2_home) as server:
        env = dict(airflow_env,
                   AIRFLOW_CONN_TAGGER_SPARK=json.dumps({"conn_type": "spark", "host": "local[2]"}),
                   AIRFLOW_CONN_TAGGER_HIVESERVER2=json.dumps({
                       "conn_type": "hiveserver2", "host": "127.0.0.1", "port": server.port, "login": "etl",
                       "schema": "default", "extra": {"auth_mechanism": "NONE"}}),
                   AIRFLOW_VAR_TAGGER_JOB_CONFIG=str(config),
                   TAGGER_SPARK_SUBMIT=str(bin_dir / "spark-submit"),
                   TAGGER_HOME=str(home), PYSPARK_PYTHON=str(PROJECT_PYTHON),
                   PYSPARK_DRIVER_PYTHON=str(PROJECT_PYTHON), HF_HUB_OFFLINE="1")

        done = _run([airflow_python, "-c", DAG_TEST, DAGS, DAY], env, timeout=1500)
        run = _result(done.stdout)
        log = done.stdout + done.stderr
        assert run["state"] == "success", log[-6000:]
        assert run["ds"] == DAY
        assert f"pre-flight {DAY} on HiveServer2 127.0.0.1:{server.port}" in log
        assert "READY: every required input is present." in log
        commands = [line for line in log.splitlines() if "Spark-Submit cmd:" in line]
        assert len(commands) == 2, commands  # D, then the late-speech re-tag of D-2
        assert all(f"{bin_dir / 'spark-submit'} --master local[2]" in c for c in commands)
        assert f"jobs/tag_daily.py --date {DAY} --config {config}" in commands[0]
        assert f"jobs/tag_daily.py --date {LATE_DAY} --config {config}" in commands[1]
        selected = int(re.search(r"items selected\s+([\d,]+)", log).group(1).replace(",", ""))

        # the day that never arrives, with the re-tag switched off (its D-2 was not seeded either)
        failed = _run([airflow_python, "-c", DAG_TEST, DAGS, NEVER_ARRIVES],
                      dict(env, AIRFLOW_VAR_TAGGER_LATE_SPEECH_DAYS="0"), timeout=600)
        flog = failed.stdout + failed.stderr
        assert _result(failed.stdout)["state"] == "failed", flog[-6000:]
        assert f"The inputs of {NEVER_ARRIVES} never arrived" in flog
        assert f"pool ycrc_rc_eng.dws_all_reco_pool_a pt={NEVER_ARRIVES}: MISSING" in flog
        assert "Spark-Submit cmd:" not in flog  # the job never started

    # The day's published version is in the job's warehouse: one row per selected item, nothing else;
    # D-2 has its version too (tagged by the re-tag task).
    import pyarrow.dataset as ds

    versions = home / "warehouse" / "tagging.db" / "item_tags" / "_versions"
    (part,) = (versions / f"dt={DAY}").iterdir()  # one version staged and published
    table = ds.dataset(part, format="parquet").to_table(columns=["itemid"])
    itemids = table.column("itemid").to_pylist()
    assert selected > 250 and len(itemids) == selected == len(set(itemids))
    assert len(list((versions / f"dt={LATE_DAY}").iterdir())) == 1
    assert not (versions / f"dt={NEVER_ARRIVES}").exists()
