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
    (lambda r: r["heads"][0]["train"].update(max_examples=0), "heads[0].train.max_examples"),
    (lambda r: r["heads"][0]["train"].update(threads=0), "heads[0].train.threads"),
    (lambda r: r["heads"][2]["train"].update(epochs=0), "heads[2].train.epochs"),
    (lambda r: r["heads"][0]["train"].update(tokenizer="bpe"), "heads[0].train.tokenizer"),
    (lambda r: r["heads"][0]["train"].update(pos_weight="foo"), "heads[0].train.pos_weight"),
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


def _database(**metastore_db):
    def edit(raw):
        raw["spark"].update(catalog="database", metastore_db={"url": "jdbc:postgresql://db:5432/metastore",
                                                              "user": "hive", **metastore_db})
    return edit


@pytest.mark.parametrize("edit,key", [
    (_database(password="hunter2"), "spark.metastore_db.password"),
    (lambda r: r["spark"]["conf"].update({"spark.hadoop.javax.jdo.option.ConnectionPassword": "hunter2"}),
     "spark.conf.spark.hadoop.javax.jdo.option.ConnectionPassword"),
])
def test_a_password_in_the_yaml_is_refused(tmp_path, edit, key):
    with pytest.raises(ConfigError, match=rf"key '{key}': passwords never go into the config file") as exc:
        load_config(_write(tmp_path, edit))
    assert "hunter2" not in str(exc.value)


def test_the_metastore_password_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    cfg = load_config(_write(tmp_path, _database(password_env="TEST_METASTORE_PW")))
    monkeypatch.delenv("TEST_METASTORE_PW", raising=False)
    with pytest.raises(ConfigError, match="export TEST_METASTORE_PW"):
        cfg.spark.metastore_db.password()
    monkeypatch.setenv("TEST_METASTORE_PW", "from-env")
    assert cfg.spark.metastore_db.password() == "from-env"
    (tmp_path / "pw").write_text("from-file\n")
    cfg = load_config(_write(tmp_path, _database(password_file="pw")))  # relative: the config's folder
    assert cfg.spark.metastore_db.password() == "from-file"


def test_a_copied_config_resolves_relative_paths_against_its_own_folder(tmp_path):
    (tmp_path / "my_rules.yaml").write_text((DEFAULT_CONFIG.parent / "autoshow_rules.yaml").read_text())
    cfg = load_config(_write(tmp_path, lambda r: r.update(rules="my_rules.yaml")))
    assert cfg.rules_path == str(tmp_path / "my_rules.yaml")
    # the shipped default still points at the shipped rules from a copy elsewhere
    assert load_config(_write(tmp_path, lambda r: None)).rules_path == str(DEFAULT_CONFIG.parent / "autoshow_rules.yaml")


def test_a_missing_rules_file_names_the_key_that_fixes_it(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'rules': .*nope.yaml: file not found. Fix the `rules:` key"):
        load_config(_write(tmp_path, lambda r: r.update(rules="nope.yaml")))


def test_a_linear_head_with_a_team_dictionary_is_read_at_start(tmp_path):
    (tmp_path / "cars.txt").write_text("宋PLUS\nModel  3\n# a comment\n\nID.4\n", encoding="utf-8")

    def edit(raw):
        raw["heads"][2]["train"] = {"arch": "linear", "labels": "children", "tokenizer": "char+word",
                                    "dictionary": "cars.txt", "c": 2, "min_df": 1}
    cfg = load_config(_write(tmp_path, edit))
    train = cfg.heads[2].train
    assert train.arch == "linear"
    assert train.options == {"tokenizer": "char+word", "dictionary": ["宋plus", "model 3", "id.4"], "c": 2, "min_df": 1}
