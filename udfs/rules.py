"""Auto-show (车展) regular-expression rules: which show an item is about, decided directly.

Rules come from a YAML file (conf/autoshow_rules.yaml); adding a show is a YAML change only.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tagger.config import ConfigError, load_yaml

RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Rule:
    id: str
    tag: str  # full tag path in the tag dimension, e.g. 内容标签/车展/北京车展
    patterns: tuple[str, ...]
    version: int

    @property
    def regex(self) -> str:
        return "|".join(f"(?:{p})" for p in self.patterns)


@dataclass(frozen=True)
class RuleSet:
    version: str  # file version + a digest of the rules, so any edit changes it
    rules: tuple[Rule, ...]

    def apply(self, texts: pd.Series) -> list[list[tuple[str, str]]]:
        """For each text, the (tag path, rule id) pairs of the rules that match it."""
        values = texts.fillna("").tolist()
        hits: list[list[tuple[str, str]]] = [[] for _ in values]
        for rule, search in zip(self.rules, self._searchers()):
            for i, text in enumerate(values):
                if search(text) and all(tag != rule.tag for tag, _ in hits[i]):
                    hits[i].append((rule.tag, rule.id))
        return hits

    def _searchers(self):
        return [re.compile(rule.regex).search for rule in self.rules]  # re caches compiled patterns

    @property
    def tags(self) -> set[str]:
        return {r.tag for r in self.rules}


def load_rules(path: str | Path) -> RuleSet:
    path = Path(path)
    data = load_yaml(path)
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
