"""The learning-rate range test ("LR finder", Smith 2017) and a rule to read its curve.

Taught in chapter 17 (``chapters/17_tools_summary_faq.ipynb``, "FAQ 2：学习率怎么选").

Train for a few dozen steps while the learning rate grows exponentially from ``start_lr`` to
``end_lr``; record the (smoothed) loss at each step; stop once the loss explodes. The useful
learning rates lie where the loss falls fastest, well below the one where it is lowest. The model
is restored afterwards, so the test leaves no trace.

Each step is a step of the book's training loop: the batches of :func:`ftbook.training.epoch_batches`,
forward and backward by :func:`ftbook.training.training_step` (default loss
:func:`ftbook.training.cross_entropy_loss`), AdamW over :func:`ftbook.optim.param_groups`, and
:func:`ftbook.training.optimizer_step` (clipping, step, schedule). Only the schedule differs:
``torch.optim.lr_scheduler.ExponentialLR`` instead of warm-up and decay.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .data import Encoded


@dataclass
class RangeTestResult:
    lrs: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # raw loss per step
    smoothed: list = field(default_factory=list)  # exponential moving average, bias-corrected
    diverged_at: float | None = None  # the lr at which the loss exploded, if it did


def _check_arguments(data, start_lr, end_lr, num_steps, smooth, diverge_factor) -> None:
    if not isinstance(data, Encoded) or len(data) == 0:
        raise ValueError("data must be a non-empty ftbook.data.Encoded set")
    if not (isinstance(start_lr, (int, float)) and isinstance(end_lr, (int, float))):
        raise TypeError("start_lr and end_lr must be numbers")
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")
    if not 0 < smooth <= 1:
        raise ValueError(f"smooth must be in (0, 1], got {smooth}")
    if diverge_factor <= 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor}")


def _checked(loss_fn: Callable) -> Callable:
    import torch

    def fn(model, batch):
        loss = loss_fn(model, batch)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            raise TypeError("loss_fn must return a scalar tensor (the summed loss of the batch)")
        return loss

    return fn


def lr_range_test(model, data: Encoded, *, batch_size: int = 32, start_lr: float = 1e-7, end_lr: float = 1.0,
                  num_steps: int = 100, loss_fn: Callable | None = None, weight_decay: float = 0.0,
                  max_grad_norm: float | None = None, optimizer_cls=None, smooth: float = 0.05,
                  diverge_factor: float = 4.0, seed: int = 0) -> RangeTestResult:
    """Run the range test on ``data`` (batches of ``batch_size``, as many epochs as it takes).

    ``loss_fn(model, batch)`` returns the *summed* loss of a batch, as for
    :func:`ftbook.training.train` (default :func:`ftbook.training.cross_entropy_loss`); the
    recorded loss is its mean per label. ``weight_decay`` / ``max_grad_norm`` as in the
    training run the test calibrates. The model's weights and mode are restored at the end. The
    test stops early when the smoothed loss exceeds ``diverge_factor`` times its minimum.
    """
    import torch

    from .optim import param_groups
    from .training import TrainConfig, cross_entropy_loss, epoch_batches, optimizer_step, training_step

    _check_arguments(data, start_lr, end_lr, num_steps, smooth, diverge_factor)
    config = TrainConfig(lr=start_lr, batch_size=batch_size, warmup_steps=0, schedule="constant",
                         weight_decay=weight_decay, max_grad_norm=max_grad_norm, amp="off", seed=seed,
                         progress=False)
    saved, was_training = copy.deepcopy(model.state_dict()), model.training
    opt = (optimizer_cls or torch.optim.AdamW)(param_groups(model, weight_decay), lr=start_lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(end_lr / start_lr) ** (1 / (num_steps - 1)))
    chunks = (c for epoch in itertools.count() for c in epoch_batches(data.lengths, epoch, config))
    device, step_loss = next(model.parameters()).device, _checked(loss_fn or cross_entropy_loss)
    res, avg, best = RangeTestResult(), 0.0, math.inf
    torch.manual_seed(seed)  # dropout masks
    model.train()
    try:
        for step in range(num_steps):
            lr = sched.get_last_lr()[0]
            value = training_step(model, data, next(chunks), config, device, loss_fn=step_loss, dtype=None,
                                  scaler=None)
            avg = smooth * value + (1 - smooth) * avg
            smoothed = avg / (1 - (1 - smooth) ** (step + 1))
            res.lrs.append(lr)
            res.losses.append(round(value, 6))
            res.smoothed.append(round(smoothed, 6))
            if not math.isfinite(value) or smoothed > diverge_factor * best:
                res.diverged_at = lr
                break
            best = min(best, smoothed)
            optimizer_step(model, opt, sched, None, max_grad_norm)
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(saved)
        model.train(was_training)
    return res


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], skip_start: int = 5, skip_end: int = 3) -> float:
    """The lr where the (smoothed) loss falls fastest per log-lr, searched before the minimum.

    ``skip_start`` / ``skip_end`` ignore the noisy first steps and the final explosion.
    """
    import numpy as np

    if len(lrs) != len(losses):
        raise ValueError(f"lrs ({len(lrs)}) and losses ({len(losses)}) differ in length")
    if any(lr <= 0 for lr in lrs):
        raise ValueError("learning rates must be > 0")
    n = len(lrs)
    if n - skip_start - skip_end < 3:
        raise ValueError(f"need at least {skip_start + skip_end + 3} points, got {n}")
    x = np.log10(np.asarray(lrs, dtype=float))[skip_start:n - skip_end]
    y = np.asarray(losses, dtype=float)[skip_start:n - skip_end]
    if not np.all(np.isfinite(y)):
        y = np.where(np.isfinite(y), y, np.nanmax(y[np.isfinite(y)]) if np.isfinite(y).any() else 0.0)
    stop = int(np.argmin(y)) + 1  # only look left of the minimum
    if stop < 3:
        stop = len(y)
    slope = np.gradient(y[:stop], x[:stop])
    return float(10 ** x[int(np.argmin(slope))])
