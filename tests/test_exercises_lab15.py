"""Checkers of lab 15: the right answer passes, None fails, typical mistakes fail with their message."""

import copy
import math

import pytest
import torch
from torch import nn

from ftbook.exercises import check, get, lab15
from ftbook.lora import LoRALinear, apply_lora, count_parameters


def test_registered_with_levels():
    levels = [get(f"lab15.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab15.t{k}").prompt for k in range(1, 7))


def test_t1_count():
    h, layers, r = 256, 4, 8
    right = layers * 4 * r * (2 * h) + (2 * h + 2)
    assert right == count_parameters(apply_lora(lab15.t1_model(), r, 16, lab15.T1_TARGETS,
                                                modules_to_save=["classifier"]))[0]
    assert check("lab15.t1", right, quiet=True)
    assert not check("lab15.t1", None, quiet=True)
    assert not check("lab15.t1", "66050", quiet=True)
    with pytest.raises(AssertionError, match="分类头"):
        lab15.t1(right - (2 * h + 2))
    every_dense = count_parameters(apply_lora(lab15.t1_model(), r, 16, ["query", "key", "value", "dense"],
                                              modules_to_save=["classifier"]))[0]
    with pytest.raises(AssertionError, match="dense"):
        lab15.t1(every_dense)
    with pytest.raises(AssertionError, match="A 和 B"):
        lab15.t1(layers * 4 * r * h + 2 * h + 2)  # only A (or only B) counted
    with pytest.raises(AssertionError, match="冻结的 W"):
        lab15.t1(4_615_170)


def test_t2_merge():
    assert check("lab15.t2", lambda W, A, B, alpha, r: W + alpha / r * (B @ A), quiet=True)
    assert not check("lab15.t2", None, quiet=True)
    assert not check("lab15.t2", 3.0, quiet=True)
    assert not check("lab15.t2", lambda W, A, B, alpha, r: None, quiet=True)
    with pytest.raises(AssertionError, match="少了缩放系数"):
        lab15.t2(lambda W, A, B, alpha, r: W + B @ A)
    with pytest.raises(AssertionError, match="不是 alpha。"):
        lab15.t2(lambda W, A, B, alpha, r: W + alpha * (B @ A))
    with pytest.raises(AssertionError, match="写反了"):
        lab15.t2(lambda W, A, B, alpha, r: W + r / alpha * (B @ A))
    with pytest.raises(AssertionError, match="只是增量"):
        lab15.t2(lambda W, A, B, alpha, r: alpha / r * (B @ A))
    with pytest.raises(AssertionError, match="形状"):
        lab15.t2(lambda W, A, B, alpha, r: W + alpha / r * (A @ B))


class GoodLoRA(nn.Module):
    def __init__(self, base, r, alpha, zero_b=True, scale=True, freeze=True):
        super().__init__()
        self.base = base
        if freeze:
            base.requires_grad_(False)
        self.scaling = alpha / r if scale else 1.0
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        if not zero_b:
            nn.init.normal_(self.lora_B)

    def forward(self, x):
        return self.base(x) + x @ self.lora_A.T @ self.lora_B.T * self.scaling


def test_t3_layer():
    assert check("lab15.t3", GoodLoRA, quiet=True)
    assert not check("lab15.t3", None, quiet=True)
    assert not check("lab15.t3", 1, quiet=True)
    with pytest.raises(AssertionError, match="本身"):
        lab15.t3(LoRALinear)
    with pytest.raises(AssertionError, match="lora_B 应初始化为零"):
        lab15.t3(lambda b, r, a: GoodLoRA(b, r, a, zero_b=False))
    with pytest.raises(AssertionError, match="缩放系数"):
        lab15.t3(lambda b, r, a: GoodLoRA(b, r, a, scale=False))
    with pytest.raises(AssertionError, match="没有冻结"):
        lab15.t3(lambda b, r, a: GoodLoRA(b, r, a, freeze=False))

    class Swapped(GoodLoRA):
        def __init__(self, base, r, alpha):
            super().__init__(base, r, alpha)
            self.lora_A = nn.Parameter(torch.randn(base.in_features, r))
            self.lora_B = nn.Parameter(torch.zeros(r, base.out_features))

    with pytest.raises(AssertionError, match="形状不对"):
        lab15.t3(Swapped)

    class Detached(GoodLoRA):
        def forward(self, x):
            return self.base(x) + (x @ self.lora_A.T).detach() @ self.lora_B.T * self.scaling

    with pytest.raises(AssertionError, match="梯度"):
        lab15.t3(Detached)


