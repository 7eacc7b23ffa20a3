"""`tagger ablation` on the session's trained demo heads: every variant does the same work (same
scores, other costs), the baseline is the job's own scoring, and the report has every row."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from tagger.cli.measure_commands import ablation_command
from tagger.measure.ablation import BASELINE, SPARK_SETTINGS, VARIANTS
from tagger.measure.inputs import bench_inputs
from tagger.models.loading import load_head
from tagger.udfs.cascade import HeadRef, run_cascade

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_every_variant_gives_the_jobs_scores(spark, cfg, trained):
    """The variants differ in cost only. Break: drop the length sort's inverse mapping in
    predict_proba (out[idx] -> out[start:start+len(idx)]), and the input-order variant differs."""
    texts = bench_inputs(spark, cfg, 150)[0]["doc_text"].tolist() + ["", "车"]
    heads = [(HeadRef.of(c), load_head(c.path, device="cpu")) for c in cfg.heads]
    job = run_cascade(heads, texts)  # the job's own settings
    for name, change in VARIANTS:
        for j, v in zip(job, run_cascade(heads, texts, **{**BASELINE, **change})):
            full = np.full((len(texts), j.scores.shape[1]), np.nan)
            full[v.rows] = v.scores
            # scores are rounded to 4 decimals: a last-bit difference may move one by 1e-4
            assert np.abs(full[j.rows] - j.scores).max() <= 1.0001e-4, (j.ref.name, name)


def test_rounds_rotate_so_no_variant_always_runs_first():
    from tagger.measure.ablation import _rounds

    assert _rounds(3, 3) == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]


def test_ablation_reports_every_variant(spark, cfg_path, trained, tmp_path):
    out = tmp_path / "ablation.json"
    r = CliRunner().invoke(ablation_command, ["--items", "120", "--repeats", "2", "--config", str(cfg_path),
                                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = {row["variant"]: row for row in report["variants"]}
    assert list(rows) == [name for name, _ in VARIANTS]
    assert rows["baseline (the job)"]["times_baseline"] == 1.0
    # the cascade really skips rows: without it P0 scores every item
    n = report["items"]
    assert rows["no cascade: P0 on every row"]["rows_scored"] == 3 * n
    assert 2 * n < rows["baseline (the job)"]["rows_scored"] < 3 * n
    assert [s["variant"] for s in report["spark_stage"]] == [s[0] for s in SPARK_SETTINGS]
    for row in report["variants"] + report["spark_stage"]:
        assert len(row["runs_s"]) == 2 and row["items_per_s"] > 0
        assert abs(row["seconds"] - sum(row["runs_s"]) / 2) < 2e-3  # the median of two runs
    for name, _ in VARIANTS:
        assert name in r.stdout
    assert spark.range(2).count() == 2  # the session's Spark was used, not stopped
