"""Deterministic, seeded demo data for the tagging job: pool, ASR, OCR, tag dimension, truth.

Pure Python/numpy/pandas; another module writes these DataFrames into Hive.

What ``generate(n_items, start_date, n_days, seed)`` produces
---------------------------------------------------------------
``pool`` (``dws_all_reco_pool_a``): exactly ``n_items`` distinct non-NULL itemids pass the
team's filter ::

    dtype IN ('news','yichehao_news','yichehao_video') AND recommend_grade != 'Z'
    AND gc NOT IN ('AGC-XIAOYI','AGC-XIAOSHA') AND pt = D AND create_time >= D

spread evenly over the ``n_days`` dates (the first ``n_items % n_days`` days get one more).
On top of them (all counts relative to ``n_items``):

* ~8% rows the filter must drop, each with a fresh itemid: ~2% ``recommend_grade='Z'``,
  ~2% ``gc`` in AGC-XIAOYI/AGC-XIAOSHA, ~2.5% ``dtype`` in video/koubei/live, ~1.5%
  ``create_time`` on the day before ``pt``;
* ~0.5% exact duplicate rows and ~0.5% rows repeating a selected itemid with a different
  title/summary (and relate_app_tag_id) and a different ``create_time`` on the same day;
* ~0.1% rows with ``itemid`` None (at least one per day when ``n_items >= 1000``) that
  otherwise pass the filter.

``truth`` has one row per distinct non-NULL itemid of the pool, **filtered-out itemids
included** (their rows are harmless: the filter never selects them). For an itemid with two
different versions, truth (labels, flags) follows the row with the latest ``create_time``.
``labels`` are ``tag_path_name`` strings of status-1 content tags, e.g.
``['内容标签/新车资讯', '内容标签/新车资讯/谍照', '内容标签/车展/北京车展']`` for new-car news,
``['内容标签/用车养车', '内容标签/用车养车/保养']`` or ``['内容标签/用车养车']`` for a negative,
``['内容标签/车展/上海车展']`` for an auto-show item that is not new-car news. Noise (on the
selected items only): ``ambiguous`` ~3% (2/3 new-car news with one sentence of another tag,
truth = both; 1/3 another tag with a new-car keyword used out of context, truth = that tag)
and ``mislabelled`` ~2% (half new-car text with a negative truth, half negative text with
truth ``['内容标签/新车资讯', '内容标签/新车资讯/新车解析']``).

``asr`` / ``ocr``: rows only for ``yichehao_video`` itemids (selected or not), keyed by
``video_id = itemid``; per video and table: ~77% usable (of all videos ~10% as 2-3 rows
where the latest by (dt, id) is the usable one and the older ones are partial text, ``'[]'``,
NULL or malformed), ~10% no row, ~5% ``'[]'``, ~5% NULL, ~3% malformed. ~15% of the latest
rows land 1-2 days after the video's ``pt``. Usable payloads are JSON arrays (ensure_ascii
off) of strings ``["今天我们来看", ...]`` or of objects; ASR objects are
``{"text", "start", "end"}``, OCR objects ``{"text", "frame", "score"}``: the text is
always in ``"text"``. Malformed payloads are exactly one of: a truncated JSON array (a
proper prefix of a valid array), a JSON object ``{"text": "...", "code": 0}``, a bare number
(``0``, ``-1``, ``404``), or plain text (``ERROR: asr timeout`` / ``ERROR: ocr timeout`` /
``识别失败``). ~30% of new-car videos (not at a show) have a vague title and summary; their
decisive words are ONLY in the ASR or ONLY in the OCR text, and that channel is always
usable and lands on the video's ``pt`` (possibly as duplicated rows).

``tag_dim``: one snapshot per date of the range, identical ids in every snapshot and for
every seed. Also ``relate_app_tag_id`` holds the 品牌标签 id of the brand the item talks
about (or ``''``), never a content tag id.
"""
from __future__ import annotations

import datetime as _dt
import json
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tagger.demo import vocabulary as V

POOL_COLUMNS = ["itemid", "title", "summary", "relate_app_tag_id", "dtype", "recommend_grade",
                "gc", "create_time", "pt"]
ASR_COLUMNS = ["id", "video_id", "result_asr", "dt"]
OCR_COLUMNS = ["id", "video_id", "ocr_info", "dt"]
TAG_COLUMNS = ["id", "tag_name", "tag_path", "tag_path_name", "tag_type_name", "status", "dt"]
TRUTH_COLUMNS = ["itemid", "pt", "labels", "ambiguous", "mislabelled"]

SELECTED_DTYPES = ["yichehao_news", "yichehao_video", "news"]
SELECTED_DTYPE_P = [0.88, 0.115, 0.005]
OTHER_DTYPES = ["video", "koubei", "live"]
GRADES, GRADE_P = ["A", "B", "C", "S"], [0.30, 0.35, 0.20, 0.15]
GCS, GC_P = ["UGC", "PGC", "OGC"], [0.55, 0.40, 0.05]
AGC_GCS = ["AGC-XIAOYI", "AGC-XIAOSHA"]

