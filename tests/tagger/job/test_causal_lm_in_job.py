"""An LLM head (`arch: causal-lm`) in the job: configured like any head, checked at job start
(build_spec), run by the tagging pass on Spark (tag_items: mapInPandas on Python workers), and a
rerun gives equal rows. A tiny random Llama with a LoRA adapter (tests/models/test_causal_lm.py
checks its scores against transformers)."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tagger.config import HeadConf
from tagger.job.tag import build_spec, tag_items
from tagger.lifecycle.gate import synthetic_tag_index
from tagger.measure.random_heads import build_random_causal_lm
from tagger.models.causal_lm import write_causal_lm_head
from tagger.models.loading import load_head
from tagger.models.spec import read_spec
from tagger.rules_file import load_rules

LABELS = ["新车上市", "谍照", "降价"]
PROMPT = "文章：{text}\n类别："
TEXTS = [f"{brand}{what}{i}" for i, (brand, what) in enumerate(
    (b, w) for b in ("比亚迪", "吉利", "长安", "小米", "理想") for w in ("新车正式上市", "路试谍照曝光", "全系降价促销",
                                                                     "车展亮相", "内饰实拍", "续航测试"))]


@pytest.fixture(scope="module")
def llm_head(tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    base = tmp_path_factory.mktemp("llm_job")
    corpus = "".join(TEXTS) + PROMPT + "".join(LABELS) + "\n是否？"
    model, _ = build_random_causal_lm(base / "ckpt", [corpus], layers=2, hidden=32, heads=4, seed=3)
    torch.manual_seed(5)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(str(base / "adapter"))
    out = base / "llm"
    write_causal_lm_head(out, base / "ckpt", LABELS, LABELS, PROMPT, "multi", peft=base / "adapter",
                         extra={"question": "\n是否{label}？", "answers": {"yes": "是", "no": "否"}})
    # thresholds at each label's median score: about half the items get each tag (random weights
    # score every text near alike, so 0.5 would pass all or nothing)
    scores = load_head(out).predict_proba(TEXTS)
    sidecar = out / "tagger_head.json"
    raw = json.loads(sidecar.read_text(encoding="utf-8"))
    raw["thresholds"] = [float(round(t, 4)) for t in np.median(np.round(scores, 4), axis=0)]
    sidecar.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return out


def test_a_causal_lm_head_runs_in_the_job_and_a_rerun_gives_equal_rows(spark, cfg, llm_head):
    """Break: drop the "causal-lm" branch of load_head: the head no longer loads anywhere (ArtifactError,
    no model.safetensors in its directory), here and on the workers."""
    conf = HeadConf("llm", str(llm_head), "内容标签/新车资讯", None)
    llm_cfg = dataclasses.replace(cfg, heads=(conf,), gate_head="llm")
    index = synthetic_tag_index(llm_cfg, load_rules(llm_cfg.rules_path), [(conf, read_spec(llm_head))])
    spec, versions, _ = build_spec(llm_cfg, index, "synthetic", 1)
    assert versions.startswith("llm=") and "@" in versions
    items = spark.createDataFrame(pd.DataFrame({"itemid": [str(100 + i) for i in range(len(TEXTS))],
                                                "dtype": "article", "doc_text": TEXTS}))
    runs = []
    for run_id in ("run-1", "run-2"):
        tagged, loads = tag_items(spark, llm_cfg, items, spec, run_id)
        rows = sorted((r.asDict(recursive=True) for r in tagged.collect()), key=lambda r: r["itemid"])
        tagged.unpersist()
        runs.append([{k: v for k, v in r.items() if k != "run_id"} for r in rows])
    first, second = runs
    assert len(first) == len(TEXTS) and first == second  # a rerun gives equal rows
    llm_tags = [t for r in first for t in r["tags"] if t["source"] == "llm"]
    assert 0 < len(llm_tags) < len(TEXTS) * len(LABELS)  # tags come out, and not every label on every item
    for r in first:
        paths = [t["tag_path"] for t in r["tags"]]
        assert len(paths) == len(set(paths))  # no item gets the same tag twice
    # the job's scores are the head's own (rounded as the job writes them)
    head = load_head(llm_head)
    expected = np.round(head.predict_proba(TEXTS), 4)
    got = {(r["itemid"], t["tag_name"]): t["score"] for r in first for t in r["tags"] if t["source"] == "llm"}
    for (itemid, name), score in got.items():
        assert abs(score - expected[int(itemid) - 100, LABELS.index(name)]) <= 1e-4
