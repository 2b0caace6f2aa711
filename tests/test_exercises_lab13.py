"""Checkers of lab 13: the right answer passes, None fails, typical mistakes fail with their message."""

import pytest
import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from ftbook import similarity, tagging
from ftbook.exercises import check, get, lab13


def test_registered_with_levels():
    levels = [get(f"lab13.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "medium", "medium", "easy", "medium", "hard"]
    assert all(get(f"lab13.t{k}").prompt for k in range(1, 7))


# ---------------------------------------------------------------- task 1


def _bio(pairs, join_nr=True, join_all=False):
    chars, tags, prev = [], [], None
    for word, pos in pairs:
        entity = tagging.POS_TO_ENTITY.get(pos)
        joined = pos == prev and (join_all or (join_nr and pos == "nr"))
        for k, ch in enumerate(word):
            chars.append(ch)
            tags.append("O" if entity is None else ("I-" if k or joined else "B-") + entity)
        prev = pos
    return chars, tags


def test_t1_words_to_bio(capsys):
    assert check("lab13.t1", _bio, quiet=True)
    assert check("lab13.t1", tagging.words_to_bio, quiet=True)
    assert not check("lab13.t1", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab13.t1", "B-PER", quiet=True)
    assert not check("lab13.t1", lambda pairs: None, quiet=True)
    with pytest.raises(AssertionError, match="姓 \\+ 名|江/nr 泽民/nr"):
        lab13.t1(lambda pairs: _bio(pairs, join_nr=False))
    with pytest.raises(AssertionError, match="两个实体，不能合并"):
        lab13.t1(lambda pairs: _bio(pairs, join_all=True))
    with pytest.raises(AssertionError, match="逐词"):
        lab13.t1(lambda pairs: ([w for w, _ in pairs], ["O" if p not in tagging.POS_TO_ENTITY else "B-PER"
                                                         for _, p in pairs]))
    with pytest.raises(AssertionError, match="nr→PER"):
        lab13.t1(lambda pairs: (_bio(pairs)[0], [t.replace("ORG", "LOC") for t in _bio(pairs)[1]]))


# ---------------------------------------------------------------- task 2


def _seqeval_prf(true, pred):
    return {"precision": precision_score(true, pred, zero_division=0), "recall": recall_score(true, pred, zero_division=0),
            "f1": f1_score(true, pred, zero_division=0)}


def _strict_prf(true, pred):
    """Drops an I-X that starts without a B-X (not seqeval's default rule)."""
    def ents(seqs):
        out = set()
        for i, s in enumerate(seqs):
            for typ, a, b in get_entities(list(s)):
                if s[a].startswith("B-"):
                    out.add((i, typ, a, b))
        return out

    t, p = ents(true), ents(pred)
    tp = len(t & p)
    pr, rc = tp / len(p), tp / len(t)
    return {"precision": pr, "recall": rc, "f1": 2 * pr * rc / (pr + rc)}


def test_t2_entity_prf(capsys):
    assert check("lab13.t2", _seqeval_prf, quiet=True)
    assert not check("lab13.t2", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab13.t2", 0.5, quiet=True)
    assert not check("lab13.t2", lambda t, p: (1.0, 1.0, 1.0), quiet=True)

    def token_accuracy(true, pred):
        flat = [(a, b) for s, q in zip(true, pred) for a, b in zip(s, q)]
        acc = sum(a == b for a, b in flat) / len(flat)
        return {"precision": acc, "recall": acc, "f1": acc}

    def swapped(true, pred):
        s = _seqeval_prf(true, pred)
        return {"precision": s["recall"], "recall": s["precision"], "f1": s["f1"]}

    def untyped(true, pred):
        t = {(i, a, b) for i, s in enumerate(true) for _, a, b in get_entities(list(s))}
        p = {(i, a, b) for i, s in enumerate(pred) for _, a, b in get_entities(list(s))}
        pr, rc = len(t & p) / len(p), len(t & p) / len(t)
        return {"precision": pr, "recall": rc, "f1": 2 * pr * rc / (pr + rc)}

    with pytest.raises(AssertionError, match="逐字准确率"):
        lab13.t2(token_accuracy)
    with pytest.raises(AssertionError, match="写反了"):
        lab13.t2(swapped)
    with pytest.raises(AssertionError, match="类型也要相同"):
        lab13.t2(untyped)
    with pytest.raises(AssertionError, match="不规范"):
        lab13.t2(_strict_prf)


# ---------------------------------------------------------------- task 3


def _embed(texts, model, tokenizer, pool="mean", normalize=True):
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    h, m = out.last_hidden_state, enc["attention_mask"].unsqueeze(-1).float()
    v = {"mean": (h * m).sum(1) / m.sum(1), "unmasked": h.mean(1), "cls": h[:, 0], "pooler": out.pooler_output}[pool]
    return F.normalize(v, dim=-1) if normalize else v


def test_t3_embed(capsys):
    assert check("lab13.t3", _embed, quiet=True)
    assert check("lab13.t3", similarity.embed, quiet=True)
    assert not check("lab13.t3", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab13.t3", "embed", quiet=True)
    with pytest.raises(AssertionError, match="padding"):
        lab13.t3(lambda t, m, tok: _embed(t, m, tok, pool="unmasked"))
    with pytest.raises(AssertionError, match="CLS"):
        lab13.t3(lambda t, m, tok: _embed(t, m, tok, pool="cls"))
    with pytest.raises(AssertionError, match="pooler_output"):
        lab13.t3(lambda t, m, tok: _embed(t, m, tok, pool="pooler"))
    with pytest.raises(AssertionError, match="L2 归一化"):
        lab13.t3(lambda t, m, tok: _embed(t, m, tok, normalize=False))
    with pytest.raises(AssertionError, match="形状"):
        lab13.t3(lambda t, m, tok: _embed(t, m, tok)[0])


# ---------------------------------------------------------------- task 4


def _recall_mrr(scores, k, strict_ties=False, ascending=False, zero_based=False, below_k=False):
    s = torch.as_tensor(scores, dtype=torch.float64)
    own = s.diagonal().unsqueeze(1)
    rank = ((s >= own).sum(1) if strict_ties else 1 + ((s < own) if ascending else (s > own)).sum(1)).double()
    recall = (rank < k) if below_k else (rank <= k)
    return float(recall.double().mean()), float((1 / (rank - 1 if zero_based else rank)).mean())


def test_t4_recall_mrr(capsys):
    assert check("lab13.t4", _recall_mrr, quiet=True)
    assert not check("lab13.t4", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab13.t4", [0.5, 0.5], quiet=True)
    with pytest.raises(AssertionError, match="名次从 1 开始"):
        lab13.t4(lambda s, k: _recall_mrr(s, k, zero_based=True))
    with pytest.raises(AssertionError, match="方向反了"):
        lab13.t4(lambda s, k: _recall_mrr(s, k, ascending=True))
    with pytest.raises(AssertionError, match="并列"):
        lab13.t4(lambda s, k: _recall_mrr(s, k, strict_ties=True))
    with pytest.raises(AssertionError, match="< k"):
        lab13.t4(lambda s, k: _recall_mrr(s, k, below_k=True))
    with pytest.raises(AssertionError, match="行和列"):
        lab13.t4(lambda s, k: _recall_mrr(torch.as_tensor(s).T, k))


# ---------------------------------------------------------------- task 5


def _rrf(mats, k=60, offset=1, ordinal=False):
    out = 0.0
    for s in mats:
        s = torch.as_tensor(s, dtype=torch.float64)
        if ordinal:
            rank = torch.argsort(torch.argsort(-s, dim=1, stable=True), dim=1).double() + 1
        else:
            rank = offset + (s.unsqueeze(1) > s.unsqueeze(2)).sum(2).double()
        out = out + 1 / (k + rank)
    return out


def test_t5_rrf(capsys):
    assert check("lab13.t5", _rrf, quiet=True)
    assert check("lab13.t5", lab13.reference_rrf, quiet=True)
    assert not check("lab13.t5", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab13.t5", 60, quiet=True)
    with pytest.raises(AssertionError, match="名次从 1 开始"):
        lab13.t5(lambda m, k: _rrf(m, k, offset=0))
    with pytest.raises(AssertionError, match="argsort"):
        lab13.t5(lambda m, k: _rrf(m, k, ordinal=True))
    with pytest.raises(AssertionError, match="每一行"):
        lab13.t5(lambda m, k: _rrf([s.T for s in m], k).T)
    with pytest.raises(AssertionError, match="方向反了"):
        lab13.t5(lambda m, k: _rrf([-s for s in m], k))
    with pytest.raises(AssertionError, match="常数 k"):
        lab13.t5(lambda m, k: _rrf(m, 0))
    with pytest.raises(AssertionError, match="原始分数"):
        lab13.t5(lambda m, k: sum(m))
    with pytest.raises(AssertionError, match="同形状"):
        lab13.t5(lambda m, k: _rrf(m, k)[0])


# ---------------------------------------------------------------- task 6


class _Lexicon:
    def __init__(self, chars, tags, longest=True, first_type=True, skip=True):
        self.lexicon = {}
        for cs, ts in zip(chars, tags):
            for typ, s, e in get_entities(list(ts)):
                name = "".join(cs[s:e + 1])
                self.lexicon[name] = self.lexicon.get(name, typ) if first_type else typ
        self.max_len = max(map(len, self.lexicon), default=0)
        self.longest, self.skip = longest, skip

    def tag(self, chars):
        text, out, i = "".join(chars), ["O"] * len(chars), 0
        while i < len(text):
            top = min(self.max_len, len(text) - i)
            sizes = range(top, 0, -1) if self.longest else range(1, top + 1)
            n = next((n for n in sizes if text[i:i + n] in self.lexicon), 0)
            if n:
                typ = self.lexicon[text[i:i + n]]
                out[i:i + n] = ["B-" + typ] + ["I-" + typ] * (n - 1)
            i += n if n and self.skip else 1
        return out


def test_t6_lexicon(capsys):
    assert check("lab13.t6", _Lexicon, quiet=True)
    assert not check("lab13.t6", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab13.t6", {}, quiet=True)
    with pytest.raises(AssertionError, match="本身"):
        lab13.t6(tagging.LexiconTagger)
    with pytest.raises(AssertionError, match="最长匹配"):
        lab13.t6(lambda c, t: _Lexicon(c, t, longest=False))
    with pytest.raises(AssertionError, match="第一次出现"):
        lab13.t6(lambda c, t: _Lexicon(c, t, first_type=False))
    with pytest.raises(AssertionError, match="跳到这个实体的末尾"):
        lab13.t6(lambda c, t: _Lexicon(c, t, skip=False))
    with pytest.raises(AssertionError, match="找不到方法 tag"):
        lab13.t6(lambda c, t: object())

    class AllO(_Lexicon):
        def tag(self, chars):
            return ["O"] * len(chars)

    with pytest.raises(AssertionError, match="应标为"):
        lab13.t6(AllO)


def test_checkers_agree_with_the_library():
    """The hand-made data of the checkers exercise what they claim: ties, ill-formed tags, nested names."""
    true, pred = lab13._t2_pairs(False, 133)
    assert any(t.startswith("I-") and (k == 0 or s[k - 1][2:] != t[2:]) for s in pred for k, t in enumerate(s))
    _, (ties, _k) = lab13._t4_matrices()[0], lab13._t4_matrices()[2]
    assert (ties == ties.diagonal().unsqueeze(1)).sum() > ties.shape[0]  # some ties with the right document
    train, test = lab13._t6_data()
    ref = tagging.LexiconTagger([c for c, _ in train], [t for _, t in train])
    assert ref.max_len >= 3 and any("B-" in " ".join(ref.tag(list(s))) for s in test)
