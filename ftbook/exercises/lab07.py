"""Checkpoints of lab 7 (``chapters/labs/lab07.ipynb``): padding masks, 1/sqrt(d_k), Post-LN vs Pre-LN,
gradient clipping and no weight decay on LayerNorm/bias. Chapter 7 teaches it."""

from __future__ import annotations

import dataclasses
import math
import statistics

import torch
import torch.nn.functional as F

from . import exercise
from ._answers import number as _number, callable_answer as _callable, returned as _returned

# task 1: one query, four keys, the last key is padding
T1_QUERY = [1.0, 2.0]
T1_KEYS = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]]
T1_MASK = [1, 1, 1, 0]

# task 2: the model whose AdamW groups are counted
T2_SIZES = {"vocab": 16, "seq_len": 12, "d_model": 32, "n_heads": 4, "n_layers": 4, "d_ff": 64}

# task 6: the stability experiment (tiny: a few seconds per run on one core)
STABILITY = {"cfg": {"vocab": 16, "seq_len": 8, "d_model": 32, "n_heads": 4, "n_layers": 6, "d_ff": 64},
             "lr": 3e-2, "steps": 100, "warmup": 0, "batch": 32}
SEEDS = (0, 1, 2)
LEARNED = 0.8  # accuracy at or above which a run counts as learned


def _floats(answer, n: int, what: str) -> list[float]:
    if answer is None:
        raise AssertionError(f"还没有作答：请给出{what}（{n} 个数的列表或张量）。")
    if isinstance(answer, torch.Tensor):
        answer = answer.detach().flatten().tolist()
    try:
        vals = [float(v) for v in answer]
    except (TypeError, ValueError):
        raise TypeError(f"请给出 {n} 个数（列表或张量），而不是 {type(answer).__name__}") from None
    if len(vals) != n:
        raise AssertionError(f"{what}应有 {n} 个数，你给了 {len(vals)} 个。")
    return vals


@exercise("lab07.t1", "一个 query、4 个 key（最后一个是填充）：手算带 key 填充掩码、除以 √d_k 的注意力权重（4 个数）。",
          level="easy")
def t1(answer) -> None:
    vals = _floats(answer, 4, "注意力权重")
    q, k = torch.tensor(T1_QUERY, dtype=torch.float64), torch.tensor(T1_KEYS, dtype=torch.float64)
    raw = k @ q  # (4,)
    keep = torch.tensor(T1_MASK, dtype=torch.bool)
    close = lambda ref: all(abs(v - r) < 1e-3 for v, r in zip(vals, ref.tolist()))  # noqa: E731
    masked = lambda s: torch.softmax(s.masked_fill(~keep, float("-inf")), 0)  # noqa: E731
    if close(masked(raw / math.sqrt(len(T1_QUERY)))):
        return
    if close(torch.softmax(raw / math.sqrt(len(T1_QUERY)), 0)) or close(torch.softmax(raw, 0)):
        raise AssertionError("填充的 key（第 4 个）也分到了权重：掩码要把它的分数变成 −∞（或 dtype 最小值），"
                             "它的权重应为 0。加在整行上的常数会被 softmax 抵消，等于没加。")
    if close(masked(raw)):
        raise AssertionError("忘了缩放：分数要先除以 √d_k（这里 d_k = 2）再做 softmax。")
    if close(masked(raw / len(T1_QUERY))):
        raise AssertionError("除的是 d_k，而不是 √d_k。")
    full = torch.softmax(raw / math.sqrt(len(T1_QUERY)), 0) * keep
    if close(full):
        raise AssertionError("你在 softmax 之后才把填充位置置 0，剩下的权重之和不再是 1：要在 softmax 之前屏蔽。")
    if abs(sum(vals) - 1) > 1e-3:
        raise AssertionError(f"注意力权重之和应为 1，你的和是 {sum(vals):.4f}。")
    raise AssertionError("先算分数 s_j = q·k_j / √2，把填充 key 的分数换成 −∞，再对 4 个分数做 softmax。")


def t2_model(norm: str = "pre"):
    """Task 2's model: :class:`ftbook.tricks.TinyEncoder` with :data:`T2_SIZES` (``norm`` "pre" or "post")."""
    from ..tricks import TinyEncoder, TrickConfig

    torch.manual_seed(0)
    return TinyEncoder(TrickConfig(**T2_SIZES, norm=norm))


