"""`spark-submit jobs/tag_daily.py --date D` behaves as `tagger run --date D` (separate processes)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_config

pytestmark = pytest.mark.slow
DAY = "2024-03-01"
QUERY = (f"SELECT itemid, dtype, gate_score, tag_ids, model_version, rules_version, run_id "
         f"FROM tagging.item_tags WHERE dt = '{DAY}' ORDER BY itemid")


def _run(cmd, env):
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_spark_submit_job_writes_what_tagger_run_writes(tmp_path, tagger_home, trained):
    home = tmp_path / "home"
    shutil.copytree(tagger_home / "models", home / "models")  # the models trained by the fixture
    config = write_config(tmp_path)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, TAGGER_HOME=str(home), PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    tagger = [str(bin_dir / "tagger"), "--config", str(config)]

    _run([*tagger, "seed", "--items", "300", "--start", DAY, "--days", "1"], env)
    _run([str(bin_dir / "spark-submit"), "--master", "local[2]", "jobs/tag_daily.py", "--date", DAY,
          "--config", str(config)], env)
    by_spark_submit = _run([*tagger, "sql", "--format", "csv", QUERY], env)
    summary = _run([*tagger, "run", "--date", DAY], env)
    by_tagger_run = _run([*tagger, "sql", "--format", "csv", QUERY], env)

    assert "items selected" in summary
    assert len(by_spark_submit.splitlines()) > 250
    assert by_spark_submit == by_tagger_run
    runs = _run([*tagger, "sql", "--format", "csv",
                 f"SELECT count(*) AS runs FROM tagging.item_tags_run_metrics WHERE dt = '{DAY}'"], env)
    assert runs.splitlines() == ["runs", "2"]
