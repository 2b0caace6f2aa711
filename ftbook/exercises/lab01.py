"""Checkpoints of lab 1 (``chapters/labs/lab01.ipynb``): counting BERT's parameters, gradients through an
RNN, mean pooling and self-attention from scratch. Chapter 1 teaches it."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import exercise
from ._answers import callable_answer as _callable

T1_VOCAB = 21128  # bert-base-chinese: vocabulary of the `full` profile's Chinese model
RNN_W, RNN_B, RNN_T = 0.9, 0.1, 12  # task 3: h_t = tanh(w * h_{t-1} + x_t + b), h_0 = 0


def _int(answer, what: str) -> int:
    if answer is None:
        raise AssertionError(f"还没有作答：请给出{what}（一个整数）。")
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float, np.integer)) or answer != int(answer):
        raise TypeError(f"请给出一个整数（{what}），而不是 {type(answer).__name__}：{answer!r}")
    return int(answer)


def _not_none(got, name: str) -> None:
    if got is None:
        raise AssertionError(f"{name} 返回了 None：还没有写完，请完成 # TODO 处并 return 结果。")


def _meta_count(module_fn) -> int:
    """Parameters of the module ``module_fn()`` builds, on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return sum(p.numel() for p in module_fn().parameters())


@exercise("lab01.t1", "bert-base-chinese（词表 21128、hidden 768、最多 512 个位置、2 种句子类型）的嵌入层"
          "一共有多少个参数？先手算，再用代码验证。", level="easy")
def t1(answer) -> None:
    a = _int(answer, "嵌入层参数个数")
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEmbeddings

    cfg = BertConfig(vocab_size=T1_VOCAB)
    h, pos, types = cfg.hidden_size, cfg.max_position_embeddings, cfg.type_vocab_size
    truth = _meta_count(lambda: BertEmbeddings(cfg))
    if a == truth:
        return
    if a == truth - 2 * h:
        raise AssertionError("差 2×768：嵌入层最后还有一个 LayerNorm（γ 与 β 各 768 个）。")
    if a == truth - pos * h - types * h - 2 * h or a == T1_VOCAB * h:
        raise AssertionError("你只算了词嵌入；BERT 的嵌入层还有位置嵌入（512×768）、句子类型嵌入（2×768）和 LayerNorm。")
    if a == truth - pos * h or a == truth - pos * h - 2 * h:
        raise AssertionError("少了位置嵌入：每个位置（最多 512 个）一个 768 维向量。")
    if a == truth - types * h or a == truth - types * h - 2 * h:
        raise AssertionError("少了句子类型（token type）嵌入：2 种类型，各一个 768 维向量。")
    if a == 30522 * h + pos * h + types * h + 2 * h:
        raise AssertionError("这是英文 bert-base-uncased 的词表（30,522）；中文 BERT 的词表是 21,128。")
    raise AssertionError(f"{a:,} 不对：嵌入层 = 词嵌入 + 位置嵌入 + 句子类型嵌入（都是 行数×768）+ LayerNorm（2×768）。")


def _t2_configs():
    from transformers import BertConfig

    yield BertConfig(vocab_size=97, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=40, max_position_embeddings=33, type_vocab_size=3)
    yield BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=3, num_attention_heads=8,
                     intermediate_size=256, max_position_embeddings=128, type_vocab_size=2)
    yield BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)


@exercise("lab01.t2", "写一个函数 bert_param_count(config)：只用 config 里的数，算出 BertModel(config)"
          "（含 pooler）的参数总数。", level="medium")
