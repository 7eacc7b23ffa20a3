"""Build what `spark-submit --master yarn|k8s://...` needs to run the daily job on a cluster, following
PySpark's "Python Package Management" guide (`make dist` runs `code` then `env`):

  code  dist/tagger-<version>.zip         the project's packages (tagger, udfs, models, jobs) for
                                          --py-files / spark.submit.pyFiles (the wheel's content; Spark
                                          puts .zip/.egg/.jar on the Python path, not .whl)
        dist/tagger-<version>-py3-none-any.whl   the same as a wheel (pip install --no-deps on Airflow workers)
        dist/spark-cluster.properties     a --properties-file template pointing at both archives
  env   dist/tagger-env.tar.gz            a virtualenv with the project's Python dependencies (torch,
                                          transformers, pandas, pyarrow, ...; not the project itself),
                                          packed with venv-pack for spark.archives=...#environment and
                                          spark.pyspark.python=./environment/bin/python

    python scripts/build_dist.py code --out dist
    python scripts/build_dist.py env --out dist [--torch-spec "torch==2.13.0"] [--python-prefix /usr]

The code archive changes with every commit and is small; the environment changes only with the
dependencies and is large (about 1.5 GB unpacked with CPU torch, several GB with CUDA torch), so they
are built and shipped separately.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV_ARCHIVE = "tagger-env.tar.gz"


def _run(cmd: list[str], **kwargs) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def build_code(out: Path, python: str = sys.executable) -> Path:
    """Wheel of the project (no dependencies) and the same content as a .zip for --py-files."""
    out.mkdir(parents=True, exist_ok=True)
    # setuptools stages files in build/lib and never removes stale ones: a deleted module would ship.
    shutil.rmtree(REPO / "build" / "lib", ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        _run([python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", tmp,
              str(REPO)])
        wheels = list(Path(tmp).glob("tagger-*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one tagger wheel, found {wheels}")
        wheel = out / wheels[0].name
        shutil.copyfile(wheels[0], wheel)
    version = wheel.name.split("-")[1]
    code_zip = out / f"tagger-{version}.zip"
    shutil.copyfile(wheel, code_zip)  # a pure-Python wheel is a zip with the packages at its root
    write_properties(out, code_zip)
    print(f"code: {code_zip} ({code_zip.stat().st_size / 1e3:.0f} kB), {wheel.name}")
    return code_zip


def write_properties(out: Path, code_zip: Path) -> Path:
    path = out / "spark-cluster.properties"
    path.write_text(PROPERTIES.format(code_zip=code_zip.resolve(), env=(out / ENV_ARCHIVE).resolve(), code_name=code_zip.name,
                                      driver_python=Path(sys.executable).absolute()), encoding="utf-8")
    return path


def build_env(out: Path, python: str, torch_spec: str, python_prefix: str | None, work: Path) -> Path:
    """A fresh virtualenv with the project's dependencies, packed with venv-pack."""
    out.mkdir(parents=True, exist_ok=True)
    env = work / "dist-env"
    _run([python, "-m", "venv", "--clear", env])
    pip = [env / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # torch first, pinned: the spec decides CPU or CUDA build (see setup.py); the rest resolves around it.
    _run([*pip, torch_spec])
    _run([*pip, str(REPO), "venv-pack"])
    # Dependencies only: the code ships separately (--py-files) and changes far more often.
    _run([env / "bin" / "python", "-m", "pip", "uninstall", "--quiet", "--yes", "tagger"])
    archive = out / ENV_ARCHIVE
    cmd = [env / "bin" / "venv-pack", "--prefix", env, "--output", archive, "--force"]
    if python_prefix:
        cmd += ["--python-prefix", python_prefix]
    _run(cmd)
    print(f"env: {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
    return archive


PROPERTIES = """\
# Spark properties for the daily tagging job on a cluster: spark-submit --properties-file <this file>
# (the Airflow DAG reads its path from the Variable `tagger_spark_properties`). Written by `make dist`;
# copy it, then edit paths and sizes. See docs/cluster.md.
# Note: with --properties-file, spark-submit does not read conf/spark-defaults.conf unless
# --load-spark-defaults is given.

# The project's code and its Python dependencies (PySpark "Python Package Management").
# Local paths are uploaded by spark-submit on YARN; on Kubernetes use hdfs:// or s3a:// URLs or set
# spark.kubernetes.file.upload.path.
spark.submit.pyFiles                            {code_zip}
spark.archives                                  {env}#environment
spark.pyspark.python                            ./environment/bin/python
# Client mode: the driver runs on the submitting host (Airflow worker) with the project's virtualenv.
spark.pyspark.driver.python                     {driver_python}
# Python workers fork from a daemon that has imported torch and the model code (~6 s per worker): the
# daemon finds the code archive in the executor's working directory by its file name.
spark.python.daemon.module                      tagger.udfs.worker_daemon
spark.executorEnv.PYTHONPATH                    {code_name}

# Executors: 4 cores each; torch and the Arrow batches live outside the JVM heap, hence the overhead.
spark.executor.cores                            4
spark.executor.memory                           8g
spark.executor.memoryOverhead                   6g
spark.dynamicAllocation.enabled                 true
spark.dynamicAllocation.maxExecutors            20

# GPUs: one per executor, shared by its 4 concurrent tasks (0.25 each); each Python worker loads the
# models once onto the executor's GPU (cuda:0 = the only GPU the container sees). Remove these three
# lines on a CPU-only cluster: the UDF falls back to CPU by itself.
spark.executor.resource.gpu.amount              1
spark.task.resource.gpu.amount                  0.25
spark.executor.resource.gpu.discoveryScript     /opt/spark/examples/src/main/scripts/getGpusResources.sh

# Rows per Arrow batch handed to the tagging UDF. The job config (tagging.arrow_max_records_per_batch)
# sets this too and wins; keep them equal.
spark.sql.execution.arrow.maxRecordsPerBatch    2048
spark.sql.shuffle.partitions                    200

# The metastore. catalog: database in the job config (a metastore kept in PostgreSQL, password from
# $TAGGER_METASTORE_PASSWORD): the JDBC driver must be on the driver's class path when its JVM starts.
spark.driver.extraClassPath                     /usr/share/java/postgresql.jar
# Or catalog: external (a metastore service):
# spark.hadoop.hive.metastore.uris              thrift://metastore.example.com:9083
spark.sql.catalogImplementation                 hive
# YARN
# spark.yarn.queue                              etl
# Kubernetes
# spark.kubernetes.namespace                    tagging
# spark.kubernetes.container.image              registry.example.com/spark-py:4.3.0
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["code", "env", "all"])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default dist/)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the packed environment: the Python version the cluster nodes run")
    parser.add_argument("--torch-spec", default="torch==2.13.0",
                        help="torch requirement for the environment: 2.13.0 is the CPU wheel here; on the GPU "
                             "build host use the CUDA build, e.g. 'torch==2.13.0' with "
                             "PIP_INDEX_URL=https://download.pytorch.org/whl/cu128")
    parser.add_argument("--python-prefix", default=None,
                        help="venv-pack --python-prefix: where Python lives on the cluster nodes (e.g. /usr)")
    parser.add_argument("--work", type=Path, default=REPO / "build", help="where the environment is built")
    args = parser.parse_args(argv)
    if args.what in ("code", "all"):
        build_code(args.out)
    if args.what in ("env", "all"):
        build_env(args.out, args.python, args.torch_spec, args.python_prefix, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
