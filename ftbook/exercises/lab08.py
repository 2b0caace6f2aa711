"""Checkpoints of lab 8 (``chapters/labs/lab08.ipynb``): the BERT encoder from its parts - attention
memory, exact GELU, embeddings, loading a real layer's weights, reading attention heads and the whole
encoder forward against ``transformers.BertModel``. Chapter 8 teaches it."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from . import exercise
from ._answers import number as _number, callable_answer as _callable, returned as _returned

T1 = {"batch": 32, "seq": 512, "heads": 12, "hidden": 768}  # bert-base at its longest, float32
T4_LAYER = 2  # the MiniLM layer whose weights task 4 copies
T5_SENTENCE = "The old man the boats, while the young sailors watch the river from the bridge."
T6_SENTENCES = ["Attention lets every token look at every other token in the sentence.",
                "Padding must not change anything.",
                "A short one."]


@functools.lru_cache(maxsize=1)
def minilm():
    """The packaged all-MiniLM-L6-v2: ``(BertModel (eager attention, eval), tokenizer)``, loaded once."""
    from transformers import AutoTokenizer, BertModel

    from ..resources import from_pretrained, minilm_path

    model = from_pretrained(BertModel, str(minilm_path()), attn_implementation="eager").eval()
    return model, from_pretrained(AutoTokenizer, str(minilm_path()))


def _tensor(got, shape, what: str) -> None:
    _returned(got, what)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(shape):
        seen = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(f"应返回形状 {tuple(shape)} 的张量，得到 {seen}。")


@exercise("lab08.t1", "batch 32、seq 512、12 个头：显式注意力在一层里物化的分数矩阵 (batch, heads, seq, seq) "
          "用 float32 存储要多少 MiB？", level="easy")
def t1(answer) -> None:
    a = _number(answer, "MiB 数")
    b, s, h, hid = T1["batch"], T1["seq"], T1["heads"], T1["hidden"]
    elems = b * h * s * s
    truth = elems * torch.finfo(torch.float32).bits / 8 / 2**20
    if math.isclose(a, truth, rel_tol=1e-3):
        return
    if math.isclose(a, elems * 4 / 1e6, rel_tol=1e-3):
        raise AssertionError("你用的是 MB（10⁶ 字节）；MiB 是 2²⁰ = 1,048,576 字节。")
    if math.isclose(a, b * s * s * 4 / 2**20, rel_tol=1e-3):
        raise AssertionError("漏掉了头数：每个头都有自己的 (seq, seq) 分数矩阵。")
    if math.isclose(a, elems / 2**20, rel_tol=1e-3):
        raise AssertionError("这是元素个数（以 2²⁰ 为单位）；float32 每个元素 4 个字节。")
    if math.isclose(a, elems * 32 / 2**20, rel_tol=1e-3):
        raise AssertionError("float32 是 32 位 = 4 个字节，你乘了 32。")
    if math.isclose(a, b * s * hid * 4 / 2**20, rel_tol=1e-3):
        raise AssertionError("这是一个 (batch, seq, hidden) 激活的大小；分数矩阵是 (batch, heads, seq, seq)。")
    raise AssertionError(f"{a:g} 不对：元素个数是 batch × heads × seq × seq，每个 4 字节，再除以 2²⁰。")


@exercise("lab08.t2", "写 gelu(x)：BERT 用的精确 GELU x·Φ(x)（用 torch.erf），值与梯度都与 F.gelu 一致。", level="easy")
def t2(answer) -> None:
    _callable(answer, "def gelu(x): ...")
    g = torch.Generator().manual_seed(82)
    x = torch.cat([torch.linspace(-6, 6, 97, dtype=torch.float64),
                   3 * torch.randn(64, generator=g, dtype=torch.float64)])
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = answer(xa)
    _tensor(got, x.shape, "与 x 同形状的张量")
    want = F.gelu(xb)
    with torch.no_grad():
        if not torch.allclose(got, want, atol=1e-7):
            if torch.allclose(got, F.gelu(x, approximate="tanh"), atol=1e-7):
                raise AssertionError("这是 tanh 近似（GPT-2 用的）；BERT 用精确版 x·Φ(x)，Φ(x) = ½(1 + erf(x/√2))。")
            if torch.allclose(got, x * torch.sigmoid(1.702 * x), atol=1e-7):
                raise AssertionError("这是 sigmoid 近似 x·σ(1.702x)；要的是精确版 x·Φ(x)，用 torch.erf。")
            if torch.allclose(got, 0.5 * x * (1 + torch.erf(x)), atol=1e-7):
                raise AssertionError("erf 的参数应是 x/√2：Φ(x) = ½(1 + erf(x/√2))。")
            if torch.allclose(got, F.relu(x), atol=1e-7):
                raise AssertionError("这是 ReLU；GELU 在负半轴是平滑的、略小于 0 的曲线。")
            err = (got - want).abs().max().item()
            raise AssertionError(f"与 F.gelu 的最大差 {err:.2e}：GELU(x) = x·½(1 + erf(x/√2))。")
    if not got.requires_grad:
        raise AssertionError("输出不能求导：不要用 .detach()、numpy 或 math.erf。")
    got.sum().backward()
    want.sum().backward()
    if not torch.allclose(xa.grad, xb.grad, atol=1e-7):
        raise AssertionError("值对了，梯度却不同：不要原地修改 x。")


def t3_embeddings():
    """Task 3's :class:`ftbook.transformer.Embeddings` (vocab 50, hidden 16, 2 segment types), random, eval."""
    from ..transformer import EncoderConfig, Embeddings

    cfg = EncoderConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=32, max_position_embeddings=20, type_vocab_size=2)
    torch.manual_seed(3)
    emb = Embeddings(cfg).eval()
    with torch.no_grad():
        emb.norm.weight.normal_(1.0, 0.3)
        emb.norm.bias.normal_(0.0, 0.3)
    return emb


