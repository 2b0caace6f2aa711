"""Checkpoints of lab 11 (``chapters/labs/lab11.ipynb``): evaluating a classifier - per-class
precision / recall / F1, expected calibration error, temperature scaling, ROC AUC with ties, and
comparing two models on the same test set (McNemar's exact test, a paired bootstrap interval).
Chapter 11 teaches it."""

from __future__ import annotations

import math

import numpy as np

from . import exercise
from ._answers import callable_answer as _callable


def _float(value, what: str) -> float:
    if value is None:
        raise AssertionError(f"函数返回了 None：还没有完成 TODO（应返回{what}）。")
    if isinstance(value, bool):
        raise TypeError(f"应返回一个数（{what}），而不是 bool")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"应返回一个数（{what}），而不是 {type(value).__name__}") from None
    if arr.size != 1:
        raise TypeError(f"应返回一个数（{what}），而不是形状为 {arr.shape} 的数组")
    return float(arr.reshape(-1)[0])


def _from_confusion(cm: np.ndarray) -> tuple[list[int], list[int]]:
    t, p = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            t += [i] * int(cm[i, j])
            p += [j] * int(cm[i, j])
    return t, p


def t1_matrices() -> list[np.ndarray]:
    """Task 1's confusion matrices (rows = true class, columns = predicted); class 3 of the first
    one is never predicted."""
    rng = np.random.default_rng(111)
    a = rng.integers(0, 9, size=(4, 4)) + np.diag([20, 12, 30, 6])
    a[:, 3] = 0
    b = rng.integers(0, 6, size=(3, 3)) + np.diag([9, 25, 4])
    return [a, b]


@exercise("lab11.t1", "写 precision_recall_f1(cm)：从混淆矩阵（行 = 真实，列 = 预测）算出每个类别的精确率、召回率和 F1，"
          "与 scikit-learn 相同。", level="easy")
def t1(answer) -> None:
    from sklearn.metrics import precision_recall_fscore_support

    _callable(answer, "def precision_recall_f1(cm): ...")
    for cm in t1_matrices():
        k = cm.shape[0]
        t, p = _from_confusion(cm)
        want = precision_recall_fscore_support(t, p, labels=list(range(k)), zero_division=0)[:3]
        out = answer(cm.copy())
        if out is None or (isinstance(out, tuple) and any(v is None for v in out)):
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回 (precision, recall, f1) 三个数组）。")
        try:
            got = [np.asarray(v, dtype=float).reshape(-1) for v in out]
        except (TypeError, ValueError):
            raise TypeError("应返回三元组 (precision, recall, f1)，每个是长度为类别数的数组。") from None
        if len(got) != 3 or any(g.shape != (k,) for g in got):
            raise AssertionError(f"应返回 3 个数组，每个长度 {k}（每个类别一个数）；不要先求平均。")
        if any(np.isnan(g).any() for g in got):
            raise AssertionError("结果里有 nan：某个类别从来没有被预测过（这一列全是 0），它的精确率按 0 算"
                                 "（scikit-learn 的 zero_division=0）。")
        prec, rec, f1 = got
        if np.allclose(prec, want[1], atol=1e-9) and np.allclose(rec, want[0], atol=1e-9) \
                and not np.allclose(prec, want[0], atol=1e-9):
            raise AssertionError("精确率和召回率弄反了：行是真实类别、列是预测类别；精确率 = 对角元 / 列和，召回率 = 对角元 / 行和。")
        for name, g, w in (("精确率", prec, want[0]), ("召回率", rec, want[1]), ("F1", f1, want[2])):
            if not np.allclose(g, w, atol=1e-9):
                c = int(np.argmax(np.abs(g - w)))
                if name == "F1" and math.isclose(g[c], (prec[c] + rec[c]) / 2, abs_tol=1e-9):
                    raise AssertionError("F1 是精确率与召回率的调和平均 2PR/(P+R)，不是算术平均。")
                raise AssertionError(f"{k} 个类别的矩阵上，类别 {c} 的{name}应为 {w[c]:.4f}，你的是 {g[c]:.4f}。")


