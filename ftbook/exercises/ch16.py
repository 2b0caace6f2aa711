"""Exercises of chapter 16 (chapters/16_instruction_tuning.ipynb): answer-only labels, LoRA on
SmolLM2's attention, exact match of a name list."""

from __future__ import annotations

import math

from . import exercise

IGNORE = -100


def _call(fn, *args):
    if not callable(fn):
        raise AssertionError(f"请给出一个函数，而不是 {type(fn).__name__}")
    try:
        return fn(*args)
    except Exception as exc:  # the reader's code failed: say how
        raise AssertionError(f"函数出错：{type(exc).__name__}: {exc}") from None


@exercise("ch16.q1", "answer_only_labels(prompt_ids, answer_ids): transformers-style labels of one SFT example")
def q1(fn) -> None:
    cases = [([5, 6, 7], [8, 9]), ([1], [2]), ([3, 3, 3, 3], [4, 5, 6])]
    for prompt, ans in cases:
        got = _call(fn, list(prompt), list(ans))
        if not isinstance(got, (list, tuple)):
            raise AssertionError(f"请返回一个列表，而不是 {type(got).__name__}")
        right = [IGNORE] * len(prompt) + list(ans)
        if list(got) == right:
            continue
        if list(got) == list(ans) + [IGNORE] * len(prompt) or len(got) != len(prompt) + len(ans):
            raise AssertionError(f"labels 要和 input_ids（提示 + 回答）一样长、一一对应：提示 {prompt}、回答 {ans} 时应有 "
                                 f"{len(prompt) + len(ans)} 个")
        if list(got) == ans[1:] + [IGNORE] * (len(prompt) + 1) or list(got)[:len(prompt) - 1] == prompt[1:]:
            raise AssertionError("不用自己移位：transformers 的 LlamaForCausalLM(labels=...) 会在内部把标签左移一位")
        assert list(got) == right, f"提示 {prompt}、回答 {ans}：你的结果 {list(got)}，提示部分应全是 -100，回答部分是回答本身"


@exercise("ch16.q2", "LoRA parameters of r = 8 on q, k, v, o of every SmolLM2-135M layer")
def q2(answer) -> None:
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise AssertionError("请用一个数回答")
    hidden, kv, layers, r = 576, 192, 30, 8
    right = layers * r * ((hidden + hidden) * 2 + (hidden + kv) * 2)
    if math.isclose(answer, layers * r * (hidden + hidden) * 4):
        raise AssertionError("k_proj 和 v_proj 的输出不是 576：SmolLM2 用分组查询注意力，只有 3 个 KV 头 × 64 维")
    if math.isclose(answer, right / layers):
        raise AssertionError("这是一层的；SmolLM2 有 30 层")
    assert math.isclose(answer, right), f"{answer} 不对：每个目标层 r × (in + out)，四个投影，30 层"


@exercise("ch16.q3", "same_names(pred, gold): exact match of two 、-separated name lists, order ignored")
def q3(fn) -> None:
    cases = [("江泽民、李鹏", "李鹏、江泽民", True), ("江泽民", "江泽民、李鹏", False), ("无", "无", True),
             ("李鹏、李鹏", "李鹏", True), ("江泽民、李鹏", "江泽民、李鹏、朱镕基", False), ("乔石", "无", False)]
    for pred, gold, right in cases:
        got = _call(fn, pred, gold)
        if not isinstance(got, bool):
            raise AssertionError(f"请返回 True 或 False，而不是 {type(got).__name__}")
        assert got == right, f"same_names({pred!r}, {gold!r}) 应为 {right}，你的是 {got}"
