"""A Llama-style decoder-only language model from scratch that equals ``transformers.LlamaForCausalLM``.

Taught in chapter 14 (``chapters/14_decoder_lm.ipynb``, "从零预训练解码器语言模型"); :mod:`ftbook.generation` generates text
with it. Built on chapter 6's :class:`ftbook.norms.RMSNorm` and chapter 7's :mod:`ftbook.attention`,
in the spirit of nanoGPT and of transformers' ``modeling_llama.py`` (the same parameter names, minus
the ``model.`` prefix, so :func:`hf_key_map` is easy to read).

* :class:`DecoderConfig` - the sizes; field names are ``transformers.LlamaConfig``'s, the defaults
  are SmolLM2-135M's (``DecoderConfig.from_hf`` reads a ``LlamaConfig``).
* Rotary position embedding (RoPE): :func:`rotate_half`, :func:`rope_cos_sin` (the cos/sin table),
  :class:`RotaryEmbedding` (looks positions up in it), :func:`apply_rotary_pos_emb`.
* :func:`repeat_kv` and :class:`DecoderAttention` - grouped-query attention (GQA): ``num_key_value_heads``
  key/value heads, each shared by ``num_attention_heads // num_key_value_heads`` query heads.
* :class:`MLP` (SwiGLU: ``down(silu(gate(x)) * up(x))``), :class:`DecoderLayer` (Pre-RMSNorm).
* :class:`Decoder` - embeddings, layers, final norm, ``lm_head`` (tied to the embeddings or not);
  ``forward(input_ids, attention_mask, past_key_values, use_cache)`` returns logits
  ``(batch, seq, vocab)``; ``Decoder.from_hf(llama)`` copies a ``LlamaForCausalLM``'s weights.

Tested equal to ``LlamaForCausalLM`` (eager and SDPA attention), logits and every gradient, to 1e-10
in float64 - once two float32 steps of transformers are made float64 for the comparison: its
``LlamaRMSNorm`` casts to float32 even in a float64 model, and so does its eager softmax (ours stay
in the input's dtype, as ``ftbook.norms`` does) - and to 1e-5 in float32 against the library as is.

**Positions** come from the attention mask, so LEFT padding works: ``position_ids = cumsum(mask) - 1``,
and 0 on padding (what ``transformers``' ``generate`` passes to the model). A left-padded row then gets
the same positions 0, 1, 2, ... as the same row without padding. (``LlamaForCausalLM.forward`` itself
counts 0, 1, 2, ... over the padding too, unless it is given ``position_ids``.)

**Masks** are boolean, ``True`` = attend (SDPA's convention): a query sees the keys at or before it
(causal) that are real tokens (padding mask), and always itself, so that no row of the mask is empty
(a padding query has no real key before it; the real tokens never see the padding, so what a padding
position computes does not matter, only that it is not NaN).

**KV cache**: a plain ``list`` with one ``(key, value)`` pair per layer, each tensor of shape
``(batch, num_key_value_heads, past_len, head_dim)``, keys already rotated. ``forward(...,
use_cache=True)`` returns ``(logits, cache)`` where ``cache`` holds the past *and* the new tokens (a
new list; the one passed in is not modified). With a cache, ``input_ids`` holds only the new tokens
and ``attention_mask`` covers the past and the new ones: ``(batch, past_len + seq)``.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .attention import scaled_dot_product_attention
from .norms import RMSNorm
from .transformer import copy_weights

__all__ = [
    "DecoderConfig", "rotate_half", "rope_cos_sin", "RotaryEmbedding", "apply_rotary_pos_emb",
    "repeat_kv", "position_ids_from_mask", "decoder_attention_mask", "DecoderAttention", "MLP",
    "DecoderLayer", "Decoder", "hf_key_map",
]

IMPLS = ("explicit", "sdpa")


def _positive_int(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


@dataclass
class DecoderConfig:
    """The sizes of a decoder; field names are ``transformers.LlamaConfig``'s, defaults SmolLM2-135M's."""

    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_hidden_layers: int = 30
    num_attention_heads: int = 9
    num_key_value_heads: int | None = 3  # None: = num_attention_heads (plain multi-head attention)
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-5
    rope_theta: float = 100000.0
    tie_word_embeddings: bool = True
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    pad_token_id: int | None = None  # the embedding's padding_idx, as in LlamaModel (zero row, no gradient)
    attn_impl: str = "sdpa"  # "explicit" (ftbook.attention, teaching) or "sdpa" (PyTorch's, fast)

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            _positive_int(name, getattr(self, name))
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                                 f"{self.num_attention_heads}; give head_dim explicitly")
            self.head_dim = self.hidden_size // self.num_attention_heads
        _positive_int("head_dim", self.head_dim)
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (RoPE rotates pairs of dims), got {self.head_dim}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads {self.num_key_value_heads}")
        if not isinstance(self.rms_norm_eps, numbers.Real) or self.rms_norm_eps < 0:
            raise ValueError(f"rms_norm_eps must be a non-negative number, got {self.rms_norm_eps!r}")
        if not isinstance(self.rope_theta, numbers.Real) or self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be a positive number, got {self.rope_theta!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id must be None or in [0, {self.vocab_size}), got {self.pad_token_id!r}")
        if self.attn_impl not in IMPLS:
            raise ValueError(f"attn_impl must be one of {IMPLS}, got {self.attn_impl!r}")

    @classmethod
    def from_hf(cls, hf_config, **overrides) -> "DecoderConfig":
        """Read a ``transformers.LlamaConfig``; refuse settings this decoder does not implement."""
        if getattr(hf_config, "model_type", None) != "llama":
            raise ValueError(f"expected a LlamaConfig (model_type 'llama'), got model_type "
                             f"{getattr(hf_config, 'model_type', None)!r}")
        if getattr(hf_config, "hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {hf_config.hidden_act!r} is not supported; expected 'silu' (SwiGLU)")
        for flag in ("attention_bias", "mlp_bias"):
            if getattr(hf_config, flag, False):
                raise ValueError(f"{flag}=True is not supported: this decoder's linear layers have no bias")
        if getattr(hf_config, "attention_dropout", 0.0):
            raise ValueError(f"attention_dropout={hf_config.attention_dropout} is not supported; expected 0.0")
        rope = getattr(hf_config, "rope_parameters", None) or {}  # transformers 5; 4.x had rope_theta
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_type {rope['rope_type']!r} (RoPE scaling) is not supported; "
                             f"expected 'default'")
        names = {f.name for f in fields(cls)} - {"rope_theta", "attn_impl"}
        kwargs = {n: getattr(hf_config, n) for n in names if getattr(hf_config, n, None) is not None}
        kwargs["rope_theta"] = float(rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0)))
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------ RoPE
def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(..., d)`` -> ``(..., d)``: the halves ``[x1, x2]`` become ``[-x2, x1]``.

    Dim ``i`` is paired with dim ``i + d/2`` (transformers' layout, not interleaved pairs), so
    ``x * cos + rotate_half(x) * sin`` rotates each pair ``(x_i, x_{i+d/2})`` by its angle.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(head_dim: int, max_positions: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The cos/sin table, two float32 tensors ``(max_positions, head_dim)``.

    Pair ``i`` (dims ``i`` and ``i + head_dim/2``) turns at frequency $\theta^{-2i/d}$: angle
    $m\,\theta^{-2i/d}$ at position $m$. Computed in float32 as transformers does, whatever the
    model's dtype, so a float64 model gets exactly the same angles as ``LlamaRotaryEmbedding``.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (d/2,)
    positions = torch.arange(max_positions, dtype=torch.float32)  # (max_positions,)
    freqs = positions[:, None] * inv_freq[None, :]  # (max_positions, d/2)
    angles = torch.cat((freqs, freqs), dim=-1)  # (max_positions, d): pair i's angle at i and i + d/2
    return angles.cos(), angles.sin()


class RotaryEmbedding(nn.Module):
    """Holds the cos/sin table (buffers, not saved in the state_dict) and looks positions up in it."""

    def __init__(self, head_dim: int, max_positions: int, theta: float):
        super().__init__()
        cos, sin = rope_cos_sin(head_dim, max_positions, theta)
        self.register_buffer("cos_cached", cos, persistent=False)  # (max_positions, head_dim)
        self.register_buffer("sin_cached", sin, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``position_ids`` ``(batch, seq)`` -> cos, sin ``(batch, seq, head_dim)`` in ``dtype``."""
        return self.cos_cached[position_ids].to(dtype), self.sin_cached[position_ids].to(dtype)