def t2_problem() -> tuple[np.ndarray, list[int]]:
    """Task 2's probabilities (3 classes; confidences on the bin edges 0.5 and 0.75) and labels."""
    conf = [0.5, 0.5, 0.75, 0.75, 0.75, 0.75, 0.6, 0.65, 0.7, 0.55, 0.62, 0.68, 0.8, 0.9, 0.95, 0.85, 1.0, 0.92,
            0.4, 0.45]
    right = [0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0]
    rng = np.random.default_rng(112)
    top = rng.integers(0, 3, len(conf))
    probs = np.zeros((len(conf), 3))
    for i, (c, t) in enumerate(zip(conf, top)):
        probs[i] = (1 - c) / 2
        probs[i, t] = c
    labels = [int(t if r else (t + 1) % 3) for t, r in zip(top, right)]
    return probs, labels


def _ece_variant(probs, y, n_bins, right=True, weighted=True, conf=None):
    conf = probs.max(axis=1) if conf is None else conf
    correct = probs.argmax(axis=1) == np.asarray(y)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=right), 0, n_bins - 1)
    gaps, counts = [], []
    for b in range(n_bins):
        m = which == b
        if m.any():
            gaps.append(abs(correct[m].mean() - conf[m].mean()))
            counts.append(m.sum())
    gaps, counts = np.array(gaps), np.array(counts)
    return float((gaps * counts).sum() / counts.sum()) if weighted else float(gaps.mean())


@exercise("lab11.t2", "写 ece(probs, y_true, n_bins)：等宽区间 (lower, upper] 的期望校准误差，"
          "与 ftbook.evaluation.expected_calibration_error 相同。", level="easy")
def t2(answer) -> None:
    from ..evaluation import expected_calibration_error

    _callable(answer, "def ece(probs, y_true, n_bins=10): ...")
    probs, y = t2_problem()
    for n_bins in (4, 10):
        want = expected_calibration_error(probs, y, n_bins)
        got = _float(answer(probs.copy(), list(y), n_bins), "ECE，一个数")
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        y_arr = np.asarray(y)
        hints = [
            (_ece_variant(probs, y, n_bins, weighted=False), "各区间的差距要按样本占比 |S_b|/n 加权，不是简单平均。"),
            (_ece_variant(probs, y, n_bins, right=False), "落在区间边界上的置信度（例如正好 0.75）归左边的区间：区间是 (lower, upper]。"
                                                         "用 np.digitize(conf, edges[1:-1], right=True)。"),
            (_ece_variant(probs, y, n_bins, conf=probs[np.arange(len(y)), y_arr]),
             "置信度是模型预测类别的概率（每行的最大值），不是真实类别的概率。"),
        ]
        for value, hint in hints:
            if math.isclose(got, value, abs_tol=1e-9):
                raise AssertionError(hint)
        raise AssertionError(f"{n_bins} 个区间时 ECE 应为 {want:.4f}，你的是 {got:.4f}。")


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def _best_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda s: _nll(logits, labels, math.exp(s)), bounds=(-4, 4), method="bounded",
                          options={"xatol": 1e-8})
    return math.exp(res.x)


def t3_problem(scale: float, seed: int = 113) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``scale`` times too sharp (``scale > 1``: over-confident) and labels drawn from the
    calibrated model, 400 examples of 3 classes."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(400, 3)) * 1.5
    p = np.exp(base) / np.exp(base).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    return base * scale, labels


@exercise("lab11.t3", "写 fit_temperature(logits, labels)：找使 softmax(logits / T) 的平均负对数似然最小的温度 T。",
          level="medium")
def t3(answer) -> None:
    _callable(answer, "def fit_temperature(logits, labels): ...")
    for scale in (3.0, 0.5):
        logits, labels = t3_problem(scale)
        want = _best_temperature(logits, labels)
        got = _float(answer(logits.copy(), labels.copy()), "温度 T，一个正数")
        if math.isclose(got, want, rel_tol=1e-2):
            continue
        kind = "过于自信（T 应大于 1）" if scale > 1 else "欠自信（T 应小于 1）"
        if got > 0 and math.isclose(1 / got, want, rel_tol=1e-2):
            raise AssertionError(f"你求出的是 1/T：模型{kind}；是 logits 除以 T，不是乘以 T。")
        pred = logits.argmax(axis=1)
        if math.isclose(got, _best_temperature(logits, pred), rel_tol=2e-2):
            raise AssertionError("你用模型自己的预测当标签拟合了温度，结果只会越来越自信；要用真实标签（验证集上）。")
        if got <= 0:
            raise AssertionError("温度必须是正数：可以对 log T 做搜索或优化，保证 T > 0。")
        raise AssertionError(f"模型{kind}：最优 T ≈ {want:.3f}，你的是 {got:.3f}（NLL {_nll(logits, labels, got):.4f} 对 "
                             f"{_nll(logits, labels, want):.4f}）；网格太粗或优化没收敛？")


