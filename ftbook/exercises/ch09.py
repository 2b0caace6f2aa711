"""Checkers for the exercises of chapter 9 (``chapters/09_pretraining.ipynb``).

* ``ch09.q1``: under BERT's rule (15% targets; of those 80% ``[MASK]``, 10% random, 10% kept), what
  share of all (non-special) input tokens becomes ``[MASK]``, a random token, or is a target left
  unchanged? Expected ``{"mask": 0.12, "random": 0.015, "kept": 0.015}``.
* ``ch09.q2``: a function ``my_mask_tokens(input_ids, special_tokens_mask, mask_token_id,
  vocab_size, generator)`` -> ``(inputs, labels)`` with BERT's 80/10/10 statistics.
"""

from __future__ import annotations

from . import exercise

EXPECTED_Q1 = {"mask": 0.12, "random": 0.015, "kept": 0.015}


@exercise("ch09.q1")
def _q1(answer) -> None:
    """BERT 掩码规则下，所有 token 中变成 [MASK] / 随机 token / 作为目标却保持不变的比例各是多少？"""
    if not isinstance(answer, dict) or set(answer) != set(EXPECTED_Q1):
        raise TypeError('请给出字典 {"mask": ..., "random": ..., "kept": ...}（三个 0 到 1 之间的比例）')
    for key, want in EXPECTED_Q1.items():
        got = answer[key]
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise TypeError(f"{key} 应是一个数，而不是 {type(got).__name__}")
        if abs(got - want) > 1e-6:
            if abs(got - want / 0.15) < 1e-6:
                raise AssertionError(f"{key}={got} 是“目标中”的比例；题目问的是占全部 token 的比例（再乘以 15%）")
            raise AssertionError(f"{key}={got} 不对：先选 15% 作为目标，再在目标里按 80/10/10 分配")


@exercise("ch09.q2")
def _q2(answer) -> None:
    """实现 my_mask_tokens，统计量要符合 BERT 的 80/10/10 规则。"""
    import torch

    if not callable(answer):
        raise TypeError("请把函数 my_mask_tokens 本身传进来（不要调用它）")
    mask_id, vocab = 4, 1000
    ids = torch.randint(5, vocab, (256, 128), generator=torch.Generator().manual_seed(0))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    before = ids.clone()
    out = answer(ids, special, mask_id, vocab, torch.Generator().manual_seed(1))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("my_mask_tokens 应返回 (inputs, labels) 两个张量")
    inputs, labels = out
    if not torch.equal(ids, before):
        raise AssertionError("你就地修改了 input_ids：先 clone() 再改")
    if inputs.shape != ids.shape or labels.shape != ids.shape:
        raise AssertionError("inputs 和 labels 的形状应与 input_ids 相同")
    target = labels != -100
    if target[special].any() or not torch.equal(inputs[special], ids[special]):
        raise AssertionError("特殊 token（[CLS]、[SEP]、[PAD]）不能被选为目标，也不能被改动")
    if not torch.equal(labels[target], ids[target]):
        raise AssertionError("目标位置的 label 应是原来的 token id；非目标位置应为 -100")
    share = target.float().mean().item() / (1 - special.float().mean().item())
    if abs(share - 0.15) > 0.01:
        raise AssertionError(f"被选为目标的比例是 {share:.3f}，应约为 0.15")
    n = target.sum().item()
    masked = ((inputs == mask_id) & target).sum().item() / n
    kept = ((inputs == ids) & target).sum().item() / n
    rand = 1 - masked - kept
    if abs(masked - 0.8) > 0.03 or abs(kept - 0.1) > 0.03 or abs(rand - 0.1) > 0.03:
        raise AssertionError(f"目标中 [MASK]/随机/不变 的比例是 {masked:.3f}/{rand:.3f}/{kept:.3f}，"
                             f"应约为 0.8/0.1/0.1")
    if ((inputs != ids) & ~target).any():
        raise AssertionError("只有目标位置可以被改动")
