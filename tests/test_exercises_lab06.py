"""Checkers of lab 6: the right answer passes, None fails, typical mistakes fail with their message."""

import math

import pytest
import torch
import torch.nn.functional as F

from ftbook.exercises import check, get, lab06


def ln(x, w, b, eps):
    c = x - x.mean(-1, keepdim=True)
    return c / torch.sqrt(c.pow(2).mean(-1, keepdim=True) + eps) * w + b


def rms(x, w, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def backward(x, w, go, eps, constant_stats=False):
    mu = x.mean(-1, keepdim=True)
    s = torch.sqrt((x - mu).pow(2).mean(-1, keepdim=True) + eps)
    xh, gh = (x - mu) / s, go * w
    gx = gh / s if constant_stats else (gh - gh.mean(-1, keepdim=True) - xh * (gh * xh).mean(-1, keepdim=True)) / s
    return gx, (go * xh).sum((0, 1)), go.sum((0, 1))


def test_registered_with_levels():
    assert [get(f"lab06.t{k}").level for k in range(1, 6)] == ["easy", "easy", "medium", "medium", "hard"]


def test_t1_rms_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert check("lab06.t1", (x / math.sqrt(7.5)).tolist(), quiet=True)
    assert not check("lab06.t1", None, quiet=True)
    assert not check("lab06.t1", 1.0, quiet=True)
    with pytest.raises(AssertionError, match="LayerNorm"):
        lab06.t1(F.layer_norm(x, (4,), eps=0.0))
    with pytest.raises(AssertionError, match="标准差"):
        lab06.t1(x / x.std())


def test_t2_parameter_count():
    assert check("lab06.t2", 4096 * 65, quiet=True)
    assert not check("lab06.t2", None, quiet=True)
    assert not check("lab06.t2", "266240", quiet=True)
    with pytest.raises(AssertionError, match="β"):
        lab06.t2(2 * 4096 * 65)
    with pytest.raises(AssertionError, match="final norm"):
        lab06.t2(4096 * 64)


def test_t3_layer_norm():
    assert check("lab06.t3", ln, quiet=True)
    assert not check("lab06.t3", None, quiet=True)
    assert not check("lab06.t3", lambda x, w, b, e: None, quiet=True)

    def one_pass(x, w, b, eps):
        mu = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - mu * mu
        return (x - mu) / torch.sqrt(var.clamp_min(0) + eps) * w + b

    with pytest.raises(AssertionError, match="一遍法"):
        lab06.t3(one_pass)
    with pytest.raises(AssertionError, match="无偏方差"):
        lab06.t3(lambda x, w, b, e: ln(x, w, b, e) * math.sqrt(63 / 64))
    with pytest.raises(AssertionError, match="求导"):
        lab06.t3(lambda x, w, b, e: ln(x, w, b, e).detach())


def test_t4_rms_norm():
    assert check("lab06.t4", rms, quiet=True)
    assert not check("lab06.t4", None, quiet=True)
    with pytest.raises(AssertionError, match="不减均值"):
        lab06.t4(lambda x, w, e: rms(x - x.mean(-1, keepdim=True), w, e))


def test_t5_backward():
    assert check("lab06.t5", backward, quiet=True)
    assert not check("lab06.t5", None, quiet=True)
    assert not check("lab06.t5", lambda *a: None, quiet=True)
    with pytest.raises(AssertionError, match="常数"):
        lab06.t5(lambda x, w, go, e: backward(x, w, go, e, constant_stats=True))
    with pytest.raises(AssertionError, match="grad_weight"):
        lab06.t5(lambda x, w, go, e: (backward(x, w, go, e)[0], (go * x).sum((0, 1)), go.sum((0, 1))))
    with pytest.raises(AssertionError, match="形状"):
        lab06.t5(lambda x, w, go, e: (backward(x, w, go, e)[0], backward(x, w, go, e)[1], go.sum(0)))
