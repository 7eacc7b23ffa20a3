"""`tagger report` on real Hive tables: five days staged and published through tagger.job.publish,
their statistics computed by tagger.job.stats from real tagged rows, versions recorded with their
audits, one day refused and never published, one refused and published by override, one rolled
back. The page is checked without a browser: it parses, its images are real PNGs, its tables show
the published versions (not the newest staged ones), the refused audit's message (escaped), and
the day the models changed.

Breaks these tests catch: reading the newest staged version of a date instead of the published
one (the rolled-back day shows 7 items); dropping refused versions from the audit tables; an
unescaped message (the <script> in the audit text); a figure that is not a PNG; the model change
marked on the wrong day or not at all."""
from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from conftest import write_config
from tagger.cli import main
from tagger.config import load_config
from tagger.job.publish import publish, record_version, rollback, stage
from tagger.job.report import build_report, read_report_data
from tagger.job.stats import daily_stats, write_daily_stats
from tagger.job.write import ensure_tables

DAYS = ["2024-04-01", "2024-04-02", "2024-04-03", "2024-04-04", "2024-04-05"]
OLD_MODELS, NEW_MODELS = "gate=1@aaaa1111;p0=1@bbbb2222", "gate=1@aaaa1111;p0=2@cccc3333"
RULES = "1@rules001"
REFUSED_MESSAGE = "412 items selected = 0.41 x the trailing median <script>alert(1)</script>"
SPY = "内容标签/新车资讯/谍照"
SHOW = "内容标签/车展/北京车展"
OUT = "itemid string, dtype string, gate_score double, tags array<struct<tag_id: bigint, tag_name: string, " \
      "tag_path: string, score: double, source: string>>, tag_ids string, model_version string, " \
      "rules_version string, run_id string"
Q = "itemid string, source string, scope string, reason string, raw_excerpt string, run_id string"
PNG = b"\x89PNG\r\n\x1a\n"


def _edit(raw):
    raw["tables"].update(output="report_tests.item_tags", quarantine="report_tests.item_tags_quarantine",
                         metrics="report_tests.item_tags_run_metrics")


@pytest.fixture(scope="module")
def report_cfg(tmp_path_factory, spark, tagger_home):
    path = write_config(tmp_path_factory.mktemp("report"), edit=_edit)
    cfg = load_config(path)
    ensure_tables(spark, cfg.tables)
    return path, cfg


def _version(spark, tables, dt, run, items, spied, quarantined, model, outcome, audits):
    """Stage one version of dt with `items` tagged rows (`spied` carry the spy-shot tag from p0, all
    carry the show tag from a rule), its statistics and its versions row; returns the version."""
    tag = lambda path, tag_id, source: (tag_id, path.rsplit("/", 1)[1], path, 0.9, source)  # noqa: E731
    rows = [(f"i{k}", "news", 0.5, [tag(SHOW, 11, "rule")] + ([tag(SPY, 12, "p0")] if k < spied else []),
             "", model, RULES, run) for k in range(items)]
    rows.append(("empty", "news", 0.1, [], "", model, RULES, run))  # one item with no tag
    out = spark.createDataFrame(rows, OUT)
    q = spark.createDataFrame([(f"q{k}", "asr", "row", "asr_malformed_json", "x", run) for k in range(quarantined)], Q)
    staged = stage(spark, tables, dt, run, out, q)
    stats = daily_stats(out, {"asr_malformed_json": quarantined} if quarantined else {}, items + 1, "gate", dt,
                        staged.version)
    write_daily_stats(spark, tables.daily_stats, stats)
    record_version(spark, tables, staged, model, RULES, outcome, audits)
    return staged.version


def _audit(status, message, audit="volume"):
    return dict(audit=audit, level="fail", status=status, value=0.41 if status == "fail" else 1.0,
                limit=[0.6, 2.0], message=message)


@pytest.fixture(scope="module")
def history(spark, report_cfg):
    """Five days; returns {dt: the version readers see} and the refused versions."""
    _, cfg = report_cfg
    t = cfg.tables
    ok = [_audit("pass", "1,000 items selected = 1.00 x the trailing median")]
    published, refused = {}, {}
    for i, dt in enumerate(DAYS):
        model = OLD_MODELS if i < 2 else NEW_MODELS  # the models change on 2024-04-03
        if dt == "2024-04-04":  # refused, nothing published: readers see no partition
            refused[dt] = _version(spark, t, dt, f"run{i}r", 412, 40, 2, model, "refused",
                                   [_audit("fail", REFUSED_MESSAGE)])
            continue
        v = _version(spark, t, dt, f"run{i}", 1000 + i, 100 + 50 * (i >= 2), i, model, "passed", ok)
        publish(spark, t, dt, v)
        published[dt] = v
    # 2024-04-02: a newer version published, then rolled back: readers see the first one.
    newer = _version(spark, t, "2024-04-02", "run1b", 7, 7, 0, OLD_MODELS, "passed", ok)
    publish(spark, t, "2024-04-02", newer)
    rollback(spark, t, "2024-04-02", None, "wrong input")
    # 2024-04-05: a refused version reviewed and published by override.
    refused["2024-04-05"] = _version(spark, t, "2024-04-05", "run4o", 990, 300, 1, NEW_MODELS, "refused",
                                     [_audit("fail", "3 tag(s) moved beyond chance: 谍照 +200%", "tag_drift.rates")])
    publish(spark, t, "2024-04-05", refused["2024-04-05"], action="override", reason="launch week: confirmed")
    published["2024-04-05"] = refused["2024-04-05"]
    return published, refused


