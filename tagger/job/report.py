"""`tagger report`: one self-contained HTML page over a range of dates, for a person reviewing the
job's output (what each day published, what the audits said, what changed).

IO stays at the edges: `read_report_data` reads the job's own small tables (daily_stats, versions,
publish_log, and the output table's partition pointers) into pandas for the range, using the
version each date has PUBLISHED, plus every version the audits refused; `build_report` is a pure
function from those frames to the HTML text (figures drawn with matplotlib's Agg canvas and
embedded as base64 PNG, every text html-escaped); the CLI writes the file.

What the page shows: per day the published version, its outcome, volume, coverage and models;
drift flags (audit results that warned or failed, of the published versions and of the refused
ones); volume and coverage over time; each tag's rate over time (small multiples); quarantine
reasons over time; the model and rules versions over time, the days they changed drawn as
vertical lines on every plot and listed in a table; every audit result; the publish log.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pandas as pd

from tagger.job.stats import NO_TAG

PANELS_PER_FIGURE = 32  # at most this many tag-rate panels per small-multiples figure (4 columns)
MODEL_COLOR, RULES_COLOR, REFUSED_COLOR = "#7b3294", "#e66101", "#d7191c"


@dataclass
class ReportData:
    """What the report is drawn from, all pandas (empty frames where a table has no rows).

    days: one row per date of the range: dt, version (the published version, None if the date has
    no versioned partition), partition (bool: the output table has the date). versions: the
    versions table's newest row per (dt, version) in the range, plus `published` (bool). stats:
    daily_stats rows of the published versions and of the refused ones, plus `published` (bool).
    log: the publish log's rows in the range, oldest first.
    """
    start: str
    end: str
    days: pd.DataFrame
    versions: pd.DataFrame
    stats: pd.DataFrame
    log: pd.DataFrame


def _dates(start: str, end: str) -> list[str]:
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    return [(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


# ---------------------------------------------------------------------------------------------- IO


def read_report_data(spark, tables, start: str, end: str) -> ReportData:
    """Read the report's frames for start..end (yyyy-MM-dd, both included) from `tables`
    (tagger.config.Tables; the tables must exist: tagger.job.write.ensure_tables).

    The published version of a date is what its output partition points at
    (tagger.job.publish.version_of of partition_location). Raises ValueError when start is after
    end; Spark errors propagate.
    """
    from pyspark.sql import functions as F

    from tagger.job.publish import partition_location, version_of

    if start > end:
        raise ValueError(f"the report's start {start} is after its end {end}")
    dates = _dates(start, end)
    parts = {r[0].split("=", 1)[1] for r in
             spark.sql("SHOW PARTITIONS IDENTIFIER(:t)", args={"t": tables.output}).collect()}
    published = {d: version_of(partition_location(spark, tables.output, d)) for d in dates if d in parts}
    days = pd.DataFrame({"dt": dates, "version": [published.get(d) for d in dates],
                         "partition": [d in parts for d in dates]})

    in_range = (F.col("dt") >= start) & (F.col("dt") <= end)
    versions = spark.table(tables.versions).filter(in_range).toPandas()
    if not versions.empty:
        versions = (versions.sort_values("staged_at").drop_duplicates(["dt", "version"], keep="last")
                    .sort_values(["dt", "staged_at"]).reset_index(drop=True))
        versions["published"] = [published.get(d) == v for d, v in zip(versions["dt"], versions["version"])]

    wanted = {(d, v) for d, v in published.items() if v}
    if not versions.empty:
        wanted |= set(zip(versions.loc[versions["outcome"] == "refused", "dt"],
                          versions.loc[versions["outcome"] == "refused", "version"]))
    stats = pd.DataFrame()
    if wanted:
        pairs = spark.createDataFrame(sorted(wanted), "dt string, version string")
        stats = spark.table(tables.daily_stats).filter(in_range).join(pairs, ["dt", "version"], "inner").toPandas()
        if not stats.empty:
            stats["published"] = [published.get(d) == v for d, v in zip(stats["dt"], stats["version"])]
            for column in ("quarantine_reasons", "source_counts"):
                stats[column] = [_as_dict(m) for m in stats[column]]
    log = spark.table(tables.publish_log).filter(in_range).toPandas()
    if not log.empty:
        log = log.sort_values("at").reset_index(drop=True)
    return ReportData(start, end, days, versions, stats, log)


def _as_dict(value) -> dict:
    """A MAP column's value as a dict (toPandas gives a dict, or pairs, or None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    return dict(value)


