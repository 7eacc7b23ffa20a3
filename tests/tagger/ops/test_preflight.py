"""`tagger preflight`: configuration checks, exit codes, and the real thing against a Spark Thrift
Server (HiveServer2 protocol) that the test starts on loopback over an embedded metastore."""
from __future__ import annotations

import importlib.util
import json
import os
from contextlib import closing
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tagger.ops.local_services import free_port
from conftest import REPO, write_config
from tagger.config import ConfigError
from tagger.ops.preflight import DEFAULT_ORCHESTRATION, load_orchestration

BIN = Path(sys.executable).parent
POOL = "ycrc_rc_eng.dws_all_reco_pool_a"
ASR = "yc_ods.ods_app_videoforumv2_yd_async_detect_record_day_i"
OCR = "yc_ods.ods_app_videoforumv2_video_machine_audit_day_i"
TAG_DIM = "ycrc_rc_eng.dwd_app_reco_tagm_new_tag_content_a"
# Partitions in the test's metastore: pool through 03-02, ASR through 03-04, OCR with a gap at 03-03.
PARTITIONS = {
    (POOL, "demo_ddl_pool", "pt"): ["2024-03-01", "2024-03-02"],
    (ASR, "demo_ddl_asr", "dt"): ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"],
    (OCR, "demo_ddl_ocr", "dt"): ["2024-03-01", "2024-03-02", "2024-03-04"],
    (TAG_DIM, "demo_ddl_tag_dim", "dt"): ["2024-03-01", "2024-03-02"],
}


