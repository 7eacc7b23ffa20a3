"""Tokenization and vocabulary building for the tagging heads.

Two encoders share one output format, a padded id matrix plus per-row lengths, so that the
inference fast path (`tagger.models.loading.LoadedHead.predict_proba`) and the training loop can sort
by length and slice dynamic-width mini-batches without any per-row Python:

* `CharVocab` -- char-level vocabulary of the TextCNN gate. `[PAD]`=0, `[UNK]`=1, then chars by
  descending frequency. Encoding is a vectorized code-point table lookup.
* `build_wordpiece_tokenizer` / `encode_with_tokenizer` -- a BERT WordPiece vocabulary trained
  on the training texts with `tokenizers.BertWordPieceTokenizer(handle_chinese_chars=True)`,
  wrapped as a transformers fast tokenizer (`BertTokenizerFast`).
"""
from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0
UNK_ID = 1
BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_MAX_CODEPOINT = 0x110000


def normalize_texts(texts: Iterable) -> list[str]:
    """Return `texts` as a list of str; None / NaN / non-str values become "" (Spark nulls)."""
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single str")
    return [t if isinstance(t, str) else ("" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t))
            for t in texts]


def _codepoints(s: str) -> np.ndarray:
    """Code points of `s` as uint32 (lone surrogates pass through and map to [UNK])."""
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def pad_flat(flat: np.ndarray, lengths: np.ndarray, width: int, pad_value: int = 0,
             dtype=np.int32) -> np.ndarray:
    """Scatter concatenated sequences `flat` (row i has `lengths[i]` items) into an
    (n, width) matrix filled with `pad_value`. Rows longer than `width` must not occur."""
    n = len(lengths)
    out = np.full((n, max(int(width), 1)), pad_value, dtype=dtype)
    total = int(lengths.sum())
    if total:
        rows = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(total) - np.repeat(starts, lengths)
        out[rows, cols] = flat
    return out


def _storable_char(ch: str) -> bool:
    # vocab.txt holds one token per line: no line breaks or other non-printables (space is kept).
    return ch == " " or ch.isprintable()


