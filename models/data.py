"""The team's own labelled data: reading, label order, stratified splits, writing (no Spark).

Three input formats:
* JSON lines: one object per line, ``{"text": "...", "labels": ["a", "b"]}`` (extra keys are
  ignored, ``itemid`` is kept; ``labels`` may be ``[]``; a bare string is one label);
* PaddleNLP text_classification: ``text<TAB>lab1,lab2`` (split on the last tab; an empty label
  part means no labels);
* the team's SFT files (``sft``): ``{"system": "...", "src": "...", "tgt": ...}`` per line, the text in
  ``src``, the labels in ``tgt`` (one label, a list, or labels joined by ``label_sep``, default ``,``;
  ``""`` or ``[]``: none), ``system`` kept per example (an LLM head's prompt) and written back by
  write_jsonl. Auto-detected from a first line with ``src`` and ``tgt`` but no ``text``.
Blank lines are skipped. Every problem is a `DataError` naming file:line and the fix.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import clean_text

FORMATS = ("jsonl", "paddle", "sft")
_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".tsv": "paddle", ".txt": "paddle"}
PADDLE_LABEL_SEP = ","


class DataError(ValueError):
    """A labelled-data file or label file cannot be used as it is (the message says where and how to fix it)."""


@dataclass
class Examples:
    """A labelled file as read by read_examples: parallel lists of n texts and their label lists
    (label names, possibly []), the itemids (or None), the file's path, its format ('jsonl', 'paddle'
    or 'sft'), its line count and, for SFT files, each example's system text (else None). len() is n."""
    texts: list[str]
    labels: list[list[str]]
    itemids: list | None  # None when no record carries an itemid
    path: str
    format: str
    lines: int  # lines in the file, blank ones included
    systems: list | None = None  # SFT files: the "system" text per example

    def __len__(self) -> int:
        return len(self.texts)


