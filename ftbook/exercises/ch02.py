"""Checkers for the exercises of chapter 2 (``chapters/02_pipeline.ipynb``).

* ``ch02.q1``: a classifier's confusion matrix on 100 test reviews is
  ``[[50, 10], [5, 35]]`` (rows: true negative/positive; columns: predicted). Its accuracy?
  Expected: ``0.85`` (a float in [0, 1]; ``85`` percent is refused with a hint).
* ``ch02.q2``: 1,000 training samples, batch size 32, the last partial batch kept: how many
  optimisation steps in one epoch? Expected: ``32``.
"""

from __future__ import annotations

import math

from . import exercise

CONFUSION = ((50, 10), (5, 35))
N_SAMPLES, BATCH_SIZE = 1000, 32


def _number(answer, what: str) -> float:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数（{what}），而不是 {type(answer).__name__}：{answer!r}")
    if math.isnan(answer):
        raise ValueError(f"{what} 不能是 NaN")
    return float(answer)


@exercise("ch02.q1")
def _q1(answer) -> None:
    """混淆矩阵 [[50, 10], [5, 35]]（行：真实类别，列：预测类别）对应的准确率是多少？"""
    value = _number(answer, "准确率")
    correct = CONFUSION[0][0] + CONFUSION[1][1]
    total = sum(map(sum, CONFUSION))
    expected = correct / total
    if abs(value - 100 * expected) < 1e-6:
        raise AssertionError("请用 0 到 1 之间的小数表示，而不是百分数")
    if not 0 <= value <= 1:
        raise ValueError(f"准确率应在 0 到 1 之间，得到 {value}")
    if abs(value - expected) > 1e-4:
        raise AssertionError(f"准确率 = 对角线之和 / 样本总数；你的 {value:.4f} 不等于它")


@exercise("ch02.q2")
def _q2(answer) -> None:
    """1,000 个训练样本、batch size 32、保留最后一个不满的 batch：一个 epoch 有多少步？"""
    value = _number(answer, "步数")
    expected = math.ceil(N_SAMPLES / BATCH_SIZE)
    if value == N_SAMPLES // BATCH_SIZE:
        raise AssertionError("最后一个不满 32 个样本的 batch 也要算一步（向上取整）")
    if value != expected:
        raise AssertionError(f"{value:g} 不对：步数 = ⌈样本数 / batch size⌉")
