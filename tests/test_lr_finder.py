"""ftbook.lr_finder: the range test on a model whose best lr is known, the suggestion rule."""

import math

import pytest
import torch

from ftbook.lr_finder import lr_range_test, suggest_lr


def regression_batches(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 1, generator=g)
    while True:
        x = torch.randn(32, 8, generator=g)
        yield x, x @ w


def loss_fn(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def test_range_test_restores_weights_and_finds_divergence():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = lr_range_test(model, loss_fn, regression_batches(), start_lr=1e-5, end_lr=10.0, num_steps=60,
                        optimizer_cls=torch.optim.SGD)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert res.lrs[0] == pytest.approx(1e-5)
    assert all(b > a for a, b in zip(res.lrs, res.lrs[1:]))  # exponential growth
    assert res.diverged_at is not None and res.diverged_at > 0.1  # SGD on this problem blows up
    assert min(res.smoothed) < res.smoothed[0] / 2  # and learns before that
    lr = suggest_lr(res.lrs, res.smoothed)
    assert 1e-3 < lr < res.diverged_at


def test_suggest_lr_on_a_known_curve():
    lrs = [10 ** (-6 + 0.25 * i) for i in range(25)]  # 1e-6 .. 1
    # flat, steepest fall around 1e-3, minimum at 1e-2, explosion
    losses = [1.0 - 0.9 / (1 + math.exp(-(math.log10(lr) + 3) * 3)) for lr in lrs]
    losses = [l if lr <= 1e-2 else l + 50 * (lr - 1e-2) for l, lr in zip(losses, lrs)]
    lr = suggest_lr(lrs, losses)
    assert 3e-4 <= lr <= 3e-3


def test_bad_inputs():
    model = torch.nn.Linear(8, 1)
    with pytest.raises(ValueError, match="0 < start_lr < end_lr"):
        lr_range_test(model, loss_fn, regression_batches(), start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_steps must be an int >= 2"):
        lr_range_test(model, loss_fn, regression_batches(), num_steps=1)
    with pytest.raises(ValueError, match="batches ran out after 3"):
        lr_range_test(model, loss_fn, [next(regression_batches())] * 3, num_steps=10)
    with pytest.raises(TypeError, match="scalar tensor"):
        lr_range_test(model, lambda m, b: 1.0, regression_batches(), num_steps=5)
    with pytest.raises(ValueError, match="differ in length"):
        suggest_lr([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="at least"):
        suggest_lr([1e-3, 1e-2], [1.0, 0.5])
    with pytest.raises(ValueError, match="> 0"):
        suggest_lr([0.0] * 20, [1.0] * 20)
