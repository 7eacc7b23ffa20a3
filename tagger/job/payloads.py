"""Reading the text out of ASR (`result_asr`) and OCR (`ocr_info`) JSON payloads.

The payloads' JSON is undocumented (docs/domain.md) and differs between services, so which shapes
carry text is configuration: `text.payload_paths` in conf/tagger.yaml lists, per source, JMESPath
expressions (the `jmespath` library) tried in order; the first one that yields text wins.
"Yields text" means a non-empty string, or a non-empty list of strings; an expression that
projects over a top-level array (`[*]...`) must yield one string per element, so an array with
one element of another shape is not read half. The defaults read:

| shape | expression |
|---|---|
| an array of strings: `["今天", "北京车展"]` | `[*]` |
| an array of objects with the text in a field: `[{"text": "..."}]` | `[*].text` (one per `speech_text_fields`) |
| PaddleOCR: `[[box, ["成都车展", 0.99]], ...]` | `[*][1][0]` |
| PaddleOCR, one more level per page: `[[[box, [text, conf]], ...], ...]` | `[][1][0]` |
| Whisper-style ASR: `{"text": "...", "segments": [{"text": ...}]}` | `text`, then `segments[*].text` |
| an array mixing strings and objects: `["a", {"text": "b"}]` | `[*].[@, "text"] \| [*][?type(@) == 'string'] \| [*][0]` |

A payload that no expression reads is bad input: the row is quarantined with the reason this
module returns (the same reason codes as before paths were configurable: malformed_json,
not_a_list, unsupported_element, no_text_field) and a description of its shape; the item is
still tagged from its other text. NULL, blank and `[]` carry nothing and are not errors.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

_SURROGATES = re.compile("[\ud800-\udfff]")
SHAPE_PATHS = ("[*][1][0]", "[][1][0]", "text", "segments[*].text")  # PaddleOCR (flat, paged), Whisper


def default_paths(fields: Iterable[str] = ("text",)) -> tuple[str, ...]:
    """The default expressions: an array of strings, an array of objects with the text in one of
    `fields`, PaddleOCR and Whisper shapes (the module docstring's table), and last an array mixing
    strings and such objects."""
    quoted = [json.dumps(f, ensure_ascii=False) for f in fields]
    mixed = f"[*].[@, {', '.join(quoted)}] | [*][?type(@) == 'string'] | [*][0]"
    return ("[*]", *(f"[*].{q}" for q in quoted), *SHAPE_PATHS, mixed)


@lru_cache(maxsize=256)
def compile_path(expression: str):
    """A compiled JMESPath expression. Raises jmespath.exceptions.ParseError for a bad one (the
    config validation calls this, so a bad expression stops the job at start)."""
    import jmespath

    return jmespath.compile(expression)


def _texts(found, value, expression: str) -> list[str] | None:
    """The strings an expression found (possibly all blank), or None if it does not read this shape
    (see the module docstring)."""
    if isinstance(found, str):
        return [found]
    if not isinstance(found, list) or not found or not all(isinstance(x, str) for x in found):
        return None
    if expression.startswith("[*]") and isinstance(value, list) and len(found) != len(value):
        return None  # some elements had no text at this path: not this shape
    return found


def _shape(value) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:8]}"
    if isinstance(value, list):
        kinds = sorted({type(x).__name__ for x in value})
        return f"an array of {len(value)} element(s) of type {', '.join(kinds)}"
    return f"a JSON {type(value).__name__}"


def _reason(value, fields: Sequence[str]) -> str:
    """Why no expression read `value`, with the reason codes the quarantine has always used."""
    shape = _shape(value)
    if not isinstance(value, list):
        return f"not_a_list: top-level JSON is {type(value).__name__} ({shape}); no configured path read it"
    for position, element in enumerate(value):
        if isinstance(element, dict):
            if not any(isinstance(element.get(f), str) for f in fields):
                return f"no_text_field: element {position} has none of the fields {list(fields)} ({shape})"
        elif not isinstance(element, str):
            return f"unsupported_element: element {position} is {type(element).__name__} ({shape})"
    return f"unsupported_element: no configured path reads {shape}"


def parse_payload(raw: str | None, paths: Sequence[str] | None = None,
                  fields: Sequence[str] = ("text",)) -> tuple[str | None, str | None]:
    """Read one ASR/OCR payload.

    `raw`: the JSON text (or None); `paths`: JMESPath expressions tried in order (default:
    default_paths(fields)); `fields`: the object fields named in the reason when nothing matched.
    Returns (text, None) with the found strings joined by single spaces (lone surrogates as
    U+FFFD); (None, None) when the row carries nothing (NULL, blank, '[]', or only empty text);
    (None, reason) for bad input, the reason starting with its code. Never raises on bad JSON.
    """
    if raw is None:
        return None, None
    payload = raw.strip()
    if payload in ("", "[]"):
        return None, None
    try:
        value = json.loads(payload)
    except RecursionError:
        return None, "malformed_json: nested too deeply"
    except ValueError as exc:
        return None, f"malformed_json: {getattr(exc, 'msg', str(exc))}"
    blank = False
    for expression in paths or default_paths(fields):
        try:
            found = compile_path(expression).search(value)
        except RecursionError:
            return None, "malformed_json: nested too deeply"
        texts = _texts(found, value, expression)
        if texts is not None:
            text = " ".join(t.strip() for t in texts if t.strip())
            if text:
                return _SURROGATES.sub("\ufffd", text), None
            blank = True  # this shape, but only empty text: try the others, else nothing to carry
    return (None, None) if blank else (None, _reason(value, fields))
