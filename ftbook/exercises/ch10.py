"""Checkers for the exercises of chapter 10 (``chapters/10_finetuning.ipynb``).

* ``ch10.q1``: peak lr 1e-4, 10 warm-up steps, 100 steps in all, linear decay: the learning rate
  at step 55 (counting from 0). Expected ``5e-05`` (computed with :func:`ftbook.optim.linear_schedule_with_warmup`).
* ``ch10.q2``: which of the given parameter names get no weight decay? Expected the set of names
  ending in ``bias`` or belonging to a ``LayerNorm`` (as :func:`ftbook.optim.param_groups` decides by module type).
* ``ch10.q3``: global batch 64, 2 processes, 8 examples per process per forward pass: how many
  gradient-accumulation steps? Expected ``4``.
"""

from __future__ import annotations

import math

from . import exercise

Q1 = {"lr": 1e-4, "warmup_steps": 10, "total_steps": 100, "step": 55}

Q2_NAMES = (
    "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.LayerNorm.bias",
    "bert.encoder.layer.0.attention.self.query.weight",
    "bert.encoder.layer.0.attention.self.query.bias",
    "bert.encoder.layer.0.output.LayerNorm.weight",
    "classifier.weight",
    "classifier.bias",
)


def _number(answer, what: str) -> float:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数（{what}），而不是 {type(answer).__name__}：{answer!r}")
    if not math.isfinite(answer):
        raise ValueError(f"{answer!r} 不是有限的数")
    return float(answer)


@exercise("ch10.q1")
def _q1(answer) -> None:
    """峰值学习率 1e-4，预热 10 步，共 100 步，之后线性衰减到 0：第 55 步（从 0 数起）的学习率是多少？"""
    from ..optim import linear_schedule_with_warmup

    value = _number(answer, "学习率")
    expected = Q1["lr"] * linear_schedule_with_warmup(Q1["step"], num_warmup_steps=Q1["warmup_steps"],
                                                      num_training_steps=Q1["total_steps"])
    if math.isclose(value, expected, rel_tol=1e-6):
        return
    if math.isclose(value, Q1["lr"], rel_tol=1e-6):
        raise AssertionError("1e-4 是峰值；第 55 步已经过了预热，正在线性衰减：乘子是 (100-55)/(100-10)")
    if math.isclose(value, expected / Q1["lr"], rel_tol=1e-6):
        raise AssertionError("你给出的是乘子；请再乘以峰值学习率 1e-4")
    raise AssertionError(f"{value:g} 不对；衰减阶段的乘子 = (total - step) / (total - warmup)")


@exercise("ch10.q2")
def _q2(answer) -> None:
    """在 Q2_NAMES 中，哪些参数不做权重衰减？给出名字的集合（set）。"""
    if not isinstance(answer, (set, frozenset, list, tuple)):
        raise TypeError(f"请给出参数名的集合（set），而不是 {type(answer).__name__}")
    answer = set(answer)
    unknown = sorted(a for a in answer if a not in Q2_NAMES)
    if unknown:
        raise ValueError(f"这些名字不在 Q2_NAMES 里：{unknown}")
    expected = {n for n in Q2_NAMES if n.endswith("bias") or "LayerNorm" in n}
    missing, extra = sorted(expected - answer), sorted(answer - expected)
    if missing or extra:
        hint = []
        if missing:
            hint.append(f"漏了 {missing}")
        if extra:
            hint.append(f"多了 {extra}（权重矩阵和词嵌入要衰减）")
        raise AssertionError("；".join(hint) + "。规则：偏置（bias）和 LayerNorm 的参数都不衰减")


@exercise("ch10.q3")
def _q3(answer) -> None:
    """全局批大小 64，2 个进程，每个进程每次前向 8 个样本：梯度累积步数是多少？"""
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"请给出一个整数，而不是 {type(answer).__name__}：{answer!r}")
    if answer == 4:
        return
    if answer == 8:
        raise AssertionError("别忘了两个进程同时各算 8 个：每一次前向整体处理 16 个样本")
    raise AssertionError(f"{answer} 不对：累积步数 × 进程数 × 每进程批大小 = 全局批大小")
