"""Cluster run: one day of N demo items tagged on local[2] and on a Spark standalone cluster
(2 workers x 1 core, scripts/standalone_cluster.py), both against one PostgreSQL metastore
(scripts/metastore.py), measured in the same sitting (docs/cluster.md, "Measured").

    .venv/bin/python scripts/cluster_run.py --items 100000 --out cluster.json

It makes a TAGGER_HOME under --work with the trained demo heads copied from --models (default
$TAGGER_HOME/models: run `make run` first), starts the metastore and the cluster, seeds the day with
`tagger seed`, runs it with `tagger run` (local[2]) and then with `spark-submit --master spark://...`
(client mode, the `make dist-code` archive as --py-files, the worker daemon on), and prints per run:
seconds per stage, model loads, Python workers, worker devices and the peak resident memory (RSS,
sampled once a second) of the executors (JVMs and Python workers; in local mode the driver JVM is the
executor). The cluster run's rows and run id are compared with the local run's.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from metastore import PostgresMetastore  # noqa: E402
from scale_run import TreeSampler  # noqa: E402
from standalone_cluster import StandaloneCluster  # noqa: E402
from tagger.ops.local_services import free_port  # noqa: E402

DAY = "2024-03-01"
BIN = Path(sys.executable).parent


def _stages(out: str) -> dict[str, float]:
    stages = {name: 60 * float(m or 0) + float(sec)
              for name, m, sec in re.findall(r"\] stage (\w+) done in (?:(\d+)m)?([\d.]+)s", out)}
    stages["total"] = round(sum(stages.values()), 1)
    return stages


def _measure(cmd: list, env: dict, roots: list[int]) -> tuple[float, str, dict]:
    """Run `cmd`, sampling the RSS of its process tree and of the trees below `roots` (the workers)."""
    started = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    samplers = [TreeSampler(pid) for pid in [proc.pid, *roots]]
    for s in samplers:
        s.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    for s in samplers:
        s.stop.set()
        s.join()
    if proc.returncode not in (0, 6):
        raise click.ClickException(f"{' '.join(map(str, cmd[:3]))} failed ({proc.returncode}):\n{out[-4000:]}")
    driver, workers = samplers[0].peak, samplers[1:]
    if workers:  # executors: the JVMs and Python workers below each standalone worker
        executors = {"jvm": sum(w.peak["jvm"] for w in workers),
                     "python_workers": sum(w.peak["python_workers"] for w in workers)}
    else:  # local mode: the driver JVM runs the tasks
        executors = {"jvm": driver["jvm"], "python_workers": driver["python_workers"]}
    return seconds, out, executors


def _summary(seconds: float, out: str, executors: dict) -> dict:
    loads = re.search(r"models loaded (\d+) times in (\d+) Python worker", out)
    devices = re.search(r"devices: (.*)", out)
    return {"process_seconds": round(seconds, 1), "stage_seconds": _stages(out),
            "model_loads": int(loads.group(1)) if loads else None,
            "python_workers": int(loads.group(2)) if loads else None,
            "devices": devices.group(1) if devices else None,
            "run_id": re.search(r"run_id=(\S+)", out).group(1),
            "peak_executor_rss_mb": executors}


@click.command(help=__doc__)
@click.option("--items", type=click.IntRange(min=1000), default=100_000, show_default=True)
@click.option("--work", type=click.Path(file_okay=False), default="/tmp/tagger-cluster-run", show_default=True)
@click.option("--models", type=click.Path(file_okay=False), default=None,
              help="Directory holding the trained heads (default: $TAGGER_HOME/models).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Write the JSON here too.")
def main(items, work, models, out_path):
    models_dir = Path(models or Path(os.environ.get("TAGGER_HOME", REPO / ".tagger")) / "models").resolve()
    if not (models_dir / "gate" / "tagger_head.json").is_file():
        raise click.ClickException(f"no trained heads in {models_dir}: run `make run` (or tagger demo) first.")
    work = Path(work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    home = work / "home"
    home.mkdir(parents=True)
    work.chmod(0o755)
    shutil.copytree(models_dir, home / "models")
    with PostgresMetastore(work / "pg", free_port()) as pg, \
            StandaloneCluster(work / "standalone", workers=2, cores=1, memory="4g") as cluster:
        raw = yaml.safe_load((REPO / "conf" / "tagger.yaml").read_text(encoding="utf-8"))
        raw["spark"].update(pg.config_section())
        raw["spark"]["conf"]["spark.driver.memory"] = "4g"
        config = home / "tagger.yaml"
        config.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
        env = dict(os.environ, TAGGER_HOME=str(home), HF_HUB_OFFLINE="1", PYSPARK_PYTHON=sys.executable)
        tagger = [BIN / "tagger", "--config", config]
        click.echo(f"seeding {items:,} items on {DAY} ...")
        subprocess.run([*tagger, "seed", "--items", str(items), "--start", DAY, "--days", "1"], env=env, check=True,
                       capture_output=True)
        click.echo("local[2] ...")
        local = _summary(*_measure([*tagger, "run", "--date", DAY], env, []))
        click.echo(json.dumps(local))
        dist = work / "dist"
        subprocess.run(["make", "-s", "dist-code", f"DIST_DIR={dist}"], cwd=REPO, env=env, check=True,
                       capture_output=True)
        code = next(dist.glob("tagger-*.zip"))
        click.echo(f"standalone {cluster.master_url} (2 workers x 1 core) ...")
        submit = [BIN / "spark-submit", "--master", cluster.master_url, "--deploy-mode", "client",
                  "--driver-class-path", "/usr/share/java/postgresql.jar", "--driver-memory", "4g",
                  "--executor-memory", "3g", "--py-files", code,
                  "--conf", f"spark.pyspark.python={sys.executable}",
                  "--conf", f"spark.executorEnv.PYTHONPATH={code.name}",
                  "--conf", "spark.python.daemon.module=tagger.udfs.worker_daemon",
                  "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
                  REPO / "jobs" / "tag_daily.py", "--date", DAY, "--config", config]
        remote = _summary(*_measure(submit, env, [p.pid for p in cluster.procs[1:]]))
        click.echo(json.dumps(remote))
    result = {"items": items, "cpu_cores": os.cpu_count(), "local[2]": local, "standalone_2x1": remote,
              "same_run_id": local["run_id"] == remote["run_id"],
              "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    click.echo(json.dumps(result, indent=2))
    if out_path:
        Path(out_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
