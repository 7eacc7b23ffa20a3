"""The registry (tagger/lifecycle/registry.py) on a real MLflow SQLite store in tmp_path, with a tiny
TextCNN head trained here; a models:/ head path resolved in a config and in a real job run."""
from __future__ import annotations

import filecmp
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tagger.cli import main
from tagger.config import ConfigError, load_config
from tagger.models.training import train_head
from conftest import RUN_DATE, write_config
from tiny_data import DEV, LABELS, QUIET, TRAIN

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory):
    out = tmp_path_factory.mktemp("heads") / "p0"
    train_head(arch="textcnn", head="p0", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(out), epochs=1, max_length=48, log=QUIET)
    (out / "MODEL_CARD.md").write_text("# p0\nthe tiny test head\n", encoding="utf-8")
    return out


@pytest.fixture
def registry_env(tmp_path, monkeypatch):
    """A registry of its own: MLFLOW_TRACKING_URI on a SQLite file in tmp_path, a cache beside it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}")
    monkeypatch.setenv("TAGGER_REGISTRY_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_register_logs_a_version_with_metrics_and_card_and_resolves_to_the_same_files(tiny_head, registry_env):
    from tagger.lifecycle.registry import Registry

    done = CliRunner().invoke(main, ["register", "--head", "p0", "--model", str(tiny_head)])
    assert done.exit_code == 0, done.output
    assert "models:/p0/1" in done.output and "tagger promote --head p0 --version 1" in done.output
    again = CliRunner().invoke(main, ["register", "--head", "p0", "--model", str(tiny_head), "--alias", "challenger"])
    assert again.exit_code == 0 and "models:/p0/2" in again.output, again.output

    registry = Registry()
    version = registry.resolve("models:/p0@challenger")
    assert version.version == 2
    mv = registry.client.get_model_version("p0", "1")
    assert "the tiny test head" in mv.description
    run = registry.client.get_run(mv.run_id)
    assert 0 < run.data.metrics["dev_macro_f1"] <= 1 and run.data.params["arch"] == "textcnn"
    local = registry.download(registry.resolve("models:/p0/1"))
    assert local == registry_env / "cache" / "p0" / "1"
    same = filecmp.dircmp(tiny_head, local)
    assert not same.left_only and not same.right_only and not same.diff_files
    # the cache is keyed by name and version: a second resolve downloads nothing
    (local / "marker").write_text("kept")
    assert (registry.download(registry.resolve("models:/p0/1")) / "marker").is_file()


def test_champion_alias_is_only_moved_by_promote(tiny_head, registry_env):
    done = CliRunner().invoke(main, ["register", "--head", "p0", "--model", str(tiny_head), "--alias", "champion"])
    assert done.exit_code == 2 and "tagger promote" in done.output


def test_unknown_alias_or_version_names_what_exists(tiny_head, registry_env):
    from tagger.lifecycle.registry import Registry, UnknownVersionError

    registry = Registry()
    with pytest.raises(UnknownVersionError, match="no version of p9 is registered"):
        registry.resolve("models:/p9@champion")
    registry.register("p0", tiny_head)
    with pytest.raises(UnknownVersionError, match=r"alias 'champion' is not set on p0.*versions of p0: 1"):
        registry.resolve("models:/p0@champion")
    with pytest.raises(UnknownVersionError, match="models:/p0/7 is not in the registry"):
        registry.resolve("models:/p0/7")


def test_config_keeps_registry_paths_and_refuses_bad_ones(tmp_path):
    def edit(uri):
        def change(raw):
            raw["heads"][1]["path"] = uri
        return change

    cfg = load_config(write_config(tmp_path, edit=edit("models:/p0@champion")))
    assert cfg.heads[1].path == "models:/p0@champion"
    assert load_config(write_config(tmp_path, edit=edit("models:/p0/3"))).heads[1].path == "models:/p0/3"
    with pytest.raises(ConfigError, match=r"key 'heads\[1\]\.path'.*models:/<name>@<alias>"):
        load_config(write_config(tmp_path, edit=edit("models:/p0@")))


def test_a_config_without_registry_paths_never_imports_mlflow(cfg_path):
    code = ("import sys; from tagger.config import load_config; from tagger.lifecycle.registry import resolve_heads; "
            f"cfg = load_config({str(cfg_path)!r}); out, versions = resolve_heads(cfg); "
            "print(out is cfg, versions, any(m.startswith('mlflow') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "{}", "False"]


def test_a_real_job_run_resolves_models_champion_once_and_records_the_version(spark, cfg, trained, tmp_path,
                                                                              monkeypatch):
    """register the session's trained p0 -> alias champion -> a config with p0 at models:/p0@champion ->
    run_date: the run tags with the downloaded copy and records models:/p0/1 in its model version."""
    from tagger.job.pipeline import run_date
    from tagger.lifecycle.registry import Registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'reg' / 'mlflow.db'}")
    monkeypatch.setenv("TAGGER_REGISTRY_CACHE", str(tmp_path / "cache"))
    p0_dir = next(h.path for h in cfg.heads if h.name == "p0")
    registry = Registry()
    version = registry.register("p0", p0_dir)
    registry.set_alias("p0", "champion", version.version)

    def to_registry(raw):
        raw["heads"][1]["path"] = "models:/p0@champion"
        for key in ("output", "quarantine", "metrics"):  # tables of its own: other modules' runs stay as they are
            raw["tables"][key] = f"tagging.lifecycle_{key}"
    reg_cfg = load_config(write_config(tmp_path, edit=to_registry))
    summary = run_date(spark, reg_cfg, RUN_DATE, log=lambda *_: None)

    p0_version = next(p for p in summary.model_version.split(";") if p.startswith("p0="))
    assert p0_version.endswith("#models:/p0/1")
    assert (tmp_path / "cache" / "p0" / "1" / "tagger_head.json").is_file()
    rows = spark.table("tagging.lifecycle_output").filter(f"dt = '{RUN_DATE}'")
    assert rows.count() == summary.items_tagged > 0
    assert {r[0] for r in rows.select("model_version").distinct().collect()} == {summary.model_version}
    p0_tags = rows.selectExpr("explode(tags) AS t").filter("t.source = 'p0'").count()
    assert p0_tags > 0


def test_the_demo_registers_the_heads_it_trained(cfg, trained, registry_env, capsys):
    """`tagger demo` registers each head it trained (tagger/cli/job_commands.py: _register_demo_heads)."""
    from tagger.cli.job_commands import _register_demo_heads
    from tagger.lifecycle.registry import Registry

    _register_demo_heads(cfg, ["gate", "p0"])
    assert "registered models:/gate/1, models:/p0/1" in capsys.readouterr().out
    registry = Registry()
    assert registry.get("p0", 1).tags["artifact_version"] in summary_versions(cfg)
    assert registry.by_alias("p0", "champion") is None  # only promote moves champion


def summary_versions(cfg) -> str:
    from tagger.models.spec import artifact_version, read_spec

    return ";".join(artifact_version(h.path, read_spec(h.path)) for h in cfg.heads)


def test_the_demo_goes_on_without_mlflow(cfg, registry_env, monkeypatch, capsys):
    """A plain `pip install -e .` has no mlflow: the demo says so instead of failing after training.
    Break: let _register_demo_heads call Registry() outside its try."""
    import sys

    from tagger.cli.job_commands import _register_demo_heads

    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    _register_demo_heads(cfg, ["p0"])
    assert "not registered in the model registry: mlflow is not installed" in capsys.readouterr().out
