import pytest

from ftbook.vocab import SPECIAL_TOKENS, build_char_vocab, char_tokenizer, save_vocab

TEXTS = ["房间很干净，服务也好！", "房间太小了。WiFi 很慢", "服务好"]


def test_special_tokens_first_and_order_by_count():
    vocab = build_char_vocab(TEXTS)
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    body = vocab[len(SPECIAL_TOKENS):]
    # count 2: i, 务, 好, 很, 房, 服, 间 (ties by code point); latin "i" brings "##i" along
    assert body[:7] == ["i", "##i", "务", "好", "很", "房", "服"]
    assert "##i" in vocab and "w" in vocab  # latin letters get their continuation form


def test_deterministic_byte_for_byte(tmp_path):
    a = save_vocab(build_char_vocab(TEXTS * 3), tmp_path / "a.txt").read_bytes()
    b = save_vocab(build_char_vocab(list(reversed(TEXTS * 3))), tmp_path / "b.txt").read_bytes()
    assert a == b


def test_min_freq_and_max_size():
    vocab = build_char_vocab(TEXTS, min_freq=2)
    assert "房" in vocab and "净" not in vocab
    small = build_char_vocab(TEXTS, max_size=8)
    assert len(small) <= 8


def test_tokenizer_roundtrip_has_no_unk(tmp_path):
    vocab = build_char_vocab(TEXTS)
    tok = char_tokenizer(save_vocab(vocab, tmp_path))
    assert tok.vocab_size == len(vocab)
    ids = tok("房间很干净，WiFi 很慢")["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.convert_ids_to_tokens(ids)[0] == "[CLS]"


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"texts": ["a", 3]}, TypeError, "text #1 is int"),
        ({"texts": []}, ValueError, "no texts"),
        ({"texts": ["a"], "min_freq": 0}, ValueError, "min_freq"),
        ({"texts": ["a"], "max_size": 3}, ValueError, "leaves no room"),
    ],
)
def test_bad_input(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        build_char_vocab(**kwargs)


def test_duplicate_tokens_refused(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        save_vocab(["a", "a"], tmp_path / "v.txt")


def test_missing_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocab.txt"):
        char_tokenizer(tmp_path)
