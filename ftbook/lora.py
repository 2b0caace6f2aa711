"""LoRA (low-rank adaptation) written out by hand, checked against the ``peft`` library.

Taught in chapter 15 (``chapters/15_lora.ipynb``, "LoRA：参数高效微调"). The method is from Hu et al. 2021,
"LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685): a frozen linear layer
``W`` (shape ``(out, in)``) gets a trainable low-rank update, and computes

    h = W x + (alpha / r) * B A x        A: (r, in), B: (out, r), r << min(in, out)

``B`` starts at zero, so a fresh adapter changes nothing; only ``A`` and ``B`` (and, optionally,
whole modules such as a classification head) are trained. After training, ``B A`` can be folded
into ``W`` (:func:`merge_lora`) and the model is a plain model again, with no extra cost at
inference.

Public API:

* :class:`LoRALinear` -- one frozen ``nn.Linear`` plus its ``A`` and ``B``;
* :func:`apply_lora` -- wrap the targeted ``nn.Linear`` layers of a model in place and freeze the rest;
* :func:`merge_lora` -- fold every adapter back into a plain ``nn.Linear``;
* :func:`lora_state_dict` / :func:`load_lora_state_dict` -- save and load only the adapter tensors;
* :func:`count_parameters` -- ``(trainable, total)``.

Target matching follows ``peft.tuners.tuners_utils.check_target_module_exists``: a list of names
matches a module whose full name equals a name or ends with ``"." + name``; a string is a regular
expression that must match the full name (``re.fullmatch``).
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Iterable, Mapping

import torch
from torch import nn

__all__ = [
    "LoRALinear",
    "apply_lora",
    "merge_lora",
    "lora_state_dict",
    "load_lora_state_dict",
    "count_parameters",
]


def _check_hyperparameters(r, alpha, dropout) -> None:
    """Raise ``ValueError``/``TypeError`` naming the bad value among ``r``, ``alpha``, ``dropout``."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise TypeError(f"LoRA rank r must be an int, got {r!r} of type {type(r).__name__}")
    if r <= 0:
        raise ValueError(f"LoRA rank r must be a positive int, got r={r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"LoRA alpha must be a number, got {alpha!r} of type {type(alpha).__name__}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be > 0, got alpha={alpha}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"LoRA dropout must be a number, got {dropout!r} of type {type(dropout).__name__}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must lie in [0, 1), got dropout={dropout}")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``W x + b + (alpha/r) B A x``.

    Attributes:
        base: the wrapped ``nn.Linear``; its parameters get ``requires_grad=False``.
        lora_A: ``nn.Parameter`` of shape ``(r, in_features)``, initialised like peft's default
            (``kaiming_uniform_(a=sqrt(5))``, the same as ``nn.Linear``'s own weight).
        lora_B: ``nn.Parameter`` of shape ``(out_features, r)``, zeros at init.
        scaling: ``alpha / r``.
        lora_dropout: ``nn.Dropout(dropout)``, or ``nn.Identity()`` when ``dropout == 0``
            (applied to the input of the low-rank branch only, as in peft).
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_hyperparameters(r, alpha, dropout)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.r = int(r)
        self.alpha = float(alpha)
        self.scaling = self.alpha / self.r
        factory = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_A = nn.Parameter(torch.empty(self.r, base.in_features, **factory))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.r, **factory))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., in)
        out = self.base(x)  # (..., out) = x W^T + b
        down = self.lora_dropout(x) @ self.lora_A.T  # (..., in) @ (in, r) -> (..., r)
        up = down @ self.lora_B.T  # (..., r) @ (r, out) -> (..., out)
        return out + up * self.scaling  # (..., out)

    def merged_weight(self) -> torch.Tensor:
        """``W + (alpha/r) B A``, shape ``(out, in)``; the base weight itself is not changed."""
        delta = self.lora_B @ self.lora_A  # (out, r) @ (r, in) -> (out, in)
        return self.base.weight + self.scaling * delta

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def _matches(name: str, targets: str | list[str]) -> bool:
    """peft's rule: regex ``re.fullmatch`` for a string, equality or ``.endswith("." + t)`` for a list."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def _normalise_names(value, what: str) -> str | list[str]:
    """Check ``target_modules`` / ``modules_to_save``: a non-empty string or list of non-empty strings."""
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{what} must not be an empty string")
        return value
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a string (regex) or a list of module names, got {type(value).__name__}")
    names = list(value)
    if not names:
        raise ValueError(f"{what} must name at least one module, got an empty list")
    for n in names:
        if not isinstance(n, str) or not n:
            raise TypeError(f"{what} must contain non-empty strings, got {n!r}")
    return names


def _some_names(model: nn.Module, limit: int = 12) -> str:
    """A short, readable list of the model's module names, for error messages."""
    names = [n for n, _ in model.named_modules() if n]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    shown = (linear or names)[:limit]
    more = len(linear or names) - len(shown)
    return ", ".join(shown) + (f", ... ({more} more)" if more > 0 else "")