def _t3_variants(emb, ids, types):
    n = emb.norm
    pos = torch.arange(ids.size(1))
    word, position, seg = emb.word(ids), emb.position(pos)[None], emb.token_type(types)
    yield n(word + seg), "漏掉了位置嵌入：第 i 个位置要加上 position.weight[i]，否则模型不知道词序。"
    yield n(word + position), "漏掉了句段嵌入 token_type（第一句还是第二句）。"
    yield word + position + seg, "三者相加之后还要做一次 LayerNorm（emb.norm）。"
    yield n(word + emb.position(pos + 1)[None] + seg), "位置从 0 开始编号：第一个 token 用 position.weight[0]。"
    yield n(word) + position + seg, "LayerNorm 作用在三者之和上，而不是只作用在词嵌入上。"


@exercise("lab08.t3", "写 embed(emb, input_ids, token_type_ids)：用 emb 的三张嵌入表与 LayerNorm 算 BERT 的嵌入层，"
          "值与梯度都与 emb(input_ids, token_type_ids) 一致。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def embed(emb, input_ids, token_type_ids): ...")
    emb = t3_embeddings()
    g = torch.Generator().manual_seed(83)
    for seq in (7, 12):
        ids = torch.randint(0, 50, (3, seq), generator=g)
        types = (torch.arange(seq) >= seq // 2).long().expand(3, seq).clone()
        got = answer(emb, ids, types)
        _tensor(got, (3, seq, 16), "形状 (batch, seq, hidden) 的张量")
        want = emb(ids, types)
        if not torch.allclose(got, want, atol=1e-5):
            with torch.no_grad():
                for wrong, message in _t3_variants(emb, ids, types):
                    if torch.allclose(got, wrong, atol=1e-5):
                        raise AssertionError(message)
            raise AssertionError(f"与 emb(input_ids, token_type_ids) 的最大差 {(got - want).abs().max().item():.2e}："
                                 "E = LayerNorm(word[ids] + position[0..seq-1] + token_type[types])。")
        if not got.requires_grad:
            raise AssertionError("输出不能求导：不要用 torch.no_grad() 或 .detach()。")
        grads = torch.autograd.grad(got.square().sum(), list(emb.parameters()), allow_unused=True)
        wants = torch.autograd.grad(emb(ids, types).square().sum(), list(emb.parameters()))
        for (name, _), a, b in zip(emb.named_parameters(), grads, wants):
            if a is not None and name == "word.weight" and not torch.allclose(a, b, atol=1e-5) and torch.allclose(
                    a[1:], b[1:], atol=1e-5):
                raise AssertionError("只有 [PAD]（id 0）那一行的梯度不同：emb.word 设了 padding_idx=0，填充的嵌入不更新；"
                                     "直接调用 emb.word(input_ids)，而不是 F.embedding(input_ids, emb.word.weight)。")
            if a is None or not torch.allclose(a, b, atol=1e-5):
                raise AssertionError(f"值对了，{name} 的梯度却不同：要用 emb 自己的嵌入表，而不是它们的拷贝。")


def t4_layer():
    """A fresh, randomly initialised :class:`ftbook.transformer.EncoderLayer` with MiniLM's sizes."""
    from ..transformer import EncoderConfig, EncoderLayer

    hf, _ = minilm()
    torch.manual_seed(4)
    return EncoderLayer(EncoderConfig.from_hf(hf.config)).eval()


@exercise("lab08.t4", "写 copy_layer(ours, hf_layer)：把 transformers 的一个 BertLayer 的 16 个权重拷进我们的 EncoderLayer，"
          "使两者的输出相同。", level="medium")
def t4(answer) -> None:
    _callable(answer, "def copy_layer(ours, hf_layer): ...")
    from ..transformer import hf_key_map

    hf, _ = minilm()
    hf_layer = hf.encoder.layer[T4_LAYER]
    ours = t4_layer()
    before = {n: p.detach().clone() for n, p in ours.named_parameters()}
    answer(ours, hf_layer)
    prefix = f"encoder.layer.{T4_LAYER}."
    expected = {k.split(".", 2)[2]: v[len(prefix):] for k, v in hf_key_map(T4_LAYER + 1).items()
                if k.startswith(f"layers.{T4_LAYER}.")}
    theirs = dict(hf_layer.named_parameters())
    for name, p in ours.named_parameters():
        want = theirs[expected[name]]
        if p.shape == want.shape and torch.equal(p.detach(), want.detach()):
            continue
        if torch.equal(p.detach(), before[name]):
            raise AssertionError(f"{name} 没有被拷贝（还是随机初始化的值）：它对应 BertLayer 的 {expected[name]}。")
        if p.dim() == 2 and p.shape == want.T.shape and torch.equal(p.detach(), want.detach().T):
            raise AssertionError(f"{name} 被转置了：两边都是 nn.Linear，weight 的形状都是 (out, in)，直接拷贝。")
        other = next((hf_name for hf_name, q in theirs.items()
                      if q.shape == p.shape and torch.equal(p.detach(), q.detach())), None)
        if other is not None:
            raise AssertionError(f"{name} 拷成了 {other}；它应对应 {expected[name]}。")
        raise AssertionError(f"{name} 的值不对：它应等于 BertLayer 的 {expected[name]}。")
    x = torch.randn(2, 6, hf.config.hidden_size, generator=torch.Generator().manual_seed(84))
    with torch.no_grad():
        if not torch.allclose(ours(x), hf_layer(x), atol=1e-4):
            raise AssertionError("权重都对了，输出却不同：检查 layer_norm_eps 与 EncoderLayer 的配置（Post-LN）。")


def t5_attentions() -> torch.Tensor:
    """MiniLM's attention probabilities on :data:`T5_SENTENCE`: ``(layers, heads, seq, seq)``."""
    hf, tok = minilm()
    enc = tok(T5_SENTENCE, return_tensors="pt")
    with torch.no_grad():
        return torch.stack(hf(**enc, output_attentions=True).attentions)[:, 0]


@exercise("lab08.t5", "在 MiniLM 的 6 × 12 个头里找出“看下一个词元”的头：给出 (层, 头, 平均权重)，层和头从 0 编号。",
          level="medium")
def t5(answer) -> None:
    if answer is None or (isinstance(answer, (tuple, list)) and any(v is None for v in answer)):
        raise AssertionError("还没有作答：请给出 (layer, head, score) 三个数。")
    if not isinstance(answer, (tuple, list)) or len(answer) != 3:
        raise TypeError("请给出一个三元组 (layer, head, score)。")
    layer, head, score = answer
    if isinstance(layer, torch.Tensor):
        layer, head = int(layer), int(head)
    if isinstance(layer, bool) or not isinstance(layer, int) or isinstance(head, bool) or not isinstance(head, int):
        raise TypeError("层号和头号应是整数（int）。")
    score = _number(score, "平均权重")
    probs = t5_attentions()
    n_layers, n_heads = probs.shape[:2]
    nxt = probs.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)  # (layers, heads): weight of token i on i+1
    prv = probs.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)
    best = divmod(int(nxt.argmax()), n_heads)
    if (layer, head) == best and math.isclose(score, nxt[best].item(), abs_tol=1e-3):
        return
    if (layer, head) == divmod(int(prv.argmax()), n_heads):
        raise AssertionError("这是“看前一个词元”的头（第 i 行第 i−1 列，diagonal(offset=-1)）；题目要第 i 行第 i+1 列。")
    if (layer - 1, head - 1) == best:
        raise AssertionError("层号和头号要从 0 开始编号（attentions[0] 是第 0 层）。")
    if (layer, head) == best:
        raise AssertionError(f"头找对了，平均权重不对：在除最后一个词元外的每一行 i 上取 A[i, i+1]，再求平均"
                             f"（应约为 {nxt[best].item():.3f}）。")
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise AssertionError(f"层号应在 0..{n_layers - 1}，头号应在 0..{n_heads - 1}。")
    raise AssertionError(f"第 {layer} 层第 {head} 号头给下一个词元的平均权重只有 {nxt[layer, head].item():.3f}；"
                         "对每个 (层, 头) 都算一遍 A[i, i+1] 的平均，取最大的那个。")


