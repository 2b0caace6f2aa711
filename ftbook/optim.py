"""Gradient-descent optimisers and learning-rate schedules from scratch.

Taught in chapter 5 (``chapters/05_optimization.ipynb``, 梯度下降优化).

* :class:`SGD` (momentum, dampening, Nesterov, L2 weight decay), :class:`Adam` and :class:`AdamW`
  (decoupled weight decay) are ``torch.optim.Optimizer`` subclasses with the constructor
  arguments of their ``torch.optim`` twins, and follow the same arithmetic in the same order,
  so their trajectories equal PyTorch's (``tests/test_optim.py`` checks 100 steps on a BERT).
* :func:`linear_schedule_with_warmup`, :func:`cosine_schedule_with_warmup`,
  :func:`constant_schedule_with_warmup` and :func:`constant_schedule` are the learning-rate
  multipliers of one step; :func:`get_scheduler` (and :func:`get_linear_schedule_with_warmup` /
  :func:`get_cosine_schedule_with_warmup`) wrap them in a ``LambdaLR``, equal at every step to
  ``transformers.get_scheduler`` with the same name. Step 0 of a warm-up runs at learning rate 0.
  These are the only schedules of the book: every training loop (chapters 7, 9, 10, 13, 14)
  builds its scheduler with :func:`get_scheduler`.
* :func:`param_groups` is the one weight-decay rule of the book (chapter 10 explains it): decay
  the weight matrices and embeddings, never biases or the gains/shifts of normalisation layers.

Not offered (PyTorch options that change no arithmetic here): ``foreach``, ``fused``,
``capturable``, ``differentiable``; sparse gradients raise an error.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .config import register_sizes

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "linear_schedule_with_warmup",
    "cosine_schedule_with_warmup",
    "get_linear_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "constant_schedule_with_warmup",
    "constant_schedule",
    "get_scheduler",
    "param_groups",
    "SCHEDULES",
]

# Sizes of chapter 5's experiments (small model on the bundled Chinese reviews).
register_sizes(
    "optim",
    tiny={"n_train": 2000, "n_eval": 500, "max_chars": 64, "steps": 150, "batch_size": 32, "embed_dim": 32},
    full={"n_train": 13000, "n_eval": 1700, "max_chars": 128, "steps": 2000, "batch_size": 64, "embed_dim": 128},
)


def _check_number(name: str, value, low: float = 0.0, high: float | None = None, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value < low or (high is not None and (value >= high if high_open else value > high)):
        bound = f"[{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"invalid {name}: {value!r} (expected {bound})")


def _grads(group):
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("sparse gradients are not supported; use torch.optim.SparseAdam")
        yield p


class SGD(Optimizer):
    """Stochastic gradient descent, with the arguments and arithmetic of ``torch.optim.SGD``.

    With gradient ``g`` (plus ``weight_decay * p``, the L2 penalty's gradient) and momentum
    ``mu``: ``b = g`` at the first step, then ``b = mu * b + (1 - dampening) * g``; the update is
    ``p -= lr * b``, or ``p -= lr * (g + mu * b)`` with ``nesterov=True``.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        _check_number("lr", lr)
        _check_number("momentum", momentum)
        _check_number("dampening", dampening)
        _check_number("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, damp = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov = group["weight_decay"], group["nesterov"]
            for p in _grads(group):
                g = -p.grad if group["maximize"] else p.grad
                if wd != 0:
                    g = g.add(p, alpha=wd)
                if mu != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.detach().clone()
                    else:
                        buf.mul_(mu).add_(g, alpha=1 - damp)
                    g = g.add(buf, alpha=mu) if nesterov else buf
                p.add_(g, alpha=-lr)
        return loss


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with the arguments and arithmetic of ``torch.optim.Adam``.

    ``m = beta1 * m + (1 - beta1) * g``; ``v = beta2 * v + (1 - beta2) * g^2``;
    ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.
    ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2, coupled: it is then rescaled by
    Adam's per-parameter step sizes); :class:`AdamW` decays the weights directly instead.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 maximize: bool = False):
        _check_number("lr", lr)
        _check_number("eps", eps)
        _check_number("weight_decay", weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _check_number("beta parameter at index 0", betas[0], 0.0, 1.0, high_open=True)
        _check_number("beta parameter at index 1", betas[1], 0.0, 1.0, high_open=True)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in _grads(group):
                g = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    if self._decoupled:
                        p.mul_(1 - lr * wd)  # AdamW: shrink the weights, independent of the gradient
                    else:
                        g = g.add(p, alpha=wd)  # Adam: L2 penalty folded into the gradient
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(g, 1 - beta1)  # m = beta1 * m + (1 - beta1) * g
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                bias_correction1 = 1 - beta1**t
                bias_correction2_sqrt = (1 - beta2**t) ** 0.5
                if group["amsgrad"]:
                    torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    denom = (state["max_exp_avg_sq"].sqrt() / bias_correction2_sqrt).add_(eps)
                else:
                    denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
                p.addcdiv_(m, denom, value=-(lr / bias_correction1))
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), like ``torch.optim.AdamW``.

    Before the Adam step, ``p *= 1 - lr * weight_decay``: every weight shrinks by the same
    fraction, however large or small its gradient history. Default ``weight_decay=1e-2``.
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


# ---------------------------------------------------------------- learning-rate schedules


def _check_schedule(num_warmup_steps, num_training_steps) -> None:
    for name, v in (("num_warmup_steps", num_warmup_steps), ("num_training_steps", num_training_steps)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if num_warmup_steps < 0:
        raise ValueError(f"num_warmup_steps must be >= 0, got {num_warmup_steps}")
    if num_training_steps <= 0:
        raise ValueError(f"num_training_steps must be > 0, got {num_training_steps}")
    if num_warmup_steps > num_training_steps:
        raise ValueError(
            f"num_warmup_steps ({num_warmup_steps}) must not exceed num_training_steps ({num_training_steps})"
        )


def linear_schedule_with_warmup(current_step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    """Multiplier of the peak learning rate: ``0 -> 1`` linearly during warm-up, then ``1 -> 0``."""
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


def cosine_schedule_with_warmup(current_step: int, *, num_warmup_steps: int, num_training_steps: int,
                                num_cycles: float = 0.5) -> float:
    """Multiplier: linear warm-up, then ``0.5 * (1 + cos(pi * 2 * num_cycles * progress))``."""
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def get_linear_schedule_with_warmup(optimizer, num_warmup_steps: int, num_training_steps: int,
                                    last_epoch: int = -1) -> LambdaLR:
    """``LambdaLR`` with :func:`linear_schedule_with_warmup` (same as transformers' function)."""
    _check_schedule(num_warmup_steps, num_training_steps)
    fn = partial(linear_schedule_with_warmup, num_warmup_steps=num_warmup_steps,
                 num_training_steps=num_training_steps)
    return LambdaLR(optimizer, fn, last_epoch)


def get_cosine_schedule_with_warmup(optimizer, num_warmup_steps: int, num_training_steps: int,
                                    num_cycles: float = 0.5, last_epoch: int = -1) -> LambdaLR:
    """``LambdaLR`` with :func:`cosine_schedule_with_warmup` (same as transformers' function)."""
    _check_schedule(num_warmup_steps, num_training_steps)
    _check_number("num_cycles", num_cycles)
    fn = partial(cosine_schedule_with_warmup, num_warmup_steps=num_warmup_steps,
                 num_training_steps=num_training_steps, num_cycles=num_cycles)
    return LambdaLR(optimizer, fn, last_epoch)


def constant_schedule_with_warmup(current_step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    """Multiplier: ``0 -> 1`` linearly during warm-up, then ``1`` (``num_training_steps`` unused)."""
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return 1.0


def constant_schedule(current_step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    """Multiplier ``1`` at every step (``num_warmup_steps`` must be 0)."""
    return 1.0


SCHEDULES = {
    "linear": linear_schedule_with_warmup,
    "cosine": cosine_schedule_with_warmup,
    "constant_with_warmup": constant_schedule_with_warmup,
    "constant": constant_schedule,
}


def get_scheduler(name: str, optimizer, num_warmup_steps: int = 0, num_training_steps: int | None = None,
                  last_epoch: int = -1) -> LambdaLR:
    """``LambdaLR`` for the schedule ``name`` (a key of :data:`SCHEDULES`), as
    ``transformers.get_scheduler(name, optimizer, num_warmup_steps, num_training_steps)``."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    if num_training_steps is None:
        if name != "constant":
            raise ValueError(f"schedule {name!r} needs num_training_steps (the length of the run)")
        num_training_steps = max(1, num_warmup_steps)
    _check_schedule(num_warmup_steps, num_training_steps)
    if name == "constant" and num_warmup_steps:
        raise ValueError(f"schedule 'constant' has no warm-up; got num_warmup_steps={num_warmup_steps} "
                         "(use 'constant_with_warmup')")
    fn = partial(SCHEDULES[name], num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
    return LambdaLR(optimizer, fn, last_epoch)


# ---------------------------------------------------------------- parameter groups


def _is_norm(module: torch.nn.Module) -> bool:
    """A normalisation layer: torch's (LayerNorm, RMSNorm, BatchNorm, GroupNorm, ...) or any class
    named ``...Norm`` (ftbook.norms, transformers' ``LlamaRMSNorm``, ``BertLayerNorm``)."""
    norm_types = (torch.nn.LayerNorm, torch.nn.RMSNorm, torch.nn.GroupNorm,
                  torch.nn.modules.batchnorm._NormBase)
    return isinstance(module, norm_types) or "norm" in type(module).__name__.lower()


def param_groups(model: torch.nn.Module, weight_decay: float, decay_norm_and_bias: bool = False) -> list[dict]:
    """AdamW parameter groups: decay the weight matrices and embeddings; not biases, and not the
    parameters of normalisation layers (decaying a LayerNorm gain pulls it towards 0, shrinking
    every feature; decaying a bias has no regularising sense). Decided by module type, as BERT's
    recipe does. ``decay_norm_and_bias=True`` decays everything (one group, for comparison).
    Frozen parameters (``requires_grad=False``) are left out."""
    _check_number("weight_decay", weight_decay)
    no_decay: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias" or _is_norm(module):
                no_decay.add(id(p))
    decay, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (rest if id(p) in no_decay and not decay_norm_and_bias else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return groups