def _find_targets(model: nn.Module, targets: str | list[str], saved: list[str]) -> list[str]:
    """Names of the ``nn.Linear`` layers to wrap; raise on a target that matches nothing or no Linear."""
    named = [(n, m) for n, m in model.named_modules() if n]
    found = [n for n, _ in named if _matches(n, targets)]
    if isinstance(targets, str):
        if not found:
            raise ValueError(
                f"target_modules regex {targets!r} matches no module; modules include: {_some_names(model)}"
            )
    else:
        for t in targets:
            if not any(_matches(n, [t]) for n in found):
                raise ValueError(
                    f"target module {t!r} matches no module of the model; modules include: {_some_names(model)}"
                )
    modules = dict(named)
    for n in found:
        if not isinstance(modules[n], nn.Linear):
            raise TypeError(f"target {n!r} is a {type(modules[n]).__name__}, but LoRA here wraps only nn.Linear")
        inside = [s for s in saved if n == s or n.startswith(s + ".")]
        if inside:
            raise ValueError(
                f"target {n!r} lies inside modules_to_save {inside[0]!r}; a module is either adapted or fully trained"
            )
    return found


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Set the sub-module called ``name`` (dotted path) to ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def apply_lora(
    model: nn.Module,
    r: int,
    alpha: float,
    target_modules: str | list[str],
    dropout: float = 0.0,
    modules_to_save: list[str] | None = None,
) -> nn.Module:
    """Wrap every targeted ``nn.Linear`` of ``model`` in a :class:`LoRALinear`, in place.

    Every parameter is frozen except the LoRA ``A``/``B`` and the parameters of the modules named in
    ``modules_to_save`` (e.g. ``["classifier"]``, the task head; matched like a list of targets).

    Args:
        model: any ``nn.Module``; must not already contain a :class:`LoRALinear`.
        r, alpha, dropout: rank, scale (``scaling = alpha / r``), dropout on the LoRA branch's input.
        target_modules: list of names (full name equal, or ending with ``"." + name``) or a regex
            string (``re.fullmatch`` on the full name), as in peft.
        modules_to_save: names of modules trained in full; default none.

    Returns:
        ``model`` itself.
    """
    _check_hyperparameters(r, alpha, dropout)
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("model already contains LoRALinear layers; merge_lora() it or start from a fresh model")
    targets = _normalise_names(target_modules, "target_modules")
    saved_patterns = [] if modules_to_save is None else _normalise_names(modules_to_save, "modules_to_save")
    if isinstance(saved_patterns, str):
        saved_patterns = [saved_patterns]
    saved = [n for n, _ in model.named_modules() if n and _matches(n, saved_patterns)]
    for s in saved_patterns:
        if not any(_matches(n, [s]) for n in saved):
            raise ValueError(f"modules_to_save entry {s!r} matches no module; modules include: {_some_names(model)}")
    found = _find_targets(model, targets, saved)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in found:
        _replace(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout))
    for name in saved:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
    return model


def _lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` by a plain ``nn.Linear`` holding ``W + (alpha/r) B A``.

    The new layer keeps the base bias and the base's ``requires_grad`` flags (frozen). Returns ``model``.
    """
    layers = _lora_layers(model)
    if not layers:
        raise ValueError("model contains no LoRALinear layer to merge; call apply_lora() first")
    for name, layer in layers:
        base = layer.base
        plain = nn.Linear(
            base.in_features, base.out_features, bias=base.bias is not None,
            device=base.weight.device, dtype=base.weight.dtype,
        )
        plain.weight.copy_(layer.merged_weight())  # (out, in)
        plain.weight.requires_grad_(base.weight.requires_grad)
        if base.bias is not None:
            plain.bias.copy_(base.bias)  # (out,)
            plain.bias.requires_grad_(base.bias.requires_grad)
        _replace(model, name, plain)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA tensors: ``{"<layer>.lora_A": (r, in), "<layer>.lora_B": (out, r)}``.

    The tensors are detached, contiguous copies, ready for ``safetensors.torch.save_file``.
    """
    layers = _lora_layers(model)
    if not layers:
        raise ValueError("model contains no LoRALinear layer; call apply_lora() first")
    state = {}
    for name, layer in layers:
        state[f"{name}.lora_A"] = layer.lora_A.detach().clone().contiguous()
        state[f"{name}.lora_B"] = layer.lora_B.detach().clone().contiguous()
    return state


@torch.no_grad()
def load_lora_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy a :func:`lora_state_dict` into ``model``'s LoRA layers; keys and shapes must match exactly."""
    targets = {}
    for name, layer in _lora_layers(model):
        targets[f"{name}.lora_A"] = layer.lora_A
        targets[f"{name}.lora_B"] = layer.lora_B
    if not targets:
        raise ValueError(
            "model contains no LoRALinear layer to load into; call apply_lora() with the same targets first"
        )
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - set(targets))
    if missing or unexpected:
        raise KeyError(
            f"LoRA state dict does not fit the model: missing keys {missing[:6]}, unexpected keys {unexpected[:6]}"
        )
    for key, param in targets.items():
        value = state[key]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(
                f"shape mismatch for {key!r}: state has {tuple(value.shape)}, model expects {tuple(param.shape)} "
                "(was the adapter saved with another rank r?)"
            )
    for key, param in targets.items():
        param.copy_(state[key])
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` numbers of parameters (shared tensors counted once)."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