# ------------------------------------------------------------------------------- frames (pure)


def parse_audits(text) -> list[dict]:
    """The audit results stored with a version (JSON list of {audit, level, status, value, limit,
    message}); [] for NULL or text that is not such a list."""
    try:
        out = json.loads(text or "[]")
    except (TypeError, ValueError):
        return []
    return [r for r in out if isinstance(r, dict)] if isinstance(out, list) else []


def day_table(data: ReportData) -> pd.DataFrame:
    """One row per date of the range: dt, version (published), outcome (of that version),
    published_by (the publish log's last action naming it: publish, override, rollback, repair),
    model_version, rules_version, items_selected, items_tagged, coverage, gate_pass_rate,
    quarantine_rows, refused (versions of the date the audits refused and are not published),
    models_changed / rules_changed (the published models or rules differ from the previous
    published day's in the range)."""
    days = data.days.copy()
    v = data.versions
    info = {} if v.empty else {(r.dt, r.version): r for r in v.itertuples()}
    days["outcome"] = [getattr(info.get((d, ver)), "outcome", None) if ver else None
                       for d, ver in zip(days["dt"], days["version"])]
    days["model_version"] = [getattr(info.get((d, ver)), "model_version", None) if ver else None
                             for d, ver in zip(days["dt"], days["version"])]
    days["rules_version"] = [getattr(info.get((d, ver)), "rules_version", None) if ver else None
                             for d, ver in zip(days["dt"], days["version"])]
    last_action = {}
    for r in (data.log.itertuples() if not data.log.empty else []):
        last_action[(r.dt, r.version)] = r.action
    days["published_by"] = [last_action.get((d, ver)) if ver else None for d, ver in zip(days["dt"], days["version"])]
    per_day = _published_day_stats(data)
    for column in ("items_selected", "items_tagged", "coverage", "gate_pass_rate", "quarantine_rows"):
        days[column] = [per_day.get(d, {}).get(column) for d in days["dt"]]
    refused = {} if v.empty else (v[(v["outcome"] == "refused") & ~v["published"]].groupby("dt")["version"].count()
                                  .to_dict())
    days["refused"] = [int(refused.get(d, 0)) for d in days["dt"]]
    for column, flag in (("model_version", "models_changed"), ("rules_version", "rules_changed")):
        previous, marks = None, []
        for value in days[column]:
            marks.append(bool(value) and previous is not None and value != previous)
            previous = value or previous
        days[flag] = marks
    return days


def _published_day_stats(data: ReportData) -> dict[str, dict]:
    """{dt: day-level columns of its published version's statistics}."""
    s = data.stats
    if s.empty:
        return {}
    out = {}
    for row in s[s["published"]].drop_duplicates("dt").itertuples():
        out[row.dt] = dict(items_selected=int(row.items_selected), items_tagged=int(row.items_tagged),
                           coverage=float(row.coverage), gate_pass_rate=float(row.gate_pass_rate),
                           quarantine_rows=int(sum(row.quarantine_reasons.values())))
    return out


def version_changes(days: pd.DataFrame) -> pd.DataFrame:
    """The days the published models or rules changed (from day_table): dt, what ('models' or
    'rules'), before, after, detail (for models: which heads changed, 'p0: a -> b')."""
    rows = []
    for column, flag, what in (("model_version", "models_changed", "models"), ("rules_version", "rules_changed",
                                                                                 "rules")):
        previous = None
        for d, value, changed in zip(days["dt"], days[column], days[flag]):
            if changed:
                rows.append(dict(dt=d, what=what, before=previous, after=value,
                                 detail=_head_diff(previous, value) if what == "models" else ""))
            previous = value or previous
    return pd.DataFrame(rows, columns=["dt", "what", "before", "after", "detail"]).sort_values(
        ["dt", "what"]).reset_index(drop=True)


