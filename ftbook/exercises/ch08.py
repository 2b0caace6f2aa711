"""Checkers for the exercises of chapter 8 (``chapters/08_transformer.ipynb``).

* ``ch08.q1``: parameters of ONE BERT-base encoder layer (hidden 768, FFN 3072, with biases and
  both LayerNorms). Expected ``7087872`` (computed here from our :class:`EncoderLayer`).
* ``ch08.q2``: a function ``split_heads(x, num_heads)``: ``(batch, seq, hidden)`` ->
  ``(batch, heads, seq, hidden // heads)``, head ``h`` holding features ``h*d:(h+1)*d``.
* ``ch08.q3``: a function ``additive_mask(attention_mask)``: ``(batch, seq)`` of 1/0 ->
  float ``(batch, 1, 1, seq)``, 0 for real keys and a very negative number (<= -1e4) for padding.
"""

from __future__ import annotations

from . import exercise


def bert_base_layer_parameters() -> int:
    from ..transformer import EncoderConfig, EncoderLayer

    layer = EncoderLayer(EncoderConfig(vocab_size=8, hidden_size=768, num_attention_heads=12,
                                       intermediate_size=3072, num_hidden_layers=1))
    return sum(p.numel() for p in layer.parameters())


@exercise("ch08.q1")
def _q1(answer) -> None:
    """BERT-base 的一个编码器层（hidden 768，FFN 3072，含偏置与两个 LayerNorm）有多少参数？"""
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"请给出一个整数（参数个数），而不是 {type(answer).__name__}：{answer!r}")
    expected = bert_base_layer_parameters()
    if answer == expected:
        return
    h, f = 768, 3072
    hints = {
        4 * h * h + 2 * h * f: "你漏掉了偏置和 LayerNorm 的参数（每个 Linear 还有 out_features 个偏置）",
        4 * (h * h + h) + 2 * h * f + h + f: "两个 LayerNorm 各有 weight 和 bias，共 4 × 768 个参数",
        3 * (h * h + h) + 2 * h * f + h + f + 4 * h: "注意力有 4 个线性层：Q、K、V 和输出投影",
    }
    raise AssertionError(hints.get(answer, f"{answer:,} 不对。分别数：注意力 4 个 768×768 线性层、"
                                           f"FFN 768→3072→768、两个 LayerNorm；每个 Linear 都有偏置"))


def _tensor_fn(answer, name):
    if not callable(answer):
        raise TypeError(f"请把你写的函数 {name} 本身传进来（不要调用它），而不是 {type(answer).__name__}")


@exercise("ch08.q2")
def _q2(answer) -> None:
    """写 split_heads(x, num_heads)：(batch, seq, hidden) -> (batch, heads, seq, head_dim)。"""
    import torch

    _tensor_fn(answer, "split_heads")
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    out = answer(x, 4)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"split_heads 应返回张量，而不是 {type(out).__name__}")
    if tuple(out.shape) != (2, 4, 3, 2):
        raise AssertionError(f"形状应为 (batch, heads, seq, head_dim) = (2, 4, 3, 2)，你得到 {tuple(out.shape)}")
    want = x.view(2, 3, 4, 2).transpose(1, 2)
    if torch.equal(out, x.view(2, 4, 3, 2)):
        raise AssertionError("你直接 view 成了 (batch, heads, seq, d)：这会把不同位置的特征混进同一个头。"
                             "先 view(batch, seq, heads, d)，再 transpose(1, 2)")
    if not torch.equal(out, want):
        raise AssertionError("形状对了但数值不对：第 h 个头应取每个位置的特征 h*d:(h+1)*d")


@exercise("ch08.q3")
def _q3(answer) -> None:
    """写 additive_mask(attention_mask)：(batch, seq) 的 1/0 -> (batch, 1, 1, seq) 的加性掩码。"""
    import torch

    _tensor_fn(answer, "additive_mask")
    am = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    out = answer(am)
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError("additive_mask 应返回浮点张量（它要加到注意力分数上）")
    if tuple(out.shape) == (2, 1, 4, 1):
        raise AssertionError("你把掩码放在了查询（行）的维度上：softmax 对整行加常数不敏感，这正是第 7 章的 bug。"
                             "形状应为 (batch, 1, 1, seq)，遮住的是键")
    if tuple(out.shape) != (2, 1, 1, 4):
        raise AssertionError(f"形状应为 (batch, 1, 1, seq) = (2, 1, 1, 4)，你得到 {tuple(out.shape)}")
    flat = out[:, 0, 0, :]
    if not torch.all(flat[am == 1] == 0):
        raise AssertionError("真实 token 处的掩码应为 0（不改变分数）")
    if not torch.all(flat[am == 0] <= -1e4):
        raise AssertionError("填充处应是一个很大的负数（如 torch.finfo(torch.float32).min），让 softmax 后权重为 0")
