"""Autoregressive generation from scratch: greedy, temperature, top-k, top-p, the KV cache.

Taught in chapter 14 (``chapters/14_decoder_lm.ipynb``, "从零预训练解码器语言模型"), on :class:`ftbook.decoder.Decoder`.

* :func:`generate` - the loop: run the model, take the last position's logits, pick a token,
  append it, repeat. Returns prompt + new tokens ``(batch, prompt_len + new)`` like
  ``transformers``' ``model.generate(...)`` (``new <= max_new_tokens``: it stops early once every
  row has emitted ``eos_token_id``; a row that has finished keeps emitting ``pad_token_id``).
* :func:`apply_temperature`, :func:`top_k_filter`, :func:`top_p_filter` - the logits warpers, with
  the semantics of ``transformers.generation.logits_process``' ``TemperatureLogitsWarper``,
  ``TopKLogitsWarper`` and ``TopPLogitsWarper`` (filtered logits become ``-inf``), applied in that
  order, as ``transformers`` does.

**Which models.** An :class:`ftbook.decoder.Decoder` (its list-of-``(k, v)`` cache), or a
``transformers`` causal LM such as ``LlamaForCausalLM``, through its own cache: it is called as
``model(input_ids=..., attention_mask=..., position_ids=..., past_key_values=..., use_cache=...)``
and we read ``.logits`` and ``.past_key_values`` (a ``DynamicCache``) from the output, and pass the
cache back unchanged. We give the HF model ``position_ids`` computed from the mask, as HF's
``generate`` does (its ``forward`` alone would count positions over the left padding).

**Left padding.** Pad prompts on the left (``attention_mask`` 0 there): every row's last position is
then a real token, and the new tokens of all rows are appended in the same column. Positions are
``cumsum(attention_mask) - 1``, so padding does not shift them. The mask grows by a 1 per new token.

**The KV cache** (``use_cache=True``): the first call runs the whole prompt and returns every
layer's keys and values; each later call feeds only the one new token and attends to the cached
keys, so a step costs O(length) instead of O(length^2) for the full forward of ``use_cache=False``.
The tokens are the same either way (see ``benchmarks/kv_cache.py`` for the speed).
"""

from __future__ import annotations

import numbers

import torch

from .decoder import Decoder, position_ids_from_mask

__all__ = ["generate", "apply_temperature", "top_k_filter", "top_p_filter"]


# ------------------------------------------------------------------------------- warpers
def _check_logits(logits, fn: str) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        raise TypeError(f"{fn}(): logits must be a floating-point tensor (..., vocab), got "
                        + (f"dtype {logits.dtype} shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
                           else type(logits).__name__))


def _check_temperature(temperature) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0 \
            or temperature == float("inf"):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}"
                         + (" (for greedy decoding use do_sample=False)" if temperature == 0 else ""))


def _check_top_k(top_k) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive int (the number of tokens kept), got {top_k!r}")


