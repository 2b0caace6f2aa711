"""Checkpoints of lab 5 (``chapters/labs/lab05.ipynb``): optimizers, weight decay, warm-up schedules
and mini-batch gradient noise. Chapter 5 teaches it."""

from __future__ import annotations

import itertools
import math

import torch

from . import exercise
from ._answers import number as _number, callable_answer as _callable

HESSIAN_MATRIX = [[21.0, 19.0], [19.0, 21.0]]  # task 4: f(p) = 1/2 p^T A p


def _run_sgd(steps: int, **kw) -> float:
    x = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    opt = torch.optim.SGD([x], lr=0.1, **kw)
    for _ in range(steps):
        opt.zero_grad()
        (x**2).backward()
        opt.step()
    return x.item()


@exercise("lab05.t1", "f(x) = x²，x₀ = 1，SGD(lr=0.1, momentum=0.9) 走 3 步后 x 是多少？", level="easy")
def t1(answer) -> None:
    a = _number(answer, "3 步后的 x")
    if math.isclose(a, _run_sgd(3, momentum=0.9), abs_tol=1e-6):
        return
    if math.isclose(a, _run_sgd(3), abs_tol=1e-6):
        raise AssertionError("这是没有动量的 SGD（每步 x ← 0.8x）；动量要先更新缓冲 b ← μ·b + g，再 x ← x − lr·b。")
    x, b = 1.0, 0.0
    for _ in range(3):  # the EMA form of momentum, b <- mu * b + (1 - mu) * g
        b = 0.9 * b + 0.1 * 2 * x
        x -= 0.1 * b
    if math.isclose(a, x, abs_tol=1e-6):
        raise AssertionError("PyTorch 的缓冲是 b ← μ·b + g（dampening 默认 0），不是 μ·b + (1−μ)·g。")
    if math.isclose(a, _run_sgd(3, momentum=0.9, nesterov=True), abs_tol=1e-6):
        raise AssertionError("这是 Nesterov 动量的结果；题目用的是普通动量（nesterov=False）。")
    for k in (2, 4):
        if math.isclose(a, _run_sgd(k, momentum=0.9), abs_tol=1e-6):
            raise AssertionError(f"这是走 {k} 步后的 x；数一数步数：要更新 3 次。")
    raise AssertionError("梯度 g = 2x；第 1 步 b = 2、x = 0.8。照此再走两步（缓冲要带上前一步的 0.9 倍）。")


def _first_step(cls, theta: float, data_grad: float, **kw) -> float:
    p = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))
    opt = cls([p], lr=0.1, **kw)
    p.grad = torch.tensor(data_grad, dtype=torch.float64)
    opt.step()
    return p.item()


@exercise("lab05.t2", "θ = 2、数据梯度 g = −0.1、lr = 0.1、λ = 0.1：AdamW 与 Adam+L2 第一步后的 θ 各是多少？",
          level="easy")
def t2(answer) -> None:
    if answer is None or (isinstance(answer, (tuple, list)) and any(v is None for v in answer)):
        raise AssertionError("还没有作答：请给出一对数 (theta_adamw, theta_adam_l2)。")
    try:
        w, l2 = (float(v) for v in answer)
    except (TypeError, ValueError):
        raise TypeError("请给出一对数 (theta_adamw, theta_adam_l2)。") from None
    want_w = _first_step(torch.optim.AdamW, 2.0, -0.1, weight_decay=0.1)
    want_l2 = _first_step(torch.optim.Adam, 2.0, -0.1, weight_decay=0.1)
    no_decay = _first_step(torch.optim.Adam, 2.0, -0.1)
    close = lambda x, y: math.isclose(x, y, abs_tol=1e-6)  # noqa: E731
    if close(w, want_l2) and close(l2, want_w):
        raise AssertionError("两个数的顺序反了：先 AdamW，再 Adam+L2。")
    if close(w, no_decay) or close(l2, no_decay):
        raise AssertionError(f"{no_decay:g} 是不带权重衰减的 Adam；两种做法都要把 λ = 0.1 算进去。")
    if not close(w, want_w):
        raise AssertionError("AdamW：先 θ ← θ·(1 − lr·λ)，再做普通的 Adam 一步（第一步 m̂/√v̂ = sign(g)）。")
    if not close(l2, want_l2):
        raise AssertionError("Adam+L2：梯度先变成 g + λθ（注意符号可能翻转！），再做 Adam 的第一步，步长为 lr。")


def _reference_multipliers(warmup: int, total: int) -> list[float]:
    import transformers

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = transformers.get_cosine_schedule_with_warmup(opt, warmup, total)
    out = []
    for _ in range(total + 1):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