def t2(answer) -> None:
    _callable(answer, "def bert_param_count(config): ...")
    from transformers import BertModel

    for cfg in _t2_configs():
        got = answer(cfg)
        _not_none(got, "bert_param_count")
        got = _int(got, "bert_param_count(config) 的返回值")
        truth = _meta_count(lambda: BertModel(cfg))
        if got == truth:
            continue
        h, L, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
        where = f"（config：hidden {h}、{L} 层、intermediate {inter}、词表 {cfg.vocab_size}）"
        diff = truth - got
        if diff == h * h + h:
            raise AssertionError(f"差 {diff:,} = h²+h：BertModel 默认带 pooler（一个 h×h 的线性层加偏置）。{where}")
        if diff == 2 * h * (2 * L + 1):
            raise AssertionError(f"差 {diff:,}：少了 LayerNorm（嵌入层 1 个 + 每层 2 个，各 2h 个参数）。{where}")
        if diff == 2 * h * 2 * L:
            raise AssertionError(f"差 {diff:,}：少了每层的 2 个 LayerNorm（注意力之后、前馈之后）。{where}")
        if diff == 2 * h:
            raise AssertionError(f"差 2h：嵌入层之后也有一个 LayerNorm。{where}")
        if diff == L * (4 * h + inter + h) + h or diff == L * (4 * h + inter + h):
            raise AssertionError(f"差 {diff:,}：少了线性层的偏置（Q、K、V、输出、前馈两层{'、pooler' if diff % L else ''}）。{where}")
        if inter != 4 * h and diff == L * (2 * h + 1) * (inter - 4 * h):
            raise AssertionError(f"差 {diff:,}：前馈层的宽度是 config.intermediate_size，不一定是 4h。{where}")
        if diff == cfg.max_position_embeddings * h or diff == cfg.type_vocab_size * h:
            raise AssertionError(f"差 {diff:,}：少了位置嵌入或句子类型嵌入。{where}")
        raise AssertionError(f"得到 {got:,}，应为 {truth:,}（差 {diff:+,}）{where}。逐块数：嵌入层、"
                             "每层的注意力（Q/K/V/输出 4 个 h×h 线性层）与前馈（h→intermediate→h）、LayerNorm、pooler。")


def rnn_data() -> torch.Tensor:
    """Task 3: the inputs x_1..x_T (float64) of the scalar RNN h_t = tanh(w h_{t-1} + x_t + b)."""
    g = torch.Generator().manual_seed(1)
    return 0.5 * torch.randn(RNN_T, generator=g, dtype=torch.float64)


def _rnn_grads() -> tuple[list[float], list[float]]:
    x = rnn_data().requires_grad_()
    h = torch.zeros((), dtype=torch.float64)
    hs = []
    for t in range(RNN_T):
        h = torch.tanh(RNN_W * h + x[t] + RNN_B)
        hs.append(h)
    h.backward()
    return x.grad.tolist(), [v.item() for v in hs]


@exercise("lab01.t3", "标量 RNN h_t = tanh(0.9·h_{t-1} + x_t + 0.1)（h_0 = 0，x = rnn_data()）："
          "给出 ∂h_T/∂x_t，t = 1..T（T 个数）。", level="easy")
def t3(answer) -> None:
    if answer is None:
        raise AssertionError(f"还没有作答：请给出 {RNN_T} 个数的列表（t = 1..{RNN_T} 的 ∂h_T/∂x_t）。")
    try:
        vals = [float(v) for v in answer]
    except TypeError:
        raise TypeError(f"请给出 {RNN_T} 个数（列表或一维张量），而不是 {type(answer).__name__}") from None
    if len(vals) != RNN_T:
        raise AssertionError(f"应有 {RNN_T} 个数（每个输入 x_t 一个），你给了 {len(vals)} 个。")
    truth, hs = _rnn_grads()
    close = lambda ref: all(math.isclose(v, r, rel_tol=1e-4, abs_tol=1e-10) for v, r in zip(vals, ref))  # noqa: E731
    if close(truth):
        return
    if close(truth[::-1]):
        raise AssertionError("顺序反了：第一个数应是 ∂h_T/∂x_1（离末尾最远、最小的那个）。")
    if close([RNN_W ** (RNN_T - 1 - t) for t in range(RNN_T)]):
        raise AssertionError("你只连乘了 w：每一步还要乘 tanh 的导数 1 − h_s²。")
    if close([RNN_W ** (RNN_T - 1 - t) * (1 - hs[t] ** 2) for t in range(RNN_T)]):
        raise AssertionError("只乘了 x_t 那一步的 tanh 导数；之后每一步 s 都要再乘 w·(1 − h_s²)。")
    if abs(vals[-1] - (1 - hs[-1] ** 2)) > 1e-4:
        raise AssertionError(f"最后一个数 ∂h_T/∂x_T 应为 1 − h_T² ≈ {1 - hs[-1] ** 2:.4f}，你的是 {vals[-1]:.4f}："
                             "检查 h_0 = 0、偏置 b = 0.1 以及是否对 h_T（而不是所有 h_t 之和）求导。")
    raise AssertionError("数值不对：用 autograd 对最后一个 h_T 求导（x 设 requires_grad），或按 "
                         "∂h_T/∂x_t = (1−h_t²)·∏_{s>t} w(1−h_s²) 连乘。")


