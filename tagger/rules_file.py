"""Read and validate the auto-show rules file (conf/autoshow_rules.yaml) on the driver.

The loaded `RuleSet` (tagger.udfs.rules) ships to the workers inside the tagging spec; the YAML
and its validation stay here, on the driver side.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tagger.config import RULES_FIX, ConfigError, load_yaml
from tagger.udfs.rules import Rule, RuleSet

RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def load_rules(path: str | Path) -> RuleSet:
    """Read a rules YAML file: {version: str, rules: [{id, tag, patterns, version}, ...]}.

    Returns a RuleSet whose version is "<file version>+<digest of the rules>", so any edit to a
    rule changes it. Raises ConfigError naming the file, the key and the fix for a missing file,
    invalid YAML, a bad id (lower-case letters, digits, _; unique), a tag that is not a path,
    a bad rule version, or a pattern that is not a valid regular expression.
    """
    path = Path(path)
    data = load_yaml(path, RULES_FIX.format(conf_dir="its folder")[4:])
    where = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ConfigError(f"{where}: key 'rules': must be a list of rules (id, tag, patterns, version).")
    file_version = data.get("version")
    if not isinstance(file_version, str) or not file_version:
        raise ConfigError(f"{where}: key 'version': must be a non-empty string, e.g. \"2024.01\".")
    rules, seen = [], set()
    for i, item in enumerate(data["rules"]):
        key = f"rules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: key '{key}': must be a mapping with id, tag, patterns, version.")
        rid = item.get("id")
        if not isinstance(rid, str) or not RULE_ID.match(rid):
            raise ConfigError(f"{where}: key '{key}.id': {rid!r} must be lower-case letters, digits, _.")
        if rid in seen:
            raise ConfigError(f"{where}: key '{key}.id': '{rid}' is used twice; rule ids must be unique.")
        seen.add(rid)
        tag = item.get("tag")
        if not isinstance(tag, str) or tag.count("/") < 1:
            raise ConfigError(f"{where}: key '{key}.tag': {tag!r} must be a tag path like 内容标签/车展/北京车展.")
        version = item.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{where}: key '{key}.version': must be an integer >= 1, got {version!r}.")
        patterns = item.get("patterns")
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ConfigError(f"{where}: key '{key}.patterns': must be a non-empty list of regular expressions.")
        for j, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where}: key '{key}.patterns[{j}]': {pattern!r} is not a valid regular "
                                  f"expression ({exc}). Fix the pattern (Python `re` syntax).") from None
        rules.append(Rule(id=rid, tag=tag.strip("/"), patterns=tuple(patterns), version=version))
    digest = hashlib.sha256(json.dumps([r.__dict__ for r in rules], ensure_ascii=False,
                                       sort_keys=True).encode()).hexdigest()[:8]
    return RuleSet(version=f"{file_version}+{digest}", rules=tuple(rules))