NEWCAR_SHARE = 0.15
# Dropped-row kinds and their share of n_items.
DROP_KINDS = {"grade_z": 0.02, "agc": 0.02, "other_dtype": 0.025, "early": 0.015}
EXACT_DUP_SHARE = 0.005
CHANGED_DUP_SHARE = 0.005
NULL_ID_SHARE = 0.001
AMBIGUOUS_SHARE = 0.03
MISLABELLED_SHARE = 0.02
VAGUE_NEWCAR_VIDEO_SHARE = 0.30
VAGUE_NEG_VIDEO_SHARE = 0.10

# Content categories of one generated text.
CAT_NEG, CAT_NEW, CAT_SHOW_ONLY, CAT_GENERIC_SHOW = 0, 1, 2, 3
AMB_NONE, AMB_POS, AMB_NEG = 0, 1, 2
MIS_NONE, MIS_POS_TO_NEG, MIS_NEG_TO_POS = 0, 1, 2
VAGUE_NONE, VAGUE_ASR, VAGUE_OCR = 0, 1, 2

_ROOT = V.CONTENT_ROOT
_NEWCAR_PATH = f"{_ROOT}/{V.NEWCAR}"
_NEG_LEAVES = list(V.NEG_LEAVES)
_NEG_W = np.array([V.NEG_LEAVES[k] for k in _NEG_LEAVES], dtype=float)
_NEG_W /= _NEG_W.sum()
_GENERIC_SHOW_LEAF = _NEG_LEAVES.index("导购/买车技巧")
_BRAND_NAMES = list(V.BRANDS)
_ALL_SERIES = [s for b in _BRAND_NAMES for s in V.BRANDS[b]]


@dataclass
class DemoData:
    """What generate returns, as pandas DataFrames in the source tables' layout. pool: itemid, title,
    summary, relate_app_tag_id, dtype, recommend_grade, gc, create_time, pt; asr: id, video_id,
    result_asr, dt; ocr: id, video_id, ocr_info, dt; tag_dim: id, tag_name, tag_path, tag_path_name,
    tag_type_name, status, dt; truth: itemid, pt, labels (list of tag names), ambiguous, mislabelled."""
    pool: pd.DataFrame
    asr: pd.DataFrame
    ocr: pd.DataFrame
    tag_dim: pd.DataFrame
    truth: pd.DataFrame


# ------------------------------------------------------------------------------------------
# Tag dimension
# ------------------------------------------------------------------------------------------
def _tag_rows() -> list[tuple[int, str, str, str, str, int]]:
    """(id, tag_name, tag_path, tag_path_name, tag_type_name, status); same for every seed."""
    r = random.Random(20240501)
    used: set[int] = set()

    def new_id() -> int:
        while True:
            i = r.randint(10000, 999999)
            if i not in used:
                used.add(i)
                return i

    rows: list[tuple[int, str, str, str, str, int]] = []

    def add(names: list[str], ids: list[int], type_name: str, status: int = 1) -> list[int]:
        ids = ids + [new_id()]
        rows.append((ids[-1], names[-1], "/".join(map(str, ids)), "/".join(names), type_name, status))
        return ids

    root = add([_ROOT], [], _ROOT)
    for first, children in V.CONTENT_TREE:
        f_ids = add([_ROOT, first], root, _ROOT)
        for child in children:
            if isinstance(child, tuple):
                mid, grand = child
                m_ids = add([_ROOT, first, mid], f_ids, _ROOT)
                for g in grand:
                    add([_ROOT, first, mid, g], m_ids, _ROOT)
            else:
                add([_ROOT, first, child], f_ids, _ROOT)
    by_name = {row[3]: row for row in rows}
    for retired in V.RETIRED_CONTENT:
        first, name = retired.split("/")
        parent = by_name[f"{_ROOT}/{first}"]
        ids = [int(x) for x in parent[2].split("/")]
        add([_ROOT, first, name], ids, _ROOT, status=0)
    b_root = add([V.BRAND_ROOT], [], V.BRAND_ROOT)
    for brand in _BRAND_NAMES:
        add([V.BRAND_ROOT, brand], b_root, V.BRAND_ROOT)
    return rows


def _tag_dim_frame(rows, dates: list[str]) -> pd.DataFrame:
    k = len(rows)
    cols = list(zip(*rows))
    return pd.DataFrame({
        "id": np.tile(np.array(cols[0], dtype=np.int64), len(dates)),
        "tag_name": list(cols[1]) * len(dates),
        "tag_path": list(cols[2]) * len(dates),
        "tag_path_name": list(cols[3]) * len(dates),
        "tag_type_name": list(cols[4]) * len(dates),
        "status": np.tile(np.array(cols[5], dtype=np.int32), len(dates)),
        "dt": [d for d in dates for _ in range(k)],
    }, columns=TAG_COLUMNS)


