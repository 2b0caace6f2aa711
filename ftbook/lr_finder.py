"""The learning-rate range test ("LR finder", Smith 2017) and a rule to read its curve.

Taught in chapter 14 (``chapters/14_tools_summary_faq.ipynb``, "FAQ 2：学习率怎么选").

Train for a few dozen steps while the learning rate grows exponentially from ``start_lr`` to
``end_lr``; record the (smoothed) loss at each step; stop once the loss explodes. The useful
learning rates lie where the loss falls fastest, well below the one where it is lowest. The model
and optimizer are restored afterwards, so the test leaves no trace.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence


@dataclass
class RangeTestResult:
    lrs: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # raw loss per step
    smoothed: list = field(default_factory=list)  # exponential moving average, bias-corrected
    diverged_at: float | None = None  # the lr at which the loss exploded, if it did


def lr_range_test(model, loss_fn: Callable[[Any, Any], Any], batches: Iterable, *, start_lr: float = 1e-7,
                  end_lr: float = 1.0, num_steps: int = 100, optimizer_cls=None, smooth: float = 0.05,
                  diverge_factor: float = 4.0, **optimizer_kwargs) -> RangeTestResult:
    """Run the range test; ``loss_fn(model, batch)`` returns a scalar loss tensor.

    ``batches`` must yield at least ``num_steps`` batches. The model's weights are restored at the
    end. The test stops early when the smoothed loss exceeds ``diverge_factor`` times its minimum.
    """
    import torch

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
    optimizer_cls = optimizer_cls or torch.optim.AdamW
    saved = copy.deepcopy(model.state_dict())
    was_training = model.training
    opt = optimizer_cls(model.parameters(), lr=start_lr, **optimizer_kwargs)
    ratio = (end_lr / start_lr) ** (1 / (num_steps - 1))
    res = RangeTestResult()
    avg, best = 0.0, math.inf
    it = iter(batches)
    model.train()
    try:
        for step in range(num_steps):
            lr = start_lr * ratio**step
            for group in opt.param_groups:
                group["lr"] = lr
            try:
                batch = next(it)
            except StopIteration:
                raise ValueError(f"batches ran out after {step} of num_steps={num_steps} steps") from None
            loss = loss_fn(model, batch)
            if not torch.is_tensor(loss) or loss.dim() != 0:
                raise TypeError("loss_fn must return a scalar tensor")
            opt.zero_grad()
            loss.backward()
            opt.step()
            value = float(loss.item())
            avg = smooth * value + (1 - smooth) * avg
            smoothed = avg / (1 - (1 - smooth) ** (step + 1))
            res.lrs.append(lr)
            res.losses.append(round(value, 6))
            res.smoothed.append(round(smoothed, 6))
            if not math.isfinite(value) or smoothed > diverge_factor * best:
                res.diverged_at = lr
                break
            best = min(best, smoothed)
    finally:
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
