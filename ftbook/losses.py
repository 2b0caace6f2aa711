"""Loss functions from scratch: softmax cross-entropy, binary cross-entropy with logits, MSE.

Taught in chapter 4 (``chapters/04_cross_entropy.ipynb``, 损失函数：交叉熵).

Each function has the semantics (arguments, shapes, reductions, ``ignore_index``, class
weights, label smoothing, probability targets) of its ``torch.nn.functional`` twin and is
written without calling it: the log-softmax is computed with the log-sum-exp trick, so it stays
finite and exact for logits as large as ±1e4 in float32 and float64. ``tests/test_losses.py``
compares values and gradients with the twins (``gradcheck`` in float64).

Bad input raises an error that says what was wrong and what was expected. Where PyTorch is
lenient we are stricter on purpose, and say so: :func:`mse_loss` refuses shapes that differ
(PyTorch broadcasts them with only a warning, which silently averages the wrong pairs).
"""

from __future__ import annotations

import torch

__all__ = [
    "log_softmax",
    "softmax",
    "cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_float(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float64), got dtype {t.dtype}")


def log_softmax(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(softmax(input))`` by the log-sum-exp trick: ``x - (m + log(sum(exp(x - m))))``.

    ``m`` is the maximum along ``dim``; subtracting it makes the largest exponent ``exp(0) = 1``,
    so nothing overflows, and the sum is at least 1, so its log never underflows to ``-inf``.
    """
    _check_float("input", input)
    m = input.amax(dim=dim, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # a row of all -inf stays -inf, not nan
    shifted = input - m
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def softmax(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along ``dim``, computed as ``exp(log_softmax)`` (stable for any logits)."""
    return torch.exp(log_softmax(input, dim))


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Softmax cross-entropy between logits ``input`` and ``target``, like ``F.cross_entropy``.

    Shapes: ``input`` is ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)`` (classes on dim 1).
    ``target`` is either class indices (an integer tensor of shape ``()``, ``(N,)`` or
    ``(N, d1, ..., dk)``, values in ``[0, C)`` or ``ignore_index``) or class probabilities
    (a float tensor of the same shape as ``input``).

    Per element, with ``p = log_softmax(input)`` over the classes:

    * indices: ``l = -w[y] * ((1 - eps) * p[y] + eps / C * sum_c p[c] * w[c] / w[y])``
      (i.e. ``(1 - eps)`` times the weighted NLL plus ``eps / C`` times ``-sum_c w[c] p[c]``);
      ``"mean"`` divides by the sum of ``w[y]`` over non-ignored elements;
    * probabilities: ``l = -sum_c w[c] * q[c] * p[c]`` with ``q = (1 - eps) * target + eps / C``;
      ``"mean"`` divides by the number of elements ``N * d1 * ... * dk``.
    """
    _check_ce_arguments(input, target, label_smoothing, reduction)
    unbatched = input.dim() == 1
    if unbatched:  # (C,) -> (1, C)
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    n_classes = input.shape[1]
    w_b = None
    if weight is not None:
        _check_float("weight", weight)
        if weight.shape != (n_classes,):
            raise ValueError(
                f"weight must have shape ({n_classes},) (one weight per class), got {tuple(weight.shape)}"
            )
        # broadcast over (N, C, d1, ...): (1, C, 1, ..., 1)
        w_b = weight.reshape(1, n_classes, *([1] * (input.dim() - 2))).to(input.dtype)
    logp = log_softmax(input, dim=1)  # (N, C, d1, ...)
    if target.is_floating_point():  # class probabilities
        loss, denominator = _ce_probabilities(logp, target, w_b, label_smoothing)
    else:
        loss, denominator = _ce_indices(logp, target, weight, w_b, ignore_index, label_smoothing)
    if reduction == "none":
        return loss.squeeze(0) if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    # mean: over the elements (probabilities) or the weights of the non-ignored elements (indices;
    # nan when all are ignored, as in torch)
    return loss.sum() / denominator


def _check_ce_arguments(input, target, label_smoothing, reduction) -> None:
    _check_float("input", input)
    _check_reduction(reduction)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if input.dim() == 0:
        raise ValueError("input must have a class dimension: shape (C,), (N, C) or (N, C, d1, ...), got a scalar")


def _ce_probabilities(logp, target, w_b, label_smoothing):
    """Per-element loss ``-sum_c w[c] q[c] p[c]`` for probability targets, and the mean's divisor."""
    if target.shape != logp.shape:
        raise ValueError(
            f"probability targets must have the shape of input {tuple(logp.shape)}, "
            f"got {tuple(target.shape)} (class-index targets must be an integer tensor)"
        )
    q = target.to(logp.dtype)
    if label_smoothing > 0:
        q = q * (1.0 - label_smoothing) + label_smoothing / logp.shape[1]
    terms = q * logp if w_b is None else q * logp * w_b
    loss = -terms.sum(dim=1)  # (N, d1, ...)
    return loss, loss.numel()


