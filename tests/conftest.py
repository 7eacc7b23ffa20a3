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
FAST_TRAIN = {"gate": {"epochs": 2, "confidence": 0.5}, "p0": {"epochs": 2, "max_length": 96, "confidence": 0.5},
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
