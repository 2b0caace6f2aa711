"""Checkers for the exercises of chapter 11 (``chapters/11_evaluation.ipynb``).

* ``ch11.q1``: macro F1 of :data:`Q1_TRUE` / :data:`Q1_PRED` (3 classes). Expected the value of
  ``sklearn.metrics.f1_score(..., average="macro")`` (about 0.6032).
* ``ch11.q2``: expected calibration error of :data:`Q2_PROBS` / :data:`Q2_TRUE` with 5 bins.
  Expected :func:`ftbook.evaluation.expected_calibration_error` (about 0.4083).
* ``ch11.q3``: from :data:`Q3_ROWS` (a search result), the ``(lr, warmup_ratio)`` to choose.
  Expected ``(1e-4, 0.1)``: highest validation accuracy, ties to the smaller learning rate.
"""

from __future__ import annotations

import math

from . import exercise

Q1_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Q1_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]

Q2_PROBS = [[0.95, 0.05], [0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.45, 0.55], [0.1, 0.9]]
Q2_TRUE = [0, 1, 0, 1, 0, 0]

Q3_ROWS = [
    {"lr": 3e-5, "warmup_ratio": 0.0, "val_accuracy": 0.71},
    {"lr": 3e-5, "warmup_ratio": 0.1, "val_accuracy": 0.74},
    {"lr": 1e-4, "warmup_ratio": 0.0, "val_accuracy": 0.90},
    {"lr": 1e-4, "warmup_ratio": 0.1, "val_accuracy": 0.93},
    {"lr": 3e-4, "warmup_ratio": 0.0, "val_accuracy": 0.41},
    {"lr": 3e-4, "warmup_ratio": 0.1, "val_accuracy": 0.93},
]


def _number(answer) -> float:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数，而不是 {type(answer).__name__}：{answer!r}")
    return float(answer)


@exercise("ch11.q1")
def _q1(answer) -> None:
    """用 Q1_TRUE / Q1_PRED 计算宏平均 F1（三个类别 F1 的算术平均）。"""
    from sklearn.metrics import accuracy_score, f1_score

    value = _number(answer)
    expected = float(f1_score(Q1_TRUE, Q1_PRED, average="macro"))
    if math.isclose(value, expected, abs_tol=1e-3):
        return
    if math.isclose(value, accuracy_score(Q1_TRUE, Q1_PRED), abs_tol=1e-3):
        raise AssertionError("这是准确率；宏平均 F1 要先算每个类别的 F1，再取平均")
    if math.isclose(value, float(f1_score(Q1_TRUE, Q1_PRED, average="weighted")), abs_tol=1e-3):
        raise AssertionError("这是按样本数加权的 F1；宏平均对每个类别一视同仁")
    raise AssertionError(f"{value:.4f} 不对；F1 = 2PR/(P+R)，每个类别分别计算后取平均")


@exercise("ch11.q2")
def _q2(answer) -> None:
    """用 5 个等宽区间，计算 Q2_PROBS / Q2_TRUE 的期望校准误差（ECE）。"""
    from ..evaluation import expected_calibration_error

    value = _number(answer)
    expected = expected_calibration_error(Q2_PROBS, Q2_TRUE, n_bins=5)
    if math.isclose(value, expected, abs_tol=1e-4):
        return
    if math.isclose(value, expected_calibration_error(Q2_PROBS, Q2_TRUE, n_bins=10), abs_tol=1e-4):
        raise AssertionError("这是 10 个区间的结果；题目要求 5 个区间")
    raise AssertionError(f"{value:.4f} 不对；每个区间：样本占比 × |准确率 − 平均置信度|，再求和")


@exercise("ch11.q3")
def _q3(answer) -> None:
    """根据 Q3_ROWS，应选哪组 (lr, warmup_ratio)？验证集准确率并列时选较小的学习率。"""
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise TypeError(f"请给出 (lr, warmup_ratio) 形式的二元组，而不是 {answer!r}")
    lr, warmup = (_number(a) for a in answer)
    if math.isclose(lr, 1e-4) and math.isclose(warmup, 0.1):
        return
    if math.isclose(lr, 3e-4) and math.isclose(warmup, 0.1):
        raise AssertionError("准确率并列；3e-4 在没有预热时只有 0.41，说明它处在不稳定的边缘，选较小的学习率更稳")
    raise AssertionError("找验证集准确率最高的一行；并列时选学习率较小的那一组")