@exercise("lab07.t2", "Pre-LN 的 TinyEncoder（4 层、d_model 32、d_ff 64、词表 16）里，有多少个参数（标量个数）不做权重衰减？",
          level="easy")
def t2(answer) -> None:
    a = _number(answer, "不衰减的参数个数")
    from ..norms import LayerNorm
    from ..optim import param_groups

    model = t2_model("pre")
    groups = param_groups(model, weight_decay=0.1)
    truth = sum(p.numel() for g in groups if g["weight_decay"] == 0 for p in g["params"])
    if a == truth:
        return
    d, total = T2_SIZES["d_model"], sum(p.numel() for p in model.parameters())
    ln = sum(p.numel() for m in model.modules() if isinstance(m, LayerNorm) for p in m.parameters())
    bias = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias")) - ln // 2
    post = t2_model("post")
    post_truth = sum(p.numel() for g in param_groups(post, weight_decay=0.1) if g["weight_decay"] == 0
                     for p in g["params"])
    if a == post_truth:
        raise AssertionError("这是 Post-LN 的个数：Pre-LN 在整个堆叠之后还有一个最终的 LayerNorm（γ 和 β 各 "
                             f"{d} 个）。")
    if a == truth - T2_SIZES["vocab"]:
        raise AssertionError("漏掉了输出头 head 的偏置（每个词一个）。")
    if a == ln:
        raise AssertionError("只数了 LayerNorm 的 γ、β：所有偏置（注意力的 4 个投影、FFN 的两层、输出头）也不衰减。")
    if a == bias:
        raise AssertionError("只数了偏置：LayerNorm 的 γ、β 也不衰减。")
    if a == total - truth:
        raise AssertionError("这是要衰减的参数个数（权重矩阵与嵌入）；题目问的是不衰减的。")
    raise AssertionError(f"{a:g} 不对：把所有 LayerNorm 的 γ、β（每层 2 个 LN，再加最终 LN）和所有偏置加起来；"
                         "可以用 ftbook.optim.param_groups 核对。")


def _t3_cases(g: torch.Generator):
    for dtype in (torch.float32, torch.float64):
        b, h, s, d = 3, 2, 6, 8
        q, k, v = (torch.randn(b, h, s, d, generator=g, dtype=dtype) for _ in range(3))
        am = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
        yield q, k, v, am


def _t3_twin(q, k, v, am, scale=None, rows=False):
    """The right attention (key mask), or with ``rows=True`` what a row mask gives: no masking at all."""
    mask = None if rows else am.bool()[:, None, None, :]  # (batch, 1, 1, seq): True = attend
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


@exercise("lab07.t3", "修好 masked_attention(q, k, v, attention_mask) 里的两处 bug：(batch, seq) 的 1/0 填充掩码加在 key 上、"
          "分数除以 √head_dim；值与梯度都与 F.scaled_dot_product_attention 一致。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def masked_attention(q, k, v, attention_mask): ...")
    g = torch.Generator().manual_seed(73)
    for q, k, v, am in _t3_cases(g):
        qa, ka, va = (t.clone().requires_grad_() for t in (q, k, v))
        got = answer(qa, ka, va, am.clone())
        _returned(got, "形状 (batch, heads, seq, head_dim) 的张量")
        if not isinstance(got, torch.Tensor) or got.shape != q.shape:
            raise AssertionError(f"应返回形状 {tuple(q.shape)} 的张量，得到 "
                                 f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}。")
        if not torch.isfinite(got).all():
            raise AssertionError("输出里有 NaN/inf：用 torch.finfo(dtype).min 作为屏蔽值，而不是 -inf 再乘以 0。")
        want = _t3_twin(q, k, v, am)
        if torch.allclose(got, want, atol=1e-5):
            qb, kb, vb = (t.clone().requires_grad_() for t in (q, k, v))
            w = torch.randn(q.shape, generator=g, dtype=q.dtype)
            ga = torch.autograd.grad((got * w).sum(), (qa, ka, va), allow_unused=True)
            gb = torch.autograd.grad((_t3_twin(qb, kb, vb, am) * w).sum(), (qb, kb, vb))
            if any(a is None for a in ga):
                raise AssertionError("输出与 q、k、v 断开了：不要 detach，也不要用 .item()/numpy。")
            for name, a, b in zip("qkv", ga, gb):
                if not torch.allclose(a, b, atol=1e-5):
                    raise AssertionError(f"值对了，对 {name} 的梯度却不同：不要原地修改输入。")
            continue
        d = q.size(-1)
        real = am.bool()[:, None, :, None].expand_as(got)  # real query rows: a row mask adds 0 there
        if any(torch.allclose(got[real], _t3_twin(q, k, v, am, rows=True, scale=sc)[real], atol=1e-5)
               for sc in (None, 1 / d, 1.0)):
            raise AssertionError("掩码加在了整行（query 维）上：形状应是 (batch, 1, 1, seq)，沿 key 维屏蔽；"
                                 "加在整行上的常数被 softmax 抵消，等于没加。")
        if torch.allclose(got, _t3_twin(q, k, v, am, scale=1 / d), atol=1e-5):
            raise AssertionError(f"掩码对了，但分数除以的是 head_dim = {d}，应除以 √head_dim。")
        if torch.allclose(got, _t3_twin(q, k, v, am, scale=1.0), atol=1e-5):
            raise AssertionError("掩码对了，但分数没有除以 √head_dim。")
        diff = (got - want).abs().max().item()
        raise AssertionError(f"{q.dtype} 下与 F.scaled_dot_product_attention 的最大差 {diff:.2e}：检查掩码的形状、"
                             "屏蔽值（被屏蔽的 key 加上 dtype 最小值）和缩放。")


