"""The shadow run (tagger/lifecycle/shadow.py, `tagger shadow`) on the session's real Spark, demo tables
and trained heads: it writes only the shadow tables, its stored rates are the ones its rows give, a
rerun replaces its partition, and a gate candidate re-runs the heads below it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tagger.cli import main
from conftest import RUN_DATE

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def loosened(head_dir: str, out: Path, factor: float) -> str:
    """A copy of a head artifact with every threshold multiplied by `factor`: a candidate whose scores
    equal the champion's and whose decisions differ."""
    shutil.copytree(head_dir, out)
    sidecar = out / "tagger_head.json"
    spec = json.loads(sidecar.read_text(encoding="utf-8"))
    spec["thresholds"] = [round(t * factor, 4) for t in spec["thresholds"]]
    sidecar.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return str(out)


def warehouse_files(home: Path) -> dict[str, tuple[int, int]]:
    """Every file under the warehouse but the shadow tables': path -> (size, mtime in ns)."""
    out = {}
    for root, _dirs, files in os.walk(home / "warehouse"):
        if "_shadow" in root:
            continue
        for name in files:
            st = os.stat(os.path.join(root, name))
            out[os.path.join(root, name)] = (st.st_size, st.st_mtime_ns)
    return out


def by_hand(rows: list, tag_id: int) -> dict:
    """champion/candidate/both/either counts of one tag id from shadow rows (tag_ids: the candidate's)."""
    champ = [str(tag_id) in (r["champion_tag_ids"] or "").split(",") for r in rows]
    cand = [str(tag_id) in (r["tag_ids"] or "").split(",") for r in rows]
    return dict(champion_items=sum(champ), candidate_items=sum(cand),
                both_items=sum(a and b for a, b in zip(champ, cand)),
                either_items=sum(a or b for a, b in zip(champ, cand)))


@pytest.fixture(scope="module")
def p0_candidate(cfg, trained, tmp_path_factory):
    p0 = next(h.path for h in cfg.heads if h.name == "p0")
    return loosened(p0, tmp_path_factory.mktemp("shadow") / "p0", 0.5)


def test_shadow_writes_only_the_shadow_tables_and_its_rates_are_its_rows(spark, cfg, trained, tagger_home,
                                                                         p0_candidate):
    from tagger.job.pipeline import run_date

    run_date(spark, cfg, RUN_DATE, log=lambda *_: None)  # a published day, which the shadow run must not touch
    before = warehouse_files(tagger_home)
    published = spark.table(cfg.tables.output).filter(f"dt = '{RUN_DATE}'").orderBy("itemid").collect()

    done = CliRunner().invoke(main, ["--config", str(cfg.source), "shadow", "--date", RUN_DATE, "--head", "p0",
                                     "--candidate", p0_candidate, "--top", "3"])
    assert done.exit_code == 0, done.output
    assert "agreement" in done.output and "tagged by candidate" in done.output

    assert warehouse_files(tagger_home) == before  # nothing but the shadow tables changed
    assert spark.table(cfg.tables.output).filter(f"dt = '{RUN_DATE}'").orderBy("itemid").collect() == published

    rows = [r.asDict() for r in spark.table(cfg.tables.shadow).filter(f"dt = '{RUN_DATE}' AND head = 'p0'").collect()]
    assert sorted(r["itemid"] for r in rows) == sorted(r["itemid"] for r in published)
    # same pass, same champion: its tag ids are the published ones
    assert {r["itemid"]: r["champion_tag_ids"] for r in rows} == {r["itemid"]: r["tag_ids"] for r in published}
    stats = [r.asDict(recursive=True) for r in
             spark.table(cfg.tables.shadow_stats).filter(f"dt = '{RUN_DATE}' AND head = 'p0'").collect()]
    assert stats and {r["source_head"] for r in stats} == {"p0"}
    looser = 0
    for s in stats:
        hand = by_hand(rows, s["tag_id"])
        assert {k: s[k] for k in hand} == hand, s["tag_path"]
        assert s["items"] == len(rows)
        assert s["champion_rate"] == pytest.approx(hand["champion_items"] / len(rows))
        assert s["candidate_rate"] == pytest.approx(hand["candidate_items"] / len(rows))
        if hand["either_items"]:
            assert s["agreement"] == pytest.approx(hand["both_items"] / hand["either_items"])
        # halved thresholds, equal scores: the candidate tags a superset
        assert hand["candidate_items"] >= hand["champion_items"] == hand["both_items"]
        looser += hand["candidate_items"] > hand["champion_items"]
        assert len(s["disagreements"]) <= 3
        for d in s["disagreements"]:
            assert d["champion_score"] == d["candidate_score"] and d["tagged_by"] == "candidate"
    assert looser > 0

    again = CliRunner().invoke(main, ["--config", str(cfg.source), "shadow", "--date", RUN_DATE, "--head", "p0",
                                      "--candidate", p0_candidate, "--top", "3"])
    assert again.exit_code == 0, again.output
    assert spark.table(cfg.tables.shadow).filter(f"dt = '{RUN_DATE}' AND head = 'p0'").count() == len(rows)
    assert spark.table(cfg.tables.shadow_stats).filter(f"dt = '{RUN_DATE}' AND head = 'p0'").count() == len(stats)


