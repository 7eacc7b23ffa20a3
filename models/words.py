"""What a head reads a text as: characters, jieba words, or both (`tokenizer: char | word | char+word`).

One function, `text_units`, turns a text into its units for the textcnn and linear heads, in
training and in the job alike; the artifact records the tokenizer and carries the team dictionary
(`dictionary.txt`), so serving cuts words exactly as training did.

Words come from jieba (its own dictionary ships with the package; nothing is downloaded). A team
dictionary of car series and brand names (one per line, `#` comments and blank lines skipped) is
added to jieba, so `宋PLUS` or `ID.4` stays one token. jieba splits on whitespace (and on any char
outside its word blocks, such as `·`), so an entry with a space (`Model 3`) or such a char is
protected before cutting: each occurrence (any run of whitespace, or none,
where the entry has a space: `Model 3`, `Model3`) is replaced by one private-use character that
jieba passes through whole, and mapped back to the entry (spaces as in the dictionary) afterwards.
Everything is lower-cased first (like the char vocabulary), dictionary entries too.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

TOKENIZERS = ("char", "word", "char+word")
DICTIONARY = "dictionary.txt"  # the team dictionary, copied into the artifact
WORD_PREFIX = "w:"  # char+word units: words carry this prefix, so the word 车 is not the char 车
_PUA = 0xE000  # protected entries become U+E000, U+E001, ... while jieba cuts
_PUA_END = 0xF8FF
# what jieba keeps in one block (its re_han_default); an entry with any other char (a space, `·`)
# is protected by substitution instead of being added to jieba's dictionary
_JIEBA_WHOLE = re.compile("[\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+")


def check_tokenizer(name: str) -> str:
    """`name` if it is one of TOKENIZERS; else ValueError naming the choices."""
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}, got {name!r}")
    return name


def read_dictionary(path: str | os.PathLike) -> list[str]:
    """The entries of a team dictionary file: UTF-8, one name per line; blank lines and lines
    starting with '#' skipped, surrounding whitespace stripped, inner whitespace runs collapsed to
    one space, lower-cased, duplicates dropped (first kept). The whole line is the name (jieba's
    own `name freq tag` format is not read: `Model 3` would lose its 3).
    Raises OSError if unreadable, ValueError if not UTF-8 or if an entry is longer than 50 chars."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"dictionary {path} is not UTF-8 ({e})") from None
    out: list[str] = []
    for line in text.splitlines():
        entry = " ".join(line.split()).lower()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) > 50:
            raise ValueError(f"dictionary {path}: entry {entry[:20]!r}... is longer than 50 characters")
        if entry not in out:
            out.append(entry)
    return out


def dictionary_digest(entries: Sequence[str]) -> str:
    """Short sha256 (12 hex) of the entries in order: recorded in the sidecar."""
    return hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()[:12]


class WordCutter:
    """jieba with a team dictionary, private to this object (jieba's global tokenizer is untouched).

    `entries`: dictionary entries as read_dictionary returns them (lower-case). `cut(text)` ->
    list of word strings (lower-cased, whitespace dropped). jieba is imported here, so a head
    with tokenizer `char` never imports it. Raises ValueError for more than 6,399 protected
    entries (the private-use characters available)."""

    def __init__(self, entries: Sequence[str] = ()):
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)  # "Building prefix dict ..." on every worker is noise
        self.entries = list(entries)
        self._jieba = jieba.Tokenizer()
        spaced = sorted({e for e in self.entries if not _JIEBA_WHOLE.fullmatch(e)}, key=len, reverse=True)
        if len(spaced) > _PUA_END - _PUA:
            raise ValueError(f"{len(spaced)} dictionary entries with spaces; at most {_PUA_END - _PUA}")
        self._protect = {chr(_PUA + i): e for i, e in enumerate(spaced)}
        self._pattern = None
        if spaced:
            alternatives = ["\\s*".join(re.escape(part) for part in e.split(" ")) for e in spaced]
            self._pattern = re.compile("|".join(alternatives))
        self._by_text = {}
        for mark, e in self._protect.items():
            self._by_text[e] = mark
        for e in self.entries:
            if e not in self._by_text:
                self._jieba.add_word(e, freq=max(self._jieba.suggest_freq(e, False), 1000))

    def cut(self, text: str) -> list[str]:
        """The words of `text` (lower-cased; whitespace tokens dropped; dictionary entries whole)."""
        text = text.lower()
        if self._protect:
            text = re.sub("[\ue000-\uf8ff]", " ", text)  # a text's own private-use chars are not marks
            text = self._pattern.sub(lambda m: self._by_text[self._canonical(m.group(0))], text)
        words = []
        for w in self._jieba.cut(text, HMM=True):
            if not w.strip():
                continue
            words.append(self._protect.get(w, w))
        return words

    def _canonical(self, matched: str) -> str:
        """The dictionary entry a match stands for (its spaces as in the dictionary)."""
        squeezed = "".join(matched.split())
        for e in self._protect.values():
            if "".join(e.split()) == squeezed:
                return e
        return matched  # unreachable: the pattern only matches entries


_CUTTERS: dict[tuple[str, ...], WordCutter] = {}


def word_cutter(entries: Sequence[str] = ()) -> WordCutter:
    """A WordCutter for these entries, built once per process (jieba's prefix dictionary takes ~1 s)."""
    key = tuple(entries)
    if key not in _CUTTERS:
        _CUTTERS[key] = WordCutter(entries)
    return _CUTTERS[key]


def text_units(texts: Iterable[str], tokenizer: str, entries: Sequence[str] = ()) -> list[list[str]]:
    """Per text, its units for a head: `char` -> its characters (lower-cased, whitespace kept as in
    the text); `word` -> its jieba words (WordCutter.cut); `char+word` -> its characters, then its
    words each prefixed with WORD_PREFIX. `texts`: str values (None is not allowed: normalize
    first). Raises ValueError for an unknown tokenizer."""
    check_tokenizer(tokenizer)
    if tokenizer == "char":
        return [list(t.lower()) for t in texts]
    cutter = word_cutter(entries)
    if tokenizer == "word":
        return [cutter.cut(t) for t in texts]
    return [list(t.lower()) + [WORD_PREFIX + w for w in cutter.cut(t)] for t in texts]


def dictionary_in(directory: str | os.PathLike) -> list[str]:
    """The team dictionary an artifact carries (`dictionary.txt` in `directory`), [] when it has none.
    Raises OSError / ValueError as read_dictionary."""
    path = Path(directory) / DICTIONARY
    return read_dictionary(path) if path.is_file() else []


def write_dictionary(directory: str | os.PathLike, entries: Sequence[str]) -> None:
    """Write `entries` (one per line, UTF-8) to `directory`/dictionary.txt; nothing when empty."""
    if entries:
        (Path(directory) / DICTIONARY).write_text("\n".join(entries) + "\n", encoding="utf-8")