def t4_problem() -> tuple[np.ndarray, np.ndarray]:
    """Task 4's scores (rounded to 1 decimal, so many ties) and binary labels."""
    rng = np.random.default_rng(114)
    y = rng.integers(0, 2, 60)
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1), 1)
    return scores, y


@exercise("lab11.t4", "写 roc_auc(scores, y_true)：随机取一个正例和一个负例，正例得分更高的概率（平局算 1/2），"
          "与 sklearn.metrics.roc_auc_score 相同。", level="medium")
def t4(answer) -> None:
    from sklearn.metrics import roc_auc_score

    _callable(answer, "def roc_auc(scores, y_true): ...")
    scores, y = t4_problem()
    want = roc_auc_score(y, scores)
    got = _float(answer(scores.copy(), y.copy()), "AUC，一个数")
    if math.isclose(got, want, abs_tol=1e-9):
        if not math.isclose(_float(answer(np.arange(6.0), np.array([0, 0, 0, 1, 1, 1])), "AUC"), 1.0):
            raise AssertionError("平局多的数据对了，没有平局的完全分开的数据上 AUC 应为 1。")
        return
    pos, neg = scores[y == 1], scores[y == 0]
    diff = pos[:, None] - neg[None, :]
    if math.isclose(got, 1 - want, abs_tol=1e-9):
        raise AssertionError("你算的是负例得分更高的概率（1 − AUC）：正类是 y = 1。")
    if math.isclose(got, float((diff > 0).mean()), abs_tol=1e-9):
        raise AssertionError("平局（正例与负例得分相同）没有算分：每个平局记 1/2。")
    if math.isclose(got, float((diff >= 0).mean()), abs_tol=1e-9):
        raise AssertionError("平局记成了 1：每个平局只记 1/2。")
    if math.isclose(got, roc_auc_score(y, scores > 0.5), abs_tol=1e-9):
        raise AssertionError("你先把得分变成了 0/1 的预测：AUC 要用连续的得分排序，不取阈值。")
    raise AssertionError(f"AUC 应为 {want:.4f}，你的是 {got:.4f}：对所有 (正例, 负例) 对，计 1[s⁺ > s⁻] + ½·1[s⁺ = s⁻] 的平均。")


def _pairs(b: int, c: int, both: int = 50, neither: int = 10) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * b + [0] * c + [0] * neither, dtype=bool)
    bb = np.array([1] * both + [0] * b + [1] * c + [0] * neither, dtype=bool)
    return a, bb


@exercise("lab11.t5", "写 mcnemar_p(correct_a, correct_b)：两个模型在同一测试集上逐条对错的 McNemar 精确检验（双侧）p 值。",
          level="medium")
def t5(answer) -> None:
    from scipy.stats import binomtest, chi2

    _callable(answer, "def mcnemar_p(correct_a, correct_b): ...")
    for b, c in ((3, 11), (9, 9), (30, 12)):
        a, bb = _pairs(b, c)
        want = binomtest(b, b + c, 0.5).pvalue
        got = _float(answer(a.copy(), bb.copy()), "p 值，一个数")
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12):
            continue
        n = len(a)
        if math.isclose(got, binomtest(b + int((a & bb).sum()), n, 0.5).pvalue, rel_tol=1e-6) or \
                math.isclose(got, binomtest(b, n, 0.5).pvalue, rel_tol=1e-6):
            raise AssertionError("只有两个模型意见不一的样本（一个对、一个错）携带信息：检验的是 b ~ Binomial(b + c, ½)，不是全部 n 条。")
        if math.isclose(got, want / 2, rel_tol=1e-6) or math.isclose(got, min(1.0, want) / 2, rel_tol=1e-6):
            raise AssertionError("这是单侧 p 值；我们事先不知道谁更好，要双侧（乘以 2，最大为 1）。")
        stat_cc = (abs(b - c) - 1) ** 2 / (b + c)
        stat = (b - c) ** 2 / (b + c)
        if math.isclose(got, chi2.sf(stat_cc, 1), rel_tol=1e-6) or math.isclose(got, chi2.sf(stat, 1), rel_tol=1e-6):
            raise AssertionError("这是卡方近似；b + c 很小时它不准。题目要精确检验：二项分布 Binomial(b + c, ½) 的双侧尾概率。")
        raise AssertionError(f"b = {b}、c = {c} 时 p 应为 {want:.6f}，你的是 {got:.6f}（scipy.stats.binomtest(b, b + c, 0.5)）。")


