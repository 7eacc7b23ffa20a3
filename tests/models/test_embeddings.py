"""Pretrained vectors for a TextCNN (models/embeddings.py) and `tagger embeddings`' trainer."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tagger.models.embeddings import EmbeddingsError, init_embedding_rows, read_word2vec, write_word2vec
from tagger.models.textcnn import build_textcnn
from tagger.models.training import train_head
from tagger.models.words import UnitVocab
from tiny_data import DEV, LABELS, QUIET, TRAIN

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _vectors(tokens, dim, seed=0):
    return np.random.default_rng(seed).normal(size=(len(tokens), dim)).astype(np.float32)


def test_a_partial_vocabulary_initialises_exactly_the_found_rows(tmp_path):
    """Break: skip the `w:` lookup in lookup_keys (a word unit finds no vector), or copy a vector into
    a row whose unit has none."""
    vocab = UnitVocab.build(TRAIN[0], "char+word", ["model 3"])
    units = vocab.tokens
    chosen = [units[2], next(u for u in units if u.startswith("w:")), "w:model 3"]  # a char, a word, one it lacks
    words = [u[2:] if u.startswith("w:") else u for u in chosen] + ["不在词表", "[PAD]"]
    vecs = _vectors(words, 16)
    path = tmp_path / "vectors.txt"
    write_word2vec(path, words, vecs)
    torch.manual_seed(0)
    model = build_textcnn(len(units), len(LABELS), {"embed_dim": 16})
    before = model.embedding.weight.detach().clone()
    with torch.no_grad():
        found = init_embedding_rows(model.embedding.weight.data, units, path)
    known = set(words[:3])  # a char 车 and a word w:车 both take the vector of 车
    expected = [i for i, u in enumerate(units) if i >= 2 and u.removeprefix("w:") in known]
    assert sorted(found) == expected and 2 <= len(found) < len(units) - 2
    after = model.embedding.weight.detach()
    for i in range(len(units)):
        if i in found:
            np.testing.assert_array_equal(after[i].numpy(), vecs[words.index(units[i].removeprefix("w:"))])
        else:
            assert torch.equal(after[i], before[i])  # PAD, UNK and units without a vector are untouched


def test_tokens_with_spaces_and_a_bad_file(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 3\nmodel 3 0.1 0.2 0.3\n车 1 2 3\n", encoding="utf-8")
    dim, vectors = read_word2vec(path)
    assert dim == 3 and sorted(vectors) == ["model 3", "车"]
    np.testing.assert_allclose(vectors["model 3"], [0.1, 0.2, 0.3])
    path.write_text("2 3\n车 1 2\n", encoding="utf-8")
    with pytest.raises(EmbeddingsError, match="line 2"):
        read_word2vec(path)
    path.write_text("车 1 2 3\n", encoding="utf-8")
    with pytest.raises(EmbeddingsError, match="line 1"):
        read_word2vec(path)


def test_train_head_prints_the_share_found_and_refuses_another_dimension(tmp_path):
    lines = []
    vocab = UnitVocab.build(TRAIN[0], "word")
    half = vocab.tokens[2:][: (len(vocab) - 2) // 2]
    write_word2vec(tmp_path / "v128.txt", half, _vectors(half, 128))
    r = train_head(arch="textcnn", head="emb", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
                   dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(tmp_path / "head"), epochs=1, max_length=64,
                   tokenizer="word", embeddings=str(tmp_path / "v128.txt"), log=lines.append)
    record = r.spec.extra["embeddings"]
    assert record["found"] == len(half) and record["vocabulary"] == len(vocab) - 2
    assert any(f"{len(half):,} of {len(vocab) - 2:,} vocabulary units found" in str(x) for x in lines)
    write_word2vec(tmp_path / "v8.txt", half, _vectors(half, 8))
    with pytest.raises(EmbeddingsError, match="8 dimensions"):
        train_head(arch="textcnn", head="emb", labels=LABELS, train_texts=TRAIN[0], train_labels=TRAIN[1],
                   dev_texts=DEV[0], dev_labels=DEV[1], out_dir=str(tmp_path / "head2"), epochs=1, max_length=64,
                   tokenizer="word", embeddings=str(tmp_path / "v8.txt"), log=QUIET)


def test_vectors_trained_on_unlabelled_text_initialise_a_textcnn(tmp_path):
    pytest.importorskip("gensim")  # the `embeddings` extra
    from tagger.training.embeddings import train_vectors

    out = tmp_path / "vectors.txt"
    stats = train_vectors(TRAIN[0] + DEV[0], str(out), tokenizer="char+word", dim=16, min_count=2, epochs=2,
                          workers=1, log=QUIET)
    dim, vectors = read_word2vec(out)
    assert dim == 16 and len(vectors) == stats["units"] > 20
    assert "车" in vectors and "外观" in vectors  # chars and words of a char+word TextCNN
    vocab = UnitVocab.build(TRAIN[0], "char+word")
    weight = np.zeros((len(vocab), 16), dtype=np.float32)
    assert len(init_embedding_rows(weight, vocab.tokens, out)) >= 0.9 * (len(vocab) - 2)
