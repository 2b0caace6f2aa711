"""Exercises of chapter 7 (``chapters/07_tricks.ipynb``): the tricks of the Transformer."""

from __future__ import annotations

import math

import torch

from . import exercise


@exercise("ch07.q1", "写 make_mask(attention_mask)：(batch, seq) 的 1/0 -> 可加到 (batch, heads, seq, seq) 分数上的加性掩码，屏蔽填充的 key。")
def q1(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请传入一个函数。")
    if not callable(answer):
        raise TypeError(f"请传入一个函数（callable），而不是 {type(answer).__name__}")
    from ..attention import scaled_dot_product_attention

    am = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mask = answer(am.clone())
    if not isinstance(mask, torch.Tensor):
        raise AssertionError("函数应返回一个张量。")
    scores = torch.zeros(2, 2, 5, 5)
    try:
        full = torch.broadcast_shapes(mask.shape, scores.shape)
    except RuntimeError:
        raise AssertionError(f"掩码形状 {tuple(mask.shape)} 无法广播到分数的形状 (batch, heads, seq, seq) = (2, 2, 5, 5)。") from None
    if full != scores.shape:
        raise AssertionError(f"掩码广播后的形状是 {tuple(full)}，应当是 (2, 2, 5, 5)：不要增加维度。")
    m = (scores + mask.float())  # (2, 2, 5, 5)
    if torch.isnan(m).any():
        raise AssertionError("掩码里不应有 NaN。")
    if (m[..., :3].abs() > 1e-6).any() or (m[1].abs() > 1e-6).any():
        raise AssertionError("真实 token 对应的位置应当加 0。")
    if (m[0, :, :, 3:] > -1e4).any():
        raise AssertionError("每个 query 对填充 key（列）都应加一个很大的负数；检查掩码是否放在了 query（行）维上。")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 2, 5, 4, generator=g)
    out = scaled_dot_product_attention(x, x, x, attn_mask=mask.float())
    ref = scaled_dot_product_attention(x[:1, :, :3], x[:1, :, :3], x[:1, :, :3])
    if not torch.allclose(out[:1, :, :3], ref, atol=1e-5):
        raise AssertionError("真实 token 的注意力输出仍受到填充影响。")


@exercise("ch07.q2", "d_k = 256、各分量独立标准正态时，不缩放的 q·k 的标准差是多少？")
def q2(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个数。")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数，而不是 {answer!r}")
    if abs(answer - 256) < 1e-6:
        raise AssertionError("256 是方差；题目问的是标准差。")
    if abs(answer - 1) < 1e-6:
        raise AssertionError("标准差为 1 是缩放之后的结果；不缩放时呢？")
    if abs(answer - math.sqrt(256)) > 1e-3:
        raise AssertionError(f"{answer} 不对：q·k 是 256 个独立乘积之和，每个乘积方差为 1。")


@exercise("ch07.q3", "写 groups(model, weight_decay)：AdamW 参数分组，LN 与偏置不衰减（与 ftbook.optim.param_groups 同一规则）。")
def q3(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请传入一个函数。")
    if not callable(answer):
        raise TypeError(f"请传入一个函数（callable），而不是 {type(answer).__name__}")
    from ..optim import param_groups
    from ..tricks import TinyEncoder, TrickConfig

    model = TinyEncoder(TrickConfig(n_layers=2, d_model=16, n_heads=2, d_ff=32, norm="pre"))
    out = answer(model, 0.1)
    if not isinstance(out, (list, tuple)) or not all(isinstance(g, dict) and "params" in g for g in out):
        raise AssertionError("应返回一个列表，每个元素是带 'params' 键的字典（AdamW 的参数组）。")
    decay_of = {}
    for g in out:
        for p in g["params"]:
            if id(p) in decay_of:
                raise AssertionError("同一个参数出现在了两个分组里。")
            decay_of[id(p)] = g.get("weight_decay", 0.1)
    want_of = {id(p): g["weight_decay"] for g in param_groups(model, 0.1) for p in g["params"]}
    for name, p in model.named_parameters():
        if id(p) not in decay_of:
            raise AssertionError(f"参数 {name} 不在任何分组里。")
        want = want_of[id(p)]
        if abs(decay_of[id(p)] - want) > 1e-12:
            kind = "偏置" if name.endswith("bias") else "LayerNorm 的参数" if want == 0.0 else "权重矩阵/嵌入"
            raise AssertionError(f"参数 {name}（{kind}，形状 {tuple(p.shape)}）的 weight_decay 应为 {want}，"
                                 f"而不是 {decay_of[id(p)]}。")
    torch.optim.AdamW(out, lr=1e-3)  # must be accepted by the optimizer


@exercise("ch07.q4", "学习率 1e-2，get_scheduler(\"constant_with_warmup\", opt, 50, 150)：第 10 步（从 0 数）的学习率是多少？")
def q4(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个数。")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数，而不是 {answer!r}")
    from ..optim import SCHEDULES

    want = 1e-2 * SCHEDULES["constant_with_warmup"](10, num_warmup_steps=50, num_training_steps=150)  # 10/50
    if abs(answer - 1e-2) < 1e-9:
        raise AssertionError("1e-2 是预热结束（第 50 步）之后的学习率；第 10 步还在预热中。")
    if abs(answer - 1e-2 * 11 / 50) < 1e-9:
        raise AssertionError("差了一步：第 0 步的学习率是 0（与 transformers 相同），乘子是 step / num_warmup_steps。")
    if abs(answer - want) > 1e-9:
        raise AssertionError(f"{answer} 不对：预热期间乘子从 0 线性升到 1，为 step / num_warmup_steps。")
