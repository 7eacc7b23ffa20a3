"""What one run did (`RunSummary`, printed and stored in the metrics table), how it is computed
from the run's cached results, and the run id."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tagger.config import Config
from tagger.udfs.hierarchy import SOURCE as HIERARCHY


@dataclass
class RunSummary:
    """One run's counts, tags, quarantine reasons, stage seconds (s), versions and model loads."""
    run_date: str
    run_id: str
    items_selected: int = 0
    items_tagged: int = 0
    items_with_tags: int = 0
    items_quarantined: int = 0
    quarantine_rows: int = 0
    tag_counts: dict[str, int] = field(default_factory=dict)
    # tag path -> {who emitted it: items}: a head's name, "rule" or "hierarchy" (udfs/tagging.py's source)
    tag_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    rules_version: str = ""
    disabled_labels: list[str] = field(default_factory=list)
    model_loads: int = 0  # heads loaded, summed over Python workers
    python_workers: int = 0  # distinct Python worker processes that tagged
    implied_parents: int = 0  # parent tags added because a child tag was emitted without its parent
    rows_through_models: int = 0  # = items_tagged when the tag stage ran once (a recompute shows here)
    version: str = ""  # the staged version (tagger/job/publish.py)
    outcome: str = ""  # passed | warned | refused (by the audits)
    audits: list = field(default_factory=list)  # the audit results (tagger/job/audit.py)
    repaired: str | None = None  # a version the run found half-published and mended
    worker_devices: dict[str, str] = field(default_factory=dict)  # host:pid -> device (udfs/devices.py)

    def format(self) -> str:
        """The summary as the lines `tagger run` prints."""
        lines = [
            f"run {self.run_date}  run_id={self.run_id}",
            f"  items selected     {self.items_selected:>9,}",
            f"  items tagged       {self.items_tagged:>9,}   ({self.items_with_tags:,} with at least one tag)",
            f"  items quarantined  {self.items_quarantined:>9,}   ({self.quarantine_rows:,} quarantine rows in all)",
        ]
        for reason, n in sorted(self.quarantine_reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {n:>7,}  {reason}")
        lines.append("  tags:")
        for path, n in sorted(self.tag_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"      {n:>7,}  {path}{_emitted_by(self.tag_sources.get(path))}")
        if self.implied_parents:
            lines.append(f"  {self.implied_parents:,} parent tags implied by a child tag the heads disagreed on "
                         f"(source 'hierarchy')")
        if self.disabled_labels:
            lines.append("  labels switched off in their artifacts: " + ", ".join(self.disabled_labels))
        loaded = (f"models loaded {self.model_loads} times in {self.python_workers} Python worker(s)" if self.model_loads
                  else f"models already loaded in {self.python_workers} reused Python worker(s) (an earlier date)")
        lines.append(f"  {loaded}; {self.rows_through_models:,} rows through the models")
        if self.worker_devices:
            devices = Counter(self.worker_devices.values())
            lines.append("  devices: " + ", ".join(f"{d} x{n}" for d, n in sorted(devices.items())))
        if self.audits:
            from tagger.job.audit import format_results

            published = {"passed": "published", "warned": "published with warnings",
                          "refused": "REFUSED, not published"}.get(self.outcome, self.outcome)
            lines.append(f"  version {self.version}: {published}")
            lines.append(format_results(self.audits))
        if self.repaired:
            lines.append(f"  repaired: the quarantine was pointed back at version {self.repaired} (a crash between "
                         f"two switches of an earlier run)")
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
        lines.append(f"  seconds: {stages}")
        lines.append(f"  models: {self.model_version}   rules: {self.rules_version}")
        return "\n".join(lines)


def _emitted_by(sources: dict[str, int] | None) -> str:
    """"  (by p0)" or "  (by rule 12, p0 30)": who emitted a tag, most first; "" when unknown."""
    if not sources:
        return ""
    ranked = sorted(sources.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) == 1:
        return f"  (by {ranked[0][0]})"
    return "  (by " + ", ".join(f"{who} {n:,}" for who, n in ranked) + ")"


# What decides a run's rows, and so its id (docs/cluster.md, "The run id"). Where or how the job ran
# (master, executor sizing, Spark conf, catalog and metastore credentials, torch threads, local paths of
# the same artifacts, the publish audits and the run lock) is left out: the same date with the same
# models gets the same run id on a laptop, on a standalone cluster or on YARN.
RUN_ID_KEYS = ("models", "rules", "tag_dim", "sql", "sources", "speech_window", "text", "heads", "gate_head",
               "batching")
# the SQL files whose text decides which rows are read (changing one changes every run id)
ROW_SQL = ("extract_pool", "extract_asr", "extract_ocr", "extract_tag_dim")


def run_id_inputs(cfg: Config, model_version: str, rules_version: str, tag_index: dict) -> dict:
    """The values the run id hashes, keyed by RUN_ID_KEYS: the models' versions (with their weights'
    digests), the rules' version, a digest of the tag-dimension snapshot (`tag_index`: tag path ->
    (tag id, tag name)), a digest of the extract SQL, the source tables, the speech window (days),
    the text budgets and payload paths, each head's name/parent/gate_by, the gate head and the
    batching settings (texts per forward pass, rows per Arrow batch, partitions as configured)."""
    from tagger.sql_files import read_sql

    def digest(value) -> str:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    t = cfg.tables
    return {
        "models": model_version,
        "rules": rules_version,
        "tag_dim": digest(sorted((path, list(v)) for path, v in tag_index.items())),
        "sql": digest("\n".join(read_sql(name) for name in ROW_SQL)),
        "sources": [t.pool, t.asr, t.ocr, t.tag_dim],
        "speech_window": [cfg.speech_lookback_days, cfg.speech_late_days],
        "text": [cfg.text.max_chars, list(cfg.text.speech_text_fields), cfg.text.payload_paths],
        "heads": [[h.name, h.parent, h.gate_by] for h in cfg.heads],
        "gate_head": cfg.gate_head,
        "batching": [cfg.tagging.batch_size, cfg.tagging.arrow_max_records_per_batch, cfg.tagging.partitions],
    }


def run_fingerprint(run_date: str, cfg: Config, model_version: str, rules_version: str, tag_index: dict) -> str:
    """Deterministic run id "<date>-<10 hex>": a digest of run_id_inputs(). Same date, models,
    rules, tag dimension and row-deciding settings -> same id, identical rows, wherever it ran."""
    payload = json.dumps(run_id_inputs(cfg, model_version, rules_version, tag_index), sort_keys=True,
                         ensure_ascii=False, default=str)
    return f"{run_date}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def tag_counts(tagged: DataFrame) -> tuple[dict[str, int], int, int, dict[str, dict[str, int]]]:
    """From the tagged items (OUTPUT_SCHEMA columns): ({tag path: items carrying it}, parent tags
    implied by the hierarchy, items with at least one tag, {tag path: {source: items}}), where a
    source is the head that emitted the tag, "rule" or "hierarchy"."""
    counts: dict[str, int] = {}
    sources: dict[str, dict[str, int]] = {}
    implied = 0
    for r in (tagged.select(F.explode("tags").alias("t"))
              .groupBy(F.col("t.tag_path").alias("tag_path"), F.col("t.source").alias("source"))
              .agg(F.count("*").alias("n")).collect()):
        counts[r["tag_path"]] = counts.get(r["tag_path"], 0) + r["n"]
        sources.setdefault(r["tag_path"], {})[r["source"]] = r["n"]
        implied += r["n"] if r["source"] == HIERARCHY else 0
    return counts, implied, tagged.filter(F.size("tags") > 0).count(), sources


def quarantine_reasons(quarantine: DataFrame) -> dict[str, int]:
    """{reason code (the part before any ':'): quarantine rows} of the run's quarantine rows."""
    return {r["reason"]: r["n"] for r in quarantine
            .select(F.regexp_extract("reason", r"^[^:]*", 0).alias("reason"))
            .groupBy("reason").agg(F.count("*").alias("n")).collect()}