def t4_layer(seed: int = 0):
    """A Post-LN :class:`ftbook.transformer.EncoderLayer` (hidden 16, 4 heads) whose two LayerNorms have
    different random gammas and betas, so that every mix-up of norm1 / norm2 shows."""
    from ..transformer import EncoderConfig, EncoderLayer

    cfg = EncoderConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
                        max_position_embeddings=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    layer = EncoderLayer(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for norm in (layer.norm1, layer.norm2):
            norm.weight.copy_(1 + 0.5 * torch.randn(16, generator=g))
            norm.bias.copy_(0.5 * torch.randn(16, generator=g))
    return layer.eval(), cfg


def _t4_variants(layer, x):
    """Typical wrong Pre-LN blocks, with the message each earns."""
    a, f, n1, n2 = layer.attn, layer.ffn, layer.norm1, layer.norm2
    h = n1(x + a(x))
    yield n2(h + f(h)), "这是 Post-LN 的输出：Pre-LN 把 LN 放在子层的输入上，x = x + Attn(LN(x))，残差相加之后不再归一化。"
    h = n1(x) + a(n1(x))
    yield n2(h) + f(n2(h)), "残差通路也被归一化了：应是 x + Attn(LN(x))，相加的是原始的 x，而不是 LN(x)。"
    h = x + a(n2(x))
    yield h + f(n1(h)), "norm1 和 norm2 用反了：注意力前用 norm1，FFN 前用 norm2。"
    h = x + a(n1(x))
    yield f(n2(h)), "FFN 子层没有加残差：第二步也应是 h + FFN(LN(h))。"
    yield x + f(n2(a(n1(x)))), "只在最后加了一次残差：注意力与 FFN 各有自己的残差连接。"
    h = x + a(n1(x))
    yield h + f(n2(x)), "FFN 的输入应是注意力子层之后的 h，而不是原来的 x。"


@exercise("lab07.t4", "写 pre_ln_forward(layer, x)：用一个 EncoderLayer 的子模块（attn、ffn、norm1、norm2）算 Pre-LN 的一层，"
          "值与梯度都与 norm_first=True 的 EncoderLayer 一致。", level="medium")
def t4(answer) -> None:
    _callable(answer, "def pre_ln_forward(layer, x): ...")
    from ..transformer import EncoderLayer

    for seed in (0, 1):
        layer, cfg = t4_layer(seed)
        twin = EncoderLayer(dataclasses.replace(cfg, norm_first=True)).eval()
        twin.load_state_dict(layer.state_dict())
        x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(10 + seed))
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        got = answer(layer, xa)
        _returned(got, "形状 (batch, seq, hidden) 的张量")
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            raise AssertionError(f"应返回形状 {tuple(x.shape)} 的张量。")
        want = twin(xb)
        if not torch.allclose(got, want, atol=1e-5):
            with torch.no_grad():
                for wrong, message in _t4_variants(layer, x):
                    if torch.allclose(got, wrong, atol=1e-5):
                        raise AssertionError(message)
            raise AssertionError(f"与 EncoderLayer(norm_first=True) 的最大差 {(got - want).abs().max().item():.2e}："
                                 "Pre-LN 是 h = x + attn(norm1(x))，然后 h + ffn(norm2(h))。")
        if not got.requires_grad:
            raise AssertionError("输出不能求导：不要用 torch.no_grad()、.detach() 或 .item()。")
        w = torch.randn(x.shape, generator=torch.Generator().manual_seed(20 + seed))
        (got * w).sum().backward()
        (want * w).sum().backward()
        if not torch.allclose(xa.grad, xb.grad, atol=1e-5):
            raise AssertionError("值对了，对 x 的梯度却不同：不要原地修改 x。")
        for (name, p), q in zip(layer.named_parameters(), twin.parameters()):
            if p.grad is None or not torch.allclose(p.grad, q.grad, atol=1e-5):
                raise AssertionError(f"参数 {name} 的梯度与 EncoderLayer(norm_first=True) 不同：要用 layer 自己的子模块。")
        layer.zero_grad(set_to_none=True)



