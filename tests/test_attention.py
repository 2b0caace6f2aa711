"""ftbook.attention against torch's scaled_dot_product_attention: values, grads, masks, errors."""

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
        torch.tensor([[True] * S, [True] * (S - 3) + [False] * 3])[:, None, None, :],  # (2, 1, 1, S) padding
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mask_index", range(6))
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


def _gradcheck_cases():
    """(name, attn_mask, is_causal, L, S) for float64 gradchecks of multi-head shaped inputs."""
    pad = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]  # (2, 1, 1, S)
    dead_bool = torch.ones(4, 5, dtype=torch.bool)
    dead_bool[1] = False  # query 1 sees no key at all
    dead_add = torch.randn(4, 5, dtype=torch.float64).masked_fill(~dead_bool, float("-inf"))
    return [
        ("additive", torch.randn(4, 5, dtype=torch.float64), False, 4, 5),
        ("bool padding", pad, False, 4, 5),
        ("causal", None, True, 5, 5),
        ("causal L < S", None, True, 3, 5),
        ("fully masked row, bool", dead_bool, False, 4, 5),
        ("fully masked row, -inf", dead_add, False, 4, 5),
    ]


@pytest.mark.parametrize("name,mask,is_causal,L,S", _gradcheck_cases(), ids=[c[0] for c in _gradcheck_cases()])
def test_sdpa_gradcheck_float64(name, mask, is_causal, L, S):
    q, k, v = (t.requires_grad_() for t in _qkv((2, 2, L, 4), S=S, Ev=3, dtype=torch.float64))
    assert torch.autograd.gradcheck(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal), (q, k, v))


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float64])
def test_fully_masked_row_is_zero_with_finite_grads_like_torch(mask_dtype):
    """Documented behaviour: zero output and zero gradient for a query that sees no key; the
    other rows keep their exact values and gradients (no NaN leaks through the keys)."""
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[2] = False  # query 2: every key masked
    keep[0, 3:] = False
    mask = keep if mask_dtype == torch.bool else torch.zeros(4, 5, dtype=torch.float64).masked_fill(~keep, float("-inf"))
    q, k, v = _qkv((2, 3, 4, 8), S=5, Ev=6, dtype=torch.float64)
    ins = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = [t.clone().requires_grad_() for t in (q, k, v)]
    ours = scaled_dot_product_attention(*ins, attn_mask=mask)
    theirs = F.scaled_dot_product_attention(*ref, attn_mask=mask, dropout_p=0.0, is_causal=False)
    torch.testing.assert_close(ours, theirs, **TOL[torch.float64])
    assert torch.count_nonzero(ours[..., 2, :]) == 0 and torch.count_nonzero(ours[..., 1, :]) > 0
    g = torch.randn_like(ours)
    ours.backward(g)
    theirs.backward(g)
    for a, b in zip(ins, ref):
        assert torch.isfinite(a.grad).all()
        torch.testing.assert_close(a.grad, b.grad, **TOL[torch.float64])
    assert torch.count_nonzero(ins[0].grad[..., 2, :]) == 0  # the dead query gets no gradient
    # the live rows are exactly what attention over their own keys gives (drop the dead row)
    live = [0, 1, 3]
    sub = scaled_dot_product_attention(q[..., live, :], k, v, attn_mask=mask[live])
    torch.testing.assert_close(ours[..., live, :], sub, atol=0, rtol=0)