class _Page(HTMLParser):
    """The parts of the page the tests look at: images' src, and each table as rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.text = [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _table(page: _Page, first_header: str, *more: str) -> list[dict]:
    for rows in page.tables:
        if rows and rows[0][:1 + len(more)] == [first_header, *more]:
            return [dict(zip(rows[0], r)) for r in rows[1:]]
    raise AssertionError(f"no table with headers {first_header, *more}")


def test_report_command_writes_a_page_of_the_published_versions(spark, report_cfg, history, tmp_path):
    from PIL import Image

    path, cfg = report_cfg
    published, refused = history
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["--config", str(path), "report", "--start", DAYS[0], "--end", DAYS[-1],
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 5 day(s)" in result.output and "4 with a published version" in result.output

    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    # volume, one small-multiples figure (2 tags), quarantine, versions timeline; all real PNGs
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw.startswith(PNG)
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
            assert im.size[0] > 300 and im.size[1] > 100

    days = {r["date"]: r for r in _table(page, "date", "published version")}
    assert list(days) == DAYS
    for dt, version in published.items():
        assert days[dt]["published version"] == version
    assert days["2024-04-02"]["items selected"] == "1,002"  # the rolled-back-to version, not the newer one (8)
    assert days["2024-04-04"]["published version"] == "(none)" and days["2024-04-04"]["refused"] == "1"
    assert days["2024-04-05"]["outcome"] == "refused" and days["2024-04-05"]["published by"] == "override"
    assert days["2024-04-03"]["changed"] == "models" and days["2024-04-03"]["models"] == "M2"
    assert [d for d, r in days.items() if r["changed"]] == ["2024-04-03"]

    changes = _table(page, "date", "what changed")
    assert [(c["date"], c["what changed"], c["before"], c["after"]) for c in changes] == [
        ("2024-04-03", "models", OLD_MODELS, NEW_MODELS)]
    assert "p0: 1@bbbb2222 -> 2@cccc3333" in changes[0]["detail"]

    flags = _table(page, "date", "version", "published", "outcome", "audit", "status")
    assert {(f["date"], f["version"], f["status"]) for f in flags} == {
        ("2024-04-04", refused["2024-04-04"], "fail"), ("2024-04-05", refused["2024-04-05"], "fail")}
    refused_row = next(f for f in flags if f["date"] == "2024-04-04")
    assert refused_row["message"] == REFUSED_MESSAGE and refused_row["published"] == "no"
    assert "<script>" not in text and "&lt;script&gt;" in text  # escaped, shown as text
    audits = _table(page, "date", "version", "published", "outcome", "audit", "level")
    assert {a["date"] for a in audits} == set(DAYS)
    log = _table(page, "at", "date", "action")
    assert [r["action"] for r in log if r["date"] == "2024-04-02"] == ["publish", "publish", "rollback"]
    assert any(r["action"] == "override" and r["reason"] == "launch week: confirmed" for r in log)


def test_the_frames_hold_only_published_and_refused_versions(spark, report_cfg, history):
    _, cfg = report_cfg
    published, refused = history
    data = read_report_data(spark, cfg.tables, DAYS[0], DAYS[-1])
    assert dict(zip(data.days["dt"], data.days["version"])) == {d: published.get(d) for d in DAYS}
    assert set(zip(data.stats["dt"], data.stats["version"])) == set(published.items()) | set(refused.items())
    spy = data.stats[(data.stats["tag_path"] == SPY) & data.stats["published"]].set_index("dt")["items"]
    assert spy.to_dict() == {"2024-04-01": 100, "2024-04-02": 100, "2024-04-03": 150, "2024-04-05": 300}
    # a date outside the range is not read
    narrow = read_report_data(spark, cfg.tables, "2024-04-02", "2024-04-03")
    assert set(narrow.stats["dt"]) == set(narrow.versions["dt"]) == {"2024-04-02", "2024-04-03"}
    with pytest.raises(ValueError, match="after its end"):
        read_report_data(spark, cfg.tables, DAYS[-1], DAYS[0])


def test_an_empty_range_is_a_page_without_figures_of_data(spark, report_cfg, history):
    _, cfg = report_cfg
    text = build_report(read_report_data(spark, cfg.tables, "2023-01-01", "2023-01-03"),
                        generated_at="2024-01-01T00:00:00+00:00")
    page = _parse(text)
    assert len(page.images) == 1  # the (empty) volume figure only
    assert "No published tag statistics in the range." in text and "Nothing was quarantined." in text
    days = _table(page, "date", "published version")
    assert [r["published version"] for r in days] == ["(none)"] * 3
    json.dumps(text)  # plain text, nothing binary