def _t5_cases(g: torch.Generator):
    shapes = [(4, 3), (3,), (2, 2, 2)]
    for scale, max_norm in ((5.0, 1.0), (0.1, 1.0), (1.0, 0.25)):
        yield [scale * torch.randn(s, generator=g, dtype=torch.float64) for s in shapes], max_norm


def _torch_clip(grads, max_norm):
    params = [torch.nn.Parameter(torch.zeros_like(t)) for t in grads]
    for p, t in zip(params, grads):
        p.grad = t.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], float(total)


@exercise("lab07.t5", "写 clip_by_global_norm(grads, max_norm)：返回 (裁剪后的梯度列表, 裁剪前的全局范数)，"
          "与 torch.nn.utils.clip_grad_norm_ 一致。", level="medium")
def t5(answer) -> None:
    _callable(answer, "def clip_by_global_norm(grads, max_norm): ...")
    g = torch.Generator().manual_seed(75)
    for grads, max_norm in _t5_cases(g):
        want, total = _torch_clip(grads, max_norm)
        out = answer([t.clone() for t in grads], max_norm)
        _returned(out, "(梯度列表, 全局范数)")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("应返回一对 (clipped_grads, total_norm)。")
        got, norm = out
        _returned(got, "裁剪后的梯度列表")
        if len(got) != len(grads):
            raise AssertionError(f"应返回 {len(grads)} 个梯度张量（每个参数一个），得到 {len(got)} 个。")
        norm = _number(norm, "全局范数")
        clipped_norm = math.sqrt(sum(float(t.pow(2).sum()) for t in want))
        if not math.isclose(norm, total, rel_tol=1e-4):
            if total > max_norm and math.isclose(norm, clipped_norm, rel_tol=1e-4):
                raise AssertionError("返回的是裁剪之后的范数；clip_grad_norm_ 返回的是裁剪之前的全局范数（用来监控尖峰）。")
            if math.isclose(norm, total ** 2, rel_tol=1e-4):
                raise AssertionError("全局范数是平方和的平方根，你忘了开方。")
            raise AssertionError(f"全局范数应为 {total:.4f}（所有梯度拼成一个向量后的 L2 范数），你给的是 {norm:.4f}。")
        if all(torch.allclose(torch.as_tensor(a, dtype=b.dtype), b, rtol=1e-5, atol=1e-9) for a, b in zip(got, want)):
            continue
        if total < max_norm:
            raise AssertionError(f"全局范数 {total:.3f} 小于 max_norm = {max_norm}，梯度应原样保留：系数要截断到 1，"
                                 "裁剪只会缩小，不会放大。")
        per_tensor = [t * min(1.0, max_norm / (float(t.norm()) + 1e-6)) for t in grads]
        if all(torch.allclose(torch.as_tensor(a, dtype=b.dtype), b, rtol=1e-4) for a, b in zip(got, per_tensor)):
            raise AssertionError("你对每个张量分别裁剪了；clip_grad_norm_ 用所有梯度的全局范数算出一个系数，"
                                 "所有张量乘以同一个系数，方向不变。")
        raise AssertionError(f"裁剪后的梯度不对：系数是 min(1, max_norm / (total_norm + 1e-6))，这里约为 "
                             f"{min(1.0, max_norm / (total + 1e-6)):.4f}，每个梯度都乘以它。")


