"""The team's real Hugging Face checkpoints, as they come: a community Chinese RoBERTa layout, a
multi-label model without problem_type, and weights replaced in place. Models are built from tiny
configs here (random weights), never downloaded.

Breaks these tests catch: loading a RoBERTa directory with AutoTokenizer only (every text becomes
[<s>, </s>] and one constant score); dropping the probe check in models/loading.py _load_tokenizer;
ignoring the sidecar's "activation"; leaving weights_digest out of artifact_version (a replaced
model.safetensors keeps the old version and a reused worker keeps the old weights)."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from tagger.models.loading import load_head
from tagger.models.spec import ArtifactError, ScoringGuessWarning, artifact_version, read_spec
from tagger.models.tokenization import build_wordpiece_tokenizer
from tiny_data import TRAIN

TEXTS = ["开启预售", "路试谍照曝光", "北京车展新车上市", ""]


def _roberta_dir(tmp_path, vocab_lines=None, name="roberta"):
    """A RobertaForSequenceClassification with a BERT WordPiece vocab.txt and no tokenizer files:
    the layout of hfl/chinese-roberta-wwm-ext fine-tunes."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    d = tmp_path / name
    d.mkdir()
    tok = build_wordpiece_tokenizer(TRAIN[0], model_max_length=48)
    vocab = vocab_lines or [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=80, num_labels=3, pad_token_id=0,
                        id2label={0: "预售", 1: "谍照", 2: "官图"}, problem_type="multi_label_classification")
    model = RobertaForSequenceClassification(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    assert not (d / "tokenizer_config.json").exists() and not (d / "tokenizer.json").exists()
    return d, model


def test_a_roberta_checkpoint_with_only_vocab_txt_gets_its_wordpiece_tokenizer(tmp_path):
    from transformers import BertTokenizerFast

    d, model = _roberta_dir(tmp_path)
    head = load_head(d, device="cpu")
    assert isinstance(head.tokenizer, BertTokenizerFast)
    got = head.predict_proba(TEXTS)
    tok = BertTokenizerFast.from_pretrained(str(d))
    enc = tok(TEXTS, truncation=True, max_length=head.max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = torch.sigmoid(model(**enc).logits).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len({tuple(np.round(row, 4)) for row in got}) > 1  # not one constant score


def test_a_tokenizer_that_cannot_read_the_language_is_refused(tmp_path):
    d, _ = _roberta_dir(tmp_path, vocab_lines=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
    with pytest.raises(ArtifactError, match="special or unknown tokens"):
        load_head(d, device="cpu")


def _no_problem_type_dir(tmp_path, num_labels=3):
    from transformers import BertConfig, BertForSequenceClassification

    d = tmp_path / f"np{num_labels}"
    tok = build_wordpiece_tokenizer(TRAIN[0], model_max_length=48)
    torch.manual_seed(1)
    id2label = {i: name for i, name in enumerate(["预售", "谍照", "官图"][:num_labels])}
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=num_labels, id2label=id2label,
                     label2id={v: k for k, v in id2label.items()})
    assert cfg.problem_type is None
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    with torch.no_grad():
        logits = model(**tok(TEXTS, truncation=True, max_length=48, padding=True, return_tensors="pt")).logits
    return d, logits


def test_no_problem_type_is_scored_as_transformers_would_with_a_warning(tmp_path):
    d, logits = _no_problem_type_dir(tmp_path)
    with pytest.warns(ScoringGuessWarning, match='"activation": "sigmoid"'):
        head = load_head(d, device="cpu")
    np.testing.assert_allclose(head.predict_proba(TEXTS), torch.softmax(logits, -1).numpy(), atol=1e-5)


@pytest.mark.parametrize("num_labels", [2, 3])
def test_the_sidecar_activation_scores_a_multi_label_checkpoint_with_sigmoid(tmp_path, num_labels):
    d, logits = _no_problem_type_dir(tmp_path, num_labels)
    (d / "tagger_head.json").write_text(json.dumps({"head": "p0", "activation": "sigmoid"}), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScoringGuessWarning)  # the key silences the warning
        head = load_head(d, device="cpu")
    assert head.spec.labels == ["预售", "谍照", "官图"][:num_labels]  # 2 labels stay 2 labels
    np.testing.assert_allclose(head.predict_proba(TEXTS), torch.sigmoid(logits).numpy(), atol=1e-5)
    (d / "tagger_head.json").write_text(json.dumps({"activation": "relu"}), encoding="utf-8")
    with pytest.raises(ArtifactError, match="activation"):
        read_spec(d)


def test_replaced_weights_are_a_new_model_version_and_a_reused_worker_reloads(tmp_path, monkeypatch):
    from tagger.udfs.rules import RuleSet
    from tagger.udfs.tagging import _WORKER_TAGGERS, TaggerSpec, get_tagger

    monkeypatch.setenv("TAGGER_DIGEST_CACHE", str(tmp_path / "digests.json"))
    d, _ = _no_problem_type_dir(tmp_path)
    (d / "tagger_head.json").write_text(json.dumps({"head": "p0", "activation": "sigmoid"}), encoding="utf-8")
    other, _ = _no_problem_type_dir(tmp_path / "other")
    torch.manual_seed(2)
    from transformers import BertForSequenceClassification

    retrained = BertForSequenceClassification.from_pretrained(other)
    for p in retrained.parameters():
        p.data.add_(torch.randn_like(p) * 0.5)
    retrained.save_pretrained(other, safe_serialization=True)
    shutil.copyfile(d / "tagger_head.json", other / "tagger_head.json")

    def spec_of():
        version = artifact_version(d)
        head = type("Head", (), {"name": "p0", "path": str(d), "parent": "内容标签/新车资讯", "gate_by": None})
        index = {f"内容标签/新车资讯/{x}": (i, x) for i, x in enumerate(["预售", "谍照", "官图"])}
        return version, TaggerSpec(heads=(head,), gate_head="p0", rules=RuleSet("0", ()), tag_index=index,
                                   model_version=f"p0={version}")

    v1, spec1 = spec_of()
    assert artifact_version(d) == v1  # stable while nothing changes (and cached)
    try:
        first = get_tagger(spec1)
        before = first.heads[0][1].predict_proba(TEXTS)
        shutil.copyfile(other / "model.safetensors", d / "model.safetensors")
        v2, spec2 = spec_of()
        assert v2 != v1 and v2.split("@")[0] == v1.split("@")[0]  # same sidecar version, other weights
        second = get_tagger(spec2)
        assert second is not first
        after = second.heads[0][1].predict_proba(TEXTS)
        assert np.abs(after - before).max() > 1e-3
        np.testing.assert_allclose(after, load_head(other, device="cpu").predict_proba(TEXTS), atol=1e-6)
    finally:
        _WORKER_TAGGERS.clear()