# ------------------------------------------------------------------------------------------
# Content specs (vectorised draws)
# ------------------------------------------------------------------------------------------
def _p0_draw_probs() -> np.ndarray:
    """Per-label draw probabilities so that, after rejecting empty label sets, each label's
    share among 新车资讯 items matches V.P0_SHARES."""
    p = np.array(V.P0_SHARES, dtype=float)
    q = p.copy()
    for _ in range(200):
        q = p * (1.0 - np.prod(1.0 - q))
    return q


_P0_Q = _p0_draw_probs()


def _draw_p0_masks(rng: np.random.Generator, m: int) -> np.ndarray:
    bits = 1 << np.arange(len(V.P0_LABELS), dtype=np.int64)
    masks = np.zeros(m, dtype=np.int64)
    todo = np.arange(m)
    while todo.size:
        draw = rng.random((todo.size, len(bits))) < _P0_Q
        masks[todo] = (draw * bits).sum(axis=1)
        todo = todo[masks[todo] == 0]
    return masks


def _share(mask: np.ndarray) -> float:
    """Fraction of True in ``mask``, never 0 (it divides a target share)."""
    return max(float(mask.sum()) / max(len(mask), 1), 1e-9)


@dataclass
class _Specs:
    cat: np.ndarray
    p0: np.ndarray
    leaf: np.ndarray
    show: np.ndarray
    amb: np.ndarray
    amb_leaf: np.ndarray
    mis: np.ndarray
    vague: np.ndarray

    @staticmethod
    def concat(parts: list["_Specs"]) -> "_Specs":
        return _Specs(*[np.concatenate([getattr(p, f) for p in parts]) for f in _Specs.__dataclass_fields__])


def _draw_specs(rng: np.random.Generator, is_video: np.ndarray, noise: bool) -> _Specs:
    m = len(is_video)
    new = rng.random(m) < NEWCAR_SHARE
    cat = np.where(new, CAT_NEW, CAT_NEG).astype(np.int8)
    p0 = np.zeros(m, dtype=np.int64)
    p0[new] = _draw_p0_masks(rng, int(new.sum()))
    leaf = rng.choice(len(_NEG_LEAVES), size=m, p=_NEG_W).astype(np.int16)

    # Auto shows: most new-car items that debut (发布亮相) are at a show, a few that list or
    # open pre-sale too; plus show-only items and generic "车展" items among the others.
    show = np.full(m, -1, dtype=np.int8)
    debut = new & ((p0 & (1 << V.P0_LABELS.index("发布亮相"))) != 0)
    launch = new & ~debut & ((p0 & ((1 << V.P0_LABELS.index("新车上市")) | (1 << V.P0_LABELS.index("预售")))) != 0)
    u = rng.random(m)
    at_show = (debut & (u < 0.6)) | (launch & (u < 0.05))
    neg = ~new
    show_only = neg & (u < 0.015)
    generic = neg & (u >= 0.015) & (u < 0.018)
    n_show = int(at_show.sum() + show_only.sum())
    show[at_show | show_only] = rng.choice(len(V.SHOWS_IN_TEXT), size=n_show, p=V.SHOW_WEIGHTS)
    cat[show_only] = CAT_SHOW_ONLY
    cat[generic] = CAT_GENERIC_SHOW
    leaf[generic] = _GENERIC_SHOW_LEAF

    amb = np.zeros(m, dtype=np.int8)
    mis = np.zeros(m, dtype=np.int8)
    amb_leaf = rng.choice(len(_NEG_LEAVES), size=m, p=_NEG_W).astype(np.int16)
    if noise:
        plain_new = new & (show < 0)
        plain_neg = cat == CAT_NEG
        v = rng.random(m)
        # Shares of all items, turned into rates within each group.
        pos_share, neg_share = _share(plain_new), _share(plain_neg)
        amb[plain_new & (v < AMBIGUOUS_SHARE * 2 / 3 / pos_share)] = AMB_POS
        amb[plain_neg & (v < AMBIGUOUS_SHARE / 3 / neg_share)] = AMB_NEG
        w = rng.random(m)
        ok_new, ok_neg = plain_new & (amb == 0), plain_neg & (amb == 0)
        mis[ok_new & (w < MISLABELLED_SHARE / 2 / _share(ok_new))] = MIS_POS_TO_NEG
        mis[ok_neg & (w < MISLABELLED_SHARE / 2 / _share(ok_neg))] = MIS_NEG_TO_POS

    vague = np.zeros(m, dtype=np.int8)
    x = rng.random(m)
    channel = np.where(rng.random(m) < 0.5, VAGUE_ASR, VAGUE_OCR).astype(np.int8)
    vague_new = is_video & new & (show < 0) & (x < VAGUE_NEWCAR_VIDEO_SHARE)
    vague[vague_new] = channel[vague_new]
    vague[is_video & (cat == CAT_NEG) & (x < VAGUE_NEG_VIDEO_SHARE)] = VAGUE_ASR
    return _Specs(cat, p0, leaf, show, amb, amb_leaf, mis, vague)


