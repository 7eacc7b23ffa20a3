"""Random-weight BERT heads with the configured labels, for speed measurements (`tagger bench
--model bert-base` and scripts/gpu_check.py). No Spark here: the GPU check runs where there is none.

Random weights score every text alike, so a head passes all or nothing at 0.5; the gate's threshold
(and optionally every label's) is set from a text sample so that a chosen share passes, which keeps
the cascade's work (P0 on the gated rows only) realistic.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

SAMPLE_TEXTS = 256  # texts scored to place the thresholds


def build_bert_heads(cfg, out_dir: Path, texts: list[str], tag_index, max_length: int, gate_share: float,
                     log, size: str = "bert-base", label_share: float | None = None) -> tuple:
    """Random-weight BERT artifacts of `size` (tagger.models.bert_head.SIZES) for every head of
    `cfg.heads` (a tagger.config.Config), each in out_dir/<head name> (reused if one is there), with
    the labels `tagger train` would give it (tagger.config.head_labels over `tag_index`'s paths),
    WordPiece vocabularies built on `texts`. The gate's first-label threshold is set so that
    `gate_share` of a sample of `texts` passes (0: left at 0.5); with `label_share`, every other
    head's thresholds too, label by label. `log` gets one line per head built and per threshold set.
    Returns cfg.heads with their paths replaced (HeadConf tuple). Raises ConfigError from
    head_labels (a parent without children) and FileExistsError if out_dir/<head> holds something
    that is not a head artifact."""
    from tagger.config import head_labels
    from tagger.models.loading import load_head
    from tagger.models.spec import read_spec, write_spec
    from tagger.models.training import build_random_bert_head

    heads = []
    for head in cfg.heads:
        path = Path(out_dir) / head.name
        labels = head_labels(head, tag_index)  # the rule `tagger train` uses
        if not (path / "tagger_head.json").is_file():
            started = time.perf_counter()
            build_random_bert_head(path, labels, texts, size=size, max_length=max_length, head=head.name,
                                   seed=len(heads))
            log(f"built random {size} head {head.name} ({len(labels)} labels) in {path} "
                f"({time.perf_counter() - started:.1f}s)")
        heads.append(dataclasses.replace(head, path=str(path)))
    sample = texts[:SAMPLE_TEXTS]
    for head in heads:
        share = gate_share if head.name == cfg.gate_head else label_share
        spec = read_spec(head.path)
        if not share or spec.extra.get("bench_gate_share") == share:
            continue
        scores = np.round(load_head(head.path).predict_proba(sample, batch_size=64).astype(np.float64), 4)
        if head.name == cfg.gate_head:  # the gate decides on its first label only
            spec.thresholds = [float(np.quantile(scores[:, 0], 1.0 - share, method="higher"))] + list(spec.thresholds[1:])
        else:
            spec.thresholds = [float(np.quantile(scores[:, j], 1.0 - share, method="higher"))
                               for j in range(scores.shape[1])]
        spec.extra["bench_gate_share"] = share
        write_spec(head.path, spec)
        passing = np.mean(scores[:, 0] >= spec.thresholds[0])
        log(f"{head.name} threshold {spec.thresholds[0]:.4f}: {passing:.1%} of a {len(sample)}-text sample "
            f"passes (target {share:.0%})" + ("" if head.name == cfg.gate_head else ", each label alike"))
    return tuple(heads)
