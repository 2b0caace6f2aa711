"""Checkpoints of lab 4 (``chapters/labs/lab04.ipynb``): cross-entropy from scratch, its gradient,
label smoothing and gradient accumulation. Chapter 4 teaches it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import exercise
from ._answers import number as _number, returned as _returned, callable_answer as _callable

IGNORE = -100
SMOOTH_LOGITS = [2.0, 0.5, -1.0]  # task 2: logits, true class 0, label smoothing 0.1
SMOOTH_EPS = 0.1


def t1_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Task 1: next-token logits (7 positions, V = 5) and labels, -100 where nothing is predicted."""
    g = torch.Generator().manual_seed(4)
    logits = 2.0 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([3, 0, 4, 4, 1, IGNORE, IGNORE])
    return logits, labels


@exercise("lab04.t1", "用 t1_data() 的 logits 和标签（-100 不计入）算出这段文本的困惑度。", level="easy")
def t1(answer) -> None:
    a = _number(answer, "困惑度")
    logits, labels = t1_data()
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE).item()
    keep = labels != IGNORE
    n_all, n_keep = len(labels), int(keep.sum())
    if math.isclose(a, ce, rel_tol=1e-3):
        raise AssertionError(f"{a:.4f} 是交叉熵本身；困惑度是它的指数 e^CE。")
    if math.isclose(a, math.exp(ce * n_keep / n_all), rel_tol=1e-3):
        raise AssertionError(f"你把 -100 的位置也算进了分母（{n_all} 而不是 {n_keep}）：忽略的位置不计入平均。")
    if math.isclose(a, math.exp(ce * n_keep), rel_tol=1e-3):
        raise AssertionError("你对损失的总和取了指数；困惑度是平均交叉熵的指数。")
    p = torch.softmax(logits[keep], -1).gather(1, labels[keep].unsqueeze(1))
    if math.isclose(a, (1 / p).mean().item(), rel_tol=1e-3):
        raise AssertionError("1/p 的算术平均不是困惑度：先对 -log p 求平均，再取指数（几何平均）。")
    if not math.isclose(a, math.exp(ce), rel_tol=1e-3):
        raise AssertionError(f"{a:.4f} 不对：在计入的 {n_keep} 个位置上求 -log softmax(z)[y] 的平均，再取 e 的指数。")


@exercise("lab04.t2", "logits [2, 0.5, -1]、真实类别 0、标签平滑 ε=0.1：手算损失对 logits 的梯度（3 个数）。",
          level="easy")
