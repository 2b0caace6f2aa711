"""Checkpoints of lab 17 (``chapters/labs/lab17.ipynb``): the FAQ tools by hand -- the smoothed
range-test curve, reading it, how much weight decay shrinks a weight, gradient x input and a
deletion test. Chapter 17 teaches it."""

from __future__ import annotations

import functools
import math

import torch

from . import exercise
from ._answers import callable_answer as _callable

T2_LR, T2_DECAY, T2_STEPS, T2_WARMUP = 1e-3, 0.01, 200, 20
T5_TEXTS = ("房间很干净，服务也很热情，下次还会再来。", "屏幕太暗了，电池也不耐用，很失望。",
            "这本书写得真好，故事很感人。")


def _call(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a crash in the reader's code is a verdict
        raise AssertionError(f"函数出错：{type(exc).__name__}: {exc}") from None


def _floats(value, n: int, what: str) -> list[float]:
    if value is None:
        raise AssertionError(f"函数返回了 None：还没有完成 TODO（应返回{what}）。")
    try:
        out = [float(v) for v in value]
    except TypeError:
        raise TypeError(f"应返回{what}，而不是 {type(value).__name__}") from None
    if len(out) != n:
        raise AssertionError(f"应返回 {n} 个数，你返回了 {len(out)} 个。")
    return out


# ---------------------------------------------------------------- task 1: the smoothed curve


def _ema(losses, beta, corrected=True):
    avg, out = 0.0, []
    for t, x in enumerate(losses):
        avg = beta * x + (1 - beta) * avg
        out.append(avg / (1 - (1 - beta) ** (t + 1)) if corrected else avg)
    return out


@exercise("lab17.t1", "写 smooth_losses(losses, beta)：区间测试用的指数滑动平均，带偏差修正。", level="easy")
def t1(answer) -> None:
    _callable(answer, "def smooth_losses(losses, beta=0.05): ...")
    g = torch.Generator().manual_seed(171)
    for beta in (0.05, 0.3):
        losses = (0.7 + 0.1 * torch.randn(30, generator=g, dtype=torch.float64)).tolist()
        got = _floats(_call(answer, list(losses), beta), len(losses), f" {len(losses)} 个平滑后的损失")
        close = lambda ref: all(abs(a - b) < 1e-6 for a, b in zip(got, ref))  # noqa: E731
        if close(_ema(losses, beta)):
            continue
        if close(_ema(losses, beta, corrected=False)):
            raise AssertionError("少了偏差修正：平均从 0 开始，前几步被拉向 0；要除以 1 − (1 − β)^(t+1)。")
        if close(_ema(losses, 1 - beta)) or close(_ema(losses, 1 - beta, corrected=False)):
            raise AssertionError("β 与 1 − β 用反了：新的损失的权重是 β（0.05），旧的平均的权重是 1 − β。")
        raise AssertionError(f"β={beta} 时结果不对：avg ← β·x_t + (1−β)·avg，输出 avg / (1 − (1−β)^(t+1))。")


# ---------------------------------------------------------------- task 2: how much weight decay shrinks


def t2_truth() -> float:
    """1 - prod_t (1 - lr_t * lambda) over the linear warm-up + linear decay schedule of task 2."""
    from ..optim import get_scheduler

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=T2_LR)
    sched = get_scheduler("linear", opt, T2_WARMUP, T2_STEPS)
    keep = 1.0
    for _ in range(T2_STEPS):
        keep *= 1 - opt.param_groups[0]["lr"] * T2_DECAY
        opt.step()
        sched.step()
    return 1 - keep


@exercise("lab17.t2", "AdamW（lr=1e-3，λ=0.01，200 步，前 20 步线性 warm-up、之后线性衰减到 0）："
          "权重衰减一共把一个权重缩小了几分之几（不计梯度）？", level="easy")