@exercise("lab05.t3", "写 warmup_cosine(step, num_warmup_steps, num_training_steps)：线性 warm-up 再余弦衰减到 0 的学习率倍数，"
          "与 transformers.get_cosine_schedule_with_warmup 每一步相同。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def warmup_cosine(step, num_warmup_steps, num_training_steps): ...")
    for warmup, total in ((10, 100), (7, 33), (0, 20)):
        want = _reference_multipliers(warmup, total)
        try:
            if answer(0, warmup, total) is None:
                raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个数）。")
            got = [float(answer(s, warmup, total)) for s in range(total + 1)]
        except (TypeError, ValueError):
            raise TypeError("warmup_cosine 应对每个 step 返回一个数（学习率倍数）。") from None
        except ZeroDivisionError:
            raise AssertionError(f"warm-up 为 {warmup} 步时除以了 0：没有 warm-up 时直接进入衰减段。") from None
        bad = [s for s in range(total + 1) if abs(got[s] - want[s]) > 1e-6]
        if not bad:
            continue
        s = bad[0]
        if warmup and s < warmup and math.isclose(got[s], (s + 1) / warmup, abs_tol=1e-6):
            raise AssertionError("warm-up 差了一步：第 step 步的倍数是 step / num_warmup_steps（第 0 步为 0）。")
        if s >= warmup:
            progress = (s - warmup) / max(1, total - warmup)
            if math.isclose(got[s], 0.5 * (1 + math.cos(2 * math.pi * progress)), abs_tol=1e-6):
                raise AssertionError("你的余弦走了一整个周期（又回到 1）；衰减段只走半个周期：0.5·(1 + cos(π·progress))。")
            if math.isclose(got[s], 0.5 * (1 + math.cos(math.pi * s / total)), abs_tol=1e-6):
                raise AssertionError("衰减的进度要从 warm-up 结束时算起：progress = (step − warmup) / (total − warmup)。")
        raise AssertionError(f"warm-up {warmup}、共 {total} 步时，第 {s} 步的倍数应为 {want[s]:.6f}，你的是 {got[s]:.6f}。")


def quadratic(p: torch.Tensor) -> torch.Tensor:
    """Task 4's loss f(p) = 1/2 p^T A p."""
    a = torch.tensor(HESSIAN_MATRIX, dtype=p.dtype)
    return 0.5 * p @ a @ p


@exercise("lab05.t4", "f(p) = ½ pᵀAp，A = [[21, 19], [19, 21]]：普通 SGD 能收敛的最大学习率（上确界）是多少？",
          level="medium")