def apply_rotary_pos_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``x`` ``(batch, heads, seq, head_dim)`` by cos/sin ``(batch, seq, head_dim)``."""
    cos, sin = cos[:, None], sin[:, None]  # (batch, 1, seq, head_dim): the same angles for every head
    return x * cos + rotate_half(x) * sin


# ------------------------------------------------------------------------------- attention
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``(batch, kv_heads, seq, d)`` -> ``(batch, kv_heads * n_rep, seq, d)``: each kv head ``n_rep`` times.

    Query head ``h`` uses kv head ``h // n_rep`` (= ``repeat_interleave(n_rep, dim=1)``).
    """
    if n_rep == 1:
        return x
    b, kv_heads, s, d = x.shape
    x = x[:, :, None, :, :].expand(b, kv_heads, n_rep, s, d)  # a view, no copy yet
    return x.reshape(b, kv_heads * n_rep, s, d)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(batch, total)`` 1/0 mask -> positions ``(batch, total)``: count real tokens from 0; 0 on padding.

    ``[[0, 0, 1, 1, 1]]`` -> ``[[0, 0, 0, 1, 2]]``: the same as transformers' ``generate``.
    """
    positions = attention_mask.long().cumsum(-1) - 1  # (batch, total); -1 before the first real token
    return positions.masked_fill(attention_mask == 0, 0)


def decoder_attention_mask(keep: torch.Tensor | None, q_len: int, total: int, device=None) -> torch.Tensor:
    """Boolean mask ``(batch or 1, 1, q_len, total)``, ``True`` = attend.

    The ``q_len`` queries are the *last* positions of the ``total`` keys (the first ``total - q_len``
    come from the cache). Query ``i`` sees key ``j`` when ``j`` is at or before it and ``keep[:, j]``
    (a real token, ``keep`` is ``(batch, total)`` bool or ``None`` for no padding) - and always itself.
    """
    query_pos = torch.arange(total - q_len, total, device=device)  # (q_len,): absolute positions
    key_pos = torch.arange(total, device=device)  # (total,)
    causal = key_pos[None, :] <= query_pos[:, None]  # (q_len, total)
    if keep is None:
        return causal[None, None]  # (1, 1, q_len, total)
    itself = key_pos[None, :] == query_pos[:, None]  # (q_len, total): the diagonal
    mask = causal[None, None] & keep[:, None, None, :]  # (batch, 1, q_len, total)
    return mask | itself[None, None]  # a padding query sees itself: no empty row


class DecoderAttention(nn.Module):
    """Causal grouped-query self-attention with RoPE: project, rotate, (append to cache), attend, merge."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim, self.impl = config.head_dim, config.attn_impl
        self.n_rep = self.num_heads // self.num_kv_heads  # query heads per kv head
        self.scaling = self.head_dim ** -0.5
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``x`` ``(batch, seq, hidden)`` -> output ``(batch, seq, hidden)`` and this layer's ``(k, v)``."""
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)  # (b, heads, s, d)
        k = self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (b, kv, s, d)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (b, kv, s, d)
        q, k = apply_rotary_pos_emb(q, cos, sin), apply_rotary_pos_emb(k, cos, sin)
        if past is not None:  # the cached keys/values of the earlier tokens come first
            k = torch.cat((past[0], k), dim=2)  # (b, kv, past + s, d)
            v = torch.cat((past[1], v), dim=2)
        attend = scaled_dot_product_attention if self.impl == "explicit" else F.scaled_dot_product_attention
        ctx = attend(q, repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep),
                     attn_mask=mask, scale=self.scaling)  # (b, heads, s, d)
        ctx = ctx.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim)  # (b, s, heads * d)
        return self.o_proj(ctx), (k, v)