def _fit(g: torch.Tensor, lo: int, hi: int) -> float:
    d = np.arange(lo, hi + 1)
    return float(np.exp(np.polyfit(d, np.log(g[lo:hi + 1].numpy()), 1)[0]))


@exercise("lab01.t4", "写 decay_factor(g, lo=1, hi=40)：在距离 lo..hi（含两端）上拟合 log g = a + 距离·log r，"
          "返回每步的衰减因子 r。", level="medium")
def t4(answer) -> None:
    _callable(answer, "def decay_factor(g, lo=1, hi=40): ...")
    gen = torch.Generator().manual_seed(14)
    for r, lo, hi in ((0.45, 1, 40), (0.8, 2, 30), (0.97, 1, 100)):
        d = torch.arange(128, dtype=torch.float64)
        g = 3.0 * r ** d * torch.exp(0.3 * torch.randn(128, generator=gen, dtype=torch.float64))
        g[0] = 100.0  # distance 0 is the output's own input: not part of the trend
        truth = _fit(g, lo, hi)
        got = answer(g.clone(), lo=lo, hi=hi)
        _not_none(got, "decay_factor")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
            raise TypeError(f"decay_factor 应返回一个数（float），而不是 {type(got).__name__}")
        got = float(got)
        if math.isclose(got, truth, rel_tol=1e-4):
            continue
        slope = math.log(truth)
        if math.isclose(got, slope, rel_tol=1e-3):
            raise AssertionError(f"你返回的是对数尺度上的斜率 log r ≈ {slope:.4f}；衰减因子是 r = exp(斜率)。")
        if math.isclose(got, math.exp(slope / math.log(10)), rel_tol=1e-3):
            raise AssertionError("用 log10 拟合的斜率要用 10**斜率 还原，不能用 exp；或者统一用自然对数。")
        if math.isclose(got, _fit(g, 0, hi), rel_tol=1e-4) or math.isclose(got, _fit(g, lo - 1, hi), rel_tol=1e-4):
            raise AssertionError("拟合里混进了距离 0（或 lo−1）：距离要从 lo 开始。")
        if math.isclose(got, _fit(g, lo, hi - 1), rel_tol=1e-4):
            raise AssertionError("漏了距离 hi：区间 lo..hi 两端都包含（切片写 g[lo:hi + 1]）。")
        if math.isclose(got, _fit(g, 1, 40), rel_tol=1e-4):
            raise AssertionError(f"lo={lo}、hi={hi} 时你仍然拟合了 1..40：请使用参数 lo 和 hi。")
        raise AssertionError(f"r={r}、区间 {lo}..{hi} 时得到 {got:.4f}，应为 {truth:.4f}：对 log g 做一次线性拟合"
                             "（np.polyfit(距离, log g, 1)），斜率取 exp。")


@exercise("lab01.t5", "写 mean_pool(last_hidden_state, attention_mask)：只对真实 token（mask=1）取平均，"
          "再做 L2 归一化，返回 (batch, hidden)。", level="medium")
