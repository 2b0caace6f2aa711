"""ftbook.vocab as chapter 3 teaches it: deterministic, loadable, consistent with the tokenizer."""

import random

import pytest

from ftbook import data as D
from ftbook import vocab

CORPUS = ["这家酒店很好，下次还来！", "书的内容一般，不推荐。", "iPad 2 速度很快", "很好很好", "Café OK"]


def test_same_corpus_same_bytes_whatever_the_order(tmp_path):
    a = vocab.save_vocab(vocab.build_char_vocab(CORPUS), tmp_path / "a.txt")
    shuffled = CORPUS[:]
    random.Random(1).shuffle(shuffled)
    b = vocab.save_vocab(vocab.build_char_vocab(shuffled), tmp_path / "b.txt")
    assert a.read_bytes() == b.read_bytes()


def test_order_is_specials_then_frequency_then_code_point():
    v = vocab.build_char_vocab(["好好好很很a"])
    assert v[:5] == list(vocab.SPECIAL_TOKENS)
    assert v[5:] == ["好", "很", "a", "##a"]


def test_bert_tokenizer_loads_it_and_has_no_unk_on_its_corpus(tmp_path):
    texts = [D.clean_text(t) for t in CORPUS]
    path = vocab.save_vocab(vocab.build_char_vocab(texts), tmp_path)
    tok = vocab.char_tokenizer(path)
    assert tok.vocab_size == len(path.read_text(encoding="utf-8").splitlines())
    assert D.unk_rate(tok, texts) == 0.0
    assert tok.tokenize("酒店很好") == ["酒", "店", "很", "好"]
    assert tok.tokenize("ipad") == ["i", "##p", "##a", "##d"]  # Latin words go letter by letter
    assert tok.tokenize("café") == ["c", "##a", "##f", "##e"]  # accents stripped, like the counts


def test_min_freq_and_max_size():
    v = vocab.build_char_vocab(["好好很"], min_freq=2)
    assert v[5:] == ["好"]
    v = vocab.build_char_vocab(["aab"], max_size=7)  # a, ##a fit; b, ##b do not
    assert v[5:] == ["a", "##a"]


@pytest.mark.parametrize("texts,kwargs,exc", [
    (["a", 3], {}, TypeError),
    ([], {}, ValueError),
    (["a"], {"min_freq": 0}, ValueError),
    (["a"], {"max_size": 5}, ValueError),
])
def test_bad_inputs(texts, kwargs, exc):
    with pytest.raises(exc):
        vocab.build_char_vocab(texts, **kwargs)


def test_duplicate_tokens_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        vocab.save_vocab(["[PAD]", "a", "a"], tmp_path / "v.txt")
    with pytest.raises(FileNotFoundError):
        vocab.char_tokenizer(tmp_path / "missing.txt")
