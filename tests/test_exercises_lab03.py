"""Checkers of lab 3: the right answer passes, None fails, typical mistakes fail with their message."""

import random
import re
import unicodedata
from collections import Counter

import pytest

from ftbook import data as D
from ftbook import vocab
from ftbook.exercises import check, get, registered
from ftbook.exercises import lab03


def test_registered_levels():
    ids = [e.id for e in registered("lab03")]
    assert ids == [f"lab03.t{k}" for k in range(1, 6)]
    assert [get(i).level for i in ids] == ["easy", "easy", "medium", "medium", "hard"]


def test_t1():
    assert check("lab03.t1", D.to_halfwidth, quiet=True)
    assert not check("lab03.t1", None, quiet=True)
    assert not check("lab03.t1", lambda s: None, quiet=True)
    with pytest.raises(AssertionError, match="NFKC"):
        lab03.t1(lambda s: unicodedata.normalize("NFKC", s))
    with pytest.raises(AssertionError, match="中文标点"):
        lab03.t1(lambda s: D.to_halfwidth(s, punctuation=True))
    with pytest.raises(AssertionError, match="U\\+3000"):
        lab03.t1(lambda s: D.to_halfwidth(s).replace(" ", "\u3000") if "\u3000" in s else D.to_halfwidth(s))
    with pytest.raises(AssertionError, match="什么也没改"):
        lab03.t1(lambda s: s)


def test_t2():
    right = lambda s: re.sub(r"~\{.*?~\}", lambda m: m.group(0).encode("ascii").decode("hz"), s)  # noqa: E731
    assert check("lab03.t2", right, quiet=True)
    assert not check("lab03.t2", None, quiet=True)
    assert not check("lab03.t2", lambda s: None, quiet=True)
    with pytest.raises(AssertionError, match="encode"):
        lab03.t2(lambda s: s.encode("ascii").decode("hz"))
    with pytest.raises(AssertionError, match="~"):
        lab03.t2(lambda s: s)


def test_t3():
    assert check("lab03.t3", D.remove_urls, quiet=True)
    assert not check("lab03.t3", None, quiet=True)
    assert not check("lab03.t3", lambda s: None, quiet=True)
    with pytest.raises(AssertionError, match=r"\\S\+"):
        lab03.t3(lab03.buggy_remove_urls)
    no_tail = re.compile(r"(?:https?|ftp)://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+|www\.[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
    with pytest.raises(AssertionError, match="删多了"):
        lab03.t3(lambda s: no_tail.sub("", s))


def _vocab(texts, order="codepoint", hashes=True, lower=True):
    counts, first = Counter(), {}
    for t in texts:
        if lower:
            t = "".join(c for c in unicodedata.normalize("NFD", t.lower()) if unicodedata.category(c) != "Mn")
        for c in t:
            if not c.isspace() and unicodedata.category(c) != "Cc":
                counts[c] += 1
                first.setdefault(c, len(first))
    key = (lambda c: (-counts[c], ord(c))) if order == "codepoint" else (lambda c: (-counts[c], first[c]))
    out = list(vocab.SPECIAL_TOKENS)
    for c in sorted(counts, key=key):
        out += [c, "##" + c] if hashes and vocab._is_word_char(c) else [c]
    return out


def test_t4():
    assert check("lab03.t4", vocab.build_char_vocab, quiet=True)
    assert check("lab03.t4", _vocab, quiet=True)
    assert not check("lab03.t4", None, quiet=True)
    assert not check("lab03.t4", lambda t: None, quiet=True)
    with pytest.raises(AssertionError, match="码位"):
        lab03.t4(lambda t: _vocab(t, order="first"))
    with pytest.raises(AssertionError, match="##"):
        lab03.t4(lambda t: _vocab(t, hashes=False))
    with pytest.raises(AssertionError, match="小写"):
        lab03.t4(lambda t: _vocab(t, lower=False))


def _buckets(lengths, batch_size, pool_batches=50, seed=0, pool=True, shuffle_batches=True, sort_all=False):
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if sort_all:
        order.sort(key=lambda i: lengths[i])
    size = batch_size * pool_batches if pool else len(order)
    batches = []
    for s in range(0, len(order), size):
        p = sorted(order[s:s + size], key=lambda i: lengths[i]) if pool or sort_all else order[s:s + size]
        batches += [p[k:k + batch_size] for k in range(0, len(p), batch_size)]
    if shuffle_batches:
        rng.shuffle(batches)
    return batches


def test_t5():
    assert check("lab03.t5", _buckets, quiet=True)
    assert check("lab03.t5", lambda l, b, pool_batches=50, seed=0: list(
        D.LengthBucketSampler(l, b, pool_batches=pool_batches, seed=seed)), quiet=True)
    assert not check("lab03.t5", None, quiet=True)
    assert not check("lab03.t5", lambda *a, **k: None, quiet=True)
    with pytest.raises(AssertionError, match="恰好出现一次"):
        lab03.t5(lambda l, b, pool_batches=50, seed=0: _buckets(l, b, pool_batches, seed)[:-1])
    with pytest.raises(AssertionError, match="随机组批"):
        lab03.t5(lambda l, b, pool_batches=50, seed=0: _buckets(l, b, pool_batches, seed, pool=False))
    with pytest.raises(AssertionError, match="低得可疑"):
        lab03.t5(lambda l, b, pool_batches=50, seed=0: _buckets(l, b, pool_batches, seed, sort_all=True,
                                                               pool=False))
    with pytest.raises(AssertionError, match="seed"):
        lab03.t5(lambda l, b, pool_batches=50, seed=0: _buckets(l, b, pool_batches, random.randrange(1 << 30)))
    with pytest.raises(AssertionError, match="打乱要用 seed"):
        lab03.t5(lambda l, b, pool_batches=50, seed=0: _buckets(l, b, pool_batches, 0))
