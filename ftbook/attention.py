"""Scaled dot-product attention and its masks, from scratch, equal to PyTorch's.

Taught in chapter 7 (``chapters/07_tricks.ipynb``: the padding mask done right and the classic
row-mask bug, the 1/sqrt(d_k) scaling) and used by chapter 8 (``ftbook.transformer`` builds
BERT's multi-head self-attention on :func:`scaled_dot_product_attention` and
:func:`key_padding_mask`).

* :func:`scaled_dot_product_attention`: same arguments and semantics as
  :func:`torch.nn.functional.scaled_dot_product_attention` (boolean masks keep ``True`` positions,
  float masks are added to the scores, ``is_causal``, ``scale``, ``enable_gqa``).
  **Fully masked rows**: a query whose every key is masked (``False`` everywhere in a boolean
  mask, or ``-inf`` everywhere in a float mask) gets zero weights, so a zero output, and zero
  gradients, with no NaN anywhere, like PyTorch's CPU kernels of ``F.scaled_dot_product_attention``
  (an explicit ``softmax`` would give 0/0 = NaN there, and the NaN would spread through the
  gradient of the keys to every other row). A float mask with a *finite* fill (BERT's
  ``torch.finfo(dtype).min``) is not "fully masked": such a row gets uniform weights.
* :func:`attention_weights`: the softmax probabilities alone (what BERT returns as ``attentions``).
* :func:`key_padding_mask`: a ``(batch, seq)`` 1/0 ``attention_mask`` -> an additive mask
  ``(batch, 1, 1, seq)`` that hides padded **keys** from every query.
* :func:`row_padding_mask`: the classic bug, the same numbers on the **query** axis
  ``(batch, 1, seq, 1)``. It adds one constant to a whole row of scores, and softmax ignores it.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "AttentionError",
    "attention_weights",
    "scaled_dot_product_attention",
    "key_padding_mask",
    "row_padding_mask",
    "causal_mask",
]


class AttentionError(ValueError, RuntimeError):
    """Bad shapes, dtypes or probabilities for attention (PyTorch raises a ``RuntimeError``)."""


def _check_qkv(query, key, value, enable_gqa: bool) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise AttentionError(f"{name} must have at least 2 dims (..., seq, dim), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise AttentionError(f"{name} must be floating point, got dtype {t.dtype}")
    if not (query.dtype == key.dtype == value.dtype):
        raise AttentionError(
            f"query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}"
        )
    if query.size(-1) != key.size(-1):
        raise AttentionError(
            f"query and key must have the same last dim (head_dim), got query {tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    if key.size(-2) != value.size(-2):
        raise AttentionError(
            f"key and value must have the same sequence length (dim -2), got key {tuple(key.shape)} "
            f"and value {tuple(value.shape)}"
        )
    if enable_gqa and (query.dim() < 3 or key.dim() < 3 or query.size(-3) % key.size(-3)
                       or query.size(-3) % value.size(-3)):
        raise AttentionError(
            f"enable_gqa needs (..., heads, seq, dim) tensors whose query heads are a multiple of the "
            f"key/value heads, got query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )


def causal_mask(target_len: int, source_len: int, device=None) -> torch.Tensor:
    """Boolean ``(L, S)`` mask, ``True`` where query i may see key j (j <= i), as ``is_causal`` uses."""
    for name, n in (("target_len", target_len), ("source_len", source_len)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    return torch.ones(target_len, source_len, dtype=torch.bool, device=device).tril(diagonal=0)


def attention_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    r"""``softmax(q k^T * scale + mask)``: shape ``(..., L, S)``.

    A row whose every score is ``-inf`` (all keys masked) is all zeros, and passes zero gradient
    back (see the module docstring): the same as PyTorch's ``F.scaled_dot_product_attention``.
    """
    _check_qkv(query, key, key, enable_gqa)
    L, S = query.size(-2), key.size(-2)
    scale_factor = 1.0 / math.sqrt(query.size(-1)) if scale is None else float(scale)
    if enable_gqa:
        key = key.repeat_interleave(query.size(-3) // key.size(-3), dim=-3)
    scores = (query @ key.transpose(-2, -1)) * scale_factor  # (..., L, S)
    if is_causal and attn_mask is not None:
        raise AttentionError(
            "attn_mask and is_causal=True were both given; expected one of them (combine a causal "
            "mask into attn_mask yourself, e.g. with causal_mask(L, S) & your_mask)"
        )
    if is_causal:
        scores = scores.masked_fill(~causal_mask(L, S, device=query.device), float("-inf"))
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
        if attn_mask.dtype != torch.bool and attn_mask.dtype != query.dtype and not attn_mask.is_floating_point():
            raise AttentionError(
                f"attn_mask must be bool (True = attend) or floating point (added to the scores), "
                f"got dtype {attn_mask.dtype}"
            )
        try:
            torch.broadcast_shapes(attn_mask.shape, scores.shape)
        except RuntimeError:
            raise AttentionError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores "
                f"(..., L={L}, S={S}) of shape {tuple(scores.shape)}"
            ) from None
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    # A row whose every score is -inf has no softmax (0/0 = NaN). PyTorch returns zero weights
    # there, so do we; its scores are replaced by 0 *before* the softmax, so that no NaN enters
    # the backward pass either (masking the NaN afterwards would still give NaN gradients).
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1)  # (..., L, S)
    return weights.masked_fill(dead, 0.0)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    r"""$\mathrm{softmax}(QK^\top/\sqrt{d_k} + M)\,V$, the twin of ``F.scaled_dot_product_attention``.

    ``query`` ``(..., L, E)``, ``key`` ``(..., S, E)``, ``value`` ``(..., S, Ev)`` -> ``(..., L, Ev)``.
    Dropout (``dropout_p > 0``) is applied to the attention weights, always (like the twin, it does
    not look at a module's ``training`` flag: pass ``dropout_p=0.0`` at evaluation time).

    Boolean ``attn_mask``: ``True`` = *attend* (SDPA's convention; ``nn.MultiheadAttention``'s
    ``key_padding_mask`` is the opposite, ``True`` = ignore: pass ``~key_padding_mask``).
    ``is_causal=True``: query ``i`` sees keys ``j <= i`` (:func:`causal_mask`, top-left aligned when
    ``L != S``), for decoders. A query with every key masked gets a zero output and zero gradients.
    """
    if not isinstance(dropout_p, (int, float)) or isinstance(dropout_p, bool) or not 0.0 <= dropout_p <= 1.0:
        raise AttentionError(f"dropout_p must be a probability in [0, 1], got {dropout_p!r}")
    _check_qkv(query, key, value, enable_gqa)
    weights = attention_weights(query, key, attn_mask, is_causal, scale, enable_gqa)
    if dropout_p > 0.0:
        weights = torch.dropout(weights, dropout_p, train=True)
    if enable_gqa:
        value = value.repeat_interleave(query.size(-3) // value.size(-3), dim=-3)
    return weights @ value  # (..., L, Ev)


def _check_attention_mask(attention_mask, fn: str) -> torch.Tensor:
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"{fn}(): attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if attention_mask.dim() != 2:
        raise ValueError(
            f"{fn}(): attention_mask must have shape (batch, seq) with 1 for real tokens and 0 for "
            f"padding, got shape {tuple(attention_mask.shape)}"
        )
    m = attention_mask
    if m.dtype != torch.bool:
        if not torch.all((m == 0) | (m == 1)):
            raise ValueError(f"{fn}(): attention_mask must hold only 0 and 1, got values {torch.unique(m).tolist()[:6]}")
        m = m != 0
    return m


def key_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32,
                     fill: float | None = None) -> torch.Tensor:
    """Additive mask ``(batch, 1, 1, seq)``: 0 on real keys, ``fill`` on padded keys.

    ``fill`` defaults to ``torch.finfo(dtype).min`` (what BERT uses: finite, so a sequence of only
    padding gives uniform weights instead of NaN); pass ``float("-inf")`` for a hard mask. It
    broadcasts over heads and **queries**: every query ignores the padded keys.
    """
    keep = _check_attention_mask(attention_mask, "key_padding_mask")
    if not dtype.is_floating_point:
        raise TypeError(f"key_padding_mask(): dtype must be floating point, got {dtype}")
    fill = torch.finfo(dtype).min if fill is None else float(fill)
    mask = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, fill)
    return mask[:, None, None, :]  # (batch, 1, 1, seq): broadcast over heads and queries


def row_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32,
                     fill: float | None = None) -> torch.Tensor:
    """**The bug** (for chapter 7's demonstration): the padding mask on the query axis.

    Shape ``(batch, 1, seq, 1)``: the padded *query* rows get ``fill`` added to every score in their
    row, which softmax cancels (softmax(s + c) = softmax(s)). Real queries still attend to padded
    keys, so their outputs change with the amount of padding.
    """
    keep = _check_attention_mask(attention_mask, "row_padding_mask")
    if not dtype.is_floating_point:
        raise TypeError(f"row_padding_mask(): dtype must be floating point, got {dtype}")
    fill = torch.finfo(dtype).min if fill is None else float(fill)
    mask = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, fill)
    return mask[:, None, :, None]  # (batch, 1, seq, 1): one constant per row of scores
