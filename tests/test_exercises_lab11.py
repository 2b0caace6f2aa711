"""Checkers of lab 11: the right answer passes, None fails, typical mistakes fail with their message."""

import functools
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binomtest, chi2

from ftbook.exercises import check, get, lab11


def test_registered_with_levels():
    levels = [get(f"lab11.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab11.t{k}").prompt for k in range(1, 7))


def prf(cm, swap=False, nan=False, arithmetic=False):
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    col, row = cm.sum(0), cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = tp / col if nan else np.divide(tp, col, out=np.zeros_like(tp), where=col > 0)
        r = np.divide(tp, row, out=np.zeros_like(tp), where=row > 0)
    if swap:
        p, r = r, p
    f1 = (p + r) / 2 if arithmetic else np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
    return p, r, f1


def test_t1_prf():
    assert check("lab11.t1", prf, quiet=True)
    assert not check("lab11.t1", None, quiet=True)
    assert not check("lab11.t1", lambda cm: None, quiet=True)
    assert not check("lab11.t1", lambda cm: (0.5, 0.5, 0.5), quiet=True)
    with pytest.raises(AssertionError, match="弄反了"):
        lab11.t1(functools.partial(prf, swap=True))
    with pytest.raises(AssertionError, match="nan"):
        lab11.t1(functools.partial(prf, nan=True))
    with pytest.raises(AssertionError, match="调和平均"):
        lab11.t1(functools.partial(prf, arithmetic=True))


def ece(probs, y, n_bins=10, **kw):
    return lab11._ece_variant(np.asarray(probs), y, n_bins, **kw)


def test_t2_ece():
    assert check("lab11.t2", ece, quiet=True)
    assert not check("lab11.t2", None, quiet=True)
    assert not check("lab11.t2", lambda p, y, b: None, quiet=True)
    assert not check("lab11.t2", lambda p, y, b: "0.1", quiet=True)
    with pytest.raises(AssertionError, match="加权"):
        lab11.t2(functools.partial(ece, weighted=False))
    with pytest.raises(AssertionError, match="边界"):
        lab11.t2(functools.partial(ece, right=False))
    with pytest.raises(AssertionError, match="最大值"):
        lab11.t2(lambda p, y, b: ece(p, y, b, conf=np.asarray(p)[np.arange(len(y)), y]))


def nll(logits, labels, t):
    return lab11._nll(np.asarray(logits), np.asarray(labels), t)


def fit_t(logits, labels, invert=False, own=False):
    labels = logits.argmax(1) if own else labels
    s = minimize_scalar(lambda s: nll(logits, labels, math.exp(s)), bounds=(-4, 4), method="bounded").x
    return math.exp(-s) if invert else math.exp(s)


def test_t3_temperature():
    assert check("lab11.t3", fit_t, quiet=True)
    grid = lambda z, y: min(np.exp(np.linspace(-3, 3, 6001)), key=lambda t: nll(z, y, t))  # noqa: E731
    assert check("lab11.t3", grid, quiet=True)
    assert not check("lab11.t3", None, quiet=True)
    assert not check("lab11.t3", lambda z, y: None, quiet=True)
    with pytest.raises(AssertionError, match="1/T"):
        lab11.t3(functools.partial(fit_t, invert=True))
    with pytest.raises(AssertionError, match="真实标签"):
        lab11.t3(functools.partial(fit_t, own=True))
    with pytest.raises(AssertionError, match="不是乘以|网格"):
        lab11.t3(lambda z, y: 1.0)


def auc(scores, y, tie=0.5, flip=False):
    pos, neg = scores[y == 1], scores[y == 0]
    d = pos[:, None] - neg[None, :]
    value = float(((d > 0) + tie * (d == 0)).mean())
    return 1 - value if flip else value


def test_t4_auc():
    assert check("lab11.t4", auc, quiet=True)
    assert not check("lab11.t4", None, quiet=True)
    assert not check("lab11.t4", lambda s, y: None, quiet=True)
    with pytest.raises(AssertionError, match="平局.*没有算分"):
        lab11.t4(functools.partial(auc, tie=0.0))
    with pytest.raises(AssertionError, match="记成了 1"):
        lab11.t4(functools.partial(auc, tie=1.0))
    with pytest.raises(AssertionError, match="1 − AUC"):
        lab11.t4(functools.partial(auc, flip=True))
    with pytest.raises(AssertionError, match="0/1"):
        lab11.t4(lambda s, y: auc((s > 0.5).astype(float), y))


def mcnemar(a, b, kind="exact"):
    b_, c_ = int((a & ~b).sum()), int((~a & b).sum())
    if kind == "all":
        return binomtest(b_, len(a), 0.5).pvalue
    if kind == "one_sided":
        return binomtest(b_, b_ + c_, 0.5, alternative="less" if b_ < c_ else "greater").pvalue
    if kind == "chi2":
        return chi2.sf((abs(b_ - c_) - 1) ** 2 / (b_ + c_), 1)
    return binomtest(b_, b_ + c_, 0.5).pvalue


def test_t5_mcnemar():
    assert check("lab11.t5", mcnemar, quiet=True)
    assert not check("lab11.t5", None, quiet=True)
    assert not check("lab11.t5", lambda a, b: None, quiet=True)
    with pytest.raises(AssertionError, match="意见不一"):
        lab11.t5(functools.partial(mcnemar, kind="all"))
    with pytest.raises(AssertionError, match="单侧"):
        lab11.t5(functools.partial(mcnemar, kind="one_sided"))
    with pytest.raises(AssertionError, match="卡方"):
        lab11.t5(functools.partial(mcnemar, kind="chi2"))


def boot(a, b, n_boot=2000, seed=0, paired=True, q=(2.5, 97.5), flip=False):
    rng = np.random.default_rng(seed)
    n = len(a)
    idx = rng.integers(0, n, size=(n_boot, n))
    other = idx if paired else rng.integers(0, n, size=(n_boot, n))
    d = a[idx].mean(1) - b[other].mean(1)
    lo, hi = np.percentile(d, q)
    diff = a.mean() - b.mean()
    return (-diff, -hi, -lo) if flip else (diff, lo, hi)


def test_t6_bootstrap():
    assert check("lab11.t6", boot, quiet=True)
    assert not check("lab11.t6", None, quiet=True)
    assert not check("lab11.t6", lambda a, b, n, s: None, quiet=True)
    assert not check("lab11.t6", lambda a, b, n, s: 0.1, quiet=True)
    with pytest.raises(AssertionError, match="配对"):
        lab11.t6(functools.partial(boot, paired=False))
    with pytest.raises(AssertionError, match="太窄"):
        lab11.t6(functools.partial(boot, q=(5, 95)))
    with pytest.raises(AssertionError, match="反了"):
        lab11.t6(functools.partial(boot, flip=True))
    with pytest.raises(AssertionError, match="宽度为 0"):
        lab11.t6(lambda a, b, n, s: (a.mean() - b.mean(),) * 3)
    with pytest.raises(AssertionError, match="同一个 seed"):
        lab11.t6(lambda a, b, n, s: boot(a, b, n, np.random.randint(1 << 30)))
