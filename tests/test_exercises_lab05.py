"""Checkers of lab 5: the right answer passes, None fails, typical mistakes fail with their message."""

import functools
import math

import pytest
import torch

from ftbook.exercises import check, get, lab05


def test_registered_with_levels():
    levels = [get(f"lab05.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab05.t{k}").prompt for k in range(1, 7))


def momentum(steps, dampening=0.0):
    x, b = 1.0, 0.0
    for _ in range(steps):
        b = 0.9 * b + (1 - dampening) * 2 * x
        x -= 0.1 * b
    return x


def test_t1_momentum():
    assert check("lab05.t1", momentum(3), quiet=True)
    assert not check("lab05.t1", None, quiet=True)
    assert not check("lab05.t1", "0.062", quiet=True)
    with pytest.raises(AssertionError, match="没有动量"):
        lab05.t1(0.8**3)
    with pytest.raises(AssertionError, match="dampening"):
        lab05.t1(momentum(3, dampening=0.9))
    with pytest.raises(AssertionError, match="2 步"):
        lab05.t1(momentum(2))


def test_t2_weight_decay():
    adamw, adam_l2 = 2.0 * (1 - 0.01) + 0.1, 2.0 - 0.1
    assert check("lab05.t2", (adamw, adam_l2), quiet=True)
    assert not check("lab05.t2", None, quiet=True)
    assert not check("lab05.t2", (None, None), quiet=True)
    assert not check("lab05.t2", 2.08, quiet=True)
    with pytest.raises(AssertionError, match="顺序反了"):
        lab05.t2((adam_l2, adamw))
    with pytest.raises(AssertionError, match="不带权重衰减"):
        lab05.t2((2.1, adam_l2))
    with pytest.raises(AssertionError, match="符号"):
        lab05.t2((adamw, 2.1 - 0.2 * 0.1))


def cosine(s, w, total, cycles=0.5, from_zero=False, shift=0):
    if s < w:
        return (s + shift) / w
    progress = s / total if from_zero else (s - w) / max(1, total - w)
    return max(0.0, 0.5 * (1 + math.cos(2 * math.pi * cycles * progress)))


def test_t3_schedule():
    assert check("lab05.t3", cosine, quiet=True)
    assert not check("lab05.t3", None, quiet=True)
    assert not check("lab05.t3", lambda s, w, t: None, quiet=True)
    with pytest.raises(AssertionError, match="整个周期"):
        lab05.t3(functools.partial(cosine, cycles=1.0))
    with pytest.raises(AssertionError, match="warm-up 结束"):
        lab05.t3(functools.partial(cosine, from_zero=True))
    with pytest.raises(AssertionError, match="差了一步"):
        lab05.t3(functools.partial(cosine, shift=1))
    with pytest.raises(AssertionError, match="除以了 0"):
        lab05.t3(lambda s, w, t: [s / w, cosine(s, w, t)][s >= w])


def test_t4_max_learning_rate():
    assert check("lab05.t4", 0.05, quiet=True)
    assert not check("lab05.t4", None, quiet=True)
    with pytest.raises(AssertionError, match="对角元"):
        lab05.t4(2 / 21)
    with pytest.raises(AssertionError, match="上界"):
        lab05.t4(1 / 40)
    with pytest.raises(AssertionError, match="最陡"):
        lab05.t4(1.0)


def exact(grads, b, kind="right"):
    n = len(grads)
    sigma2 = (grads - grads.mean(0)).pow(2).sum(1).mean().item()  # ddof=0
    if kind == "with_replacement":
        return sigma2 / b
    if kind == "biased_fpc":  # (1 - B/n) * sigma^2 / B with the ddof=0 variance
        return (1 - b / n) * sigma2 / b
    return (n - b) / (n - 1) * sigma2 / b


def test_t5_noise():
    assert check("lab05.t5", exact, quiet=True)
    assert not check("lab05.t5", None, quiet=True)
    assert not check("lab05.t5", lambda g, b: None, quiet=True)
    with pytest.raises(AssertionError, match="有放回"):
        lab05.t5(functools.partial(exact, kind="with_replacement"))
    with pytest.raises(AssertionError, match="无偏方差"):
        lab05.t5(functools.partial(exact, kind="biased_fpc"))


def adam(p, grad, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
         bias=True, eps_inside=False, decay_lr=True, swap=False):
    decoupled = decoupled != swap
    if weight_decay and decoupled:
        p = p * (1 - (lr * weight_decay if decay_lr else weight_decay))
    elif weight_decay:
        grad = grad + weight_decay * p
    m, v = betas[0] * m + (1 - betas[0]) * grad, betas[1] * v + (1 - betas[1]) * grad * grad
    mh, vh = (m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)) if bias else (m, v)
    return p - lr * mh / ((vh + eps).sqrt() if eps_inside else vh.sqrt() + eps), m, v


def test_t6_adam():
    assert check("lab05.t6", adam, quiet=True)
    assert not check("lab05.t6", None, quiet=True)
    assert not check("lab05.t6", lambda *a, **k: None, quiet=True)
    assert not check("lab05.t6", lambda *a, **k: torch.zeros(3), quiet=True)
    for kw, message in [(dict(bias=False), "偏差修正"), (dict(eps_inside=True), "ε"),
                        (dict(decay_lr=False), "要乘学习率"), (dict(swap=True), "弄反了")]:
        with pytest.raises(AssertionError, match=message):
            lab05.t6(functools.partial(adam, **kw))
