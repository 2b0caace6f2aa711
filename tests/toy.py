"""Toy data and a tiny BERT shared by the training-loop and fine-tuning tests."""

from __future__ import annotations

import pytest
import torch

from ftbook.data import encode
from ftbook.vocab import build_char_vocab, char_tokenizer, save_vocab

POS = ["很好", "非常好", "好极了", "不错很好", "真好看", "好用好用", "很棒很好", "好评"]
NEG = ["很差", "太差了", "差评", "糟糕很差", "不行太差", "坏了很差", "真差劲", "差差差"]


def toy_texts(n: int = 64):
    texts, labels = [], []
    for i in range(n):
        src = POS if i % 2 == 0 else NEG
        texts.append(src[(i // 2) % len(src)] + "。" * (i % 3))
        labels.append(1 if i % 2 == 0 else 0)
    return texts, labels


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    texts, _ = toy_texts()
    save_vocab(build_char_vocab(texts), folder)
    return char_tokenizer(folder)


def tiny_model(tokenizer, dropout: float = 0.0, seed: int = 0, num_labels: int = 2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                     num_labels=num_labels, id2label={0: "negative", 1: "positive"},
                     label2id={"negative": 0, "positive": 1})
    return BertForSequenceClassification(cfg)


@pytest.fixture(scope="module")
def data(tokenizer):
    texts, labels = toy_texts()
    return encode(texts, labels, tokenizer, max_length=16, num_labels=2)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