def _head_diff(before: str | None, after: str | None) -> str:
    """'p0: a -> b; p1: new' for model versions written 'head=version;head=version'."""
    def heads(v):
        return dict(part.split("=", 1) for part in (v or "").split(";") if "=" in part)
    b, a = heads(before), heads(after)
    out = [f"{h}: {b.get(h, '(none)')} -> {a.get(h, '(removed)')}" for h in sorted(set(a) | set(b))
           if b.get(h) != a.get(h)]
    return "; ".join(out)


def version_labels(values) -> dict[str, str]:
    """{version string: '1', '2', ...} numbered in order of first appearance (None and '' skipped):
    the report names models versions M1, M2 and rules versions R1, R2 with them."""
    out: dict[str, str] = {}
    for value in values:
        if value and value not in out:
            out[value] = str(len(out) + 1)
    return out


def audit_rows(data: ReportData) -> pd.DataFrame:
    """Every audit result of the published versions and of the refused ones: dt, version,
    published (bool), outcome, audit, level, status, value, limit, message; by date, the
    published version first, each version's results in the order the audits ran."""
    v = data.versions
    rows = []
    if not v.empty:
        for r in v[v["published"] | (v["outcome"] == "refused")].itertuples():
            for a in parse_audits(r.audits):
                rows.append(dict(dt=r.dt, version=r.version, published=bool(r.published), outcome=r.outcome,
                                 audit=a.get("audit"), level=a.get("level"), status=a.get("status"),
                                 value=a.get("value"), limit=a.get("limit"), message=a.get("message")))
    out = pd.DataFrame(rows, columns=["dt", "version", "published", "outcome", "audit", "level", "status", "value",
                                      "limit", "message"])
    if out.empty:
        return out
    out = out.sort_values(["dt", "published", "version"], ascending=[True, False, True], kind="stable")
    return out.reset_index(drop=True)


def tag_rates(data: ReportData, published: bool = True) -> pd.DataFrame:
    """Rate (items with the tag / items tagged) per date (index, every date of the range) and tag
    path (columns, most items first; the '<none>' row excluded), of the published versions, or
    with published=False of the refused ones (the newest refused version per date)."""
    s = data.stats
    dates = list(data.days["dt"])
    if s.empty:
        return pd.DataFrame(index=dates)
    part = s[(s["published"] == published) & (s["tag_path"] != NO_TAG)]
    if not published:
        part = part.merge(_newest_refused(data), on=["dt", "version"])
    totals = s[(s["published"]) & (s["tag_path"] != NO_TAG)].groupby("tag_path")["items"].sum()
    wide = part.pivot_table(index="dt", columns="tag_path", values="rate", aggfunc="first")
    order = sorted(set(wide.columns) | set(totals.index), key=lambda p: (-totals.get(p, 0), p))
    return wide.reindex(index=dates, columns=order)


def quarantine_table(data: ReportData) -> pd.DataFrame:
    """Quarantine rows per date (index, every date of the range) and reason code (columns, most rows
    first), of the published versions; NaN where a date has no published version."""
    dates = list(data.days["dt"])
    s = data.stats
    if s.empty:
        return pd.DataFrame(index=dates)
    day = s[s["published"]].drop_duplicates("dt")
    wide = pd.DataFrame([dict(r, dt=d) for d, r in zip(day["dt"], day["quarantine_reasons"])])
    if wide.empty:
        return pd.DataFrame(index=dates)
    wide = wide.set_index("dt").fillna(0)
    wide = wide[sorted(wide.columns, key=lambda c: -wide[c].sum())]
    return wide.reindex(dates)


def _newest_refused(data: ReportData) -> pd.DataFrame:
    """dt, version of the newest refused version per date that is not the published one."""
    v = data.versions
    if v.empty:
        return pd.DataFrame(columns=["dt", "version"])
    return (v[(v["outcome"] == "refused") & ~v["published"]].sort_values("staged_at")
            .drop_duplicates("dt", keep="last")[["dt", "version"]])