def _orchestration(tmp_path: Path, name: str = "orchestration.yaml", **hiveserver2) -> Path:
    raw = {"hiveserver2": {"host": "127.0.0.1", "port": 10000, "username": "etl", "auth": "NONE",
                           "timeout_seconds": 10, **hiveserver2},
           "preflight": {"inputs": {"pool": {"max_lag_days": 0}, "asr": {"max_lag_days": 2},
                                    "ocr": {"max_lag_days": 2}, "tag_dim": {"max_lag_days": 7}}}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _preflight_cmd(job_config: Path) -> list[str]:
    """`tagger preflight` as a scheduler runs it."""
    return [str(BIN / "tagger"), "--config", str(job_config), "preflight"]


def _preflight(job_config: Path, orchestration: Path, *args: str, env: dict | None = None):
    cmd = [*_preflight_cmd(job_config), "--orchestration", str(orchestration), *args]
    done = subprocess.run(cmd, cwd=REPO, env=env or dict(os.environ), capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr  # every failure is one readable line
    return done




# ---------------------------------------------------------------- configuration, no server needed

def test_shipped_orchestration_config_is_valid():
    orch = load_orchestration(DEFAULT_ORCHESTRATION)
    assert orch.hiveserver2.auth == "NONE" and orch.password_env == "TAGGER_HIVE_PASSWORD"
    lags = {p.name: (p.partition_column, p.max_lag_days, p.required) for p in orch.inputs}
    assert lags == {"pool": ("pt", 0, True), "asr": ("dt", 2, True), "ocr": ("dt", 2, True),
                    "tag_dim": ("dt", 7, True)}
    assert orch.max_wait_hours == 12


@pytest.mark.parametrize("edit, key, words", [
    (lambda r: r["hiveserver2"].update(auth="SPNEGO"), "hiveserver2.auth", "NONE, NOSASL, LDAP, KERBEROS"),
    (lambda r: r["hiveserver2"].update(password="hunter2"), "hiveserver2.password", "never go into the config"),
    (lambda r: r["hiveserver2"].update(auth="LDAP"), "hiveserver2.password_env", "required with auth LDAP"),
    (lambda r: r["hiveserver2"].update(port=70000), "hiveserver2.port", "1-65535"),
    (lambda r: r["hiveserver2"].pop("host"), "hiveserver2.host", "missing"),
    (lambda r: r["preflight"]["inputs"].update(speech={"max_lag_days": 1}), "preflight.inputs.speech",
     "unknown input"),
    (lambda r: r["preflight"]["inputs"]["asr"].update(max_lag_days=-1), "preflight.inputs.asr.max_lag_days",
     ">= 0"),
])
def test_config_errors_name_the_file_and_the_key(tmp_path, edit, key, words):
    path = _orchestration(tmp_path)
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_orchestration(path)
    assert str(path) in str(err.value) and f"key '{key}'" in str(err.value) and words in str(err.value)


def test_ldap_password_is_read_from_the_environment_only(tmp_path, monkeypatch):
    orch = load_orchestration(_orchestration(tmp_path, auth="LDAP", password_env="TEST_HS2_PASSWORD"))
    monkeypatch.delenv("TEST_HS2_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="environment variable TEST_HS2_PASSWORD"):
        orch.hiveserver2_settings()
    monkeypatch.setenv("TEST_HS2_PASSWORD", "s3cret")
    settings = orch.hiveserver2_settings()
    assert settings.password == "s3cret" and "s3cret" not in repr(settings)


def test_exit_codes_without_a_server(tmp_path):
    job_config = write_config(tmp_path)
    nobody = _orchestration(tmp_path, port=free_port())

    bad_date = _preflight(job_config, nobody, "--date", "2024-02-30")
    assert bad_date.returncode == 2 and "yyyy-MM-dd" in bad_date.stderr

    refused = _preflight(job_config, nobody, "--date", "2024-03-02")
    assert refused.returncode == 5, refused.stderr
    assert "Cannot connect to HiveServer2 at 127.0.0.1:" in refused.stderr and "Connection refused" in refused.stderr

    unknown_auth = _orchestration(tmp_path, "bad.yaml", auth="PLAINTEXT")
    bad = _preflight(job_config, unknown_auth, "--date", "2024-03-02")
    assert bad.returncode == 3 and "key 'hiveserver2.auth'" in bad.stderr


# ---------------------------------------------------------------- against a real HiveServer2

def _thrift_server_class():
    spec = importlib.util.spec_from_file_location("tagger_scripts_thrift_server",
                                                  REPO / "scripts" / "thrift_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ThriftServer


def _create_source_tables(port: int) -> None:
    """The job's source tables with the project's DDL, and their partitions, created over HiveServer2."""
    from pyhive import hive

    with closing(hive.connect(host="127.0.0.1", port=port, username="etl")) as conn:
        cur = conn.cursor()
        for (table, ddl, column), days in PARTITIONS.items():
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {table.split('.')[0]}")
            text = (REPO / "sql" / f"{ddl}.sql").read_text(encoding="utf-8")
            cur.execute("\n".join(line for line in text.splitlines() if not line.startswith("--"))
                        .replace("IDENTIFIER(:table)", table))
            for day in days:
                cur.execute(f"ALTER TABLE {table} ADD PARTITION ({column} = %(d)s)", {"d": day})
        cur.execute(f"INSERT INTO {POOL} PARTITION (pt = '2024-03-02') VALUES "
                    "('a1', 't', 's', '', 'news', 'A', 'PGC', '2024-03-02 08:00:00'), "
                    "('a2', 't', 's', '', 'news', 'A', 'PGC', '2024-03-02 09:00:00'), "
                    "('a3', 't', 's', '', 'yichehao_video', 'A', 'PGC', '2024-03-02 10:00:00')")


@pytest.mark.slow
def test_preflight_over_hiveserver2_reports_present_late_and_missing_inputs(tmp_path):
    job_config = write_config(tmp_path)
    ghost = write_config(tmp_path, "ghost.yaml", edit=lambda raw: raw["tables"].update(
        pool="ycrc_rc_eng.no_such_pool", tag_dim="no_such_db.tag_dim"))
    ThriftServer = _thrift_server_class()
    with ThriftServer(tmp_path / "home") as server:
        _create_source_tables(server.port)
        orch = _orchestration(tmp_path, port=server.port)

        ready = _preflight(job_config, orch, "--date", "2024-03-02", "--format", "json", "--count-rows")
        assert ready.returncode == 0, ready.stderr
        report = json.loads(ready.stdout)
        assert report["ready"] is True and report["date"] == "2024-03-02"
        states = {i["name"]: (i["table"], i["partition"], i["state"]) for i in report["inputs"]}
        assert states == {"pool": (POOL, "pt=2024-03-02", "present"), "asr": (ASR, "dt=2024-03-02", "present"),
                          "ocr": (OCR, "dt=2024-03-02", "present"),
                          "tag_dim": (TAG_DIM, "dt=2024-03-02", "present")}
        assert report["inputs"][0]["rows"] == 3  # SELECT count(*) of the day's pool partition

        # 03-03: the pool has not landed (blocks); OCR and the tag dimension lag within policy.
        waiting = _preflight(job_config, orch, "--date", "2024-03-03", "--format", "json")
        assert waiting.returncode == 4
        by_name = {i["name"]: i for i in json.loads(waiting.stdout)["inputs"]}
        assert (by_name["pool"]["state"], by_name["pool"]["newest"], by_name["pool"]["blocking"]) == \
            ("missing", "2024-03-02", True)
        assert by_name["asr"]["state"] == "present"
        assert (by_name["ocr"]["state"], by_name["ocr"]["days_behind"], by_name["ocr"]["blocking"]) == \
            ("late", 1, False)
        assert (by_name["tag_dim"]["state"], by_name["tag_dim"]["days_behind"]) == ("late", 1)

        # 03-08: speech is 4 days behind, over its 2-day lag; the text report says what blocks.
        text = _preflight(job_config, orch, "--date", "2024-03-08")
        assert text.returncode == 4
        lines = {line.split()[0]: line for line in text.stdout.splitlines()[1:-1]}
        assert "MISSING: newest dt=2024-03-04 is 4 day(s) older (at most 2 allowed)" in lines["asr"]
        assert "MISSING: newest dt=2024-03-04 is 4 day(s) older (at most 2 allowed)" in lines["ocr"]
        assert "late, within policy: newest dt=2024-03-02 is 6 day(s) older (at most 7 allowed)" in lines["tag_dim"]
        assert text.stdout.splitlines()[-1].startswith("NOT READY: pool ycrc_rc_eng.dws_all_reco_pool_a pt=2024-03-08")

        # Tables that do not exist (a missing table, a missing database) are reported, not a crash.
        absent = _preflight(ghost, orch, "--date", "2024-03-02", "--format", "json")
        assert absent.returncode == 4
        by_name = {i["name"]: i for i in json.loads(absent.stdout)["inputs"]}
        assert by_name["pool"]["state"] == "no_table" and by_name["tag_dim"]["state"] == "no_table"
        assert by_name["asr"]["state"] == "present"

        # LDAP: the password comes from the environment (this server runs auth NONE and accepts any).
        ldap = _orchestration(tmp_path, "ldap.yaml", port=server.port, auth="LDAP", password_env="TEST_HS2_PW")
        no_password = _preflight(job_config, ldap, "--date", "2024-03-02",
                                 env={k: v for k, v in os.environ.items() if k != "TEST_HS2_PW"})
        assert no_password.returncode == 3 and "environment variable TEST_HS2_PW" in no_password.stderr
        with_password = _preflight(job_config, ldap, "--date", "2024-03-02",
                                   env=dict(os.environ, TEST_HS2_PW="s3cret"))
        assert with_password.returncode == 0, with_password.stderr
        assert "s3cret" not in with_password.stdout + with_password.stderr

        # Wrong auth modes for this server: one clear line, exit 3 (retrying cannot help).
        nosasl = _preflight(job_config, _orchestration(tmp_path, "nosasl.yaml", port=server.port, auth="NOSASL"),
                            "--date", "2024-03-02")
        assert nosasl.returncode == 3
        assert "accepted the connection but the session could not be opened" in nosasl.stderr
        assert "auth NOSASL matches the server's hive.server2.authentication" in nosasl.stderr
        kerberos = _preflight(job_config, _orchestration(tmp_path, "krb.yaml", port=server.port, auth="KERBEROS",
                                                         kerberos_service_name="hive"), "--date", "2024-03-02")
        assert kerberos.returncode == 3 and "KERBEROS" in kerberos.stderr
        assert len(kerberos.stderr.strip().splitlines()) == 1

    # The server is gone: the same command now says it cannot connect (exit 5, retry later).
    gone = _preflight(job_config, orch, "--date", "2024-03-02")
    assert gone.returncode == 5 and "Cannot connect to HiveServer2" in gone.stderr
