"""ftbook.attention against torch's scaled_dot_product_attention: values, grads, masks, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from ftbook.attention import (
    AttentionError,
    attention_weights,
    causal_mask,
    key_padding_mask,
    row_padding_mask,
    scaled_dot_product_attention,
)

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}


def _qkv(shape_q=(2, 3, 5, 8), S=7, Ev=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    *batch, L, E = shape_q
    q = torch.randn(*batch, L, E, generator=g, dtype=dtype)
    k = torch.randn(*batch, S, E, generator=g, dtype=dtype)
    v = torch.randn(*batch, S, Ev, generator=g, dtype=dtype)
    return q, k, v


def _masks(L, S, dtype):
    g = torch.Generator().manual_seed(3)
    bool_mask = torch.rand(L, S, generator=g) > 0.3
    bool_mask[:, 0] = True  # every query sees at least one key
    return [
        None,
        bool_mask,
        torch.randn(L, S, generator=g, dtype=dtype),
        torch.randn(2, 1, L, S, generator=g, dtype=dtype),
        torch.zeros(2, 1, 1, S, dtype=dtype).masked_fill(torch.arange(S) >= S - 2, float("-inf")),
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mask_index", range(5))
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_sdpa_values_and_grads_match_torch(dtype, mask_index, is_causal, scale):
    q, k, v = _qkv(dtype=dtype)
    L, S = q.size(-2), k.size(-2)
    mask = _masks(L, S, dtype)[mask_index]
    ins = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = [t.clone().requires_grad_() for t in (q, k, v)]
    if is_causal and mask is not None:  # torch refuses both at once; so do we
        with pytest.raises(RuntimeError):
            F.scaled_dot_product_attention(*ref, attn_mask=mask, is_causal=True)
        with pytest.raises(AttentionError, match="both given"):
            scaled_dot_product_attention(*ins, attn_mask=mask, is_causal=True)
        return
    ours = scaled_dot_product_attention(*ins, attn_mask=mask, is_causal=is_causal, scale=scale)
    theirs = F.scaled_dot_product_attention(*ref, attn_mask=mask, is_causal=is_causal, scale=scale)
    torch.testing.assert_close(ours, theirs, **TOL[dtype])
    g = torch.randn_like(ours)
    ours.backward(g)
    theirs.backward(g)
    for a, b in zip(ins, ref):
        torch.testing.assert_close(a.grad, b.grad, **{k_: v_ * 10 for k_, v_ in TOL[dtype].items()})


@pytest.mark.parametrize("shapes", [((3, 4), (5, 4), (5, 6)), ((4, 2, 3, 8), (4, 2, 9, 8), (4, 2, 9, 8)),
                                    ((1, 2, 3, 4, 5), (1, 2, 3, 6, 5), (1, 2, 3, 6, 2))])
def test_sdpa_any_batch_shape(shapes):
    torch.manual_seed(0)
    q, k, v = (torch.randn(s) for s in shapes)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_sdpa_gradcheck_float64():
    q, k, v = (t.requires_grad_() for t in _qkv((1, 2, 3, 4), S=5, Ev=3, dtype=torch.float64))
    mask = torch.randn(3, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, attn_mask=mask), (q, k, v))


def test_gqa_matches_torch():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 4, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 3)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, enable_gqa=True),
        F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    with pytest.raises(RuntimeError):
        F.scaled_dot_product_attention(q, k[:, :4].repeat(1, 1, 1, 1)[:, :4], v[:, :1].repeat(1, 4, 1, 1), enable_gqa=True)
    with pytest.raises(AttentionError, match="multiple"):
        scaled_dot_product_attention(q, torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 3), enable_gqa=True)


def test_fully_masked_rows_give_zero_like_torch():
    q, k, v = _qkv((1, 1, 3, 4), S=3, Ev=4)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not torch.isnan(ours).any()
    torch.testing.assert_close(ours, theirs)
    assert torch.equal(ours[0, 0, 1], torch.zeros(4))


def test_causal_mask_combined_by_hand_matches_torch():
    q, k, v = _qkv((2, 2, 4, 8), S=4, Ev=8)
    mask = torch.tensor([True, True, True, False]).expand(4, 4) & causal_mask(4, 4)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, attn_mask=mask),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_attention_weights_are_probabilities_and_default_scale():
    q, k, _ = _qkv((2, 3, 5, 16), S=7)
    w = attention_weights(q, k)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    torch.testing.assert_close(w, torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(16), -1))
    assert torch.equal(causal_mask(3, 4), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]).bool())
    wc = attention_weights(q, k[..., :5, :], is_causal=True)
    assert torch.all(wc.triu(diagonal=1) == 0)


def test_dropout_zeroes_and_rescales():
    torch.manual_seed(0)
    q, k, v = _qkv((1, 1, 64, 8), S=64, Ev=8)
    base = scaled_dot_product_attention(q, k, v)
    assert torch.equal(scaled_dot_product_attention(q, k, v, dropout_p=0.0), base)
    drops = torch.stack([scaled_dot_product_attention(q, k, v, dropout_p=0.5) for _ in range(300)])
    assert not torch.allclose(drops[0], base)
    torch.testing.assert_close(drops.mean(0), base, atol=0.15, rtol=0)  # unbiased in expectation
    assert torch.count_nonzero(scaled_dot_product_attention(q, k, v, dropout_p=1.0)) == 0


BAD = [
    (lambda f: f(torch.randn(4), torch.randn(4), torch.randn(4)), "2 dims"),
    (lambda f: f(torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 4)), "last dim"),
    (lambda f: f(torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 6, 4)), "sequence length"),
    (lambda f: f(torch.randn(2, 3, 4), torch.randn(2, 3, 4).double(), torch.randn(2, 3, 4)), "dtype"),
    (lambda f: f(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4).long()), "dtype|floating"),
    (lambda f: f(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4), attn_mask=torch.zeros(5, 5)), "broadcast"),
    (lambda f: f(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4), attn_mask=torch.zeros(3, 3).long()), "bool"),
    (lambda f: f(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4), dropout_p=1.5), "probability"),
]


@pytest.mark.parametrize("call,msg", BAD)
def test_errors_where_torch_raises(call, msg):
    with pytest.raises(RuntimeError):
        call(F.scaled_dot_product_attention)
    with pytest.raises(RuntimeError, match=msg):
        call(scaled_dot_product_attention)
    assert issubclass(AttentionError, ValueError)


# ------------------------------------------------------------------------- padding masks
def test_key_padding_mask_shape_values_and_dtype():
    am = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    m = key_padding_mask(am)
    assert m.shape == (2, 1, 1, 4) and m.dtype == torch.float32
    big = torch.finfo(torch.float32).min
    assert m[0, 0, 0].tolist() == [0.0, 0.0, 0.0, big]
    assert m[1, 0, 0].tolist() == [0.0, 0.0, big, big]
    assert torch.isneginf(key_padding_mask(am, fill=float("-inf"))).sum() == 3
    assert key_padding_mask(am.bool(), dtype=torch.float64).dtype == torch.float64
    # identical to how BERT builds its extended attention mask
    bert = (1.0 - am[:, None, None, :].float()) * torch.finfo(torch.float32).min
    assert torch.equal(m, bert)


def _padded_outputs(mask_fn, pad, seed=0):
    """Outputs of the 3 real tokens of one sentence, padded with ``pad`` random vectors."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(1, 1, 3, 8, generator=g)
    padding = torch.randn(1, 1, pad, 8, generator=torch.Generator().manual_seed(100 + pad))
    x = torch.cat([real, padding], dim=2)  # (1, 1, 3 + pad, 8)
    am = torch.tensor([[1] * 3 + [0] * pad])
    out = scaled_dot_product_attention(x, x, x, attn_mask=mask_fn(am))
    return out[0, 0, :3]


