"""LLM heads (`arch: causal-lm`, models/causal_lm.py): a tiny causal LM with random weights built from
a config, a character tokenizer built offline and a LoRA adapter made here with peft. No hub.

The reference in every comparison is a plain transformers computation written out here: the
documented token sequence (prompt head with the tokenizer's BOS, the text cut to max_length tokens,
prompt tail, then the continuation), one full-sequence forward pass without cache or padding, and
log-softmax summed over the verbalizer's (or answer's) tokens.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tagger.cli import main as cli
from tagger.measure.random_heads import build_random_causal_lm
from tagger.models.causal_lm import CausalLMHead, write_causal_lm_head
from tagger.models.loading import load_head
from tagger.models.spec import ArtifactError, artifact_version, read_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

LABELS = ["新车上市", "谍照", "降价"]
VERBALIZERS = ["新车上市", "谍照曝光", "降价促销"]
PROMPT = "文章：{text}\n类别："
QUESTION = "\n是否{label}？"
ANSWERS = {"yes": "是", "no": "否"}
MAX_LENGTH = 24  # characters of text: the long text below is cut (no repeats: its head differs from its tail)
TEXTS = ["比亚迪新款汉EV正式上市，售价20万起", "路试谍照曝光", "", "某品牌全系降价3万元促销，限时优惠到月底，各地经销商库存充足，欢迎到店试驾体验新款车型",
         "Tesla Model Y 价格调整", "新车"]
CORPUS = "".join(TEXTS) + PROMPT + QUESTION + "".join(VERBALIZERS) + "是否?"
WRONG_VERBALIZERS = ["上市新车", "曝光谍照", "促销降价"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """(checkpoint dir, adapter dir): a 2-layer Llama (hidden 32) with random weights and a LoRA
    adapter on its attention (init_lora_weights=False: random A and B, so it changes the scores)."""
    from peft import LoraConfig, get_peft_model

    base = tmp_path_factory.mktemp("causal_lm")
    model, _ = build_random_causal_lm(base / "ckpt", [CORPUS], layers=2, hidden=32, heads=4, seed=3)
    torch.manual_seed(5)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(3.0)
    peft_model.save_pretrained(str(base / "adapter"), safe_serialization=True)
    return base / "ckpt", base / "adapter"


def _make(out, lm, mode, adapter=False, **extra):
    ckpt, peft = lm
    write_causal_lm_head(out, ckpt, LABELS, VERBALIZERS, PROMPT, mode, peft=peft if adapter else None,
                         max_length=MAX_LENGTH, extra=extra)
    return out


@pytest.fixture(scope="module")
def heads(tmp_path_factory, lm):
    base = tmp_path_factory.mktemp("heads")
    extra = {"multi": {"question": QUESTION, "answers": ANSWERS}, "single": {}}
    return {(mode, adapter): _make(base / f"{mode}_{int(adapter)}", lm, mode, adapter, **extra[mode])
            for mode in ("single", "multi") for adapter in (False, True)}


# -- the reference: plain transformers, no cache, no padding --------------------------------------------

def _reference_model(lm, adapter: bool):
    from transformers import AutoModelForCausalLM

    ckpt, peft_dir = lm
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), use_safetensors=True, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(peft_dir))  # not merged: LoRA as its own matmuls
    return model.eval()


def _loglik(model, tok, text, prefix, scored) -> float:
    """log P(scored | prompt(text) + prefix): one forward pass over the whole sequence."""
    before, after = PROMPT.split("{text}")
    ids = (tok(before, add_special_tokens=True)["input_ids"]  # the tokenizer's own BOS
           + tok(text, add_special_tokens=False)["input_ids"][:MAX_LENGTH] + tok(after, add_special_tokens=False)["input_ids"]
           + (tok(prefix, add_special_tokens=False)["input_ids"] if prefix else []))
    target = tok(scored, add_special_tokens=False)["input_ids"]
    full = torch.tensor([ids + target])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=full).logits[0].double(), dim=-1)
    return float(sum(logp[len(ids) - 1 + k, t] for k, t in enumerate(target)))


def reference_scores(lm, mode, adapter, texts=TEXTS) -> np.ndarray:
    from transformers import AutoTokenizer

    model, tok = _reference_model(lm, adapter), AutoTokenizer.from_pretrained(str(lm[0]))
    out = []
    for text in texts:
        if mode == "single":
            ll = np.array([_loglik(model, tok, text, "", v) for v in VERBALIZERS])
            e = np.exp(ll - ll.max())
            out.append(e / e.sum())
        else:
            diff = np.array([_loglik(model, tok, text, QUESTION.replace("{label}", v), ANSWERS["yes"])
                             - _loglik(model, tok, text, QUESTION.replace("{label}", v), ANSWERS["no"])
                             for v in VERBALIZERS])
            out.append(1 / (1 + np.exp(-diff)))
    return np.array(out)


@pytest.mark.parametrize("adapter", [False, True], ids=["base", "lora"])
@pytest.mark.parametrize("mode", ["single", "multi"])
def test_scores_equal_a_direct_transformers_forward(heads, lm, mode, adapter):
    """Break: score the verbalizer tokens one position late (`logits[:, 1:]` in _cont_logprobs), or
    drop the BOS from the context, or cut the text at max_length + 1: the scores move by far more than 1e-5."""
    head = load_head(heads[mode, adapter])
    assert isinstance(head, CausalLMHead) and head.labels == LABELS
    got = head.predict_proba(TEXTS, batch_size=4)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), len(LABELS))
    expected = reference_scores(lm, mode, adapter)
    assert np.abs(got - expected).max() < 1e-5
    # the scores are informative: they differ between texts and between labels
    assert np.ptp(got, axis=0).max() > 1e-3 and np.ptp(got, axis=1).max() > 1e-3
    if mode == "single":
        assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_scores_do_not_depend_on_the_batch_or_the_shared_prefix(heads, mode):
    """A row alone equals the same row in a padded batch of any size, with the prompt's cache shared
    over the labels or every continuation run with its whole context. Break: build the position ids
    from the padded column (torch.arange) instead of the attention mask's cumsum, and a padded row
    moves."""
    head = load_head(heads[mode, True])
    alone = np.concatenate([head.predict_proba([t]) for t in TEXTS])
    assert alone.shape == (len(TEXTS), len(LABELS))
    for batch_size in (2, 3, 64):
        for share in (True, False):
            got = head.predict_proba(TEXTS, batch_size=batch_size, share_prefix=share)
            assert np.abs(got - alone).max() < 1e-5, (batch_size, share)


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_a_gpt2_checkpoint_and_a_model_without_logits_to_keep_score_alike(tmp_path, mode):
    """Another architecture (GPT-2: learned absolute positions, so a wrong position id shows) equals
    its direct forward too, and the path for a model whose forward takes no `logits_to_keep` (full
    logits, then the needed positions picked) gives the same scores. Break: pick `Tc + needed + 1`
    in that path."""
    build_random_causal_lm(tmp_path / "gpt2", [CORPUS], layers=2, hidden=32, heads=4, model_type="gpt2", seed=4)
    extra = {"question": QUESTION, "answers": ANSWERS} if mode == "multi" else {}
    head = load_head(_make(tmp_path / "head", (tmp_path / "gpt2", None), mode, **extra))
    expected = reference_scores((tmp_path / "gpt2", None), mode, False)
    for keep in (True, False):
        head._keep = keep
        for share in (True, False):
            got = head.predict_proba(TEXTS, batch_size=3, share_prefix=share)
            assert np.abs(got - expected).max() < 1e-5, (keep, share)


def test_the_adapter_changes_the_scores(heads):
    """Break: skip PeftModel.from_pretrained in load_causal_lm (score the base model): equal scores."""
    for mode in ("single", "multi"):
        base = load_head(heads[mode, False]).predict_proba(TEXTS)
        tuned = load_head(heads[mode, True]).predict_proba(TEXTS)
        assert np.abs(base - tuned).max() > 1e-2


def test_length_normalize_divides_by_the_verbalizer_tokens(lm, tmp_path):
    """single mode, "length_normalize": true: the softmax runs over mean token log-probabilities."""
    plain = load_head(_make(tmp_path / "sum", lm, "single"))
    normed = load_head(_make(tmp_path / "mean", lm, "single", length_normalize=True))
    ll = plain.loglik(TEXTS) / np.array([len(v) for v in VERBALIZERS])  # one token per character
    e = np.exp(ll - ll.max(axis=1, keepdims=True))
    assert np.abs(normed.predict_proba(TEXTS) - e / e.sum(axis=1, keepdims=True)).max() < 1e-6


def test_bf16_autocast_runs_and_stays_close(heads):
    """The GPU path's autocast (bf16) runs on any device; scores stay near fp32's."""
    head = load_head(heads["multi", False])
    fp32 = head.predict_proba(TEXTS)
    bf16 = head.predict_proba(TEXTS, autocast="bf16")
    assert np.abs(bf16 - fp32).max() < 0.05 and bf16.dtype == np.float32


# -- the artifact: versions and clear errors ----------------------------------------------------------------

def test_model_version_covers_the_prompt_the_weights_and_the_adapter(lm, tmp_path):
    """Break: leave causal_lm_digest (or the adapter's files) out of artifact_version: a new prompt or
    a retrained adapter keeps the old model version, and reused workers keep scoring with the old one."""
    d = _make(tmp_path / "h", lm, "multi", adapter=True)
    v0 = artifact_version(d)
    assert artifact_version(d) == v0
    raw = json.loads((d / "tagger_head.json").read_text(encoding="utf-8"))
    (d / "tagger_head.json").write_text(json.dumps({**raw, "prompt": "新闻：{text}\n类别："}, ensure_ascii=False),
                                        encoding="utf-8")
    v1 = artifact_version(d)
    assert v1 != v0
    adapter = d / raw["peft"] / "adapter_model.safetensors"
    data = bytearray(adapter.read_bytes())
    data[-1] ^= 1
    adapter.write_bytes(bytes(data))
    v2 = artifact_version(d)
    assert v2 not in (v0, v1)
    weights = d / raw["checkpoint"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert artifact_version(d) not in (v0, v1, v2)


def _edited(src: Path, dest: Path, edit) -> Path:
    shutil.copytree(src, dest)
    raw = json.loads((dest / "tagger_head.json").read_text(encoding="utf-8"))
    edit(raw, dest)
    (dest / "tagger_head.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return dest


def _pickled_adapter(raw, d):
    (d / raw["peft"] / "adapter_model.safetensors").rename(d / raw["peft"] / "adapter_model.bin")


BAD = {
    "missing verbalizer": (lambda raw, d: raw.update(verbalizers=raw["verbalizers"][:2]),
                           "verbalizers", "no verbalizer for ['降价']"),
    "template without {text}": (lambda raw, d: raw.update(prompt="文章：\n类别："), "prompt", "{text} exactly once"),
    "peft dir missing": (lambda raw, d: shutil.rmtree(d / raw["peft"]), "peft", "adapter directory"),
    "pickled adapter": (_pickled_adapter, None, "refusing pickle-based adapter_model.bin"),
    "checkpoint missing": (lambda raw, d: shutil.rmtree(d / raw["checkpoint"]), "checkpoint", "does not exist"),
    "unknown mode": (lambda raw, d: raw.update(mode="chat"), "mode", "must be one of"),
    "single with one label": (lambda raw, d: raw.update(mode="single", labels=["谍照"], thresholds=[0.5],
                                                        enabled=[True], verbalizers=["谍照"]), "mode", "at least two"),
    "duplicate verbalizers": (lambda raw, d: raw.update(verbalizers=["谍照", "谍照", "降价"]), "verbalizers", "duplicates"),
    "same answers": (lambda raw, d: raw.update(answers={"yes": "是", "no": "是"}), "answers", "the same text"),
    "checkpoint outside": (lambda raw, d: raw.update(checkpoint="../elsewhere"), "checkpoint", "relative path inside"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sidecars_and_files_give_clear_errors(heads, tmp_path, case):
    """Each broken artifact fails at job start (read_spec + artifact_version, as build_spec runs
    them) with one line naming the key or file and the fix, before a worker loads anything."""
    edit, key, words = BAD[case]
    d = _edited(heads["multi", True], tmp_path / "bad", edit)
    with pytest.raises(ArtifactError) as info:
        artifact_version(d, read_spec(d))
    assert words in str(info.value) and "Fix:" in str(info.value)
    if key:
        assert info.value.key == key
    with pytest.raises(ArtifactError):
        load_head(d)


def test_a_verbalizer_the_tokenizer_cannot_read_is_refused_when_the_head_is_made(lm, tmp_path):
    """A verbalizer of unknown tokens only would score every label alike; the command refuses it."""
    with pytest.raises(ArtifactError, match="only unknown tokens"):
        write_causal_lm_head(tmp_path / "h", lm[0], ["a", "b"], ["谍照", "✈"], PROMPT, "single")


# -- commands: llm-head, calibrate, evaluate ------------------------------------------------------------------

def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_llm_head_from_an_sft_file_then_calibrate_and_evaluate(lm, tmp_path):
    """`tagger llm-head --sft`: the first system text is the prompt ({text} appended when absent), the
    file's labels the head's; then `tagger calibrate` and `tagger evaluate` run on it unchanged and
    the calibrated sidecar keeps every causal-lm key."""
    ckpt, adapter = lm
    system = "判断文章类别"
    sft = _jsonl(tmp_path / "train_sft.jsonl", [
        {"system": system, "src": TEXTS[i % len(TEXTS)], "tgt": LABELS[i % 3]} for i in range(12)])
    out = tmp_path / "llm"
    runner = CliRunner()
    res = runner.invoke(cli, ["llm-head", "--checkpoint", str(ckpt), "--peft", str(adapter), "--sft", str(sft),
                              "--mode", "multi", "--question", QUESTION, "--yes", "是", "--no", "否",
                              "--max-length", str(MAX_LENGTH), "--out", str(out)])
    assert res.exit_code == 0, res.output
    spec = read_spec(out)
    assert spec.arch == "causal-lm" and spec.extra["prompt"] == system + "\n{text}\n"
    assert sorted(spec.labels) == sorted(LABELS) and spec.extra["verbalizers"] == spec.labels
    assert (out / "lm" / "model.safetensors").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    data = _jsonl(tmp_path / "dev.jsonl", [{"text": TEXTS[i % len(TEXTS)] + str(i), "labels": [LABELS[i % 3]]}
                                           for i in range(30)])
    res = runner.invoke(cli, ["calibrate", "--model", str(out), "--dev", str(data), "--precision", "0.5",
                              "--min-positives", "1", "--confidence", "0.5"])
    assert res.exit_code == 0, res.output
    after = read_spec(out)
    assert after.extra["calibration"]["n_items"] == 30
    assert {k: after.extra[k] for k in ("prompt", "verbalizers", "mode", "peft", "answers", "question")} == \
           {k: spec.extra[k] for k in ("prompt", "verbalizers", "mode", "peft", "answers", "question")}
    res = runner.invoke(cli, ["evaluate", "--model", str(out), "--data", str(data), "--format", "json",
                              "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["arch"] == "causal-lm" and report["data"]["n"] == 30 and set(report["labels"]) == set(LABELS)


def test_llm_head_chat_wraps_the_sft_system_text_in_the_checkpoints_chat_template(lm, tmp_path):
    """--chat: the prompt is the checkpoint's chat template applied to system = the SFT system text and
    user = {text}, the assistant turn opened, as the chat model was fine-tuned."""
    from transformers import AutoTokenizer

    ckpt = tmp_path / "chat_ckpt"
    shutil.copytree(lm[0], ckpt)
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    tok.save_pretrained(str(ckpt))
    sft = _jsonl(tmp_path / "sft.jsonl", [{"system": "判断文章类别", "src": TEXTS[0], "tgt": LABELS[0]},
                                          {"system": "判断文章类别", "src": TEXTS[1], "tgt": LABELS[1]}])
    res = CliRunner().invoke(cli, ["llm-head", "--checkpoint", str(ckpt), "--sft", str(sft), "--chat",
                                   "--mode", "single", "--out", str(tmp_path / "h")])
    assert res.exit_code == 0, res.output
    assert read_spec(tmp_path / "h").extra["prompt"] == "<system>判断文章类别\n<user>{text}\n<assistant>"
    res = CliRunner().invoke(cli, ["llm-head", "--checkpoint", str(lm[0]), "--sft", str(sft), "--chat",
                                   "--mode", "single", "--out", str(tmp_path / "h2")])
    assert res.exit_code == 3 and "no chat template" in res.output


def test_llm_head_from_a_template_reads_backslash_n_as_a_line_break(lm, tmp_path):
    """A shell passes \\n as two characters; in --template and --question it is a line break. Labels
    and verbalizers come from --label (LABEL=VERBALIZER, or the label name)."""
    res = CliRunner().invoke(cli, ["llm-head", "--checkpoint", str(lm[0]), "--template", "文章：{text}\\n类别：",
                                   "--label", "新车上市", "--label", "谍照=谍照曝光", "--mode", "multi",
                                   "--question", "\\n是否{label}？", "--yes", "是", "--no", "否",
                                   "--out", str(tmp_path / "h")])
    assert res.exit_code == 0, res.output
    spec = read_spec(tmp_path / "h")
    assert spec.extra["prompt"] == PROMPT and spec.extra["question"] == QUESTION
    assert spec.labels == ["新车上市", "谍照"] and spec.extra["verbalizers"] == ["新车上市", "谍照曝光"]


def test_llm_head_refuses_a_missing_prompt_or_labels(lm, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["llm-head", "--checkpoint", str(lm[0]), "--mode", "single", "--label", "a",
                              "--label", "b", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--template TEXT or --sft FILE" in res.output
    res = runner.invoke(cli, ["llm-head", "--checkpoint", str(lm[0]), "--mode", "single", "--template", "no slot",
                              "--label", "谍照", "--label", "降价", "--out", str(tmp_path / "y")])
    assert res.exit_code == 3 and "key 'prompt'" in res.output and "Fix:" in res.output


# -- lazy imports -----------------------------------------------------------------------------------------------

def test_peft_and_the_llm_code_load_only_for_a_head_that_needs_them(heads, tmp_path):
    """load_head on a causal-lm head without an adapter imports no peft; with an adapter it does; and
    loading another arch (a real linear head) imports neither models/causal_lm.py nor peft. Break:
    `import peft` at the top of models/causal_lm.py, or `from .causal_lm import load_causal_lm` at
    the top of models/loading.py. (tests/test_layout.py checks the same on the source.)"""
    from tagger.models.training import train_head
    from tiny_data import DEV, LABELS as TINY_LABELS, QUIET, TRAIN

    train_head(arch="linear", head="lin", labels=TINY_LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
               dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(tmp_path / "linear"), log=QUIET)
    code = ("import sys; from tagger.models.loading import load_head; load_head(sys.argv[1]); "
            "print(sorted(m for m in ('peft', 'tagger.models.causal_lm') if m in sys.modules))")

    def loaded(path):
        return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout.strip()

    assert loaded(tmp_path / "linear") == "[]"
    assert loaded(heads["single", False]) == "['tagger.models.causal_lm']"
    assert loaded(heads["single", True]) == "['peft', 'tagger.models.causal_lm']"


def test_a_failed_llm_head_leaves_an_existing_head_as_it_was(lm, tmp_path):
    """A non-empty --out holding another head is refused before anything is written, and a failed
    build into a new --out leaves nothing. Break: drop the non-empty check (the old head's lm/ was
    replaced before the prompt check failed)."""
    good = _make(tmp_path / "good", lm, "single")
    before = {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()}
    with pytest.raises(ArtifactError, match="is not empty"):
        write_causal_lm_head(good, lm[0], LABELS, VERBALIZERS, "no placeholder", "single")
    assert {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()} == before
    with pytest.raises(ArtifactError, match="placeholder"):
        write_causal_lm_head(tmp_path / "new", lm[0], LABELS, VERBALIZERS, "no placeholder", "single")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]
    # the checkpoint already inside: only the sidecar is re-written
    spec = write_causal_lm_head(good, good / "lm", LABELS, VERBALIZERS, "新：{text}", "single")
    assert read_spec(good).extra["prompt"] == "新：{text}" and spec.extra["checkpoint"] == "lm"


def test_llm_head_reads_sft_labels_joined_by_label_sep(lm, tmp_path):
    """`tgt` strings of labels joined by '|' are split with --label-sep (without it, "a|b" would be a
    label of its own). Break: drop label_sep from the command's _read call."""
    sft = _jsonl(tmp_path / "sft.jsonl", [
        {"system": "判断文章类别", "src": TEXTS[i % len(TEXTS)], "tgt": f"{LABELS[i % 3]}|{LABELS[(i + 1) % 3]}"}
        for i in range(6)])
    res = CliRunner().invoke(cli, ["llm-head", "--checkpoint", str(lm[0]), "--sft", str(sft), "--label-sep", "|",
                                   "--mode", "multi", "--out", str(tmp_path / "h")])
    assert res.exit_code == 0, res.output
    assert sorted(read_spec(tmp_path / "h").labels) == sorted(LABELS)
