"""ftbook.lora against the peft library (the twin): same logits, gradients, merges and counts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from ftbook.lora import (
    LoRALinear,
    apply_lora,
    count_parameters,
    load_lora_state_dict,
    lora_state_dict,
    merge_lora,
)

R, ALPHA = 4, 8.0
TOL = dict(rtol=0, atol=1e-12)


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(cfg).double().eval()


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=60, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, attn_implementation="eager",
    )
    return LlamaForCausalLM(cfg).double().eval()


# (name, model factory, target_modules, modules_to_save)
CASES = {
    "bert": (tiny_bert, ["query", "value"], ["classifier"]),
    "llama": (tiny_llama, ["q_proj", "v_proj"], None),
    "llama_regex": (tiny_llama, r".*\.(q_proj|v_proj)", None),
}


def batch(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 60, (3, 7), generator=g)  # (batch, seq)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    labels = torch.tensor([0, 2, 1]) if kind == "bert" else ids
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def twins(case: str):
    """(base, ours, peft_model) with peft's random A and B copied into ours."""
    factory, targets, saved = CASES[case]
    base = factory()
    cfg = LoraConfig(
        r=R, lora_alpha=ALPHA, target_modules=targets, lora_dropout=0.0,
        init_lora_weights=False, modules_to_save=saved,
    )
    theirs = get_peft_model(copy.deepcopy(base), cfg)
    ours = apply_lora(copy.deepcopy(base), R, ALPHA, targets, modules_to_save=saved)
    inner = theirs.base_model.model
    copied = 0
    with torch.no_grad():
        for name, module in inner.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                layer = ours.get_submodule(name)
                assert isinstance(layer, LoRALinear), name
                layer.lora_A.copy_(module.lora_A["default"].weight)  # (r, in)
                layer.lora_B.copy_(module.lora_B["default"].weight)  # (out, r)
                copied += 1
    assert copied == len([m for m in ours.modules() if isinstance(m, LoRALinear)]) == 4  # 2 layers x 2 targets
    return base, ours, theirs


