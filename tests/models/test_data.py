"""tagger.models.data: reading the team's labelled files (JSON lines, PaddleNLP), label files and order,
clear errors naming file:line, iterative stratification."""
import json
import random
from collections import Counter

import pytest

from tagger.models.data import (DataError, iterative_split, read_examples, read_label_file, resolve_labels,
                         write_jsonl)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# -- reading -------------------------------------------------------------------------------------

def test_json_lines_are_split_on_newline_only(tmp_path):
    """json.dumps(..., ensure_ascii=False) writes U+2028, U+2029 and U+0085 raw inside strings; they
    are not line breaks in JSON lines. Break: read the file with str.splitlines() and the second
    record is cut in two ("invalid JSON" on a valid file)."""
    records = [{"text": "第一条", "labels": ["a"]},
               {"text": "行内\u2028分隔\u2029段落\u0085下一行\x1c\x1d\x1e", "labels": ["b"]},
               {"text": "第三条", "labels": []}]
    p = write(tmp_path / "d.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    assert "\u2028" in p.read_text(encoding="utf-8")  # written raw, as json.dumps does
    ex = read_examples(p)
    assert len(ex) == 3 and ex.lines == 3 and ex.labels == [["a"], ["b"], []]
    assert ex.texts[1].startswith("行内") and ex.texts[1].endswith("下一行")  # separators are whitespace to clean_text
    crlf = write(tmp_path / "crlf.jsonl", '{"text": "x", "labels": []}\r\n{"text": "y", "labels": ["a"]}\r\n')
    assert read_examples(crlf).texts == ["x", "y"]


def test_texts_from_files_are_normalized_as_the_job_normalizes_doc_text(tmp_path):
    p = write(tmp_path / "d.jsonl", json.dumps({"text": "<b>北京</b>\u200b车展 ＳＵＶ", "labels": []},
                                               ensure_ascii=False) + "\n")
    assert read_examples(p).texts == ["北京车展 SUV"]

def test_jsonl_keeps_itemid_skips_blank_lines_and_accepts_bare_string(tmp_path):
    p = write(tmp_path / "d.jsonl",
              '{"itemid": "a1", "text": "路试谍照曝光", "labels": ["谍照", "预售", "谍照"], "extra": 1}\n'
              "\n"
              '{"itemid": 7, "text": "保养", "labels": []}\n'
              '   \n'
              '{"text": "正式上市", "labels": " 新车上市 "}\n')
    ex = read_examples(p)
    assert ex.format == "jsonl" and ex.lines == 5 and len(ex) == 3 and ex.path == str(p)
    assert ex.texts == ["路试谍照曝光", "保养", "正式上市"]
    assert ex.labels == [["谍照", "预售"], [], ["新车上市"]]
    assert ex.itemids == ["a1", 7, None]


def test_jsonl_without_itemids_has_none(tmp_path):
    ex = read_examples(write(tmp_path / "d.json", '{"text": "x", "labels": ["a"]}\n'))
    assert ex.itemids is None and ex.format == "jsonl"


def test_paddle_splits_on_the_last_tab(tmp_path):
    p = write(tmp_path / "train.txt",
              "开启预售\t预售,谍照\n带\t制表符的文本\t新车上市\n\n没有标签\t\n")
    ex = read_examples(p)
    assert ex.format == "paddle" and ex.itemids is None
    assert ex.texts == ["开启预售", "带 制表符的文本", "没有标签"]  # the tab inside is whitespace to clean_text
    assert ex.labels == [["预售", "谍照"], ["新车上市"], []]


@pytest.mark.parametrize("content,fmt", [('{"text": "a", "labels": ["x"]}\n', "jsonl"), ("a\tx\n", "paddle")])
def test_unknown_extension_is_sniffed(tmp_path, content, fmt):
    assert read_examples(write(tmp_path / "data.dat", content)).format == fmt


def test_explicit_format_overrides_the_extension(tmp_path):
    p = write(tmp_path / "d.jsonl", "文本\t标签\n")
    assert read_examples(p, fmt="paddle").labels == [["标签"]]
    with pytest.raises(DataError, match=r"d\.jsonl:1: invalid JSON"):
        read_examples(p)


@pytest.mark.parametrize("name,content,needles", [
    ("d.jsonl", '{"text": "a", "labels": []}\n{"text": "b", "labels": [}\n',
     [":2: invalid JSON", "one JSON object per line"]),
    ("d.jsonl", '{"text": "a", "labels": []}\n\n{"title": "b", "labels": []}\n', [':3: no "text" key', "title"]),
    ("d.jsonl", '{"text": "a"}\n', [':1: no "labels" key', '"labels": []']),
    ("d.jsonl", '{"text": "a", "labels": [1, 2]}\n', [":1:", "list of strings"]),
    ("d.jsonl", '{"text": "a", "labels": ["ok", ""]}\n', [":1:", "empty label"]),
    ("d.jsonl", '["a", "b"]\n', [":1:", "must be an object"]),
    ("d.jsonl", '[{"text": "a",\n', [":1:", "JSON array"]),
    ("d.txt", "text\tlab\nno tab here\n", [":2: no tab", "text<TAB>label1,label2"]),
    ("d.txt", "text\ta,,b\n", [":1:", "empty label"]),
    ("d.txt", "\n  \n", ["no examples"]),
])
def test_bad_input_names_file_line_and_fix(tmp_path, name, content, needles):
    p = write(tmp_path / name, content)
    with pytest.raises(DataError) as ei:
        read_examples(p)
    msg = str(ei.value)
    assert str(p) in msg and "Fix:" in msg, msg
    for needle in needles:
        assert needle in msg, msg


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_examples(tmp_path / "nope.jsonl")
    p = tmp_path / "gbk.txt"
    p.write_bytes("文本\t标签\n".encode("gbk"))
    with pytest.raises(DataError, match="UTF-8"):
        read_examples(p)


# -- labels ---------------------------------------------------------------------------------------

def test_label_file_fixes_the_order(tmp_path):
    p = write(tmp_path / "label.txt", "谍照\n预售\n 新车上市 \n\n")
    assert read_label_file(p) == ["谍照", "预售", "新车上市"]
    ex = read_examples(write(tmp_path / "d.txt", "a\t预售\nb\t预售\nc\t新车上市\n"))
    # 谍照 has no positives: kept, in the file's place
    assert resolve_labels(ex, read_label_file(p)) == ["谍照", "预售", "新车上市"]


@pytest.mark.parametrize("content,needle", [("a\nb\na\n", ":3: duplicate label 'a' (first on line 1)"),
                                            ("a\n\nb\n", ":2: empty line"), ("\n\n", "no labels")])
def test_bad_label_files(tmp_path, content, needle):
    with pytest.raises(DataError, match=None) as ei:
        read_label_file(write(tmp_path / "label.txt", content))
    assert needle in str(ei.value)


def test_unknown_labels_are_an_error_with_counts(tmp_path):
    train = read_examples(write(tmp_path / "t.txt", "a\t预售,官图\nb\t官图\nc\t预售\n"))
    dev = read_examples(write(tmp_path / "d.txt", "a\t实拍\n"))
    with pytest.raises(DataError) as ei:
        resolve_labels([train, dev], ["预售"])
    msg = str(ei.value)
    assert "2 label(s)" in msg and "'官图' (2 examples" in msg and "'实拍' (1 example" in msg
    assert str(tmp_path / "d.txt") in msg and "label file" in msg
    with pytest.raises(DataError, match="官图"):
        read_examples(tmp_path / "t.txt", labels=["预售"])


def test_label_order_without_a_label_file_is_by_count_then_name(tmp_path):
    ex = read_examples(write(tmp_path / "t.txt", "a\tb,c\nb\tc,a\nc\tz\nd\tc\ne\t\n"))
    assert resolve_labels(ex) == ["c", "a", "b", "z"]
    with pytest.raises(DataError, match="no labels"):
        resolve_labels(read_examples(write(tmp_path / "e.txt", "a\t\n")))


def test_write_jsonl_round_trip(tmp_path):
    p = tmp_path / "sub" / "out.jsonl"
    write_jsonl(p, ["谍照曝光", "x"], [["谍照"], []], ["i1", None])
    assert [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()] == [
        {"itemid": "i1", "text": "谍照曝光", "labels": ["谍照"]}, {"text": "x", "labels": []}]
    ex = read_examples(p)
    assert ex.texts == ["谍照曝光", "x"] and ex.labels == [["谍照"], []] and ex.itemids == ["i1", None]
    assert [q.name for q in p.parent.iterdir()] == ["out.jsonl"]  # no temp file left


# -- iterative stratification --------------------------------------------------------------------

def skewed_labels(n, seed, rare=(3, 4, 5, 6, 7)):
    """Common labels (~20% each), rare labels with exactly the given numbers of positives, riding
    on examples that carry common labels too, and ~30% examples without labels."""
    rng = random.Random(seed)
    rows = [[c for c in ("A", "B", "C") if rng.random() < 0.2] for _ in range(n)]
    for k, count in enumerate(rare):
        for i in rng.sample(range(n), count):
            rows[i].append(f"r{k}")
    return rows


def per_split(assign, rows, label, k=3):
    c = Counter(assign[i] for i, r in enumerate(rows) if label in r)
    return [c[s] for s in range(k)]


@pytest.mark.parametrize("seed", range(8))
def test_every_label_with_enough_positives_is_in_every_split(seed):
    rows = skewed_labels(400, seed)
    assign = iterative_split(rows, (0.8, 0.1, 0.1), seed=seed)
    assert len(assign) == len(rows) and set(assign) == {0, 1, 2}
    for label in {x for r in rows for x in r}:
        assert all(per_split(assign, rows, label)), (label, per_split(assign, rows, label))
    sizes = Counter(assign)
    assert abs(sizes[0] - 320) <= 4 and abs(sizes[1] - 40) <= 4 and abs(sizes[2] - 40) <= 4, sizes
    for label in "ABC":  # common labels keep their share in each split
        counts = per_split(assign, rows, label)
        total = sum(counts)
        assert abs(counts[1] - total * 0.1) <= 2 and abs(counts[2] - total * 0.1) <= 2, (label, counts)


def test_split_is_deterministic_and_seeded():
    rows = skewed_labels(300, 1)
    a = iterative_split(rows, (0.8, 0.1, 0.1), seed=3)
    assert a == iterative_split(rows, (0.8, 0.1, 0.1), seed=3)
    assert a != iterative_split(rows, (0.8, 0.1, 0.1), seed=4)


def test_unlabelled_examples_follow_the_fractions():
    assign = iterative_split([[]] * 100 + [None] * 100, (0.5, 0.3, 0.2), seed=0)
    assert Counter(assign) == {0: 100, 1: 60, 2: 40}


def test_labels_rarer_than_the_splits_go_to_train_first():
    rows = [["x"], ["x"]] + [["A"]] * 50
    assign = iterative_split(rows, (0.8, 0.1, 0.1), seed=0)
    assert assign[0] == assign[1] == 0


def test_bad_fractions():
    with pytest.raises(ValueError, match="positive"):
        iterative_split([["a"]], (0.9, 0.1, 0.0))


def test_repair_moves_a_missing_label_in_and_keeps_split_sizes():
    """The repair pass on its own: x (3 positives) sits only in split 0; y is the only positive of a
    guarded label in split 1 and must stay there."""
    import numpy as np

    from tagger.models.data import _repair

    rows = [["x"], ["x", "y"], ["x"], ["y"], ["y"], ["y"], [], [], []]
    names = {"x": 0, "y": 1}
    assign = np.array([0, 0, 0, 0, 1, 2, 1, 2, 0])
    _repair(assign, [[names[n] for n in r] for r in rows], np.array([True, True]), 3)
    assert per_split(assign.tolist(), rows, "x") == [1, 1, 1]
    assert all(per_split(assign.tolist(), rows, "y"))
    assert Counter(assign.tolist()) == {0: 5, 1: 2, 2: 2}  # each move came with one back


@pytest.mark.parametrize("tgt, sep, labels", [("谍照", ",", ["谍照"]), ("谍照,新车上市", ",", ["谍照", "新车上市"]),
                                              ("谍照|新车上市", "|", ["谍照", "新车上市"]), (["谍照", "预售"], ",", ["谍照", "预售"]),
                                              ("", ",", []), ([], ",", [])])
def test_sft_lines_read_tgt_as_one_label_a_list_or_joined_labels(tmp_path, tgt, sep, labels):
    p = tmp_path / "sft.jsonl"
    p.write_text(json.dumps({"system": "分类", "src": "<b>新车</b> 谍照", "tgt": tgt}, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    ex = read_examples(p, label_sep=sep)
    assert ex.format == "sft" and ex.labels == [labels] and ex.systems == ["分类"] and ex.texts == ["新车 谍照"]


@pytest.mark.parametrize("content, needles", [
    ('{"system": "x", "src": 3, "tgt": "a"}', ["sft.jsonl:1", '"src"']),
    ('{"system": "x", "src": "t", "tgt": "a,,b"}', ["sft.jsonl:1", "an empty label", "--label-sep"]),
    ('{"system": 1, "src": "t", "tgt": "a"}', ["sft.jsonl:1", '"system" must be a string']),
    ('{"system": "x", "src": "t", "tgt": null}', ["sft.jsonl:1", '"tgt" must be a label']),
])
def test_bad_sft_lines_name_file_line_and_fix(tmp_path, content, needles):
    p = tmp_path / "sft.jsonl"
    p.write_text(content + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_examples(p, fmt="sft")
    assert all(n in str(err.value) for n in needles), str(err.value)