def _read_lines(path: Path) -> list[str]:
    """The file's lines, split on "\n" only (a trailing "\r" is dropped): JSON lines may carry raw
    U+2028, U+2029 or U+0085 inside a string (json.dumps(..., ensure_ascii=False) writes them), which
    str.splitlines() would wrongly treat as line breaks."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (or not a file). Fix: pass the path of a labelled data file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). Fix: save the file as UTF-8.") from None


def _detect(path: Path, lines: list[str], fmt: str) -> str:
    if fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(f"unknown format {fmt!r}; use one of auto, {', '.join(FORMATS)}")
        return fmt
    by_ext = _EXTENSIONS.get(path.suffix.lower())
    if by_ext == "paddle":
        return by_ext
    first = next((ln for ln in lines if ln.strip()), "")
    try:
        rec = json.loads(first)
    except ValueError:
        rec = None
    if isinstance(rec, dict):
        return "sft" if "text" not in rec and {"src", "tgt"} <= set(rec) else "jsonl"
    return by_ext or "paddle"  # a .jsonl file that does not parse: jsonl, whose errors say why


def _clean_labels(raw, where: str) -> list[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        got = json.dumps(raw, ensure_ascii=False)[:80]
        raise DataError(f'{where}: "labels" must be a list of strings (or one string), got {got}. '
                        'Fix: write e.g. "labels": ["谍照", "新车上市"], or [] for an example with no labels.')
    out = []
    for x in raw:
        x = x.strip()
        if not x:
            raise DataError(f'{where}: an empty label name. Fix: remove the empty string from "labels".')
        if x not in out:
            out.append(x)
    return out


def _parse_jsonl(line: str, where: str) -> tuple[str, list[str], object]:
    try:
        rec = json.loads(line)
    except ValueError as e:
        hint = (" (the file looks like one JSON array; write one object per line instead)"
                if line.lstrip().startswith("[") else "")
        raise DataError(f"{where}: invalid JSON ({e}){hint}. Fix: one JSON object per line, "
                        '{"text": "...", "labels": ["..."]}.') from None
    if not isinstance(rec, dict):
        raise DataError(f'{where}: a JSON line must be an object, got {type(rec).__name__}. '
                        'Fix: write {"text": "...", "labels": ["..."]}.')
    if "text" not in rec or not isinstance(rec["text"], str):
        problem = 'no "text" key' if "text" not in rec else '"text" is not a string'
        raise DataError(f'{where}: {problem} (keys: {", ".join(rec) or "none"}). '
                        'Fix: put the article text under "text".')
    if "labels" not in rec:
        raise DataError(f'{where}: no "labels" key. Fix: add "labels": ["..."] '
                        '(or "labels": [] for an example with no labels).')
    return rec["text"], _clean_labels(rec["labels"], where), rec.get("itemid")


def _parse_paddle(line: str, where: str) -> tuple[str, list[str], object]:
    if "\t" not in line:
        raise DataError(f"{where}: no tab in the line. Fix: write text<TAB>label1,label2 (PaddleNLP "
                        "text_classification format; end the line with a tab for an example with no labels), "
                        "or pass --format jsonl if this is JSON lines ({\"text\", \"labels\"}) or --format sft "
                        "for {\"system\", \"src\", \"tgt\"} lines.")
    text, _, labs = line.rpartition("\t")
    names = [x for x in labs.split(PADDLE_LABEL_SEP)] if labs.strip() else []
    if any(not x.strip() for x in names):
        raise DataError(f"{where}: an empty label name in {labs!r}. Fix: separate labels with single commas.")
    return text, _clean_labels(names, where), None


def _parse_sft(line: str, where: str, label_sep: str) -> tuple[str, list[str], object, str]:
    try:
        rec = json.loads(line)
    except ValueError as e:
        raise DataError(f'{where}: invalid JSON ({e}). Fix: one JSON object per line, '
                        '{"system": "...", "src": "...", "tgt": "<label>"}.') from None
    if not isinstance(rec, dict) or not isinstance(rec.get("src"), str) or "tgt" not in rec:
        keys = ", ".join(rec) if isinstance(rec, dict) else type(rec).__name__
        raise DataError(f'{where}: an SFT line needs "src" (the text, a string) and "tgt" (the label(s)); got '
                        f'{keys or "no keys"}. Fix: write {{"system": "...", "src": "...", "tgt": "<label>"}}, or '
                        'pass --format jsonl for {"text", "labels"} lines.')
    tgt = rec["tgt"]
    if not isinstance(tgt, (str, list)):
        raise DataError(f'{where}: "tgt" must be a label, a list of labels or labels joined by {label_sep!r}, '
                        f'got {json.dumps(tgt, ensure_ascii=False)[:40]}. Fix: write e.g. "tgt": "谍照", or "" for none.')
    if isinstance(tgt, str):
        tgt = [x for x in tgt.split(label_sep)] if tgt.strip() else []
        if any(not x.strip() for x in tgt):
            raise DataError(f'{where}: an empty label in "tgt" {rec["tgt"]!r} (separator {label_sep!r}). Fix: '
                            'separate labels with single separators, or pass --label-sep.')
    system = rec.get("system")
    if system is not None and not isinstance(system, str):
        raise DataError(f'{where}: "system" must be a string. Fix: put the prompt text there, or leave it out.')
    return rec["src"], _clean_labels(tgt, where), rec.get("itemid"), system


def read_examples(path: str | os.PathLike, fmt: str = "auto", labels: Sequence[str] | None = None,
                  label_sep: str = PADDLE_LABEL_SEP) -> Examples:
    """Read a labelled data file. fmt "auto": .tsv/.txt -> paddle; otherwise sniffed from the first
    non-empty line: an object with "src" and "tgt" (no "text") -> sft, another object -> jsonl, else
    jsonl for a .jsonl/.json file and paddle for any other. `label_sep` splits an SFT line's "tgt" string into labels. Texts are normalized as the job
    normalizes doc_text (tagger.models.text.clean_text). Returns Examples (systems set for sft).
    Raises DataError naming file:line and the fix; with `labels`, a label outside them is a DataError
    (see check_labels)."""
    if not label_sep:
        raise DataError("--label-sep is empty. Fix: give the string that joins labels in \"tgt\", e.g. ',' or '|'.")
    p = Path(path)
    lines = _read_lines(p)
    fmt = _detect(p, lines, fmt)
    texts, label_lists, itemids, systems = [], [], [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{i}"
        if fmt == "sft":
            text, labs, itemid, system = _parse_sft(line, where, label_sep)
            systems.append(system)
        else:
            text, labs, itemid = (_parse_jsonl if fmt == "jsonl" else _parse_paddle)(line, where)
        texts.append(clean_text(text))  # the job's normalization: training and serving see the same text
        label_lists.append(labs)
        itemids.append(itemid)
    if not texts:
        raise DataError(f"{p}: no examples (the file is empty or blank). Fix: point at the labelled data file.")
    ex = Examples(texts, label_lists, itemids if any(x is not None for x in itemids) else None, str(p), fmt, len(lines),
                  systems if fmt == "sft" else None)
    if labels is not None:
        check_labels([ex], labels)
    return ex


def read_label_file(path: str | os.PathLike) -> list[str]:
    """One label per line (PaddleNLP label.txt); the file's order is the head's output order.
    Trailing blank lines are ignored; a blank line before a label, or a duplicate, is a DataError."""
    p = Path(path)
    lines = _read_lines(p)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{p}: no labels (the file is empty). Fix: write one label name per line.")
    seen: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise DataError(f"{p}:{i}: empty line. Fix: one label name per line, no blank lines between them.")
        if name in seen:
            raise DataError(f"{p}:{i}: duplicate label {name!r} (first on line {seen[name]}). "
                            "Fix: list each label once.")
        seen[name] = i
    return list(seen)


def check_labels(examples: Iterable[Examples], labels: Sequence[str]) -> None:
    """DataError listing every label of the data that is not in `labels`, with counts and a first file:line."""
    known = set(labels)
    counts: Counter = Counter()
    first: dict[str, str] = {}
    for ex in examples:
        for k, labs in enumerate(ex.labels):
            for name in labs:
                if name not in known:
                    counts[name] += 1
                    first.setdefault(name, f"{ex.path} example {k + 1}")
    if counts:
        listed = ", ".join(f"{n!r} ({c} example{'s' if c > 1 else ''}, first in {first[n]})"
                           for n, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        raise DataError(f"{len(counts)} label(s) in the data are not in the label file: {listed}. Fix: add "
                        "them to the label file, or correct / remove those labels in the data (nothing is "
                        "dropped silently).")


def resolve_labels(examples: Examples | Iterable[Examples],
                   label_file_labels: Sequence[str] | None = None) -> list[str]:
    """The head's labels, in output order. With a label file: its order, and any other label in the
    data is a DataError. Without: every label in the data, by descending number of positives
    (over all the given files), ties by name."""
    exs = [examples] if isinstance(examples, Examples) else list(examples)
    if label_file_labels is not None:
        check_labels(exs, label_file_labels)
        return list(label_file_labels)
    counts = Counter(name for ex in exs for labs in ex.labels for name in labs)
    if not counts:
        raise DataError(f"no labels in {', '.join(ex.path for ex in exs)}: every example has an empty label list. "
                        "Fix: label the data, or pass a label file.")
    return [n for n, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def iterative_split(label_lists: Sequence[Sequence[str] | None], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                    seed: int = 0) -> list[int]:
    """Split index (0..len(fractions)-1) per example, by iterative stratification (Sechidis et al.
    2011, as in skmultilearn): the rarest remaining label is dealt out first, each example going to
    the split that most lacks that label (then the one that most lacks examples, then at random).
    One addition: a label with at least as many positives as splits first fills every split that has
    none of it, and a final repair pass swaps examples for any split still missing such a label.
    Examples without labels fill the splits by the fractions. Deterministic for a seed."""
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or len(fr) < 1 or not np.all(fr > 0):
        raise ValueError(f"fractions must be positive numbers, got {list(fractions)}")
    fr = fr / fr.sum()
    k, n = len(fr), len(label_lists)
    rng = np.random.default_rng(seed)
    rows = [sorted(set([r] if isinstance(r, str) else (r or []))) for r in label_lists]
    names = sorted({x for r in rows for x in r})
    index = {x: j for j, x in enumerate(names)}
    ex_labels = [[index[x] for x in r] for r in rows]
    L = len(names)
    members: list[list[int]] = [[] for _ in range(L)]
    for i in rng.permutation(n):  # a seeded order of the examples
        for j in ex_labels[i]:
            members[j].append(int(i))
    total = np.array([len(m) for m in members], dtype=np.int64)
    want_label = total[:, None] * fr[None, :]  # (L, k) positives still wanted per split
    want_size = n * fr
    have = np.zeros((L, k), dtype=np.int64)
    assign = np.full(n, -1, dtype=np.int64)
    remaining = total.copy()
    label_tiebreak = rng.permutation(L)

    def put(i: int, s: int) -> None:
        assign[i] = s
        want_size[s] -= 1
        for j in ex_labels[i]:
            want_label[j, s] -= 1
            have[j, s] += 1
            remaining[j] -= 1

    def best(cands: np.ndarray, j: int | None) -> int:
        for key in ([want_label[j]] if j is not None else []) + [want_size]:
            v = key[cands]
            cands = cands[v >= v.max() - 1e-9]
        return int(cands[rng.integers(len(cands))]) if len(cands) > 1 else int(cands[0])

    all_splits = np.arange(k)
    while (remaining > 0).any():
        live = np.flatnonzero(remaining > 0)
        j = int(live[np.lexsort((label_tiebreak[live], remaining[live]))[0]])
        for i in members[j]:
            if assign[i] >= 0:
                continue
            missing = np.flatnonzero(have[j] == 0) if total[j] >= k else all_splits[:0]
            put(i, best(missing if len(missing) else all_splits, j))
    for i in rng.permutation(n):
        if assign[i] < 0:
            put(int(i), best(all_splits, None))
    _repair(assign, ex_labels, total >= k, k)
    return assign.tolist()


def _repair(assign: np.ndarray, ex_labels: list[list[int]], guarded: np.ndarray, k: int) -> None:
    """For each guarded label missing from a split, move one of its examples there from a split that
    has two or more, and move back an example the target split can spare. No guarded label ever loses
    its last positive in a split, so every repair is a net gain and the loop ends."""
    have = np.zeros((len(guarded), k), dtype=np.int64)
    for i, labs in enumerate(ex_labels):
        for j in labs:
            have[j, assign[i]] += 1

    def spare(i: int, s: int) -> bool:  # can example i leave split s without emptying a guarded label?
        return all(not guarded[j] or have[j, s] >= 2 for j in ex_labels[i])

    def move(i: int, s: int) -> None:
        for j in ex_labels[i]:
            have[j, assign[i]] -= 1
            have[j, s] += 1
        assign[i] = s

    def fix(j: int, b: int) -> bool:
        donors = [int(s) for s in np.argsort(-have[j], kind="stable") if have[j, s] >= 2]
        pick = next(((int(i), a) for a in donors for i in np.flatnonzero(assign == a)
                     if j in ex_labels[i] and spare(int(i), a)), None)
        if pick is None:
            return False  # every candidate carries another label the donor split cannot spare
        i, a = pick
        move(i, b)
        back = [int(x) for x in np.flatnonzero(assign == b) if x != i and j not in ex_labels[x] and spare(int(x), b)]
        if back:
            move(min(back, key=lambda x: (len(ex_labels[x]), x)), a)
        return True

    progress = True
    while progress:  # one repair can unblock another
        progress = False
        for j in np.flatnonzero(guarded):
            for b in np.flatnonzero(have[j] == 0):
                progress |= fix(int(j), int(b))


def write_jsonl(path: str | os.PathLike, texts: Sequence[str], label_lists: Sequence[Sequence[str]],
                itemids: Sequence | None = None, systems: Sequence | None = None) -> None:
    """Write JSON lines {"itemid"?, "system"?, "text", "labels"} atomically (temp file + rename); itemid
    and system (an SFT file's prompt) only where not None. Raises ValueError for lists of unequal length."""
    if len(texts) != len(label_lists) or any(x is not None and len(x) != len(texts) for x in (itemids, systems)):
        raise ValueError("texts, label_lists, itemids and systems must have the same length")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for k, (text, labs) in enumerate(zip(texts, label_lists)):
                rec = {} if itemids is None or itemids[k] is None else {"itemid": itemids[k]}
                if systems is not None and systems[k] is not None:
                    rec["system"] = systems[k]
                rec.update(text=text, labels=list(labs or []))
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["DataError", "Examples", "read_examples", "read_label_file", "check_labels", "resolve_labels",
           "iterative_split", "write_jsonl", "FORMATS"]
