"""Layer Normalization and RMSNorm from scratch, equal to PyTorch's.

Taught in chapter 6 (``chapters/06_layer_norm.ipynb``) and used by chapter 7 (the tricks around
it: Post-LN vs Pre-LN) and chapter 8 (``ftbook.transformer`` builds BERT's layers from
:class:`LayerNorm`).

* :func:`layer_norm` / :class:`LayerNorm`: the same arguments, values, gradients and errors as
  :func:`torch.nn.functional.layer_norm` / :class:`torch.nn.LayerNorm` (multi-dimensional
  ``normalized_shape``, ``elementwise_affine``, ``bias``), written with autograd-tracked tensor
  operations.
* :func:`layer_norm_manual` (and ``LayerNorm(..., backward="manual")``): the same forward with a
  backward pass derived by hand (:class:`LayerNormFunction`), saving only ``x_hat``, ``1/sigma``
  and the weight.
* :func:`layer_norm_one_pass`: the *wrong* way, variance as E[x^2] - E[x]^2 in one pass. It is
  here so chapter 6 can show how it fails when the inputs share a large offset (values ~1e4).
* :func:`rms_norm` / :class:`RMSNorm`: equal to :func:`torch.nn.functional.rms_norm` /
  :class:`torch.nn.RMSNorm` (``eps=None`` means ``torch.finfo(dtype).eps``).
* :func:`train_deep_stack` (with :class:`DeepMLP` and :func:`deep_stack_task`): chapter 6's
  experiment, a deep MLP trained with and without LayerNorm from the same initial weights.

Statistics are computed in two passes (mean first, then the mean of squared deviations), in
float32 at least (float16/bfloat16 inputs are upcast, like PyTorch's kernels do), so a large
common offset costs no accuracy.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .config import register_sizes

__all__ = [
    "NormShapeError",
    "NormDtypeError",
    "layer_norm",
    "layer_norm_manual",
    "layer_norm_one_pass",
    "LayerNormFunction",
    "LayerNorm",
    "rms_norm",
    "RMSNorm",
    "deep_stack_task",
    "DeepMLP",
    "train_deep_stack",
]

# Sizes for chapter 6's experiments and for benchmarks/norms.py (BERT-like shapes).
# bench_hidden: the hidden sizes benchmarks/norms.py times; deep_*: chapter 6's deep stack trained
# with and without LayerNorm (train_deep_stack).
register_sizes(
    "norms",
    tiny={"batch": 8, "seq": 128, "hidden": 768, "bench_repeats": 20, "demo_batch": 64,
          "bench_hidden": (256, 768, 2048),
          "deep_depth": 16, "deep_width": 64, "deep_steps": 300, "deep_train": 8000, "deep_val": 2000},
    full={"batch": 32, "seq": 512, "hidden": 768, "bench_repeats": 50, "demo_batch": 256,
          "bench_hidden": (256, 768, 2048, 4096),
          "deep_depth": 24, "deep_width": 128, "deep_steps": 1000, "deep_train": 20000, "deep_val": 5000},
)


class NormShapeError(ValueError, RuntimeError):
    """Bad ``normalized_shape`` / weight / bias shape. A ``RuntimeError`` like PyTorch's, and a ``ValueError``."""


class NormDtypeError(TypeError, RuntimeError):
    """Input or parameter of an unsupported or mismatched dtype (PyTorch raises a ``RuntimeError``)."""


# ----------------------------------------------------------------------------------- checks
def _as_shape(normalized_shape, fn: str) -> tuple[int, ...]:
    """Validate ``normalized_shape`` the way the functional twin does (a sequence of ints)."""
    if isinstance(normalized_shape, bool) or not isinstance(normalized_shape, (Sequence, torch.Size)):
        raise TypeError(
            f"{fn}(): normalized_shape must be a tuple or list of ints (e.g. (768,)), "
            f"got {type(normalized_shape).__name__} {normalized_shape!r}"
        )
    shape = tuple(normalized_shape)
    for i, d in enumerate(shape):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(
                f"{fn}(): normalized_shape must contain ints, found {type(d).__name__} {d!r} at position {i}"
            )
    if not shape:
        raise NormShapeError(
            f"{fn}(): normalized_shape must have at least one dimension, got {list(shape)}"
        )
    return tuple(int(d) for d in shape)


