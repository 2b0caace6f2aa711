"""Checkpoints of lab 14 (``chapters/labs/lab14.ipynb``): the decoder's parts from scratch - the KV cache's
size under GQA, RoPE, causal grouped-query attention, nucleus (top-p) filtering, a whole attention layer
from its weights, and the diversity / likelihood trade-off of the sampling temperature. Chapter 14 teaches it."""

from __future__ import annotations

import contextlib
import functools
import json
import math

import torch
import torch.nn.functional as F

from . import exercise
from ._answers import callable_answer as _callable, returned as _returned

T1_BATCH, T1_LENGTH, T1_BYTES = 8, 128, 4  # a full batch of full-length float32 sequences
T6_PROMPT, T6_SAMPLES, T6_NEW = "这家酒店", 8, 40


def _tensor(value, shape, what: str) -> torch.Tensor:
    _returned(value, what)
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape):
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise AssertionError(f"应返回形状 {tuple(shape)} 的张量，你返回的是 {got}。")
    return value


# ---------------------------------------------------------------- task 1: the KV cache's size


def gpt_config() -> dict:
    """config.json of the book's shipped Chinese GPT (chapter 14)."""
    from ..causal_lm import SHIPPED_DIR

    return json.loads((SHIPPED_DIR / "config.json").read_text(encoding="utf-8"))


def kv_cache_bytes(config: dict, kv_heads: int, batch: int = T1_BATCH, length: int = T1_LENGTH,
                   bytes_per_value: int = T1_BYTES) -> int:
    return 2 * config["num_hidden_layers"] * batch * kv_heads * length * config["head_dim"] * bytes_per_value


@exercise("lab14.t1", "本书的中文 GPT，batch 8、128 个位置、float32：KV cache 占多少字节？"
          "按它的 GQA（2 组键值）和按普通多头注意力（4 组）各算一次。", level="easy")
def t1(answer) -> None:
    if answer is None:
        raise AssertionError('还没有作答：请给出一个字典 {"gqa": 字节数, "mha": 字节数}。')
    if not isinstance(answer, dict) or not {"gqa", "mha"} <= set(answer):
        raise TypeError(f'请给出一个字典，键为 "gqa" 和 "mha"，而不是 {type(answer).__name__}')
    cfg = gpt_config()
    for key, heads in (("gqa", cfg["num_key_value_heads"]), ("mha", cfg["num_attention_heads"])):
        got = answer[key]
        if got is None:
            raise AssertionError(f'"{key}" 还没有填。')
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise TypeError(f'"{key}" 应是一个数（字节数），而不是 {type(got).__name__}')
        truth = kv_cache_bytes(cfg, heads)
        if got == truth:
            continue
        name = "GQA" if key == "gqa" else "多头注意力"
        if key == "gqa" and got == kv_cache_bytes(cfg, cfg["num_attention_heads"]):
            raise AssertionError("GQA 的缓存按键值头的个数算（num_key_value_heads = 2），不是查询头的个数。")
        causes = [(2, "每层要缓存键 K 和值 V 两个张量"), (T1_BYTES, "题目问的是字节数，float32 每个数 4 字节"),
                  (cfg["num_hidden_layers"], f"{cfg['num_hidden_layers']} 层每层都有自己的缓存，不是一层"),
                  (T1_BATCH, f"batch 里有 {T1_BATCH} 条序列，不是一条")]
        missing = [why for factor, why in causes if got * factor == truth]
        if missing:
            raise AssertionError(f"{name}：少乘了一个因子——" + "；或者".join(missing) + "。")
        raise AssertionError(f"{name}：{got:,.0f} 不对。每层缓存 K、V 各一个 (batch, 键值头数, 位置数, head_dim) "
                             "的张量；从 config 读出层数、键值头数和 head_dim。")


# ---------------------------------------------------------------- task 2: RoPE