def _refused_day_stats(data: ReportData) -> pd.DataFrame:
    """Day-level columns of the newest refused (unpublished) version per date."""
    if data.stats.empty:
        return pd.DataFrame(columns=["dt", "items_selected", "coverage", "gate_pass_rate"])
    return data.stats.merge(_newest_refused(data), on=["dt", "version"]).drop_duplicates("dt")


# ------------------------------------------------------------------------------ figures (pure)


class _Fonts:
    """The font family for the figures' text, or index labels when no font covers it."""

    def __init__(self, texts):
        from tagger.models.plots import cjk_font_for

        needs_cjk = any(ord(ch) > 127 for t in texts for ch in t)
        self.family = cjk_font_for(list(texts)) if needs_cjk else None
        self.use_index = needs_cjk and self.family is None

    def rc(self) -> dict:
        """matplotlib rc settings: DejaVu Sans, then the CJK family for the characters it lacks."""
        return {"font.family": ["DejaVu Sans", self.family] if self.family else ["DejaVu Sans"]}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)  # Agg canvas, no pyplot state, no display
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _x(dates) -> list:
    return [pd.Timestamp(d) for d in dates]


def _format_dates(ax, dates) -> None:
    import matplotlib.dates as mdates

    ax.set_xlim(pd.Timestamp(dates[0]) - pd.Timedelta(hours=12), pd.Timestamp(dates[-1]) + pd.Timedelta(hours=12))
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(True, alpha=0.3)