def test_key_mask_makes_real_tokens_independent_of_padding():
    outs = [_padded_outputs(key_padding_mask, pad) for pad in (0, 1, 5, 20)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-6, rtol=0)


def test_row_mask_bug_lets_padding_leak_in():
    outs = [_padded_outputs(row_padding_mask, pad) for pad in (0, 1, 5, 20)]
    diffs = [(o - outs[0]).abs().max().item() for o in outs[1:]]
    assert min(diffs) > 1e-2, diffs
    am = torch.tensor([[1, 1, 0]])
    assert row_padding_mask(am).shape == (1, 1, 3, 1)
    # adding one constant to a whole row of scores is a no-op for softmax
    s = torch.randn(4, 5)
    torch.testing.assert_close(torch.softmax(s + 7.0, -1), torch.softmax(s, -1))


@pytest.mark.parametrize("fn", [key_padding_mask, row_padding_mask])
def test_padding_mask_bad_inputs(fn):
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        fn(torch.ones(2, 1, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        fn(torch.tensor([[1, 2, 0]]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([[1, 0]])
    with pytest.raises(TypeError, match="floating point"):
        fn(torch.ones(1, 2), dtype=torch.int64)


def test_causal_mask_bad_inputs():
    with pytest.raises(ValueError, match="non-negative int"):
        causal_mask(-1, 3)
    with pytest.raises(ValueError, match="non-negative int"):
        causal_mask(2.0, 3)
