"""Chapter 8's encoder as a masked language model: :class:`EncoderForMaskedLM`.

Taught in chapter 9 (``chapters/09_pretraining.ipynb``, "预训练"): the chapter's live pre-training run
trains this model - the :class:`ftbook.transformer.Encoder` written in chapter 8 plus BERT's MLM head -
with the book's own MLM code (:func:`ftbook.pretrain.pretrain_mlm`), then copies its weights into a
``transformers.BertForMaskedLM`` (:meth:`EncoderForMaskedLM.to_hf`) whose logits are the same.

The parts are named as in ``BertForMaskedLM``, so that each weight has one counterpart there:

* ``.bert`` - :class:`MaskedLMEncoder`, the chapter-8 encoder returning ``.last_hidden_state``
  (as ``BertModel`` does; no pooler, as in ``BertForMaskedLM``);
* ``.cls`` - :class:`MLMHead` (``BertOnlyMLMHead``): ``dense -> GELU -> LayerNorm`` (the "transform"),
  then the decoder ``Linear(hidden -> vocab)`` whose weight IS the word-embedding matrix (tied, as
  nanoGPT ties ``lm_head``) and whose bias is the head's own.

``forward(input_ids, attention_mask, token_type_ids)`` returns ``MaskedLMOutput(logits=(batch, seq,
vocab))`` like the twin, so :func:`ftbook.pretrain.fill_mask` and :func:`ftbook.pretrain.mlm_scores`
work on either. Tested equal to ``BertForMaskedLM`` (values and gradients in float64, both directions
of the weight copy) in ``tests/test_encoder_mlm.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norms import LayerNorm
from .transformer import Encoder, EncoderConfig, copy_weights, hf_key_map

__all__ = ["MaskedLMEncoder", "MLMHead", "EncoderForMaskedLM", "mlm_key_map"]

HEAD_KEYS = {  # our name -> BertForMaskedLM's (the decoder weight is tied to the word embeddings)
    "cls.transform.dense.weight": "cls.predictions.transform.dense.weight",
    "cls.transform.dense.bias": "cls.predictions.transform.dense.bias",
    "cls.transform.norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "cls.transform.norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "cls.decoder.bias": "cls.predictions.bias",
}


def mlm_key_map(num_layers: int) -> dict[str, str]:
    """Our parameter name -> ``BertForMaskedLM``'s, for every parameter of :class:`EncoderForMaskedLM`."""
    m = {f"bert.{k}": v for k, v in hf_key_map(num_layers, "bert.").items()}
    m.update(HEAD_KEYS)
    return m


class MaskedLMEncoder(Encoder):
    """:class:`ftbook.transformer.Encoder` answering like ``BertModel``: ``.last_hidden_state``."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None):
        from transformers.modeling_outputs import BaseModelOutput

        return BaseModelOutput(last_hidden_state=super().forward(input_ids, attention_mask, token_type_ids))


class _Transform(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))  # (..., hidden)


class MLMHead(nn.Module):
    """BERT's MLM head: transform, then logits ``h @ E^T + b`` with the word embeddings ``E`` (tied)."""

    def __init__(self, config: EncoderConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.transform = _Transform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.decoder.weight = word_embeddings  # tied: one matrix, listed once by named_parameters()
        nn.init.zeros_(self.decoder.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., hidden)`` -> ``(..., vocab)`` logits."""
        return self.decoder(self.transform(hidden))


class EncoderForMaskedLM(nn.Module):
    """Encoder + MLM head, laid out as ``BertForMaskedLM`` (Post-LN only: BERT's layout)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.norm_first:
            raise ValueError("EncoderForMaskedLM is BERT's Post-LN layout; got norm_first=True")
        self.config = config
        self.bert = MaskedLMEncoder(config)
        self.cls = MLMHead(config, self.bert.embeddings.word.weight)
        self.cls.transform.apply(Encoder._init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None):
        from transformers.modeling_outputs import MaskedLMOutput

        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state  # (batch, seq, hidden)
        return MaskedLMOutput(logits=self.cls(hidden))                                 # (batch, seq, vocab)

    @classmethod
    def from_hf(cls, model, attn_impl: str = "sdpa") -> "EncoderForMaskedLM":
        """A copy of a ``BertForMaskedLM`` (its encoder and MLM head)."""
        from transformers import BertForMaskedLM

        if not isinstance(model, BertForMaskedLM):
            raise TypeError(f"expected a transformers.BertForMaskedLM, got {type(model).__name__}")
        out = cls(EncoderConfig.from_hf(model.config, attn_impl=attn_impl))
        copy_weights(out, model.state_dict(), mlm_key_map(out.config.num_hidden_layers))
        return out.train(model.training)

    def to_hf(self):
        """A ``transformers.BertForMaskedLM`` holding a copy of these weights (same logits)."""
        from transformers import BertConfig, BertForMaskedLM

        c = self.config
        hf = BertForMaskedLM(BertConfig(
            vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
            layer_norm_eps=c.layer_norm_eps, hidden_dropout_prob=c.hidden_dropout_prob,
            attention_probs_dropout_prob=c.attention_probs_dropout_prob, pad_token_id=c.pad_token_id,
            tie_word_embeddings=True))
        ours = dict(self.named_parameters())
        theirs = {v: k for k, v in mlm_key_map(c.num_hidden_layers).items()}
        copy_weights(hf, {name: ours[mine] for name, mine in theirs.items()},
                     {name: name for name, _ in hf.named_parameters()})
        hf = hf.to(next(self.parameters()).dtype)
        return hf.train(self.training)
