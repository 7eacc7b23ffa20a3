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


LM_SPECIALS = ("<unk>", "<pad>", "<s>", "</s>")


def build_char_tokenizer(texts, out_dir: Path | None = None):
    """A character-level PreTrainedTokenizerFast (tokenizers WordLevel, one token per character of
    `texts`, plus <unk> <pad> <s> </s>; it adds <s> in front like a Llama tokenizer), built offline.
    Saved to `out_dir` when given. Returns the tokenizer."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted({ch for text in texts for ch in text})
    vocab = {tok: i for i, tok in enumerate([*LM_SPECIALS, *chars])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                      special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>")
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def build_random_causal_lm(out_dir: Path, texts, *, layers: int = 2, hidden: int = 32, heads: int = 4,
                           model_type: str = "llama", seed: int = 0, max_positions: int = 512,
                           vocab_size: int | None = None):
    """A causal LM with random weights from a small config (model_type llama or gpt2;
    `layers` layers of width `hidden`, `heads` attention heads) and build_char_tokenizer(texts),
    saved with save_pretrained (safetensors) to `out_dir`, for tests and the LLM-head bench (no
    hub). `vocab_size` (at least the tokenizer's size) widens the embedding and output layer to a
    real LLM's vocabulary, for cost figures; the extra rows are never produced by the tokenizer. Returns (model, tokenizer). Raises ValueError for another model_type (qwen2 is left out:
    transformers 5 loads a qwen2 checkpoint's tokenizer as Qwen2Tokenizer, which does not read this
    character vocabulary)."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    tokenizer = build_char_tokenizer(texts)
    common = dict(vocab_size=max(len(tokenizer), vocab_size or 0), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if model_type == "llama":
        config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                     max_position_embeddings=max_positions, tie_word_embeddings=False, **common)
    elif model_type == "gpt2":
        config = GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=max_positions, **common)
    else:
        raise ValueError(f"model_type must be llama or gpt2, got {model_type!r}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # larger random weights than the init's, so that scores differ visibly between labels
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return model, tokenizer