def rope_variant(x, position_ids, theta, *, interleaved=False, exponent=2, sign=1, ignore_positions=False):
    """RoPE (transformers' layout), or one of the typical mistakes, in the dtype of ``x``."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (exponent * torch.arange(d // 2, dtype=torch.float64) / d)  # (d/2,)
    pos = torch.arange(x.shape[-2])[None].expand(x.shape[0], -1) if ignore_positions else position_ids
    angles = pos.double()[..., None] * inv_freq  # (batch, seq, d/2)
    cos, sin = angles.cos().to(x.dtype)[:, None], angles.sin().to(x.dtype)[:, None]  # (batch, 1, seq, d/2)
    if interleaved:  # pairs (2i, 2i+1), GPT-J's layout
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - sign * x2 * sin, x2 * cos + sign * x1 * sin), dim=-1).flatten(-2)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((x1 * cos - sign * x2 * sin, x2 * cos + sign * x1 * sin), dim=-1)


def _hf_rope(x, position_ids, theta):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    d = x.shape[-1]
    cfg = LlamaConfig(hidden_size=d * x.shape[1], num_attention_heads=x.shape[1], head_dim=d, rope_theta=theta,
                      max_position_embeddings=64)
    cos, sin = LlamaRotaryEmbedding(cfg)(x, position_ids)
    return apply_rotary_pos_emb(x, x, cos, sin)[0]


def _t2_inputs():
    g = torch.Generator().manual_seed(142)
    x = torch.randn(2, 3, 6, 16, generator=g)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [3, 1, 4, 1, 5, 9]])  # the second row is no arange
    return x, positions


@exercise("lab14.t2", "从零写 my_rope(x, position_ids, theta)：按 transformers 的布局（第 i 维与第 i+d/2 维配对）"
          "旋转 (batch, heads, seq, head_dim) 的查询或键。", level="medium")
def t2(answer) -> None:
    _callable(answer, "def my_rope(x, position_ids, theta=10000.0): ...")
    x, positions = _t2_inputs()
    for theta in (10000.0, 500.0):
        want = _hf_rope(x, positions, theta)
        got = _tensor(answer(x.clone(), positions.clone(), theta), x.shape, "旋转后的 x").detach().float()
        if torch.allclose(got, want, atol=1e-4):
            continue
        wrong = {"配对方式不对：transformers（Llama）把第 i 维和第 i + d/2 维配成一对（rotate_half），"
                 "不是相邻的第 2i、2i+1 维（GPT-J 的布局）。": dict(interleaved=True),
                 "频率的指数不对：第 i 对的频率是 theta^(-2i/d)（i = 0 … d/2-1），你用了 theta^(-i/d)。": dict(exponent=1),
                 "旋转方向反了：x·cos + rotate_half(x)·sin，其中 rotate_half([x1, x2]) = [-x2, x1]。": dict(sign=-1),
                 "没有用 position_ids：每个 token 的角度是它的位置 m 乘以频率，位置不一定是 0, 1, 2, …"
                 "（左填充时就不是）。": dict(ignore_positions=True)}
        for hint, change in wrong.items():
            if torch.allclose(got, rope_variant(x.double(), positions, theta, **change).float(), atol=1e-4):
                raise AssertionError(hint)
        if theta != 10000.0:
            raise AssertionError("theta = 10000 时对了，换一个 theta 就不对：用参数 theta，不要写死 10000。")
        raise AssertionError(f"与 transformers 的 apply_rotary_pos_emb 相差 {(got - want).abs().max().item():.3g}：角度 = "
                             "位置 × theta^(-2i/d)，cos/sin 表的两半相同，x·cos + rotate_half(x)·sin。")
    xd = x.double().requires_grad_(True)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(143), dtype=torch.float64)
    _backward(answer(xd, positions, 10000.0), w)
    x2 = x.double().requires_grad_(True)
    (rope_variant(x2, positions, 10000.0) * w).sum().backward()
    if xd.grad is None or not torch.allclose(xd.grad, x2.grad, atol=1e-5):
        raise AssertionError("数值对了，梯度不对：旋转是线性的，梯度应是反方向的旋转；检查是否有 .detach() 或原地修改。")


def _backward(out, weights) -> None:
    """``(out * weights).sum().backward()``, with a message when ``out`` carries no gradient."""
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise AssertionError("数值对了，但输出没有梯度：不要在 torch.no_grad() 里计算，也不要 .detach() 或转成 numpy。")
    (out * weights).sum().backward()


# ---------------------------------------------------------------- task 3: causal grouped-query attention


def gqa_variant(q, k, v, *, tiled=False, causal=True, diagonal=True, scale=None):
    """Causal GQA attention (query head h uses kv head h // n_rep), or one of the typical mistakes."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = ((t.repeat(1, n_rep, 1, 1) if tiled else t.repeat_interleave(n_rep, dim=1)) for t in (k, v))
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)  # (b, h, s, s)
    if causal:
        s = q.shape[-2]
        allowed = torch.ones(s, s, dtype=torch.bool).tril(0 if diagonal else -1)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ v