def _check_input(input: torch.Tensor, shape: tuple[int, ...], fn: str) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{fn}(): input must be a torch.Tensor, got {type(input).__name__}")
    if not input.is_floating_point():
        raise NormDtypeError(
            f"{fn}(): input must be a floating-point tensor (float16/bfloat16/float32/float64), "
            f"got dtype {input.dtype}"
        )
    n = len(shape)
    if input.dim() < n or tuple(input.shape[-n:]) != shape or any(d < 0 for d in shape):
        raise NormShapeError(
            f"{fn}(): normalized_shape {shape} does not match the last dims of input "
            f"{tuple(input.shape)}; expected input of shape (*, {', '.join(map(str, shape))})"
        )


def _check_param(p: torch.Tensor | None, name: str, shape: tuple[int, ...], input: torch.Tensor, fn: str) -> None:
    if p is None:
        return
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor or None, got {type(p).__name__}")
    if tuple(p.shape) != shape:
        raise NormShapeError(
            f"{fn}(): {name} has shape {tuple(p.shape)}, expected the normalized_shape {shape}"
        )
    reduced = input.dtype in (torch.float16, torch.bfloat16) and p.dtype == torch.float32
    if p.dtype != input.dtype and not reduced:
        raise NormDtypeError(
            f"{fn}(): {name} has dtype {p.dtype} but input has dtype {input.dtype}; "
            f"expected the same dtype (cast one of them with .to())"
        )


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _dims(n: int) -> tuple[int, ...]:
    return tuple(range(-n, 0))


