"""The golden-set gate of `tagger promote`: may a candidate version of a head take the champion alias?

The golden set, its precision floor and the minimum number of predictions are the publish audit's
(`publish.audits.golden_set`: path, min_precision, min_predicted) and so is the rule
(tagger.job.audit: golden_set_counts, precision_of, below_floor): the whole cascade is run with the
candidate in the head's place (the other heads as the config has them), so the gate sees what the
daily audit will see. A candidate passes when

- every enabled label of the head that it emits at least min_predicted times on the golden set has
  precision >= min_precision, and
- its macro-F1 over the head's labels is not lower than the current champion's by more than
  `publish.audits.golden_set.max_f1_drop` (absolute; skipped when there is no champion).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tagger.config import Config, ConfigError


@dataclass
class LabelRow:
    """One label of the head on the golden set: its tag path, and per model (champion, candidate) the
    counts of golden_set_counts (None: that model has no such label or there is no champion)."""
    label: str
    path: str
    enabled: bool
    champion: dict | None
    candidate: dict | None


@dataclass
class GateResult:
    """The gate's verdict: passed, the reasons it refused (empty when passed), the per-label rows and
    both macro-F1s (champion None when there is none)."""
    passed: bool
    reasons: list[str]
    rows: list[LabelRow]
    candidate_f1: float
    champion_f1: float | None
    settings: dict = field(default_factory=dict)


def _f1(c: dict | None) -> float:
    if not c or not (c["predicted"] or c["labelled"]):
        return 0.0
    p = c["correct"] / c["predicted"] if c["predicted"] else 0.0
    r = c["correct"] / c["labelled"] if c["labelled"] else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def macro_f1(counts: list[dict | None]) -> float:
    """The mean F1 of the labels given (counts of golden_set_counts; None or never labelled nor
    predicted counts as 0)."""
    return sum(_f1(c) for c in counts) / len(counts) if counts else 0.0


def synthetic_tag_index(cfg: Config, rules, heads) -> dict[str, tuple[int, str]]:
    """A tag index (tag path -> (id, name)) holding every rule tag, every head label's path and all
    their ancestors: what the Tagger needs to run without the tag dimension (ids are positions)."""
    paths = {r.tag for r in rules.rules}
    for conf, spec in heads:
        paths.update(f"{conf.parent}/{label}" for label in spec.labels)
    every = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 2)}
    return {p: (i, p.rsplit("/", 1)[-1]) for i, p in enumerate(sorted(every), 1)}


def golden_tagger(cfg: Config, head: str, head_dir: str):
    """A tagger.udfs.tagging.Tagger over the config's cascade with head `head` read from `head_dir`
    (the other heads' models:/ paths resolved as the job resolves them). Raises ArtifactError for an
    unreadable artifact, RegistryError for an unresolvable head path."""
    from tagger.lifecycle.uris import is_registry_uri
    from tagger.models.spec import read_spec
    from tagger.rules_file import load_rules
    from tagger.udfs.tagging import Tagger, TaggerSpec

    heads = tuple(dataclasses.replace(h, path=head_dir) if h.name == head else h for h in cfg.heads)
    cfg = dataclasses.replace(cfg, heads=heads)
    if any(is_registry_uri(h.path) for h in heads):
        from tagger.lifecycle.registry import resolve_heads

        cfg, _ = resolve_heads(cfg)
    rules = load_rules(cfg.rules_path)
    index = synthetic_tag_index(cfg, rules, [(h, read_spec(h.path)) for h in cfg.heads])
    return Tagger(TaggerSpec(heads=cfg.heads, gate_head=cfg.gate_head, rules=rules, tag_index=index,
                             batch_size=cfg.tagging.batch_size))


def golden_settings(cfg: Config) -> dict:
    """publish.audits.golden_set's settings; ConfigError when its path is not set or not a file."""
    from pathlib import Path

    s = cfg.publish.audits["golden_set"].settings
    if not s["path"] or not Path(s["path"]).is_file():
        raise ConfigError(f"{cfg.source}: key 'publish.audits.golden_set.path': no golden set at "
                          f"{s['path'] or '(not set)'}, and `tagger promote` scores every candidate on it. Fix: "
                          f"point it at a JSON-lines file of {{\"text\", \"labels\": [tag paths]}} (the demo's is "
                          f"$TAGGER_HOME/data/test.jsonl, written by `tagger train`).")
    return s


def evaluate_promotion(cfg: Config, head: str, candidate_dir: str, champion_dir: str | None) -> GateResult:
    """Score the candidate (and the champion, when there is one) on the golden set through the whole
    cascade and apply the gate (module docstring). Raises ConfigError (no golden set, unknown head),
    ArtifactError, DataError (an unreadable golden set)."""
    from tagger.job.audit import below_floor, golden_set_counts, precision_of
    from tagger.models.spec import read_spec

    conf = next((h for h in cfg.heads if h.name == head), None)
    if conf is None:
        raise ConfigError(f"--head {head}: not a head of {cfg.source} (heads: {', '.join(h.name for h in cfg.heads)}).")
    s = golden_settings(cfg)
    candidate_spec = read_spec(candidate_dir)
    candidate = golden_set_counts(golden_tagger(cfg, head, candidate_dir), s["path"])
    champion = golden_set_counts(golden_tagger(cfg, head, champion_dir), s["path"]) if champion_dir else None
    champion_labels = set(read_spec(champion_dir).labels) if champion_dir else set()

    rows = []
    for label, on in zip(candidate_spec.labels, candidate_spec.enabled):
        path = f"{conf.parent}/{label}"
        rows.append(LabelRow(label, path, on, (champion or {}).get(path) if label in champion_labels else None,
                             candidate.get(path)))
    reasons = []
    scores = precision_of({r.path: r.candidate for r in rows if r.enabled and r.candidate}, int(s["min_predicted"]))
    for path, (precision, n) in sorted(below_floor(scores, s["min_precision"]).items()):
        reasons.append(f"{path}: golden-set precision {precision:.3f} over {n} predicted < min_precision "
                       f"{s['min_precision']:g}")
    candidate_f1 = macro_f1([r.candidate for r in rows])
    champion_f1 = macro_f1([r.champion for r in rows]) if champion is not None else None
    if champion_f1 is not None and champion_f1 - candidate_f1 > s["max_f1_drop"] + 1e-12:
        reasons.append(f"macro-F1 {candidate_f1:.4f} is {champion_f1 - candidate_f1:.4f} below the champion's "
                       f"{champion_f1:.4f} (max_f1_drop {s['max_f1_drop']:g})")
    return GateResult(passed=not reasons, reasons=reasons, rows=rows, candidate_f1=candidate_f1,
                      champion_f1=champion_f1, settings=dict(s))


def format_gate(result: GateResult, champion: str, candidate: str) -> str:
    """The per-label table, champion vs candidate: precision, recall, F1 and items predicted on the
    golden set, then both macro-F1s and the verdict with its reasons."""
    def cells(c):
        if c is None:
            return ["-"] * 4
        p = c["correct"] / c["predicted"] if c["predicted"] else float("nan")
        r = c["correct"] / c["labelled"] if c["labelled"] else float("nan")
        return [f"{p:.3f}", f"{r:.3f}", f"{_f1(c):.3f}", str(c["predicted"])]

    header = ["label", f"{champion} P", "R", "F1", "pred", f"{candidate} P", "R", "F1", "pred", "labelled"]
    lines = [header]
    for r in result.rows:
        labelled = (r.candidate or r.champion or {"labelled": 0})["labelled"]
        lines.append([r.label + ("" if r.enabled else " (off)"), *cells(r.champion), *cells(r.candidate),
                      str(labelled)])
    from tagger.lifecycle.tables import format_table

    text = [format_table(lines)]
    champ = "-" if result.champion_f1 is None else f"{result.champion_f1:.4f}"
    text.append(f"macro-F1: {champion} {champ}, {candidate} {result.candidate_f1:.4f} "
                f"(min_precision {result.settings.get('min_precision', 0):g} over at least "
                f"{result.settings.get('min_predicted', 0):g} predicted, max_f1_drop {result.settings.get('max_f1_drop', 0):g})")
    text.append("gate: passed" if result.passed else "gate: REFUSED\n" + "\n".join(f"  {r}" for r in result.reasons))
    return "\n".join(text)