def t6_problem() -> tuple[np.ndarray, np.ndarray]:
    """Task 6's per-example correctness of two models on 400 test examples (strongly correlated)."""
    rng = np.random.default_rng(116)
    a, b = _pairs(25, 15, both=320, neither=40)
    order = rng.permutation(len(a))
    return a[order], b[order]


def _reference_bootstrap(a, b, n_boot=20000, seed=2024, paired=True):
    rng = np.random.default_rng(seed)
    n = len(a)
    idx = rng.integers(0, n, size=(n_boot, n))
    if paired:
        d = a[idx].mean(1) - b[idx].mean(1)
    else:
        d = a[idx].mean(1) - b[rng.integers(0, n, size=(n_boot, n))].mean(1)
    return np.percentile(d, [2.5, 97.5])


@exercise("lab11.t6", "写 paired_bootstrap(correct_a, correct_b, n_boot, seed)：准确率之差 A − B 及其配对自助法 95% 区间。",
          level="hard")
def t6(answer) -> None:
    _callable(answer, "def paired_bootstrap(correct_a, correct_b, n_boot=2000, seed=0): ...")
    a, b = t6_problem()
    diff = float(a.mean() - b.mean())
    lo_ref, hi_ref = _reference_bootstrap(a, b)
    width = hi_ref - lo_ref
    for seed in (0, 1):
        out = answer(a.copy(), b.copy(), 2000, seed)
        if out is None or (isinstance(out, tuple) and any(v is None for v in out)):
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回 (diff, lo, hi)）。")
        try:
            d, lo, hi = (float(v) for v in out)
        except (TypeError, ValueError):
            raise TypeError("应返回三元组 (diff, lo, hi)：准确率之差和 95% 区间的两端。") from None
        if math.isclose(d, -diff, abs_tol=1e-9) and diff:
            raise AssertionError("差的方向反了：要 A 的准确率减 B 的。")
        if not math.isclose(d, diff, abs_tol=1e-9):
            raise AssertionError(f"diff 是整个测试集上的准确率之差 {diff:+.4f}，不是某次重抽样的结果；你的是 {d:+.4f}。")
        if not lo <= d <= hi:
            raise AssertionError(f"区间 [{lo:.4f}, {hi:.4f}] 没有包含点估计 {d:.4f}：lo 是 2.5% 分位数，hi 是 97.5% 分位数。")
        if hi - lo < 1e-9:
            raise AssertionError("区间宽度为 0：每次重抽样要有放回地抽 n 个下标（rng.integers(0, n, n)）。")
        if hi - lo > 1.3 * width:
            raise AssertionError(f"区间太宽（{hi - lo:.4f}，应约 {width:.4f}）：A 和 B 要用同一组下标重抽样（配对），"
                                 "分别重抽会丢掉两个模型在同一条样本上对错相关这一信息。")
        if hi - lo < 0.9 * width:
            raise AssertionError(f"区间太窄（{hi - lo:.4f}，应约 {width:.4f}）：95% 区间取第 2.5 和第 97.5 百分位数。")
        tol = 0.006
        if abs(lo - lo_ref) > tol or abs(hi - hi_ref) > tol:
            raise AssertionError(f"区间 [{lo:.4f}, {hi:.4f}] 与参考 [{lo_ref:.4f}, {hi_ref:.4f}] 相差太多："
                                 "每次重抽样有放回地抽 n 个下标，A、B 共用，算差，再取 2.5%、97.5% 分位数。")
    if answer(a.copy(), b.copy(), 2000, 0) != answer(a.copy(), b.copy(), 2000, 0):
        raise AssertionError("同一个 seed 两次结果不同：用 np.random.default_rng(seed) 建随机数生成器。")