def t2(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出 3 个数的列表。")
    try:
        vals = [float(v) for v in answer]
    except TypeError:
        raise TypeError(f"请给出 3 个数（列表或张量），而不是 {type(answer).__name__}") from None
    if len(vals) != 3:
        raise AssertionError(f"梯度应有 3 个分量（每个类别一个），你给了 {len(vals)} 个。")
    z = torch.tensor(SMOOTH_LOGITS, dtype=torch.float64, requires_grad=True)
    F.cross_entropy(z, torch.tensor(0), label_smoothing=SMOOTH_EPS).backward()
    truth = z.grad.tolist()
    p = torch.softmax(z.detach(), 0).tolist()
    close = lambda ref: all(abs(v - r) < 1e-3 for v, r in zip(vals, ref))  # noqa: E731
    if close(truth):
        return
    if close([-t for t in truth]):
        raise AssertionError("符号反了：梯度是 p − q，不是 q − p。")
    if close([p[0] - 1, p[1], p[2]]):
        raise AssertionError("这是没有标签平滑的梯度 p − onehot(y)；目标应换成 q = (1−ε)·onehot(y) + ε/C。")
    e = SMOOTH_EPS
    if close([p[0] - (1 - e), p[1] - e / 2, p[2] - e / 2]):
        raise AssertionError("你把 ε 平分给了其余 C−1 个类别；PyTorch 的标签平滑把 ε/C 分给所有 C 个类别（含真实类别）。")
    if abs(sum(vals)) > 1e-3:
        raise AssertionError(f"分量之和应为 0（p 与 q 都是概率分布），你的和是 {sum(vals):.4f}。")
    raise AssertionError("先算 p = softmax(z)，再算 q = (1−ε)·onehot(y) + ε/C，梯度是 p − q。")


def _t3_cases(g: torch.Generator):
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(6, 4, generator=g, dtype=dtype) * 3
        x[1] = torch.tensor([1e4, -1e4, 0.0, 5.0])   # would overflow exp()
        x[2] = torch.tensor([0.0, -300.0, 2.0, 1.0])  # p of class 1 underflows
        t = torch.tensor([0, 1, 1, IGNORE, 3, IGNORE])
        yield x, t


@exercise("lab04.t3", "实现 my_cross_entropy(logits, target)：(N, C) 输入、ignore_index=-100、均值，"
          "数值稳定，值与梯度都与 F.cross_entropy 一致。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def my_cross_entropy(logits, target): ...")
    g = torch.Generator().manual_seed(43)
    for x, t in _t3_cases(g):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        try:
            got = answer(xa, t.clone())
        except (IndexError, RuntimeError) as exc:
            raise AssertionError(f"标签里有 -100 时出错（{type(exc).__name__}: {exc}）："
                                 "先把 -100 换成任意合法类别再取值，最后用掩码把这些位置置零。") from None
        _returned(got, "一个标量张量")
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise AssertionError("应返回一个标量张量（所有计入位置的平均损失）。")
        want = F.cross_entropy(xb, t)
        if not torch.isfinite(got).all():
            raise AssertionError(f"{x.dtype} 下得到 {got.item()}：极端 logits（±1e4）让 exp 溢出或概率下溢，"
                                 "用 log-sum-exp：先减去每行的最大值。")
        n_keep, n_all = int((t != IGNORE).sum()), len(t)
        if torch.allclose(got.detach().double(), want.detach().double() * n_keep / n_all, rtol=1e-4):
            raise AssertionError(f"分母错了：应除以计入的位置数 {n_keep}，而不是全部 {n_all} 个。")
        if not torch.allclose(got.detach().double(), want.detach().double(), rtol=1e-4, atol=1e-4):
            raise AssertionError(f"{x.dtype} 下损失为 {got.item():.4f}，应为 {want.item():.4f}。")
        if not got.requires_grad:
            raise AssertionError("返回值不能求导：不要用 .item()、.detach() 或 numpy。")
        got.backward()
        want.backward()
        if xa.grad is None or not torch.allclose(xa.grad, xb.grad, rtol=1e-4, atol=1e-6):
            raise AssertionError("损失值对了，梯度却不同：检查是否对 logits 做了原地修改，或 detach 了参与求导的部分。")


@exercise("lab04.t4", "实现 my_bce_with_logits(z, y)（均值），在 |z| 很大时也有限，值与梯度都与 "
          "F.binary_cross_entropy_with_logits 一致。", level="medium")
def t4(answer) -> None:
    _callable(answer, "def my_bce_with_logits(z, y): ...")
    g = torch.Generator().manual_seed(44)
    for dtype in (torch.float32, torch.float64):
        z = torch.cat([torch.randn(8, generator=g, dtype=dtype) * 2,
                       torch.tensor([-200.0, 200.0, 50.0, -50.0, 0.0], dtype=dtype)])
        y = torch.cat([torch.rand(8, generator=g, dtype=dtype), torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=dtype)])
        za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
        got = answer(za, y.clone())
        _returned(got, "一个标量张量")
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise AssertionError("应返回一个标量张量（所有元素的平均损失）。")
        want = F.binary_cross_entropy_with_logits(zb, y)
        if not torch.isfinite(got).all():
            raise AssertionError(f"{dtype} 下得到 {got.item()}：sigmoid(-200) 下溢为 0，log(0) = -inf。"
                                 "别先算 sigmoid：用 log σ(z) = −softplus(−z) 并用 max(0, ·) 做平移。")
        if not torch.allclose(got.detach(), want.detach(), rtol=1e-4, atol=1e-5):
            raise AssertionError(f"{dtype} 下损失为 {got.item():.4f}，应为 {want.item():.4f}：软标签 y∈[0,1] 也要支持。")
        if not got.requires_grad:
            raise AssertionError("返回值不能求导：不要用 .item()、.detach() 或 numpy。")
        got.backward()
        want.backward()
        if za.grad is None or not torch.isfinite(za.grad).all():
            raise AssertionError("梯度里出现了 nan/inf：exp 的参数不要是一个大的正数。")
        bad = ~torch.isclose(za.grad, zb.grad, rtol=1e-4, atol=1e-6)
        if bad.any() and bool((z[bad] == 0).all()):
            raise AssertionError("只有 z = 0 处梯度不对：max(−z, 0) 与 |z| 在 0 处有折点，autograd 在那里取了单侧导数。"
                                 "把平移量 m = max(0, −z) detach，再用 m + log(e^{−m} + e^{−z−m})。")
        if bad.any():
            raise AssertionError("损失值对了，梯度却不同（应为 (σ(z) − y)/N）。")


def _best_margin(eps: float, c: int) -> float:
    """The margin m minimising smoothed CE of logits (m, 0, ..., 0): bisection on the sign of dL/dm
    (the loss is convex in m, so its derivative is increasing)."""
    lo, hi = -50.0, 50.0
    for _ in range(60):
        m = torch.tensor((lo + hi) / 2, dtype=torch.float64, requires_grad=True)
        z = torch.cat([m.view(1), torch.zeros(c - 1, dtype=torch.float64)])
        (d,) = torch.autograd.grad(F.cross_entropy(z, torch.tensor(0), label_smoothing=eps), m)
        lo, hi = (m.item(), hi) if d < 0 else (lo, m.item())
    return (lo + hi) / 2