# ------------------------------------------------------------------------------------------
# Text composition (per row; the hot loop)
# ------------------------------------------------------------------------------------------
_TITLE_PAD = ["，一起来看看", "，你怎么看？", "，值得关注"]


class _Composer:
    def __init__(self, py: random.Random, brand_tag_ids: dict[str, str]):
        self.py = py
        self.brand_tag_ids = brand_tag_ids
        self.neg_labels_two = [(f"{_ROOT}/{k.split('/')[0]}", f"{_ROOT}/{k}") for k in _NEG_LEAVES]
        self.neg_labels_one = [(f"{_ROOT}/{k.split('/')[0]}",) for k in _NEG_LEAVES]
        self.show_paths = [f"{_ROOT}/{V.SHOW}/{s}" for s in V.SHOWS_IN_TEXT]
        self.p0_paths = [f"{_NEWCAR_PATH}/{l}" for l in V.P0_LABELS]
        self.mis_pos_labels = (_NEWCAR_PATH, f"{_NEWCAR_PATH}/新车解析")

    def pick(self, seq):
        return seq[int(self.py.random() * len(seq))]

    def ri(self, a: int, b: int) -> int:
        """Uniform integer in [a, b]; random.randint is too slow for the hot loop."""
        return a + int(self.py.random() * (b - a + 1))

    def context(self, year: int, month: int) -> dict:
        py, pick, ri = self.py, self.pick, self.ri
        brand = pick(_BRAND_NAMES)
        series = pick(V.BRANDS[brand])
        s2 = pick(_ALL_SERIES)
        if s2 == series:
            s2 = _ALL_SERIES[(_ALL_SERIES.index(series) + 7) % len(_ALL_SERIES)]
        lo = ri(6, 45) + pick((0.98, 0.99, 0.88, 0.58, 0.28))
        hi = lo + ri(1, 12)
        m = (month - 1 + ri(0, 1)) % 12 + 1
        ctx = {
            "brand": brand, "series": series, "s2": s2, "year": str(year), "myear": str(year + 1),
            "price": f"{lo:.2f}-{hi:.2f}万元", "lo": f"{lo:.2f}万元",
            "date": f"{m}月{ri(1, 28)}日", "n": str(ri(2, 6)),
            "rng": str(ri(40, 90) * 10), "hp": str(ri(120, 680)),
            "wb": str(ri(2600, 3200)), "body": pick(V.BODIES), "energy": pick(V.ENERGIES),
            "city": pick(V.CITIES), "km": str(ri(3, 30) * 1000), "pct": str(ri(1, 5)),
            "acc": f"{ri(28, 95) / 10:.1f}", "author": pick(V.AUTHORS), "show": "",
        }
        ctx["bseries"] = series if series.startswith(brand) else brand + series
        ctx["model"] = pick(V.MODEL_FORMS).format_map(ctx)
        return ctx

    def summary(self, must: list[str], fillers: list[str], short_fillers: list[str], ctx: dict) -> str:
        """Sentences in ``must`` (already formatted) first, then fillers up to a random length."""
        py, ri = self.py, self.ri
        text = "".join(must)
        target = ri(55, 140)
        if len(text) < target:
            start = int(py.random() * len(fillers))
            for k in range(len(fillers)):
                f = fillers[(start + k * 3) % len(fillers)].format_map(ctx)
                if len(text) + len(f) > min(target, 150):
                    if len(text) >= 40:
                        break
                    continue
                text += f
        while len(text) < 40:
            text += self.pick(short_fillers)
        return text

    def fit_title(self, title: str, fallback: str) -> str:
        if len(title) > 40:
            title = fallback
        while len(title) < 10:
            title += self.pick(_TITLE_PAD)
        return title[:40]

    def compose(self, cat, p0, leaf, show, amb, amb_leaf, mis, vague, is_video, year, month):
        """-> (title, summary, labels tuple, asr segments, ocr segments, relate_app_tag_id)."""
        py, pick, ri = self.py, self.pick, self.ri
        ctx = self.context(year, month)
        if show >= 0:
            name = V.SHOWS_IN_TEXT[show]
            ctx["show"] = pick(V.SHOW_WORDINGS[name]).format_map(ctx)
        asr: list[str] | tuple = ()
        ocr: list[str] | tuple = ()
        if cat == CAT_NEW:
            labels_idx = [i for i in range(len(V.P0_LABELS)) if p0 >> i & 1]
            names = [V.P0_LABELS[i] for i in labels_idx]
            primary = pick(names)
            title = pick(V.P0_TITLES[primary]).format_map(ctx)
            fallback = ctx["model"] + pick(V.P0_SHORT[primary]).format_map(ctx)
            others = [nm for nm in names if nm != primary]
            if others and py.random() < 0.5:
                extra = "，" + pick(V.P0_SHORT[pick(others)]).format_map(ctx)
                if len(title) + len(extra) <= 40:
                    title += extra
            must = [pick(V.P0_SENTS[nm]).format_map(ctx) for nm in names]
            py.shuffle(must)
            head = [pick(V.SHOW_NEWCAR_SENTS).format_map(ctx)] if show >= 0 else []
            tail = [pick(V.NEG_SENTS[_NEG_LEAVES[amb_leaf]]).format_map(ctx)] if amb == AMB_POS else []
            if sum(map(len, must + head + tail)) > 135:
                # Too many labels for full sentences: one sentence of short phrases keeps
                # every label's evidence within the 150-character summary.
                must = ["，".join(pick(V.P0_SHORT[nm]).format_map(ctx) for nm in names) + "。"]
            must = head + must + tail
            if show >= 0 and py.random() < 0.7:
                prefixed = pick(V.SHOW_NEWCAR_TITLE_PREFIX).format_map(ctx) + title
                title = prefixed if len(prefixed) <= 40 else ctx["show"] + "：" + fallback
            summary = self.summary(must, V.NEWCAR_FILLERS, V.NEWCAR_FILLERS_SHORT, ctx)
            labels = (_NEWCAR_PATH,) + tuple(self.p0_paths[i] for i in labels_idx)
            if show >= 0:
                labels += (self.show_paths[show],)
            if amb == AMB_POS:
                labels += (self.neg_labels_one[amb_leaf][0],)
            if is_video:
                asr = [pick(V.ASR_OPENERS).format_map(ctx)]
                if show >= 0:
                    asr.append("我现在就在{show}的现场".format_map(ctx))
                asr += [pick(V.P0_ASR[nm]).format_map(ctx) for nm in names]
                asr += [pick(V.ASR_FILLERS).format_map(ctx) for _ in range(ri(1, 3))]
                asr.append(pick(V.ASR_CLOSERS))
                ocr_ev = [pick(V.P0_OCR[nm]).format_map(ctx) for nm in names]
                gen = [pick(V.OCR_GENERIC).format_map(ctx) for _ in range(ri(1, 3))]
                if vague == VAGUE_NONE:
                    ocr = [o for o in ocr_ev if py.random() < 0.7] + gen
                else:
                    title = pick(V.VAGUE_TITLES)
                    summary = pick(V.VAGUE_SUMMARIES)
                    if vague == VAGUE_ASR:
                        ocr = gen
                    else:
                        ocr = ocr_ev + gen
                        asr = [asr[0]] + [pick(V.ASR_FILLERS).format_map(ctx) for _ in range(ri(2, 4))] + [asr[-1]]
        else:
            key = _NEG_LEAVES[leaf]
            if cat == CAT_SHOW_ONLY:
                title = pick(V.SHOW_ONLY_TITLES).format_map(ctx)
                must = [pick(V.SHOW_ONLY_SENTS).format_map(ctx)]
                labels = (self.show_paths[show],)
                spoken = ["我现在就在{show}的现场".format_map(ctx)] + [pick(V.SHOW_ONLY_SENTS).format_map(ctx).rstrip("。")]
            elif cat == CAT_GENERIC_SHOW:
                title = pick(V.GENERIC_SHOW_TITLES)
                must = [pick(V.GENERIC_SHOW_SENTS), pick(V.NEG_SENTS[key]).format_map(ctx)]
                labels = self.neg_labels_two[leaf]
                spoken = [m.rstrip("。") for m in must]
            else:
                title = pick(V.NEG_TITLES[key]).format_map(ctx)
                sents = V.NEG_SENTS[key]
                i = int(py.random() * len(sents))
                must = [sents[i].format_map(ctx)]
                if py.random() < 0.6:
                    must.append(sents[(i + 1) % len(sents)].format_map(ctx))
                labels = self.neg_labels_two[leaf] if py.random() < 0.85 else self.neg_labels_one[leaf]
                spoken = [m.rstrip("。") for m in must]
            if amb == AMB_NEG:
                amb_sent = pick(V.AMBIG_NEG_SENTS).format_map(ctx)
                must.insert(0, amb_sent)
                spoken.append(amb_sent.rstrip("。？"))
            summary = self.summary(must, V.NEG_FILLERS, V.NEG_FILLERS_SHORT, ctx)
            fallback = title
            if is_video:
                asr = [pick(V.ASR_OPENERS).format_map(ctx)] + spoken
                asr += [pick(V.ASR_FILLERS).format_map(ctx) for _ in range(ri(1, 3))]
                asr.append(pick(V.ASR_CLOSERS))
                ocr = [title[:12]] + [pick(V.OCR_GENERIC).format_map(ctx) for _ in range(ri(1, 3))]
                if vague == VAGUE_ASR:
                    title = pick(V.VAGUE_TITLES)
                    summary = pick(V.VAGUE_SUMMARIES)
                    ocr = ocr[1:]
        if mis == MIS_POS_TO_NEG:
            labels = self.neg_labels_two[amb_leaf]
        elif mis == MIS_NEG_TO_POS:
            labels = self.mis_pos_labels
        title = self.fit_title(title, fallback)
        relate = self.brand_tag_ids[ctx["brand"]] if py.random() < 0.9 else ""
        return title, summary, labels, asr, ocr, relate


