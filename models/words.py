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


def text_block(tokenizer: str, entries: Sequence[str] = ()) -> dict:
    """The sidecar's `text` block: {"tokenizer"} plus, when words are read, the jieba version and
    the dictionary's size and digest (serving reads the dictionary from the artifact's dictionary.txt)."""
    block = {"tokenizer": check_tokenizer(tokenizer)}
    if tokenizer != "char":
        import jieba

        block["jieba"] = jieba.__version__
        if entries:
            block.update(dictionary_entries=len(entries), dictionary_digest=dictionary_digest(entries))
    return block


def dictionary_in(directory: str | os.PathLike) -> list[str]:
    """The team dictionary an artifact carries (`dictionary.txt` in `directory`), [] when it has none.
    Raises OSError / ValueError as read_dictionary."""
    path = Path(directory) / DICTIONARY
    return read_dictionary(path) if path.is_file() else []


def write_dictionary(directory: str | os.PathLike, entries: Sequence[str]) -> None:
    """Write `entries` (one per line, UTF-8) to `directory`/dictionary.txt; nothing when empty."""
    if entries:
        (Path(directory) / DICTIONARY).write_text("\n".join(entries) + "\n", encoding="utf-8")


UNIT_VOCAB = "word_vocab.json"  # a textcnn head's vocabulary when it reads words


class UnitVocab:
    """The vocabulary of a textcnn head that reads words (`word` or `char+word`): [PAD]=0, [UNK]=1,
    then units by descending train frequency. It encodes like CharVocab: `encode(texts, max_length,
    min_width)` -> (ids int32 (n, W), lengths int64 (n,)). `max_length` cuts each text to that many
    characters before it is read (so char+word rows hold at most about twice as many units).

    `tokens`: the units in id order, starting [PAD], [UNK]; `tokenizer`: word | char+word;
    `entries`: the team dictionary. Raises ValueError for a bad first two tokens, duplicates or
    the tokenizer `char` (CharVocab reads chars)."""

    def __init__(self, tokens: Sequence[str], tokenizer: str, entries: Sequence[str] = ()):
        tokens = list(tokens)
        if tokens[:2] != ["[PAD]", "[UNK]"]:
            raise ValueError("a unit vocabulary must start with [PAD], [UNK]")
        if len(set(tokens)) != len(tokens):
            raise ValueError("the unit vocabulary has duplicate entries")
        if check_tokenizer(tokenizer) == "char":
            raise ValueError("tokenizer char is read by CharVocab")
        self.tokens, self.tokenizer, self.entries = tokens, tokenizer, list(entries)
        self.index = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: str, entries: Sequence[str] = (), max_length: int | None = None,
              max_size: int = 50000, min_freq: int = 2) -> "UnitVocab":
        """Units of `texts` (each cut to max_length chars) seen at least `min_freq` times, most frequent
        first (ties in first-seen order), at most `max_size` entries with the two specials."""
        from collections import Counter

        counts = Counter(u for units in text_units([t[:max_length] if max_length else t for t in texts],
                                                   tokenizer, entries) for u in units)
        kept = [u for u, c in counts.most_common(max(0, max_size - 2)) if c >= min_freq]
        return cls(["[PAD]", "[UNK]"] + kept, tokenizer, entries)

    def encode(self, texts: Sequence[str], max_length: int, min_width: int = 1):
        """(ids int32 (n, W), lengths int64 (n,)): each text cut to max_length chars, read as units,
        unknown units [UNK]=1, padded with [PAD]=0 to W = max(min_width, longest row, 1)."""
        import numpy as np

        get = self.index.get
        rows = [[get(u, 1) for u in units] for units in
                text_units([t[:max_length] for t in texts], self.tokenizer, self.entries)]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.zeros((len(rows), max(int(lengths.max()) if len(rows) else 0, int(min_width), 1)), dtype=np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
        return ids, lengths

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON {"tokenizer", "units"} (UTF-8)."""
        import json

        Path(path).write_text(json.dumps({"tokenizer": self.tokenizer, "units": self.tokens}, ensure_ascii=False),
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike, entries: Sequence[str] = ()) -> "UnitVocab":
        """Read a vocabulary written by save. Raises OSError if unreadable, ValueError (JSON or
        content errors) or KeyError for a file without "tokenizer"/"units"."""
        import json

        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["units"], d["tokenizer"], entries)