@exercise("lab04.t5", "写 optimal_margin(eps, num_classes)：标签平滑下使损失最小的 logit 间隔 z_y − z_j。",
          level="medium")
def t5(answer) -> None:
    _callable(answer, "def optimal_margin(eps, num_classes): ...")
    for eps, c in ((0.1, 2), (0.1, 5), (0.3, 10), (0.05, 1000)):
        value = answer(eps, c)
        try:
            got = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"optimal_margin(eps, num_classes) 应返回一个数，得到的是 {value!r}。") from None
        want = _best_margin(eps, c)
        if math.isclose(got, want, rel_tol=1e-4):
            continue
        if math.isclose(got, math.log((1 - eps) / (eps / (c - 1))), rel_tol=1e-4):
            raise AssertionError("你用了 ε/(C−1) 的约定；PyTorch 的 q 是 (1−ε)·onehot + ε/C，真实类别也分到 ε/C。")
        if math.isclose(got, math.log((1 - eps) / (eps / c)), rel_tol=1e-4):
            raise AssertionError("真实类别的目标概率是 1−ε+ε/C，不是 1−ε。")
        raise AssertionError(f"ε={eps}、C={c} 时你的间隔是 {got:.4f}，数值最优为 {want:.4f}："
                             "最优 p 等于 q，间隔是 log(q_y / q_j)。")


class TinyLM(torch.nn.Module):
    """Embedding -> linear: next-token logits (batch, seq, V), as in chapter 4.6."""

    def __init__(self, vocab_size: int = 7, dim: int = 8):
        super().__init__()
        self.emb, self.out = torch.nn.Embedding(vocab_size, dim), torch.nn.Linear(dim, vocab_size)

    def forward(self, input_ids, attention_mask=None):
        return self.out(self.emb(input_ids))


def t6_setup(seed: int = 0):
    """A TinyLM, 5 sequences of very different lengths (an ``Encoded``) and 2 micro-batches of them."""
    from ..data import Encoded

    torch.manual_seed(seed)
    lm = TinyLM()
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, 7, (n,), generator=g).tolist() for n in (2, 3, 12, 10, 11)]
    data = Encoded(seqs, [s[1:] + [IGNORE] for s in seqs])
    return lm, data, [data.batch([0, 1]), data.batch([2, 3, 4])]


def _grads(model) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()])


@exercise("lab04.t6", "写 accumulate(model, micro_batches)：逐个微批次反向传播，使累积的梯度等于整批按词元平均的梯度，"
          "并返回整批的平均损失。", level="hard")
def t6(answer) -> None:
    _callable(answer, "def accumulate(model, micro_batches): ...")
    for seed in (0, 1):
        lm, data, micro = t6_setup(seed)
        whole = data.batch(range(len(data)))
        logits = lm(whole["input_ids"])
        ref_loss = F.cross_entropy(logits.flatten(0, 1), whole["labels"].flatten())
        ref = torch.cat([g.flatten() for g in torch.autograd.grad(ref_loss, list(lm.parameters()))])
        naive = sum(F.cross_entropy(lm(b["input_ids"]).flatten(0, 1), b["labels"].flatten()) for b in micro) / 2
        naive_g = torch.cat([g.flatten() for g in torch.autograd.grad(naive, list(lm.parameters()))])
        lm.zero_grad()
        got_loss = answer(lm, micro)
        got = _grads(lm)
        if got_loss is None and not got.abs().sum() > 0:
            _returned(None, "整批的平均损失，并让参数带上梯度")
        if not got.abs().sum() > 0:
            raise AssertionError("模型参数上没有梯度：每个微批次的损失都要调用 .backward()。")
        rel = lambda v, to=ref: ((v - to).norm() / to.norm()).item()  # noqa: E731
        if rel(got, naive_g) < 1e-4:
            raise AssertionError("你平均了各微批次的平均：短微批次里的每个词元被放大了。"
                                 "每个微批次用 reduction='sum'，再除以所有微批次计入的词元总数。")
        n = int((whole["labels"] != IGNORE).sum())
        if rel(got / n) < 1e-4:
            raise AssertionError(f"梯度大了 {n} 倍：损失之和还要除以整批计入的词元总数 {n}。")
        if rel(got) > 1e-4:
            raise AssertionError(f"累积的梯度与整批梯度的相对误差为 {rel(got):.2%}：用 '损失之和 / 总词元数'。")
        try:
            loss_value = float(got_loss)
        except (TypeError, ValueError):
            raise TypeError("accumulate 应返回整批的平均损失（一个数）。") from None
        if not math.isclose(loss_value, ref_loss.item(), rel_tol=1e-4):
            raise AssertionError(f"梯度对了，但返回的损失 {loss_value:.4f} 不是整批的平均 {ref_loss.item():.4f}。")
