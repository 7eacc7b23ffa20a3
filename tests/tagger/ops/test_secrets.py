"""The HiveServer2 password never appears in the job's or pre-flight's output, errors or metrics."""
import socket

import yaml
from click.testing import CliRunner
from pyspark.sql import functions as F

from conftest import RUN_DATE
from tagger.cli import main

SECRET = "pw-9f3c1e-never-print-me"


def test_the_job_never_prints_or_stores_the_password(spark, cfg, cfg_path, trained, monkeypatch, capfd):
    monkeypatch.setenv("TAGGER_HIVE_PASSWORD", SECRET)
    result = CliRunner().invoke(main, ["--config", str(cfg_path), "run", "--date", RUN_DATE])
    captured = capfd.readouterr()
    assert result.exit_code == 0, result.output
    assert "items selected" in result.output
    assert SECRET not in result.output + captured.out + captured.err
    metrics = spark.table(cfg.tables.metrics).filter(F.col("dt") == RUN_DATE).collect()
    assert metrics and all(SECRET not in str(row) for row in metrics)


def test_preflight_errors_never_carry_the_password(tmp_path, cfg_path, monkeypatch, capfd):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    orchestration = tmp_path / "orchestration.yaml"
    orchestration.write_text(yaml.safe_dump({
        "hiveserver2": {"host": "127.0.0.1", "port": port, "username": "etl", "auth": "LDAP",
                        "password_env": "TAGGER_HIVE_PASSWORD", "timeout_seconds": 5},
        "preflight": {"inputs": {"pool": {"max_lag_days": 0}}}}), encoding="utf-8")
    monkeypatch.setenv("TAGGER_HIVE_PASSWORD", SECRET)
    result = CliRunner().invoke(main, ["--config", str(cfg_path), "preflight", "--date", RUN_DATE,
                                       "--orchestration", str(orchestration)])
    captured = capfd.readouterr()
    assert result.exit_code == 5, result.output
    assert "Cannot connect to HiveServer2" in result.output
    assert SECRET not in result.output + captured.out + captured.err