def t2(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个 0 到 1 之间的数（缩小的比例）。")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数（float），而不是 {type(answer).__name__}")
    a, truth = float(answer), t2_truth()
    if math.isclose(a, truth, rel_tol=1e-3):
        return
    if math.isclose(a, 1 - (1 - T2_LR * T2_DECAY) ** T2_STEPS, rel_tol=1e-3):
        raise AssertionError("你按恒定学习率算了；学习率先 warm-up 再衰减，每步的缩小是 lr_t·λ，要逐步相乘。")
    if math.isclose(a, 1 - truth, rel_tol=1e-3):
        raise AssertionError("这是保留下来的比例；题目问的是缩小了多少：1 − ∏(1 − lr_t·λ)。")
    if math.isclose(a, 1 - (1 - T2_DECAY) ** T2_STEPS, rel_tol=1e-3) or a > 0.5:
        raise AssertionError("AdamW 每步把权重乘以 1 − lr_t·λ，不是 1 − λ：衰减量要乘上当步的学习率。")
    if math.isclose(a, 100 * truth, rel_tol=1e-3):
        raise AssertionError("请给出比例本身（例如 0.002），不是百分数。")
    raise AssertionError(f"{a:.6f} 不对：用 ftbook.optim.get_scheduler('linear', ...) 逐步读出 lr_t，累乘 (1 − lr_t·λ)。")


# ---------------------------------------------------------------- task 3: reading the curve


def _t3_curves():
    g = torch.Generator().manual_seed(173)
    for n in (60, 90):
        lrs = torch.logspace(-7, 0, n, dtype=torch.float64)
        x = torch.log10(lrs)
        centre = -3.0 + torch.rand(1, generator=g, dtype=torch.float64).item()
        losses = 0.7 - 0.4 * torch.sigmoid(3 * (x - centre)) + 3 * torch.relu(x - centre - 1.2) ** 2
        losses = losses + 0.005 * torch.randn(n, generator=g, dtype=torch.float64)
        losses[n - 7] += 4.0  # a spike after the minimum: its way down is the steepest fall of the curve
        yield lrs.tolist(), losses.tolist()


@exercise("lab17.t3", "不调用 lr_finder.suggest_lr，写 my_suggest_lr(lrs, losses)：去掉首尾几个点，"
          "在损失最低点左侧找对 log10(lr) 下降最快的学习率。", level="medium")
def t3(answer) -> None:
    import numpy as np

    from ..lr_finder import suggest_lr

    _callable(answer, "def my_suggest_lr(lrs, losses, skip_start=5, skip_end=3): ...")
    for lrs, losses in _t3_curves():
        want = suggest_lr(lrs, losses)
        got = _call(answer, list(lrs), list(losses))
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个学习率）。")
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
            raise TypeError(f"应返回一个数（学习率），而不是 {type(got).__name__}")
        got = float(got)
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        y = np.asarray(losses[5:-3])
        if math.isclose(got, lrs[5 + int(np.argmin(y))], rel_tol=1e-6):
            raise AssertionError("这是损失最低点的学习率：它离发散太近。要找最低点左侧下降最快（斜率最负）的位置。")
        x = np.log10(lrs)[5:-3]
        if math.isclose(got, float(10 ** x[int(np.argmin(np.gradient(y, x)))]), rel_tol=1e-6):
            raise AssertionError("你在整条曲线上找了最陡处；只在最低点（含）左侧找，右侧的“陡”是上升。")
        slope_lr = np.gradient(y[: int(np.argmin(y)) + 1], np.asarray(lrs[5:-3])[: int(np.argmin(y)) + 1])
        if math.isclose(got, lrs[5 + int(np.argmin(slope_lr))], rel_tol=1e-6):
            raise AssertionError("斜率要对 log10(lr) 求（曲线画在对数坐标上），不是对 lr 本身。")
        raise AssertionError(f"建议值 {got:.3g} 不对，应为 {want:.3g}：去掉前 5 个和后 3 个点，"
                             "在最低点（含）左侧用 np.gradient(y, log10(lr)) 找最负的斜率。")


# ---------------------------------------------------------------- tasks 4-5: gradient x input, deletion