class CharVocab:
    """Char-level vocabulary: tokens[0] = [PAD], tokens[1] = [UNK], then single characters."""

    def __init__(self, tokens: Sequence[str], lowercase: bool = True):
        tokens = list(tokens)
        if len(tokens) < 2 or tokens[0] != PAD_TOKEN or tokens[1] != UNK_TOKEN:
            raise ValueError("char vocab must start with [PAD], [UNK]")
        chars = tokens[2:]
        bad = [c for c in chars if len(c) != 1]
        if bad:
            raise ValueError(f"char vocab entries must be single characters, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("char vocab has duplicate entries")
        self.tokens = tokens
        self.lowercase = bool(lowercase)
        table = np.full(_MAX_CODEPOINT, UNK_ID, dtype=np.int32)
        if chars:
            table[np.fromiter((ord(c) for c in chars), dtype=np.int64, count=len(chars))] = \
                np.arange(2, len(tokens), dtype=np.int32)
        # Whitespace that cannot be stored in vocab.txt (tabs, newlines, ...) maps to " ".
        if " " in chars:
            space_id = table[ord(" ")]
            for ws in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029\u3000\xa0":
                if ws not in chars:
                    table[ord(ws)] = space_id
        self._table = table

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 20000, min_freq: int = 2,
              lowercase: bool = True) -> "CharVocab":
        """Chars of `texts` by descending frequency (ties by code point), at most `max_size`
        entries including the two specials, each seen at least `min_freq` times."""
        joined = "".join(normalize_texts(texts))
        if lowercase:
            joined = joined.lower()
        cps = _codepoints(joined)
        if cps.size == 0:
            return cls([PAD_TOKEN, UNK_TOKEN], lowercase=lowercase)
        uniq, counts = np.unique(cps, return_counts=True)
        order = np.lexsort((uniq, -counts))  # by count desc, then code point asc
        chars: list[str] = []
        for cp, cnt in zip(uniq[order].tolist(), counts[order].tolist()):
            if cnt < min_freq or len(chars) >= max_size - 2:
                break
            if 0xD800 <= cp <= 0xDFFF:
                continue
            ch = chr(cp)
            if _storable_char(ch):
                chars.append(ch)
        return cls([PAD_TOKEN, UNK_TOKEN] + chars, lowercase=lowercase)

    def save(self, path: str | os.PathLike) -> None:
        """Write vocab.txt: one token per line, UTF-8, \n line ends, [PAD] and [UNK] first.
        OSError if the file cannot be written."""
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(self.tokens) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, lowercase: bool = True) -> "CharVocab":
        """Read a vocab.txt written by save. Raises OSError if it cannot be read, UnicodeDecodeError
        (a ValueError) if it is not UTF-8, and ValueError if it does not start with [PAD], [UNK] or
        has a non-single-character or duplicate entry."""
        with open(path, encoding="utf-8", newline="") as f:
            content = f.read()
        lines = content.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lines = [ln[:-1] if ln.endswith("\r") and len(ln) > 1 else ln for ln in lines]
        return cls(lines, lowercase=lowercase)

    def encode(self, texts: Sequence[str], max_length: int, min_width: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorized encoding. Returns (ids int32 (n, W), lengths int64 (n,)) with
        W = max(min_width, longest row), rows truncated to `max_length` chars, [PAD]=0 after."""
        texts = normalize_texts(texts)
        if self.lowercase:
            joined_full = "".join(texts)
            lowered = joined_full.lower()
            if len(lowered) == len(joined_full):
                # lower() kept every length, so per-row slicing of the lowered string is exact.
                lens_full = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
                starts = np.cumsum(lens_full) - lens_full
                parts = [lowered[s:s + min(n, max_length)]
                         for s, n in zip(starts.tolist(), lens_full.tolist())]
            else:
                parts = [t.lower()[:max_length] for t in texts]
        else:
            parts = [t[:max_length] for t in texts]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        flat = self._table[_codepoints("".join(parts))]
        width = max(int(lengths.max()) if len(parts) else 0, int(min_width), 1)
        return pad_flat(flat, lengths, width, PAD_ID), lengths


def count_distinct_chars(texts: Iterable[str], lowercase: bool = True) -> int:
    """The number of distinct code points in `texts` (None/NaN as ""), lower-cased first unless
    lowercase=False; 0 for no text. TypeError if `texts` is a single str."""
    joined = "".join(normalize_texts(texts))
    if lowercase:
        joined = joined.lower()
    return int(np.unique(_codepoints(joined)).size) if joined else 0


def build_wordpiece_tokenizer(texts: Sequence[str], out_dir: str | os.PathLike | None = None,
                              vocab_size: int | None = None, extra_wordpieces: int = 3000,
                              min_frequency: int = 2, lowercase: bool = True,
                              model_max_length: int = 512):
    """Train a WordPiece vocab on `texts` (every distinct char is kept: limit_alphabet is set
    above the number of distinct chars) and return a transformers `BertTokenizerFast`.

    If `out_dir` is given, vocab.txt is written there (the tokenizer's own files are written
    later by `tokenizer.save_pretrained`)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    texts = normalize_texts(texts)
    n_chars = count_distinct_chars(texts, lowercase=lowercase)
    if vocab_size is None:
        vocab_size = len(BERT_SPECIAL_TOKENS) + n_chars + extra_wordpieces
    wp = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                lowercase=lowercase)
    wp.train_from_iterator(texts, vocab_size=int(vocab_size), min_frequency=min_frequency,
                           limit_alphabet=n_chars + 100, special_tokens=BERT_SPECIAL_TOKENS,
                           show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        wp.save_model(tmp)
        vocab_file = os.path.join(tmp, "vocab.txt")
        with open(vocab_file, encoding="utf-8") as f:
            n_vocab = sum(1 for _ in f)
        # from_pretrained(dir) works on transformers 4.x and 5.x alike (the constructor's
        # vocab argument was renamed between them).
        tok = BertTokenizerFast.from_pretrained(tmp, do_lower_case=lowercase,
                                                tokenize_chinese_chars=True,
                                                model_max_length=int(model_max_length),
                                                local_files_only=True)
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
            with open(vocab_file, "rb") as src, open(os.path.join(out_dir, "vocab.txt"), "wb") as dst:
                dst.write(src.read())
    if len(tok) != n_vocab:
        raise RuntimeError(f"tokenizer has {len(tok)} tokens but vocab.txt has {n_vocab}")
    return tok


def encode_with_tokenizer(tokenizer, texts: Sequence[str], max_length: int, min_width: int = 1
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize the whole list at once with a (fast) HF tokenizer, truncating to `max_length`
    tokens including specials. Returns (ids int64 (n, W), lengths int64 (n,)) padded with the
    tokenizer's pad id."""
    texts = normalize_texts(texts)
    if not texts:
        return np.zeros((0, max(min_width, 1)), dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Long articles: tokenize only a prefix. A token never spans less than one char, so with
    # 8 chars per token of slack the first max_length tokens are the same as for the full text.
    cut = 8 * int(max_length) + 64
    texts = [t if len(t) <= cut else t[:cut] for t in texts]
    enc = tokenizer(texts, truncation=True, max_length=int(max_length), padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    seqs = enc["input_ids"]
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    total = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=total)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(int(lengths.max()), int(min_width), 1)
    return pad_flat(flat, lengths, width, pad_id, dtype=np.int64), lengths