def t4(answer) -> None:
    a = _number(answer, "最大学习率")
    hessian = torch.autograd.functional.hessian(quadratic, torch.zeros(2, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(hessian)
    lam_min, lam_max = eig.min().item(), eig.max().item()
    if math.isclose(a, 2 / lam_max, rel_tol=1e-3):
        return
    if math.isclose(a, 2 / hessian.diagonal().max().item(), rel_tol=1e-3):
        raise AssertionError("你用了对角元 21；A 不是对角阵，决定稳定性的是 Hessian 的最大特征值（torch.linalg.eigvalsh）。")
    if math.isclose(a, 1 / lam_max, rel_tol=1e-3):
        raise AssertionError("1/λ_max 仍能收敛，但不是上界：沿特征向量每步乘以 (1 − η·λ)，|1 − ηλ| < 1 才收敛。")
    if math.isclose(a, 2 / lam_min, rel_tol=1e-3):
        raise AssertionError("最平缓的方向不限制学习率；要所有方向都满足 |1 − ηλ| < 1，是最陡的方向说了算。")
    raise AssertionError(f"{a:g} 不对：先求 A 的特征值，每个方向要求 |1 − η·λ| < 1。")


def _exact_noise(grads: torch.Tensor, b: int) -> float:
    """E ||mean of a size-b subset - full mean||^2 over all subsets, by enumeration."""
    full = grads.mean(0)
    values = [(grads[list(c)].mean(0) - full).pow(2).sum().item() for c in itertools.combinations(range(len(grads)), b)]
    return sum(values) / len(values)


@exercise("lab05.t5", "写 exact_noise(per_example_grads, batch_size)：不放回抽 B 个样本时，小批量梯度与全量梯度之差的"
          "平方范数的期望。", level="medium")
def t5(answer) -> None:
    _callable(answer, "def exact_noise(per_example_grads, batch_size): ...")
    g = torch.Generator().manual_seed(55)
    grads = torch.randn(7, 3, generator=g, dtype=torch.float64) + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    n = len(grads)
    sigma2 = (grads - grads.mean(0)).pow(2).sum(1).mean().item()  # population variance (ddof=0)
    for b in range(1, n + 1):
        value = answer(grads.clone(), b)
        if value is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个数）。")
        got = float(value)
        want = _exact_noise(grads, b)
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        if math.isclose(got, sigma2 / b, rel_tol=1e-6):
            raise AssertionError(f"B = {b}：σ²/B 是有放回抽样的结果；不放回抽样还要乘以有限总体修正 (n − B)/(n − 1)。"
                                 "检查 B = n 时：小批量就是全量，噪声应为 0。")
        if math.isclose(got, (1 - b / n) * sigma2 / b, rel_tol=1e-6):
            raise AssertionError("修正系数对了一半：(1 − B/n)·S²/B 里的 S² 要用无偏方差（除以 n − 1），或写成 (n − B)/(n − 1)·σ²/B。")
        raise AssertionError(f"n = {n}、B = {b} 时期望应为 {want:.6f}（枚举所有子集），你的是 {got:.6f}。")


def _adam_variant(p, grads_fn, steps, lr, wd, decoupled, bias=True, eps_inside=False, decay_lr=True):
    """A hand-written Adam trajectory with switches for the usual mistakes (only to diagnose them)."""
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for t in range(1, steps + 1):
        g = grads_fn(p)
        if wd and decoupled:
            p = p * (1 - (lr * wd if decay_lr else wd))
        elif wd:
            g = g + wd * p
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        mh, vh = (m / (1 - 0.9**t), v / (1 - 0.999**t)) if bias else (m, v)
        p = p - lr * mh / (torch.sqrt(vh + 1e-8) if eps_inside else torch.sqrt(vh) + 1e-8)
    return p


@exercise("lab05.t6", "写 adam_step(p, grad, m, v, t, lr, weight_decay, decoupled)：Adam / AdamW 的一步，"
          "25 步的轨迹与 torch.optim.Adam / AdamW 一致。", level="hard")
def t6(answer) -> None:
    _callable(answer, "def adam_step(p, grad, m, v, t, lr, weight_decay=0.0, decoupled=False): ...")
    gen = torch.Generator().manual_seed(56)
    target = torch.randn(6, generator=gen, dtype=torch.float64) * 3
    scale = torch.logspace(-2, 1, 6, dtype=torch.float64)  # gradients of very different sizes
    grads_fn = lambda q: scale * (q - target)  # noqa: E731  (gradient of sum(scale/2 * (q - target)^2))
    start = torch.randn(6, generator=gen, dtype=torch.float64)
    for wd, decoupled in ((0.0, False), (0.1, False), (0.1, True)):
        ref = torch.nn.Parameter(start.clone())
        opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)([ref], lr=0.05, weight_decay=wd)
        p, m, v = start.clone(), torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
        for t in range(1, 26):
            ref.grad = grads_fn(ref.detach())
            opt.step()
            out = answer(p, grads_fn(p), m, v, t, 0.05, weight_decay=wd, decoupled=decoupled)
            if out is None:
                raise AssertionError("adam_step 返回了 None：还没有完成 TODO（应返回 (p, m, v)）。")
            try:
                p, m, v = out
            except (TypeError, ValueError):
                raise TypeError("adam_step 应返回三元组 (新的 p, 新的 m, 新的 v)。") from None
        if torch.allclose(p, ref.detach(), rtol=1e-6, atol=1e-8):
            continue
        kind = "AdamW" if decoupled else ("Adam+L2" if wd else "Adam")
        variants = {
            "没有做偏差修正：m̂ = m/(1 − β1^t)，v̂ = v/(1 − β2^t)": dict(bias=False),
            "ε 要加在 √v̂ 之外：m̂ / (√v̂ + ε)": dict(eps_inside=True),
            "AdamW 的衰减是 p ← p·(1 − lr·λ)，要乘学习率": dict(decay_lr=False),
            "L2 与解耦弄反了：decoupled=True 时直接衰减权重，False 时把 λp 加进梯度": dict(decoupled=not decoupled),
        }
        for hint, kw in variants.items():
            args = dict(lr=0.05, wd=wd, decoupled=decoupled) | kw
            if torch.allclose(p, _adam_variant(start.clone(), grads_fn, 25, **args), rtol=1e-6, atol=1e-8):
                raise AssertionError(f"{kind} 的轨迹不对：{hint}。")
        if not torch.isfinite(p).all():
            raise AssertionError(f"{kind} 出现了 nan/inf：t 从 1 开始计数（1 − β^0 = 0 会除以 0）。")
        raise AssertionError(f"{kind} 25 步后的参数与 torch.optim 不同（最大差 {(p - ref.detach()).abs().max().item():.3g}）。")
