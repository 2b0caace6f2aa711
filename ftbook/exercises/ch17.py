"""Checkers for the exercises of chapter 17 (``chapters/17_tools_summary_faq.ipynb``).

* ``ch17.q1``: write ``keep_epoch(val_losses, patience)``: the 0-based epoch whose weights early
  stopping keeps. Checked on several histories against the book's loop itself
  (:func:`ftbook.training.train` with ``metric_for_best_model="loss"``, as in :mod:`ftbook.faq`),
  run on a stub model whose validation loss after each epoch is scripted.
* ``ch17.q2``: gradient × input by hand. A linear "model" scores a sentence as ``w · (e1 + e2 + e3)``
  with ``w = [1, -2]`` and token embeddings ``e1 = [2, 1]``, ``e2 = [0, -1]``, ``e3 = [3, 1]``.
  Give the three token saliencies. Expected ``[0, 2, 1]``.
* ``ch17.q3``: read an LR range test: which of ``[1e-5, 1e-4, 1e-3, 1e-2, 1e-1]`` do you start
  training with, for the curve :data:`Q3_CURVE`? Expected ``1e-3`` (the steepest descent, a decade
  below the minimum); ``1e-2`` is refused with a hint.
"""

from __future__ import annotations

import math

from . import exercise

Q2_W = (1.0, -2.0)
Q2_E = ((2.0, 1.0), (0.0, -1.0), (3.0, 1.0))
# lr -> smoothed loss of a range test (flat, falling fastest near 1e-3, lowest at 1e-2, exploding)
Q3_CURVE = {1e-5: 0.693, 1e-4: 0.690, 1e-3: 0.560, 1e-2: 0.420, 1e-1: 2.900}

_HISTORIES = [
    ([0.9, 0.7, 0.6, 0.65, 0.7, 0.8], 2),
    ([0.9, 0.7, 0.6, 0.65, 0.55, 0.8, 0.9, 1.0], 2),
    ([0.9, 0.7, 0.6, 0.65, 0.55, 0.8, 0.9, 1.0], 3),
    ([0.9, 0.6, 0.7, 0.8, 0.5], 2),
    ([0.9, 0.7, 0.6, 0.65, 0.7, 0.8, 0.5], 2),
    ([0.5, 0.4, 0.3, 0.2], 1),
    ([0.5, 0.6, 0.7, 0.8], 1),
    ([0.5, 0.5, 0.5, 0.5], 2),
]


def kept_epoch(val_losses, patience: int) -> int:
    """The 0-based epoch whose weights :func:`ftbook.training.train` keeps when it stops early on
    the validation loss with ``patience``, for a run whose validation losses are ``val_losses``
    (the loop runs for real, one step per epoch, on a two-parameter stub model)."""
    import torch

    from ..data import Encoded
    from ..training import TrainConfig, train

    class Stub(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(2))

        def forward(self, input_ids, attention_mask=None):
            return self.bias.expand(input_ids.size(0), 2)

    scripted = iter(val_losses)
    config = TrainConfig(lr=1e-3, epochs=len(val_losses), batch_size=2, warmup_ratio=0.0,
                         metric_for_best_model="loss", greater_is_better=False, patience=patience,
                         progress=False)
    result = train(Stub(), Encoded([[1], [1]], [0, 1]), Encoded([[1]], [0]), config,
                   evaluate_fn=lambda model, data: {"loss": next(scripted)})
    return result.history.index(result.best)


@exercise("ch17.q1")
def _q1(answer) -> None:
    """写一个函数 keep_epoch(val_losses, patience)，返回早停最终保留的那个 epoch（从 0 开始）。"""
    if not callable(answer):
        raise TypeError(f"请把函数本身传进来（keep_epoch），而不是 {type(answer).__name__}")
    for losses, patience in _HISTORIES:
        expected = kept_epoch(losses, patience)
        try:
            got = answer(list(losses), patience)
        except Exception as exc:  # the reader's code failed: say on which input
            raise AssertionError(f"keep_epoch({losses}, patience={patience}) 出错：{type(exc).__name__}: {exc}")
        if got is None:
            raise AssertionError("keep_epoch 返回了 None：请返回一个整数（epoch 的下标，从 0 开始）")
        if got != expected:
            hint = ("相等的损失不算“变好”" if len(set(losses)) == 1 else
                    "早停在耐心耗尽时就停下，之后的 epoch 根本不会训练" if got > expected else
                    "保留的是验证损失最低的那个 epoch，不是停下时的 epoch")
            raise AssertionError(f"keep_epoch({losses}, patience={patience}) 返回 {got!r}，应为 "
                                 f"{expected}。提示：{hint}")


@exercise("ch17.q2")
def _q2(answer) -> None:
    """w = [1, -2]，e1 = [2, 1]，e2 = [0, -1]，e3 = [3, 1]：三个词元的 gradient × input 分别是多少？"""
    expected = [sum(wi * ei for wi, ei in zip(Q2_W, e)) for e in Q2_E]
    try:
        values = [float(v) for v in answer]
    except TypeError:
        raise TypeError(f"请给出三个数组成的列表，而不是 {type(answer).__name__}") from None
    if len(values) != 3:
        raise ValueError(f"需要三个数（每个词元一个），得到 {len(values)} 个")
    if any(math.isnan(v) for v in values):
        raise ValueError("答案里有 NaN")
    if all(abs(v - sum(Q2_W)) < 1e-6 for v in values):
        raise AssertionError("梯度对每个词元都是 w，但还要与该词元自己的嵌入做点积")
    if any(abs(v - x) > 1e-6 for v, x in zip(values, expected)):
        wrong = [i + 1 for i, (v, x) in enumerate(zip(values, expected)) if abs(v - x) > 1e-6]
        raise AssertionError(f"第 {wrong} 个词元不对：打分对 e_i 的梯度是 w，所以 saliency_i = w · e_i")


@exercise("ch17.q3")
def _q3(answer) -> None:
    """按 Q3_CURVE 这条学习率区间测试曲线，你会用哪个学习率开始训练？"""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个学习率（数），而不是 {type(answer).__name__}")
    match = [lr for lr in Q3_CURVE if math.isclose(answer, lr, rel_tol=1e-6)]
    if not match:
        raise ValueError(f"请从 {list(Q3_CURVE)} 中选一个")
    lr = match[0]
    if lr == 1e-3:
        return
    if lr == 1e-2:
        raise AssertionError("1e-2 处损失最低，但已贴近发散点；损失下降最快的地方更稳妥，通常低一个数量级")
    if lr == 1e-1:
        raise AssertionError("1e-1 处损失已经爆炸（2.9 > 初始 0.69）")
    raise AssertionError(f"{lr:g} 处损失几乎不降：学习率太小，训练会很慢")
