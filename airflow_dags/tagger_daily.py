"""Daily content tagging (Airflow 3.3): one run per day, each run tags one whole day.

Which date a run tags
---------------------
Schedule: `CronDataIntervalTimetable("0 0 * * *", timezone="UTC")`, not `"@daily"` (in Airflow 3
that is a CronTriggerTimetable whose `ds` is the day the run fires). A run covers the data interval
[D 00:00, D+1 00:00) UTC, is started once that day is over (at D+1 00:00 UTC), and has logical
date D. The date it tags is

    tag date = {{ ds }} = the run's logical date D  (= data_interval_start for scheduled and backfill runs)

so every kind of run is keyed by the day it tags: the scheduled run that fires on D+1 tags D (the
previous day), `airflow backfill create --dag-id tagger_daily --from-date A --to-date B` tags A..B
inclusive (as `tagger backfill --start A --end B` does outside Airflow), and a manual run or
`dag.test(logical_date=D)` tags D. `ds` rather than `data_interval_start` on purpose: Airflow 3 gives a
manual run the interval that *ends* at its logical date, so data_interval_start would be D-1 there.
Days are UTC days, like the job's `spark.sql.session.timeZone`.

Tasks: preflight >> tag_daily
- preflight: a sensor (reschedule mode, no worker slot held while waiting) that asks HiveServer2,
  with tagger/ops/preflight.py (the code behind `tagger preflight`), whether the day's pool partition
  exists and ASR/OCR/tag dimension are within the lag policy of conf/orchestration.yaml. If they are
  still missing `preflight.max_wait_hours` after the day ended, it fails (no retry) naming each missing
  partition. Unreachable HiveServer2: retried with backoff. Bad config or credentials: fails at once.
- tag_daily: SparkSubmitOperator running jobs/tag_daily.py --date {{ ds }} in the Airflow pool
  `tagger_item_tags` (create it with ONE slot): scheduled and backfill runs share it, so two dates
  never write into the output tables at the same time. (A backfill counts its own active runs apart
  from the DAG's max_active_runs=1; the pool is what serialises both.)

Configuration (no secrets in this file)
- Connection `tagger_spark` (type spark): master (yarn, k8s://https://host:port, local[2]) and
  extras deploy-mode, queue, namespace, principal/keytab.
- Connection `tagger_hiveserver2` (type hiveserver2): host, port, login, password, schema, extra
  {"auth_mechanism": "NONE" | "NOSASL" | "LDAP" | "KERBEROS", "kerberos_service_name": "hive"}.
  Without it the `hiveserver2` section of the orchestration config is used (password from the env).
- Variables (all optional): `tagger_job_config` (job YAML on the submitting host, default
  conf/tagger.yaml of the checkout), `tagger_orchestration_config` (default conf/orchestration.yaml),
  `tagger_spark_properties` (a Spark properties file: executor sizing, GPUs, spark.archives,
  spark.submit.pyFiles, metastore URI; `make dist` writes a template, see docs/orchestration.md).
- Deployment environment, read when this file is parsed: TAGGER_REPO (the project checkout on the
  workers, default: the parent of this folder) and TAGGER_SPARK_SUBMIT (the spark-submit to run,
  default `spark-submit` on PATH).
"""
from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, task

DAG_ID = "tagger_daily"
REPO = Path(os.environ.get("TAGGER_REPO") or Path(__file__).resolve().parent.parent)
SPARK_SUBMIT = os.environ.get("TAGGER_SPARK_SUBMIT", "spark-submit")
SPARK_CONN_ID = "tagger_spark"
HIVESERVER2_CONN_ID = "tagger_hiveserver2"
POOL = "tagger_item_tags"  # one slot: one writer into tagging.item_tags at a time
TAG_DATE = "{{ ds }}"
JOB_CONFIG = "{{ var.value.get('tagger_job_config', '%s') }}" % (REPO / "conf" / "tagger.yaml")
ORCHESTRATION_CONFIG = str(REPO / "conf" / "orchestration.yaml")
AUTH_ALIASES = {"PLAIN": "NONE", "GSSAPI": "KERBEROS"}  # the hive provider's names for the same modes

default_args = {
    "owner": "content-tagging",
    "depends_on_past": False,
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(hours=1),
}


def _project_importable() -> None:
    """tagger is installed on the workers (`pip install --no-deps dist/tagger-*.whl`) or this checkout is used."""
    try:
        import tagger.ops.preflight  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO))