def t5(answer) -> None:
    _callable(answer, "def mean_pool(last_hidden_state, attention_mask): ...")
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(4, 7, 16, generator=g)
    mask = torch.tensor([[1] * n + [0] * (7 - n) for n in (7, 3, 1, 5)])
    got = answer(hidden.clone(), mask.clone())
    _not_none(got, "mean_pool")
    if not isinstance(got, torch.Tensor):
        raise TypeError(f"mean_pool 应返回张量，而不是 {type(got).__name__}")
    if tuple(got.shape) != (4, 16):
        raise AssertionError(f"形状应为 (batch, hidden) = (4, 16)，得到 {tuple(got.shape)}：沿序列维（dim=1）求平均。")
    m = mask.unsqueeze(-1).float()
    mean = (hidden * m).sum(1) / m.sum(1)
    truth = F.normalize(mean, dim=-1)
    if torch.allclose(got, truth, atol=1e-5):
        return
    if torch.allclose(got, F.normalize(hidden.mean(1), dim=-1), atol=1e-5):
        raise AssertionError("填充位置也被平均进去了：先乘 attention_mask，再除以每行真实 token 的个数。")
    if torch.allclose(got, mean, atol=1e-5):
        raise AssertionError("平均对了，但还要 L2 归一化（F.normalize(..., dim=-1)），余弦相似度才等于点积。")
    if torch.allclose(got.norm(dim=-1), torch.ones(4), atol=1e-4):
        raise AssertionError("向量已归一化，但方向不对：检查掩码是否按 (batch, seq, 1) 广播、沿 dim=1 求和。")
    raise AssertionError("数值不对：句向量 = Σ_t mask_t·h_t / Σ_t mask_t，再除以它的 L2 范数。")


def _mha_reference(x, mha, *, scale=True, softmax_dim=-1, out_proj=True, split_heads=True):
    """nn.MultiheadAttention(batch_first=True) self-attention, and the typical wrong variants of it."""
    b, n, d = x.shape
    heads = mha.num_heads if split_heads else 1
    dh = d // heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, heads, dh).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / (math.sqrt(dh) if scale else 1.0)
    out = (scores.softmax(dim=softmax_dim) @ v).transpose(1, 2).reshape(b, n, d)
    return mha.out_proj(out) if out_proj else out


@exercise("lab01.t6", "不调用 mha.forward，用 mha 的权重从零实现多头自注意力 my_self_attention(x, mha)："
          "值与梯度都与 mha(x, x, x)[0] 一致。", level="hard")
def t6(answer) -> None:
    _callable(answer, "def my_self_attention(x, mha): ...")
    state = torch.random.get_rng_state()  # the fresh layers below are seeded; the caller's RNG is restored
    try:
        g = torch.Generator().manual_seed(16)
        for d, heads, n in ((16, 4, 5), (12, 3, 7)):
            torch.manual_seed(d)
            mha = torch.nn.MultiheadAttention(d, heads, batch_first=True).double().eval()
            torch.nn.init.normal_(mha.in_proj_bias, std=0.5)
            x = torch.randn(2, n, d, generator=g, dtype=torch.float64)
            r = torch.randn(2, n, d, generator=g, dtype=torch.float64)
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            got = answer(xa, mha)
            _not_none(got, "my_self_attention")
            if not isinstance(got, torch.Tensor) or got.shape != x.shape:
                raise AssertionError(f"应返回与 x 同形状 {tuple(x.shape)} 的张量（只要输出，不要注意力权重）。")
            want = mha(xb, xb, xb, need_weights=False)[0]
            if not torch.allclose(got, want, atol=1e-8):
                for kw, msg in (({"scale": False}, "忘了除以 √d_head：分数要缩放，否则 softmax 会过于尖锐。"),
                                ({"softmax_dim": -2}, "softmax 的维度错了：每个查询（行）对所有键归一化，dim=-1。"),
                                ({"out_proj": False}, "最后还有一个输出投影 mha.out_proj（权重与偏置）。"),
                                ({"split_heads": False}, f"没有分头：把 {d} 维拆成 {heads} 个头，每头 {d // heads} 维，"
                                                         "分别做注意力再拼接。")):
                    if torch.allclose(got, _mha_reference(x, mha, **kw), atol=1e-8):
                        raise AssertionError(msg)
                raise AssertionError(f"d={d}、{heads} 个头时输出与 nn.MultiheadAttention 不同（最大误差 "
                                     f"{(got - want).abs().max().item():.3g}）。in_proj_weight 的三块依次是 W_q、W_k、W_v。")
            if not got.requires_grad:
                raise AssertionError("返回值不能求导：不要用 .detach()、.item() 或 numpy。")
            (got * r).sum().backward()
            (want * r).sum().backward()
            if xa.grad is None or not torch.allclose(xa.grad, xb.grad, atol=1e-8):
                raise AssertionError("输出对了，但对 x 的梯度不同：是否对 x 做了原地修改或 detach？")
    finally:
        torch.random.set_rng_state(state)
