"""Start a Spark Thrift Server (HiveServer2 protocol) over the embedded catalog of a TAGGER_HOME.

For trying `tagger preflight` on one machine and for the tests: production uses the cluster's
HiveServer2. The server is the only process allowed on the embedded Derby metastore it serves,
so stop every other Spark session on that TAGGER_HOME first.

    python scripts/thrift_server.py --home .tagger --port 10000     # runs until Ctrl-C

From Python (tests): `with ThriftServer(home, port) as server: ...` starts it, waits until it
accepts a HiveServer2 session, and stops it (its whole process group) on exit.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tagger.ops.hive_client from this checkout

THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def server_command(home: Path, port: int, host: str = "127.0.0.1", hiveconf: dict[str, str] | None = None,
                   driver_memory: str = "1g") -> list[str]:
    """spark-submit command line of a Thrift Server over $TAGGER_HOME's warehouse and Derby metastore."""
    home = Path(home).resolve()
    catalog = {
        "spark.sql.warehouse.dir": str(home / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true",
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
    }
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--class", THRIFT_SERVER_CLASS, "--master", "local[1]",
           "--driver-memory", driver_memory, "--driver-java-options", f"-Dderby.system.home={home}"]
    for key, value in catalog.items():
        cmd += ["--conf", f"{key}={value}"]
    conf = {"hive.server2.thrift.port": str(port), "hive.server2.thrift.bind.host": host,
            "hive.server2.transport.mode": "binary", **(hiveconf or {})}
    for key, value in conf.items():
        cmd += ["--hiveconf", f"{key}={value}"]
    return cmd + ["spark-internal"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ThriftServer:
    """One Thrift Server process (and its JVM children) started by this object, stopped by it."""

    def __init__(self, home: Path, port: int | None = None, host: str = "127.0.0.1",
                 log_path: Path | None = None, hiveconf: dict[str, str] | None = None, start_timeout: float = 240):
        self.home, self.host = Path(home).resolve(), host
        self.port = port or free_port(host)
        self.log_path = Path(log_path) if log_path else self.home / f"thriftserver-{self.port}.log"
        self.hiveconf, self.start_timeout = hiveconf, start_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ThriftServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, SPARK_HOME=str(spark_home()))
        # A session of its own: stop() signals the whole group (spark-submit and the JVM it starts).
        self.proc = subprocess.Popen(server_command(self.home, self.port, self.host, self.hiveconf),
                                     cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Thrift Server exited with code {self.proc.returncode} before accepting "
                                   f"connections; log {self.log_path}:\n{self.log_tail()}")
            if self._session_opens():
                return
            time.sleep(2)
        raise TimeoutError(f"Thrift Server on {self.host}:{self.port} not ready after {self.start_timeout:.0f}s; "
                           f"log {self.log_path}:\n{self.log_tail()}")

    def _session_opens(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                pass
        except OSError:
            return False
        try:
            from tagger.ops.hive_client import HiveClient, HiveServer2Settings

            HiveClient.connect(HiveServer2Settings(self.host, self.port, "probe", timeout_seconds=10)).close()
            return True
        except Exception:
            return False

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)  # == proc.pid: the group this object created
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        # spark-submit execs the JVM, but wait for anything else left in the group (zombies aside)
        # so that the Derby lock is surely released when stop() returns.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.5)

    def __enter__(self) -> "ThriftServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of this process group remains."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=os.environ.get("TAGGER_HOME", ".tagger"),
                        help="TAGGER_HOME whose warehouse and metastore_db the server serves (default $TAGGER_HOME)")
    parser.add_argument("--port", type=int, default=10000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = ThriftServer(Path(args.home), args.port, args.host)
    print(f"starting Thrift Server on {args.host}:{args.port} over {server.home} (log {server.log_path}) ...",
          flush=True)
    with server:
        print(f"ready: HiveServer2 protocol on {args.host}:{args.port}, auth NONE. Ctrl-C stops it.", flush=True)
        try:
            while server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
