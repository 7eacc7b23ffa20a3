"""Pretrained vectors for a TextCNN's embedding table (`tagger train --embeddings FILE`).

The file is word2vec's text format: a header line `<count> <dim>`, then per line a token and its
`dim` numbers, separated by spaces (a token may itself hold spaces, e.g. `model 3`: the numbers
are taken from the right). `tagger embeddings` writes such a file from the pool's own text
(tagger/training/embeddings.py, gensim); any word2vec/fastText `.vec` file works the same.

A vocabulary unit is looked up as it is read: a char as itself, a `w:`-marked word (char+word) by
the word, lower-cased tokens first then as written. Found rows are copied into the table; the
other rows keep their random initialisation, and [PAD] stays zero.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .words import WORD_PREFIX


class EmbeddingsError(ValueError):
    """An embeddings file that cannot be used: unreadable, a bad header or line (the message names
    the file and the line), or a dimension other than the one asked for."""


def _parse_header(line: str, path) -> tuple[int, int]:
    header = line.split()
    if len(header) != 2 or not all(x.isdigit() for x in header) or int(header[1]) < 1:
        raise EmbeddingsError(f"{path}: line 1 must be '<count> <dim>' (word2vec text format), got "
                              f"{' '.join(header)[:40]!r}")
    return int(header[0]), int(header[1])


def word2vec_header(path: str | os.PathLike) -> tuple[int, int]:
    """(count, dim) from the header line of a word2vec text file, without reading the vectors (a
    config's `embeddings:` is checked at load with it). Raises EmbeddingsError for an unreadable
    file or a header that is not `<count> <dim>`."""
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            return _parse_header(f.readline(), path)
    except (OSError, UnicodeDecodeError) as e:
        raise EmbeddingsError(f"{path}: cannot read it ({e})") from None


def read_word2vec(path: str | os.PathLike, wanted: set[str] | None = None) -> tuple[int, dict[str, np.ndarray]]:
    """(dim, {token: float32 vector}) from a word2vec text file. With `wanted`, only those tokens
    are kept (a large file is streamed, not held). A token listed twice keeps its first vector.
    Raises EmbeddingsError for an unreadable file, a bad header, or a line without `dim` numbers."""
    vectors: dict[str, np.ndarray] = {}
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            _, dim = _parse_header(f.readline(), path)
            for lineno, line in enumerate(f, start=2):
                parts = line.rstrip("\n\r").rstrip(" ").split(" ")
                if len(parts) <= dim:
                    if not line.strip():
                        continue
                    raise EmbeddingsError(f"{path}: line {lineno} has {len(parts)} fields, expected a token and "
                                          f"{dim} numbers")
                token = " ".join(parts[:-dim])
                if wanted is not None and token not in wanted or token in vectors:
                    continue
                try:
                    vectors[token] = np.asarray(parts[-dim:], dtype=np.float32)
                except ValueError:
                    raise EmbeddingsError(f"{path}: line {lineno}: the last {dim} fields are not numbers") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EmbeddingsError(f"{path}: cannot read it ({e})") from None
    return dim, vectors


def lookup_keys(unit: str) -> list[str]:
    """The tokens a vocabulary unit is looked up as, in order: a `w:` word by its word, then the
    lower-cased form before the form as written."""
    word = unit[len(WORD_PREFIX):] if unit.startswith(WORD_PREFIX) and len(unit) > len(WORD_PREFIX) else unit
    return list(dict.fromkeys([word.lower(), word]))


def init_embedding_rows(weight, units: Sequence[str], path: str | os.PathLike) -> list[int]:
    """Copy the vectors of `path` into the rows of `weight` (a (len(units), dim) torch tensor or numpy
    array, changed in place) whose unit has one; rows 0 and 1 ([PAD], [UNK]) are never set. Returns
    the indices of the rows set. Raises EmbeddingsError for a bad file or a dimension other than
    weight's."""
    wanted = {k for u in units[2:] for k in lookup_keys(u)}
    dim, vectors = read_word2vec(path, wanted)
    if dim != weight.shape[1]:
        raise EmbeddingsError(f"{path}: vectors have {dim} dimensions, the TextCNN's embedding has {weight.shape[1]}. "
                              f"Fix: train with embed_dim {dim}, or write vectors of {weight.shape[1]} dimensions "
                              f"(tagger embeddings --dim {weight.shape[1]})")
    found = []
    for i, unit in enumerate(units):
        if i < 2:
            continue
        vec = next((vectors[k] for k in lookup_keys(unit) if k in vectors), None)
        if vec is not None:
            weight[i] = _like(weight, vec)
            found.append(i)
    return found


def _like(weight, vec: np.ndarray):
    """`vec` as a row of `weight` (a torch tensor gets a tensor of its dtype)."""
    if isinstance(weight, np.ndarray):
        return vec.astype(weight.dtype)
    import torch

    return torch.from_numpy(vec).to(weight.dtype)


def write_word2vec(path: str | os.PathLike, tokens: Sequence[str], vectors: np.ndarray) -> None:
    """Write `tokens` and their (len(tokens), dim) `vectors` in word2vec text format (UTF-8, 9
    significant digits: a float32 reads back exactly). Raises ValueError when the counts differ or a token holds a newline."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(tokens) != vectors.shape[0]:
        raise ValueError(f"{len(tokens)} tokens but vectors of shape {vectors.shape}")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{len(tokens)} {vectors.shape[1]}\n")
        for token, vec in zip(tokens, vectors):
            if "\n" in token or not token.strip():
                raise ValueError(f"token {token!r} cannot be written in word2vec text format")
            f.write(token + " " + " ".join(f"{x:.9g}" for x in vec) + "\n")
