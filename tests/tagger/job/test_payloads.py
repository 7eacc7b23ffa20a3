import json

import pytest

from tagger.job.payloads import parse_payload as parse_speech


@pytest.mark.parametrize("raw", [None, "", "   ", "[]", " [] "])
def test_nothing_to_carry_is_not_an_error(raw):
    assert parse_speech(raw) == (None, None)


def test_array_of_strings_and_of_objects_give_the_same_text():
    strings = json.dumps(["今天我们来看", " 2024北京车展 "], ensure_ascii=False)
    objects = json.dumps([{"text": "今天我们来看", "start": 0.1}, {"text": "2024北京车展", "end": 3}],
                         ensure_ascii=False)
    assert parse_speech(strings) == ("今天我们来看 2024北京车展", None)
    assert parse_speech(objects) == ("今天我们来看 2024北京车展", None)


def test_configured_text_field_is_used():
    raw = json.dumps([{"words": "新车上市"}], ensure_ascii=False)
    assert parse_speech(raw, fields=("text", "words")) == ("新车上市", None)
    text, error = parse_speech(raw, fields=("text",))
    assert text is None and error.startswith("no_text_field")


@pytest.mark.parametrize("raw,reason", [
    ('["truncated', "malformed_json"),
    ('{"transcript": "an object no path reads"}', "not_a_list"),
    ("123", "not_a_list"),
    ("[1, 2]", "unsupported_element"),
    ('[["nested"]]', "unsupported_element"),
    ("[" * 100000 + "]" * 100000, "malformed_json"),
])
def test_bad_payloads_name_their_reason(raw, reason):
    text, error = parse_speech(raw)
    assert text is None
    assert error.split(":")[0] == reason


def test_lone_surrogates_are_replaced_so_arrow_can_carry_the_text():
    text, error = parse_speech('["a\\ud800b"]')
    assert error is None and text == "a\ufffdb"
    text.encode("utf-8")  # would raise on a lone surrogate


def test_whisper_and_paddleocr_shapes_are_read_by_default():
    whisper = json.dumps({"text": "一段话", "segments": [{"text": "一段话"}]}, ensure_ascii=False)
    paddle = json.dumps([[[[1, 2], [3, 2], [3, 4], [1, 4]], ["成都车展", 0.99]]], ensure_ascii=False)
    assert parse_speech(whisper) == ("一段话", None)
    assert parse_speech(paddle) == ("成都车展", None)


def test_an_array_with_one_unreadable_element_is_not_read_half():
    text, error = parse_speech(json.dumps(["a", {"txt": "b"}]))
    assert text is None and error.startswith("no_text_field")
