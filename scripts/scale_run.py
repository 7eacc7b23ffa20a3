"""Scale run: N demo items on one day through the whole job (`tagger run`), per stage wall time
and peak memory, for several N, to check that the cost grows linearly.

    .venv/bin/python scripts/scale_run.py --items 100000 --items 1000000 --out scale.json

For each N it makes a fresh TAGGER_HOME under --work (own warehouse and Derby metastore), copies
the trained demo heads into it from --models (default $TAGGER_HOME/models: run `make run` first),
seeds N items on one day with `tagger seed`, copies the demo's golden set (so the audits score it,
as on a day with new models: the dearest day for them), then runs `tagger run` on that day while sampling
the resident memory (RSS) of the process tree once a second: the driver's Python, the JVM (driver
and executor in local mode) and the Python workers. Stage seconds come from the run's summary;
`write_audit_publish_share` is the stage, audit and publish stages' share of the run's seconds.
Measured on 2 CPU cores (README, Speed): 100k items 100 s, 1M items 8.1 min (2026-12-01), plus seeding
(~2 min for 1M).

Backfill mode: D days of N items each, tagged once by the one-pass `tagger backfill` and once by
the per-date loop (`tagger backfill --one-date-at-a-time`), from the same seeded sources into two
sets of output tables, in the same sitting; prints both wall times, the ratio, and whether every
date's published partition holds the same items and tags in both:

    .venv/bin/python scripts/scale_run.py --backfill-days 30 --items 20000 --out backfill.json
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import click
import yaml

REPO = Path(__file__).resolve().parent.parent
DAY = "2024-03-01"


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _kind(pid: int) -> str:
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return "other"
    text = b" ".join(cmd).decode(errors="replace")
    if "java" in os.path.basename(cmd[0].decode(errors="replace")):
        return "jvm"
    if "pyspark.daemon" in text or "pyspark/daemon" in text or "pyspark.worker" in text:
        return "python_workers"
    return "other"


class TreeSampler(threading.Thread):
    """Once a second: RSS of every process below `root`, grouped; keeps the peaks."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.stop = root, threading.Event()
        self.peak = {"driver_python": 0.0, "jvm": 0.0, "python_workers": 0.0, "python_worker_max": 0.0, "total": 0.0}

    def run(self) -> None:
        while not self.stop.is_set():
            kids, seen, todo = _children(), [], [self.root]
            while todo:
                pid = todo.pop()
                seen.append(pid)
                todo.extend(kids.get(pid, []))
            groups = {"driver_python": _rss_mb(self.root), "jvm": 0.0, "python_workers": 0.0}
            worker_max = 0.0
            for pid in seen[1:]:
                kind, rss = _kind(pid), _rss_mb(pid)
                if kind == "python_workers":
                    worker_max = max(worker_max, rss)
                groups[kind if kind in groups else "driver_python"] += rss if kind != "other" else 0.0
            total = sum(groups.values())
            for key, value in (*groups.items(), ("python_worker_max", worker_max), ("total", total)):
                self.peak[key] = max(self.peak[key], round(value, 1))
            self.stop.wait(1.0)