def test_bool_mask_convention_is_sdpa_not_multiheadattention():
    """SDPA's boolean ``attn_mask``: True = attend. ``nn.MultiheadAttention``'s ``key_padding_mask``
    (and its boolean ``attn_mask``): True = ignore. ftbook follows SDPA; ``~mask`` converts."""
    torch.manual_seed(0)
    B, S, E, H = 3, 5, 16, 4
    mha = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    x = torch.randn(B, S, E, dtype=torch.float64, requires_grad=True)
    key_padding_mask = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 1, 1, 1, 1]]).bool()  # True = pad
    want, _ = mha(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
    causal_want, _ = mha(x, x, x, attn_mask=~causal_mask(S, S), need_weights=False)  # True = not allowed

    def ours(**kwargs):
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        split = [F.linear(x, w, b).view(B, S, H, E // H).transpose(1, 2) for w, b in
                 ((w_q, b_q), (w_k, b_k), (w_v, b_v))]  # 3 x (B, H, S, E/H)
        ctx = scaled_dot_product_attention(*split, **kwargs)  # (B, H, S, E/H)
        return mha.out_proj(ctx.transpose(1, 2).reshape(B, S, E))  # (B, S, E)

    attend = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S): True = attend, SDPA's convention
    got = ours(attn_mask=attend)
    torch.testing.assert_close(got, want, **TOL[torch.float64])
    torch.testing.assert_close(ours(is_causal=True), causal_want, **TOL[torch.float64])
    (gx_ours,) = torch.autograd.grad(got.square().sum(), x)
    (gx_mha,) = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(gx_ours, gx_mha, **TOL[torch.float64])
    # the trap: the padding mask passed unconverted attends to the padding *only*
    wrong = ours(attn_mask=key_padding_mask[:, None, None, :])
    assert (wrong[1:] - want[1:]).abs().amax() > 1e-2
    # sequence 0 has no padding, so the unconverted mask hides every key: output = out_proj's bias
    torch.testing.assert_close(wrong[0], mha.out_proj.bias.expand(S, E))


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


def test_causal_mask_combined_by_hand_matches_torch():
    q, k, v = _qkv((2, 2, 4, 8), S=4, Ev=8)
    mask = torch.tensor([True, True, True, False]).expand(4, 4) & causal_mask(4, 4)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, attn_mask=mask),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def _weights_twin(q, k, **kwargs):
    """The attention weights from torch's SDPA itself: attend over the identity as values."""
    eye = torch.eye(k.size(-2), dtype=k.dtype).expand(*k.shape[:-1], k.size(-2))  # (..., S, S)
    return F.scaled_dot_product_attention(q, k, eye, **kwargs)  # (..., L, S) = weights @ I


@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}, {"scale": 0.7},
                                    {"attn_mask": torch.tensor([[True] * 5 + [False] * 2])}])
def test_attention_weights_equal_torch(kwargs):
    q, k, _ = _qkv((2, 3, 5, 16), S=7)
    torch.testing.assert_close(attention_weights(q, k, **kwargs), _weights_twin(q, k, **kwargs))


def test_causal_mask_is_what_is_causal_uses():
    for L, S in ((4, 4), (4, 6), (6, 4)):
        qq, kk, vv = _qkv((2, 2, L, 8), S=S, Ev=3, seed=L)
        torch.testing.assert_close(
            scaled_dot_product_attention(qq, kk, vv, attn_mask=causal_mask(L, S)),
            F.scaled_dot_product_attention(qq, kk, vv, is_causal=True))
        assert causal_mask(L, S).shape == (L, S) and causal_mask(L, S).dtype == torch.bool


def test_dropout_zeroes_and_rescales():
    torch.manual_seed(0)
    q, k, v = _qkv((1, 1, 64, 8), S=64, Ev=8)
    base = scaled_dot_product_attention(q, k, v)
    assert torch.equal(scaled_dot_product_attention(q, k, v, dropout_p=0.0), base)
    # with the identity as values the output *is* the dropped weights: each is 0 or w / (1 - p)
    eye = torch.eye(64)[None, None]
    w = _weights_twin(q, k)
    dropped = scaled_dot_product_attention(q, k, eye, dropout_p=0.25)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], w[kept] / 0.75)
    assert 0 < kept.sum() < kept.numel()
    drops = torch.stack([scaled_dot_product_attention(q, k, v, dropout_p=0.5) for _ in range(300)])
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
    # identical to the additive mask BertModel's eager attention adds (transformers' own function)
    from transformers import BertConfig
    from transformers.masking_utils import create_bidirectional_mask

    cfg = BertConfig(hidden_size=8, num_attention_heads=2, attn_implementation="eager")
    for dtype in (torch.float32, torch.float64):
        hf = create_bidirectional_mask(config=cfg, inputs_embeds=torch.zeros(2, 4, 8, dtype=dtype),
                                       attention_mask=am)  # (batch, 1, tgt, src)
        assert hf.dtype == dtype
        assert torch.equal(key_padding_mask(am, dtype=dtype).expand_as(hf), hf)


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