def hiveserver2_settings(orch):
    """HiveServer2 settings from the Airflow Connection, else from the orchestration config."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from tagger.ops.hive_client import HiveServer2Settings

    try:
        conn = BaseHook.get_connection(HIVESERVER2_CONN_ID)
    except AirflowNotFoundException:
        return orch.hiveserver2_settings()
    extra = conn.extra_dejson
    auth = str(extra.get("auth_mechanism", "NONE")).upper()
    auth = AUTH_ALIASES.get(auth, auth)
    return HiveServer2Settings(
        host=conn.host or orch.hiveserver2.host, port=int(conn.port or 10000),
        username=conn.login or orch.hiveserver2.username, auth=auth,
        password=conn.password if auth == "LDAP" else None,
        kerberos_service_name=extra.get("kerberos_service_name", "hive") if auth == "KERBEROS" else None,
        database=conn.schema or "default", timeout_seconds=orch.hiveserver2.timeout_seconds)


with DAG(
    dag_id=DAG_ID,
    description="Tag the previous day's articles and videos into tagging.item_tags",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,  # history is filled with `airflow backfill create`, never by surprise
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=30),
    default_args=default_args,
    doc_md=__doc__,
    tags=["tagging", "spark"],
) as dag:

    @task.sensor(task_id="preflight", mode="reschedule", poke_interval=timedelta(minutes=15),
                 timeout=timedelta(hours=30), execution_timeout=timedelta(minutes=10), retries=5,
                 retry_delay=timedelta(minutes=2))
    def preflight():
        from airflow.sdk import PokeReturnValue, Variable, get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        _project_importable()
        from tagger.config import ConfigError
        from tagger.ops.hive_client import HiveServer2AuthError
        from tagger.ops.preflight import load_orchestration, run_preflight

        context = get_current_context()
        run_date = context.get("ds")
        if not run_date:
            raise AirflowFailException("This run has no logical date, so there is no day to tag. Trigger it "
                                       "with a logical date D (it tags D) or use `airflow backfill create`.")
        job_config = Variable.get("tagger_job_config", default=str(REPO / "conf" / "tagger.yaml"))
        orch_path = Variable.get("tagger_orchestration_config", default=ORCHESTRATION_CONFIG)
        try:
            orch = load_orchestration(orch_path)
            report = run_preflight(run_date, job_config, orch_path, hiveserver2=hiveserver2_settings(orch))
        except (ConfigError, HiveServer2AuthError) as exc:  # retrying cannot fix these
            raise AirflowFailException(f"pre-flight for {run_date} cannot run: {exc}") from None
        # HiveServer2Unreachable / HiveServer2QueryError propagate: the task is retried with backoff.
        print(report.format())
        if report.ready:
            return PokeReturnValue(is_done=True, xcom_value=json.loads(report.to_json()))
        # The tagged day ends at D+1 00:00 UTC (for manual runs too, whose data interval differs).
        deadline = pendulum.parse(run_date, tz="UTC").add(days=1) + timedelta(hours=orch.max_wait_hours)
        if pendulum.now("UTC") >= deadline:
            raise AirflowFailException(
                f"The inputs of {run_date} never arrived: still missing at {deadline.isoformat()}, "
                f"{orch.max_wait_hours:g} h after the day ended (preflight.max_wait_hours in {orch.source}): "
                f"{report.missing_summary()}. Once they have landed, clear this run to tag the day.")
        return PokeReturnValue(is_done=False)

    tag_daily = SparkSubmitOperator(
        task_id="tag_daily",
        conn_id=SPARK_CONN_ID,
        spark_binary=SPARK_SUBMIT,
        application=str(REPO / "jobs" / "tag_daily.py"),
        application_args=["--date", TAG_DATE, "--config", JOB_CONFIG],
        properties_file="{{ var.value.get('tagger_spark_properties', '') }}",
        name="tagger-daily-" + TAG_DATE,
        pool=POOL,
        pool_slots=1,
        execution_timeout=timedelta(hours=4),
    )

    preflight() >> tag_daily


if __name__ == "__main__":  # python airflow_dags/tagger_daily.py 2024-01-05: one local test run of that date
    dag.test(logical_date=pendulum.parse(sys.argv[1] if len(sys.argv) > 1 else "2024-01-05", tz="UTC"))
