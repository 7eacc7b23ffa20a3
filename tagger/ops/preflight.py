"""`tagger preflight --date D`: are the run date's inputs in Hive yet? Asked over HiveServer2 (PyHive),
so it runs anywhere the scheduler runs, without Spark.

For each source of the job (pool, ASR, OCR, tag dimension; names from the job config's `tables`)
it lists the partitions (`SHOW PARTITIONS`, metadata only) and applies the lag policy of
conf/orchestration.yaml (`preflight.inputs`):

- max_lag_days: 0   the partition of D itself must exist (the pool: pt=D).
- max_lag_days: N   D may be missing as long as the newest partition at or before D is at most N
                    days older (ASR/OCR land days after the video; the job reads the window anyway).
- required: false   reported, never blocks.

Exit codes a scheduler can act on (the same numbers as the rest of the `tagger` CLI):
  0  ready: every required input is there
  3  configuration problem (bad YAML, unknown auth mode, no password in the environment, login
     refused): fix it, retrying will not help
  4  a required input is missing: retry later (the Airflow DAG keeps waiting, then fails with this list)
  5  HiveServer2 unreachable or a query failed on it: retry later
The Airflow DAG's pre-flight task calls `run_preflight` from this module: the same code.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path


from tagger.config import CONF_DIR, ConfigError, check_date, Tables, _Reader, load_config, load_yaml
from tagger.ops.hive_client import (AUTH_MODES, IDENTIFIER, HiveClient, HiveServer2AuthError, HiveServer2Error,  # noqa: F401  (re-exported)
                                HiveServer2Settings, HiveServer2Unreachable)

DEFAULT_ORCHESTRATION = CONF_DIR / "orchestration.yaml"
ORCHESTRATION_ENV = "TAGGER_ORCHESTRATION_CONFIG"
EXIT_OK, EXIT_CONFIG, EXIT_MISSING_INPUT, EXIT_HIVESERVER2 = 0, 3, 4, 5

# The job's sources, the attribute of `tables` in the job config, and their partition column.
INPUTS = {"pool": "pt", "asr": "dt", "ocr": "dt", "tag_dim": "dt"}
DEFAULT_LAG = {"pool": 0, "asr": 2, "ocr": 2, "tag_dim": 7}


@dataclass(frozen=True)
class InputPolicy:
    """The lag policy of one source (preflight.inputs.<name>): name (a key of INPUTS), its partition
    column (pt or dt), the days its newest partition may lag the run date, and whether it blocks."""
    name: str
    partition_column: str
    max_lag_days: int
    required: bool = True


@dataclass(frozen=True)
class OrchestrationConfig:
    """conf/orchestration.yaml as validated by load_orchestration: source (the file's path), the
    HiveServer2 settings without the password, password_env (the environment variable holding it,
    LDAP only), one InputPolicy per source in INPUTS order, and max_wait_hours (hours the DAG waits
    after the day ended)."""
    source: str
    hiveserver2: HiveServer2Settings  # password not filled in: see `password_env`
    password_env: str | None
    inputs: tuple[InputPolicy, ...]
    max_wait_hours: float

    def hiveserver2_settings(self) -> HiveServer2Settings:
        """The settings with the password read from the environment (LDAP only)."""
        s = self.hiveserver2
        if s.auth != "LDAP":
            return s
        password = os.environ.get(self.password_env or "")
        if not password:
            raise ConfigError(f"{self.source}: key 'hiveserver2.auth' is LDAP but the environment variable "
                              f"{self.password_env} (hiveserver2.password_env) is not set. Export the "
                              f"password there; it never goes into a file.")
        return HiveServer2Settings(**{**asdict(s), "password": password})


def load_orchestration(path: str | os.PathLike | None = None) -> OrchestrationConfig:
    """Read and validate conf/orchestration.yaml (or `path`, or $TAGGER_ORCHESTRATION_CONFIG)."""
    path = Path(path or os.environ.get(ORCHESTRATION_ENV) or DEFAULT_ORCHESTRATION)
    source = str(path)
    root = _Reader(source, load_yaml(path, f"`tagger preflight --orchestration FILE` or ${ORCHESTRATION_ENV}"))
    for key in root.data:
        if key not in ("hiveserver2", "preflight"):
            root.fail(key, "unknown key; known: hiveserver2, preflight")

    h = root.section("hiveserver2")
    if "password" in h.data:
        h.fail("password", "passwords never go into the config file",
               "Remove it and name the environment variable that holds it in hiveserver2.password_env.")
    known = {"host", "port", "username", "auth", "password_env", "kerberos_service_name", "database",
             "timeout_seconds"}
    for key in h.data:
        if key not in known:
            h.fail(key, f"unknown key; known: {', '.join(sorted(known))}")
    auth = h.get("auth", str, "NONE").upper()
    if auth not in AUTH_MODES:
        h.fail("auth", f"must be one of {', '.join(AUTH_MODES)} (the server's hive.server2.authentication), "
                       f"got {h.data['auth']!r}")
    port = h.get("port", int, 10000)
    if not 0 < port < 65536:
        h.fail("port", f"must be a TCP port 1-65535, got {port}")
    database = h.get("database", str, "default")
    if not IDENTIFIER.match(database):
        h.fail("database", f"'{database}' is not a database name (letters, digits, _)")
    timeout = h.get("timeout_seconds", (int, float), 30)
    if isinstance(timeout, bool) or timeout <= 0:
        h.fail("timeout_seconds", f"must be a number > 0, got {timeout!r}")
    password_env = h.get("password_env", str, None)
    if auth == "LDAP" and not password_env:
        h.fail("password_env", "is required with auth LDAP", "Name the environment variable holding the password.")
    service = h.get("kerberos_service_name", str, None)
    if auth == "KERBEROS" and not service:
        h.fail("kerberos_service_name", "is required with auth KERBEROS", "Usually 'hive'.")
    settings = HiveServer2Settings(host=h.get("host", str), port=port, username=h.get("username", str, "etl"),
                                   auth=auth, kerberos_service_name=service if auth == "KERBEROS" else None,
                                   database=database, timeout_seconds=float(timeout))

    p = root.section("preflight") if "preflight" in root.data else _Reader(source, {}, "preflight.")
    for key in p.data:
        if key not in ("max_wait_hours", "inputs"):
            p.fail(key, "unknown key; known: max_wait_hours, inputs")
    max_wait = p.get("max_wait_hours", (int, float), 12)
    if isinstance(max_wait, bool) or max_wait < 0:
        p.fail("max_wait_hours", f"must be a number >= 0, got {max_wait!r}")
    given = p.section("inputs").data if "inputs" in p.data else {}
    policies = []
    for name in given:
        if name not in INPUTS:
            p.fail(f"inputs.{name}", f"unknown input; known: {', '.join(INPUTS)} (the job's sources)")
    for name, column in INPUTS.items():
        i = _Reader(source, given.get(name) or {}, f"preflight.inputs.{name}.")
        for key in i.data:
            if key not in ("max_lag_days", "required", "partition_column"):
                i.fail(key, "unknown key; known: max_lag_days, required, partition_column")
        lag = i.get("max_lag_days", int, DEFAULT_LAG[name])
        if lag < 0:
            i.fail("max_lag_days", f"must be >= 0, got {lag}")
        column = i.get("partition_column", str, column)
        if not IDENTIFIER.match(column):
            i.fail("partition_column", f"'{column}' is not a column name")
        policies.append(InputPolicy(name, column, lag, i.get("required", bool, True)))
    return OrchestrationConfig(source=source, hiveserver2=settings, password_env=password_env,
                               inputs=tuple(policies), max_wait_hours=float(max_wait))


@dataclass
class InputStatus:
    """What pre-flight found for one source on the run date (see the field comments); `table` is the
    job config's db.table name and days_behind the newest partition's lag in days."""
    name: str
    table: str
    partition: str  # the partition of the run date, e.g. pt=2024-01-05
    state: str  # present | late | missing | no_table
    required: bool
    max_lag_days: int
    newest: str | None = None  # newest partition value at or before the run date
    days_behind: int | None = None
    rows: int | None = None  # with count_rows, for the run date's partition

    @property
    def blocking(self) -> bool:
        """True when the input is required and its state is missing or no_table."""
        return self.required and self.state in ("missing", "no_table")

    def describe(self) -> str:
        """One human-readable phrase for the state, e.g. 'present, 1,234 rows' or 'MISSING: newest
        dt=2024-01-03 is 2 day(s) older (at most 1 allowed)'."""
        if self.state == "no_table":
            return "MISSING: table not found" if self.required else "table not found (not required)"
        if self.state == "present":
            return "present" + (f", {self.rows:,} rows" if self.rows is not None else "")
        column = self.partition.split("=")[0]
        newest = (f"newest {column}={self.newest} is {self.days_behind} day(s) older" if self.newest
                  else "no partition at or before it")
        limit = f"at most {self.max_lag_days} allowed"
        if self.state == "late":
            return f"late, within policy: {newest} ({limit})"
        return f"{'MISSING' if self.required else 'missing (not required)'}: {newest} ({limit})"


@dataclass
class PreflightReport:
    """The result of check: the run date (yyyy-MM-dd), the HiveServer2 endpoint asked, and one
    InputStatus per configured input."""
    run_date: str
    endpoint: str
    inputs: list[InputStatus] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """True when no input is blocking."""
        return not any(s.blocking for s in self.inputs)

    @property
    def exit_code(self) -> int:
        """EXIT_OK (0) when ready, else EXIT_MISSING_INPUT (4)."""
        return EXIT_OK if self.ready else EXIT_MISSING_INPUT

    def missing_summary(self) -> str:
        """The blocking inputs as 'name table partition: description' joined by '; ' ('' if none)."""
        return "; ".join(f"{s.name} {s.table} {s.partition}: {s.describe()}" for s in self.inputs if s.blocking)

    def format(self) -> str:
        """The report as text: a header line, one line per input, then a READY / NOT READY verdict."""
        lines = [f"pre-flight {self.run_date} on HiveServer2 {self.endpoint}"]
        width = max((len(s.table) for s in self.inputs), default=0)
        for s in self.inputs:
            lines.append(f"  {s.name:<8} {s.table:<{width}}  {s.partition:<14} {s.describe()}")
        late = [s.name for s in self.inputs if s.state == "late"]
        if self.ready and late:
            lines.append(f"READY: every required input is present or within its lag policy (late: {', '.join(late)}).")
        elif self.ready:
            lines.append("READY: every required input is present.")
        else:
            lines.append(f"NOT READY: {self.missing_summary()}. Rerun once the data has landed (exit 4).")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as indented JSON: date, ready, exit_code, endpoint, and inputs (every
        InputStatus field plus blocking)."""
        payload = {"date": self.run_date, "ready": self.ready, "exit_code": self.exit_code,
                   "endpoint": self.endpoint,
                   "inputs": [dict(asdict(s), blocking=s.blocking) for s in self.inputs]}
        return json.dumps(payload, ensure_ascii=False, indent=2)


def _status(hs2: HiveClient, policy: InputPolicy, table: str, run_date: str, count_rows: bool) -> InputStatus:
    column = policy.partition_column
    status = InputStatus(policy.name, table, f"{column}={run_date}", "no_table", policy.required,
                         policy.max_lag_days)
    if not hs2.table_exists(table):
        return status
    values = sorted(v for v in (_partition_value(spec, column) for spec in hs2.partitions(table))
                    if v is not None and v <= run_date)
    if values and values[-1] == run_date:
        status.state, status.newest, status.days_behind = "present", run_date, 0
        if count_rows:
            status.rows = hs2.count_rows(table, column, run_date)
        return status
    if values:
        status.newest = values[-1]
        status.days_behind = (date.fromisoformat(run_date) - date.fromisoformat(values[-1])).days
    within_lag = status.days_behind is not None and status.days_behind <= policy.max_lag_days
    status.state = "late" if within_lag else "missing"
    return status


def _partition_value(spec: str, column: str) -> str | None:
    """'pt=2024-01-05' -> '2024-01-05'; multi-level specs 'dt=2024-01-05/hour=03' work too."""
    for part in spec.split("/"):
        key, _, value = part.partition("=")
        if key.lower() == column.lower() and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return value
    return None


def check(hs2: HiveClient, tables: Tables, orch: OrchestrationConfig, run_date: str,
          count_rows: bool = False) -> PreflightReport:
    """Check each input of `orch` for `run_date` (yyyy-MM-dd) on the open session `hs2`; table names
    come from `tables` (the job config's). Metadata only, except that count_rows=True also counts
    the pool's run-date partition. Returns the PreflightReport (a missing input is reported, not
    raised). Raises HiveServer2QueryError if a server query fails, ValueError for a table name
    that is not db.table of plain identifiers."""
    report = PreflightReport(run_date, hs2.settings.endpoint)
    for policy in orch.inputs:
        report.inputs.append(_status(hs2, policy, getattr(tables, policy.name), run_date,
                                     count_rows and policy.name == "pool"))
    return report


def run_preflight(run_date: str, job_config: str | os.PathLike | None = None,
                  orchestration: str | os.PathLike | None = None,
                  hiveserver2: HiveServer2Settings | None = None, count_rows: bool = False) -> PreflightReport:
    """Load both configs, connect (settings from `hiveserver2` or the orchestration config) and check.

    Raises ConfigError (fix the config), HiveServer2AuthError (fix auth/credentials),
    HiveServer2Unreachable or HiveServer2QueryError (retry later).
    """
    run_date = check_date(run_date)
    tables = load_config(job_config).tables
    orch = load_orchestration(orchestration)
    settings = hiveserver2 or orch.hiveserver2_settings()
    with HiveClient.connect(settings) as hs2:
        return check(hs2, tables, orch, run_date, count_rows)


__all__ = ["run_preflight", "load_orchestration", "check", "PreflightReport",
           "InputStatus", "OrchestrationConfig", "HiveServer2Unreachable", "EXIT_HIVESERVER2"]
