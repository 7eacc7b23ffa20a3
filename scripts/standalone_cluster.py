"""A Spark standalone cluster on this machine from the pip pyspark: one master and N workers
(docs/cluster.md). For trying the job on a real cluster manager and for the tests.

    python scripts/standalone_cluster.py up [--workers 2] [--cores 1] [--memory 3g] [--gpus 2]
    python scripts/standalone_cluster.py down

`up` starts the master on 127.0.0.1:7077 (web UI 8090) and the workers, waits until every worker
has registered, prints the master URL and leaves them running (pids in DIR/pids, logs in DIR,
DIR default $TAGGER_HOME/standalone); `down` stops them. `--gpus N` makes each worker announce N
GPUs (addresses 0..N-1) through a discovery script, so that GPU scheduling (spark.task.resource.
gpu.amount) can be tried on a machine without GPUs: tasks get addresses, torch finds no CUDA.

From Python (tests): `with StandaloneCluster(directory, workers=2) as cluster: cluster.master_url`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tagger from this checkout

from tagger.ops.local_services import free_port, spark_home  # noqa: E402

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"





class StandaloneCluster:
    """A master and `workers` workers (each `cores` cores and `memory`), started by start(), stopped
    by stop(); each worker optionally announces `gpus` GPUs. master_url: spark://127.0.0.1:PORT;
    gpu_discovery_script: the script path (None without GPUs), which an application passes as
    spark.executor.resource.gpu.discoveryScript. Raises RuntimeError when a process exits or the
    workers do not register within `start_timeout` seconds (with the log's tail)."""

    def __init__(self, directory: Path, workers: int = 2, cores: int = 1, memory: str = "3g", gpus: int = 0,
                 port: int | None = None, webui_port: int | None = None, start_timeout: float = 180):
        self.directory = Path(directory).resolve()
        self.workers, self.cores, self.memory, self.gpus = workers, cores, memory, gpus
        self.port, self.webui_port = port or free_port(), webui_port or free_port()
        self.start_timeout = start_timeout
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.gpu_discovery_script = self.directory / "gpu_discovery.sh" if gpus else None
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, args: list[str], env: dict) -> None:
        log = open(self.directory / f"{name}.log", "ab")
        self.procs.append(subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], env=env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def start(self) -> "StandaloneCluster":
        """Start the master and the workers and wait until all workers are alive; returns self."""
        self.directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_NO_DAEMONIZE="1")
        self._spawn("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.port),
                               "--webui-port", str(self.webui_port)], env)
        worker_env = dict(env)
        if self.gpus:
            addresses = json.dumps([str(i) for i in range(self.gpus)])
            self.gpu_discovery_script.write_text(f"#!/bin/sh\necho '{{\"name\": \"gpu\", \"addresses\": {addresses}}}'\n")
            self.gpu_discovery_script.chmod(0o755)
            worker_env["SPARK_WORKER_OPTS"] = (f"-Dspark.worker.resource.gpu.amount={self.gpus} "
                                               f"-Dspark.worker.resource.gpu.discoveryScript={self.gpu_discovery_script}")
        for i in range(self.workers):
            work = self.directory / f"worker-{i}"
            work.mkdir(exist_ok=True)
            self._spawn(f"worker-{i}", [WORKER_CLASS, self.master_url, "--host", "127.0.0.1", "--cores",
                                        str(self.cores), "--memory", self.memory, "--webui-port", str(free_port()),
                                        "--work-dir", str(work)], worker_env)
        (self.directory / "pids").write_text("\n".join(str(p.pid) for p in self.procs) + "\n")
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def alive_workers(self) -> int:
        """Workers the master reports ALIVE (its web UI's JSON); 0 while the master is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=3) as answer:
                return int(json.load(answer).get("aliveworkers", 0))
        except (OSError, ValueError):
            return 0

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for name, proc in zip(["master"] + [f"worker-{i}" for i in range(self.workers)], self.procs):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}")
            if self.alive_workers() >= self.workers:
                return
            time.sleep(1)
        raise RuntimeError(f"{self.workers} workers not registered after {self.start_timeout:.0f}s:\n"
                           f"{self.log_tail('master')}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of a process's log ('master', 'worker-0', ...)."""
        try:
            return (self.directory / f"{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the workers, then the master (each process group: SIGTERM, then SIGKILL)."""
        for proc in reversed(self.procs):
            _stop_group(proc.pid)
        self.procs = []

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop_group(pid: int, timeout: float = 30) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.3)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring). Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = Path(os.environ.get("TAGGER_HOME", ".tagger")) / "standalone"
    up = sub.add_parser("up")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--cores", type=int, default=1)
    up.add_argument("--memory", default="3g")
    up.add_argument("--gpus", type=int, default=0, help="GPUs each worker announces (a discovery script)")
    down = sub.add_parser("down")
    for p in (up, down):
        p.add_argument("--dir", type=Path, default=default_dir)
    args = parser.parse_args(argv)
    pids = args.dir / "pids"
    if args.command == "down":
        for pid in reversed(pids.read_text().split() if pids.is_file() else []):
            _stop_group(int(pid))
        pids.unlink(missing_ok=True)
        print("stopped")
        return 0
    cluster = StandaloneCluster(args.dir, args.workers, args.cores, args.memory, args.gpus, port=7077, webui_port=8090)
    try:
        cluster.start()
    except RuntimeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"up: {cluster.master_url} ({args.workers} workers x {args.cores} core(s), web UI http://127.0.0.1:8090)"
          + (f"; GPUs announced by {cluster.gpu_discovery_script}" if args.gpus else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