class MLP(nn.Module):
    """SwiGLU feed-forward: ``down_proj(silu(gate_proj(x)) * up_proj(x))``, no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (batch, seq, hidden)


class DecoderLayer(nn.Module):
    """Pre-RMSNorm block: ``x = x + Attn(RMSNorm(x)); x = x + MLP(RMSNorm(x))``."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = DecoderAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = MLP(config.hidden_size, config.intermediate_size)

    def forward(self, x, cos, sin, mask, past=None):
        """``x`` ``(batch, seq, hidden)`` -> ``(batch, seq, hidden)`` and this layer's ``(k, v)``."""
        attn_out, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)
        x = x + attn_out
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kv


# -------------------------------------------------------------------------------- checks
def _check_cache(config: DecoderConfig, past_key_values, batch: int) -> int:
    """Validate a cache (see the module docstring); return its length ``past_len``."""
    if past_key_values is None:
        return 0
    if not isinstance(past_key_values, (list, tuple)):
        raise TypeError(f"past_key_values must be None or the list of (key, value) pairs that "
                        f"forward(..., use_cache=True) returned, got {type(past_key_values).__name__}")
    if len(past_key_values) != config.num_hidden_layers:
        raise ValueError(f"past_key_values has {len(past_key_values)} entries, expected one (key, value) "
                         f"pair per layer: {config.num_hidden_layers}")
    past_len = None
    for i, pair in enumerate(past_key_values):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"past_key_values[{i}] must be a (key, value) pair of tensors")
        for name, t in zip(("key", "value"), pair):
            if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.size(0) != batch \
                    or t.size(1) != config.num_key_value_heads or t.size(3) != config.head_dim:
                raise ValueError(
                    f"past_key_values[{i}] {name} must have shape (batch={batch}, num_key_value_heads="
                    f"{config.num_key_value_heads}, past_len, head_dim={config.head_dim}), got "
                    f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
            if past_len is None:
                past_len = t.size(2)
            elif t.size(2) != past_len:
                raise ValueError(f"past_key_values[{i}] {name} holds {t.size(2)} positions, the others {past_len}")
    return past_len


def _check_inputs(config: DecoderConfig, input_ids, attention_mask, past_key_values) -> int:
    """Validate the arguments of :meth:`Decoder.forward`; return ``past_len``."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise TypeError(
            "input_ids must be a 2-D torch.long tensor (batch, seq) of token ids, got "
            + (f"shape {tuple(input_ids.shape)} dtype {input_ids.dtype}" if isinstance(input_ids, torch.Tensor)
               else type(input_ids).__name__))
    b, s = input_ids.shape
    if s == 0:
        raise ValueError("input_ids has no tokens (seq = 0); expected at least one per row")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= config.vocab_size):
        raise ValueError(f"input_ids must be in [0, vocab_size={config.vocab_size}), got values in "
                         f"[{input_ids.min().item()}, {input_ids.max().item()}]")
    past_len = _check_cache(config, past_key_values, b)
    total = past_len + s
    if total > config.max_position_embeddings:
        raise ValueError(f"sequence length {total} (past {past_len} + new {s}) exceeds "
                         f"max_position_embeddings {config.max_position_embeddings}; truncate the input")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (b, total):
            got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise ValueError(f"attention_mask must have shape (batch, past_len + seq) = ({b}, {total}) "
                             f"(1 = real token, 0 = padding), got {got}")
        if attention_mask.dtype != torch.bool and not torch.all((attention_mask == 0) | (attention_mask == 1)):
            raise ValueError(f"attention_mask must hold only 0 and 1, got values "
                             f"{torch.unique(attention_mask).tolist()[:6]}")
    return past_len


# -------------------------------------------------------------------------------- model
class Decoder(nn.Module):
    """Token embedding, ``num_hidden_layers`` decoder layers, final RMSNorm, ``lm_head``."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.rotary = RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope_theta)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:  # one matrix both reads tokens in and scores them out
            self.lm_head.weight = self.embed_tokens.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:  # Llama's: N(0, 0.02), RMSNorm weights 1
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                past_key_values: list | None = None, use_cache: bool = False):
        """``(batch, seq)`` ids -> logits ``(batch, seq, vocab)``; ``(logits, cache)`` when ``use_cache``.

        ``attention_mask`` ``(batch, past_len + seq)``: 1 = real token, 0 = padding (``None``: none).
        ``past_key_values``: the cache returned by an earlier call (module docstring), or ``None``.
        """
        past_len = _check_inputs(self.config, input_ids, attention_mask, past_key_values)
        b, s = input_ids.shape
        total = past_len + s
        if attention_mask is None:
            keep = None
            positions = torch.arange(past_len, total, device=input_ids.device)[None].expand(b, s)
        else:
            keep = attention_mask.bool()  # (b, total)
            positions = position_ids_from_mask(attention_mask)[:, past_len:]  # (b, s): the new tokens'
        mask = decoder_attention_mask(keep, s, total, device=input_ids.device)  # (b or 1, 1, s, total)
        x = self.embed_tokens(input_ids)  # (b, s, hidden)
        cos, sin = self.rotary(positions, x.dtype)  # (b, s, head_dim) each
        cache = []
        for i, layer in enumerate(self.layers):
            past = None if past_key_values is None else past_key_values[i]
            x, kv = layer(x, cos, sin, mask, past)  # (b, s, hidden); kv: (b, kv_heads, total, head_dim)
            cache.append(kv)
        logits = self.lm_head(self.norm(x))  # (b, s, vocab)
        return (logits, cache) if use_cache else logits

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters, a tied matrix counted once (``PreTrainedModel.num_parameters``'s rule:
        ``exclude_embeddings`` leaves out the ``nn.Embedding`` weights, and so a tied ``lm_head``)."""
        params = dict(self.named_parameters())  # named_parameters() lists a shared tensor once
        if exclude_embeddings:
            params.pop("embed_tokens.weight")
        return sum(p.numel() for p in params.values())

    @property
    def all_tied_weights_keys(self) -> dict[str, str]:
        """``{tied key: its source}``, as transformers names it (a tied ``lm_head`` is saved once)."""
        return {"lm_head.weight": "embed_tokens.weight"} if self.config.tie_word_embeddings else {}

    def save_pretrained(self, folder, **_ignored) -> None:
        """Write ``config.json`` (:class:`DecoderConfig`) and ``model.safetensors`` (a tied matrix once),
        the two files :meth:`from_pretrained` reads - the layout of a transformers checkpoint."""
        import json
        from pathlib import Path

        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "ftbook-decoder", **self.config.to_dict()},
                                                       indent=1), encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()
                 if k not in self.all_tied_weights_keys}
        save_file(state, str(folder / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder) -> "Decoder":
        """The decoder saved in ``folder`` by :meth:`save_pretrained`, in eval mode."""
        import json
        from pathlib import Path

        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{folder} holds no saved Decoder (config.json + model.safetensors)")
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if cfg.pop("model_type", None) != "ftbook-decoder":
            raise ValueError(f"{folder / 'config.json'} is not an ftbook Decoder's config")
        model = cls(DecoderConfig(**cfg))
        missing, unexpected = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
        missing = [k for k in missing if k not in model.all_tied_weights_keys]
        if missing or unexpected:
            raise RuntimeError(f"{folder} does not fit its config: missing {missing}, unexpected {unexpected}")
        return model.eval()

    @classmethod
    def from_hf(cls, model, attn_impl: str = "sdpa") -> "Decoder":
        """A decoder holding a copy of a ``transformers.LlamaForCausalLM``'s weights (same dtype and device)."""
        from transformers import LlamaForCausalLM

        if not isinstance(model, LlamaForCausalLM):
            raise TypeError(f"expected a transformers.LlamaForCausalLM, got {type(model).__name__}")
        config = DecoderConfig.from_hf(model.config, attn_impl=attn_impl)
        ref = next(model.parameters())
        dec = cls(config).to(device=ref.device, dtype=ref.dtype)
        state = model.state_dict()
        if config.tie_word_embeddings and "lm_head.weight" in state \
                and not torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"]):
            raise ValueError("config.tie_word_embeddings is True but the model's lm_head.weight differs from "
                             "model.embed_tokens.weight; untie the config or the weights")
        copy_weights(dec, state, hf_key_map(config.num_hidden_layers, config.tie_word_embeddings))
        return dec.train(model.training)


def hf_key_map(num_layers: int, tie_word_embeddings: bool) -> dict[str, str]:
    """Our parameter name -> ``LlamaForCausalLM``'s, for every parameter of a :class:`Decoder`."""
    m = {"embed_tokens.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    if not tie_word_embeddings:  # tied: lm_head.weight *is* embed_tokens.weight, not a parameter of its own
        m["lm_head.weight"] = "lm_head.weight"
    for i in range(num_layers):
        for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
                     "input_layernorm", "post_attention_layernorm"):
            m[f"layers.{i}.{part}.weight"] = f"model.layers.{i}.{part}.weight"
    return m
