"""Parsing of the ASR (`result_asr`) and OCR (`ocr_info`) JSON payloads.

The exact JSON is undocumented (docs/domain.md): accepted are a JSON array of strings, or an array
of objects carrying the text in one of the configured fields (e.g. `text`). Anything else is
bad input: the row is quarantined with the reason this module returns, the item is still tagged
from its other text.
"""
from __future__ import annotations

import json
import re
from typing import Iterable

_SURROGATES = re.compile("[\ud800-\udfff]")


def parse_speech(raw: str | None, fields: Iterable[str] = ("text",)) -> tuple[str | None, str | None]:
    """Return (text, error). (None, None): the row carries nothing (NULL, empty, '[]')."""
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
    if not isinstance(value, list):
        return None, f"not_a_list: top-level JSON is {type(value).__name__}, expected an array"
    parts = []
    for position, element in enumerate(value):
        if isinstance(element, str):
            parts.append(element)
        elif isinstance(element, dict):
            text = next((element[f] for f in fields if isinstance(element.get(f), str)), None)
            if text is None:
                return None, f"no_text_field: element {position} has none of the fields {list(fields)}"
            parts.append(text)
        else:
            return None, f"unsupported_element: element {position} is {type(element).__name__}"
    text = " ".join(p.strip() for p in parts if p and p.strip())
    # JSON escapes can produce lone surrogates, which Arrow/UTF-8 cannot carry.
    return (_SURROGATES.sub("\ufffd", text) or None), None
