"""Checkers of lab 4: the right answer passes, None fails, typical mistakes fail with their message."""

import math

import pytest
import torch
import torch.nn.functional as F

from ftbook.exercises import check, get, lab04


def stable_ce(logits, target, ignore_index=-100):
    m = logits.amax(dim=1, keepdim=True).detach()
    logp = logits - m - torch.log(torch.exp(logits - m).sum(dim=1, keepdim=True))
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    return torch.where(valid, nll, torch.zeros_like(nll)).sum() / valid.sum()


def test_registered_with_levels():
    levels = [get(f"lab04.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab04.t{k}").prompt for k in range(1, 7))


def test_t1_perplexity():
    logits, labels = lab04.t1_data()
    ce = F.cross_entropy(logits, labels).item()
    assert check("lab04.t1", math.exp(ce), quiet=True)
    assert check("lab04.t1", torch.tensor(math.exp(ce)), quiet=True)
    assert not check("lab04.t1", None, quiet=True)
    assert not check("lab04.t1", "10.6", quiet=True)
    with pytest.raises(AssertionError, match="交叉熵本身"):
        lab04.t1(ce)
    with pytest.raises(AssertionError, match="分母"):
        lab04.t1(math.exp(ce * 5 / 7))  # the two -100 positions counted
    with pytest.raises(AssertionError, match="总和"):
        lab04.t1(math.exp(ce * 5))


def test_t2_smoothed_gradient():
    z = torch.tensor([2.0, 0.5, -1.0], requires_grad=True)
    F.cross_entropy(z, torch.tensor(0), label_smoothing=0.1).backward()
    assert check("lab04.t2", z.grad.tolist(), quiet=True)
    assert check("lab04.t2", z.grad, quiet=True)
    assert not check("lab04.t2", None, quiet=True)
    assert not check("lab04.t2", [0.1, 0.2], quiet=True)
    p = torch.softmax(z.detach(), 0)
    with pytest.raises(AssertionError, match="没有标签平滑"):
        lab04.t2(p - torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(AssertionError, match="C−1"):
        lab04.t2(p - torch.tensor([0.9, 0.05, 0.05]))
    with pytest.raises(AssertionError, match="符号反了"):
        lab04.t2(-z.grad)


def test_t3_cross_entropy():
    assert check("lab04.t3", stable_ce, quiet=True)
    assert not check("lab04.t3", None, quiet=True)
    assert not check("lab04.t3", lambda x, t: None, quiet=True)

    def naive(x, t):
        keep = t != -100
        p = torch.exp(x[keep]) / torch.exp(x[keep]).sum(1, keepdim=True)
        return -torch.log(p[torch.arange(int(keep.sum())), t[keep]]).mean()

    with pytest.raises(AssertionError, match="log-sum-exp"):
        lab04.t3(naive)
    with pytest.raises(AssertionError, match="分母"):
        lab04.t3(lambda x, t: F.cross_entropy(x, t, reduction="sum") / len(t))
    with pytest.raises(AssertionError, match="-100"):
        lab04.t3(lambda x, t: -torch.log_softmax(x, 1).gather(1, t.unsqueeze(1)).mean())
    with pytest.raises(AssertionError, match="求导"):
        lab04.t3(lambda x, t: F.cross_entropy(x.detach(), t))


def test_t4_bce():
    def stable(z, y):
        m = torch.clamp(-z, min=0).detach()
        return ((1 - y) * z + m + torch.log(torch.exp(-m) + torch.exp(-z - m))).mean()

    def kinked(z, y):
        return ((1 - y) * z + torch.clamp(-z, min=0) + torch.log1p(torch.exp(-z.abs()))).mean()

    def naive(z, y):
        p = torch.sigmoid(z)
        return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()

    assert check("lab04.t4", stable, quiet=True)
    assert check("lab04.t4", F.binary_cross_entropy_with_logits, quiet=True)
    assert not check("lab04.t4", None, quiet=True)
    assert not check("lab04.t4", 1.0, quiet=True)
    with pytest.raises(AssertionError, match="下溢"):
        lab04.t4(naive)
    with pytest.raises(AssertionError, match="z = 0"):
        lab04.t4(kinked)
    with pytest.raises(AssertionError, match="软标签"):
        lab04.t4(lambda z, y: F.binary_cross_entropy_with_logits(z, (y > 0.5).to(z.dtype)))


def test_t5_margin():
    assert check("lab04.t5", lambda e, c: math.log((1 - e + e / c) / (e / c)), quiet=True)
    assert not check("lab04.t5", None, quiet=True)
    assert not check("lab04.t5", lambda e, c: None, quiet=True)
    with pytest.raises(AssertionError, match="C−1"):
        lab04.t5(lambda e, c: math.log((1 - e) / (e / (c - 1))))
    with pytest.raises(AssertionError, match="1−ε\\+ε/C"):
        lab04.t5(lambda e, c: math.log((1 - e) / (e / c)))
    with pytest.raises(AssertionError, match="数值最优"):
        lab04.t5(lambda e, c: 3.0)


def _accumulate(reduction_mean: bool, scale: bool = True):
    def fn(model, micro):
        total = sum(int((b["labels"] != -100).sum()) for b in micro)
        value = 0.0
        for b in micro:
            out = model(b["input_ids"]).flatten(0, 1)
            if reduction_mean:
                loss = F.cross_entropy(out, b["labels"].flatten()) / len(micro)
            else:
                loss = F.cross_entropy(out, b["labels"].flatten(), reduction="sum") / (total if scale else 1)
            loss.backward()
            value += loss.item()
        return value if scale else value / total
    return fn


def test_t6_accumulation():
    assert check("lab04.t6", _accumulate(False), quiet=True)
    assert not check("lab04.t6", None, quiet=True)
    assert not check("lab04.t6", lambda model, micro: None, quiet=True)
    with pytest.raises(AssertionError, match="平均了各微批次的平均"):
        lab04.t6(_accumulate(True))
    with pytest.raises(AssertionError, match="梯度大了"):
        lab04.t6(_accumulate(False, scale=False))

    def wrong_loss(model, micro):
        _accumulate(False)(model, micro)
        return 0.0

    with pytest.raises(AssertionError, match="返回的损失"):
        lab04.t6(wrong_loss)
