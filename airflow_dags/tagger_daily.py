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

Tasks: preflight >> tag_daily >> late_speech_date >> retag_late_speech, and fail_run_if_any_failed
- preflight: a sensor (reschedule mode, no worker slot held while waiting) that asks HiveServer2,
  with tagger/ops/preflight.py (the code behind `tagger preflight`), whether the day's pool partition
  exists and ASR/OCR/tag dimension are within the lag policy of conf/orchestration.yaml. If they are
  still missing `preflight.max_wait_hours` after the day ended, it fails (no retry) naming each missing
  partition. Unreachable HiveServer2: retried with backoff. Bad config or credentials: fails at once.
- tag_daily: jobs/tag_daily.py --date {{ ds }} through spark-submit (TaggerSparkSubmitOperator: the
  provider's SparkSubmitOperator, same connection, templates and on_kill, plus the job's exit codes)
  in the Airflow pool `tagger_item_tags` (create it with ONE slot): scheduled and backfill runs share
  it, so two dates never write into the output tables at the same time. (A backfill counts its own
  active runs apart from the DAG's max_active_runs=1; the pool is what serialises both.)
  The job's exit code decides what Airflow does (JOB_EXIT_CODES):
      0 done; 2 bad usage, 3 bad configuration or model artifact, 6 the audits refused the day:
      the task fails at once, NOT retried, with the job's own message (a retry cannot help: fix
      it, or review the refused day and `tagger publish` it); 4 an input is missing, 5 the date or
      the metastore is locked: retried with backoff; 1 or anything else: retried.
