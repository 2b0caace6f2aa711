"""Exercises of chapter 3 (``chapters/03_data.ipynb``): padding arithmetic and a collator."""

from __future__ import annotations

import math

from . import exercise

Q1_LENGTHS = [5, 17, 9, 30, 12, 28]


@exercise("ch03.q1")
def padding_share(answer) -> None:
    """长度为 [5, 17, 9, 30, 12, 28] 的 6 条序列，先按长度排序、再每 2 条组成一批并填充到批内最长：
    填充 token 占整个张量的比例是多少？（一个 0~1 之间的小数）"""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数（0~1 之间的比例），而不是 {type(answer).__name__}")
    ls = sorted(Q1_LENGTHS)
    real = sum(ls)
    padded = sum(2 * max(ls[i:i + 2]) for i in range(0, len(ls), 2))
    expected = 1 - real / padded
    if math.isclose(answer, 1 - real / (30 * 6), abs_tol=1e-3):
        raise AssertionError("这是填充到全体最长（30）的比例；题目要求先排序、再按批内最长填充")
    if not math.isclose(answer, expected, abs_tol=1e-3):
        raise AssertionError(f"排序后两两成批：{ls[0:2]}, {ls[2:4]}, {ls[4:6]}；把每批填充后的总长度算出来再比一比")


@exercise("ch03.q2")
def collate(answer) -> None:
    """写一个函数 ``collate(features, pad_id)``：``features`` 是若干 ``{"input_ids": [...]}``，
    返回 ``{"input_ids": LongTensor, "attention_mask": LongTensor}``，右侧填充到批内最长。"""
    import torch

    if not callable(answer):
        raise TypeError("请传入一个函数 collate(features, pad_id)")
    cases = [
        ([{"input_ids": [101, 7, 102]}, {"input_ids": [101, 102]}], 0),
        ([{"input_ids": [1, 2, 3, 4]}], 9),
        ([{"input_ids": [5]}, {"input_ids": [6, 7, 8]}, {"input_ids": [9, 9]}], 3),
    ]
    for feats, pad in cases:
        out = answer([dict(f) for f in feats], pad)
        if not isinstance(out, dict) or "input_ids" not in out or "attention_mask" not in out:
            raise AssertionError("返回值应是含 'input_ids' 与 'attention_mask' 的字典")
        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.tensor([f["input_ids"] + [pad] * (width - len(f["input_ids"])) for f in feats])
        mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in feats])
        got_ids, got_mask = torch.as_tensor(out["input_ids"]), torch.as_tensor(out["attention_mask"])
        if got_ids.shape != ids.shape:
            raise AssertionError(f"input_ids 形状应为 {tuple(ids.shape)}（批大小, 批内最长），得到 {tuple(got_ids.shape)}")
        if not torch.equal(got_ids.long(), ids):
            raise AssertionError(f"pad_id={pad} 时 input_ids 不对：期望 {ids.tolist()}，得到 {got_ids.tolist()}")
        if not torch.equal(got_mask.long(), mask):
            raise AssertionError(f"attention_mask 不对：真实 token 为 1、填充为 0；期望 {mask.tolist()}")
