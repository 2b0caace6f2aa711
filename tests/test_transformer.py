"""Tests of ftbook.transformer: equal to transformers.BertModel on the packaged pretrained MiniLM
(padded batches, minGPT-style), explicit attention == SDPA (values and gradients), Pre-LN option,
classification head, bad inputs."""

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from ftbook.resources import minilm_path
from ftbook.transformer import (
    Encoder, EncoderConfig, EncoderForSequenceClassification, EncoderLayer, FeedForward,
    MultiHeadSelfAttention, count_parameters, hf_key_map,
)

SENTENCES = [
    "The cat sat on the mat, and then it fell asleep in the warm afternoon sun.",
    "Short one.",
    "Pre-training pays off when labels are few.",
]


@pytest.fixture(scope="module")
def minilm():
    path = minilm_path()
    return BertModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def batch(minilm):
    return minilm[1](SENTENCES, padding=True, return_tensors="pt")


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_equal_to_bertmodel_on_pretrained_minilm(minilm, batch, impl):
    hf, _ = minilm
    ours = Encoder.from_hf(hf, attn_impl=impl).eval()
    assert batch["attention_mask"].sum(1).unique().numel() == 3  # really padded
    with torch.no_grad():
        ref = hf(**batch).last_hidden_state
        got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert got.shape == ref.shape == (3, batch["input_ids"].shape[1], 384)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], ref[real], atol=1e-5, rtol=0)
    # Padded positions carry no meaning and are numerically ill-conditioned (HF's own eager and
    # SDPA paths differ there by ~2e-5); they must still be close, not garbage.
    torch.testing.assert_close(got[~real], ref[~real], atol=2e-4, rtol=0)


def test_padding_does_not_change_real_tokens(minilm, batch):
    hf, tok = minilm
    ours = Encoder.from_hf(hf).eval()
    with torch.no_grad():
        padded = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        one = tok(SENTENCES[1], return_tensors="pt")
        alone = ours(one["input_ids"], one["attention_mask"], one["token_type_ids"])
    n = one["input_ids"].shape[1]
    torch.testing.assert_close(padded[1, :n], alone[0], atol=1e-5, rtol=0)


def test_without_mask_padding_leaks(minilm, batch):
    """The mask matters: dropping it changes the short sentence's outputs (test can fail)."""
    hf, _ = minilm
    ours = Encoder.from_hf(hf).eval()
    with torch.no_grad():
        a = ours(batch["input_ids"], batch["attention_mask"])
        b = ours(batch["input_ids"], None)
    assert (a[1, :3] - b[1, :3]).abs().max() > 1e-2


def test_from_wrapped_models_and_classifier():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=32, max_position_embeddings=20, num_labels=3)
    hf = BertForSequenceClassification(cfg).eval()
    ids = torch.randint(5, 50, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    enc = Encoder.from_hf(hf).eval()  # a model wrapping a BertModel
    clf = EncoderForSequenceClassification.from_hf(hf).eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(ids, mask), hf.bert(ids, mask).last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(clf(ids, mask), hf(ids, mask).logits, atol=1e-5, rtol=0)


def test_explicit_and_sdpa_attention_equal_values_and_grads():
    torch.manual_seed(0)
    a = MultiHeadSelfAttention(32, 4, impl="explicit").double()
    b = MultiHeadSelfAttention(32, 4, impl="sdpa").double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 6, 32, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 5 + [0]])
    ya, yb = a(x, mask), b(x, mask)
    torch.testing.assert_close(ya, yb)
    ga = torch.autograd.grad(ya.pow(2).sum(), [x, *a.parameters()])
    gb = torch.autograd.grad(yb.pow(2).sum(), [x, *b.parameters()])
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)


def test_attention_gradcheck_float64():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2, impl="explicit").double()
    x = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert torch.autograd.gradcheck(lambda t: attn(t, mask), (x,))


def test_layer_equals_torch_transformer_encoder_layer():
    """Our Post-LN / Pre-LN block equals torch.nn.TransformerEncoderLayer (gelu, batch_first)."""
    for norm_first in (False, True):
        torch.manual_seed(0)
        cfg = EncoderConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=24, layer_norm_eps=1e-5, norm_first=norm_first)
        ours = EncoderLayer(cfg).eval()
        ref = torch.nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=norm_first).eval()
        with torch.no_grad():
            w = ours.attn
            ref.self_attn.in_proj_weight.copy_(torch.cat([w.query.weight, w.key.weight, w.value.weight]))
            ref.self_attn.in_proj_bias.copy_(torch.cat([w.query.bias, w.key.bias, w.value.bias]))
            ref.self_attn.out_proj.weight.copy_(w.out.weight)
            ref.self_attn.out_proj.bias.copy_(w.out.bias)
            ref.linear1.weight.copy_(ours.ffn.up.weight)
            ref.linear1.bias.copy_(ours.ffn.up.bias)
            ref.linear2.weight.copy_(ours.ffn.down.weight)
            ref.linear2.bias.copy_(ours.ffn.down.bias)
        x = torch.randn(2, 5, 16)
        mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
        with torch.no_grad():
            got = ours(x, mask)
            want = ref(x, src_key_padding_mask=mask == 0)
        real = mask.bool()
        torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_pre_ln_encoder_has_final_norm_and_runs():
    cfg = EncoderConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, norm_first=True)
    enc = Encoder(cfg).eval()
    assert enc.final_norm is not None
    out = enc(torch.randint(0, 30, (2, 6)))
    assert out.shape == (2, 6, 16)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)


def test_count_parameters_matches_hf(minilm):
    hf, _ = minilm
    parts = count_parameters(Encoder.from_hf(hf))
    pooler = sum(p.numel() for p in hf.pooler.parameters())
    assert parts["total"] == sum(p.numel() for p in hf.parameters()) - pooler
    assert parts["other"] == 0
    assert parts["embeddings"] == (30522 + 512 + 2) * 384
    assert parts["layer_norm"] == (1 + 2 * 6) * 2 * 384


def test_key_map_covers_every_parameter():
    enc = Encoder(EncoderConfig(vocab_size=20, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                                intermediate_size=16))
    assert set(hf_key_map(3)) == {n for n, _ in enc.named_parameters()}


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_size": 10, "num_attention_heads": 3}, "not divisible"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"attn_impl": "flash"}, "attn_impl"),
    ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EncoderConfig(**kwargs)


def test_from_hf_refuses_unsupported():
    with pytest.raises(TypeError, match="BertModel"):
        Encoder.from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="hidden_act"):
        EncoderConfig.from_hf(BertConfig(hidden_act="relu"))
    with pytest.raises(ValueError, match="position_embedding_type"):
        EncoderConfig.from_hf(BertConfig(position_embedding_type="relative_key"))


def test_forward_errors():
    enc = Encoder(EncoderConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=6))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        enc(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask shape"):
        enc(torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 5))
    with pytest.raises(ValueError, match="token_type_ids shape"):
        enc(torch.zeros(2, 4, dtype=torch.long), None, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        enc(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        MultiHeadSelfAttention(8, 2)(torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match="num_labels"):
        EncoderForSequenceClassification(enc.config, num_labels=0)


def test_feed_forward_is_exact_gelu():
    ff = FeedForward(4, 8)
    x = torch.randn(2, 3, 4)
    want = ff.down(torch.nn.functional.gelu(ff.up(x), approximate="none"))
    torch.testing.assert_close(ff(x), want)
