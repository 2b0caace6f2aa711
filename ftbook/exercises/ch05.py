"""Exercises of chapter 5 (``chapters/05_optimization.ipynb``): one momentum step, Adam's first
step, and the warm-up schedule."""

from __future__ import annotations

import math

from . import exercise


def _num(answer):
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数，而不是 {type(answer).__name__}")
    return float(answer)


@exercise("ch05.q1")
def momentum_step(answer) -> None:
    """参数 p = 1.0，动量缓冲 b = 0.5（已经过若干步），这一步梯度 g = 2.0；
    SGD(lr=0.1, momentum=0.9)（无 dampening、无 Nesterov）更新后 p 是多少？"""
    a = _num(answer)
    b = 0.9 * 0.5 + 2.0
    expected = 1.0 - 0.1 * b
    if math.isclose(a, 1.0 - 0.1 * 2.0, abs_tol=1e-6):
        raise AssertionError("这是没有动量的结果；先更新缓冲 b ← μ·b + g，再 p ← p − lr·b")
    if math.isclose(a, 1.0 - 0.1 * (0.9 * 0.5 + 0.1 * 2.0), abs_tol=1e-6):
        raise AssertionError("PyTorch 的动量是 b ← μ·b + (1 − dampening)·g，dampening 默认 0，不是 (1 − μ)·g")
    if not math.isclose(a, expected, abs_tol=1e-6):
        raise AssertionError("b ← 0.9 × 0.5 + 2.0，然后 p ← 1.0 − 0.1 × b")


@exercise("ch05.q2")
def adam_first_step(answer) -> None:
    """Adam(lr=0.01) 的第一步，梯度 g = 0.003（很小）：参数变化了多少（取绝对值；可忽略 eps）？"""
    a = _num(answer)
    if math.isclose(a, 0.01 * 0.003, rel_tol=1e-3):
        raise AssertionError("那是 SGD 的步长 lr·g；Adam 用 m̂/√v̂ 归一化了梯度的大小")
    if math.isclose(a, 0.01 * 0.1 * 0.003 / math.sqrt(0.001 * 0.003**2), rel_tol=1e-3):
        raise AssertionError("别忘了偏差修正：m̂ = m/(1−β1)，v̂ = v/(1−β2)")
    if not math.isclose(a, 0.01, rel_tol=1e-3):
        raise AssertionError("第一步 m̂ = g、v̂ = g²，所以 m̂/√v̂ = ±1，步长只取决于 lr")


@exercise("ch05.q3")
def warmup_multiplier(answer) -> None:
    """线性 warm-up + 线性衰减，峰值学习率 5e-5，warm-up 100 步，共 1000 步：
    第 50 步和第 550 步的学习率各是多少？（给出一对数 (lr_50, lr_550)）"""
    try:
        a, b = (float(v) for v in answer)
    except (TypeError, ValueError):
        raise TypeError("请给出一对数 (lr_50, lr_550)") from None
    from ..optim import linear_schedule_with_warmup as f

    e1 = 5e-5 * f(50, num_warmup_steps=100, num_training_steps=1000)
    e2 = 5e-5 * f(550, num_warmup_steps=100, num_training_steps=1000)
    if not math.isclose(a, e1, rel_tol=1e-6):
        raise AssertionError("warm-up 阶段学习率从 0 线性升到峰值：第 50 步是峰值的 50/100")
    if math.isclose(b, 5e-5 * (1000 - 550) / 1000, rel_tol=1e-6):
        raise AssertionError("衰减段从 warm-up 结束（第 100 步）才开始：比例是 (1000−550)/(1000−100)")
    if not math.isclose(b, e2, rel_tol=1e-6):
        raise AssertionError("衰减段：lr = 峰值 × (总步数 − 当前步) / (总步数 − warm-up 步数)")
