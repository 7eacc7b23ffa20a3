"""MODEL_CARD.md for a head, from an evaluation report (tagger.models.evaluate) and the sidecar."""
from __future__ import annotations

import json

from .decision import DECISION_HELP
from .spec import HeadSpec


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def _num(x: float) -> str:
    return f"{x:.4f}"


def _decision_text(decision: dict) -> str:
    if decision.get("top_k") is not None:
        return f"ranking mode: exactly the top {decision['top_k']} enabled labels per item (thresholds ignored)"
    parts = ["a label is emitted when its score (rounded to 4 decimals) >= its threshold and it is enabled"]
    if decision.get("min_labels"):
        parts.append(f"at least {decision['min_labels']} label(s) per item (the next highest-scoring enabled ones)")
    if decision.get("max_labels") is not None:
        parts.append(f"at most {decision['max_labels']} label(s) per item (the highest-scoring)")
    return "; ".join(parts)


def render_model_card(report: dict, spec: HeadSpec, png_name: str = "pr_curve.png") -> str:
    """MODEL_CARD.md as Markdown text: the head's identity, decision rule, training and calibration
    blocks of the sidecar `spec`, the evaluation `report`'s per-label results (an
    evaluate_artifact report dict), the label distribution, the PR-curve image `png_name` (a
    relative file name) and the decision block reference. KeyError if the report lacks a key."""
    data = report["data"]
    lines = [
        f"# Model card: {spec.head}",
        "",
        "| | |",
        "|---|---|",
        f"| head | `{_cell(spec.head)}` |",
        f"| architecture | {spec.arch} |",
        f"| version | `{_cell(spec.version)}` |",
        f"| decision digest | `{report['decision_digest']}` (labels, thresholds, enabled, decision block) |",
        f"| labels | {len(spec.labels)} |",
        f"| max length | {spec.max_length} |",
        f"| evaluated | {report['date']} (UTC) |",
        f"| data | {_cell(data['file'] or 'in memory')}, {data['n']:,} items"
        + (f", sha256 `{data['sha256']}`" if data.get("sha256") else "") + " |",
        "",
        f"Decision rule: {_decision_text(report['decision'])}.",
        "",
    ]
    trained = spec.extra.get("trained_on")
    lines += ["## Training", ""]
    if trained:
        lines += ["| parameter | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in trained.items()]
    else:
        lines.append("No `trained_on` block in the sidecar (a foreign checkpoint, or trained elsewhere).")
    lines.append("")
    cal = spec.extra.get("calibration")
    lines += ["## Calibration", ""]
    if cal:
        d = cal.get("data") or {}
        lines += [
            f"Thresholds fitted on {_cell(d.get('file') or 'in-memory data')} "
            f"({cal.get('n_items', 0):,} items{', sha256 `' + d['sha256'] + '`' if d.get('sha256') else ''}) "
            f"on {cal.get('date', '?')}: per label the "
            + ("threshold with the best dev F1 among those" if cal.get("objective") == "f1" else "lowest threshold")
            + f" whose dev precision reaches {cal.get('target_precision')}"
            + (f" (its {cal['confidence']:.0%} lower bound, not only the dev figure)"
               if cal.get("confidence", 0.5) > 0.5 else "")
            + f"; labels with fewer than {cal.get('min_positives')} dev positives, or "
            f"that cannot reach the target, are switched off. Dev macro-F1 {cal.get('dev_macro_f1', 0):.4f}, "
            f"micro-F1 {cal.get('dev_micro_f1', 0):.4f} with the final decisions.",
            "",
            "| label | threshold | on | dev precision | dev recall | dev F1 | dev positives | reason |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, m in (cal.get("labels") or {}).items():
            lines.append(f"| {_cell(name)} | {m.get('threshold', 0):.4f} | {'yes' if m.get('enabled') else 'no'} | "
                         f"{_num(m.get('precision', 0))} | {_num(m.get('recall', 0))} | {_num(m.get('f1', 0))} | "
                         f"{m.get('positives', 0)} | {_cell(m.get('reason', ''))} |")
    else:
        lines.append("Not calibrated with `tagger calibrate` (thresholds as trained, or 0.5 for a foreign checkpoint).")
    lines += [
        "",
        "## Results",
        "",
        "| label | threshold | enabled | precision | recall | F1 | support |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in report["labels"].items():
        state = "yes" if m["enabled"] else f"no: {_cell(m.get('reason', ''))}"
        lines.append(f"| {_cell(name)} | {m['threshold']:.4f} | {state} | {_num(m['precision'])} | "
                     f"{_num(m['recall'])} | {_num(m['f1'])} | {m['support']} |")
    lines += [
        "",
        f"**Macro-F1 {report['macro_f1']:.4f}**, micro-F1 {report['micro_f1']:.4f} (all labels; a switched-off label "
        f"counts with its misses); macro-F1 over enabled labels {report['macro_f1_enabled']:.4f}.",
        "",
    ]
    if report.get("ignored_labels"):
        lines += ["Labels in the data that this head does not have (ignored): "
                  + ", ".join(f"{_cell(k)} ({v})" for k, v in report["ignored_labels"].items()), ""]
    lines += ["## Label distribution (evaluation data)", "", "```", report["distribution"], "```", "",
              "## Precision-recall curves", "",
              f"![Precision-recall curve of every label; dots mark the thresholds in use]({png_name})", ""]
    legend = report.get("pr_curve_legend") or {}
    if legend:
        lines += ["No font with these label names was available, so the figure's legend uses indices:", "",
                  "| legend | label |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in legend.items()]
        lines.append("")
    lines += ["## Decision block reference", "", "```", DECISION_HELP, "```", ""]
    return "\n".join(lines)


__all__ = ["render_model_card"]
