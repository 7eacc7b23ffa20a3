"""LLM-head bench: items/s of a causal-lm head (models/causal_lm.py) as the number of labels grows,
in single and multi mode, with and without the shared prompt prefix. Cost figures only: the model
is a random Llama built from a config (no hub is reachable), so the scores mean nothing.

    .venv/bin/python scripts/llm_bench.py --threads 1 --out /tmp/llm_bench.json

For each (mode, labels, share_prefix) it scores the same --items texts (~120 characters, cut to
--max-length tokens) once to warm up on 2 texts, then times predict_proba over all of them; prints a
table (items/s, ms per item, ms per (item, continuation)) and the load average before and after.
Figures: docs/playbooks/causal-lm.md.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
import time
from pathlib import Path

import click

WORDS = ["比亚迪", "吉利", "长安", "小米", "理想", "新款", "车型", "正式", "上市", "售价", "万元", "起", "续航", "公里",
         "路试", "谍照", "曝光", "内饰", "外观", "前脸", "尾灯", "轮毂", "配置", "降价", "促销", "发布会", "亮相", "车展",
         "，", "。"]
LABEL_WORDS = ["新车上市", "谍照曝光", "降价促销", "车展亮相", "配置曝光", "内饰实拍", "续航测试", "新车官图", "申报图",
               "预售开启", "实车到店", "对比导购", "试驾评测", "用车养车", "改装文化", "行业新闻"]


def make_texts(n: int, seed: int, chars: int = 120) -> list[str]:
    """n texts of about `chars` characters from WORDS (seeded)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = ""
        while len(t) < chars:
            t += rng.choice(WORDS)
        out.append(t)
    return out


@click.command()
@click.option("--items", default=24, show_default=True, help="Texts scored per configuration.")
@click.option("--labels", "label_counts", default="2,4,8,16", show_default=True, help="Label counts to try.")
@click.option("--layers", default=4, show_default=True)
@click.option("--hidden", default=256, show_default=True)
@click.option("--vocab", default=32000, show_default=True, help="Output vocabulary (a real LLM's is 32k-150k).")
@click.option("--max-length", default=128, show_default=True, help="Text tokens (one per character here).")
@click.option("--batch-size", default=16, show_default=True, help="Contexts per forward pass (predict_proba).")
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads.")
@click.option("--out", "out_path", default=None, help="Also write the rows as JSON here.")
def main(items, label_counts, layers, hidden, vocab, max_length, batch_size, threads, out_path):
    """Time a random causal-lm head for each label count, mode and prefix setting; print the table."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tagger.measure.random_heads import build_random_causal_lm
    from tagger.models.loading import load_head
    from tagger.models.causal_lm import write_causal_lm_head

    torch.set_num_threads(threads)
    texts = make_texts(items, seed=7)
    prompt = "请判断下面这篇汽车文章的类别。\n文章：{text}\n类别："
    question, answers = "\n是否属于{label}？答：", {"yes": "是", "no": "否"}
    corpus = "".join(WORDS) + prompt + question + "".join(LABEL_WORDS) + "是否"
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        started = time.perf_counter()
        build_random_causal_lm(base / "ckpt", [corpus], layers=layers, hidden=hidden, heads=max(1, hidden // 64),
                               vocab_size=vocab, seed=0)
        click.echo(f"random llama: {layers} layers, hidden {hidden}, vocab {vocab} ({time.perf_counter() - started:.1f} s "
                   f"to build); {items} texts of ~{len(texts[0])} characters, max_length {max_length}, "
                   f"batch_size {batch_size}, {threads} torch thread(s); load average {load_before[0]:.2f}")
        click.echo(f"{'mode':6} {'labels':>6} {'prefix':>7} {'items/s':>8} {'ms/item':>8} {'ms/cont':>8}")
        for mode in ("single", "multi"):
            for L in (int(x) for x in label_counts.split(",")):
                labels = LABEL_WORDS[:L]
                extra = {"question": question, "answers": answers} if mode == "multi" else {}
                d = base / f"{mode}{L}"
                write_causal_lm_head(d, base / "ckpt", labels, labels, prompt, mode, max_length=max_length,
                                     extra=extra, link=True)
                head = load_head(d, device="cpu")
                C = L * (1 if mode == "single" else 2)
                for share in (True, False):
                    head.predict_proba(texts[:2], batch_size=batch_size, share_prefix=share)  # warm-up
                    t0 = time.perf_counter()
                    head.predict_proba(texts, batch_size=batch_size, share_prefix=share)
                    s = time.perf_counter() - t0
                    row = {"mode": mode, "labels": L, "continuations": C, "share_prefix": share,
                           "items_per_s": items / s, "ms_per_item": 1000 * s / items,
                           "ms_per_continuation": 1000 * s / (items * C)}
                    rows.append(row)
                    click.echo(f"{mode:6} {L:>6} {'shared' if share else 'full':>7} {row['items_per_s']:>8.2f} "
                               f"{row['ms_per_item']:>8.1f} {row['ms_per_continuation']:>8.2f}")
    load_after = os.getloadavg()
    click.echo(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min); "
               f"{os.cpu_count()} cores")
    if out_path:
        Path(out_path).write_text(json.dumps({"rows": rows, "load_before": load_before, "load_after": load_after,
                                              "items": items, "layers": layers, "hidden": hidden, "vocab": vocab,
                                              "max_length": max_length, "batch_size": batch_size,
                                              "threads": threads}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
