"""The run id covers what decides the rows and nothing about where or how the job ran
(tagger/job/summary.py, RUN_ID_KEYS; docs/cluster.md lists the keys)."""
import pytest

from conftest import write_config
from tagger.config import load_config
from tagger.job.summary import RUN_ID_KEYS, run_fingerprint, run_id_inputs

TAGS = {"内容标签/新车资讯": (1, "新车资讯"), "内容标签/车展": (2, "车展")}
DATE = "2024-01-05"


def _run_id(tmp_path, edit=None, models="gate=1+abc", rules="r1", tags=TAGS) -> str:
    path = write_config(tmp_path, f"c{len(list(tmp_path.iterdir()))}.yaml", edit)
    return run_fingerprint(DATE, load_config(path), models, rules, tags)


def _set(section, key, value):
    def edit(raw):
        raw[section][key] = value
    return edit


def _heads_elsewhere(raw):
    for head in raw["heads"]:
        head["path"] = "/mnt/models/" + head["name"]
        head["train"]["epochs"] = 9


def _database_catalog(raw):
    raw["spark"].update(catalog="database", master="spark://10.0.0.1:7077",
                        metastore_db={"url": "jdbc:postgresql://db:5432/metastore", "user": "hive",
                                      "password_env": "SOME_VAR"})
    raw["spark"]["conf"]["spark.executor.memory"] = "8g"


@pytest.mark.parametrize("edit", [
    _database_catalog,                                    # master, catalog, metastore, executor sizing
    _heads_elsewhere,                                     # local paths of the same artifacts, training options
    _set("tagging", "torch_threads", 7),
    _set("run_lock", "dir", "hdfs:///locks"),
    lambda raw: raw["publish"].update(history_days=30),
], ids=["cluster-and-metastore", "artifact-paths", "torch-threads", "run-lock", "audits"])
def test_where_and_how_it_ran_leaves_the_run_id_alone(tmp_path, edit):
    assert _run_id(tmp_path, edit) == _run_id(tmp_path)


@pytest.mark.parametrize("change", [
    dict(models="gate=2+abd"),
    dict(rules="r2"),
    dict(tags={**TAGS, "内容标签/导购": (3, "导购")}),
    dict(edit=_set("tagging", "batch_size", 32)),
    dict(edit=_set("extract", "speech_late_days", 3)),
    dict(edit=lambda raw: raw["text"]["max_chars"].update(asr=100)),
    dict(edit=lambda raw: raw["tables"].update(pool="other.pool")),
    dict(edit=lambda raw: raw["heads"][2].update(parent="内容标签/评测")),
], ids=["models", "rules", "tag-dimension", "batch-size", "speech-window", "text-budget", "source-table", "head"])
def test_what_decides_the_rows_changes_the_run_id(tmp_path, change):
    assert _run_id(tmp_path, **change) != _run_id(tmp_path)


def test_the_inputs_are_the_documented_keys(tmp_path):
    cfg = load_config(write_config(tmp_path))
    assert tuple(run_id_inputs(cfg, "m", "r", TAGS)) == RUN_ID_KEYS
    assert "SOME_VAR" not in str(run_id_inputs(cfg, "m", "r", TAGS))


def test_the_summary_names_who_emitted_each_tag():
    """A tag from one head shows that head; a tag from several sources shows each, most first.
    Break: `_emitted_by` returning "" (the rare-label binary head's tag would be anonymous)."""
    from tagger.job.summary import RunSummary

    text = RunSummary(run_date=DATE, run_id="x",
                      tag_counts={"内容标签/新车资讯/新车到店": 12, "内容标签/车展": 30},
                      tag_sources={"内容标签/新车资讯/新车到店": {"p0_rare": 12},
                                   "内容标签/车展": {"p0": 8, "rule": 22}}).format()
    assert "     12  内容标签/新车资讯/新车到店  (by p0_rare)" in text
    assert "     30  内容标签/车展  (by rule 22, p0 8)" in text
