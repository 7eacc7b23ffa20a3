import pytest
import yaml

from tagger.config import DEFAULT_CONFIG, ConfigError, load_config


def _write(tmp_path, edit):
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_default_config_is_valid():
    cfg = load_config()
    assert cfg.tables.pool == "ycrc_rc_eng.dws_all_reco_pool_a"
    assert [h.name for h in cfg.heads] == ["gate", "p0", "p1"]
    assert cfg.heads[1].gate_by == "gate" and cfg.heads[2].gate_by is None
    assert cfg.heads[2].parent == "内容标签/导购" and cfg.heads[2].train.labels is None  # children
    assert [h.train.precision for h in cfg.heads] == [0.8, 0.8, 0.8]
    assert cfg.rules_path.endswith("conf/autoshow_rules.yaml")


@pytest.mark.parametrize("edit,key", [
    (lambda r: r["tables"].update(pool="db.t; DROP TABLE x"), "tables.pool"),
    (lambda r: r["tables"].pop("asr"), "tables.asr"),
    (lambda r: r["tagging"].update(batch_size=0), "tagging.batch_size"),
    (lambda r: r["tagging"].update(batch_size="64"), "tagging.batch_size"),
    (lambda r: r["heads"][1].update(gate_by="nope"), "heads[1].gate_by"),
    (lambda r: r.update(gate_head="p9"), "gate_head"),
    (lambda r: r["heads"][0]["train"].update(arch="svm"), "heads[0].train.arch"),
    (lambda r: r["spark"].update(catalog="glue"), "spark.catalog"),
    (lambda r: r["heads"][0]["train"].update(arch="linear", epochs=3), "heads[0].train.epochs"),
    (lambda r: r["heads"][0]["train"].update(c=2.0), "heads[0].train.c"),
    (lambda r: r["heads"][0]["train"].update(tokenizer="bpe"), "heads[0].train.tokenizer"),
    (lambda r: r["heads"][1]["train"].update(tokenizer="word"), "heads[1].train.tokenizer"),
    (lambda r: r["heads"][0]["train"].update(tokenizer="word", dictionary="no_such_file.txt"),
     "heads[0].train.dictionary"),
    (lambda r: r["heads"][0]["train"].update(dictionary="autoshow_rules.yaml"), "heads[0].train.dictionary"),
])
def test_bad_values_name_the_file_and_key(tmp_path, edit, key):
    path = _write(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value)


def test_invalid_yaml_and_missing_file_are_clear(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("tables: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_a_linear_head_with_a_team_dictionary_is_read_at_start(tmp_path):
    (tmp_path / "cars.txt").write_text("宋PLUS\nModel  3\n# a comment\n\nID.4\n", encoding="utf-8")

    def edit(raw):
        raw["heads"][2]["train"] = {"arch": "linear", "labels": "children", "tokenizer": "char+word",
                                    "dictionary": "cars.txt", "c": 2, "min_df": 1}
    cfg = load_config(_write(tmp_path, edit))
    train = cfg.heads[2].train
    assert train.arch == "linear"
    assert train.options == {"tokenizer": "char+word", "dictionary": ["宋plus", "model 3", "id.4"], "c": 2, "min_df": 1}