- late_speech_date, retag_late_speech: ASR and OCR of a video can land up to two days after it, so
  the run for D also re-tags D-N (Variable `tagger_late_speech_days`, default 2; 0 switches it
  off), after D's task whatever its outcome (D-N's inputs do not depend on D's). The job decides
  what is published: an identical rerun stages nothing and publishes nothing; a changed one is
  audited and published only if it passes (else exit 6, as above). Skipped in backfill runs (their
  speech has landed, and D-N may lie outside the backfill's range).
- fail_run_if_any_failed: with the re-tag running after a failed tag_daily, the re-tag would be the
  run's only leaf and its success would mark the run successful; this task fails the run when any
  other task failed (Airflow's "watcher" pattern) and is skipped otherwise.

Configuration (no secrets in this file)
- Connection `tagger_spark` (type spark): master (yarn, k8s://https://host:port, local[2]) and
  extras deploy-mode, queue, namespace, principal/keytab.
- Connection `tagger_hiveserver2` (type hiveserver2): host, port, login, password, schema, extra
  {"auth_mechanism": "NONE" | "NOSASL" | "LDAP" | "KERBEROS", "kerberos_service_name": "hive"}.
  Without it the `hiveserver2` section of the orchestration config is used (password from the env).
- Variables (all optional): `tagger_job_config` (job YAML on the submitting host, default
  conf/tagger.yaml of the checkout), `tagger_orchestration_config` (default conf/orchestration.yaml),
  `tagger_spark_properties` (a Spark properties file: executor sizing, GPUs, spark.archives,
  spark.submit.pyFiles, metastore URI; `make dist` writes a template, see docs/orchestration.md),
  `tagger_late_speech_days` (days back the late-speech re-tag goes, default 2, 0 = off).
- Deployment environment, read when this file is parsed: TAGGER_REPO (the project checkout on the
  workers, default: the parent of this folder) and TAGGER_SPARK_SUBMIT (the spark-submit to run,
  default `spark-submit` on PATH).
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections import deque
from datetime import date, timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, TriggerRule, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

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
LATE_SPEECH_DAYS_VARIABLE, LATE_SPEECH_DAYS_DEFAULT = "tagger_late_speech_days", 2
RETAG_DATE = "{{ ti.xcom_pull(task_ids='late_speech_date') }}"
# The job's exit codes (tagger/cli/__init__.py) -> (what happened, retry?). Anything else: retried.
JOB_EXIT_CODES = {
    2: ("bad usage (nothing ran)", False),
    3: ("bad configuration or model artifact: fix it, then clear this task", False),
    4: ("an input is missing (the day's pool partition has not landed)", True),
    5: ("another run holds the table and date, or the metastore is in use", True),
    6: ("a gate refused: the audits refused the staged version and nothing was published (readers still "
        "see the previous version). Review it (`tagger history --date D`, `tagger report`), then "
        "`tagger publish --date D --version V --reason ...`, or fix the cause and clear this task", False),
}
SPARK_LOG_LINE = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} [A-Z]+ ")  # log4j: 24/01/05 10:00:00 WARN ...

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


def job_message(lines) -> str:
    """The job's own error message in spark-submit's output: from the last line starting 'Error: '
    (what the tagger CLI prints before exiting non-zero) to the end, Spark's log4j lines left out;
    without such a line, the last 15 lines that are not Spark log lines. '' for no output."""
    lines = [line.rstrip("\n") for line in lines]
    starts = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    block = lines[starts[-1]:] if starts else lines
    block = [line for line in block if line.strip() and not SPARK_LOG_LINE.match(line)]
    return "\n".join(block if starts else block[-15:])


def job_failure(code: int | None, tag_date: str, lines) -> Exception:
    """The exception a non-zero exit of the job becomes: AirflowFailException (the task fails, no
    retry) for the exit codes JOB_EXIT_CODES marks final (2, 3, 6), else AirflowException (retried
    per the task's retries). The message names the date, the code, what it means and the job's own
    message (job_message of spark-submit's output `lines`)."""
    meaning, retry = JOB_EXIT_CODES.get(code, ("failed", True))
    said = job_message(lines)
    text = f"tagging {tag_date} exited {code}: {meaning}." + (f"\nThe job said:\n{said}" if said else "")
    if retry:
        return AirflowException(text + "\nRetried with backoff.")
    return AirflowFailException(text + "\nNot retried: a retry cannot change this outcome.")


class TaggerSparkSubmitOperator(SparkSubmitOperator):
    """The provider's SparkSubmitOperator (same connection, templated fields, pool, on_kill) that
    turns the job's exit code into the right kind of failure (job_failure): no retry for a refused
    day, a bad config or bad usage; retries for a missing input or a lock.

    The provider raises one AirflowException for any non-zero exit; the exit code and the job's
    lines are read from its hook, whose spark-submit output is kept here as it is logged
    (`submit_output`, the last OUTPUT_LINES lines). Relies on the hook's `_process_spark_submit_log` and
    `_submit_sp` (apache-airflow-providers-apache-spark; tests/airflow_dags/ runs a real
    subprocess through them): if either is missing, the provider's own exception is raised as
    before (retried)."""
    OUTPUT_LINES = 400

    def _get_hook(self):
        hook = super()._get_hook()
        self.submit_output: deque[str] = deque(maxlen=self.OUTPUT_LINES)
        process = getattr(hook, "_process_spark_submit_log", None)
        if process is not None:
            def kept(lines):
                for line in lines:
                    self.submit_output.append(line)
                    yield line

            hook._process_spark_submit_log = lambda lines: process(kept(lines))
        return hook

    def execute(self, context):
        """Run spark-submit as the provider does; on a non-zero exit raise job_failure's exception
        (AirflowFailException: no retry; AirflowException: retried). Returns what the provider's
        execute returns."""
        try:
            return super().execute(context)
        except AirflowException as exc:
            process = getattr(self._hook, "_submit_sp", None)
            code = getattr(process, "returncode", None)
            if code in (None, 0) or isinstance(exc, AirflowFailException):
                raise
            args = list(self.application_args or [])
            tag_date = args[args.index("--date") + 1] if "--date" in args[:-1] else "?"
            raise job_failure(code, tag_date, getattr(self, "submit_output", [])) from exc


def late_speech_date_for(ds: str, days, run_type: str) -> str:
    """The date the late-speech re-tag of the run for `ds` tags: ds minus `days` (an int or its
    text, from the Variable). Raises AirflowSkipException when days is 0 (switched off) or the run
    is a backfill, AirflowFailException when days is not a whole number >= 0."""
    try:
        n = int(str(days).strip())
    except ValueError:
        n = -1
    if n < 0:
        raise AirflowFailException(f"Variable {LATE_SPEECH_DAYS_VARIABLE} is {days!r}: it must be a whole number of "
                                   f"days >= 0 (0 switches the late-speech re-tag off).")
    if n == 0:
        raise AirflowSkipException(f"late-speech re-tag switched off ({LATE_SPEECH_DAYS_VARIABLE} = 0)")
    if "backfill" in str(run_type).lower():
        raise AirflowSkipException("a backfill run: its days' speech has landed, and re-tagging earlier days "
                                   "would reach outside the backfill's range")
    return (date.fromisoformat(ds) - timedelta(days=n)).isoformat()


def tag_task(task_id: str, tag_date: str, name: str) -> TaggerSparkSubmitOperator:
    """jobs/tag_daily.py --date `tag_date` (a template) --config <job config> through spark-submit,
    in the one-slot pool, 4 h at most; `name` is the Spark application's name (templated). Returns
    the operator."""
    return TaggerSparkSubmitOperator(
        task_id=task_id,
        conn_id=SPARK_CONN_ID,
        spark_binary=SPARK_SUBMIT,
        application=str(REPO / "jobs" / "tag_daily.py"),
        application_args=["--date", tag_date, "--config", JOB_CONFIG],
        properties_file="{{ var.value.get('tagger_spark_properties', '') }}",
        name=name,
        pool=POOL,
        pool_slots=1,
        execution_timeout=timedelta(hours=4),
    )


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

    tag_daily = tag_task("tag_daily", TAG_DATE, "tagger-daily-" + TAG_DATE)

    @task(task_id="late_speech_date", trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def late_speech_date():
        from airflow.sdk import Variable, get_current_context

        context = get_current_context()
        days = Variable.get(LATE_SPEECH_DAYS_VARIABLE, default=str(LATE_SPEECH_DAYS_DEFAULT))
        return late_speech_date_for(context["ds"], days, context["dag_run"].run_type)

    retag = tag_task("retag_late_speech", RETAG_DATE, "tagger-retag-" + RETAG_DATE)

    @task(task_id="fail_run_if_any_failed", trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def fail_run_if_any_failed():
        raise AirflowFailException("a task of this run failed (see its log); the late-speech re-tag ran anyway")

    checked = preflight()
    checked >> tag_daily >> late_speech_date() >> retag
    [checked, tag_daily, retag] >> fail_run_if_any_failed()


if __name__ == "__main__":  # python airflow_dags/tagger_daily.py 2024-01-05: one local test run of that date
    dag.test(logical_date=pendulum.parse(sys.argv[1] if len(sys.argv) > 1 else "2024-01-05", tz="UTC"))