def _mark_changes(ax, changes: pd.DataFrame, label: bool = False) -> None:
    """Vertical lines at the days the published models (purple, dashed) or rules (orange, dotted)
    changed; with label=True the line is named at the top of the axes."""
    for row in changes.itertuples():
        color, style = (MODEL_COLOR, "--") if row.what == "models" else (RULES_COLOR, ":")
        ax.axvline(pd.Timestamp(row.dt), color=color, linestyle=style, linewidth=1.4, zorder=1)
        if label:
            ax.annotate(f"{row.what} changed", xy=(pd.Timestamp(row.dt), 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", ha="left", va="top", fontsize=8, color=color)


def _figure_guard(fonts: _Fonts, draw):
    """Run draw() under the fonts' rc, turning a missing glyph into an error (never tofu)."""
    import matplotlib

    with warnings.catch_warnings(), matplotlib.rc_context(fonts.rc()):
        warnings.filterwarnings("error", message=r".*Glyph .* missing.*")
        return draw()


def volume_figure(days: pd.DataFrame, refused: pd.DataFrame, changes: pd.DataFrame) -> str:
    """PNG (base64) of items selected and tagged, coverage and gate pass rate per day of the
    published versions; the newest refused version of a day as a red cross; change days as
    vertical lines."""
    dates = list(days["dt"])

    def draw():
        fig = _figure(11, 5.6)
        top, bottom = fig.subplots(2, 1, sharex=True)
        x = _x(dates)
        top.plot(x, days["items_selected"].astype(float), "o-", color="#2c7bb6", label="items selected", markersize=4)
        top.plot(x, days["items_tagged"].astype(float), "s--", color="#abd9e9", label="items tagged", markersize=3)
        bottom.plot(x, days["coverage"].astype(float), "o-", color="#1a9641", label="coverage (share with a tag)",
                    markersize=4)
        bottom.plot(x, days["gate_pass_rate"].astype(float), "o-", color="#a6611a", label="gate pass rate",
                    markersize=4)
        if not refused.empty:
            rx = _x(refused["dt"])
            top.plot(rx, refused["items_selected"].astype(float), "x", color=REFUSED_COLOR, markersize=9,
                     markeredgewidth=2, label="refused version (not published)")
            bottom.plot(rx, refused["coverage"].astype(float), "x", color=REFUSED_COLOR, markersize=9,
                        markeredgewidth=2, label="refused: coverage")
            bottom.plot(rx, refused["gate_pass_rate"].astype(float), "+", color=REFUSED_COLOR, markersize=9,
                        markeredgewidth=2, label="refused: gate pass rate")
        for ax in (top, bottom):
            _mark_changes(ax, changes, label=ax is top)
            _format_dates(ax, dates)
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        top.set_ylabel("items")
        top.set_ylim(bottom=0)
        top.set_title("Volume and coverage of the published versions")
        bottom.set_ylabel("share of items tagged")
        bottom.set_ylim(0, 1.02)
        return _png(fig)

    return _figure_guard(_Fonts([]), draw)


def tag_rate_figures(rates: pd.DataFrame, refused_rates: pd.DataFrame, changes: pd.DataFrame,
                     names: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Small multiples, one panel per tag path (PANELS_PER_FIGURE per figure): its rate in % per
    day of the published versions, the newest refused version as a red cross, change days as
    vertical lines. `names`: tag path -> panel title. Returns (PNGs as base64, legend): legend is
    {'T1': tag path, ...} when no installed font has the titles' characters and the panels are
    titled T1.. instead, else {}. No tag: ([], {})."""
    paths = list(rates.columns)
    if not paths:
        return [], {}
    dates = list(rates.index)
    fonts = _Fonts(list(names.values()))
    titles = {p: (f"T{i + 1}" if fonts.use_index else names[p]) for i, p in enumerate(paths)}
    out = []
    figures = math.ceil(len(paths) / PANELS_PER_FIGURE)
    per_figure = math.ceil(len(paths) / figures)  # balanced: 33 tags are 17 + 16 panels, not 32 + 1
    ncols = min(4, len(paths))
    for first in range(0, len(paths), per_figure):
        chunk = paths[first:first + per_figure]
        nrows = math.ceil(len(chunk) / ncols)

        def draw(chunk=chunk, ncols=ncols, nrows=nrows):
            fig = _figure(3.1 * ncols, 2.0 * nrows + 0.6)
            axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
            x = _x(dates)
            for ax, path in zip(axes.flat, chunk):
                ax.plot(x, 100 * rates[path].astype(float), "o-", markersize=3, color="#2c7bb6", linewidth=1.2)
                if path in refused_rates.columns:
                    ax.plot(x, 100 * refused_rates[path].astype(float), "x", color=REFUSED_COLOR, markersize=7,
                            markeredgewidth=1.6)
                _mark_changes(ax, changes)
                _format_dates(ax, dates)
                ax.set_title(titles[path], fontsize=9)
                ax.set_ylim(bottom=0)
                ax.tick_params(labelsize=7, labelbottom=True)  # dates under every panel, not only the last row
            for ax in list(axes.flat)[len(chunk):]:
                ax.set_visible(False)
            fig.suptitle("Tag rates (% of items tagged) of the published versions; "
                         "red x: a refused version; dashed: models changed, dotted: rules changed", fontsize=10)
            fig.tight_layout()
            return _png(fig)

        try:
            out.append(_figure_guard(fonts, draw))
        except UserWarning:  # a glyph the chosen font lacks after all: index labels instead
            fonts.family, fonts.use_index = None, True
            titles = {p: f"T{i + 1}" for i, p in enumerate(paths)}
            out.append(_figure_guard(fonts, draw))
    return out, ({f"T{i + 1}": p for i, p in enumerate(paths)} if fonts.use_index else {})


def quarantine_figure(quarantine: pd.DataFrame, changes: pd.DataFrame) -> str | None:
    """PNG (base64) of quarantine rows per reason per day (stacked bars, published versions), change
    days as vertical lines; None when nothing was quarantined in the range."""
    if quarantine.empty or not quarantine.fillna(0).to_numpy().any():
        return None
    dates = list(quarantine.index)
    fonts = _Fonts(list(quarantine.columns))  # reason codes are ASCII (tagger/job/normalize.py)
    labels = {c: c.encode("ascii", "replace").decode() if fonts.use_index else c for c in quarantine.columns}

    def draw():
        import matplotlib

        fig = _figure(11, 3.4)
        ax = fig.subplots()
        cmap = matplotlib.colormaps["tab20" if len(quarantine.columns) > 10 else "tab10"]
        base = pd.Series(0.0, index=quarantine.index)
        x = _x(dates)
        for j, column in enumerate(quarantine.columns):
            values = quarantine[column].fillna(0).astype(float)
            ax.bar(x, values, bottom=base, width=0.8, color=cmap(j % cmap.N), label=labels[column])
            base = base + values
        _mark_changes(ax, changes, label=True)
        _format_dates(ax, dates)
        ax.set_ylabel("quarantine rows")
        ax.set_title("Quarantine reasons of the published versions")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        return _png(fig)

    return _figure_guard(fonts, draw)


def versions_figure(days: pd.DataFrame, model_labels: dict[str, str], rules_labels: dict[str, str]) -> str | None:
    """PNG (base64) of which models (M1, M2, ...) and rules (R1, ...) version each day published: one
    coloured bar per run of days; None when no day in the range has a published version."""
    if not days["model_version"].notna().any() and not days["rules_version"].notna().any():
        return None
    dates = list(days["dt"])

    def draw():
        import matplotlib

        fig = _figure(11, 1.7)
        ax = fig.subplots()
        cmap = matplotlib.colormaps["tab10"]
        for y, (column, labels, prefix) in enumerate((("rules_version", rules_labels, "R"),
                                                      ("model_version", model_labels, "M"))):
            runs: list[list] = []
            for d, value in zip(dates, days[column]):
                if value and runs and runs[-1][0] == value and runs[-1][2] == pd.Timestamp(d) - pd.Timedelta(days=1):
                    runs[-1][2] = pd.Timestamp(d)
                elif value:
                    runs.append([value, pd.Timestamp(d), pd.Timestamp(d)])
            for value, d0, d1 in runs:
                k = int(labels[value]) - 1
                left = d0 - pd.Timedelta(hours=12)
                ax.barh(y, (d1 - d0) + pd.Timedelta(days=1), left=left, height=0.6, color=cmap(k % cmap.N),
                        edgecolor="white")
                ax.text(left + ((d1 - d0) + pd.Timedelta(days=1)) / 2, y, f"{prefix}{labels[value]}", ha="center",
                        va="center", fontsize=8, color="white", fontweight="bold")
        ax.set_yticks([0, 1], ["rules", "models"])
        _format_dates(ax, dates)
        ax.grid(False)
        ax.set_title("Published model and rules versions (see the versions table)", fontsize=10)
        return _png(fig)

    return _figure_guard(_Fonts([]), draw)


# --------------------------------------------------------------------------------- HTML (pure)


def _e(value) -> str:
    """html.escape of a cell's text; '' for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list], row_classes: list[str] | None = None,
           cell_classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        klass = f' class="{_e(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = "".join(
            f'<td class="{_e(cell_classes[i][j])}">{_e(c)}</td>' if cell_classes and cell_classes[i][j]
            else f"<td>{_e(c)}</td>" for j, c in enumerate(row))
        body.append(f"<tr{klass}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * float(value):.1f}%"


def _int(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{int(value):,}"


def _short_path(paths) -> dict[str, str]:
    """Tag paths without the prefix they all share ('内容标签/新车资讯/谍照' -> '新车资讯/谍照')."""
    paths = list(paths)
    if not paths:
        return {}
    split = [p.split("/") for p in paths]
    common = 0
    while all(len(s) > common + 1 for s in split) and len({s[common] for s in split}) == 1:
        common += 1
    return {p: "/".join(s[common:]) for p, s in zip(paths, split)}


CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;
margin:24px;color:#222;max-width:1360px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:13px}table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.fail{background:#fbe3e3;color:#8b0000;font-weight:600}.warn{background:#fff3d6;color:#7a4b00}
.pass{color:#1a7f37}.note{color:#666}tr.changed td{border-top:2px solid #7b3294}
tr.unpublished td{color:#999}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px}
img{max-width:100%;display:block;margin:8px 0}.cards{display:flex;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px 10px;flex:1 1 0;font-size:13px}.card b{font-size:20px;display:block}
.legend{font-size:12px;color:#555}
"""


def build_report(data: ReportData, generated_at: str | None = None) -> str:
    """The report's HTML page (UTF-8 text, self-contained: inline CSS, figures as base64 PNG) from
    read_report_data's frames. Pure: no Spark, no files. Every text from the tables is escaped
    with html.escape. `generated_at`: the time to print (default: now, UTC)."""
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    days = day_table(data)
    changes = version_changes(days)
    audits = audit_rows(data)
    flags = audits[audits["status"].isin(["fail", "warn"])] if not audits.empty else audits
    labels = {"models": version_labels(days["model_version"]), "rules": version_labels(days["rules_version"])}
    published_days = int(days["version"].notna().sum())

    parts = [f"<h1>Tagging report {_e(data.start)} to {_e(data.end)}</h1>",
             f'<p class="meta">Generated {_e(generated_at)}. Every figure and table shows the version each date '
             f"has published (what readers of the output table see), and the versions the audits refused.</p>",
             '<div class="cards">']
    for value, label in ((len(days), "days in the range"), (published_days, "days with a published version"),
                         (int((days["refused"] > 0).sum()), "days with a refused version"),
                         (len(days) - published_days, "days with nothing published"),
                         (len(flags), "drift flags (warn or fail)"), (len(changes), "model or rules changes")):
        parts.append(f'<div class="card"><b>{_e(value)}</b>{_e(label)}</div>')
    parts.append("</div>")
    parts += _flags_section(flags)
    parts += _figure_sections(data, days, changes, labels)
    parts += _versions_section(days, changes, labels)
    parts += _days_section(days, labels)
    parts += _audits_section(audits)
    parts += _log_section(data.log)
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Tagging report {_e(data.start)} to {_e(data.end)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def _flags_section(flags: pd.DataFrame) -> list[str]:
    out = ["<h2>Drift flags</h2>"]
    if flags.empty:
        return out + ["<p>No audit warned or failed in the range.</p>"]
    return out + [_table(
        ["date", "version", "published", "outcome", "audit", "status", "value", "limit", "message"],
        [[r.dt, r.version, "yes" if r.published else "no", r.outcome, r.audit, r.status, _json(r.value),
          _json(r.limit), r.message] for r in flags.itertuples()],
        cell_classes=[["", "mono", "", "fail" if r.outcome == "refused" else "", "", r.status, "num", "", ""]
                      for r in flags.itertuples()])]


def _figure_sections(data: ReportData, days: pd.DataFrame, changes: pd.DataFrame, labels: dict) -> list[str]:
    out = ["<h2>Volume and coverage</h2>",
           _img(volume_figure(days, _refused_day_stats(data), changes), "volume and coverage over time"),
           "<h2>Tag rates</h2>"]
    rates = tag_rates(data)
    figures, legend = tag_rate_figures(rates, tag_rates(data, published=False), changes, _short_path(rates.columns))
    if not figures:
        out.append("<p>No published tag statistics in the range.</p>")
    out += [_img(b64, f"tag rates over time ({k + 1} of {len(figures)})") for k, b64 in enumerate(figures)]
    if legend:
        out.append(_table(["panel", "tag path"], [[k, p] for k, p in legend.items()]))
    q_png = quarantine_figure(quarantine_table(data), changes)
    out += ["<h2>Quarantine reasons</h2>",
            _img(q_png, "quarantine reasons over time") if q_png else "<p>Nothing was quarantined.</p>"]
    v_png = versions_figure(days, labels["models"], labels["rules"])
    out += ["<h2>Model and rules versions</h2>"] + ([_img(v_png, "model and rules versions over time")] if v_png else [])
    return out


def _versions_section(days: pd.DataFrame, changes: pd.DataFrame, labels: dict) -> list[str]:
    spans = _version_spans(days)
    out = [_table(["label", "kind", "version", "first day", "last day", "days"],
                  [[f"{'M' if kind == 'models' else 'R'}{labels[kind][v]}", kind, v, d0, d1, n]
                   for kind, v, d0, d1, n in spans],
                  cell_classes=[["", "", "mono", "", "", "num"] for _ in spans])]
    if changes.empty:
        return out + ["<p>The published models and rules did not change in the range.</p>"]
    return out + ["<p>Changes (drawn as vertical lines on every plot: dashed purple models, dotted orange "
                  "rules):</p>",
                  _table(["date", "what changed", "before", "after", "detail"],
                         [[r.dt, r.what, r.before, r.after, r.detail] for r in changes.itertuples()],
                         cell_classes=[["", "warn", "mono", "mono", "mono"] for _ in range(len(changes))])]


def _days_section(days: pd.DataFrame, labels: dict) -> list[str]:
    rows, row_classes, cells = [], [], []
    for r in days.itertuples():
        mark = ", ".join(w for w, f in (("models", r.models_changed), ("rules", r.rules_changed)) if f)
        rows.append([r.dt, r.version or ("(written before versioning)" if r.partition else "(none)"), r.outcome,
                     r.published_by, f"M{labels['models'][r.model_version]}" if r.model_version else "",
                     f"R{labels['rules'][r.rules_version]}" if r.rules_version else "", _int(r.items_selected),
                     _int(r.items_tagged), _pct(r.coverage), _pct(r.gate_pass_rate), _int(r.quarantine_rows),
                     r.refused or "", mark])
        row_classes.append("changed" if mark else ("unpublished" if not r.version else ""))
        cells.append(["", "mono", {"refused": "fail", "warned": "warn", "passed": "pass"}.get(r.outcome, ""), "", "",
                      "", "num", "num", "num", "num", "num", "fail" if r.refused else "", "warn" if mark else ""])
    return ["<h2>Days</h2>",
            '<p class="legend">One row per date. <b>published by</b>: the last publish-log action that pointed the '
            "date at its version (override: a refused version published by hand). <b>refused</b>: versions the "
            "audits refused that are not published. A purple top border: the models or rules changed that "
            "day.</p>",
            _table(["date", "published version", "outcome", "published by", "models", "rules", "items selected",
                    "items tagged", "coverage", "gate pass", "quarantine rows", "refused", "changed"],
                   rows, row_classes, cells)]


def _audits_section(audits: pd.DataFrame) -> list[str]:
    if audits.empty:
        return ["<h2>Audit results</h2>", "<p>No audit results recorded in the range.</p>"]
    return ["<h2>Audit results</h2>", _table(
        ["date", "version", "published", "outcome", "audit", "level", "status", "value", "limit", "message"],
        [[r.dt, r.version, "yes" if r.published else "no", r.outcome, r.audit, r.level, r.status, _json(r.value),
          _json(r.limit), r.message] for r in audits.itertuples()],
        cell_classes=[["", "mono", "", {"refused": "fail", "warned": "warn"}.get(r.outcome, ""), "", "", r.status,
                       "num", "", ""] for r in audits.itertuples()])]


def _log_section(log: pd.DataFrame) -> list[str]:
    if log.empty:
        return ["<h2>Publish log</h2>", "<p>Nothing was published, overridden or rolled back in the range.</p>"]
    return ["<h2>Publish log</h2>", _table(
        ["at", "date", "action", "version", "previous version", "actor", "reason"],
        [[r.at, r.dt, r.action, r.version, r.previous_version, r.actor, r.reason] for r in log.itertuples()],
        cell_classes=[["", "", "warn" if r.action in ("override", "rollback", "repair") else "", "mono", "mono", "",
                       ""] for r in log.itertuples()])]


def _json(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _version_spans(days: pd.DataFrame) -> list[tuple[str, str, str, str, int]]:
    """(kind, version, first day, last day, days published) per models and rules version, in order."""
    out = []
    for column, kind in (("model_version", "models"), ("rules_version", "rules")):
        seen: dict[str, list] = {}
        for d, v in zip(days["dt"], days[column]):
            if v:
                seen.setdefault(v, [d, d, 0])
                seen[v][1] = d
                seen[v][2] += 1
        out += [(kind, v, d0, d1, n) for v, (d0, d1, n) in seen.items()]
    return out