def _ce_indices(logp, target, weight, w_b, ignore_index, label_smoothing):
    """Per-element loss for class-index targets (0 where ignored), and the mean's divisor (the
    summed weights of the non-ignored elements)."""
    n_classes = logp.shape[1]
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"class-index targets must be an integer tensor, got dtype {target.dtype}")
    expected = (logp.shape[0], *logp.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"class-index target must have shape {expected} for input of shape {tuple(logp.shape)}, "
            f"got {tuple(target.shape)}"
        )
    target = target.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= n_classes))
    if bad.any():
        value = int(target[bad].flatten()[0])
        raise IndexError(
            f"target contains class {value}, but input has {n_classes} classes: expected values in "
            f"0..{n_classes - 1} or ignore_index={ignore_index}"
        )
    safe = torch.where(valid, target, torch.zeros_like(target))  # ignored -> class 0, masked below
    logp_y = logp.gather(1, safe.unsqueeze(1)).squeeze(1)  # (N, d1, ...)
    w_y = weight.to(logp.dtype)[safe] if weight is not None else torch.ones_like(logp_y)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    w_y = torch.where(valid, w_y, zero)
    nll = torch.where(valid, -w_y * logp_y, zero)
    if label_smoothing == 0:
        return nll, w_y.sum()
    smooth = -(logp * w_b).sum(dim=1) if w_b is not None else -logp.sum(dim=1)
    smooth = torch.where(valid, smooth, zero)
    return (1.0 - label_smoothing) * nll + (label_smoothing / n_classes) * smooth, w_y.sum()


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sigmoid + binary cross-entropy in one stable formula, like ``F.binary_cross_entropy_with_logits``.

    ``l = -w * [pw * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))]``, computed as
    ``w * [(1 - y) * x + (1 + (pw - 1) * y) * softplus(-x)]`` with ``softplus(-x)`` computed by
    log-sum-exp (shift by ``m = max(0, -x)``): no ``exp`` of a large positive number.
    ``target`` holds probabilities in [0, 1] and has the shape of ``input``. (PyTorch's
    deprecated ``size_average`` / ``reduce`` arguments are not offered; pass ``reduction``.)
    """
    _check_float("input", input)
    _check_reduction(reduction)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.shape != input.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)} "
            f"(one 0/1 label or probability per logit)"
        )
    if not target.is_floating_point():
        target = target.to(input.dtype)  # 0/1 integer labels are fine
    if ((target < 0) | (target > 1)).any():
        raise ValueError("target must hold probabilities in [0, 1] (0/1 labels for hard targets)")
    # -log(sigmoid(x)) = log(1 + exp(-x)) = m + log1p(exp(-m) - 1 + exp(-x - m)) with m = max(0, -x).
    # One of exp(-m), exp(-x - m) is exactly 1, so nothing overflows and log1p keeps tiny values;
    # m is detached, so the gradient is exactly -sigmoid(-x) everywhere, x = 0 included (the
    # textbook max(-x, 0) + log1p(exp(-|x|)) has kinks whose autograd gives -1 at x = 0).
    m = torch.clamp(-input, min=0).detach()
    softplus_neg = m + torch.log1p(torch.expm1(-m) + torch.exp(-input - m))
    if pos_weight is not None:
        _check_float("pos_weight", pos_weight)
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * softplus_neg
    else:
        loss = (1 - target) * input + softplus_neg
    if weight is not None:
        _check_float("weight", weight)
        loss = loss * weight
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def mse_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error ``(input - target)^2``, like ``F.mse_loss``, but shapes must match.

    PyTorch broadcasts e.g. ``(N, 1)`` against ``(N,)`` into ``(N, N)`` with only a warning and
    returns a wrong number; here that is a ``ValueError``.
    """
    _check_float("input", input)
    _check_reduction(reduction)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.shape != input.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}; "
            f"reshape one of them (e.g. preds.squeeze(-1)) instead of relying on broadcasting"
        )
    sq = (input - target.to(input.dtype)) ** 2
    if reduction == "none":
        return sq
    return sq.sum() if reduction == "sum" else sq.mean()