def stability_run(norm: str, seed: int) -> dict:
    """One run of task 6's experiment: :func:`ftbook.tricks.train` with :data:`STABILITY` and ``norm``."""
    from ..tricks import TrickConfig, train

    kw = dict(STABILITY)
    return train(TrickConfig(**kw.pop("cfg"), norm=norm), seed=seed, **kw)


def _arm(answer: dict, norm: str) -> tuple[list[float], float, float]:
    arm = answer.get(norm)
    if not isinstance(arm, dict) or not {"accs", "mean", "std"} <= set(arm):
        raise AssertionError(f'answer["{norm}"] 应是一个字典 {{"accs": [...], "mean": ..., "std": ...}}。')
    accs = arm["accs"]
    if accs is None or (isinstance(accs, (list, tuple)) and (not accs or any(a is None for a in accs))):
        raise AssertionError(f"{norm} 组的准确率还没有填：对种子 {list(SEEDS)} 各训练一次。")
    accs = _floats(accs, len(SEEDS), f"{norm} 组每个种子的准确率")
    for key in ("mean", "std"):
        if arm[key] is None:
            raise AssertionError(f'{norm} 组的 "{key}" 还没有算。')
    return accs, _number(arm["mean"], f"{norm} 组的均值"), _number(arm["std"], f"{norm} 组的标准差")


@exercise("lab07.t6", "Post-LN 与 Pre-LN 在同一个大学习率、不预热的设置下各训练 3 个种子：给出每组的准确率、均值 ± 标准差，"
          "并判断哪一种更稳定。", level="hard")
def t6(answer) -> None:
    if answer is None:
        raise AssertionError('还没有作答：请给出 {"post": {...}, "pre": {...}, "more_stable": ...}。')
    if not isinstance(answer, dict):
        raise TypeError(f"请给出一个字典，而不是 {type(answer).__name__}")
    arms = {norm: _arm(answer, norm) for norm in ("post", "pre")}
    for norm, (accs, mean, std) in arms.items():
        if not math.isclose(mean, statistics.mean(accs), abs_tol=1e-4):
            raise AssertionError(f"{norm} 组的均值应是这 {len(accs)} 个准确率的平均 {statistics.mean(accs):.4f}，"
                                 f"你给的是 {mean:.4f}。")
        if not math.isclose(std, statistics.stdev(accs), abs_tol=1e-4):
            if math.isclose(std, statistics.pstdev(accs), abs_tol=1e-4):
                raise AssertionError(f"{norm} 组：你用的是总体标准差（除以 n）；只有 {len(accs)} 个种子时用样本标准差"
                                     "（除以 n − 1，statistics.stdev 或 torch.std 的默认）。")
            raise AssertionError(f"{norm} 组的标准差应为 {statistics.stdev(accs):.4f}（样本标准差），你给的是 {std:.4f}。")
    truth = stability_run("pre", SEEDS[0])["accuracy"]
    got = arms["pre"][0][0]
    if not math.isclose(got, truth, abs_tol=2e-3):
        if any(math.isclose(a, truth, abs_tol=2e-3) for a in arms["pre"][0][1:]):
            raise AssertionError(f'准确率的顺序要与种子 {list(SEEDS)} 一一对应。')
        if any(math.isclose(a, truth, abs_tol=2e-3) for a in arms["post"][0]):
            raise AssertionError('"post" 和 "pre" 两组放反了。')
        raise AssertionError(f"Pre-LN 种子 {SEEDS[0]} 重跑得到准确率 {truth:.4f}，你给的是 {got:.4f}：请用 lab07.STABILITY "
                             "的设置（学习率、步数、不预热）和 norm='pre' 调用 lab07.stability_run 或 ftbook.tricks.train。")
    choice = answer.get("more_stable")
    if choice is None:
        raise AssertionError('还没有回答 "more_stable"："post" 还是 "pre"？')
    if choice not in ("post", "pre"):
        raise AssertionError(f'"more_stable" 应是 "post" 或 "pre"，而不是 {choice!r}。')
    better = max(arms, key=lambda n: arms[n][1])
    if choice != better:
        raise AssertionError(f"看你自己的数：{better} 组的平均准确率更高（{arms[better][1]:.3f} 对 "
                             f"{arms[choice][1]:.3f}）——在这个学习率下它更能训练起来。")