def peft_lora_layers(theirs):
    inner = theirs.base_model.model
    return {n: m for n, m in inner.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_equal_peft(case):
    _, ours, theirs = twins(case)
    kind = case.split("_")[0]
    x = {k: v for k, v in batch(kind).items() if k != "labels"}
    with torch.no_grad():
        a, b = ours(**x).logits, theirs(**x).logits
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_equal_peft(case):
    _, ours, theirs = twins(case)
    kind = case.split("_")[0]
    ours(**batch(kind)).loss.backward()
    theirs(**batch(kind)).loss.backward()
    for name, module in peft_lora_layers(theirs).items():
        layer = ours.get_submodule(name)
        torch.testing.assert_close(layer.lora_A.grad, module.lora_A["default"].weight.grad, **TOL)
        torch.testing.assert_close(layer.lora_B.grad, module.lora_B["default"].weight.grad, **TOL)
        assert layer.base.weight.grad is None
    if kind == "bert":  # the fully trained head gets the same gradient as peft's copy of it
        head = theirs.base_model.model.classifier.modules_to_save["default"]
        torch.testing.assert_close(ours.classifier.weight.grad, head.weight.grad, **TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_merge_equals_peft_merge_and_unload(case):
    _, ours, theirs = twins(case)
    kind = case.split("_")[0]
    x = {k: v for k, v in batch(kind).items() if k != "labels"}
    with torch.no_grad():
        before = ours(**x).logits
    names = list(peft_lora_layers(theirs))
    expected = {n: ours.get_submodule(n).merged_weight().detach().clone() for n in names}
    merged_theirs = theirs.merge_and_unload()
    merged_ours = merge_lora(ours)
    assert not any(isinstance(m, LoRALinear) for m in merged_ours.modules())
    for n in names:
        mine, peft_layer = merged_ours.get_submodule(n), merged_theirs.get_submodule(n)
        assert type(mine) is nn.Linear
        torch.testing.assert_close(mine.weight, peft_layer.weight, **TOL)
        torch.testing.assert_close(mine.weight, expected[n], **TOL)
        if peft_layer.bias is not None:
            assert torch.equal(mine.bias, peft_layer.bias)
    theirs_sd = merged_theirs.state_dict()
    ours_sd = merged_ours.state_dict()
    assert set(ours_sd) == set(theirs_sd)
    for k in ours_sd:
        torch.testing.assert_close(ours_sd[k], theirs_sd[k], **TOL)
    with torch.no_grad():
        torch.testing.assert_close(merged_ours(**x).logits, before, **TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_parameter_counts_equal_peft(case):
    base, ours, theirs = twins(case)
    trainable, total = count_parameters(ours)
    peft_trainable, peft_total = theirs.get_nb_trainable_parameters()
    assert trainable == peft_trainable
    lora = sum(m.lora_A.numel() + m.lora_B.numel() for m in ours.modules() if isinstance(m, LoRALinear))
    assert total == sum(p.numel() for p in base.parameters()) + lora
    if case == "bert":
        # peft keeps the original head *and* a trainable copy of it, so its total counts the head twice
        head = sum(p.numel() for p in base.classifier.parameters())
        assert trainable == lora + head
        assert peft_total == total + head
    else:
        assert trainable == lora
        assert total == peft_total


def test_regex_and_list_targets_wrap_the_same_layers():
    by_list = apply_lora(tiny_llama(), R, ALPHA, ["q_proj", "v_proj"])
    by_regex = apply_lora(tiny_llama(), R, ALPHA, r".*\.(q_proj|v_proj)")
    names = lambda m: [n for n, x in m.named_modules() if isinstance(x, LoRALinear)]  # noqa: E731
    assert names(by_list) == names(by_regex)
    assert names(by_list) == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    # fullmatch, not search: a regex matching only part of the name wraps nothing and is an error
    with pytest.raises(ValueError, match="matches no module"):
        apply_lora(tiny_llama(), R, ALPHA, r"q_proj")


@pytest.mark.parametrize("factory,targets", [(tiny_bert, ["query", "value"]), (tiny_llama, ["q_proj", "v_proj"])])
def test_fresh_adapter_changes_nothing(factory, targets):
    base = factory()
    model = apply_lora(copy.deepcopy(base), R, ALPHA, targets)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            assert torch.count_nonzero(m.lora_B) == 0 and torch.count_nonzero(m.lora_A) > 0
    x = {k: v for k, v in batch("bert" if factory is tiny_bert else "llama").items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**x).logits, base(**x).logits)


def test_lora_linear_shapes_and_init_like_peft():
    torch.manual_seed(0)
    base = nn.Linear(256, 96)
    layer = LoRALinear(base, r=8, alpha=16)
    assert layer.lora_A.shape == (8, 256) and layer.lora_B.shape == (96, 8)
    assert isinstance(layer.lora_A, nn.Parameter) and isinstance(layer.lora_B, nn.Parameter)
    assert layer.scaling == 2.0 and isinstance(layer.lora_dropout, nn.Identity)
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert torch.count_nonzero(layer.lora_B) == 0
    # peft's default init (init_lora_weights=True): kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
    theirs = get_peft_model(nn.Sequential(nn.Linear(256, 96)), LoraConfig(r=8, lora_alpha=16, target_modules=["0"]))
    peft_a = theirs.base_model.model[0].lora_A["default"].weight
    bound = 1 / math.sqrt(256)
    for a in (layer.lora_A, peft_a):
        assert a.abs().max() <= bound and a.abs().max() > 0.95 * bound
        assert abs(a.std().item() - bound / math.sqrt(3)) < 0.1 * bound
    x = torch.randn(2, 5, 256)  # (batch, seq, in)
    assert layer(x).shape == (2, 5, 96)
    assert LoRALinear(nn.Linear(4, 4), 2, 2, dropout=0.25).lora_dropout.p == 0.25


def test_state_dict_round_trip_through_safetensors(tmp_path):
    _, ours, _ = twins("bert")
    state = lora_state_dict(ours)
    assert len(state) == 8 and all(k.endswith((".lora_A", ".lora_B")) for k in state)
    assert state["bert.encoder.layer.0.attention.self.query.lora_A"].shape == (R, 16)
    save_file(state, tmp_path / "adapter.safetensors")
    fresh = apply_lora(tiny_bert(), R, ALPHA, ["query", "value"], modules_to_save=["classifier"])
    fresh.classifier.load_state_dict(ours.classifier.state_dict())
    load_lora_state_dict(fresh, load_file(tmp_path / "adapter.safetensors"))
    x = {k: v for k, v in batch("bert").items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(fresh(**x).logits, ours(**x).logits)
    for k, v in lora_state_dict(fresh).items():
        assert torch.equal(v, state[k])


def test_training_only_lora_leaves_base_bit_identical():
    base = tiny_bert()
    model = apply_lora(copy.deepcopy(base), R, ALPHA, ["query", "value"], modules_to_save=["classifier"])
    model.train()
    # hand AdamW *all* parameters: frozen ones get no gradient, so even weight decay must leave them alone
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    losses = []
    for _ in range(5):
        loss = model(**batch("bert")).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    trained = dict(model.named_parameters())
    for name, p in base.named_parameters():
        if name.startswith("classifier."):
            assert not torch.equal(trained[name], p), name  # the head is trained in full
            continue
        wrapped = name.replace(".query.", ".query.base.").replace(".value.", ".value.base.")
        assert torch.equal(trained[wrapped], p), name
    assert all(torch.count_nonzero(m.lora_B) > 0 for m in model.modules() if isinstance(m, LoRALinear))


# ---- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(r=0), ValueError, "rank r must be a positive int, got r=0"),
        (dict(r=-2), ValueError, "r=-2"),
        (dict(r=4.0), TypeError, "rank r must be an int"),
        (dict(r=True), TypeError, "rank r must be an int"),
        (dict(alpha=0), ValueError, "alpha must be > 0"),
        (dict(alpha=-1.5), ValueError, "alpha=-1.5"),
        (dict(alpha="8"), TypeError, "alpha must be a number"),
        (dict(dropout=1.0), ValueError, r"dropout must lie in \[0, 1\)"),
        (dict(dropout=-0.1), ValueError, "dropout=-0.1"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, error, message):
    args = dict(r=R, alpha=ALPHA, target_modules=["query"], dropout=0.0) | kwargs
    with pytest.raises(error, match=message):
        apply_lora(tiny_bert(), **args)
    lin_args = {k: v for k, v in args.items() if k != "target_modules"}
    with pytest.raises(error, match=message):
        LoRALinear(nn.Linear(4, 4), **lin_args)


def test_target_that_matches_nothing_lists_existing_names():
    with pytest.raises(ValueError, match=r"'q_proj' matches no module.*bert\.encoder\.layer\.0\.attention\.self\.query"):
        apply_lora(tiny_bert(), R, ALPHA, ["query", "q_proj"])
    with pytest.raises(ValueError, match=r"regex '\.\*nothing' matches no module"):
        apply_lora(tiny_bert(), R, ALPHA, r".*nothing")
    with pytest.raises(ValueError, match="empty list"):
        apply_lora(tiny_bert(), R, ALPHA, [])
    with pytest.raises(ValueError, match="modules_to_save entry 'head' matches no module"):
        apply_lora(tiny_bert(), R, ALPHA, ["query"], modules_to_save=["head"])


def test_target_that_is_not_linear_names_its_type():
    with pytest.raises(TypeError, match="is a BertAttention, but LoRA here wraps only nn.Linear"):
        apply_lora(tiny_bert(), R, ALPHA, ["attention"])
    with pytest.raises(TypeError, match="is a Embedding"):
        apply_lora(tiny_llama(), R, ALPHA, ["embed_tokens"])
    with pytest.raises(TypeError, match="wraps an nn.Linear, got Conv1d"):
        LoRALinear(nn.Conv1d(2, 2, 1), R, ALPHA)


def test_target_inside_modules_to_save_is_refused():
    with pytest.raises(ValueError, match="lies inside modules_to_save 'classifier'"):
        apply_lora(tiny_bert(), R, ALPHA, ["query", "classifier"], modules_to_save=["classifier"])


def test_already_wrapped_model_is_refused():
    model = apply_lora(tiny_bert(), R, ALPHA, ["query"])
    with pytest.raises(ValueError, match="already contains LoRALinear"):
        apply_lora(model, R, ALPHA, ["value"])


def test_merge_and_state_dict_need_lora_layers():
    with pytest.raises(ValueError, match="no LoRALinear layer to merge"):
        merge_lora(tiny_bert())
    with pytest.raises(ValueError, match="no LoRALinear layer"):
        lora_state_dict(tiny_bert())


def test_load_lora_state_dict_checks_keys_and_shapes():
    model = apply_lora(tiny_bert(), R, ALPHA, ["query", "value"])
    state = lora_state_dict(model)
    other_rank = lora_state_dict(apply_lora(tiny_bert(), 2, ALPHA, ["query", "value"]))
    with pytest.raises(ValueError, match=r"shape mismatch for .*lora_A.*state has \(2, 16\), model expects \(4, 16\)"):
        load_lora_state_dict(model, other_rank)
    with pytest.raises(KeyError, match="missing keys"):
        load_lora_state_dict(model, {k: v for k, v in state.items() if ".value." not in k})
    with pytest.raises(KeyError, match="unexpected keys.*extra"):
        load_lora_state_dict(model, state | {"extra.lora_A": torch.zeros(1)})
    before = lora_state_dict(model)
    with pytest.raises(ValueError):
        load_lora_state_dict(model, other_rank)
    assert all(torch.equal(v, before[k]) for k, v in lora_state_dict(model).items())  # nothing half-loaded


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.out_proj = nn.Linear(4, 4)  # ends with "proj" but not with ".proj"
        self.gate = nn.Linear(4, 4)


@pytest.mark.parametrize("targets", [["proj"], ["block.0.proj", "gate"], r"block\.\d\.(proj|gate)", r".*proj"])
def test_matching_rule_wraps_what_peft_wraps(targets):
    def model():
        torch.manual_seed(0)
        m = nn.Module()
        m.block = nn.ModuleList([_Block(), _Block()])
        return m

    theirs = get_peft_model(model(), LoraConfig(r=2, lora_alpha=2, target_modules=targets))
    expected = sorted(n for n, _ in peft_lora_layers(theirs).items())
    ours = apply_lora(model(), 2, 2, targets)
    assert sorted(n for n, m in ours.named_modules() if isinstance(m, LoRALinear)) == expected
