"""Checkers of lab 9: the right answer passes, None fails, typical mistakes fail with their message."""

import math
import statistics
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from ftbook.exercises import check, get, lab09


def masked_loss(model, ids, mask, labels):
    sel = labels != -100
    h = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    return F.cross_entropy(model.cls(h[sel]), labels[sel])


def test_registered_with_levels():
    levels = [get(f"lab09.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab09.t{k}").prompt for k in range(1, 7))


def test_t1_unigram_entropy(capsys):
    counts = Counter(c for t in lab09.t1_texts() for c in t)
    n = sum(counts.values())
    h = -sum(c / n * math.log(c / n) for c in counts.values())
    assert check("lab09.t1", h, quiet=True)
    assert not check("lab09.t1", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab09.t1", "6.1", quiet=True)
    with pytest.raises(AssertionError, match="bit"):
        lab09.t1(h / math.log(2))
    with pytest.raises(AssertionError, match="ln|V|"):
        lab09.t1(math.log(len(counts)))
    with pytest.raises(AssertionError, match="符号反了"):
        lab09.t1(-h)
    with pytest.raises(AssertionError, match="加权"):
        lab09.t1(-sum(math.log(c / n) for c in counts.values()) / len(counts))


def test_t2_packing():
    assert check("lab09.t2", (5, 7), quiet=True)
    assert not check("lab09.t2", None, quiet=True)
    assert not check("lab09.t2", (None, None), quiet=True)
    assert not check("lab09.t2", (5.0, 7.0), quiet=True)
    with pytest.raises(AssertionError, match="⌈"):
        lab09.t2((math.ceil(sum(lab09.T2_LENGTHS) / 128), 6))
    with pytest.raises(AssertionError, match="同一个序列"):
        lab09.t2((7, 7))
    with pytest.raises(AssertionError, match="序列数对了"):
        lab09.t2((5, 6))


def test_t3_masked_loss():
    assert check("lab09.t3", masked_loss, quiet=True)
    assert not check("lab09.t3", None, quiet=True)
    assert not check("lab09.t3", lambda m, i, a, l: None, quiet=True)
    with pytest.raises(AssertionError, match="所有位置都做了词表投影"):
        lab09.t3(lambda m, i, a, l: m(input_ids=i, attention_mask=a, labels=l).loss)
    with pytest.raises(AssertionError, match="总和"):
        lab09.t3(lambda m, i, a, l: masked_loss(m, i, a, l) * int((l != -100).sum()))
    with pytest.raises(AssertionError, match="分母"):
        lab09.t3(lambda m, i, a, l: masked_loss(m, i, a, l) * int((l != -100).sum()) / l.numel())
    with pytest.raises(AssertionError, match="model.cls"):
        lab09.t3(lambda m, i, a, l: torch.tensor(1.0))
    with pytest.raises(AssertionError, match="求导"):
        lab09.t3(lambda m, i, a, l: masked_loss(m, i, a, l).detach())


def test_t4_answer_rank():
    assert check("lab09.t4", lab09.probe_answer, quiet=True)
    assert not check("lab09.t4", None, quiet=True)
    assert not check("lab09.t4", lambda m, t, x, a: None, quiet=True)

    def logit(m, t, x, a):
        enc = t(x, return_tensors="pt")
        pos = int((enc["input_ids"][0] == t.mask_token_id).nonzero()[0])
        with torch.no_grad():
            return m(**enc).logits[0, pos, t.convert_tokens_to_ids(a)].item(), lab09.probe_answer(m, t, x, a)[1]

    def off_by_one(m, t, x, a):
        enc = t(x, return_tensors="pt")
        pos = x.index("[MASK]")  # the character index, not the token index ([CLS] comes first)
        with torch.no_grad():
            probs = m(**enc).logits[0, pos].softmax(-1)
        return probs[t.convert_tokens_to_ids(a)].item(), 1

    with pytest.raises(AssertionError, match="logit"):
        lab09.t4(logit)
    with pytest.raises(AssertionError, match="位置错了一格"):
        lab09.t4(off_by_one)
    with pytest.raises(AssertionError, match="从 1 开始"):
        lab09.t4(lambda m, t, x, a: (lab09.probe_answer(m, t, x, a)[0], lab09.probe_answer(m, t, x, a)[1] - 1))


def test_t5_features():
    assert check("lab09.t5", lambda m, t, x: lab09.reference_features(m, t, x), quiet=True)
    assert not check("lab09.t5", None, quiet=True)
    assert not check("lab09.t5", lambda m, t, x: None, quiet=True)

    def pooled(how):
        def fn(m, t, x):
            enc = t(list(x), padding=True, truncation=True, max_length=48, return_tensors="pt")
            with torch.no_grad():
                h = m.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            return h.mean(1) if how == "all" else h[:, 0]
        return fn

    with pytest.raises(AssertionError, match="PAD"):
        lab09.t5(pooled("all"))
    with pytest.raises(AssertionError, match="CLS"):
        lab09.t5(pooled("cls"))
    with pytest.raises(AssertionError, match="截断"):
        lab09.t5(lambda m, t, x: lab09.reference_features(m, t, x, max_length=128))


@pytest.fixture(scope="module")
def probe_answer():
    data = lab09.probe_data()
    texts = data["train"][0] + data["validation"][0]
    ans = {}
    for arm, model in (("pretrained", lab09.shipped()[0]), ("random", lab09.random_model())):
        f = lab09.reference_features(model, lab09.shipped()[1], texts)
        accs = [lab09.probe_accuracy(f[:lab09.N_POOL], data["train"][1], f[lab09.N_POOL:], data["validation"][1], s)
                for s in lab09.SEEDS]
        ans[arm] = {"features": f, "accs": accs, "mean": statistics.mean(accs), "std": statistics.stdev(accs)}
    ans["better"] = max(("pretrained", "random"), key=lambda a: ans[a]["mean"])
    ans["beyond_noise"] = abs(ans["pretrained"]["mean"] - ans["random"]["mean"]) > max(
        ans["pretrained"]["std"], ans["random"]["std"])
    return ans


def _with(ans, arm=None, **changes):
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in ans.items()}
    for k, v in changes.items():
        if arm:
            out[arm][k] = v
        else:
            out[k] = v
    return out


def test_t6_probe(probe_answer):
    ans = probe_answer
    assert check("lab09.t6", ans, quiet=True)
    assert not check("lab09.t6", None, quiet=True)
    assert not check("lab09.t6", [1, 2], quiet=True)
    with pytest.raises(AssertionError, match="还没有完成"):
        lab09.t6(_with(ans, "random", features=None))
    with pytest.raises(AssertionError, match="总体标准差"):
        lab09.t6(_with(ans, "pretrained", std=statistics.pstdev(ans["pretrained"]["accs"])))
    with pytest.raises(AssertionError, match="特征与参考不同"):
        lab09.t6(_with(ans, "random", features=ans["pretrained"]["features"]))
    accs = list(ans["random"]["accs"])
    accs[1] += 0.01
    with pytest.raises(AssertionError, match="种子 1"):
        lab09.t6(_with(ans, "random", accs=accs))
    wrong = "random" if ans["better"] == "pretrained" else "pretrained"
    with pytest.raises(AssertionError, match="看你自己的数"):
        lab09.t6(_with(ans, better=wrong))
    with pytest.raises(AssertionError, match="beyond_noise 应为"):
        lab09.t6(_with(ans, beyond_noise=not ans["beyond_noise"]))
    with pytest.raises(AssertionError, match="True 或 False"):
        lab09.t6(_with(ans, beyond_noise=None))
