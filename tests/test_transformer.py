"""Tests of ftbook.transformer: equal to transformers.BertModel on the packaged pretrained MiniLM
(padded batches, minGPT-style), explicit attention == SDPA (values and gradients), Pre-LN option,
classification head, bad inputs."""

import pytest
import torch
import torch.nn.functional as F
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


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("hf_attn", ["eager", "sdpa"])
def test_outputs_and_every_gradient_equal_bertmodel_float64(impl, hf_attn):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=16, type_vocab_size=2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation=hf_attn)
    hf = BertModel(cfg, add_pooling_layer=False)
    ours = Encoder.from_hf(hf, attn_impl=impl)  # float32 weights copied, then both in float64
    hf, ours = hf.double().train(), ours.double().train()  # dropout 0: train mode is deterministic
    ids = torch.randint(1, 40, (3, 9))
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3, [1] * 2 + [0] * 7])
    types = torch.tensor([[0] * 5 + [1] * 4, [0] * 3 + [1] * 6, [0] * 9])
    probe = torch.randn(3, 9, 32, dtype=torch.float64)  # a fixed random projection of every output
    want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    got = ours(ids, mask, types)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)  # padded positions too
    (want * probe).sum().backward()  # the same scalar loss of both
    (got * probe).sum().backward()
    hf_params = dict(hf.named_parameters())
    for name, theirs in hf_key_map(cfg.num_hidden_layers).items():
        p_ours, p_hf = dict(ours.named_parameters())[name], hf_params[theirs]
        assert p_hf.grad is not None and p_hf.grad.abs().sum() > 0, theirs
        torch.testing.assert_close(p_ours.grad, p_hf.grad, atol=1e-12, rtol=1e-9, msg=name)


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
    # (A sequence of only padding is left out: BERT's finite mask finfo.min swamps every score,
    # the forward pass is flat in x there while autograd's softmax Jacobian is not.)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert torch.autograd.gradcheck(lambda t: attn(t, mask), (x,))
    params = tuple(attn.parameters())
    assert torch.autograd.gradcheck(lambda *ps: torch.func.functional_call(
        attn, dict(zip([n for n, _ in attn.named_parameters()], ps)), (x.detach(), mask)), params)


def _copy_to_torch_layer(ours: EncoderLayer, ref: torch.nn.TransformerEncoderLayer) -> None:
    """Our layer's weights into a torch.nn.TransformerEncoderLayer (random LayerNorm gains too)."""
    with torch.no_grad():
        for norm in (ours.norm1, ours.norm2):
            for p in norm.parameters():
                p.normal_()
        w = ours.attn
        ref.self_attn.in_proj_weight.copy_(torch.cat([w.query.weight, w.key.weight, w.value.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([w.query.bias, w.key.bias, w.value.bias]))
        ref.self_attn.out_proj.load_state_dict(w.out.state_dict())
        ref.linear1.load_state_dict(ours.ffn.up.state_dict())
        ref.linear2.load_state_dict(ours.ffn.down.state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())


def test_layer_equals_torch_transformer_encoder_layer():
    """Our Post-LN / Pre-LN block equals torch.nn.TransformerEncoderLayer (gelu, batch_first)."""
    for norm_first in (False, True):
        torch.manual_seed(0)
        cfg = EncoderConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=24, layer_norm_eps=1e-5, norm_first=norm_first)
        ours = EncoderLayer(cfg).eval()
        ref = torch.nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=norm_first).eval()
        _copy_to_torch_layer(ours, ref)
        x = torch.randn(2, 5, 16)
        mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
        with torch.no_grad():
            got = ours(x, mask)
            want = ref(x, src_key_padding_mask=mask == 0)
        real = mask.bool()
        torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_pre_ln_encoder_equals_torch_transformer_encoder_with_final_norm():
    """Pre-LN stack + final LayerNorm == torch.nn.TransformerEncoder(norm_first=True, norm=LayerNorm)."""
    torch.manual_seed(0)
    cfg = EncoderConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, layer_norm_eps=1e-5, norm_first=True)
    enc = Encoder(cfg).eval()
    assert enc.final_norm is not None
    with torch.no_grad():
        for p in enc.final_norm.parameters():
            p.normal_()  # not the identity: the final norm's weights must be used
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True,
                                             norm_first=True)
    ref = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(16, eps=1e-5),
                                      enable_nested_tensor=False).eval()
    for ours, theirs in zip(enc.layers, ref.layers):
        _copy_to_torch_layer(ours, theirs)
    ref.norm.load_state_dict(enc.final_norm.state_dict())
    ids = torch.randint(1, 30, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad():
        got = enc(ids, mask)
        want = ref(enc.embeddings(ids), src_key_padding_mask=mask == 0)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_count_parameters_matches_hf(minilm):
    hf, _ = minilm
    parts = count_parameters(Encoder.from_hf(hf))
    sizes = {n: p.numel() for n, p in hf.named_parameters() if not n.startswith("pooler.")}
    assert parts["total"] == sum(sizes.values())
    assert parts["other"] == 0

    def hf_sum(keep):
        return sum(v for n, v in sizes.items() if keep(n))

    assert parts["layer_norm"] == hf_sum(lambda n: "LayerNorm" in n)
    assert parts["embeddings"] == hf_sum(lambda n: n.startswith("embeddings.") and "LayerNorm" not in n)
    assert parts["attention"] == hf_sum(lambda n: ".attention." in n and "LayerNorm" not in n)
    assert parts["feed_forward"] == hf_sum(lambda n: ".intermediate." in n or ".output.dense." in n
                                           and ".attention." not in n)


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


@pytest.mark.parametrize("hidden_act,equal", [("gelu", True), ("gelu_new", False)])
def test_feed_forward_is_berts_exact_gelu(hidden_act, equal):
    """Equal to BERT's own feed-forward (BertIntermediate, then BertOutput's dense layer), whose
    'gelu' is the exact erf form; the tanh approximation ('gelu_new') is not it."""
    from transformers.models.bert.modeling_bert import BertIntermediate

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=4, intermediate_size=8, hidden_act=hidden_act)
    ff = FeedForward(4, 8).double()
    inter = BertIntermediate(cfg).double()
    inter.dense.load_state_dict(ff.up.state_dict())
    x = torch.randn(2, 3, 4, dtype=torch.float64) * 3
    want = F.linear(inter(x), ff.down.weight, ff.down.bias)
    assert torch.allclose(ff(x), want, atol=1e-12, rtol=0) == equal
