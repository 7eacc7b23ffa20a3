"""The precision-recall figure of `tagger evaluate` (matplotlib, Agg backend, no display needed).

Chinese label names need a CJK font, and the build machines have none installed (and no apt in
CI). The font comes from PyPI instead: the `noto-cjk-sans-otc` package ships Google's Noto Sans
CJK collection (SIL OFL 1.1), which is registered with matplotlib's font manager at first use
(the "Noto Sans CJK SC" face; on matplotlib < 3.10, which only reads a collection's first face,
"Noto Sans CJK JP", which has the same Chinese characters). A CJK font already installed on the
machine (Noto Sans CJK SC, Source Han Sans SC, WenQuanYi, SimHei, ...) is used when the package
is missing. Without any font that has every character needed, the legend says L0..Ln instead and
the caller prints the index -> label mapping (the model card does): never tofu boxes or
"Glyph missing" warnings.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

_SYSTEM_CJK = ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
               "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "Noto Sans CJK JP")
_registered: list[str] | None = None  # CJK family names found (registered once per process)


def _cjk_families() -> list[str]:
    """CJK-capable font families matplotlib can use, best first (registers the pip font once)."""
    global _registered
    if _registered is not None:
        return _registered
    from matplotlib import font_manager

    names: list[str] = []
    try:
        import noto_cjk_sans_otc

        path = str(noto_cjk_sans_otc.FONT_PATH)
        if os.path.isfile(path):
            font_manager.fontManager.addfont(path)
            real = os.path.realpath(path)
            mine = {e.name for e in font_manager.fontManager.ttflist if os.path.realpath(e.fname) == real}
            names += [n for n in ("Noto Sans CJK SC", "Noto Sans CJK JP") if n in mine]
            names += sorted(n for n in mine if n not in names and "Mono" not in n)
    except (ImportError, OSError, RuntimeError, ValueError):
        pass
    installed = {e.name for e in font_manager.fontManager.ttflist}
    names += [n for n in _SYSTEM_CJK if n in installed and n not in names]
    _registered = names
    return names


def _covers(family: str, text: str) -> bool:
    from matplotlib import font_manager

    try:
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        charmap = font_manager.get_font(path).get_charmap()
    except (ValueError, OSError, RuntimeError):
        return False
    return all(ord(c) in charmap for c in set(text) if not c.isspace())


def cjk_font_for(texts: Sequence[str]) -> str | None:
    """A font family that has every non-ASCII character of `texts`, or None (ASCII needs none)."""
    needed = "".join(c for t in texts for c in t if ord(c) > 127)
    if not needed:
        return None
    for family in _cjk_families():
        if _covers(family, needed):
            return family
    return None


def pr_curve_figure(path: str | os.PathLike, curves: Sequence[dict], title: str = "Precision-recall") -> dict:
    """Write ONE PNG with every label's precision-recall curve and its threshold as a dot.

    `curves`: per label {"label", "recall": array, "precision": array (a curve, any order),
    "point": (recall, precision) at the label's threshold or None, "enabled": bool}. A label with
    no positives has no curve (its legend entry says so). Returns {"font": family or None,
    "legend": {"L0": label, ...} when labels had to be replaced by indices, else {}}."""
    names = [c["label"] for c in curves]
    family = cjk_font_for(names + [title])
    use_index = family is None and any(ord(ch) > 127 for n in names for ch in n)
    try:
        _draw(path, curves, title, family, use_index)
    except UserWarning:  # a glyph the chosen font lacks after all: draw plain ASCII instead
        family, use_index = None, True
        _draw(path, curves, title, None, True)
    return {"font": family, "legend": {f"L{j}": n for j, n in enumerate(names)} if use_index else {}}


def _draw(path, curves: Sequence[dict], title: str, family: str | None, use_index: bool) -> None:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if family is None and any(ord(ch) > 127 for ch in title):
        title = "Precision-recall"
    cmap = matplotlib.colormaps["tab20" if len(curves) > 10 else "tab10"]
    rc = {"font.family": ["DejaVu Sans", family] if family else ["DejaVu Sans"]}
    with warnings.catch_warnings(), matplotlib.rc_context(rc):
        warnings.filterwarnings("error", message=r".*Glyph .* missing.*")  # never silently draw tofu
        fig = Figure(figsize=(9.5, 6.0), dpi=100)  # Agg canvas, no pyplot state, no display
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for j, c in enumerate(curves):
            name = f"L{j}" if use_index else c["label"]
            color = cmap(j % cmap.N)
            on = c.get("enabled", True)
            style, suffix = ("-", "") if on else ("--", " (off)")
            r, p = np.asarray(c.get("recall", []), dtype=float), np.asarray(c.get("precision", []), dtype=float)
            if r.size == 0:
                ax.plot([], [], style, color=color, label=f"{name} (no positives){suffix}")
                continue
            order = np.lexsort((-p, r))
            ax.plot(r[order], p[order], style, color=color, linewidth=1.4, label=f"{name}{suffix}")
            if c.get("point") is not None:
                ax.plot([c["point"][0]], [c["point"][1]], "o", color=color, markersize=7,
                        markeredgecolor="black", markeredgewidth=0.6)
        ax.plot([], [], "o", color="lightgrey", markeredgecolor="black", markeredgewidth=0.6,
                label="threshold in use")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
        fig.savefig(path, format="png", bbox_inches="tight")


__all__ = ["pr_curve_figure", "cjk_font_for"]
