"""Shared fixtures: one real local SparkSession with Hive support on a temporary warehouse,
small generated demo data in the real source tables, and small models trained from it."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub in tests

from pathlib import Path

import pytest
import yaml

from tagger.config import DEFAULT_CONFIG, load_config

REPO = Path(__file__).resolve().parent.parent
SEED_START, SEED_DAYS, SEED_ITEMS = "2024-01-01", 3, 3000
TRAIN_DATES = ["2024-01-01", "2024-01-02"]
RUN_DATE = "2024-01-03"  # seeded, not trained on
# Small, fast models: the pipeline tests check plumbing, not accuracy (the demo run and docs/models.md do).
# confidence 0.5: the dev splits here hold a few dozen positives per label, too few for the 95% margin
# of the calibration (models/calibrate.py) to reach 0.80 with 2-epoch models.
FAST_TRAIN = {"gate": {"epochs": 2, "confidence": 0.5}, "p0": {"epochs": 4, "max_length": 96, "confidence": 0.5},
              "p1": {"epochs": 2, "max_length": 128, "confidence": 0.5}}


def write_config(directory: Path, name: str = "tagger.yaml", edit=None) -> Path:
    """A copy of conf/tagger.yaml with absolute paths, small Spark settings and fast training,
    optionally changed further by `edit(raw_dict)`."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["rules"] = str(REPO / "conf" / "autoshow_rules.yaml")
    raw["spark"]["conf"]["spark.sql.shuffle.partitions"] = "2"
    for head in raw["heads"]:
        head["train"].update(FAST_TRAIN.get(head["name"], {}))
    # The tests run dates in any order and seed bad days on purpose: the publish audits are relaxed
    # here (no history comparison, any quarantine share, no golden set). tests/tagger/job/test_audits.py
    # switches each one on.
    raw["publish"]["min_history_days"] = 1000
    raw["publish"]["audits"]["quarantine"]["max_share"] = 1.0
    raw["publish"]["audits"]["golden_set"]["path"] = ""
    if edit:
        edit(raw)
    path = directory / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules that train tiny models: one intra-op thread is as fast and, on a shared 2-core
    box, avoids OpenMP spin-waiting (which made such a module 4x slower under load). Restored after.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tagger_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("tagger_home")
    os.environ["TAGGER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def cfg_path(tagger_home) -> Path:
    return write_config(tagger_home)


@pytest.fixture(scope="session")
def cfg(cfg_path):
    return load_config(cfg_path)


@pytest.fixture(scope="session")
def spark(cfg):
    from tagger.ops.spark_session import build_session

    session = build_session(cfg, "tagger-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_data(spark, cfg):
    """Generated demo data written to the real source tables (production names)."""
    from tagger.demo.generator import generate
    from tagger.demo.seed import write_demo

    data = generate(SEED_ITEMS, SEED_START, SEED_DAYS, seed=11)
    write_demo(spark, cfg, data)
    return data


@pytest.fixture(scope="session")
def trained(spark, cfg, demo_data):
    """Small gate and P0 models trained from the seeded days before RUN_DATE."""
    from tagger.training.from_warehouse import train_all

    return train_all(spark, cfg, TRAIN_DATES, log=lambda *_: None)


def load_script(name: str):
    """A module of scripts/ (not a package) by file name, e.g. load_script("metastore")."""
    import importlib.util
    import sys

    key = f"tagger_scripts_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture(scope="session")
def pg_metastore():
    """A private PostgreSQL server (scripts/metastore.py) for the database-catalog tests, stopped and
    deleted at the end. Its data folder is under /tmp, not pytest's tmp_path: the server runs as the
    `postgres` user when the tests run as root, and pytest's folders are private to their owner.
    Each test module takes a database of its own: pg_metastore.add_database(name)."""
    import shutil
    import tempfile

    from tagger.ops.local_services import free_port

    metastore = load_script("metastore")
    directory = Path(tempfile.mkdtemp(prefix="tagger-pg-"))
    directory.chmod(0o755)
    server = metastore.PostgresMetastore(directory, free_port())
    server.start(log=lambda *_: None)
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """A Spark standalone master and two workers of one core each from the pip pyspark
    (scripts/standalone_cluster.py), each worker announcing GPUs "0" and "1" through a discovery
    script. Stopped at the end of the session."""
    cluster = load_script("standalone_cluster").StandaloneCluster(
        tmp_path_factory.mktemp("standalone"), workers=2, cores=1, memory="3g", gpus=2)
    cluster.start()
    yield cluster
    cluster.stop()


def database_config(directory: Path, pg, database: str, edit=None) -> Path:
    """write_config with catalog: database on `pg`'s database `database` (created with the metastore
    schema if missing), the warehouse under $TAGGER_HOME."""
    url = pg.add_database(database, log=lambda *_: None)

    def to_database(raw):
        raw["spark"].update(pg.config_section(url))
        if edit:
            edit(raw)
    return write_config(directory, edit=to_database)


def warehouse_rows(home: Path, table: str, columns: list[str], dt: str | None = None) -> list[dict]:
    """Rows of tagging.<table> under home/warehouse straight from its Parquet files (no Spark start:
    the subprocess runs are the subject, and each extra Spark session costs seconds), optionally only
    partition dt."""
    import pyarrow.dataset as ds

    path = home / "warehouse" / "tagging.db" / table
    rows = ds.dataset(path, format="parquet", partitioning="hive").to_table(columns=columns).to_pylist()
    return [r for r in rows if dt is None or r["dt"] == dt]