def _grad_norms(alpha=8):
    base, x, y, inits = lab15.t4_setup()
    out = {}
    for name, (A, B) in inits.items():
        layer = LoRALinear(copy.deepcopy(base), r=4, alpha=alpha)
        with torch.no_grad():
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
        ((layer(x) - y) ** 2).mean().backward()
        out[name] = (layer.lora_A.grad.norm().item(), layer.lora_B.grad.norm().item())
    return out


def test_t4_init_gradients():
    right = _grad_norms()
    assert right["A=0, B=0"] == (0.0, 0.0) and right["A 随机, B=0"][0] == 0.0 < right["A 随机, B=0"][1]
    assert check("lab15.t4", right, quiet=True)
    assert not check("lab15.t4", None, quiet=True)
    assert not check("lab15.t4", [1, 2], quiet=True)
    assert not check("lab15.t4", {"A 随机, B=0": (0, 1)}, quiet=True)
    with pytest.raises(AssertionError, match="顺序反了"):
        lab15.t4({k: (b, a) for k, (a, b) in right.items()})
    with pytest.raises(AssertionError, match="alpha/r"):
        lab15.t4(_grad_norms(alpha=4))  # scaling 1 instead of 2


def test_t5_rank_experiment():
    right = {r: lab15.t5_bound(r) * 1.01 for r in lab15.T5_RANKS}
    assert math.isclose(lab15.t5_bound(1), (9 + 4 + 1) / 32, rel_tol=1e-5)
    assert lab15.t5_bound(4) < 1e-10
    assert check("lab15.t5", right, quiet=True)
    assert not check("lab15.t5", None, quiet=True)
    assert not check("lab15.t5", [0.4, 0.1], quiet=True)
    assert not check("lab15.t5", {1: 0.4, 2: 0.15}, quiet=True)
    with pytest.raises(AssertionError, match="下界"):
        lab15.t5({**right, 1: 0.01})  # the frozen base was trained too
    with pytest.raises(AssertionError, match="收敛"):
        lab15.t5({**right, 2: 0.3})
    with pytest.raises(AssertionError, match="接近 0"):
        lab15.t5({**right, 4: 0.05})


def _matches(name, targets):
    return any(name == t or name.endswith("." + t) for t in targets)


def good_apply(model, r, alpha, targets, saved, rule=_matches, freeze_first=True, save=True, freeze=True):
    if freeze and freeze_first:
        model.requires_grad_(False)
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and rule(n, targets)]
    for name in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    if freeze and not freeze_first:
        model.requires_grad_(False)
    if save:
        for name, m in model.named_modules():
            if name and _matches(name, saved):
                m.requires_grad_(True)
    return model


def test_t6_apply_lora():
    assert check("lab15.t6", good_apply, quiet=True)
    assert not check("lab15.t6", None, quiet=True)
    assert not check("lab15.t6", "apply_lora", quiet=True)
    with pytest.raises(AssertionError, match="return model"):
        lab15.t6(lambda *a: None)
    with pytest.raises(AssertionError, match="含有"):
        lab15.t6(lambda *a: good_apply(*a, rule=lambda n, ts: any(t in n for t in ts)))
    with pytest.raises(AssertionError, match="顶层"):
        lab15.t6(lambda *a: good_apply(*a, rule=lambda n, ts: any(n.endswith("." + t) for t in ts)))
    with pytest.raises(AssertionError, match="先冻结，再包装"):
        lab15.t6(lambda *a: good_apply(*a, freeze_first=False))
    with pytest.raises(AssertionError, match="head"):
        lab15.t6(lambda *a: good_apply(*a, save=False))
    with pytest.raises(AssertionError, match="应当冻结"):
        lab15.t6(lambda *a: good_apply(*a, freeze=False))
    with pytest.raises(AssertionError, match="调用出错"):
        lab15.t6(lambda model, *a: apply_lora(model, *a[:3], modules_to_save=["missing"]))
