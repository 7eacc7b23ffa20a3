import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from tagger.models.metrics import (best_f1_thresholds, binarize, f1_by_threshold, format_report, label_distribution,
                            label_report)

LABELS = ["谍照", "预售", "申报图"]


def test_binarize_ignores_unknown_and_none():
    y = binarize([["谍照"], ["预售", "谍照", "其他"], [], None, "申报图"], LABELS)
    assert y.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_label_report_hand_computed():
    #           谍照 预售 申报图
    y_true = np.array([[1, 0, 0],
                       [1, 1, 0],
                       [0, 1, 0],
                       [1, 0, 0],
                       [0, 0, 0]])
    y_pred = np.array([[1, 0, 0],   # tp 谍照
                       [0, 1, 0],   # fn 谍照, tp 预售
                       [0, 0, 0],   # fn 预售
                       [1, 1, 0],   # tp 谍照, fp 预售
                       [1, 0, 0]])  # fp 谍照
    r = label_report(y_true, y_pred, LABELS)
    spy = r["labels"]["谍照"]  # tp2 fp1 fn1
    assert spy["precision"] == pytest.approx(2 / 3)
    assert spy["recall"] == pytest.approx(2 / 3)
    assert spy["f1"] == pytest.approx(2 / 3)
    assert spy["support"] == 3
    pre = r["labels"]["预售"]  # tp1 fp1 fn1
    assert (pre["precision"], pre["recall"], pre["f1"], pre["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    dec = r["labels"]["申报图"]  # no support, no predictions: 0/0 -> 0.0
    assert (dec["precision"], dec["recall"], dec["f1"], dec["support"]) == (0.0, 0.0, 0.0, 0)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    # micro: tp 3, fp 2, fn 2 -> p = r = 3/5
    assert r["micro_f1"] == pytest.approx(0.6)


def test_label_report_bool_and_shape_check():
    r = label_report(np.array([[True], [False]]), np.array([[True], [True]]), ["x"])
    assert r["labels"]["x"]["precision"] == 0.5 and r["labels"]["x"]["recall"] == 1.0
    with pytest.raises(ValueError):
        label_report(np.zeros((2, 2)), np.zeros((2, 3)), ["a", "b"])


def test_format_report_team_style():
    r = {"labels": {"谍照": {"precision": 0.97851, "recall": 0.94791, "f1": 0.96301, "support": 48}},
         "macro_f1": 0.5, "micro_f1": 0.25}
    assert format_report(r).splitlines() == [
        "Label 谍照 - Precision: 0.9785, Recall: 0.9479, F1-Score: 0.9630, Support: 48",
        "Macro-F1: 0.5000  Micro-F1: 0.2500",
    ]


def test_label_distribution():
    text = label_distribution([["新车资讯"], [], ["新车资讯", "x"], []], ["新车资讯", "x"])
    assert text.splitlines() == ["Label: 新车资讯, Count: 2, Ratio: 50.00%", "Label: x, Count: 1, Ratio: 25.00%"]
    assert label_distribution([], ["a"]) == "Label: a, Count: 0, Ratio: 0.00%"


def test_best_thresholds_pick_f1_max():
    y = np.array([[1], [1], [0], [0], [0]])
    p = np.array([[0.9], [0.32], [0.31], [0.2], [0.1]])
    f1 = f1_by_threshold(y, p)  # default grid 0.05..0.95
    assert f1.shape == (1, 19)
    # t=0.25 and t=0.30 both give tp2 fp1 (F1 0.8, the max); the tie goes to the one nearer 0.5
    assert f1[0].max() == pytest.approx(0.8)
    assert best_f1_thresholds(y, p) == [pytest.approx(0.30)]
    # with 0.32 on the grid the split is perfect
    assert best_f1_thresholds(y, p, np.array([0.3, 0.32, 0.5])) == [pytest.approx(0.32)]
    # a label without positives keeps the default
    assert best_f1_thresholds(np.zeros((3, 1)), np.array([[0.1], [0.9], [0.5]])) == [0.5]
