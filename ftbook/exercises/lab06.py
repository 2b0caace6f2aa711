"""Checkpoints of lab 6 (``chapters/labs/lab06.ipynb``): LayerNorm and RMSNorm from scratch, their
parameters and the hand-written backward pass. Chapter 6 teaches it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import exercise
from ._answers import callable_answer as _callable

X1 = [1.0, 2.0, 3.0, 4.0]


@exercise("lab06.t1", "x = [1, 2, 3, 4]，γ=1、ε=0：手算 RMSNorm 的输出（4 个数）。", level="easy")
def t1(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出 4 个数的列表。")
    try:
        vals = [float(v) for v in answer]
    except TypeError:
        raise TypeError(f"请给出 4 个数（列表或张量），而不是 {type(answer).__name__}") from None
    if len(vals) != 4:
        raise AssertionError(f"应当有 4 个数，你给了 {len(vals)} 个。")
    x = torch.tensor(X1, dtype=torch.float64)
    want = F.rms_norm(x, (4,), eps=0.0).tolist()
    close = lambda ref: all(abs(v - r) < 1e-3 for v, r in zip(vals, ref))  # noqa: E731
    if close(want):
        return
    if close(F.layer_norm(x, (4,), eps=0.0).tolist()):
        raise AssertionError("这是 LayerNorm 的结果：RMSNorm 不减均值，只除以均方根 sqrt(mean(x²))。")
    if close((x / x.std()).tolist()) or close((x / x.std(unbiased=False)).tolist()):
        raise AssertionError("你除以了标准差；RMSNorm 除以均方根 sqrt(mean(x²)) = sqrt(7.5)。")
    raise AssertionError("先算 mean(x²) = (1 + 4 + 9 + 16)/4，再把每个分量除以它的平方根。")


@exercise("lab06.t2", "hidden=4096、32 层、每层 2 个 RMSNorm、最后再 1 个：一共有多少个归一化参数？", level="easy")
def t2(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个整数。")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer):
        raise TypeError(f"请给出一个整数，而不是 {answer!r}")
    per_rms = sum(p.numel() for p in torch.nn.RMSNorm(4096).parameters())
    per_ln = sum(p.numel() for p in torch.nn.LayerNorm(4096).parameters())
    count = 32 * 2 + 1
    if int(answer) == per_ln * count:
        raise AssertionError("RMSNorm 只有缩放 γ，没有偏置 β：每个只有 4096 个参数。")
    if int(answer) == per_rms * 64:
        raise AssertionError("别忘了最后一层之后的那个 RMSNorm（final norm）。")
    if int(answer) != per_rms * count:
        raise AssertionError(f"{int(answer)} 不对：数一数 RMSNorm 的个数（32×2 + 1），每个有 4096 个参数。")


def _inputs(g, dtype):
    x = torch.randn(8, 64, generator=g, dtype=dtype)
    x[:4] += 1e4  # a large offset: the one-pass variance loses every digit in float32
    w = 1 + 0.1 * torch.randn(64, generator=g, dtype=dtype)
    b = 0.1 * torch.randn(64, generator=g, dtype=dtype)
    return x, w, b


def _compare(answer, twin, with_bias: bool, name: str) -> None:
    g = torch.Generator().manual_seed(60)
    for dtype in (torch.float32, torch.float64):
        x, w, b = _inputs(g, dtype)
        args_a = [t.clone().requires_grad_() for t in ((x, w, b) if with_bias else (x, w))]
        args_b = [t.clone().requires_grad_() for t in args_a]
        got = answer(*args_a, 1e-5)
        if got is None:
            raise AssertionError(f"{name} 返回了 None：还没有完成 TODO（应返回与 x 同形状的张量）。")
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            raise AssertionError(f"{name} 应返回与 x 同形状 {tuple(x.shape)} 的张量。")
        want = twin(*args_b)
        err = (got.detach().double() - want.detach().double()).abs().max().item()
        if not math.isfinite(err) or err > (5e-3 if dtype == torch.float32 else 1e-8):
            raise AssertionError(f"{dtype} 下最大误差 {err:.3g}。" + _hint(answer, x, w, b, with_bias))
        if not got.requires_grad:
            raise AssertionError("返回值不能求导：不要用 .item()、.detach() 或 numpy。")
        grad_out = torch.randn(x.shape, generator=g, dtype=dtype)
        ga = torch.autograd.grad(got, args_a, grad_out)
        gb = torch.autograd.grad(want, args_b, grad_out)
        tol = 5e-2 if dtype == torch.float32 else 1e-7
        for label, u, v in zip(("x", "γ", "β"), ga, gb):
            if not torch.allclose(u, v, rtol=tol, atol=tol):
                raise AssertionError(f"值对了，但对 {label} 的梯度不同：检查是否 detach 了均值或方差。")


def _hint(answer, x, w, b, with_bias) -> str:
    x = x[4:].double()  # the rows without offset
    if with_bias:
        if torch.allclose(answer(x, w.double(), b.double(), 1e-5).double(),
                          F.layer_norm(x, (64,), w.double(), b.double(), eps=1e-5) * math.sqrt(63 / 64), atol=1e-4):
            return "你用了无偏方差（除以 H−1）；LayerNorm 用有偏方差（除以 H）。"
        return "大偏移的行上出错多半是一遍法 E[x²]−E[x]²：先减均值再求方差；否则检查 (x−μ)/sqrt(σ²+ε)·γ + β。"
    centred = x - x.mean(-1, keepdim=True)
    if torch.allclose(answer(x, w.double(), 1e-5).double(), F.rms_norm(centred, (64,), w.double(), eps=1e-5), atol=1e-4):
        return "RMSNorm 不减均值：直接 x / sqrt(mean(x²) + ε) · γ。"
    return "检查 ε 的位置：x / sqrt(mean(x²) + ε)，再乘 γ。"


@exercise("lab06.t3", "实现 my_layer_norm(x, weight, bias, eps)：沿最后一维，值与梯度都与 F.layer_norm 一致，"
          "大偏移下也准确。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def my_layer_norm(x, weight, bias, eps): ...")
    _compare(answer, lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, eps=1e-5), True, "my_layer_norm")


@exercise("lab06.t4", "实现 my_rms_norm(x, weight, eps)：值与梯度都与 F.rms_norm 一致。", level="medium")
def t4(answer) -> None:
    _callable(answer, "def my_rms_norm(x, weight, eps): ...")
    _compare(answer, lambda x, w: F.rms_norm(x, (x.shape[-1],), w, eps=1e-5), False, "my_rms_norm")


@exercise("lab06.t5", "手写 LayerNorm 的反向传播 ln_backward(x, weight, grad_out, eps) -> (grad_x, grad_weight, grad_bias)，"
          "与 autograd 一致。", level="hard")
def t5(answer) -> None:
    _callable(answer, "def ln_backward(x, weight, grad_out, eps): ...")
    g = torch.Generator().manual_seed(61)
    x = torch.randn(6, 5, 16, generator=g, dtype=torch.float64) * 2 + 1
    w = 1 + 0.2 * torch.randn(16, generator=g, dtype=torch.float64)
    b = torch.randn(16, generator=g, dtype=torch.float64)
    grad_out = torch.randn(x.shape, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y = F.layer_norm(leaves[0], (16,), leaves[1], leaves[2], eps=1e-5)
    want = torch.autograd.grad(y, leaves, grad_out)
    with torch.no_grad():
        out = answer(x.clone(), w.clone(), grad_out.clone(), 1e-5)
    if out is None:
        raise AssertionError("ln_backward 返回了 None：还没有完成 TODO（应返回 (grad_x, grad_weight, grad_bias)）。")
    try:
        gx, gw, gb = out
    except (TypeError, ValueError):
        raise TypeError("ln_backward 应返回三元组 (grad_x, grad_weight, grad_bias)。") from None
    for label, got, ref in (("grad_bias", gb, want[2]), ("grad_weight", gw, want[1])):
        if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
            raise AssertionError(f"{label} 的形状应为 {tuple(ref.shape)}：对 batch 与序列两维都要求和。")
        if not torch.allclose(got, ref, atol=1e-8):
            raise AssertionError(f"{label} 不对：grad_bias = Σ grad_out，grad_weight = Σ grad_out · x̂（对前两维求和）。")
    if not isinstance(gx, torch.Tensor) or gx.shape != x.shape:
        raise AssertionError(f"grad_x 的形状应为 {tuple(x.shape)}。")
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    if torch.allclose(gx, grad_out * w / torch.sqrt(var + 1e-5), atol=1e-6):
        raise AssertionError("你把 μ 和 σ 当成了常数；它们也依赖 x：grad_x = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ，ĝ = grad_out·γ。")
    if not torch.allclose(gx, want[0], atol=1e-8):
        raise AssertionError("grad_x 不对：grad_x = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / sqrt(σ² + ε)，ĝ = grad_out·γ，均值沿最后一维。")
