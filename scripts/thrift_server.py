"""Start a Spark Thrift Server (HiveServer2 protocol) over the catalog of a job config: the
embedded Derby catalog of a TAGGER_HOME, or a shared metastore database (catalog: database).

For trying `tagger preflight` on one machine and for the tests: production uses the cluster's
HiveServer2. On the embedded catalog the server is the only process allowed on the Derby
metastore it serves, so stop every other Spark session on that TAGGER_HOME first; on a metastore
database, jobs and the server run side by side.

    python scripts/thrift_server.py --home .tagger --port 10000            # embedded; until Ctrl-C
    python scripts/thrift_server.py --config db.yaml --port 10000          # the config's database catalog

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

from tagger.ops.local_services import free_port, spark_home  # noqa: E402

THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"



def server_command(home: Path, port: int, host: str = "127.0.0.1", hiveconf: dict[str, str] | None = None,
                   driver_memory: str = "1g", config: str | None = None, secrets_file: Path | None = None
                   ) -> list[str]:
    """spark-submit command line of a Thrift Server over $TAGGER_HOME's warehouse and Derby metastore,
    or, with `config` (a job YAML with catalog: database), over that metastore database: its JDBC jar
    on --driver-class-path and its settings in `secrets_file` (written here with mode 600, passed as
    --properties-file, so the password is never on a command line). Raises ConfigError from the config."""
    home = Path(home).resolve()
    catalog = {
        "spark.sql.warehouse.dir": str(home / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true",
    }
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--class", THRIFT_SERVER_CLASS, "--master", "local[1]",
           "--driver-memory", driver_memory, "--driver-java-options", f"-Dderby.system.home={home}"]
    db = None
    if config:
        from tagger.config import load_config
        from tagger.ops.spark_session import database_catalog_conf

        db = load_config(config).spark.metastore_db
    if db is not None:
        secrets_file = Path(secrets_file or home / f"thriftserver-{port}.properties")
        secrets_file.parent.mkdir(parents=True, exist_ok=True)
        secrets_file.touch(mode=0o600)
        secrets_file.write_text("".join(f"{k}={v}\n" for k, v in database_catalog_conf(db, db.password()).items()),
                                encoding="utf-8")
        cmd += ["--driver-class-path", db.driver_jar, "--properties-file", str(secrets_file)]
        catalog = {}
    for key, value in {**catalog, "spark.ui.enabled": "false", "spark.sql.session.timeZone": "UTC"}.items():
        cmd += ["--conf", f"{key}={value}"]
    conf = {"hive.server2.thrift.port": str(port), "hive.server2.thrift.bind.host": host,
            "hive.server2.transport.mode": "binary", **(hiveconf or {})}
    for key, value in conf.items():
        cmd += ["--hiveconf", f"{key}={value}"]
    return cmd + ["spark-internal"]




class ThriftServer:
    """One Thrift Server process (and its JVM children) started by this object, stopped by it."""

    def __init__(self, home: Path, port: int | None = None, host: str = "127.0.0.1",
                 log_path: Path | None = None, hiveconf: dict[str, str] | None = None, start_timeout: float = 240,
                 config: str | None = None):
        self.home, self.host = Path(home).resolve(), host
        self.port = port or free_port(host)
        self.log_path = Path(log_path) if log_path else self.home / f"thriftserver-{self.port}.log"
        self.hiveconf, self.start_timeout, self.config = hiveconf, start_timeout, config
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ThriftServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, SPARK_HOME=str(spark_home()))
        # A session of its own: stop() signals the whole group (spark-submit and the JVM it starts).
        self.proc = subprocess.Popen(server_command(self.home, self.port, self.host, self.hiveconf,
                                                    config=self.config),
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
        (self.home / f"thriftserver-{self.port}.properties").unlink(missing_ok=True)  # the metastore password

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
    parser.add_argument("--config", default=None,
                        help="job YAML with catalog: database: serve that metastore database instead of --home's Derby")
    args = parser.parse_args(argv)
    server = ThriftServer(Path(args.home), args.port, args.host, config=args.config)
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