@functools.lru_cache(maxsize=1)
def classifier():
    """The book's fine-tuned Chinese review classifier (chapter 10, shipped) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..finetune import finetuned_checkpoint
    from ..resources import from_pretrained

    ckpt = str(finetuned_checkpoint("chinese"))
    model = from_pretrained(AutoModelForSequenceClassification, ckpt).eval()
    return model, from_pretrained(AutoTokenizer, ckpt)


@exercise("lab17.t4", "不调用 interpret.token_saliency，写 grad_x_input(model, tok, text, target)：每个 token 的"
          "∂z_target/∂e_i · e_i（一个列表）。", level="medium")
def t4(answer) -> None:
    from ..interpret import token_saliency

    _callable(answer, "def grad_x_input(model, tok, text, target): ...")
    model, tok = classifier()
    for text, target in zip(T5_TEXTS, (1, 0, 0)):
        want = token_saliency(model, tok, text, target=target)
        got = _floats(_call(answer, model, tok, text, target), len(want.scores), f"每个 token 一个分数（{len(want.scores)} 个）")
        ref = torch.tensor(want.scores, dtype=torch.float64)
        g = torch.tensor(got, dtype=torch.float64)
        if torch.allclose(g, ref, atol=1e-5, rtol=1e-3):
            continue
        if torch.allclose(g, -ref, atol=1e-5, rtol=1e-3):
            raise AssertionError("符号反了：解释的是类别 target 的 logit z_target，正分表示支持它。")
        if torch.allclose(g, ref.abs(), atol=1e-5, rtol=1e-3):
            raise AssertionError("不要取绝对值：梯度 × 输入的符号说明这个 token 是支持还是反对。")
        if (g >= 0).all() and not (ref >= 0).all():
            raise AssertionError("分数全为非负：你大概算的是梯度的范数；要算梯度与嵌入的点积（逐元素相乘再对隐藏维求和）。")
        raise AssertionError(f"“{text[:10]}…”上的分数与 interpret.token_saliency 不同：在 eval 模式下，"
                             "对词嵌入（model.get_input_embeddings()）的输出求 logits[0, target] 的梯度，再与嵌入逐元素相乘、对最后一维求和；"
                             "别忘了 attention_mask 和 token_type_ids。")


def _deletion_truth(model, tok, text: str, k: int) -> float:
    from ..interpret import token_saliency

    sal = token_saliency(model, tok, text)
    enc = tok(text, truncation=True, max_length=128, return_tensors="pt")
    ids = enc["input_ids"].clone()
    special = set(tok.all_special_ids)
    order = sorted((i for i, t in enumerate(ids[0].tolist()) if t not in special), key=lambda i: -sal.scores[i])
    ids[0, order[:k]] = tok.mask_token_id
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids, attention_mask=enc["attention_mask"],
                                token_type_ids=enc["token_type_ids"]).logits, -1)[0, sal.target].item()
    return sal.probability - p


@exercise("lab17.t5", "写 deletion_drop(model, tok, text, k)：把梯度 × 输入最高的 k 个（非特殊）token 换成 [MASK]，"
          "返回预测类别概率的下降。", level="hard")
def t5(answer) -> None:
    _callable(answer, "def deletion_drop(model, tok, text, k): ...")
    model, tok = classifier()
    for text, k in zip(T5_TEXTS, (2, 3, 1)):
        want = _deletion_truth(model, tok, text, k)
        got = _call(answer, model, tok, text, k)
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个数：概率的下降）。")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise TypeError(f"应返回一个数（float），而不是 {type(got).__name__}")
        if math.isclose(got, want, abs_tol=1e-4):
            continue
        from ..interpret import token_saliency

        p0 = token_saliency(model, tok, text).probability
        if math.isclose(got, p0 - want, abs_tol=1e-4):
            raise AssertionError("你返回的是删除之后的概率；要返回下降量：原概率 − 删除后的概率。")
        if math.isclose(got, -want, abs_tol=1e-4):
            raise AssertionError("符号反了：下降量 = 原概率 − 删除后的概率（下降为正）。")
        raise AssertionError(f"“{text[:10]}…”（k={k}）的下降量应为 {want:.4f}，你的是 {float(got):.4f}。检查："
                             "解释的是预测类别；只在非特殊 token（不含 [CLS]、[SEP]）中按分数从高到低取 k 个；"
                             "换成 tok.mask_token_id 而不是删掉；比较同一个类别的概率。")


def test_reviews(n: int = 30) -> list[str]:
    """The first ``n`` reviews of the Chinese test split with at least 8 characters, cut to 64
    characters (task 5's experiment)."""
    from ..resources import chinese_reviews

    return [t[:64] for t in chinese_reviews()["test"]["text"] if len(t.strip()) >= 8][:n]
