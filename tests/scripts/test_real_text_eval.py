"""scripts/real_text_eval.py's pretrained-vector rows: the vectors come from `tagger embeddings`' own
trainer, at the TextCNN's width, from the texts handed in (main hands it the train split's) and
nothing else, and are trained once per tokenizer.

Breaks this catches: vectors of another width than the TextCNN's (train_head would refuse them);
units from outside the texts handed in; the file trained again for every row."""
from __future__ import annotations

import pytest

from conftest import load_script
from tagger.models.embeddings import read_word2vec
from tagger.models.textcnn import DEFAULT_HPARAMS
from tagger.models.words import text_units
from tiny_data import DEV, TRAIN


def test_vectors_are_learnt_from_the_train_texts_only(tmp_path):
    pytest.importorskip("gensim")  # the `embeddings` extra
    script = load_script("real_text_eval")
    path = script.train_split_vectors(TRAIN[0], "word", tmp_path)
    dim, vectors = read_word2vec(path)
    assert dim == DEFAULT_HPARAMS["embed_dim"]
    train_units = {u for units in text_units(TRAIN[0], "word") for u in units}
    assert set(vectors) <= train_units and len(vectors) > 20
    mtime = (tmp_path / "vectors-word.txt").stat().st_mtime_ns
    assert script.train_split_vectors(DEV[0], "word", tmp_path) == path  # the same tokenizer: reused, not redone
    assert (tmp_path / "vectors-word.txt").stat().st_mtime_ns == mtime
