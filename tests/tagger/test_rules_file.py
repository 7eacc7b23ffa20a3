import pandas as pd
import pytest

from tagger.config import ConfigError
from tagger.config import CONF_DIR
from tagger.rules_file import load_rules

RULES = CONF_DIR / "autoshow_rules.yaml"


def test_shipped_rules_tag_each_show_and_not_a_bare_auto_show():
    rules = load_rules(RULES)
    texts = pd.Series(["2024北京车展新车盘点", "上海国际汽车工业展览会开幕", "车展上看到的", None,
                       "广州车展与成都车展连看"])
    hits = [[tag for tag, _ in row] for row in rules.apply(texts)]
    assert hits == [["内容标签/车展/北京车展"], ["内容标签/车展/上海车展"], [], [],
                    ["内容标签/车展/广州车展", "内容标签/车展/成都车展"]]


def test_version_changes_with_any_rule_edit(tmp_path):
    base = load_rules(RULES)
    edited = tmp_path / "rules.yaml"
    edited.write_text(RULES.read_text(encoding="utf-8").replace("日内瓦(国际)?车展", "日内瓦车展"), encoding="utf-8")
    assert load_rules(edited).version != base.version


@pytest.mark.parametrize("body,key", [
    ('version: "1"\nrules:\n  - {id: x, tag: a/b, version: 1, patterns: ["(unclosed"]}\n', "rules[0].patterns[0]"),
    ('version: "1"\nrules:\n  - {id: X!, tag: a/b, version: 1, patterns: ["a"]}\n', "rules[0].id"),
    ('version: "1"\nrules:\n  - {id: x, tag: a/b, version: 1, patterns: []}\n', "rules[0].patterns"),
    ('version: "1"\nrules:\n  - {id: x, tag: ab, version: 1, patterns: ["a"]}\n', "rules[0].tag"),
    ('rules: []\n', "version"),
])
def test_bad_rules_are_refused_with_file_and_key(tmp_path, body, key):
    path = tmp_path / "rules.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value)
