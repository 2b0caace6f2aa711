"""Exercises of chapter 6 (``chapters/06_layer_norm.ipynb``): Layer Normalization."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import exercise


@exercise("ch06.q1", "x = [1, 2, 3, 4]，γ=1、β=0、ε=0：手算 LayerNorm 的输出（4 个数的列表）。")
def q1(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出 4 个数的列表，例如 [-1.3, ...]。")
    try:
        values = [float(v) for v in answer]
    except TypeError:
        raise TypeError(f"请给出一个由 4 个数组成的列表，而不是 {type(answer).__name__}") from None
    if len(values) != 4:
        raise AssertionError(f"应当有 4 个数，你给了 {len(values)} 个。")
    expected = F.layer_norm(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), (4,), eps=0.0).tolist()
    if abs(sum(values)) > 1e-2:
        raise AssertionError(f"输出的均值应为 0，你的均值是 {sum(values) / 4:.4f}：先减去均值 2.5。")
    sample_std = math.sqrt(sum((v - 2.5) ** 2 for v in [1, 2, 3, 4]) / 3)
    if all(abs(v - (x - 2.5) / sample_std) < 1e-2 for v, x in zip(values, [1, 2, 3, 4])):
        raise AssertionError("你用了无偏方差（除以 H-1）。LayerNorm 用的是有偏方差：除以 H=4。")
    if any(abs(v - e) > 1e-3 for v, e in zip(values, expected)):
        raise AssertionError(f"数值不对：方差应为 1.25，标准差约 1.1180；你的答案 {values}。")


@exercise("ch06.q2", "写一个函数 ln(x)，沿最后一维做 LayerNorm（无 γ/β，ε=1e-5），在 x≈1e4 的 float32 输入上也要准确。")
def q2(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请传入一个函数，例如 def ln(x): ...")
    if not callable(answer):
        raise TypeError(f"请传入一个函数（callable），而不是 {type(answer).__name__}")
    g = torch.Generator().manual_seed(6)
    for offset in (0.0, 1e4):
        x = torch.randn(16, 256, generator=g) + offset
        ref = F.layer_norm(x.double(), (256,), eps=1e-5)
        y = answer(x.clone())
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise AssertionError(f"函数应返回与输入同形状 {tuple(x.shape)} 的张量。")
        err = (y.double() - ref).abs().max().item()
        if not math.isfinite(err) or err > 5e-3:
            hint = "检查是否用了一遍法 E[x²]−E[x]²：大偏移下它会失去全部有效数字，先减均值再求方差。" if offset else "检查均值、有偏方差与 ε 的位置：(x-μ)/sqrt(σ²+ε)。"
            raise AssertionError(f"偏移 {offset:g} 时最大误差 {err:.4g}（应 < 5e-3）。{hint}")


@exercise("ch06.q3", "BERT-base（hidden=768，12 层）一共有多少个 LayerNorm 参数（γ 与 β 合计）？")
def q3(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个整数。")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer):
        raise TypeError(f"请给出一个整数，而不是 {answer!r}")
    per = 2 * 768
    if int(answer) == per * 24:
        raise AssertionError("每层 2 个 LayerNorm 算对了，但别忘了嵌入层之后还有 1 个。")
    if int(answer) == per * 25 // 2:
        raise AssertionError("每个 LayerNorm 有 γ 和 β 两组参数，各 768 个。")
    if int(answer) != per * 25:
        raise AssertionError(f"{int(answer)} 不对：数一数 LayerNorm 的个数（嵌入层 1 个 + 每层 2 个），每个有 2×768 个参数。")
