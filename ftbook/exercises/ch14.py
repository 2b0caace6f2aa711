"""Exercises of chapter 14 (chapters/14_decoder_lm.ipynb): next-token labels, perplexity, GQA sizes."""

from __future__ import annotations

import math
import random

from . import exercise


@exercise("ch14.q1", "write next_token_labels(ids): the causal LM's labels of one sequence")
def q1(answer) -> None:
    from ..causal_lm import causal_lm_labels

    if not callable(answer):
        raise AssertionError("请传入一个函数 next_token_labels(ids)，而不是它的返回值")
    rng = random.Random(0)
    for n in (1, 2, 5, 17):
        ids = [rng.randrange(5, 4000) for _ in range(n)]
        got = answer(list(ids))
        if got is None:
            raise AssertionError("函数返回了 None：请返回一个与 ids 等长的整数列表")
        got = list(got)
        if len(got) != n:
            raise AssertionError(f"长度 {n} 的序列需要 {n} 个标签，你返回了 {len(got)} 个")
        if got == ids:
            raise AssertionError("标签和输入一模一样：这是 LlamaForCausalLM(labels=input_ids) 的约定，"
                                 "它在模型内部移位；本章在数据里移位，位置 t 的标签是第 t+1 个 token")
        if n > 1 and got[:-1] == ids[:-1] and got[-1] == -100:
            raise AssertionError("只把最后一个标签换成了 -100，还没有左移一位")
        assert got == causal_lm_labels(ids), f"ids={ids} 时返回了 {got}：位置 t 预测第 t+1 个 token，最后一个位置呢？"


@exercise("ch14.q2", "the perplexity of a loss of 3.0 nats per token")
def q2(answer) -> None:
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        raise AssertionError("请用一个数回答")
    if math.isclose(answer, 2 ** 3.0, rel_tol=1e-3):
        raise AssertionError("本书的交叉熵用自然对数（nats），困惑度是 e 的幂，不是 2 的幂")
    assert math.isclose(answer, math.exp(3.0), rel_tol=1e-3), f"{answer} 不对：困惑度 = exp(平均交叉熵)"


@exercise("ch14.q3", "weights of k_proj with hidden 256, 4 query heads, 2 key/value heads")
def q3(answer) -> None:
    if not isinstance(answer, int) or isinstance(answer, bool):
        raise AssertionError("请用一个整数回答（权重个数，没有偏置）")
    if answer == 256 * 256:
        raise AssertionError("这是 4 个键头（普通多头注意力）的大小；GQA 只有 2 个键/值头")
    assert answer == 256 * 2 * 64, f"{answer} 不对：head_dim = 256 / 4，k_proj 输出 num_key_value_heads × head_dim 维"
