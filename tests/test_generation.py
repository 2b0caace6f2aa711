"""Tests of ftbook.generation: greedy tokens equal LlamaForCausalLM.generate (left-padded batch with
eos, with and without the KV cache, on our Decoder and on the HF model itself); the warpers equal
transformers' TemperatureLogitsWarper / TopKLogitsWarper / TopPLogitsWarper (ties, -inf, p edge
cases); seeded sampling; bad arguments."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
)

from ftbook.decoder import Decoder
from ftbook.generation import apply_temperature, generate, top_k_filter, top_p_filter

PAD = 0
NEW = 20


@pytest.fixture(scope="module")
def hf():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=40,
                      tie_word_embeddings=True, pad_token_id=PAD, bos_token_id=None,
                      eos_token_id=None)  # no default eos: generate(...) stops only where told
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharper logits than N(0, 0.02): fewer near-ties, more varied tokens
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def prompts():
    ids = torch.randint(3, 97, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :5] = 0
    return ids.masked_fill(mask == 0, PAD), mask


def hf_greedy(hf, ids, mask, **kw):
    return hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=PAD, **kw)


@pytest.fixture(scope="module")
def eos(hf, prompts):
    """An eos id that row 0 emits mid-way and row 2 never does (so both cases are exercised)."""
    new = hf_greedy(hf, *prompts)[:, 7:]
    for t in new[0, 3:12].tolist():
        if t not in new[2].tolist() and t != PAD:
            return t
    pytest.fail(f"no suitable eos id in {new.tolist()}")


# ------------------------------------------------------------------------------ greedy
@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("which", ["ours", "hf"])
def test_greedy_equals_hf_generate(hf, prompts, eos, use_cache, which):
    ids, mask = prompts
    ref = hf_greedy(hf, ids, mask, eos_token_id=eos)
    model = Decoder.from_hf(hf) if which == "ours" else hf
    got = generate(model, ids, NEW, attention_mask=mask, eos_token_id=eos, pad_token_id=PAD,
                   use_cache=use_cache)
    assert ref.shape == (3, 7 + NEW)
    row0 = ref[0, 7:].tolist()
    stop = row0.index(eos)
    assert stop < NEW - 1 and set(row0[stop + 1:]) == {PAD}  # row 0 finished, then padding
    assert eos not in ref[2, 7:].tolist()  # row 2 never finished
    assert torch.equal(got, ref)


def test_greedy_stops_when_every_row_finished(hf, prompts):
    ids, mask = prompts
    first = hf_greedy(hf, ids, mask)[:, 7:10]  # the first 3 new tokens of each row
    eos_ids = sorted(set(first[:, 2].tolist()))  # every row emits one of these by step 3
    ref = hf_greedy(hf, ids, mask, eos_token_id=eos_ids)
    got = generate(Decoder.from_hf(hf), ids, NEW, attention_mask=mask, eos_token_id=eos_ids, pad_token_id=PAD)
    assert ref.shape[1] <= 10 and torch.equal(got, ref)


def test_cache_on_off_and_no_mask(hf, prompts):
    ours = Decoder.from_hf(hf)
    ids = prompts[0][:1]  # one unpadded row, no attention_mask
    a = generate(ours, ids, NEW)
    b = generate(ours, ids, NEW, use_cache=False)
    assert a.shape == (1, 7 + NEW) and torch.equal(a, b) and torch.equal(a[:, :7], ids)
    assert torch.equal(generate(ours, ids, 0), ids)


def test_too_long_for_the_model(hf, prompts):
    with pytest.raises(ValueError, match="max_position_embeddings 40"):
        generate(Decoder.from_hf(hf), prompts[0], 40)


# ------------------------------------------------------------------------------ warpers
def logits_cases():
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(6, 50, generator=g)
    ties = torch.randint(0, 4, (6, 50), generator=g).float()  # many equal logits
    with_inf = rand.clone()
    with_inf[:, ::3] = float("-inf")  # already filtered tokens
    peaked = rand * 20  # nearly one-hot
    halves = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125]]))  # exact cumulative sums
    return {"rand": rand, "ties": ties, "with_inf": with_inf, "peaked": peaked, "halves": halves}


@pytest.mark.parametrize("case", list(logits_cases()))
@pytest.mark.parametrize("k", [1, 2, 3, 10, 50, 1000])
def test_top_k_equals_transformers(case, k):
    logits = logits_cases()[case]
    ref = TopKLogitsWarper(top_k=k)(None, logits)
    got = top_k_filter(logits, k)
    assert torch.equal(got, ref)
    assert (got.isfinite().sum(-1) >= min(k, logits.isfinite().sum(-1).min())).all()


@pytest.mark.parametrize("case", list(logits_cases()))
@pytest.mark.parametrize("p", [1e-9, 0.05, 0.3, 0.5, 0.75, 0.875, 0.9, 0.999, 1.0])
def test_top_p_equals_transformers(case, p):
    logits = logits_cases()[case]
    ref = TopPLogitsWarper(top_p=p)(None, logits)
    got = top_p_filter(logits, p)
    assert torch.equal(got, ref)
    assert (got.isfinite().sum(-1) >= 1).all()  # always at least one token


@pytest.mark.parametrize("p", [0.05, 0.3, 0.6, 0.9])
def test_top_p_is_the_smallest_set_reaching_p(p):
    """From the definition, independent of transformers' code (no ties in random logits)."""
    logits = torch.randn(8, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    kept = top_p_filter(logits, p).isfinite()
    probs = logits.softmax(-1)
    for row in range(8):
        order = probs[row].argsort(descending=True)
        n = int((probs[row][order].cumsum(0) < p).sum()) + 1  # fewest top tokens summing to >= p
        assert kept[row].sum() == n and kept[row][order[:n]].all()


def test_top_p_exact_boundaries():
    logits = torch.log(torch.tensor([[0.125, 0.5, 0.125, 0.25]]))
    assert top_p_filter(logits, 0.5).isfinite().tolist() == [[False, True, False, False]]
    assert top_p_filter(logits, 0.75).isfinite().tolist() == [[False, True, False, True]]
    assert top_p_filter(logits, 0.76).isfinite().sum() == 3
    assert top_p_filter(logits, 1.0).isfinite().all()
    assert top_p_filter(logits, 1e-9).isfinite().tolist() == [[False, True, False, False]]


@pytest.mark.parametrize("t", [0.3, 0.7, 1.0, 2.0])
def test_temperature_equals_transformers(t):
    logits = logits_cases()["rand"]
    assert torch.equal(apply_temperature(logits, t), TemperatureLogitsWarper(t)(None, logits))


# ------------------------------------------------------------------------------ sampling
def test_seeded_sampling(hf, prompts):
    ours = Decoder.from_hf(hf)
    ids, mask = prompts

    def sample(seed, **kw):
        return generate(ours, ids, NEW, attention_mask=mask, do_sample=True, temperature=1.5,
                        generator=torch.Generator().manual_seed(seed), **kw)
    a, b, c = sample(0, top_k=30, top_p=0.95), sample(0, top_k=30, top_p=0.95), sample(1, top_k=30, top_p=0.95)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(a[:, :7], ids)
    greedy = generate(ours, ids, NEW, attention_mask=mask)
    assert torch.equal(sample(5, top_k=1), greedy)  # top_k=1 leaves only the argmax
    assert not torch.equal(sample(5), greedy)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kw, match", [
    ({"temperature": 0.0}, "temperature must be a positive"),
    ({"temperature": -1.0}, "temperature must be a positive"),
    ({"top_p": 0.0}, r"top_p must be a probability in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be a probability in \(0, 1\]"),
    ({"top_p": -0.1}, r"top_p must be a probability in \(0, 1\]"),
    ({"top_k": 0}, "top_k must be a positive int"),
    ({"top_k": 2.5}, "top_k must be a positive int"),
    ({"eos_token_id": -3}, "eos_token_id"),
])
def test_bad_sampling_arguments(hf, prompts, kw, match):
    with pytest.raises(ValueError, match=match):
        generate(hf, prompts[0], 3, do_sample=True, **kw)


def test_bad_generate_arguments(hf, prompts):
    ids, mask = prompts
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        generate(hf, ids, -1)
    with pytest.raises(TypeError, match="2-D torch.long"):
        generate(hf, ids.float(), 3)
    with pytest.raises(ValueError, match="shape of input_ids"):
        generate(hf, ids, 3, attention_mask=mask[:, 1:])
    with pytest.raises(TypeError, match="torch.Generator"):
        generate(hf, ids, 3, do_sample=True, generator=0)
    with pytest.raises(ValueError, match="top_k must be"):
        top_k_filter(torch.zeros(2, 5), 0)
    with pytest.raises(ValueError, match="top_p must be"):
        top_p_filter(torch.zeros(2, 5), 1.01)
    with pytest.raises(TypeError, match="floating-point"):
        top_k_filter(torch.zeros(2, 5, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="ftbook Decoder or a transformers causal LM"):
        generate(lambda **kw: None, ids, 3)
