"""Tests of ftbook.decoder: equal to transformers.LlamaForCausalLM (eager and SDPA), logits and every
gradient, in float64 to 1e-10 (unpadded and LEFT-padded batches, tied and untied lm_head), in float32
against the unmodified library; the KV cache equals the full forward; RoPE gradcheck; bad inputs.

transformers computes two things in float32 even in a float64 model: ``LlamaRMSNorm`` casts its input
to float32, and eager attention takes its softmax in float32 (then, with left padding, the float64
mask value ``finfo(float64).min`` becomes ``-inf`` in float32 and a padding row's softmax is NaN,
which spreads to its whole sequence). The ``hf64`` fixture removes exactly these two casts (the same
code otherwise), so that the float64 comparison can go to 1e-10; ``test_float32_equals_unpatched_hf``
compares against the library as it is.
"""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama

from ftbook.decoder import (
    Decoder, DecoderConfig, apply_rotary_pos_emb, decoder_attention_mask, hf_key_map,
    position_ids_from_mask, repeat_kv, rope_cos_sin, rotate_half,
)

ATTN = ["eager", "sdpa"]


def tiny_config(tie: bool, attn: str = "sdpa", **kw) -> LlamaConfig:
    return LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=24,
                       rms_norm_eps=1e-6, tie_word_embeddings=tie, attn_implementation=attn, **kw)


def _rms_norm_float64(self, hidden_states):  # LlamaRMSNorm.forward without `.to(torch.float32)`
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _eager_float64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    # eager_attention_forward with the softmax in the input's dtype instead of float32
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=attn_weights.dtype)
    attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
    return attn_output, attn_weights


@pytest.fixture
def hf64(monkeypatch):
    """Build a float64 LlamaForCausalLM whose norms and eager softmax really run in float64."""
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", _rms_norm_float64)
    monkeypatch.setattr(modeling_llama, "eager_attention_forward", _eager_float64)

    def build(tie: bool, attn: str, seed: int = 0) -> LlamaForCausalLM:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(tiny_config(tie, attn)).to(torch.float64).eval()
        assert model.config._attn_implementation == attn
        with torch.no_grad():  # larger weights than N(0, 0.02): logits far from uniform, a sharper test
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        return model
    return build


def left_padded_batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 97, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # 3 pads on the left
    mask[2, :7] = 0  # 7 pads: 2 real tokens
    return ids.masked_fill(mask == 0, 0), mask


def hf_logits(hf, ids, mask=None):
    # LlamaForCausalLM.forward counts positions over the padding; generate passes these instead
    pos = None if mask is None else position_ids_from_mask(mask)
    return hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits


# ------------------------------------------------------------------------------ equality
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_logits_equal_llama_no_padding(hf64, tie, attn, impl):
    hf = hf64(tie, attn)
    ours = Decoder.from_hf(hf, attn_impl=impl)
    ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, got = hf_logits(hf, ids), ours(ids)
    assert got.shape == ref.shape == (2, 11, 97) and got.dtype == torch.float64
    assert ref.std() > 0.1  # not a trivially flat model
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_logits_equal_llama_left_padded(hf64, tie, attn, impl):
    hf = hf64(tie, attn)
    ours = Decoder.from_hf(hf, attn_impl=impl)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        ref, got = hf_logits(hf, ids, mask), ours(ids, mask)
    real = mask.bool()
    assert not got.isnan().any()
    torch.testing.assert_close(got[real], ref[real], atol=1e-10, rtol=0)


