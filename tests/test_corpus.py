"""ftbook.corpus: the Chinese pre-training corpus and sequence packing (chapter 9)."""

import pytest

from ftbook import corpus

CLS, SEP = 2, 3


def test_pack_fills_sequences_and_keeps_every_token():
    texts = [[10, 11, 12], [13, 14], list(range(20, 33)), [40], []]
    packed = corpus.pack(texts, 6, cls_token_id=CLS, sep_token_id=SEP)
    assert all(len(seq) <= 6 and seq[0] == CLS and seq[-1] == SEP for seq in packed)
    tokens = [t for seq in packed for t in seq if t not in (CLS, SEP)]
    assert tokens == [t for ids in texts for t in ids]  # every token once, in order
    assert packed[0] == [CLS, 10, 11, 12, SEP]  # [13, 14] does not fit after it: a new sequence
    assert packed[1] == [CLS, 13, 14, SEP]
    assert [len(s) for s in packed[2:]] == [6, 6, 6, 5]  # a long text is split across sequences
    assert packed[-1] == [CLS, 32, SEP, 40, SEP]  # ... and the next text fills its last one


def test_pack_bad_length():
    with pytest.raises(ValueError, match="max_length must be >= 3"):
        corpus.pack([[1]], 2, cls_token_id=CLS, sep_token_id=SEP)


def test_corpus_leaves_out_every_held_out_sentence():
    from ftbook.resources import chinese_reviews
    from ftbook.tagging import SENTENCE_END, people_daily_ner, split_sentences

    texts = corpus.chinese_corpus("tiny")
    reviews = chinese_reviews("tiny")
    n = len(reviews["train"])
    assert texts[:n] == list(reviews["train"]["text"])
    held_out = set(reviews["validation"]["text"]) | set(reviews["test"]["text"])
    assert not held_out & set(texts[:n])
    ner = people_daily_ner("tiny")
    held_sentences = {"".join(c) for split in ("validation", "test") for c in ner[split]["chars"]}
    kept, found = set(), 0
    for paragraph in texts[n:]:
        sentence = []
        for ch in paragraph + "。":  # cut the paragraph as chapter 13 cuts its lines
            sentence.append(ch)
            if ch in SENTENCE_END:
                kept.add("".join(sentence))
                kept.update("".join(cs) for cs, _ in split_sentences(sentence, ["O"] * len(sentence), 64))
                sentence = []
    found = len(kept & held_sentences)
    assert found == 0, sorted(kept & held_sentences)[:5]
    assert len(texts) - n > 10_000  # the news paragraphs are there
    report = corpus.corpus_report(texts)
    assert report["texts"] == len(texts) and report["characters"] > 2_000_000
    assert report["sha256"] == corpus.corpus_digest(texts) != corpus.corpus_digest(texts[1:])
