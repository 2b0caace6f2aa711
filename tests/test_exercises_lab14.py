"""Checkers of lab 14: the right answer passes, None fails, typical mistakes fail with their message."""

import pytest
import torch
import torch.nn.functional as F
from transformers.generation.logits_process import TopPLogitsWarper

from ftbook import generation
from ftbook.exercises import check, get, lab14


def test_registered_with_levels():
    levels = [get(f"lab14.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "medium", "medium", "easy", "hard", "medium"]
    assert all(get(f"lab14.t{k}").prompt for k in range(1, 7))


# ---------------------------------------------------------------- task 1


def test_t1_kv_cache_bytes(capsys):
    cfg = lab14.gpt_config()
    layers, d = cfg["num_hidden_layers"], cfg["head_dim"]
    gqa = 2 * layers * 8 * cfg["num_key_value_heads"] * 128 * d * 4
    mha = 2 * layers * 8 * cfg["num_attention_heads"] * 128 * d * 4
    assert (gqa, mha) == (4 * 2**20, 8 * 2**20)  # 4 layers, 2 / 4 kv heads of 64 dims
    # the real cache of the shipped model has exactly that size
    gpt, _ = lab14.t6_model()
    with torch.no_grad():
        _, cache = gpt(torch.ones(8, 128, dtype=torch.long), use_cache=True)
    assert sum(t.numel() * t.element_size() for kv in cache for t in kv) == gqa
    assert check("lab14.t1", {"gqa": gqa, "mha": mha}, quiet=True)
    assert not check("lab14.t1", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab14.t1", gqa, quiet=True)
    assert not check("lab14.t1", {"gqa": None, "mha": mha}, quiet=True)
    with pytest.raises(AssertionError, match="键值头的个数"):
        lab14.t1({"gqa": mha, "mha": mha})
    with pytest.raises(AssertionError, match="K 和值 V"):
        lab14.t1({"gqa": gqa // 2, "mha": mha})
    with pytest.raises(AssertionError, match="字节数.*一层"):  # 4 bytes and 4 layers: both named
        lab14.t1({"gqa": gqa // 4, "mha": mha})
    with pytest.raises(AssertionError, match="多头注意力.*一层"):
        lab14.t1({"gqa": gqa, "mha": mha // layers})
    with pytest.raises(AssertionError, match="batch"):
        lab14.t1({"gqa": gqa // 8, "mha": mha})


# ---------------------------------------------------------------- task 2


def _rope(x, position_ids, theta=10000.0):
    return lab14.rope_variant(x, position_ids, theta)


def test_t2_rope(capsys):
    assert check("lab14.t2", _rope, quiet=True)
    from ftbook import decoder

    def with_ftbook(x, position_ids, theta=10000.0):
        cos, sin = decoder.RotaryEmbedding(x.shape[-1], 64, theta)(position_ids, x.dtype)
        return decoder.apply_rotary_pos_emb(x, cos, sin)

    assert check("lab14.t2", with_ftbook, quiet=True)
    assert not check("lab14.t2", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab14.t2", "rope", quiet=True)
    assert not check("lab14.t2", lambda x, p, t: x, quiet=True)
    with pytest.raises(AssertionError, match="配对方式"):
        lab14.t2(lambda x, p, t: lab14.rope_variant(x, p, t, interleaved=True))
    with pytest.raises(AssertionError, match="指数"):
        lab14.t2(lambda x, p, t: lab14.rope_variant(x, p, t, exponent=1))
    with pytest.raises(AssertionError, match="方向反了"):
        lab14.t2(lambda x, p, t: lab14.rope_variant(x, p, t, sign=-1))
    with pytest.raises(AssertionError, match="position_ids"):
        lab14.t2(lambda x, p, t: lab14.rope_variant(x, p, t, ignore_positions=True))
    with pytest.raises(AssertionError, match="写死"):
        lab14.t2(lambda x, p, t: lab14.rope_variant(x, p, 10000.0))
    with pytest.raises(AssertionError, match="没有梯度"):
        lab14.t2(lambda x, p, t: lab14.rope_variant(x, p, t).detach())


# ---------------------------------------------------------------- task 3


def test_t3_gqa(capsys):
    assert check("lab14.t3", lab14.gqa_variant, quiet=True)
    assert not check("lab14.t3", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab14.t3", 3, quiet=True)
    with pytest.raises(AssertionError, match="repeat_interleave"):
        lab14.t3(lambda q, k, v: lab14.gqa_variant(q, k, v, tiled=True))
    with pytest.raises(AssertionError, match="没有因果掩码"):
        lab14.t3(lambda q, k, v: lab14.gqa_variant(q, k, v, causal=False))
    with pytest.raises(AssertionError, match="NaN"):
        lab14.t3(lambda q, k, v: lab14.gqa_variant(q, k, v, diagonal=False))
    with pytest.raises(AssertionError, match="除以了 head_dim"):
        lab14.t3(lambda q, k, v: lab14.gqa_variant(q, k, v, scale=1 / q.shape[-1]))
    with pytest.raises(AssertionError, match="忘了缩放"):
        lab14.t3(lambda q, k, v: lab14.gqa_variant(q, k, v, scale=1.0))
    with pytest.raises(AssertionError, match="不要调用 F.scaled_dot_product_attention"):
        lab14.t3(lambda q, k, v: F.scaled_dot_product_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1),
                                                                is_causal=True))
    assert F.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"  # restored afterwards
    with pytest.raises(AssertionError, match="没有梯度"):
        lab14.t3(lambda q, k, v: lab14.gqa_variant(q, k, v).detach())

    def zero_after_softmax(q, k, v):
        w = (q @ k.repeat_interleave(3, 1).transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1)
        return (w * torch.ones(5, 5, dtype=torch.float64).tril()) @ v.repeat_interleave(3, 1)

    with pytest.raises(AssertionError, match="-inf"):
        lab14.t3(zero_after_softmax)


# ---------------------------------------------------------------- task 4


def test_t4_top_p(capsys):
    rows = lab14._t4_rows()
    for p in lab14.T4_PS:  # the library twin agrees with ftbook's filter on the checker's rows
        assert torch.equal(TopPLogitsWarper(p)(None, rows.clone()), generation.top_p_filter(rows, p))
    assert check("lab14.t4", lab14.top_p_variant, quiet=True)
    assert not check("lab14.t4", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab14.t4", 0.9, quiet=True)
    with pytest.raises(AssertionError, match="本身"):
        lab14.t4(generation.top_p_filter)
    with pytest.raises(AssertionError, match="穿过阈值"):
        lab14.t4(lambda x, p: lab14.top_p_variant(x, p, keep_crossing=False))
    with pytest.raises(AssertionError, match="排序方向反了"):
        lab14.t4(lambda x, p: lab14.top_p_variant(x, p, descending=False))
    with pytest.raises(AssertionError, match="永远要保留"):
        lab14.t4(lambda x, p: lab14.top_p_variant(x, p, keep_crossing=False, keep_one=False)
                 if p < 0.1 else lab14.top_p_variant(x, p))
    with pytest.raises(AssertionError, match="原来的 logits"):
        lab14.t4(lambda x, p: lab14.top_p_variant(x, p).softmax(-1).masked_fill(torch.isinf(lab14.top_p_variant(x, p)),
                                                                                  float("-inf")))
    with pytest.raises(AssertionError, match="不是 0"):
        lab14.t4(lambda x, p: lab14.top_p_variant(x, p).nan_to_num(neginf=0.0))


# ---------------------------------------------------------------- task 5


def _attention(attn, x, position_ids, theta, **mistake):
    b, s, _ = x.shape
    h, kv, d = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q = attn.q_proj(x).view(b, s, h, d).transpose(1, 2)
    k = attn.k_proj(x).view(b, s, kv, d).transpose(1, 2)
    v = attn.v_proj(x).view(b, s, kv, d).transpose(1, 2)
    if not mistake.get("no_rope"):
        q, k = lab14.rope_variant(q, position_ids, theta), lab14.rope_variant(k, position_ids, theta)
    if mistake.get("rope_v"):
        v = lab14.rope_variant(v, position_ids, theta)
    ctx = lab14.gqa_variant(q, k, v).transpose(1, 2).reshape(b, s, h * d)
    return ctx if mistake.get("no_o_proj") else attn.o_proj(ctx)


def test_t5_attention(capsys):
    assert check("lab14.t5", _attention, quiet=True)
    assert not check("lab14.t5", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab14.t5", "attn", quiet=True)
    with pytest.raises(AssertionError, match="不旋转值"):
        lab14.t5(lambda a, x, p, t: _attention(a, x, p, t, rope_v=True))
    with pytest.raises(AssertionError, match="o_proj"):
        lab14.t5(lambda a, x, p, t: _attention(a, x, p, t, no_o_proj=True))
    with pytest.raises(AssertionError, match="忘了 RoPE"):
        lab14.t5(lambda a, x, p, t: _attention(a, x, p, t, no_rope=True))
    with pytest.raises(AssertionError, match="形状出错"):
        lab14.t5(lambda a, x, p, t: a.k_proj(x).view(x.shape[0], x.shape[1], a.num_heads, a.head_dim))
    with pytest.raises(AssertionError, match="不要返回"):
        lab14.t5(lambda a, x, p, t: (_attention(a, x, p, t), None))
    with pytest.raises(AssertionError, match="没有梯度"):
        lab14.t5(lambda a, x, p, t: _attention(a, x, p, t).detach())

    def no_transpose(attn, x, position_ids, theta):
        b, s, _ = x.shape
        h, kv, d = attn.num_heads, attn.num_kv_heads, attn.head_dim
        q, k, v = attn.q_proj(x).view(b, h, s, d), attn.k_proj(x).view(b, kv, s, d), attn.v_proj(x).view(b, kv, s, d)
        q, k = lab14.rope_variant(q, position_ids, theta), lab14.rope_variant(k, position_ids, theta)
        return attn.o_proj(lab14.gqa_variant(q, k, v).transpose(1, 2).reshape(b, s, h * d))

    with pytest.raises(AssertionError, match="transpose"):
        lab14.t5(no_transpose)


# ---------------------------------------------------------------- task 6


def test_t6_sample_stats(capsys):
    def right(model, tok, temperature, seed):
        return lab14.t6_reference(model, tok, temperature, seed)

    assert check("lab14.t6", right, quiet=True)
    assert not check("lab14.t6", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab14.t6", 1.0, quiet=True)
    assert not check("lab14.t6", lambda *a: 0.5, quiet=True)
    with pytest.raises(AssertionError, match="合在一起"):
        lab14.t6(lambda m, tok, t, s: lab14.t6_reference(m, tok, t, s, per_row=True))
    with pytest.raises(AssertionError, match="温度 1"):
        lab14.t6(lambda m, tok, t, s: lab14.t6_reference(m, tok, t, s, nll_temperature=t))
    with pytest.raises(AssertionError, match="错了一位"):
        lab14.t6(lambda m, tok, t, s: lab14.t6_reference(m, tok, t, s, shift=False))
    with pytest.raises(AssertionError, match="不包括提示"):
        lab14.t6(lambda m, tok, t, s: lab14.t6_reference(m, tok, t, s, with_prompt=True))
    with pytest.raises(AssertionError, match="manual_seed"):
        lab14.t6(lambda m, tok, t, s: lab14.t6_reference(m, tok, t, s + 1))
    model, tok = lab14.t6_model()
    low, high = lab14.t6_reference(model, tok, 0.5, 0), lab14.t6_reference(model, tok, 1.3, 0)
    assert low[0] < high[0] and low[1] < high[1]  # the trade-off the lab's experiment shows
