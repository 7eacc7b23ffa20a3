"""Checks a run must pass before anything is written."""
from __future__ import annotations


class InvariantError(RuntimeError):
    """The run's output would not account for every selected item exactly once; nothing was written."""


def check_invariant(run_date: str, selected: int, normalized: int, tagged: int, quarantined_items: int) -> None:
    """The invariant: every selected non-NULL itemid is tagged exactly once or quarantined as an item.

    `selected`: distinct non-NULL itemids the extract returned; `normalized`: items normalize kept;
    `tagged`: rows out of the tag stage; `quarantined_items`: distinct itemids quarantined with
    scope 'item'. Raises InvariantError (nothing may be written) when tagged != normalized or
    tagged + quarantined_items != selected.
    """
    if tagged != normalized or tagged + quarantined_items != selected:
        raise InvariantError(
            f"{run_date}: {selected} items selected but {tagged} tagged + {quarantined_items} quarantined as "
            f"items (normalize produced {normalized}); nothing was written. This is a bug: please report it "
            f"with the date.")
