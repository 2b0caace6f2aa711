"""Each checker of chapter 15 accepts the right answer (computed from the code) and rejects wrong ones."""

import torch
from torch import nn

from ftbook.exercises import check
from ftbook.lora import LoRALinear, count_parameters


def _layer(in_features=768, out_features=3072, r=8):
    torch.manual_seed(0)
    return LoRALinear(nn.Linear(in_features, out_features), r=r, alpha=16)


def test_q1_matches_the_module():
    right = count_parameters(_layer())[0]
    assert check("ch15.q1", right, quiet=True)
    assert not check("ch15.q1", 768 * 3072, quiet=True)
    assert not check("ch15.q1", 8 * 768, quiet=True)
    assert not check("ch15.q1", None, quiet=True)


def test_q2_matches_adam():
    layer = _layer()
    opt = torch.optim.AdamW([p for p in layer.parameters() if p.requires_grad], lr=1e-3)
    layer(torch.randn(2, 768)).sum().backward()
    opt.step()
    right = sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items() if k != "step")
    assert check("ch15.q2", right, quiet=True)
    assert not check("ch15.q2", right // 2, quiet=True)
    assert not check("ch15.q2", "16", quiet=True)


def test_q3_matches_the_module():
    layer = _layer(16, 8, r=2)
    x = torch.randn(5, 16)
    with torch.no_grad():
        right = float((layer(x) - layer.base(x)).abs().max())
    assert check("ch15.q3", right, quiet=True)
    assert not check("ch15.q3", 0.5, quiet=True)
    assert not check("ch15.q3", None, quiet=True)