def test_left_padding_does_not_change_real_tokens(hf64):
    """Positions come from the mask: a padded row equals the same row alone, to 1e-10.

    RoPE is relative, so counting positions over the padding (HF's forward without position_ids)
    shifts every angle of the row alike and changes the scores only by rounding (~1e-8 here, the
    angles being float32): enough for this test to fail at 1e-10.
    """
    hf = hf64(True, "sdpa")
    ours = Decoder.from_hf(hf)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        padded = ours(ids, mask)
        alone = ours(ids[1:2, 3:])  # row 1 without its 3 pads
        arange_pos = hf(input_ids=ids, attention_mask=mask).logits  # HF's forward without position_ids
    torch.testing.assert_close(padded[1, 3:], alone[0], atol=1e-10, rtol=0)
    assert (arange_pos[1, 3:] - alone[0]).abs().max() > 1e-9  # shifted positions: rounding differs


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("attn", ATTN)
def test_gradients_equal_llama(hf64, tie, attn):
    hf = hf64(tie, attn)
    ours = Decoder.from_hf(hf, attn_impl="explicit")
    ids, mask = left_padded_batch()
    real = mask.bool()
    w = torch.randn(int(real.sum()), 97, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (hf_logits(hf, ids, mask)[real] * w).sum().backward()
    (ours(ids, mask)[real] * w).sum().backward()
    hf_params = dict(hf.named_parameters())
    mapping = hf_key_map(2, tie)
    assert set(mapping) == {n for n, _ in ours.named_parameters()}
    for name, p in ours.named_parameters():
        ref = hf_params[mapping[name]].grad
        assert p.grad is not None and ref.abs().max() > 0, name
        torch.testing.assert_close(p.grad, ref, atol=1e-10, rtol=0, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("attn", ATTN)
def test_float32_equals_unpatched_hf(attn):
    torch.manual_seed(0)
    hf = LlamaForCausalLM(tiny_config(False, attn)).eval()
    ours = Decoder.from_hf(hf)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        ref, got = hf_logits(hf, ids, mask), ours(ids, mask)
    real = mask.bool()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got[real], ref[real], atol=1e-5, rtol=0)


def test_tied_weights_are_shared_and_parameters_counted(hf64):
    for tie in (True, False):
        hf = hf64(tie, "sdpa")
        ours = Decoder.from_hf(hf)
        assert (ours.lm_head.weight is ours.embed_tokens.weight) == tie
        assert ours.num_parameters() == hf.num_parameters()
        assert ours.num_parameters(exclude_embeddings=True) == hf.num_parameters(exclude_embeddings=True)
    assert Decoder(DecoderConfig(num_hidden_layers=1)).num_parameters(exclude_embeddings=True) == \
        576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536 + 2 * 576 + 576  # SmolLM2's shape, one layer


# ------------------------------------------------------------------------------ KV cache
@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_cache_equals_full_forward(hf64, impl):
    ours = Decoder.from_hf(hf64(False, "sdpa"), attn_impl=impl)
    ids, mask = left_padded_batch()
    nxt = torch.tensor([[5], [6], [7]])
    more = torch.tensor([[8, 9, 10], [11, 12, 13], [14, 15, 16]])
    full_ids = torch.cat((ids, nxt, more), 1)
    full_mask = torch.cat((mask, torch.ones(3, 4, dtype=torch.long)), 1)
    with torch.no_grad():
        full = ours(full_ids, full_mask)  # (3, 13, vocab)
        first, cache = ours(ids, mask, use_cache=True)
        step, cache2 = ours(nxt, full_mask[:, :10], past_key_values=cache, use_cache=True)
        chunk = ours(more, full_mask, past_key_values=cache2)  # 3 new tokens at once
    assert len(cache) == 2 and cache[0][0].shape == (3, 2, 9, 8) and cache2[0][1].shape == (3, 2, 10, 8)
    assert cache[0][0].shape[2] == 9  # the old cache is not modified
    real = mask.bool()
    torch.testing.assert_close(first[real], full[:, :9][real], atol=1e-10, rtol=0)
    torch.testing.assert_close(step[:, 0], full[:, 9], atol=1e-10, rtol=0)
    torch.testing.assert_close(chunk, full[:, 10:], atol=1e-10, rtol=0)


def test_cache_without_mask():
    torch.manual_seed(0)
    ours = Decoder(DecoderConfig.from_hf(tiny_config(True))).double().eval()
    ids = torch.randint(0, 97, (2, 6))
    with torch.no_grad():
        full = ours(ids)
        _, cache = ours(ids[:, :5], use_cache=True)
        step = ours(ids[:, 5:], past_key_values=cache)
    torch.testing.assert_close(step[:, 0], full[:, 5], atol=1e-10, rtol=0)


# ------------------------------------------------------------------------------ pieces
def test_rotary_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, generator=g, requires_grad=True)
    cos = torch.randn(2, 5, 8, dtype=torch.float64, generator=g, requires_grad=True)
    sin = torch.randn(2, 5, 8, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(apply_rotary_pos_emb, (x, cos, sin))
    assert torch.autograd.gradcheck(rotate_half, (x,))


def test_rotary_matches_hf_and_is_relative():
    cfg = tiny_config(False)
    hf_rope = modeling_llama.LlamaRotaryEmbedding(cfg)
    pos = torch.tensor([[0, 1, 5, 23], [3, 3, 0, 7]])
    x = torch.randn(2, 4, 4, 8, dtype=torch.float64)
    hf_cos, hf_sin = hf_rope(x, pos)
    cos, sin = rope_cos_sin(8, 24, 10000.0)
    assert torch.equal(cos[pos].double(), hf_cos) and torch.equal(sin[pos].double(), hf_sin)
    assert torch.equal(rotate_half(x), modeling_llama.rotate_half(x))
    # q.k after rotation depends only on the distance between the positions
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)

    def rot(v, m):  # v (8,) at position m -> (1, 1, 1, 8)
        return apply_rotary_pos_emb(v[None, None, None], cos[m][None, None].double(), sin[m][None, None].double())
    dots = [(rot(q, m + 3) * rot(k, m)).sum().item() for m in (0, 4, 17)]
    assert max(dots) - min(dots) < 1e-5 and abs(dots[0] - (q * k).sum().item()) > 1e-3


