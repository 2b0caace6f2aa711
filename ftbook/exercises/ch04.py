"""Exercises of chapter 4 (``chapters/04_cross_entropy.ipynb``): cross-entropy by hand, its
gradient, and a stable log-sum-exp."""

from __future__ import annotations

import math

from . import exercise

LOGITS = [2.0, 1.0, 0.0]
TARGET = 0


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


@exercise("ch04.q1")
def ce_value(answer) -> None:
    """logits 为 [2, 1, 0]、真实类别为 0 时，交叉熵损失是多少？（保留 4 位小数即可）"""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数，而不是 {type(answer).__name__}")
    expected = -math.log(_softmax(LOGITS)[TARGET])
    if math.isclose(answer, _softmax(LOGITS)[TARGET], abs_tol=1e-3):
        raise AssertionError("这是正确类别的概率 p_0；损失是它的负对数 -log p_0")
    if math.isclose(answer, -math.log10(_softmax(LOGITS)[TARGET]), abs_tol=1e-3):
        raise AssertionError("交叉熵用自然对数 ln，而不是 log10")
    if not math.isclose(answer, expected, abs_tol=1e-3):
        raise AssertionError("先算 log-sum-exp：log(e^2 + e^1 + e^0)，再减去正确类别的 logit 2")


@exercise("ch04.q2")
def ce_grad(answer) -> None:
    """同一例子中，损失对 logits 的梯度 ∂L/∂z 是什么？（长度为 3 的列表或张量）"""
    try:
        vals = [float(v) for v in answer]
    except TypeError:
        raise TypeError("请给出 3 个数（列表或张量）") from None
    if len(vals) != 3:
        raise ValueError(f"梯度应有 3 个分量（每个类别一个），得到 {len(vals)} 个")
    p = _softmax(LOGITS)
    expected = [p[i] - (1.0 if i == TARGET else 0.0) for i in range(3)]
    if all(math.isclose(a, -b, abs_tol=1e-3) for a, b in zip(vals, expected)):
        raise AssertionError("符号反了：梯度是 softmax(z) − y，不是 y − softmax(z)")
    if not all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(vals, expected)):
        raise AssertionError("梯度 = softmax(z) − one_hot(y)；分量之和应为 0")


@exercise("ch04.q3")
def logsumexp(answer) -> None:
    """写一个数值稳定的 ``logsumexp(x)``（x 为一维 float 张量，返回标量张量），不要调用
    ``torch.logsumexp``；它要对 [1000, 1000] 和 [-1000, -1000] 都给出有限且正确的结果。"""
    import torch

    if not callable(answer):
        raise TypeError("请传入一个函数 logsumexp(x)")
    cases = [[0.0, 0.0], [1.0, 2.0, 3.0], [1000.0, 1000.0], [-1000.0, -1000.0], [1e4, -1e4, 0.0]]
    for c in cases:
        for dtype in (torch.float32, torch.float64):
            x = torch.tensor(c, dtype=dtype)
            got = torch.as_tensor(answer(x.clone()))
            want = torch.logsumexp(x, 0)
            if not torch.isfinite(got).all():
                raise AssertionError(f"x={c} ({dtype}) 得到 {got.item()}：先减去最大值再取 exp")
            if not torch.allclose(got.to(dtype), want, rtol=1e-5, atol=1e-5):
                raise AssertionError(f"x={c} 时应为 {want.item():.4f}，得到 {got.item():.4f}")
