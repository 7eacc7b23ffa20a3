"""Auto-show (车展) regular-expression rules: which show an item is about, decided directly.

Rules come from a YAML file (conf/autoshow_rules.yaml, read and validated on the driver by
tagger.rules_file.load_rules); adding a show is a YAML change only. Executor side: imports
nothing from the driver side.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd



@dataclass(frozen=True)
class Rule:
    """One rule: emits `tag` when any of its regular expressions matches an item's doc_text."""
    id: str
    tag: str  # full tag path in the tag dimension, e.g. 内容标签/车展/北京车展
    patterns: tuple[str, ...]
    version: int

    @property
    def regex(self) -> str:
        """The rule's patterns as one alternation, each wrapped in (?:...)."""
        return "|".join(f"(?:{p})" for p in self.patterns)


@dataclass(frozen=True)
class RuleSet:
    """The loaded rules file: its version (file version + digest of the rules) and the rules."""
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
        """The tag paths the rules can emit."""
        return {r.tag for r in self.rules}
