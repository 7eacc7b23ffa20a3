"""scripts/llm_bench.py (the cost figures of docs/playbooks/causal-lm.md) runs end to end on a very
small random model and writes one row per (mode, label count, prefix setting). Break: drop the
`for share in (True, False)` loop's False: the rows without the shared prefix are missing."""
import json

from click.testing import CliRunner

from conftest import load_script


def test_the_llm_bench_writes_a_row_per_mode_labels_and_prefix(tmp_path):
    bench = load_script("llm_bench")
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(bench.main, ["--items", "3", "--labels", "2,3", "--layers", "1", "--hidden", "32",
                                          "--vocab", "200", "--max-length", "16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert {(r["mode"], r["labels"], r["share_prefix"]) for r in rows} == {
        (m, L, s) for m in ("single", "multi") for L in (2, 3) for s in (True, False)}
    assert all(r["items_per_s"] > 0 and r["continuations"] == r["labels"] * (1 if r["mode"] == "single" else 2)
               for r in rows)
    assert "load average before" in res.output
