"""The tag hierarchy in the output: a child tag implies its parent.

Only parents the job can emit itself (a model head's label or a rule's tag) are added: any P0
tag (内容标签/新车资讯/谍照) implies 新车资讯, whatever the gate said. An added parent carries
source `hierarchy` and the highest score of the children that imply it, so the run summary can
count the disagreements and a reader can tell them from the gate's own decisions.
"""
from __future__ import annotations

from collections.abc import Iterable

SOURCE = "hierarchy"


def ancestors_by_path(emittable: Iterable[str]) -> dict[str, list[str]]:
    """For each emittable tag path, its emittable ancestors, nearest first."""
    paths = set(emittable)
    out = {}
    for path in paths:
        parts = path.split("/")
        out[path] = [p for p in ("/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)) if p in paths]
    return out


def add_implied_parents(tags: list[list[dict]], ancestors: dict[str, list[str]],
                        index: dict[str, tuple[int, str]]) -> int:
    """Append the missing parents of every row's tags in place; return how many were added."""
    added = 0
    for row in tags:
        present = {t["tag_path"] for t in row}
        missing: dict[str, float] = {}
        for t in row:
            for parent in ancestors.get(t["tag_path"], ()):
                if parent not in present:
                    missing[parent] = max(missing.get(parent, 0.0), t["score"])
        for parent, score in missing.items():
            tag_id, name = index[parent]
            row.append(dict(tag_id=tag_id, tag_name=name, tag_path=parent, score=score, source=SOURCE))
        added += len(missing)
    return added