# ------------------------------------------------------------------------------ layer norm
def layer_norm(
    input: torch.Tensor,
    normalized_shape: Sequence[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""Layer normalization over the last ``len(normalized_shape)`` dims, like ``F.layer_norm``.

    $y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \cdot \gamma + \beta$, with the biased
    variance $\sigma^2 = \frac1H\sum (x-\mu)^2$ computed in two passes.
    """
    shape = _as_shape(normalized_shape, "layer_norm")
    _check_input(input, shape, "layer_norm")
    _check_param(weight, "weight", shape, input, "layer_norm")
    _check_param(bias, "bias", shape, input, "layer_norm")
    dims = _dims(len(shape))
    x = input.to(_compute_dtype(input.dtype))
    mean = x.mean(dim=dims, keepdim=True)  # (*, 1, ..., 1)
    centered = x - mean
    var = (centered * centered).mean(dim=dims, keepdim=True)  # biased, two-pass
    y = centered * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.to(input.dtype)


def layer_norm_one_pass(
    input: torch.Tensor,
    normalized_shape: Sequence[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """The textbook shortcut Var[x] = E[x^2] - E[x]^2 in one pass. **Do not use**: shown in chapter 6.

    With a large common offset (x ~ 1e4, spread ~1, float32) both terms are ~1e8 and their
    difference loses every significant digit: the variance comes out wrong, even negative
    (clamped to 0 here, so the output explodes to ~x/sqrt(eps)).
    """
    shape = _as_shape(normalized_shape, "layer_norm_one_pass")
    _check_input(input, shape, "layer_norm_one_pass")
    _check_param(weight, "weight", shape, input, "layer_norm_one_pass")
    _check_param(bias, "bias", shape, input, "layer_norm_one_pass")
    dims = _dims(len(shape))
    x = input.to(_compute_dtype(input.dtype))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x * x).mean(dim=dims, keepdim=True) - mean * mean).clamp_min(0.0)
    y = (x - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.to(input.dtype)


class LayerNormFunction(torch.autograd.Function):
    r"""LayerNorm with a hand-derived backward.

    With $\hat x = (x-\mu)\,r$, $r = 1/\sqrt{\sigma^2+\epsilon}$, $g = \partial L/\partial \hat x
    = \gamma \odot \partial L/\partial y$ and means taken over the H normalized elements:

    $\partial L/\partial x = r\,(g - \overline{g} - \hat x\,\overline{g \hat x})$,
    $\partial L/\partial \gamma = \sum \partial L/\partial y \odot \hat x$,
    $\partial L/\partial \beta = \sum \partial L/\partial y$ (sums over the batch dims).

    Saves only ``x_hat`` (input-sized), ``r`` (one number per row) and ``weight``.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, n_dims: int, eps: float):
        dims = _dims(n_dims)
        x = input.to(_compute_dtype(input.dtype))
        mean = x.mean(dim=dims, keepdim=True)
        centered = x - mean
        rstd = torch.rsqrt((centered * centered).mean(dim=dims, keepdim=True) + eps)
        x_hat = centered * rstd
        y = x_hat
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x_hat, rstd, weight)
        ctx.n_dims = n_dims
        ctx.has_bias = bias is not None
        ctx.input_dtype = input.dtype
        return y.to(input.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        x_hat, rstd, weight = ctx.saved_tensors
        dims = _dims(ctx.n_dims)
        batch_dims = tuple(range(grad_output.dim() - ctx.n_dims))
        dy = grad_output.to(x_hat.dtype)
        g = dy * weight if weight is not None else dy
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            g_mean = g.mean(dim=dims, keepdim=True)
            gx_mean = (g * x_hat).mean(dim=dims, keepdim=True)
            grad_input = (rstd * (g - g_mean - x_hat * gx_mean)).to(ctx.input_dtype)

        def batch_sum(t):  # sum over the batch dims; sum(dim=()) would sum over everything
            return t.sum(dim=batch_dims) if batch_dims else t

        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = batch_sum(dy * x_hat).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = batch_sum(dy).to(weight.dtype if weight is not None else ctx.input_dtype)
        return grad_input, grad_weight, grad_bias, None, None


def layer_norm_manual(
    input: torch.Tensor,
    normalized_shape: Sequence[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """:func:`layer_norm` with the hand-derived backward of :class:`LayerNormFunction`.

    First-order gradients only: a second ``backward`` through it raises an error.
    """
    shape = _as_shape(normalized_shape, "layer_norm_manual")
    _check_input(input, shape, "layer_norm_manual")
    _check_param(weight, "weight", shape, input, "layer_norm_manual")
    _check_param(bias, "bias", shape, input, "layer_norm_manual")
    if bias is not None and weight is None:
        # keep the Function's gradient bookkeeping simple: a bias alone gets a unit weight
        weight_for_fn = torch.ones(shape, dtype=bias.dtype, device=bias.device)
        return LayerNormFunction.apply(input, weight_for_fn, bias, len(shape), float(eps))
    return LayerNormFunction.apply(input, weight, bias, len(shape), float(eps))


_BACKWARDS = {"autograd": layer_norm, "manual": layer_norm_manual}


class LayerNorm(nn.Module):
    """Drop-in twin of :class:`torch.nn.LayerNorm` (same arguments, parameters and state_dict).

    ``backward="manual"`` (keyword only, ours) uses the hand-derived backward of chapter 6.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        backward: str = "autograd",
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = _as_shape(normalized_shape, "LayerNorm")
        if any(d <= 0 for d in self.normalized_shape):
            raise NormShapeError(f"LayerNorm: normalized_shape must be positive, got {self.normalized_shape}")
        if not isinstance(eps, numbers.Real) or eps < 0:
            raise ValueError(f"LayerNorm: eps must be a non-negative number, got {eps!r}")
        if backward not in _BACKWARDS:
            raise ValueError(f"LayerNorm: backward must be one of {sorted(_BACKWARDS)}, got {backward!r}")
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.backward_impl = backward
        factory = {"device": device, "dtype": dtype}
        if self.elementwise_affine:
            self.weight = nn.Parameter(torch.empty(self.normalized_shape, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(self.normalized_shape, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _BACKWARDS[self.backward_impl](input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        s = f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        if self.elementwise_affine:
            s += f", bias={self.bias is not None}"
        if self.backward_impl != "autograd":
            s += f", backward={self.backward_impl!r}"
        return s


# -------------------------------------------------------------------------------- RMS norm
def rms_norm(
    input: torch.Tensor,
    normalized_shape: Sequence[int],
    weight: torch.Tensor | None = None,
    eps: float | None = None,
) -> torch.Tensor:
    r"""RMSNorm like ``F.rms_norm``: $y = x / \sqrt{\overline{x^2} + \epsilon}\cdot\gamma$.

    No centring and no bias. ``eps=None`` means ``torch.finfo(input.dtype).eps``.
    """
    shape = _as_shape(normalized_shape, "rms_norm")
    _check_input(input, shape, "rms_norm")
    _check_param(weight, "weight", shape, input, "rms_norm")
    if eps is None:
        eps = torch.finfo(input.dtype).eps
    dims = _dims(len(shape))
    x = input.to(_compute_dtype(input.dtype))
    y = x * torch.rsqrt((x * x).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    return y.to(input.dtype)


class RMSNorm(nn.Module):
    """Drop-in twin of :class:`torch.nn.RMSNorm`."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = _as_shape(normalized_shape, "RMSNorm")
        if any(d <= 0 for d in self.normalized_shape):
            raise NormShapeError(f"RMSNorm: normalized_shape must be positive, got {self.normalized_shape}")
        if eps is not None and (not isinstance(eps, numbers.Real) or eps < 0):
            raise ValueError(f"RMSNorm: eps must be None or a non-negative number, got {eps!r}")
        self.eps = None if eps is None else float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = nn.Parameter(torch.empty(self.normalized_shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


# ------------------------------------------------------ chapter 6: a deep stack, trained
def deep_stack_task(n_train: int, n_val: int, dim: int = 32, num_labels: int = 4, seed: int = 0):
    """A synthetic classification task: Gaussian inputs, labels from a fixed random teacher
    (one tanh hidden layer). Returns ``(x_train, y_train), (x_val, y_val)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, dim, generator=g)  # (n, dim)
    w1 = torch.randn(dim, 64, generator=g) / dim**0.5
    w2 = torch.randn(64, num_labels, generator=g) / 8.0
    y = (torch.tanh(x @ w1) @ w2).argmax(-1)  # (n,)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


class DeepMLP(nn.Module):
    """An input layer, ``depth`` blocks of Linear -> [LayerNorm] -> GELU, and an output layer.

    The Linear layers are created first, in the same order with or without LayerNorm, so one seed
    gives both variants the same initial weights (PyTorch's default initialisation); the LayerNorms
    start as the identity affine map (gamma = 1, beta = 0).
    """

    def __init__(self, in_dim: int, width: int, depth: int, num_labels: int, layer_norm: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, num_labels)
        self.norms = nn.ModuleList(LayerNorm(width) if layer_norm else nn.Identity() for _ in range(depth))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)  # (batch, width)
        for linear, norm in zip(self.layers, self.norms):
            h = nn.functional.gelu(norm(linear(h)))  # (batch, width)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))  # (batch, num_labels)


def train_deep_stack(layer_norm: bool, lr: float, seed: int, *, depth: int, width: int, steps: int,
                     n_train: int, n_val: int, batch_size: int = 64) -> dict:
    """Train one :class:`DeepMLP` with Adam on :func:`deep_stack_task` (the task is the same for
    every seed; the seed fixes the initial weights and the batches). A module-level function, so
    that ``ftbook.workers.run_all`` can run a grid of them in worker processes.

    Returns ``losses`` (training loss of every step), ``train_loss`` / ``val_loss`` / ``val_acc``
    (on the whole training / validation set after the last step) and ``init_hidden_std`` (the
    standard deviation of the last hidden layer at initialisation, on the validation inputs).
    """
    (x, y), (xv, yv) = deep_stack_task(n_train, n_val)
    torch.manual_seed(seed)
    model = DeepMLP(x.size(1), width, depth, int(y.max()) + 1, layer_norm)
    with torch.no_grad():
        init_hidden_std = model.hidden(xv).std().item()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        val_logits = model(xv)
        return {
            "losses": losses,
            "train_loss": nn.functional.cross_entropy(model(x), y).item(),
            "val_loss": nn.functional.cross_entropy(val_logits, yv).item(),
            "val_acc": (val_logits.argmax(-1) == yv).float().mean().item(),
            "init_hidden_std": init_hidden_std,
        }