@functools.lru_cache(maxsize=1)
def minilm_encoder():
    """Our :class:`ftbook.transformer.Encoder` holding MiniLM's weights (eval), built once."""
    from ..transformer import Encoder

    return Encoder.from_hf(minilm()[0]).eval()


def t6_batch() -> dict:
    """:data:`T6_SENTENCES` tokenised by MiniLM's tokenizer, padded: input_ids, token_type_ids, attention_mask."""
    return dict(minilm()[1](T6_SENTENCES, padding=True, return_tensors="pt"))


def _encoder_variant(enc, ids, mask, types, scale=True, use_mask=True, post=True):
    """The encoder forward with one thing changed: no 1/sqrt(d), no padding mask, or Pre-LN order."""
    from ..attention import key_padding_mask

    h = enc.embeddings(ids, types)
    for blk in enc.layers:
        a = blk.attn
        inp = h if post else blk.norm1(h)
        q, k, v = (a._split(proj(inp)) for proj in (a.query, a.key, a.value))
        s = q @ k.transpose(-2, -1) / (math.sqrt(a.head_dim) if scale else 1.0)
        if use_mask:
            s = s + key_padding_mask(mask, dtype=s.dtype)
        ctx = (s.softmax(-1) @ v).transpose(1, 2).reshape(h.shape)
        if post:
            h = blk.norm1(h + a.out(ctx))
            h = blk.norm2(h + blk.ffn(h))
        else:
            h = h + a.out(ctx)
            h = h + blk.ffn(blk.norm2(h))
    return h


