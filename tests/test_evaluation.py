"""Tests of ftbook.evaluation: metrics equal scikit-learn's, calibration, errors, search helpers."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from ftbook import evaluation as E

NAMES = ["a", "b", "c"]
Y_TRUE = [0, 0, 1, 1, 2, 2, 2, 0]
Y_PRED = [0, 1, 1, 1, 2, 0, 2, 0]


def test_report_matches_sklearn_and_hand_count():
    from sklearn.metrics import f1_score

    r = E.classification_report(Y_TRUE, Y_PRED, NAMES)
    assert r["accuracy"] == pytest.approx(6 / 8)
    assert r["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    a = r["per_class"][0]  # class a: 3 true, predicted 3 times, 2 right
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    b = r["per_class"][1]  # class b: 2 true, both found, plus one false alarm
    assert (b["precision"], b["recall"]) == (pytest.approx(2 / 3), pytest.approx(1.0))
    text = E.format_report(r)
    assert "accuracy 0.7500" in text and text.count("\n") == 5


def test_report_class_never_predicted_is_zero_not_an_error():
    r = E.classification_report([0, 1, 2], [0, 1, 1], NAMES)
    assert r["per_class"][2]["precision"] == 0.0 and r["per_class"][2]["recall"] == 0.0


@pytest.mark.parametrize("t, p, err, match", [
    ([0, 1], [0], ValueError, "2 labels but y_pred has 1"),
    ([], [], ValueError, "empty"),
    ([0, 3], [0, 1], ValueError, r"unknown label ids \[3\]"),
    ([0, 1], [0, -1], ValueError, r"unknown label ids \[-1\]"),
    ([0, "b"], [0, 1], TypeError, "integer class id"),
    ("01", [0, 1], TypeError, "sequence"),
    ([0, 1.5], [0, 1], TypeError, "integer class id"),
])
def test_bad_labels_are_rejected(t, p, err, match):
    with pytest.raises(err, match=match):
        E.classification_report(t, p, NAMES)


def test_numpy_inputs_and_names_checks():
    r = E.classification_report(np.array(Y_TRUE), np.array(Y_PRED, dtype=float), NAMES)
    assert r["accuracy"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="duplicates"):
        E.classification_report(Y_TRUE, Y_PRED, ["a", "a", "c"])
    with pytest.raises(ValueError, match="num_labels"):
        E.check_labels([0], [0], 1)


def test_confusion_rows_are_truth():
    cm = E.confusion(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert cm.sum() == len(Y_TRUE)
    ax = E.plot_confusion_matrix(cm, NAMES)
    assert ax.get_xlabel() == "预测类别"
    with pytest.raises(ValueError, match="square"):
        E.plot_confusion_matrix(cm[:2], NAMES)


def test_softmax_is_stable_and_checked():
    p = E.softmax([[1000.0, 1000.0], [0.0, math.log(3)]])
    assert np.allclose(p, [[0.5, 0.5], [0.25, 0.75]])
    with pytest.raises(ValueError, match="NaN"):
        E.softmax([[np.nan, 0.0]])
    with pytest.raises(ValueError, match="shape"):
        E.softmax([1.0, 2.0])


def test_calibration_bins_and_ece():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    y = [0, 1, 0, 1]
    bins = E.calibration_bins(probs, y, n_bins=10)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 4
    top = bins[9]
    assert top["count"] == 2 and top["accuracy"] == 0.5 and top["confidence"] == pytest.approx(0.95)
    assert bins[6]["count"] == 2 and bins[6]["accuracy"] == 1.0
    # ECE by hand: 2/4*|0.5-0.95| + 2/4*|1-0.65|
    assert E.expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert E.expected_calibration_error(perfect, [0, 1]) == pytest.approx(0.0)
    assert E.plot_reliability(bins).get_ylabel() == "实际准确率"


@pytest.mark.parametrize("probs, y, match", [
    ([[2.0, -1.0]], [0], "probability distribution"),
    ([[0.5, 0.5]], [0, 1], "2 labels but probs has 1"),
    (np.zeros((0, 2)), [], "empty"),
    ([[0.5, 0.5]], [2], "unknown label"),
])
def test_calibration_rejects_bad_input(probs, y, match):
    with pytest.raises(ValueError, match=match):
        E.calibration_bins(probs, y)


def test_calibration_rejects_bad_bins():
    with pytest.raises(ValueError, match="n_bins"):
        E.calibration_bins([[0.5, 0.5]], [0], n_bins=0)


def test_most_confident_mistakes_ordered_and_shortened():
    texts = ["right one", "wrong but unsure", "wrong and very sure " + "x" * 100, "right two"]
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.02, 0.98], [0.2, 0.8]])
    y = [0, 0, 0, 1]
    rows = E.most_confident_mistakes(texts, y, probs, ["neg", "pos"], k=5, max_chars=30)
    assert [r["index"] for r in rows] == [2, 1]
    assert rows[0]["predicted"] == "pos" and rows[0]["true"] == "neg"
    assert rows[0]["p_predicted"] == pytest.approx(0.98) and len(rows[0]["text"]) == 30
    with pytest.raises(ValueError, match="pair up"):
        E.most_confident_mistakes(texts[:2], y, probs, ["neg", "pos"])
    with pytest.raises(ValueError, match="k must be"):
        E.most_confident_mistakes(texts, y, probs, ["neg", "pos"], k=0)


def test_search_helpers():
    rows = [{"lr": 1e-4, "warmup_ratio": 0.0, "val_accuracy": 0.9, "val_loss": 0.3},
            {"lr": 3e-4, "warmup_ratio": 0.0, "val_accuracy": 0.95, "val_loss": 0.2},
            {"lr": 1e-4, "warmup_ratio": 0.2, "val_accuracy": 0.95, "val_loss": 0.25}]
    assert E.best_setting(rows) == rows[2]  # tie on accuracy: the smaller learning rate wins
    table = E.search_table(rows)
    assert table.splitlines()[1].startswith("   1e-04")
    assert E.plot_search(rows).get_xscale() == "log"
    with pytest.raises(ValueError, match="no search results"):
        E.best_setting([])
    with pytest.raises(KeyError, match="val_f1"):
        E.best_setting(rows, metric="val_f1")
    with pytest.raises(ValueError):
        E.plot_search([])
