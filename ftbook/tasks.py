"""Applications beyond sentence classification: which architecture and head each task needs.

Taught in chapter 13 (``chapters/13_applications.ipynb``, 实际应用场景).

The runnable applications live in their own modules: :mod:`ftbook.tagging` (named-entity
recognition, token classification) and :mod:`ftbook.similarity` (sentence similarity and
retrieval). This module lists the seed article's other applications (question answering,
translation, summarisation) with the architecture, head and ``transformers`` class each uses,
and :func:`shape_demo` runs each class on a tiny random configuration to show what goes in and
what comes out (random weights: shapes, not answers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskCard:
    task: str          # Chinese name used in the book
    architecture: str  # encoder-only / encoder-decoder
    head: str          # what sits on top of the network
    hf_class: str      # the transformers class
    output: str        # what the head outputs


TASKS = (
    TaskCard("句子分类（第 10 章）", "编码器（BERT）", "[CLS] 向量上的线性层",
             "BertForSequenceClassification", "logits (batch, num_labels)"),
    TaskCard("命名实体识别 / 词性标注", "编码器（BERT）", "每个 token 向量上的线性层",
             "BertForTokenClassification", "logits (batch, seq, num_labels)"),
    TaskCard("句子相似度 / 检索", "编码器（BERT）", "无参数：平均池化 + L2 归一化",
             "BertModel（+ 池化）", "embedding (batch, hidden)"),
    TaskCard("抽取式问答", "编码器（BERT）", "每个 token 上 2 个输出：答案起点 / 终点",
             "BertForQuestionAnswering", "start_logits, end_logits (batch, seq)"),
    TaskCard("机器翻译", "编码器-解码器（Marian / T5）", "解码器上的语言模型头（词表大小）",
             "MarianMTModel", "logits (batch, target_seq, vocab)"),
    TaskCard("文本摘要", "编码器-解码器（BART / T5）", "解码器上的语言模型头（词表大小）",
             "BartForConditionalGeneration", "logits (batch, target_seq, vocab)"),
)

_TINY = dict(vocab_size=100, d_model=32, hidden=32, layers=1, heads=2, ffn=64, max_pos=64)


def _build(hf_class: str):
    import transformers as tf

    t = _TINY
    if hf_class in ("BertForQuestionAnswering", "BertForTokenClassification", "BertForSequenceClassification"):
        cfg = tf.BertConfig(vocab_size=t["vocab_size"], hidden_size=t["hidden"], num_hidden_layers=t["layers"],
                            num_attention_heads=t["heads"], intermediate_size=t["ffn"],
                            max_position_embeddings=t["max_pos"],
                            num_labels=2 if hf_class == "BertForQuestionAnswering" else 3)
        return getattr(tf, hf_class)(cfg)
    if hf_class == "MarianMTModel":
        cfg = tf.MarianConfig(vocab_size=t["vocab_size"], d_model=t["d_model"], encoder_layers=t["layers"],
                              decoder_layers=t["layers"], encoder_attention_heads=t["heads"],
                              decoder_attention_heads=t["heads"], encoder_ffn_dim=t["ffn"],
                              decoder_ffn_dim=t["ffn"], max_position_embeddings=t["max_pos"],
                              pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)
        return tf.MarianMTModel(cfg)
    if hf_class == "BartForConditionalGeneration":
        cfg = tf.BartConfig(vocab_size=t["vocab_size"], d_model=t["d_model"], encoder_layers=t["layers"],
                            decoder_layers=t["layers"], encoder_attention_heads=t["heads"],
                            decoder_attention_heads=t["heads"], encoder_ffn_dim=t["ffn"],
                            decoder_ffn_dim=t["ffn"], max_position_embeddings=t["max_pos"],
                            pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
        return tf.BartForConditionalGeneration(cfg)
    raise ValueError(f"no shape demo for {hf_class!r}; expected one of "
                     f"{', '.join(c.hf_class for c in TASKS if not c.hf_class.startswith('BertModel'))}")


def shape_demo(hf_class: str, batch: int = 2, source_len: int = 12, target_len: int = 5,
               seed: int = 0) -> dict[str, tuple[int, ...]]:
    """Run ``hf_class`` (tiny random config) once; return the shapes of inputs and outputs.

    Encoder-decoder models also get ``decoder_input_ids`` of length ``target_len`` (teacher
    forcing, as in training); generation would feed the decoder one token at a time.
    """
    import torch

    for name, value in (("batch", batch), ("source_len", source_len), ("target_len", target_len)):
        if not isinstance(value, int) or value < 1 or value > _TINY["max_pos"]:
            raise ValueError(f"{name} must be an int in 1..{_TINY['max_pos']}, got {value!r}")
    torch.manual_seed(seed)
    model = _build(hf_class).eval()
    ids = torch.randint(3, _TINY["vocab_size"], (batch, source_len))  # (batch, source_len)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = torch.randint(3, _TINY["vocab_size"], (batch, target_len))
    with torch.inference_mode():
        out = model(**inputs)
    shapes = {f"in:{k}": tuple(v.shape) for k, v in inputs.items()}
    for key in ("logits", "start_logits", "end_logits"):
        if getattr(out, key, None) is not None:
            shapes[f"out:{key}"] = tuple(getattr(out, key).shape)
    return shapes


def best_span(start_logits, end_logits, max_answer_len: int = 30) -> tuple[int, int]:
    """Extractive QA decoding: the ``(start, end)`` with ``end >= start`` maximising start+end score."""
    import torch

    s = torch.as_tensor(start_logits, dtype=torch.float64)
    e = torch.as_tensor(end_logits, dtype=torch.float64)
    if s.dim() != 1 or s.shape != e.shape or s.numel() == 0:
        raise ValueError(f"start and end logits must be 1-D of equal non-zero length, got "
                         f"{tuple(s.shape)} and {tuple(e.shape)}")
    if max_answer_len < 1:
        raise ValueError(f"max_answer_len must be >= 1, got {max_answer_len}")
    n = s.numel()
    score = s[:, None] + e[None, :]  # (start, end)
    i = torch.arange(n)
    valid = (i[None, :] >= i[:, None]) & (i[None, :] - i[:, None] < max_answer_len)
    score = score.masked_fill(~valid, float("-inf"))
    flat = int(score.argmax())
    return flat // n, flat % n
