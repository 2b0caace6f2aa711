"""Checkers of lab 1: the right answer passes, None fails, typical mistakes fail with their message."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ftbook.exercises import check, get, registered
from ftbook.exercises import lab01


def test_registered_levels():
    ids = [e.id for e in registered("lab01")]
    assert ids == [f"lab01.t{k}" for k in range(1, 7)]
    assert [get(i).level for i in ids] == ["easy", "medium", "easy", "medium", "medium", "hard"]
    assert all(get(i).prompt for i in ids)


def test_t1():
    h = 768
    right = (21128 + 512 + 2) * h + 2 * h
    assert check("lab01.t1", right, quiet=True)
    assert not check("lab01.t1", None, quiet=True)
    assert not check("lab01.t1", "16622592", quiet=True)
    with pytest.raises(AssertionError, match="LayerNorm"):
        lab01.t1(right - 2 * h)
    with pytest.raises(AssertionError, match="位置嵌入"):
        lab01.t1(right - 512 * h)
    with pytest.raises(AssertionError, match="只算了词嵌入"):
        lab01.t1(21128 * h)
    with pytest.raises(AssertionError, match="30,522"):
        lab01.t1((30522 + 512 + 2) * h + 2 * h)


def _count(cfg, pooler=True, biases=True, norms=True):
    h, L, i = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    lin = lambda a, b: a * b + (b if biases else 0)  # noqa: E731
    ln = 2 * h if norms else 0
    emb = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * h + ln
    layer = 4 * lin(h, h) + lin(h, i) + lin(i, h) + 2 * ln
    return emb + L * layer + (lin(h, h) if pooler else 0)


def test_t2(capsys):
    assert check("lab01.t2", _count, quiet=True)
    assert not check("lab01.t2", None, quiet=True)
    assert not check("lab01.t2", 42, quiet=True)
    assert not check("lab01.t2", lambda cfg: None)
    assert "返回了 None" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="pooler"):
        lab01.t2(lambda cfg: _count(cfg, pooler=False))
    with pytest.raises(AssertionError, match="偏置"):
        lab01.t2(lambda cfg: _count(cfg, biases=False))
    with pytest.raises(AssertionError, match="LayerNorm"):
        lab01.t2(lambda cfg: _count(cfg, norms=False))

    def four_h(cfg):
        cfg = type(cfg)(**{**cfg.to_dict(), "intermediate_size": 4 * cfg.hidden_size})
        return _count(cfg)

    with pytest.raises(AssertionError, match="intermediate_size"):
        lab01.t2(four_h)


def _rnn():
    x = lab01.rnn_data().requires_grad_()
    h = torch.zeros((), dtype=torch.float64)
    hs = []
    for x_t in x:
        h = torch.tanh(lab01.RNN_W * h + x_t + lab01.RNN_B)
        hs.append(h.item())
    h.backward()
    return x.grad.tolist(), hs


def test_t3():
    right, hs = _rnn()
    T = len(right)
    assert check("lab01.t3", right, quiet=True)
    assert check("lab01.t3", torch.tensor(right), quiet=True)
    assert not check("lab01.t3", None, quiet=True)
    assert not check("lab01.t3", 0.5, quiet=True)
    assert not check("lab01.t3", right[:-1], quiet=True)
    with pytest.raises(AssertionError, match="顺序反了"):
        lab01.t3(right[::-1])
    with pytest.raises(AssertionError, match="tanh 的导数"):
        lab01.t3([lab01.RNN_W ** (T - 1 - t) for t in range(T)])
    with pytest.raises(AssertionError, match="之后每一步"):
        lab01.t3([lab01.RNN_W ** (T - 1 - t) * (1 - hs[t] ** 2) for t in range(T)])


def _fit(g, lo=1, hi=40, log=np.log, back=np.exp, end=1):
    k = np.arange(lo, hi + end)
    return float(back(np.polyfit(k, log(g[lo:hi + end].numpy()), 1)[0]))


def test_t4():
    assert check("lab01.t4", _fit, quiet=True)
    assert not check("lab01.t4", None, quiet=True)
    assert not check("lab01.t4", lambda g, lo=1, hi=40: None, quiet=True)
    with pytest.raises(AssertionError, match="斜率"):
        lab01.t4(lambda g, lo=1, hi=40: _fit(g, lo, hi, back=lambda s: s))
    with pytest.raises(AssertionError, match="log10"):
        lab01.t4(lambda g, lo=1, hi=40: _fit(g, lo, hi, log=np.log10))
    with pytest.raises(AssertionError, match="距离 0"):
        lab01.t4(lambda g, lo=1, hi=40: _fit(g, 0, hi))
    with pytest.raises(AssertionError, match="漏了距离 hi"):
        lab01.t4(lambda g, lo=1, hi=40: _fit(g, lo, hi, end=0))
    with pytest.raises(AssertionError, match="请使用参数"):
        lab01.t4(lambda g, lo=1, hi=40: _fit(g, 1, 40))


def _pool(h, m):
    m = m.unsqueeze(-1).float()
    return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)


def test_t5():
    assert check("lab01.t5", _pool, quiet=True)
    assert not check("lab01.t5", None, quiet=True)
    assert not check("lab01.t5", lambda h, m: None, quiet=True)
    with pytest.raises(AssertionError, match="填充位置也被平均"):
        lab01.t5(lambda h, m: F.normalize(h.mean(1), dim=-1))
    with pytest.raises(AssertionError, match="L2 归一化"):
        lab01.t5(lambda h, m: (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True))
    with pytest.raises(AssertionError, match="形状"):
        lab01.t5(lambda h, m: _pool(h, m).unsqueeze(1))


def _attn(x, mha, **kw):
    return lab01._mha_reference(x, mha, **kw)


def test_t6():
    before = torch.random.get_rng_state()
    assert check("lab01.t6", _attn, quiet=True)
    assert torch.equal(torch.random.get_rng_state(), before)  # the checker leaves the global RNG alone
    assert check("lab01.t6", lambda x, mha: mha(x, x, x, need_weights=False)[0], quiet=True)
    assert not check("lab01.t6", None, quiet=True)
    assert not check("lab01.t6", "attention", quiet=True)
    with pytest.raises(AssertionError, match="√d_head"):
        lab01.t6(lambda x, mha: _attn(x, mha, scale=False))
    with pytest.raises(AssertionError, match="softmax 的维度"):
        lab01.t6(lambda x, mha: _attn(x, mha, softmax_dim=-2))
    with pytest.raises(AssertionError, match="out_proj"):
        lab01.t6(lambda x, mha: _attn(x, mha, out_proj=False))
    with pytest.raises(AssertionError, match="没有分头"):
        lab01.t6(lambda x, mha: _attn(x, mha, split_heads=False))
    with pytest.raises(AssertionError, match="不能求导"):
        lab01.t6(lambda x, mha: _attn(x, mha).detach())
