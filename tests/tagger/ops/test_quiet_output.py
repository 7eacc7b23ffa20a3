"""Quiet by default: the commands' output carries no Spark/Hive WARN lines, errors still show, and
`tagger --verbose` (or TAGGER_VERBOSE=1) brings Spark's default logging back. Real commands in
subprocesses (a fresh JVM each: a JVM's logging is fixed when it starts), nothing mocked.

Breaks these catch: build_session no longer putting -Dlog4j2.configurationFile into
spark.driver.extraJavaOptions (the seed prints ~30 WARN lines again); conf/log4j2.properties at
root level WARN (the same), or OFF (the probe's ERROR line disappears); log4j2.properties missing
from the package; --verbose not reaching the session; under spark-submit, no spark.log.level."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO, write_config
from tagger.ops.spark_session import LOG4J2_PROPERTY, log4j2_config_file, quiet_java_options, verbose_logging

BIN = Path(sys.executable).parent
PROBE = Path(__file__).with_name("log_probe.py")
LOG_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ", re.MULTILINE)


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TAGGER_VERBOSE"}
    env.update(TAGGER_HOME=str(home), HF_HUB_OFFLINE="1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, PATH=f"{BIN}{os.pathsep}{env['PATH']}", **extra)
    return env


def _run(cmd, env, timeout=600) -> str:
    """stdout and stderr of `cmd` together (exit status 0 required)."""
    done = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-5000:]}"
    return done.stdout


def _levels(output: str) -> list[str]:
    return LOG_LINE.findall(output)


@pytest.mark.slow
def test_a_command_prints_no_warn_lines_by_default_and_spark_logging_with_verbose(tmp_path):
    home = tmp_path / "home"
    config = write_config(tmp_path)
    seed = [BIN / "tagger", "--config", config, "seed", "--items", "200", "--start", "2024-02-01", "--days", "1"]

    quiet = _run(seed, _env(home))
    assert " WARN " not in quiet, quiet  # Hive's table creation and partition writes warn ~30 times
    assert _levels(quiet) == []
    assert "seeded in" in quiet
    # stdout is a pipe: progress comes as lines with elapsed time and ETA, one per table written
    progress = [ln for ln in quiet.splitlines() if ln.startswith("seeding: ")]
    assert len(progress) == 5 and all(", elapsed " in ln and ", ETA " in ln for ln in progress)

    verbose = _run([seed[0], "--verbose", *seed[1:]], _env(home))  # the same tables again, verbose
    assert "Using Spark's default log4j profile" in verbose
    assert "WARN" in _levels(verbose), verbose
    assert "seeded in" in verbose

    env_verbose = _run([sys.executable, PROBE, config], _env(home, TAGGER_VERBOSE="1"))
    assert "WARN log_probe: log-probe-warn-line" in env_verbose  # Spark's logging (at WARN) is back


def test_errors_still_show_and_warnings_do_not(tmp_path):
    home = tmp_path / "home"
    out = _run([sys.executable, PROBE, write_config(tmp_path)], _env(home))
    assert "log-probe done" in out
    assert re.search(r"ERROR log_probe: log-probe-error-line", out), out
    assert "log-probe-warn-line" not in out
    assert set(_levels(out)) == {"ERROR"}, out


@pytest.mark.slow
def test_spark_submit_runs_are_quiet_once_the_session_starts(tmp_path):
    home = tmp_path / "home"
    config = write_config(tmp_path)
    submit = [BIN / "spark-submit", "--master", "local[1]"]
    out = _run([*submit, PROBE, config], _env(home))
    # The JVM starts with Spark's default profile before Python runs; the session sets ERROR as it starts.
    assert 'Setting Spark log level to "ERROR"' in out, out
    after = out.split('Setting Spark log level to "ERROR"', 1)[1]
    assert set(_levels(after)) == {"ERROR"} and "log-probe-error-line" in after, out

    # With the documented driver option, nothing but errors from the start.
    option = f"-D{LOG4J2_PROPERTY}={log4j2_config_file().resolve().as_uri()}"
    out = _run([*submit, "--driver-java-options", option, PROBE, config], _env(home))
    assert set(_levels(out)) == {"ERROR"} and "log-probe-error-line" in out, out


def test_verbose_flag_and_environment(monkeypatch):
    from tagger.cli import main

    for value, verbose in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv("TAGGER_VERBOSE", value)
        assert verbose_logging() is verbose
    monkeypatch.setenv("TAGGER_VERBOSE", "0")
    result = CliRunner().invoke(main, ["--verbose", "sql", "DROP TABLE t"])  # a usage error: no Spark starts
    assert result.exit_code == 2
    assert os.environ["TAGGER_VERBOSE"] == "1" and verbose_logging()


def test_the_log4j2_file_ships_with_the_package_and_a_users_choice_wins():
    path = log4j2_config_file()
    assert path.is_file() and path.name == "log4j2.properties" and path.parent.name == "conf"
    text = path.read_text(encoding="utf-8")
    assert re.search(r"^rootLogger\.level = error$", text, re.MULTILINE)
    assert "log4j2.properties" in (REPO / "setup.py").read_text(encoding="utf-8")  # package_data

    options = quiet_java_options("-Dderby.system.home=/x")
    assert options.startswith("-Dderby.system.home=/x -Dlog4j2.configurationFile=file:")
    assert options.endswith("/log4j2.properties")
    mine = "-Dderby.system.home=/x -Dlog4j2.configurationFile=file:/etc/mine.properties"
    assert quiet_java_options(mine) == mine
