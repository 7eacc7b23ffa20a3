"""`tagger promote` and `tagger rollback-model` on a real MLflow SQLite registry in tmp_path, with tiny
TextCNN heads trained here and a golden set generated here. The config has one head (p0, the gate
head too), so the cascade runs without Spark."""
from __future__ import annotations

import getpass
import json
import shutil

import pytest
from click.testing import CliRunner

from tagger.cli import main
from tagger.config import ConfigError, load_config
from tagger.models.spec import read_spec, write_spec
from tagger.models.training import train_head
from conftest import write_config
from tiny_data import DEV, LABELS, QUIET, TRAIN, make_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py
PARENT = "内容标签/新车资讯"


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """good: trained; noisy: the same weights with every threshold at 0 (tags everything: precision is the
    base rate, ~0.3); timid: thresholds at 0.9999 on two labels (precise, but those two are never emitted,
    so its macro-F1 drops by about half while no label's precision falls)."""
    base = tmp_path_factory.mktemp("gate_heads")
    good = base / "good"
    train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(good), epochs=3, max_length=48, log=QUIET)
    out = {"good": good}
    for name, thresholds in {"noisy": [0.0] * len(LABELS), "timid": [0.9999, 0.9999] + [None] * (len(LABELS) - 2)}.items():
        shutil.copytree(good, base / name)
        spec = read_spec(good)
        spec.thresholds = [t if t is not None else old for t, old in zip(thresholds, spec.thresholds)]
        write_spec(base / name, spec)
        out[name] = base / name
    golden = base / "golden.jsonl"
    texts, labels = make_data(300, 7)
    golden.write_text("".join(json.dumps({"text": t, "labels": [f"{PARENT}/{x}" for x in y]}, ensure_ascii=False)
                              + "\n" for t, y in zip(texts, labels)), encoding="utf-8")
    out["golden"] = golden
    return out


def one_head_config(directory, golden, max_f1_drop=0.02, path="models:/p0@champion"):
    def edit(raw):
        raw["heads"] = [{"name": "p0", "path": path, "parent": PARENT}]
        raw["gate_head"] = "p0"
        raw["publish"]["audits"]["golden_set"].update(path=str(golden), max_f1_drop=max_f1_drop)
    return write_config(directory, edit=edit)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    from tagger.lifecycle.registry import Registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}")
    monkeypatch.setenv("TAGGER_REGISTRY_CACHE", str(tmp_path / "cache"))
    return Registry()


def tagger(config, *args):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def champion(registry):
    return registry.by_alias("p0", "champion").version


def test_refused_promote_leaves_the_alias_and_force_records_who_when_why(heads, registry, tmp_path):
    config = one_head_config(tmp_path, heads["golden"])
    assert registry.register("p0", heads["good"]).version == 1
    assert registry.register("p0", heads["noisy"]).version == 2

    first = tagger(config, "promote", "--head", "p0", "--version", "1")
    assert first.exit_code == 0, first.output
    assert "gate: passed" in first.output and "promoted: p0@champion -> v1" in first.output
    assert champion(registry) == 1

    refused = tagger(config, "promote", "--head", "p0", "--version", "2")
    assert refused.exit_code == 6, refused.output
    assert champion(registry) == 1  # the alias stayed where it was
    assert "gate: REFUSED" in refused.output and "< min_precision 0.6" in refused.output
    table = refused.output.splitlines()
    assert table[1].split()[:2] == ["label", "champion"]  # champion vs candidate, a row per label
    for label in LABELS:
        row = next(line for line in table if line.startswith(label + " "))
        assert len(row.split()) == 10  # label, 4 champion cells, 4 candidate cells, labelled
    assert "forced_by" not in registry.get("p0", 2).tags

    no_reason = tagger(config, "promote", "--head", "p0", "--version", "2", "--force")
    assert no_reason.exit_code == 2 and champion(registry) == 1

    forced = tagger(config, "promote", "--head", "p0", "--version", "2", "--force", "--reason", "relabelling in progress")
    assert forced.exit_code == 0 and "FORCED" in forced.output, forced.output
    assert champion(registry) == 2
    tags = registry.get("p0", 2).tags
    assert tags["forced_by"] == getpass.getuser() and tags["forced_reason"] == "relabelling in progress"
    assert tags["forced_at"].startswith("20") and tags["promoted_from"] == "1" and tags["gate"].startswith("refused")

    back = tagger(config, "rollback-model", "--head", "p0", "--reason", "v2 tags everything")
    assert back.exit_code == 0 and "p0@champion -> v1 (was v2)" in back.output, back.output
    assert champion(registry) == 1
    assert registry.get("p0", 1).tags["rolled_back_reason"] == "v2 tags everything"


def test_macro_f1_drop_beyond_the_configured_margin_refuses(heads, registry, tmp_path):
    registry.register("p0", heads["good"])
    registry.set_alias("p0", "champion", 1)
    registry.register("p0", heads["timid"])

    refused = tagger(one_head_config(tmp_path, heads["golden"]), "promote", "--head", "p0", "--version", "2")
    assert refused.exit_code == 6, refused.output
    assert "below the champion's" in refused.output and "< min_precision" not in refused.output
    assert champion(registry) == 1

    (tmp_path / "loose").mkdir()
    loose = one_head_config(tmp_path / "loose", heads["golden"], max_f1_drop=1.0)
    passed = tagger(loose, "promote", "--head", "p0", "--version", "2")
    assert passed.exit_code == 0 and champion(registry) == 2, passed.output


def test_the_gate_uses_the_audits_golden_set_rule(heads, tmp_path):
    """The gate's precision per label is the audit's golden_set_precision on the same cascade."""
    from tagger.job.audit import golden_set_precision
    from tagger.lifecycle.gate import evaluate_promotion, golden_tagger

    cfg = load_config(one_head_config(tmp_path, heads["golden"], path=str(heads["noisy"])))
    result = evaluate_promotion(cfg, "p0", str(heads["noisy"]), None)
    audit = golden_set_precision(golden_tagger(cfg, "p0", str(heads["noisy"])), str(heads["golden"]), 5)
    for row in result.rows:
        assert row.candidate["correct"] / row.candidate["predicted"] == pytest.approx(audit[row.path][0])
    assert not result.passed and len(result.reasons) == len(LABELS)


def test_promote_without_a_golden_set_or_with_bad_settings_names_the_key(heads, registry, tmp_path):
    registry.register("p0", heads["good"])
    missing = tagger(one_head_config(tmp_path, tmp_path / "nope.jsonl"), "promote", "--head", "p0", "--version", "1")
    assert missing.exit_code == 3 and "publish.audits.golden_set.path" in missing.output
    with pytest.raises(ConfigError, match=r"publish\.audits\.golden_set\.max_f1_drop"):
        load_config(one_head_config(tmp_path, heads["golden"], max_f1_drop=1.5))
    unknown = tagger(one_head_config(tmp_path, heads["golden"]), "promote", "--head", "p0", "--version", "9")
    assert unknown.exit_code == 2 and "models:/p0/9 is not in the registry" in unknown.output
