"""`tagger bench` at a small size on the session's Spark and the small trained demo heads: it runs,
reports every variant, and the job's tags agree with the plain-Python ceiling item for item."""
from __future__ import annotations

import copy
import json

import pandas as pd
from click.testing import CliRunner

from tagger.cli.measure_commands import bench_command
from tagger.config import load_config
from tagger.measure.bench import REQUIRED_KEYS, format_text, head_tags_agreement, tags_agreement


def test_bench_runs_and_agrees_with_raw(spark, cfg_path, trained, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(bench_command, [
        "--items", "300", "--floor-items", "100", "--model", "demo", "--format", "json",
        "--out", str(out), "--config", str(cfg_path)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    report = json.loads(out.read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == report

    for key in REQUIRED_KEYS:
        assert isinstance(report[key], (int, float)) and report[key] > 0, key
    assert report["items"] == 300 and report["model"] == "demo"
    assert report["tags_agree_ratio"] == 1.0
    int8 = report["int8"]  # the int8 trial ran (extras on, CPU) and measured its agreement with fp32
    assert 0.0 <= int8["tags_agree_ratio"] <= 1.0 and int8["items_per_s"] > 0 and int8["min_agreement"] == 0.995
    assert set(int8["per_head"]) == {"gate", "p0", "p1"} and int8["per_head"]["gate"]["items"] == 300
    assert 0 < int8["per_head"]["p0"]["items"] < 300  # only where the gate passed, in either run
    dependence = int8["batch_dependence"]
    assert dependence["texts"] == 200 and dependence["fp32_max_abs_diff"] <= 1e-4  # fp32 rows ignore their batch
    assert isinstance(int8["meets_bar"], bool) and (int8["tags_agree_ratio"] >= 0.995 or not int8["meets_bar"])
    assert not int8["meets_bar"] or dependence["int8_max_abs_diff"] <= 1e-4
    linear = report["linear"]  # every head replaced by a linear student trained on the bench items (extras on)
    assert linear["skipped"] is None and linear["items_per_s"] > 0 and linear["speedup_over_raw"] > 0
    archs = {h.name: h.train.arch for h in load_config(cfg_path).heads}  # the torch heads the test trained
    assert set(archs.values()) <= {"textcnn", "bert"}
    assert {name: (h["arch"], h["linear_arch"]) for name, h in linear["per_head"].items()} == {
        name: (arch, "linear") for name, arch in archs.items()}
    assert all(h["items_per_s"] > 0 and h["linear_items_per_s"] > 0 for h in linear["per_head"].values())
    assert linear["tags_agree_ratio"] >= 0.8  # trained to give the heads' own tags on these items
    assert report["variants"]["raw_linear"]["items_per_s"] == linear["items_per_s"]
    assert 0.0 < report["gate_pass_share"] < 1.0
    assert report["tags_items_missing"] == 0
    for key in ("job_over_raw", "job_over_predict_batch_udf", "job_over_row_udf"):
        assert report[key] > 0, key
    variants = report["variants"]
    assert variants["job"]["items"] == variants["raw"]["items"] == variants["predict_batch_udf"]["items"] == 300
    assert variants["raw_int8"]["items_per_s"] == int8["items_per_s"]  # the trial is a row of the table too
    assert variants["row_udf"]["items"] == variants["pandas_udf_reload"]["items"] == 100
    assert sum(p["rows"] for p in report["job_partitions"]) == 300
    assert spark.range(3).count() == 3  # the tests' session was reused, not stopped

    text = format_text(report)
    assert "linear heads (trained on these items" in text and f"p0 {archs['p0']} " in text
    for name in ("raw", "job", "predict_batch_udf", "row_udf", "pandas_udf_reload", "raw_linear", "job_over_raw"):
        assert f"  {name} " in text, name
    skipped = copy.deepcopy(report)
    for name in ("row_udf", "pandas_udf_reload"):
        del skipped["variants"][name]
        skipped[f"{name}_items_per_s"] = None
    skipped["job_over_row_udf"] = skipped["job_over_pandas_udf_reload"] = None
    skipped["config"]["floors_skipped"] = True
    assert "skipped: --skip" in format_text(skipped)


def test_tags_agreement_compares_tag_sets_per_item():
    job = pd.DataFrame({"itemid": ["a", "b", "c"], "gate_score": [0.9, 0.1, 0.5], "tag_ids": ["1,2", "", "3"]})
    raw = pd.DataFrame({"itemid": ["c", "b", "a"], "gate_score": [0.5, 0.1, 0.9], "tag_ids": ["4", "", "2,1"]})
    assert tags_agreement(job, raw) == (2 / 3, 0, 0.0)
    ratio, missing, _ = tags_agreement(job, raw.iloc[1:])
    assert missing == 1 and ratio == 2 / 3


def _tags(*rows):
    return [[{"tag_path": path, "source": source} for path, source in row] for row in rows]


def test_per_head_agreement_counts_a_gated_head_only_where_its_gate_passed():
    from tagger.config import HeadConf

    class Head:  # what head_tags_agreement reads of a loaded head
        def __init__(self, labels):
            self.spec = type("Spec", (), {"labels": labels})()

    heads = [(HeadConf("gate", "/g", "内容"), Head(["新车"])),
             (HeadConf("p0", "/p", "内容/新车", gate_by="gate"), Head(["预售", "谍照"]))]
    a = pd.DataFrame({"itemid": ["1", "2", "3", "4"], "tags": _tags(
        [("内容/新车", "gate"), ("内容/新车/预售", "p0")], [("内容/新车", "gate")], [], [])})
    b = pd.DataFrame({"itemid": ["4", "3", "2", "1"], "tags": _tags(
        [], [("内容/新车", "gate")], [("内容/新车", "gate"), ("内容/新车/谍照", "p0")], [("内容/新车", "gate"),
                                                                               ("内容/新车/预售", "p0")])})
    out = head_tags_agreement(a, b, heads)
    assert out["gate"] == {"items": 4, "agree_ratio": 0.75}  # item 3: the gate passed in b only
    assert out["p0"] == {"items": 3, "agree_ratio": round(2 / 3, 6)}  # items 1-3; item 2 differs
