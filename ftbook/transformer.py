"""A Transformer encoder (BERT) from scratch that equals ``transformers.BertModel``.

Taught in chapter 8 (``chapters/08_transformer.ipynb``, "从零实现 Transformer 编码器"). Built on
chapter 6's :class:`ftbook.norms.LayerNorm` and chapter 7's :mod:`ftbook.attention`.

* :class:`Embeddings` - token + position + segment embeddings, LayerNorm, dropout.
* :class:`MultiHeadSelfAttention` - explicit (``impl="explicit"``: our
  :func:`ftbook.attention.scaled_dot_product_attention`, every step visible) or fast
  (``impl="sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``); tested equal.
* :class:`FeedForward`, :class:`EncoderLayer` (Post-LN as in BERT; ``norm_first=True`` for Pre-LN).
* :class:`Encoder` - the stack; ``Encoder.from_hf(bert)`` copies a ``BertModel``'s weights and
  ``forward(input_ids, attention_mask, token_type_ids)`` returns the last hidden states, equal to
  ``BertModel(...).last_hidden_state`` (tested to 1e-5 on the packaged pretrained MiniLM, padded
  batches, the way minGPT checks its GPT-2 against Hugging Face's).
* :class:`Pooler`, :class:`EncoderForSequenceClassification` - BERT's [CLS] pooler and a
  classification head (``from_hf`` on ``BertForSequenceClassification``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .attention import key_padding_mask, scaled_dot_product_attention
from .config import register_sizes
from .norms import LayerNorm

__all__ = [
    "EncoderConfig", "Embeddings", "MultiHeadSelfAttention", "FeedForward", "EncoderLayer",
    "Encoder", "Pooler", "EncoderForSequenceClassification", "hf_key_map", "count_parameters",
]

IMPLS = ("explicit", "sdpa")

register_sizes(
    "transformer",
    # demo_*: the small randomly initialised parts built step by step in chapter 8;
    # bench_*: the in-chapter timing (benchmarks/encoder.py measures more thoroughly).
    tiny={"demo_hidden": 16, "demo_heads": 4, "demo_layers": 2, "bench_batch": 16, "bench_repeats": 3},
    full={"demo_hidden": 64, "demo_heads": 4, "demo_layers": 2, "bench_batch": 32, "bench_repeats": 5},
)


@dataclass
class EncoderConfig:
    """The sizes of an encoder; field names are ``transformers.BertConfig``'s."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0
    norm_first: bool = False  # False: Post-LN (BERT); True: Pre-LN (GPT-2 style, plus a final norm)
    attn_impl: str = "sdpa"  # "explicit" (teaching) or "sdpa" (fast)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}; expected hidden_size = heads * head_dim"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.attn_impl not in IMPLS:
            raise ValueError(f"attn_impl must be one of {IMPLS}, got {self.attn_impl!r}")

    @classmethod
    def from_hf(cls, hf_config, **overrides) -> "EncoderConfig":
        """Read a ``transformers.BertConfig``; refuse settings this encoder does not implement."""
        act = getattr(hf_config, "hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(f"hidden_act {act!r} is not supported; expected 'gelu' (BERT's exact erf GELU)")
        pos = getattr(hf_config, "position_embedding_type", "absolute")
        if pos not in (None, "absolute"):
            raise ValueError(f"position_embedding_type {pos!r} is not supported; expected 'absolute'")
        if getattr(hf_config, "is_decoder", False):
            raise ValueError("is_decoder=True: this is an encoder (bidirectional attention) only")
        names = {f.name for f in fields(cls)} - {"norm_first", "attn_impl"}
        kwargs = {n: getattr(hf_config, n) for n in names if getattr(hf_config, n, None) is not None}
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return asdict(self)


class Embeddings(nn.Module):
    """``LayerNorm(token + position + segment)`` then dropout: ``(batch, seq)`` ids -> ``(batch, seq, hidden)``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq), got {tuple(input_ids.shape)}")
        seq = input_ids.size(1)
        if seq > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {seq} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}; truncate the input")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif token_type_ids.shape != input_ids.shape:
            raise ValueError(f"token_type_ids shape {tuple(token_type_ids.shape)} does not match "
                             f"input_ids shape {tuple(input_ids.shape)}")
        positions = torch.arange(seq, device=input_ids.device)  # (seq,)
        x = self.word(input_ids) + self.position(positions)[None] + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))  # (batch, seq, hidden)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: project to Q, K, V, split into heads, attend, merge, project."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, impl: str = "sdpa"):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.num_heads, self.head_dim, self.impl, self.dropout = num_heads, hidden_size // num_heads, impl, dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.size(-1) != self.num_heads * self.head_dim:
            raise ValueError(f"x must have shape (batch, seq, {self.num_heads * self.head_dim}), "
                             f"got {tuple(x.shape)}")
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != x.shape[:2]:
                raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} does not match "
                                 f"(batch, seq) = {tuple(x.shape[:2])}")
            mask = key_padding_mask(attention_mask, dtype=x.dtype)  # (batch, 1, 1, seq)
        p = self.dropout if self.training else 0.0
        attend = scaled_dot_product_attention if self.impl == "explicit" else F.scaled_dot_product_attention
        ctx = attend(q, k, v, attn_mask=mask, dropout_p=p)  # (batch, heads, seq, head_dim)
        b, _, s, _ = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim)  # (batch, seq, hidden)
        return self.out(ctx)


class FeedForward(nn.Module):
    """Position-wise ``Linear(hidden -> intermediate)``, exact GELU, ``Linear(intermediate -> hidden)``."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))  # (batch, seq, hidden)


class EncoderLayer(nn.Module):
    """One block; ``config.norm_first`` is the Pre-LN switch (the name of
    ``torch.nn.TransformerEncoderLayer``'s, which this layer equals in both settings).

    * Post-LN (``norm_first=False``, the default; original Transformer, BERT):
      ``x = LN(x + Attn(x)); x = LN(x + FFN(x))`` - every block's output is normalised.
    * Pre-LN (``norm_first=True``; GPT-2 and most later models): ``x = x + Attn(LN(x));
      x = x + FFN(LN(x))`` - the residual stream itself is never normalised, so
      :class:`Encoder` puts one final LayerNorm after the stack (GPT-2's ``ln_f``).

    Chapter 7 (:mod:`ftbook.tricks`) trains both to show why Post-LN needs warm-up.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.norm_first = config.norm_first
        self.attn = MultiHeadSelfAttention(config.hidden_size, config.num_attention_heads,
                                           config.attention_probs_dropout_prob, config.attn_impl)
        self.norm1 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size)
        self.norm2 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.drop1 = nn.Dropout(config.hidden_dropout_prob)
        self.drop2 = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (batch, seq, hidden), ``attention_mask`` (batch, seq) of 1/0 -> (batch, seq, hidden)."""
        if self.norm_first:  # Pre-LN: normalise the sub-layer's input, add to the raw stream
            x = x + self.drop1(self.attn(self.norm1(x), attention_mask))  # (batch, seq, hidden)
            return x + self.drop2(self.ffn(self.norm2(x)))  # (batch, seq, hidden), not normalised
        x = self.norm1(x + self.drop1(self.attn(x, attention_mask)))  # Post-LN: normalise the sum
        return self.norm2(x + self.drop2(self.ffn(x)))  # (batch, seq, hidden)


def hf_key_map(num_layers: int, prefix: str = "") -> dict[str, str]:
    """Our parameter name -> ``BertModel``'s, for every weight of an :class:`Encoder`."""
    m = {
        "embeddings.word.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    }
    for i in range(num_layers):
        ours, hf = f"layers.{i}.", f"encoder.layer.{i}."
        pairs = {
            "attn.query": "attention.self.query", "attn.key": "attention.self.key",
            "attn.value": "attention.self.value", "attn.out": "attention.output.dense",
            "norm1": "attention.output.LayerNorm", "ffn.up": "intermediate.dense",
            "ffn.down": "output.dense", "norm2": "output.LayerNorm",
        }
        for a, b in pairs.items():
            for p in ("weight", "bias"):
                m[f"{ours}{a}.{p}"] = f"{hf}{b}.{p}"
    return {k: prefix + v for k, v in m.items()}


def _unwrap_bert(model):
    from transformers import BertModel

    if isinstance(model, BertModel):
        return model
    inner = getattr(model, "bert", None)
    if isinstance(inner, BertModel):
        return inner
    raise TypeError(f"expected a transformers.BertModel or a model with a .bert BertModel "
                    f"(BertForMaskedLM, BertForSequenceClassification...), got {type(model).__name__}")


def copy_weights(dst: nn.Module, src_state: dict, mapping: dict[str, str]) -> None:
    """Copy ``src_state[theirs]`` into each parameter ``ours`` of ``dst`` (``mapping``: ours -> theirs),
    checking that every parameter is mapped and every shape fits. Used by :meth:`Encoder.from_hf`
    and :meth:`ftbook.decoder.Decoder.from_hf`."""
    own = dict(dst.named_parameters())
    missing = sorted(set(own) - set(mapping))
    if missing:
        raise KeyError(f"no source weight mapped for {missing[:5]}")
    with torch.no_grad():
        for ours, theirs in mapping.items():
            if theirs not in src_state:
                raise KeyError(f"source model has no weight {theirs!r} (needed for {ours!r})")
            s = src_state[theirs]
            if own[ours].shape != s.shape:
                raise ValueError(f"{ours}: shape {tuple(own[ours].shape)} but source {theirs} has "
                                 f"{tuple(s.shape)}")
            own[ours].copy_(s)


class Encoder(nn.Module):
    """Embeddings + ``num_hidden_layers`` encoder layers (+ a final LayerNorm when Pre-LN)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.norm_first else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:  # BERT's initialisation: N(0, 0.02), zero biases
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, seq)`` ids -> last hidden states ``(batch, seq, hidden)``."""
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} does not match "
                             f"input_ids shape {tuple(input_ids.shape)}")
        x = self.embeddings(input_ids, token_type_ids)  # (batch, seq, hidden)
        for layer in self.layers:
            x = layer(x, attention_mask)  # (batch, seq, hidden)
        return self.final_norm(x) if self.final_norm is not None else x  # Pre-LN: one last LN

    @classmethod
    def from_hf(cls, model, attn_impl: str = "sdpa") -> "Encoder":
        """An encoder holding a copy of a ``BertModel``'s weights (or of the ``.bert`` inside a model)."""
        bert = _unwrap_bert(model)
        enc = cls(EncoderConfig.from_hf(bert.config, attn_impl=attn_impl))
        copy_weights(enc, bert.state_dict(), hf_key_map(enc.config.num_hidden_layers))
        return enc.train(bert.training)


class Pooler(nn.Module):
    """BERT's pooler: ``tanh(Linear(h_[CLS]))`` -> ``(batch, hidden)``."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class EncoderForSequenceClassification(nn.Module):
    """Encoder + pooler + dropout + ``Linear(hidden -> num_labels)``: returns logits ``(batch, num_labels)``."""

    def __init__(self, config: EncoderConfig, num_labels: int = 2, classifier_dropout: float | None = None):
        super().__init__()
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive int, got {num_labels!r}")
        self.encoder = Encoder(config)
        self.pooler = Pooler(config.hidden_size)
        p = config.hidden_dropout_prob if classifier_dropout is None else classifier_dropout
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        for mod in (self.pooler, self.classifier):
            mod.apply(Encoder._init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(self.pooler(hidden)))

    @classmethod
    def from_hf(cls, model, attn_impl: str = "sdpa") -> "EncoderForSequenceClassification":
        """Copy a ``BertForSequenceClassification`` (encoder, pooler and classifier)."""
        bert = _unwrap_bert(model)
        head = getattr(model, "classifier", None)
        if not isinstance(head, nn.Linear) or bert.pooler is None:
            raise TypeError(f"expected a BertForSequenceClassification (with pooler and classifier), "
                            f"got {type(model).__name__}")
        out = cls(EncoderConfig.from_hf(bert.config, attn_impl=attn_impl), num_labels=head.out_features)
        mapping = {f"encoder.{k}": v for k, v in hf_key_map(bert.config.num_hidden_layers, "bert.").items()}
        mapping.update({"pooler.dense.weight": "bert.pooler.dense.weight",
                        "pooler.dense.bias": "bert.pooler.dense.bias",
                        "classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"})
        copy_weights(out, model.state_dict(), mapping)
        return out.train(model.training)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters by part of an :class:`Encoder`: embeddings, attention, feed-forward, LayerNorm, other."""
    parts = {"embeddings": 0, "attention": 0, "feed_forward": 0, "layer_norm": 0, "other": 0}
    for name, p in model.named_parameters():
        if "norm" in name.split(".")[-2]:
            parts["layer_norm"] += p.numel()
        elif "embeddings." in name:
            parts["embeddings"] += p.numel()
        elif ".attn." in name:
            parts["attention"] += p.numel()
        elif ".ffn." in name:
            parts["feed_forward"] += p.numel()
        else:
            parts["other"] += p.numel()
    parts["total"] = sum(parts.values())
    return parts
