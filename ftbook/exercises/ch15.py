"""Exercises of chapter 15 (chapters/15_lora.ipynb): LoRA parameter counts, Adam state, the update at init."""

from __future__ import annotations

import math

from . import exercise


def _number(answer) -> float:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise AssertionError("请用一个数回答")
    return float(answer)


@exercise("ch15.q1", "trainable LoRA parameters of one 768 x 3072 linear layer at rank r = 8")
def q1(answer) -> None:
    got = _number(answer)
    if math.isclose(got, 768 * 3072):
        raise AssertionError("这是整个权重矩阵 W 的参数量；LoRA 只训练 A 和 B")
    if math.isclose(got, 8 * 768) or math.isclose(got, 8 * 3072):
        raise AssertionError("只算了 A 或 B 中的一个：A 是 (r, in)，B 是 (out, r)")
    assert math.isclose(got, 8 * (768 + 3072)), f"{answer} 不对：A 有 r×in 个参数，B 有 out×r 个"


@exercise("ch15.q2", "bytes of AdamW's two fp32 moments for the LoRA of exercise 1")
def q2(answer) -> None:
    got = _number(answer)
    n = 8 * (768 + 3072)
    if math.isclose(got, 4 * n):
        raise AssertionError("这是参数本身的字节数；Adam 为每个参数存两个量（一阶矩和二阶矩）")
    if math.isclose(got, 2 * n):
        raise AssertionError("fp32 的每个数占 4 个字节，不是 1 个")
    assert math.isclose(got, 2 * 4 * n), f"{answer} 不对：参数个数 × 2 个矩 × 4 字节"


@exercise("ch15.q3", "largest |output change| of a freshly initialised LoRALinear compared with its base layer")
def q3(answer) -> None:
    got = _number(answer)
    if got < 0:
        raise AssertionError("绝对值不会是负数")
    assert got == 0.0, f"{answer} 不对：初始化时 B 是什么？B A 又是什么？"
