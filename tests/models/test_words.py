"""Word units (models/words.py): jieba with the team dictionary, char+word units, and textcnn heads
that read words, trained and served with the same cutting."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil

import numpy as np
import pytest

from tagger.models.loading import load_head
from tagger.models.spec import ArtifactError
from tagger.models.training import train_head
from tagger.models.words import WORD_PREFIX, WordCutter, UnitVocab, read_dictionary, text_units
from tiny_data import DEV, LABELS, QUIET, TRAIN, make_data

TEAM = ["宋plus", "model 3", "领克·03", "id.4"]
TEST = make_data(200, 3)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_the_dictionary_file_is_read_as_names_one_per_line(tmp_path):
    path = tmp_path / "cars.txt"
    path.write_text("# 车系\n宋PLUS\n\n  Model   3  \nID.4\n宋plus\n领克·03\n", encoding="utf-8")
    assert read_dictionary(path) == ["宋plus", "model 3", "id.4", "领克·03"]


@pytest.mark.parametrize("text, whole", [
    ("比亚迪宋PLUS DM-i谍照曝光", "宋plus"),
    ("特斯拉Model 3焕新版正式上市", "model 3"),
    ("特斯拉Model3和model   3一起到店", "model 3"),  # no space, or a run of them: the same entry
    ("领克·03试驾", "领克·03"),
])
def test_char_plus_word_keeps_the_team_dictionarys_entries_whole(text, whole):
    """Break: drop the protection by substitution in WordCutter (entries with a space or a `·` are
    then added to jieba, which splits on them), or jieba.add_word for the others."""
    units = text_units([text], "char+word", TEAM)[0]
    assert WORD_PREFIX + whole in units
    assert units[:len(text)] == list(text.lower())  # the characters first, all of them
    plain = text_units([text], "char+word")[0]  # without the dictionary jieba cuts the name apart
    assert WORD_PREFIX + whole not in plain


def test_a_texts_own_private_use_characters_never_become_an_entry():
    cutter = WordCutter(TEAM)
    marks = "".join(chr(0xE000 + i) for i in range(3))
    assert not set(cutter.cut(f"{marks}上市")) & set(TEAM)


def test_word_units_need_no_dictionary_and_drop_whitespace():
    assert text_units(["新车 上市"], "word") == [["新车", "上市"]]
    assert text_units(["新车 上市"], "char") == [list("新车 上市")]
    with pytest.raises(ValueError, match="tokenizer"):
        text_units(["x"], "bpe")


@pytest.fixture(scope="module")
def word_heads(tmp_path_factory):
    base = tmp_path_factory.mktemp("words")
    out = {}
    for tokenizer in ("word", "char+word"):
        out[tokenizer] = train_head(arch="textcnn", head="p0-words", labels=LABELS, train_texts=TRAIN[0],
                                    train_labels=TRAIN[1], dev_texts=DEV[0], dev_labels=DEV[1],
                                    out_dir=str(base / tokenizer.replace("+", "_")), epochs=6, max_length=64,
                                    tokenizer=tokenizer, dictionary=TEAM, log=QUIET)
    return out


@pytest.mark.parametrize("tokenizer", ["word", "char+word"])
def test_a_textcnn_that_reads_words_serves_as_trained(word_heads, tokenizer):
    """The artifact records the tokenizer and carries the dictionary: the loaded head cuts as the
    trained one did and scores identically. Break: load the textcnn without its `text` block."""
    r = word_heads[tokenizer]
    with open(os.path.join(r.path, "tagger_head.json"), encoding="utf-8") as f:
        raw = json.load(f)
    assert raw["text"]["tokenizer"] == tokenizer and raw["text"]["dictionary_entries"] == len(TEAM)
    head = load_head(r.path, device="cpu")
    assert isinstance(head.vocab, UnitVocab) and head.vocab.tokenizer == tokenizer and head.vocab.entries == TEAM
    texts = TEST[0] + ["比亚迪宋PLUS开启预售", "", None]
    np.testing.assert_array_equal(head.predict_proba(texts), r.head.predict_proba(texts))
    assert r.dev_report["macro_f1"] >= 0.9


def test_a_word_vocabulary_of_another_tokenizer_is_refused(word_heads, tmp_path):
    d = tmp_path / "head"
    shutil.copytree(word_heads["word"].path, d)
    sidecar = json.loads((d / "tagger_head.json").read_text(encoding="utf-8"))
    sidecar["text"]["tokenizer"] = "char+word"
    (d / "tagger_head.json").write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ArtifactError, match="built for tokenizer 'word'"):
        load_head(d, device="cpu")
