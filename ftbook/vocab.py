"""Vocabularies the book builds: a deterministic character vocabulary for Chinese BERT, and a
byte-level BPE (:func:`train_byte_level_bpe`, the decoder LMs' kind of tokenizer).

Taught in chapter 3 (``chapters/03_data.ipynb``, "字表：确定性地构建 vocab.txt") and used by
chapter 9's pre-training. Same corpus -> same ``vocab.txt``, byte for byte (``tokenizers``'
WordPiece trainer is not deterministic; this is).

Characters are counted as the tokenizer will see them (lower-cased, accents stripped, no other
normalisation): clean the text first (chapter 3's ``ftbook.data``), then build the vocabulary.
Chinese BERT tokenises CJK text one character per token. Latin letters and digits inside a word
are looked up by WordPiece, so every such character also gets its ``##`` continuation form.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _is_word_char(ch: str) -> bool:
    # Characters BERT's basic tokenizer keeps inside a word (not CJK, not punctuation/space).
    if ch.isspace() or unicodedata.category(ch).startswith("P"):
        return False
    cp = ord(ch)
    cjk = (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
        or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )
    return not cjk and ch.isalnum()


def build_char_vocab(
    texts: Iterable[str],
    min_freq: int = 1,
    max_size: int | None = None,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    lowercase: bool = True,
) -> list[str]:
    """Character vocabulary: special tokens, then characters by descending count, ties by code point.

    ``max_size`` counts the special tokens and ``##`` forms. Raises on non-string texts.
    """
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    if max_size is not None and max_size <= len(special_tokens):
        raise ValueError(f"max_size {max_size} leaves no room after {len(special_tokens)} special tokens")
    counts: Counter[str] = Counter()
    n = 0
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is {type(text).__name__}, expected str")
        if lowercase:  # BertTokenizer(do_lower_case=True) also strips accents
            text = "".join(c for c in unicodedata.normalize("NFD", text.lower())
                           if unicodedata.category(c) != "Mn")
        counts.update(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cc")
        n += 1
    if n == 0:
        raise ValueError("cannot build a vocabulary from no texts")
    chars = sorted((c for c, k in counts.items() if k >= min_freq), key=lambda c: (-counts[c], ord(c)))
    vocab: list[str] = list(special_tokens)
    for ch in chars:
        extra = [ch, "##" + ch] if _is_word_char(ch) else [ch]
        if max_size is not None and len(vocab) + len(extra) > max_size:
            break
        vocab.extend(extra)
    return vocab


def save_vocab(vocab: Sequence[str], path: str | os.PathLike) -> Path:
    """Write one token per line (the ``vocab.txt`` format BertTokenizer reads)."""
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocabulary has duplicate tokens")
    path = Path(path)
    if path.is_dir():
        path = path / "vocab.txt"
    path.write_text("".join(tok + "\n" for tok in vocab), encoding="utf-8")
    return path


def char_tokenizer(vocab_path: str | os.PathLike, model_max_length: int = 512):
    """A ``transformers.BertTokenizer`` over a character vocab (not ``BertTokenizerFast(vocab_file=)``,
    which silently ignores the file in transformers 5)."""
    from transformers import BertTokenizer

    vocab_path = Path(vocab_path)
    if vocab_path.is_dir():
        vocab_path = vocab_path / "vocab.txt"
    if not vocab_path.is_file():
        raise FileNotFoundError(f"no vocab.txt at {vocab_path}")
    tok = BertTokenizer(vocab=str(vocab_path), do_lower_case=True, tokenize_chinese_chars=True,
                        model_max_length=model_max_length)
    if tok.vocab_size != sum(1 for _ in vocab_path.open(encoding="utf-8")):
        raise RuntimeError(f"tokenizer loaded {tok.vocab_size} tokens from {vocab_path}; file has more")
    return tok


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int = 6000, min_frequency: int = 2,
                         model_max_length: int = 512):
    """Train a byte-level BPE tokenizer (GPT-2's scheme, and SmolLM2's / Qwen2.5's) with ``tokenizers``.

    Text is first turned into its UTF-8 bytes, each byte shown as one printable character, so the
    base alphabet is the 256 bytes and **no input is ever unknown**; BPE then merges the most
    frequent adjacent pairs until ``vocab_size``. A Chinese character is 3 bytes: unmerged, it costs
    3 tokens. Returns a ``transformers.PreTrainedTokenizerFast`` whose ``decode`` gives back the text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(vocab_size, int) or vocab_size < 257:
        raise ValueError(f"vocab_size must be an int >= 257 (the 256 bytes + 1), got {vocab_size!r}")
    texts = list(texts)
    if not texts:
        raise ValueError("cannot train a tokenizer on no texts")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be strings")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=model_max_length)
