"""Checkers of lab 2: the right answer passes, None fails, typical mistakes fail with their message."""

import numpy as np
import pytest
import torch

from ftbook.exercises import check, get, registered
from ftbook.exercises import lab02
from ftbook.resources import chinese_reviews


def test_registered_levels():
    ids = [e.id for e in registered("lab02")]
    assert ids == [f"lab02.t{k}" for k in range(1, 6)]
    assert [get(i).level for i in ids] == ["easy", "easy", "medium", "medium", "hard"]


def test_t1():
    texts = list(chinese_reviews("tiny")["validation"]["text"])
    n = np.array([len(ids) for ids in lab02._bert()[1](texts, verbose=False)["input_ids"]])
    assert check("lab02.t1", int((n > 64).sum()), quiet=True)
    assert not check("lab02.t1", None, quiet=True)
    assert not check("lab02.t1", 0.5, quiet=True)
    with pytest.raises(AssertionError, match="CLS"):
        lab02.t1(int((n - 2 > 64).sum()))
    with pytest.raises(AssertionError, match="字符数"):
        lab02.t1(sum(len(t) > 64 for t in texts))


def _prf(cm, k, swap=False, mean=False):
    cm = np.asarray(cm)
    p = cm[k, k] / cm[:, k].sum() if cm[:, k].sum() else 0.0
    r = cm[k, k] / cm[k, :].sum() if cm[k, :].sum() else 0.0
    if swap:
        p, r = r, p
    f = (p + r) / 2 if mean else (2 * p * r / (p + r) if p + r else 0.0)
    return p, r, f


def test_t2():
    assert check("lab02.t2", _prf, quiet=True)
    assert not check("lab02.t2", None, quiet=True)
    assert not check("lab02.t2", lambda cm, k: None, quiet=True)
    with pytest.raises(AssertionError, match="反了"):
        lab02.t2(lambda cm, k: _prf(cm, k, swap=True))
    with pytest.raises(AssertionError, match="调和"):
        lab02.t2(lambda cm, k: _prf(cm, k, mean=True))


def _fill(model, tok, text, top_k=3, renorm=False):
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]
    out = []
    for pos in (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist():
        v, i = logits[pos].topk(top_k)
        p = v.softmax(-1) if renorm else logits[pos].softmax(-1)[i]
        out.append(list(zip(tok.convert_ids_to_tokens(i.tolist()), p.tolist())))
    return out


def test_t3():
    assert check("lab02.t3", _fill, quiet=True)
    assert not check("lab02.t3", None, quiet=True)
    assert not check("lab02.t3", lambda m, t, s, k: None, quiet=True)
    with pytest.raises(AssertionError, match="整个词表"):
        lab02.t3(lambda m, t, s, k: _fill(m, t, s, k, renorm=True))
    with pytest.raises(AssertionError, match="组"):
        lab02.t3(lambda m, t, s, k: _fill(m, t, s, k)[:1])


def _boot(correct, n_boot=2000, seed=0, kind="right"):
    correct = np.asarray(correct)
    rng = np.random.default_rng(seed)
    if kind == "std":
        m, s = correct.mean(), correct.std() / np.sqrt(len(correct))
        return m - s, m + s
    if kind == "raw":
        m, s = correct.mean(), correct.std()
        return m - 1.96 * s, m + 1.96 * s
    accs = correct[rng.integers(0, len(correct), (n_boot, len(correct)))].mean(1)
    return tuple(np.percentile(accs, [2.5, 97.5]))


def test_t4():
    assert check("lab02.t4", _boot, quiet=True)
    assert not check("lab02.t4", None, quiet=True)
    assert not check("lab02.t4", lambda c, n_boot=2000, seed=0: None, quiet=True)
    with pytest.raises(AssertionError, match="标准误"):
        lab02.t4(lambda c, n_boot=2000, seed=0: _boot(c, kind="std"))
    with pytest.raises(AssertionError, match="太宽"):
        lab02.t4(lambda c, n_boot=2000, seed=0: _boot(c, kind="raw"))
    with pytest.raises(AssertionError, match="seed"):
        lab02.t4(lambda c, n_boot=2000, seed=0: _boot(c, seed=np.random.randint(1 << 30)))


def _predict(model, tok, texts, batch_size=32, eval_mode=True, mask=True, softmax=True):
    if eval_mode:
        model.eval()
    out = []
    for s in range(0, len(texts), batch_size):
        enc = tok(texts[s:s + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
        if not mask:
            enc = {"input_ids": enc["input_ids"]}
        with torch.no_grad():
            z = model(**enc).logits
        p = z.softmax(-1) if softmax else z
        out += [(model.config.id2label[int(i)], float(r[i])) for i, r in zip(p.argmax(-1), p)]
    return out


def test_t5(capsys):
    assert check("lab02.t5", _predict, quiet=True)
    assert not check("lab02.t5", None, quiet=True)
    assert not check("lab02.t5", lambda m, t, x, b: None, quiet=True)
    with pytest.raises(AssertionError, match="attention_mask"):
        lab02.t5(lambda m, t, x, b: _predict(m, t, x, b, mask=False))
    with pytest.raises(AssertionError, match="eval"):
        lab02.t5(lambda m, t, x, b: _predict(m, t, x, b, eval_mode=False))
    with pytest.raises(AssertionError, match="softmax"):
        lab02.t5(lambda m, t, x, b: _predict(m, t, x, b, softmax=False))
    assert not lab02._classifier().model.training  # the checker hands the model back in eval mode