def test_a_gate_candidate_reruns_and_compares_the_heads_below_it(spark, cfg, trained, tmp_path):
    from tagger.lifecycle.shadow import compared_heads, run_shadow

    assert compared_heads(cfg, "gate") == ["gate", "p0"]  # p0 is gated by gate; p1 is not
    gate = next(h.path for h in cfg.heads if h.name == "gate")
    result = run_shadow(spark, cfg, RUN_DATE, "gate", loosened(gate, tmp_path / "gate", 0.5), top=2, log=lambda *_: None)
    heads = set(result.per_tag["source_head"])
    assert heads == {"gate", "p0"}
    p0 = result.per_tag[result.per_tag["source_head"] == "p0"]
    # a looser gate passes more rows: p0 runs on them and tags at least as many items
    assert (p0["candidate_items"] >= p0["champion_items"]).all() and p0["candidate_items"].sum() > 0
    # rows only the candidate gate passed: p0 scored them on the candidate side only (champion score 0)
    p0_paths = set(p0["tag_path"])
    new_rows = result.disagreements[result.disagreements["tag_path"].isin(p0_paths)]
    assert len(new_rows) and (new_rows["champion_score"] == 0).any()


@pytest.mark.parametrize("args, needle", [
    (["--head", "p9", "--candidate", "/nowhere"], "--head p9: not a head"),
    (["--head", "p0", "--candidate", "/nowhere"], "--candidate /nowhere: no such directory"),
    (["--head", "p0", "--candidate", "models:/p0"], "--candidate 'models:/p0' is not a registry model URI"),
    (["--head", "p0", "--candidate", "{tmp}"], "--candidate {tmp}: not a usable head artifact"),
])
def test_bad_options_are_one_line_and_exit_2_before_spark_starts(cfg, tmp_path, args, needle):
    """Checked before the session starts: no traceback, no Spark (a bad models:/ URI was a traceback
    after Spark had started)."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = CliRunner().invoke(main, ["--config", str(cfg.source), "shadow", "--date", RUN_DATE, *args])
    assert done.exit_code == 2, done.output
    assert needle.replace("{tmp}", str(tmp_path)) in done.output and "Traceback" not in done.output


def test_top_zero_prints_no_claim_about_disagreements():
    import pandas as pd

    from tagger.lifecycle.shadow import ShadowResult, format_shadow

    per_tag = pd.DataFrame([dict(tag_id=1, tag_path="a/b", source_head="p0", items=10, champion_items=2,
                                 candidate_items=4, champion_rate=0.2, candidate_rate=0.4, both_items=2,
                                 either_items=4, agreement=0.5)])
    empty = pd.DataFrame(columns=["tag_path", "itemid", "excerpt", "champion_score", "candidate_score", "tagged_by",
                                  "rank"])
    text = format_shadow(ShadowResult("2024-01-03", "p0", "p0=a", "p0=b", 10, per_tag, empty, 1.0, top=0))
    assert "50.00%" in text and "no score or decision differs" not in text
    assert "no score or decision differs" in format_shadow(
        ShadowResult("2024-01-03", "p0", "p0=a", "p0=b", 10, per_tag, empty, 1.0, top=5))