def _check_top_p(top_p) -> None:
    if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be a probability in (0, 1], got {top_p!r}")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` (``TemperatureLogitsWarper``): below 1 sharpens, above 1 flattens."""
    _check_logits(logits, "apply_temperature")
    _check_temperature(temperature)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of the last dim, set the others to ``-inf`` (``TopKLogitsWarper``).

    A logit equal to the k-th largest is kept too, so ties can keep more than ``k`` tokens.
    ``k`` larger than the vocabulary keeps everything.
    """
    _check_logits(logits, "top_k_filter")
    _check_top_k(k)
    k = min(int(k), logits.size(-1))
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (``TopPLogitsWarper``): keep the smallest set of most probable tokens whose
    probabilities add up to ``p`` or more (always at least the most probable one); others ``-inf``.

    Computed the way transformers does, from the *least* probable end: sort ascending, and drop the
    tokens whose cumulative probability is ``<= 1 - p`` (what remains sums to ``>= p``). Among tied
    logits at the boundary, ``torch.sort``'s order decides, as in transformers.
    """
    _check_logits(logits, "top_p_filter")
    _check_top_p(p)
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=False)  # (..., vocab) ascending
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (..., vocab), last entry ~1
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -1] = False  # the most probable token always stays
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def _next_tokens(logits, do_sample, temperature, top_k, top_p, generator) -> torch.Tensor:
    """``(batch, vocab)`` float32 logits -> ``(batch,)`` token ids: argmax, or a sample of the warped softmax."""
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = apply_temperature(logits, temperature)
    if top_k is not None:
        scores = top_k_filter(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = top_p_filter(scores, top_p)
    probs = torch.softmax(scores, dim=-1)  # (batch, vocab)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


# ------------------------------------------------------------------------------- the loop
def _model_step(model, ids, mask, cache, use_cache):
    """One forward: -> next-token logits ``(batch, vocab)`` in float32, and the cache (or ``None``).

    Without a cache the whole sequence is fed; with one, only the last token (the rest is cached).
    """
    feed = ids if cache is None else ids[:, -1:]  # (batch, seq) or (batch, 1)
    if isinstance(model, Decoder):
        out = model(feed, attention_mask=mask, past_key_values=cache, use_cache=use_cache)
        logits, cache = out if use_cache else (out, None)
    else:  # a transformers causal LM: positions from the mask, its own cache object
        positions = position_ids_from_mask(mask)[:, -feed.size(1):]  # (batch, feed_len)
        out = model(input_ids=feed, attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=use_cache, logits_to_keep=1)  # (batch, 1, vocab), as generate
        if not hasattr(out, "logits"):
            raise TypeError(f"model must be an ftbook Decoder or a transformers causal LM whose output "
                            f"has .logits; {type(model).__name__} returned {type(out).__name__}")
        logits, cache = out.logits, (out.past_key_values if use_cache else None)
    return logits[:, -1, :].float(), cache  # float32 like transformers' generate, before argmax/softmax


def _check_generate(input_ids, max_new_tokens, attention_mask, generator) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long \
            or input_ids.size(1) == 0:
        raise TypeError("input_ids must be a non-empty 2-D torch.long tensor (batch, prompt_len), got "
                        + (f"shape {tuple(input_ids.shape)} dtype {input_ids.dtype}"
                           if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__))
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if attention_mask is not None and (not isinstance(attention_mask, torch.Tensor)
                                       or attention_mask.shape != input_ids.shape):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {got}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _eos_ids(eos_token_id, device) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    ids = [eos_token_id] if isinstance(eos_token_id, numbers.Integral) else list(eos_token_id)
    if not ids or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0 for i in ids):
        raise ValueError(f"eos_token_id must be None, a token id or a list of token ids, got {eos_token_id!r}")
    return torch.tensor(ids, dtype=torch.long, device=device)


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int, *, attention_mask=None,
             do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, eos_token_id=None, pad_token_id: int | None = None,
             use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Generate up to ``max_new_tokens`` tokens after the (left-padded) prompts ``input_ids``.

    Returns ``(batch, prompt_len + new)``, the prompt first, as ``transformers``' ``generate``.
    ``do_sample=False``: greedy (argmax; ``temperature``/``top_k``/``top_p`` are checked but unused).
    ``do_sample=True``: sample from ``softmax(top_p(top_k(logits / temperature)))`` with ``generator``.
    ``eos_token_id`` (an id or a list): a row that emits it is finished and gets ``pad_token_id``
    (default: the first eos id, as transformers does) from then on; generation stops once every
    row is finished. ``use_cache``: the KV cache (module docstring); the tokens are the same without.
    """
    _check_generate(input_ids, max_new_tokens, attention_mask, generator)
    _check_temperature(temperature)
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    eos = _eos_ids(eos_token_id, input_ids.device)
    if eos is not None and pad_token_id is None:
        pad_token_id = int(eos[0])
    ids = input_ids
    mask = torch.ones_like(ids) if attention_mask is None else attention_mask.long()  # (batch, prompt_len)
    unfinished = torch.ones(ids.size(0), dtype=torch.bool, device=ids.device)  # (batch,)
    cache = None
    for _ in range(max_new_tokens):
        logits, cache = _model_step(model, ids, mask, cache, use_cache)  # (batch, vocab)
        tokens = _next_tokens(logits, do_sample, temperature, top_k, top_p, generator)  # (batch,)
        if eos is not None:
            tokens = torch.where(unfinished, tokens, torch.full_like(tokens, pad_token_id))
            unfinished = unfinished & ~torch.isin(tokens, eos)
        ids = torch.cat((ids, tokens[:, None]), dim=1)  # (batch, len + 1)
        mask = torch.cat((mask, torch.ones_like(mask[:, :1])), dim=1)  # the new token is real
        if not unfinished.any():
            break
    return ids