# ------------------------------------------------------------------------------------------
# ASR / OCR payloads
# ------------------------------------------------------------------------------------------
def _payload(py: random.Random, segs: list[str], kind: str) -> str:
    if py.random() < 0.5:
        return json.dumps(segs, ensure_ascii=False)
    out, t = [], round(py.random() * 2, 1)
    for k, s in enumerate(segs):
        if kind == "asr":
            d = round(0.8 + len(s) * 0.22, 1)
            out.append({"text": s, "start": t, "end": round(t + d, 1)})
            t = round(t + d + 0.3, 1)
        else:
            out.append({"text": s, "frame": 25 * (k * 3 + 1), "score": round(0.85 + py.random() * 0.15, 3)})
    return json.dumps(out, ensure_ascii=False)


def _malformed(py: random.Random, segs: list[str], kind: str) -> str:
    form = py.randint(0, 3)
    if form == 0:
        full = _payload(py, segs or ["今天我们来看"], kind)
        return full[: max(2, len(full) // 2)]
    if form == 1:
        return json.dumps({"text": "".join(segs)[:60], "code": 0}, ensure_ascii=False)
    if form == 2:
        return py.choice(["0", "-1", "404"])
    return py.choice([f"ERROR: {kind} timeout", "识别失败"])


def _speech_rows(py: random.Random, segs: list[str], kind: str, day: int, forced_good: bool):
    """Rows (payload, dt_day, rank) of one video for one table; the highest (dt, rank) is
    the latest row."""
    r = 0.5 if forced_good else py.random()
    late = 0 if forced_good else (py.randint(1, 2) if py.random() < 0.15 else 0)
    if r < 0.10:
        return []
    if r < 0.15:
        return [("[]", day + late, 0)]
    if r < 0.20:
        return [(None, day + late, 0)]
    if r < 0.23:
        return [(_malformed(py, segs, kind), day + late, 0)]
    good = _payload(py, segs, kind)
    if py.random() < 0.10 / 0.77:
        k = py.randint(1, 2)
        rows = []
        for j in range(k):
            o = py.randint(0, 3)
            if o == 0:
                p = _payload(py, segs[: max(1, len(segs) // 2)], kind)
            elif o == 1:
                p = "[]"
            elif o == 2:
                p = None
            else:
                p = _malformed(py, segs, kind)
            rows.append((p, day + py.randint(0, late), j))
        rows.append((good, day + late, k))
        return rows
    return [(good, day + late, 0)]


def _speech_frame(rows: list[tuple[str, str | None, int, int]], dates: list[str],
                  text_col: str, base_id: int, rng: np.random.Generator) -> pd.DataFrame:
    cols = ["id", "video_id", text_col, "dt"]
    if not rows:
        return pd.DataFrame({"id": pd.Series([], dtype=np.int64), "video_id": pd.Series([], dtype=object),
                             text_col: pd.Series([], dtype=object), "dt": pd.Series([], dtype=object)},
                            columns=cols)
    vid, payload, day, rank = zip(*rows)
    day = np.array(day)
    order = np.lexsort((np.arange(len(day)), np.array(rank), day))
    ids = np.empty(len(day), dtype=np.int64)
    ids[order] = base_id + np.cumsum(rng.integers(1, 60, size=len(day), dtype=np.int64))
    return pd.DataFrame({"id": ids, "video_id": list(vid), text_col: list(payload),
                         "dt": [dates[d] for d in day]}, columns=cols)


# ------------------------------------------------------------------------------------------
# The entry point
# ------------------------------------------------------------------------------------------
def _date_strings(start: _dt.date, first: int, last: int) -> dict[int, str]:
    return {k: (start + _dt.timedelta(days=k)).isoformat() for k in range(first, last + 1)}


def _time_str(date: str, sec: int) -> str:
    return f"{date} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"


def generate(n_items: int, start_date: str, n_days: int, seed: int = 7) -> DemoData:
    """Demo pool/ASR/OCR/tag dimension/truth; same arguments -> identical DataFrames.

    ``n_items`` distinct non-NULL itemids pass the team's filter, spread over ``n_days``
    dates from ``start_date`` (yyyy-MM-dd). See the module docstring for everything else;
    truth covers filtered-out itemids too.
    """
    if n_items < 0 or n_days < 1:
        raise ValueError("n_items must be >= 0 and n_days >= 1")
    start = _dt.date.fromisoformat(start_date)
    rng = np.random.default_rng([seed, 20240501])
    py = random.Random(int(rng.integers(0, 2**62)))
    dates = _date_strings(start, -1, n_days + 2)
    days_in = [dates[k] for k in range(n_days)]

    tag_rows = _tag_rows()
    brand_ids = {row[1]: str(row[0]) for row in tag_rows if row[4] == V.BRAND_ROOT and "/" in row[3]}

    # ---- selected items -------------------------------------------------------------------
    n = n_items
    per_day = np.full(n_days, n // n_days, dtype=np.int64)
    per_day[: n % n_days] += 1
    sel_day = np.repeat(np.arange(n_days), per_day)
    sel_dtype = rng.choice(len(SELECTED_DTYPES), size=n, p=SELECTED_DTYPE_P)
    sel_specs = _draw_specs(rng, sel_dtype == 1, noise=True)
    sel_grade = rng.choice(GRADES, size=n, p=GRADE_P)
    sel_gc = rng.choice(GCS, size=n, p=GC_P)

    # ---- dropped items (fresh itemids the filter must not select) --------------------------
    kinds = []
    for kind, share in DROP_KINDS.items():
        kinds += [kind] * int(round(share * n))
    n_drop = len(kinds)
    drop_day = rng.integers(0, n_days, size=n_drop)
    drop_dtype_name = np.array(SELECTED_DTYPES, dtype=object)[rng.choice(3, size=n_drop, p=SELECTED_DTYPE_P)]
    drop_grade = rng.choice(GRADES, size=n_drop, p=GRADE_P).astype(object)
    drop_gc = rng.choice(GCS, size=n_drop, p=GC_P).astype(object)
    for i, kind in enumerate(kinds):
        if kind == "grade_z":
            drop_grade[i] = "Z"
        elif kind == "agc":
            drop_gc[i] = AGC_GCS[i % 2]
        elif kind == "other_dtype":
            drop_dtype_name[i] = OTHER_DTYPES[i % 3]
    drop_specs = _draw_specs(rng, drop_dtype_name == "yichehao_video", noise=False)

    # ---- second versions of changed duplicates, and NULL-itemid rows -----------------------
    n_changed = int(round(CHANGED_DUP_SHARE * n))
    n_exact = int(round(EXACT_DUP_SHARE * n))
    dup_pool = rng.permutation(n)
    changed_src = np.sort(dup_pool[:n_changed])
    exact_src = np.sort(dup_pool[n_changed:n_changed + n_exact])
    changed_specs = _draw_specs(rng, sel_dtype[changed_src] == 1, noise=False)

    null_per_day = np.rint(per_day * NULL_ID_SHARE).astype(np.int64)
    if n >= 1000:
        null_per_day = np.maximum(null_per_day, 1)
    null_day = np.repeat(np.arange(n_days), null_per_day)
    n_null = len(null_day)
    null_dtype = rng.choice(len(SELECTED_DTYPES), size=n_null, p=SELECTED_DTYPE_P)
    null_specs = _draw_specs(rng, null_dtype == 1, noise=False)

    # ---- one loop composing every text ------------------------------------------------------
    specs = _Specs.concat([sel_specs, drop_specs, changed_specs, null_specs])
    all_day = np.concatenate([sel_day, drop_day, sel_day[changed_src], null_day])
    all_dtype = np.concatenate([np.array(SELECTED_DTYPES, dtype=object)[sel_dtype], drop_dtype_name,
                                np.array(SELECTED_DTYPES, dtype=object)[sel_dtype[changed_src]],
                                np.array(SELECTED_DTYPES, dtype=object)[null_dtype]])
    total = len(all_day)
    ym = [(start + _dt.timedelta(days=k)) for k in range(n_days)]
    ym = [(d.year, d.month) for d in ym]
    comp = _Composer(py, brand_ids)
    titles, summaries, labels, asr_segs, ocr_segs, relates = ([None] * total for _ in range(6))
    cat_l, p0_l, leaf_l, show_l = specs.cat.tolist(), specs.p0.tolist(), specs.leaf.tolist(), specs.show.tolist()
    amb_l, amb_leaf_l, mis_l, vague_l = specs.amb.tolist(), specs.amb_leaf.tolist(), specs.mis.tolist(), specs.vague.tolist()
    day_l = all_day.tolist()
    is_video_l = (all_dtype == "yichehao_video").tolist()
    compose = comp.compose
    for i in range(total):
        y, mo = ym[day_l[i]]
        (titles[i], summaries[i], labels[i], asr_segs[i], ocr_segs[i], relates[i]) = compose(
            cat_l[i], p0_l[i], leaf_l[i], show_l[i], amb_l[i], amb_leaf_l[i], mis_l[i], vague_l[i],
            is_video_l[i], y, mo)

    # ---- create times -----------------------------------------------------------------------
    n_items_total = n + n_drop
    sec = rng.integers(0, 86400 - 7200, size=total)
    ct_day = all_day.copy()
    early = np.zeros(total, dtype=bool)
    early[n:n + n_drop] = np.array([k == "early" for k in kinds], dtype=bool)
    ct_day[early] -= 1
    # Changed duplicates: a distinct time on the same day, later or earlier than the original.
    orig_sec = sec[changed_src]
    delta = rng.integers(60, 7200, size=n_changed)
    later = rng.random(n_changed) < 0.5
    changed_sec = np.where(later | (orig_sec < delta), orig_sec + delta, orig_sec - delta)
    sec[n_items_total:n_items_total + n_changed] = changed_sec

    # ---- itemids: increasing with (day, create time), random gaps ----------------------------
    order = np.lexsort((sec[:n_items_total], ct_day[:n_items_total]))
    ids = np.empty(n_items_total, dtype=np.int64)
    ids[order] = 3_100_000_000 + np.cumsum(rng.integers(1, 400, size=n_items_total, dtype=np.int64))
    itemid_str = [str(x) for x in ids.tolist()]

    # ---- pool rows ----------------------------------------------------------------------------
    grade_all = np.concatenate([sel_grade.astype(object), drop_grade,
                                sel_grade[changed_src].astype(object),
                                rng.choice(GRADES, size=n_null, p=GRADE_P).astype(object)])
    gc_all = np.concatenate([sel_gc.astype(object), drop_gc, sel_gc[changed_src].astype(object),
                             rng.choice(GCS, size=n_null, p=GC_P).astype(object)])
    row_src = np.concatenate([np.arange(total), exact_src])  # content index of each pool row
    row_item = np.concatenate([np.arange(n_items_total), changed_src, np.full(n_null, -1), exact_src])
    ct_l, sec_l, pday_l = ct_day.tolist(), sec.tolist(), all_day.tolist()
    create_time = [_time_str(dates[ct_l[i]], sec_l[i]) for i in range(total)]
    pt = [dates[pday_l[i]] for i in range(total)]
    src_l = row_src.tolist()
    item_l = row_item.tolist()
    pool = pd.DataFrame({
        "itemid": [itemid_str[k] if k >= 0 else None for k in item_l],
        "title": [titles[s] for s in src_l],
        "summary": [summaries[s] for s in src_l],
        "relate_app_tag_id": [relates[s] for s in src_l],
        "dtype": all_dtype[row_src].tolist(),
        "recommend_grade": grade_all[row_src].tolist(),
        "gc": gc_all[row_src].tolist(),
        "create_time": [create_time[s] for s in src_l],
        "pt": [pt[s] for s in src_l],
    }, columns=POOL_COLUMNS)
    pool = pool.astype(object).sort_values(["pt", "create_time"], kind="mergesort").reset_index(drop=True)

    # ---- truth: the latest version of every itemid ------------------------------------------
    truth_src = np.arange(n_items_total)
    newer = changed_sec > orig_sec
    truth_src[changed_src[newer]] = n_items_total + np.nonzero(newer)[0]
    ts = truth_src.tolist()
    amb_all, mis_all = specs.amb.tolist(), specs.mis.tolist()
    truth = pd.DataFrame({
        "itemid": pd.Series(itemid_str, dtype=object),
        "pt": pd.Series([pt[s] for s in ts], dtype=object),
        "labels": pd.Series([list(labels[s]) for s in ts], dtype=object),
        "ambiguous": np.array([amb_all[s] != AMB_NONE for s in ts], dtype=bool),
        "mislabelled": np.array([mis_all[s] != MIS_NONE for s in ts], dtype=bool),
    }, columns=TRUTH_COLUMNS)
    truth = truth.iloc[np.argsort(ids, kind="mergesort")].reset_index(drop=True)

    # ---- ASR / OCR for every yichehao_video itemid (content of its truth version) ------------
    asr_rows: list = []
    ocr_rows: list = []
    for k in range(n_items_total):
        s = ts[k]
        if not is_video_l[s]:
            continue
        vid = itemid_str[k]
        d = day_l[s]
        v = vague_l[s]
        for payload, dd, rank in _speech_rows(py, asr_segs[s], "asr", d, v == VAGUE_ASR):
            asr_rows.append((vid, payload, dd, rank))
        for payload, dd, rank in _speech_rows(py, ocr_segs[s], "ocr", d, v == VAGUE_OCR):
            ocr_rows.append((vid, payload, dd, rank))
    asr = _speech_frame(asr_rows, dates, "result_asr", 7_300_000_000, rng)
    ocr = _speech_frame(ocr_rows, dates, "ocr_info", 5_200_000_000, rng)

    tag_dim = _tag_dim_frame(tag_rows, days_in)
    return DemoData(pool=pool, asr=asr, ocr=ocr, tag_dim=tag_dim, truth=truth)
