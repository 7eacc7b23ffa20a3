"""scripts/knn_fewshot.py's subsample: each few-shot label keeps exactly n training positives (when it
has that many), every other example carrying one of them is dropped rather than relabelled, and the
examples of the other labels all stay. Break: keep the dropped positives with the label removed, or
stop counting a kept example for its second few-shot label, and the counts or the kept set differ."""
from __future__ import annotations

import random

from conftest import load_script

FEW = ("a", "b", "c")


def test_the_subsample_keeps_n_positives_per_label_and_drops_the_rest():
    rng = random.Random(5)
    label_lists = [[lab for lab in ("a", "b", "c", "x", "y") if rng.random() < 0.3] for _ in range(2000)]
    subsample = load_script("knn_fewshot").subsample
    for n in (10, 20, 30):
        keep = subsample(label_lists, FEW, n, seed=0)
        assert len(keep) == len(set(keep))
        kept = [label_lists[i] for i in keep]
        assert {lab: sum(lab in labs for labs in kept) for lab in FEW} == dict.fromkeys(FEW, n)
        others = [i for i, labs in enumerate(label_lists) if not set(labs) & set(FEW)]
        assert set(others) <= set(keep)  # every example without a few-shot label stays
        assert len(keep) == len(others) + len([i for i in keep if set(label_lists[i]) & set(FEW)])
    assert subsample(label_lists, FEW, 10, seed=0) == subsample(label_lists, FEW, 10, seed=0)
    assert subsample(label_lists, FEW, 10, seed=0) != subsample(label_lists, FEW, 10, seed=1)