def _forbid(*_args, **_kwargs):
    raise AssertionError("不要调用 block(...) 或 block.attn(...)：用 block.attn.query/key/value/out 这几个线性层"
                         "自己算注意力（block.ffn、block.norm1、block.norm2 和 enc.embeddings 可以直接用）。")


@exercise("lab08.t6", "写 encoder_forward(enc, input_ids, attention_mask, token_type_ids)：用编码器的子模块亲手算完整的"
          "前向（多头注意力自己写），在带填充的批次上真实词元的输出与 BertModel 相差 ≤ 1e-4。", level="hard")
def t6(answer) -> None:
    _callable(answer, "def encoder_forward(enc, input_ids, attention_mask, token_type_ids): ...")
    hf, _ = minilm()
    enc = minilm_encoder()
    batch = t6_batch()
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    for blk in enc.layers:
        blk.forward = blk.attn.forward = _forbid
    try:
        with torch.no_grad():
            got = answer(enc, ids.clone(), mask.clone(), types.clone())
    finally:
        for blk in enc.layers:
            del blk.forward, blk.attn.forward
    _tensor(got, (*ids.shape, hf.config.hidden_size), "last_hidden_state，形状 (batch, seq, hidden)")
    real = mask.bool()
    with torch.no_grad():
        want = hf(**batch).last_hidden_state
        err = (got - want)[real].abs().max().item()
        if err <= 1e-4:
            return
        variants = [(dict(use_mask=False), "没有用注意力掩码（或把它加在了 query 维上，等于没加）：短句的真实词元看到了填充。"
                     "掩码形状应是 (batch, 1, 1, seq)，填充的 key 加上 dtype 最小值。"),
                    (dict(scale=False), "分数没有除以 √head_dim（MiniLM 是 √32）。"),
                    (dict(post=False), "这是 Pre-LN 的顺序；BERT 是 Post-LN：h = norm1(h + attn(h))，h = norm2(h + ffn(h))。")]
        for kw, message in variants:
            if (got - _encoder_variant(enc, ids, mask, types, **kw))[real].abs().max().item() <= 1e-4:
                raise AssertionError(message)
    raise AssertionError(f"真实词元上与 BertModel 的最大差 {err:.2e}（应 ≤ 1e-4）：逐层检查——先与 enc.embeddings 的输出、"
                         "再与第一层的输出比较，找出第一个出错的地方。")
