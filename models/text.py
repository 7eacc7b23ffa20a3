"""Text normalization: one function, `clean_text`, applied to every text before rules and models see
it, in the daily job (each part of doc_text: title, summary, OCR, ASR) and in `tagger train`,
`evaluate` and `calibrate` on labelled files alike, so training and serving see identical text.

In this order:
1. HTML as CMS titles carry it: character references are decoded (`&#21271;` -> 北, `&amp;` -> &)
   and elements removed (`<b>北京</b>车展` -> 北京车展; block elements such as <p> and <br> become a
   space; script and style content is dropped). A `<` that does not open a tag stays
   (`价格<10万`). The standard library's HTML parser does this; text without `<` or `&` skips it.
2. Unicode format characters (category Cf: U+200B/C/D zero-width spaces and joiners, U+2060,
   U+FEFF, U+00AD soft hyphen, ...) are removed, not turned into spaces: `北京\u200b车展` is 北京车展.
3. NFKC folding: full-width and compatibility forms become their plain forms (`ＳＵＶ` -> SUV,
   `１２．９８万` -> 12.98万).
4. Control characters and runs of whitespace (any Unicode space) become one space; the ends are
   trimmed. Lone surrogates (from JSON escapes) become U+FFFD, which Arrow can carry.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from html.parser import HTMLParser



def _category_class(category: str) -> str:
    """A regex character class of every code point in a Unicode general category, as ranges (a class
    of ranges matches about 8x faster than one of single characters)."""
    ranges: list[list[int]] = []
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c)) == category:
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    return "[" + "".join(re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in ranges) + "]"


_FORMAT = re.compile(_category_class("Cf"))
_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_SURROGATES = re.compile("[\ud800-\udfff]")
_BLOCK_TAGS = {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
               "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
               "section", "table", "td", "th", "tr", "ul"}
_SKIP_TAGS = {"script", "style"}


class _TextOnly(HTMLParser):
    """Collects an HTML fragment's text: entities decoded, elements removed."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self.skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """`text` with HTML character references decoded and elements removed (see the module
    docstring); text without '<' or '&' is returned as it is."""
    if "<" not in text and "&" not in text:
        return text
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def clean_text(value) -> str:
    """One text as rules and models see it (the module docstring gives the steps). None, NaN and
    other non-strings become ''. Never raises; idempotent on its own output except for text that
    still reads as HTML after one pass (e.g. `&amp;lt;` decodes one level per pass)."""
    if not isinstance(value, str):
        return ""
    text = strip_html(value)
    text = _FORMAT.sub("", text)
    text = _SURROGATES.sub("\ufffd", text)
    if not unicodedata.is_normalized("NFKC", text):  # the common case costs a scan, not a copy
        text = unicodedata.normalize("NFKC", text)
    return _SPACE.sub(" ", text).strip()