def _config(home: Path, driver_memory: str, output_db: str | None = None) -> Path:
    raw = yaml.safe_load((REPO / "conf" / "tagger.yaml").read_text(encoding="utf-8"))
    raw["rules"] = str(REPO / "conf" / "autoshow_rules.yaml")
    raw["spark"]["conf"]["spark.driver.memory"] = driver_memory
    if output_db:  # the same sources, output tables of their own
        raw["tables"].update(output=f"{output_db}.item_tags", quarantine=f"{output_db}.item_tags_quarantine",
                             metrics=f"{output_db}.item_tags_run_metrics")
    path = home / (f"{output_db}.yaml" if output_db else "tagger.yaml")
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _tagger(config: Path, home: Path, *args: str, sample: bool = False, ok=(0,)) -> tuple[float, str, dict]:
    env = dict(os.environ, TAGGER_HOME=str(home), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "--config", str(config), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(proc.pid) if sample else None
    if sampler:
        sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    if sampler:
        sampler.stop.set()
        sampler.join()
    if proc.returncode not in ok:
        raise click.ClickException(f"tagger {' '.join(args)} failed ({proc.returncode}):\n{out[-3000:]}")
    return seconds, out, sampler.peak if sampler else {}


def scale_run(n: int, work: Path, models: Path, driver_memory: str, log=click.echo) -> dict:
    home = work / f"n{n}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copytree(models, home / "models")
    golden = models.parent / "data" / "test.jsonl"
    if golden.is_file():  # the demo's golden set: scored by the audits, as on a day with new models
        (home / "data").mkdir()
        shutil.copyfile(golden, home / "data" / "test.jsonl")
    config = _config(home, driver_memory)
    log(f"== {n:,} items: seeding {DAY} in {home}")
    seed_s, _, _ = _tagger(config, home, "seed", "--items", str(n), "--start", DAY, "--days", "1")
    log(f"   seeded in {seed_s:.0f}s; running the job")
    # exit 6: the audits refused the day (e.g. the golden set with weak models): still a measured run
    run_s, out, peak = _tagger(config, home, "run", "--date", DAY, sample=True, ok=(0, 6))
    stages = {name: 60 * float(m or 0) + float(sec)  # "[D] stage tag done in 3m05s (elapsed ...)"
              for name, m, sec in re.findall(r"\] stage (\w+) done in (?:(\d+)m)?([\d.]+)s", out)}
    stages["total"] = round(sum(stages.values()), 2)
    selected = int(re.search(r"items selected\s+([\d,]+)", out).group(1).replace(",", "")) if "items selected" in out \
        else None
    publishing = sum(stages.get(k, 0.0) for k in ("stage", "audit", "publish"))
    result = {"items_seeded": n, "items_selected": selected, "seed_seconds": round(seed_s, 1),
              "run_process_seconds": round(run_s, 1), "stage_seconds": stages, "peak_rss_mb": peak,
              "write_audit_publish_share": round(publishing / stages["total"], 3) if stages.get("total") else None,
              "audit_publish_share": round((stages.get("audit", 0) + stages.get("publish", 0)) / stages["total"], 3)
              if stages.get("total") else None, "refused": "the audits refused" in out,
              "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    log(json.dumps(result, indent=2))
    shutil.rmtree(home / "warehouse", ignore_errors=True)  # GBs at 1M; the figures are kept
    return result


def backfill_run(days: int, n: int, work: Path, models: Path, driver_memory: str, log=click.echo) -> dict:
    """One-pass backfill against the per-date loop over `days` seeded days of `n` items each."""
    home = work / f"backfill-{days}x{n}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copytree(models, home / "models")
    config = _config(home, driver_memory)
    end = (date.fromisoformat(DAY) + timedelta(days=days - 1)).isoformat()
    log(f"== backfill {days} days x {n:,} items: seeding {DAY}..{end} in {home}")
    seed_s, _, _ = _tagger(config, home, "seed", "--items", str(n * days), "--start", DAY, "--days", str(days))
    log(f"   seeded in {seed_s:.0f}s")
    result = {"days": days, "items_per_day": n, "seed_seconds": round(seed_s, 1)}
    for mode, args in (("per_date_loop", ["--one-date-at-a-time"]), ("one_pass", [])):
        mode_config = _config(home, driver_memory, output_db=f"bf_{mode}")
        seconds, out, peak = _tagger(mode_config, home, "backfill", "--start", DAY, "--end", end, *args,
                                     sample=True, ok=(0, 6))
        result[mode] = {"seconds": round(seconds, 1), "dates_run": out.count("items selected"),
                        "peak_rss_mb": peak}
        log(f"   {mode}: {seconds:.0f}s")
    result["one_pass_speedup"] = round(result["per_date_loop"]["seconds"] / result["one_pass"]["seconds"], 2)
    compare = ("SELECT count(*) AS differing FROM bf_per_date_loop.item_tags a FULL OUTER JOIN bf_one_pass.item_tags b "
               "ON a.itemid = b.itemid AND a.dt = b.dt WHERE a.itemid IS NULL OR b.itemid IS NULL OR a.tag_ids != b.tag_ids "
               "OR abs(coalesce(a.gate_score, 0) - coalesce(b.gate_score, 0)) > 2e-4")
    _, out, _ = _tagger(config, home, "sql", compare)
    found = re.search(r"\|\s*(\d+)\s*\|", out)
    result["rows_differing"] = int(found.group(1)) if found else out[-500:]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    log(json.dumps(result, indent=2))
    return result


@click.command(help=__doc__)
@click.option("--items", "sizes", multiple=True, type=click.IntRange(min=1000), default=[100_000, 1_000_000],
              show_default=True, help="Items to seed on one day (repeat for several sizes).")
@click.option("--work", type=click.Path(file_okay=False), default="/tmp/tagger-scale", show_default=True,
              help="Where the per-size TAGGER_HOMEs go (needs ~5 GB free at 1M items).")
@click.option("--models", type=click.Path(file_okay=False), default=None,
              help="Directory holding the trained heads (default: $TAGGER_HOME/models).")
@click.option("--driver-memory", default="6g", show_default=True, help="spark.driver.memory of the runs.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Write the JSON here too.")
@click.option("--backfill-days", type=click.IntRange(min=1), default=None,
              help="Backfill mode: this many days of --items items each, one pass against the per-date loop.")
def main(sizes, work, models, driver_memory, out_path, backfill_days):
    models_dir = Path(models or Path(os.environ.get("TAGGER_HOME", REPO / ".tagger")) / "models").resolve()
    from tagger.config import load_config

    missing = [h.name for h in load_config().heads if not (models_dir / h.name / "tagger_head.json").is_file()]
    if missing:
        raise click.ClickException(f"no trained {', '.join(missing)} in {models_dir}: run `make run` (or tagger demo) "
                                   "first.")
    if backfill_days:
        result = backfill_run(backfill_days, sizes[0], Path(work).resolve(), models_dir, driver_memory)
        if out_path:
            Path(out_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return
    results = [scale_run(n, Path(work).resolve(), models_dir, driver_memory) for n in sorted(sizes)]
    if len(results) > 1:
        a, b = results[0], results[-1]
        ratio = b["items_selected"] / a["items_selected"]
        growth = {k: round(b["stage_seconds"][k] / a["stage_seconds"][k], 2)
                  for k in a["stage_seconds"] if a["stage_seconds"].get(k) and k in b["stage_seconds"]}
        click.echo(f"items x{ratio:.1f}; seconds x per stage: {growth} (linear = x{ratio:.1f})")
        results.append({"items_ratio": round(ratio, 2), "stage_seconds_ratio": growth})
    if out_path:
        Path(out_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
