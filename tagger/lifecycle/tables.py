"""Plain-text tables whose columns line up on a terminal when cells hold Chinese label names (a wide
character takes two columns)."""
from __future__ import annotations

import unicodedata


def display_width(text: str) -> int:
    """Terminal columns `text` takes: 2 for East Asian wide and fullwidth characters, else 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def format_table(rows: list[list[str]]) -> str:
    """`rows` (the first is the header) as lines: the first column left-aligned, the others right-aligned,
    two spaces apart, widths by display_width."""
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c + " " * (w - display_width(c)) if i == 0 else " " * (w - display_width(c)) + c
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