@contextlib.contextmanager
def _no_sdpa():
    """Make F.scaled_dot_product_attention fail while the reader's function runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("请自己写 softmax(QKᵀ/√d + 掩码)·V，不要调用 F.scaled_dot_product_attention。")

    saved = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = refuse
    try:
        yield
    finally:
        F.scaled_dot_product_attention = saved


@exercise("lab14.t3", "从零写 gqa_attention(q, k, v)：因果的分组查询注意力，q 有 H 个头、k/v 有 H/n_rep 个头，"
          "值与梯度都与 scaled_dot_product_attention 一致。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def gqa_attention(q, k, v): ...")
    g = torch.Generator().manual_seed(144)
    q = torch.randn(2, 6, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, 2, 5, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    want = F.scaled_dot_product_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), is_causal=True)
    with _no_sdpa():
        out = answer(q, k, v)
    got = _tensor(out, want.shape, "(batch, 查询头数, seq, head_dim) 的张量")
    if torch.isnan(got).any():
        raise AssertionError("输出里有 NaN：第一个位置的一整行都被遮住了。因果掩码让位置 t 看见 ≤ t 的位置，包括它自己。")
    if not torch.allclose(got, want, atol=1e-10):
        wrong = {"分组不对：查询头 h 应使用第 h // n_rep 组键值（repeat_interleave，相邻的查询头共用一组），"
                 "你用了 repeat（把键值头整体平铺）。": dict(tiled=True),
                 "没有因果掩码：位置 t 不能看见 t 之后的位置。": dict(causal=False),
                 "缩放不对：分数要除以 √head_dim，你除以了 head_dim。": dict(scale=1 / q.shape[-1]),
                 "忘了缩放：分数要除以 √head_dim。": dict(scale=1.0)}
        for hint, change in wrong.items():
            if torch.allclose(got, gqa_variant(q, k, v, **change), atol=1e-10):
                raise AssertionError(hint)
        raise AssertionError(f"与 scaled_dot_product_attention 相差 {(got - want).abs().max().item():.3g}：把被遮住的分数"
                             "设为 -inf 再 softmax（不是 softmax 之后再置零）。")
    w = torch.randn(want.shape, generator=g, dtype=torch.float64)
    ref = torch.autograd.grad((want * w).sum(), (q, k, v))
    _backward(got, w)
    for name, t, r in (("q", q, ref[0]), ("k", k, ref[1]), ("v", v, ref[2])):
        if t.grad is None or not torch.allclose(t.grad, r, atol=1e-10):
            raise AssertionError(f"数值对了，对 {name} 的梯度不对：检查是否有 .detach() 或原地修改了输入。")


# ---------------------------------------------------------------- task 4: top-p


def _t4_rows():
    """Random logits rows, keeping only rows where no cumulative probability lies within 1e-4 of a p."""
    g = torch.Generator().manual_seed(145)
    rows = torch.randn(60, 12, generator=g, dtype=torch.float64) * 2
    cum = rows.softmax(-1).sort(-1, descending=True).values.cumsum(-1)
    far = torch.ones(len(rows), dtype=torch.bool)
    for p in T4_PS:
        far &= ((cum - p).abs() > 1e-4).all(-1)
    return rows[far][:24].float()


T4_PS = (0.05, 0.5, 0.8, 0.95)


def top_p_variant(logits, p, *, keep_crossing=True, descending=True, keep_one=True):
    order = logits.argsort(-1, descending=descending)
    probs = logits.softmax(-1).gather(-1, order)
    before = probs.cumsum(-1) - probs  # probability mass above each token
    keep_sorted = before < p if keep_crossing else probs.cumsum(-1) <= p
    if keep_one:
        keep_sorted[..., 0] = True
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


@exercise("lab14.t4", "从零写 my_top_p(logits, p)：保留累计概率达到 p 的最小的一组最可能的 token（至少一个），"
          "其余设为 -inf，与 TopPLogitsWarper 一致。", level="easy")
def t4(answer) -> None:
    from ..generation import top_p_filter

    _callable(answer, "def my_top_p(logits, p): ...")
    if answer is top_p_filter:
        raise AssertionError("这是 ftbook.generation.top_p_filter 本身：请自己写。")
    rows = _t4_rows()
    for p in T4_PS:
        got = _tensor(answer(rows.clone(), p), rows.shape, "与 logits 同形状的张量")
        want = top_p_filter(rows, p)
        kept_ok = torch.equal(torch.isinf(got), torch.isinf(want))
        if kept_ok and torch.equal(got[~torch.isinf(got)], want[~torch.isinf(want)]):
            continue
        if kept_ok:
            raise AssertionError("保留的 token 对了，但保留下来的值应是原来的 logits（不是概率、不是重新归一化的值）。")
        if torch.equal(got == 0, torch.isinf(want)):
            raise AssertionError("被过滤的位置要设为 -inf（softmax 后概率为 0），不是 0：logit 为 0 的 token 仍有概率。")
        wrong = {"穿过阈值的那个 token 也要保留：保留的集合的累计概率要 ≥ p（最小的这样一组），"
                 "你只保留了累计概率 ≤ p 的 token。": dict(keep_crossing=False),
                 "排序方向反了：从最可能的 token 开始累加。": dict(descending=False),
                 "概率最高的 token 永远要保留（即使它一个就超过了 p）。": dict(keep_crossing=False, keep_one=False)}
        for hint, change in wrong.items():
            if torch.equal(torch.isinf(got), torch.isinf(top_p_variant(rows, p, **change))):
                raise AssertionError(hint)
        n_got, n_want = (~torch.isinf(got)).sum(-1), (~torch.isinf(want)).sum(-1)
        raise AssertionError(f"p = {p} 时保留的 token 不对（每行保留的个数应为 {n_want[:6].tolist()}…，你的是 "
                             f"{n_got[:6].tolist()}…）：按概率从高到低排序，保留到累计概率第一次 ≥ p 为止。")


# ---------------------------------------------------------------- task 5: one attention layer from its weights


def t5_layer(theta: float = 10000.0, seed: int = 146):
    """A random float64 DecoderAttention (hidden 32, 4 query heads, 2 kv heads, head_dim 12), its inputs,
    and the reference output computed by the module itself."""
    from ..decoder import DecoderAttention, DecoderConfig, RotaryEmbedding, decoder_attention_mask

    cfg = DecoderConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=12, max_position_embeddings=32,
                        rope_theta=theta)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        attn = DecoderAttention(cfg).double()
        x = torch.randn(2, 7, cfg.hidden_size, dtype=torch.float64)
    positions = torch.arange(7)[None].expand(2, 7)
    cos, sin = RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, theta)(positions, torch.float64)
    return attn, x, positions, (cos, sin, decoder_attention_mask(None, 7, 7))


def _t5_variants(attn, x, positions, theta) -> dict[str, torch.Tensor]:
    b, s, _ = x.shape
    heads, kv, d = attn.num_heads, attn.num_kv_heads, attn.head_dim

    def run(rope_v=False, rope=True, transpose=True, o_proj=True):
        def split(t, n):
            return t.view(b, s, n, d).transpose(1, 2) if transpose else t.view(b, n, s, d)

        q, k, v = split(attn.q_proj(x), heads), split(attn.k_proj(x), kv), split(attn.v_proj(x), kv)
        if rope:
            q, k = rope_variant(q, positions, theta), rope_variant(k, positions, theta)
        if rope_v:
            v = rope_variant(v, positions, theta)
        ctx = gqa_variant(q, k, v).transpose(1, 2).reshape(b, s, heads * d)
        return attn.o_proj(ctx) if o_proj else ctx

    return {"RoPE 只旋转查询和键，不旋转值 V：位置信息只需要进入注意力分数 q·k。": run(rope_v=True),
            "忘了 RoPE：查询和键要按位置旋转，否则注意力不知道词序（只剩因果掩码）。": run(rope=False),
            "拆头的方式不对：q_proj(x) 的形状是 (batch, seq, 头数 × head_dim)，要先 view 成 (batch, seq, 头数, head_dim)"
            "再 transpose(1, 2)，不能直接 view 成 (batch, 头数, seq, head_dim)。": run(transpose=False)}


@exercise("lab14.t5", "用 DecoderAttention 的四个投影矩阵、你的 my_rope 和 gqa_attention 写 my_attention(attn, x, "
          "position_ids, theta)：输出与模块自己的 forward 一致。", level="hard")
def t5(answer) -> None:
    _callable(answer, "def my_attention(attn, x, position_ids, theta): ...")
    theta = 10000.0
    attn, x, positions, (cos, sin, mask) = t5_layer(theta)
    want = attn(x, cos, sin, mask)[0]
    x_in = x.clone().requires_grad_(True)
    try:
        out = answer(attn, x_in, positions.clone(), theta)
    except RuntimeError as exc:  # shape errors of view / matmul
        raise AssertionError(f"形状出错（{str(exc)[:120]}）：q 有 {attn.num_heads} 个头、k 和 v 有 {attn.num_kv_heads} 个头，"
                             f"head_dim = {attn.head_dim}；合并头之后是 (batch, seq, {attn.num_heads * attn.head_dim})。") from None
    _returned(out, f"形状 {tuple(want.shape)} 的张量")
    if isinstance(out, tuple):
        raise AssertionError("只返回输出张量 (batch, seq, hidden)，不要返回 (输出, (k, v))。")
    if isinstance(out, torch.Tensor) and out.shape[-1] == attn.num_heads * attn.head_dim != want.shape[-1]:
        raise AssertionError(f"最后一维是 {out.shape[-1]} = 头数 × head_dim：合并头之后还要乘输出投影 o_proj，回到 hidden = {want.shape[-1]}。")
    got = _tensor(out, want.shape, "(batch, seq, hidden) 的张量")
    if not torch.allclose(got.double(), want, atol=1e-6):
        for hint, wrong in _t5_variants(attn, x, positions, theta).items():
            if torch.allclose(got.double(), wrong, atol=1e-6):
                raise AssertionError(hint)
        raise AssertionError(f"与 DecoderAttention.forward 相差 {(got.double() - want).abs().max().item():.3g}。先确认任务 2、3 "
                             "已通过；然后是：投影 → 拆头 → 旋转 q、k → 分组因果注意力 → 合并头 → o_proj。")
    w = torch.randn(want.shape, generator=torch.Generator().manual_seed(147), dtype=torch.float64)
    _backward(got, w)
    x_ref = x.clone().requires_grad_(True)
    (ref_grad,) = torch.autograd.grad((attn(x_ref, cos, sin, mask)[0] * w).sum(), x_ref)
    if x_in.grad is None or not torch.allclose(x_in.grad, ref_grad, atol=1e-6):
        raise AssertionError("输出对了，对 x 的梯度不对：检查是否有 .detach()、torch.no_grad() 或原地修改。")


# ---------------------------------------------------------------- task 6: temperature, diversity, likelihood


@functools.lru_cache(maxsize=1)
def t6_model():
    """The shipped Chinese GPT and its tokenizer (verified against MANIFEST.json), loaded once."""
    from ..causal_lm import pretrained_chinese_gpt

    return pretrained_chinese_gpt()


def t6_reference(model, tokenizer, temperature: float, seed: int, *, per_row=False, nll_temperature=1.0,
                 shift=True, with_prompt=False) -> tuple[float, float]:
    """(distinct-2, mean NLL per new token under the model) of T6_SAMPLES continuations, or a mistake."""
    from ..generation import generate

    prompt = [tokenizer.cls_token_id] + tokenizer(T6_PROMPT, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt] * T6_SAMPLES)
    out = generate(model, ids, T6_NEW, do_sample=True, temperature=temperature,
                   generator=torch.Generator().manual_seed(seed))
    new = out[:, len(prompt):].tolist()
    pairs = [list(zip(r[:-1], r[1:])) for r in new]
    if per_row:
        distinct = sum(len(set(p)) / len(p) for p in pairs) / len(pairs)
    else:
        distinct = len({x for p in pairs for x in p}) / sum(len(p) for p in pairs)
    with torch.no_grad():
        logp = (model(out).float() / nll_temperature).log_softmax(-1)  # (n, len, vocab)
    start = 0 if with_prompt else len(prompt) - 1
    if shift:
        picked = logp[:, start:-1].gather(-1, out[:, start + 1:, None])  # position t predicts token t + 1
    else:
        picked = logp[:, start + 1:].gather(-1, out[:, start + 1:, None])
    return distinct, float(-picked.mean())


@exercise("lab14.t6", "写 sample_stats(model, tokenizer, temperature, seed)：按规定采样 8 条续写，返回 (distinct-2, "
          "模型给这些新 token 的平均负对数似然)。", level="medium")
def t6(answer) -> None:
    _callable(answer, "def sample_stats(model, tokenizer, temperature, seed): ...")
    model, tok = t6_model()
    temperature, seed = 0.7, 3
    got = answer(model, tok, temperature, seed)
    _returned(got, "(distinct2, nll) 两个数")
    try:
        distinct, nll = (float(v) for v in got)
    except (TypeError, ValueError):
        raise AssertionError(f"应返回两个数 (distinct2, nll)，你返回的是 {got!r:.60}。") from None
    want = t6_reference(model, tok, temperature, seed)
    d_ok, n_ok = math.isclose(distinct, want[0], abs_tol=1e-6), math.isclose(nll, want[1], abs_tol=1e-3)
    if d_ok and n_ok:
        return
    if not d_ok:
        if math.isclose(distinct, t6_reference(model, tok, temperature, seed, per_row=True)[0], abs_tol=1e-6):
            raise AssertionError("distinct-2 要把 8 条续写的二元组合在一起算：不同二元组的个数 / 二元组的总数，"
                                 "不是每条算一次再平均（那样看不出不同续写之间的重复）。")
        raise AssertionError(f"distinct-2 = {distinct:.4f} 不对（应为 {want[0]:.4f}）：用 generation.generate、"
                             "do_sample=True、给定的 temperature 和 torch.Generator().manual_seed(seed)，"
                             f"不加 top_k / eos，生成 {T6_NEW} 个新 token；只数新 token 的相邻二元组。")
    mistakes = {"负对数似然要在温度 1 下算（模型本身的分布），不是除以采样温度之后的分布。": dict(nll_temperature=temperature),
                "错了一位：位置 t 的 logits 预测的是第 t+1 个 token。": dict(shift=False),
                f"只对 {T6_NEW} 个新 token 求平均，不包括提示里的 token。": dict(with_prompt=True)}
    for hint, change in mistakes.items():
        if math.isclose(nll, t6_reference(model, tok, temperature, seed, **change)[1], abs_tol=1e-3):
            raise AssertionError(hint)
    raise AssertionError(f"负对数似然 = {nll:.4f} 不对（应为 {want[1]:.4f}）：把整段（提示 + 新 token）喂给模型，"
                         "取 log_softmax，在预测每个新 token 的位置取出它的对数概率，取负再平均。")