def test_repeat_kv_and_mask():
    x = torch.randn(2, 3, 5, 4)
    assert torch.equal(repeat_kv(x, 3), x.repeat_interleave(3, dim=1))
    assert torch.equal(repeat_kv(x, 1), x)
    keep = torch.tensor([[False, True, True, True]])
    m = decoder_attention_mask(keep, 2, 4)[0, 0]  # the last 2 of 4 positions are queries
    assert m.tolist() == [[False, True, True, False], [False, True, True, True]]
    m = decoder_attention_mask(keep, 4, 4)[0, 0]
    assert m[0].tolist() == [True, False, False, False]  # a padding query sees only itself
    assert position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1]])).tolist() == [[0, 0, 0, 1, 2]]


# ------------------------------------------------------------------------------ errors
@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return Decoder(DecoderConfig.from_hf(tiny_config(True))).eval()


def test_bad_input_ids(small):
    with pytest.raises(TypeError, match="2-D torch.long"):
        small(torch.randint(0, 97, (7,)))
    with pytest.raises(TypeError, match="2-D torch.long"):
        small(torch.randint(0, 97, (2, 7)).int())
    with pytest.raises(TypeError, match="2-D torch.long"):
        small(torch.rand(2, 7))
    with pytest.raises(ValueError, match=r"vocab_size=97"):
        small(torch.tensor([[1, 97]]))
    with pytest.raises(ValueError, match="no tokens"):
        small(torch.zeros(2, 0, dtype=torch.long))


def test_bad_attention_mask(small):
    ids = torch.randint(0, 97, (2, 7))
    with pytest.raises(ValueError, match=r"\(batch, past_len \+ seq\) = \(2, 7\)"):
        small(ids, torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="only 0 and 1"):
        small(ids, torch.full((2, 7), 2))
    _, cache = small(ids, use_cache=True)
    with pytest.raises(ValueError, match=r"= \(2, 8\)"):
        small(ids[:, :1], torch.ones(2, 1, dtype=torch.long), past_key_values=cache)  # must cover the past


def test_too_long(small):
    with pytest.raises(ValueError, match="max_position_embeddings 24"):
        small(torch.zeros(1, 25, dtype=torch.long))
    _, cache = small(torch.zeros(1, 20, dtype=torch.long), use_cache=True)
    with pytest.raises(ValueError, match=r"past 20 \+ new 5"):
        small(torch.zeros(1, 5, dtype=torch.long), past_key_values=cache)


def test_bad_cache(small):
    ids = torch.zeros(2, 3, dtype=torch.long)
    _, cache = small(ids, use_cache=True)
    with pytest.raises(ValueError, match="one \\(key, value\\) pair per layer: 2"):
        small(ids, past_key_values=cache[:1])
    with pytest.raises(ValueError, match="batch=1"):
        small(ids[:1], past_key_values=cache)
    with pytest.raises(TypeError, match="past_key_values"):
        small(ids, past_key_values=torch.zeros(1))


def test_bad_config():
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        DecoderConfig(num_attention_heads=9, num_key_value_heads=2)
    with pytest.raises(ValueError, match="not divisible"):
        DecoderConfig(hidden_size=100, num_attention_heads=9, num_key_value_heads=3)
    with pytest.raises(ValueError, match="attn_impl"):
        DecoderConfig(attn_impl="flash")
    with pytest.raises(ValueError, match="rope_type 'linear'"):
        DecoderConfig.from_hf(tiny_config(True, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                  "rope_theta": 10000.0}))
    with pytest.raises(ValueError, match="mlp_bias"):
        DecoderConfig.from_hf(tiny_config(True, mlp_bias=True))
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        Decoder.from_hf(nn.Linear(2, 2))


def test_equals_smollm2_on_a_left_padded_batch_and_its_cache():
    """The real model (SmolLM2-135M-Instruct, the packaged GGUF dequantised to float32): logits at the
    real positions of a left-padded batch, and the next token's logits through our KV cache."""
    from ftbook.resources import small_llm

    llm, tok = small_llm()
    ours = Decoder.from_hf(llm).eval()
    assert ours.config.num_hidden_layers == llm.config.num_hidden_layers == 30
    tok.padding_side = "left"
    enc = tok(["The capital of France is", "Hello", "A short story about a cat:"], return_tensors="pt",
              padding=True)
    mask = enc["attention_mask"]
    assert (mask == 0).any(), "the batch must be left-padded for this test to mean anything"
    with torch.no_grad():
        ref = llm(**enc, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        got = ours(enc["input_ids"], mask)
        real = mask.bool()
        assert (ref - got)[real].abs().max().item() < 1e-3
        assert torch.equal(ref[:, -1].argmax(-1), got[:, -1].argmax(-1))
        # the KV cache on the real model: the prompt, then one token, equal to one full forward
        nxt = got[:, -1].argmax(-1, keepdim=True)  # (3, 1)
        full_mask = torch.cat((mask, torch.ones_like(nxt)), 1)
        full = ours(torch.cat((enc["input_ids"], nxt), 1), full_mask)
        _, cache = ours(enc["input_ids"], mask, use_cache=True)
        step = ours(nxt, full_mask, past_key_values=cache)
    assert (step[:, 0] - full[:, -1]).abs().max().item() < 1e-3
