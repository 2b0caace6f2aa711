"""Checkpoints of lab 15 (``chapters/labs/lab15.ipynb``): LoRA by hand -- parameter counts, the merged
weight, a LoRA layer and ``apply_lora`` from scratch, why ``B`` starts at zero, and what the rank can
fit. Chapter 15 teaches it."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from . import exercise
from ._answers import callable_answer, number as _number, returned as _returned

T1_RANK, T1_ALPHA = 8, 16
T1_TARGETS = ["query", "key", "value", "attention.output.dense"]
T5_DIM, T5_SINGULAR, T5_RANKS = 32, (4.0, 3.0, 2.0, 1.0), (1, 2, 4, 8)


# ---------------------------------------------------------------- task 1: counting parameters


def t1_model(device: str = "meta"):
    """The book's Chinese BERT (tiny) with a fresh 2-class head, built on ``device`` (no weights)."""
    from transformers import BertConfig, BertForSequenceClassification

    from ..pretrain import pretrained_chinese_bert

    config = BertConfig.from_pretrained(pretrained_chinese_bert("tiny"), num_labels=2)
    with torch.device(device):
        return BertForSequenceClassification(config)


@exercise("lab15.t1", "在本书的中文 BERT 上对 query、key、value、attention.output.dense 加 r=8 的 LoRA，"
          "分类头整个训练：一共有多少个可训练参数？", level="easy")
def t1(answer) -> None:
    from ..lora import apply_lora, count_parameters

    got = _number(answer, "可训练参数的个数")
    model = t1_model()
    cfg = model.config
    h, n_layers, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    truth = count_parameters(apply_lora(model, T1_RANK, T1_ALPHA, T1_TARGETS, modules_to_save=["classifier"]))[0]
    head = h * 2 + 2
    if got == truth:
        return
    if got == truth - head:
        raise AssertionError(f"少了分类头：modules_to_save=['classifier'] 让它整个参与训练（{h}×2 + 2 = {head} 个参数）。")
    per_square = T1_RANK * (h + h)
    if got == truth + n_layers * 2 * T1_RANK * (h + inter) + per_square:
        raise AssertionError("你把所有名字里有 dense 的层都算上了（intermediate.dense、output.dense、pooler.dense）；"
                             "目标是 'attention.output.dense'，只匹配以它结尾的层。")
    if got == (truth - head) // 2 + head or got == (truth - head) // 2:
        raise AssertionError("每个目标层有 A 和 B 两个矩阵：A 是 (r, in)，B 是 (out, r)，共 r×(in+out) 个参数。")
    if got > 10 * truth:
        raise AssertionError(f"{got:,.0f} 太大了：冻结的 W 不可训练，只数 A、B 和分类头。")
    raise AssertionError(f"{got:,.0f} 不对：每层 4 个 {h}×{h} 的目标线性层，每个 r×(in+out) 个参数，"
                         f"共 {n_layers} 层，再加上分类头。")


# ---------------------------------------------------------------- task 2: the merged weight


@exercise("lab15.t2", "写 merge(W, A, B, alpha, r)：返回合并后的权重 W + (alpha/r)·B·A。", level="easy")
def t2(answer) -> None:
    from ..lora import LoRALinear

    callable_answer(answer, "def merge(W, A, B, alpha, r): ...", kind="函数或类")
    g = torch.Generator().manual_seed(152)
    for d_in, d_out, r, alpha in ((20, 12, 4, 8), (7, 9, 2, 16)):
        layer = LoRALinear(nn.Linear(d_in, d_out, dtype=torch.float64), r=r, alpha=alpha)
        with torch.no_grad():
            layer.base.weight.copy_(torch.randn(d_out, d_in, generator=g, dtype=torch.float64))
            layer.lora_A.copy_(torch.randn(r, d_in, generator=g, dtype=torch.float64))
            layer.lora_B.copy_(torch.randn(d_out, r, generator=g, dtype=torch.float64))
        W, A, B = (t.detach().clone() for t in (layer.base.weight, layer.lora_A, layer.lora_B))
        truth = layer.merged_weight().detach()
        try:
            got = answer(W.clone(), A.clone(), B.clone(), alpha, r)
        except RuntimeError as exc:
            raise AssertionError(f"形状对不上（{exc}）：A 是 (r, in)，B 是 (out, r)，B @ A 才是 (out, in)。") from None
        _returned(got, f"一个 ({d_out}, {d_in}) 的张量")
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (d_out, d_in):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise AssertionError(f"应返回形状 (out, in) = ({d_out}, {d_in}) 的张量，你返回的是 {shape}。")
        got = got.detach().double()
        delta = B @ A
        if torch.allclose(got, W + delta):
            raise AssertionError("少了缩放系数 alpha/r：ΔW = (alpha/r)·B·A。")
        if torch.allclose(got, W + alpha * delta):
            raise AssertionError("缩放系数是 alpha/r，不是 alpha。")
        if torch.allclose(got, W + r / alpha * delta):
            raise AssertionError("缩放系数写反了：是 alpha/r，不是 r/alpha。")
        if torch.allclose(got, delta * alpha / r):
            raise AssertionError("这只是增量 ΔW；合并后的权重还要加上冻结的 W。")
        if not torch.allclose(got, truth, atol=1e-8):
            raise AssertionError(f"(in, out, r, alpha) = ({d_in}, {d_out}, {r}, {alpha}) 时结果不对：应为 W + (alpha/r)·(B @ A)。")


# ---------------------------------------------------------------- task 3: a LoRA layer


def _t3_build(answer, base, r, alpha):
    try:
        layer = answer(base, r, alpha)
    except TypeError as exc:
        raise AssertionError(f"MyLoRALinear(base, r, alpha) 调用失败（{exc}）：构造函数的参数应为 (base, r, alpha)。") from None
    for name in ("lora_A", "lora_B"):
        if not isinstance(getattr(layer, name, None), nn.Parameter):
            raise AssertionError(f"找不到参数 {name}：用 nn.Parameter 定义 self.lora_A 和 self.lora_B。")
    return layer


@exercise("lab15.t3", "从零写 MyLoRALinear(base, r, alpha)：冻结 base，A 随机、B 为零，"
          "前向与梯度都与 ftbook.lora.LoRALinear 一致。", level="medium")
def t3(answer) -> None:
    from ..lora import LoRALinear

    callable_answer(answer, "class MyLoRALinear(nn.Module): ...", kind="函数或类")
    torch.manual_seed(153)
    g = torch.Generator().manual_seed(153)
    d_in, d_out, r, alpha = 20, 12, 4, 8
    base = nn.Linear(d_in, d_out)
    layer = _t3_build(answer, base, r, alpha)
    if isinstance(layer, LoRALinear):
        raise AssertionError("这是 ftbook.lora.LoRALinear 本身：请自己从 nn.Module 写起。")
    if tuple(layer.lora_A.shape) != (r, d_in) or tuple(layer.lora_B.shape) != (d_out, r):
        raise AssertionError(f"形状不对：lora_A 应为 (r, in) = {(r, d_in)}，lora_B 应为 (out, r) = {(d_out, r)}；"
                             f"你的是 {tuple(layer.lora_A.shape)} 和 {tuple(layer.lora_B.shape)}。")
    if any(p.requires_grad for p in base.parameters()):
        raise AssertionError("base 的权重和偏置没有冻结：对它们调用 requires_grad_(False)。")
    if not (layer.lora_A.requires_grad and layer.lora_B.requires_grad):
        raise AssertionError("lora_A 和 lora_B 必须可训练（requires_grad=True）。")
    if layer.lora_A.detach().abs().sum() == 0:
        raise AssertionError("lora_A 全为零：A 要随机初始化（nn.init.kaiming_uniform_(A, a=math.sqrt(5))），只有 B 为零。")
    x = torch.randn(5, 3, d_in, generator=g)
    with torch.no_grad():
        fresh = layer(x)
    if not torch.equal(fresh, base(x)):
        if layer.lora_B.detach().abs().sum() != 0:
            raise AssertionError("刚创建时输出与 base 不同：lora_B 应初始化为零，这样 ΔW = 0，起点就是预训练模型。")
        raise AssertionError("B = 0 时输出应与 base(x) 完全相同：检查前向是否写成 base(x) + scaling · (x Aᵀ) Bᵀ。")
    twin = LoRALinear(copy.deepcopy(base), r, alpha)
    with torch.no_grad():
        A, B = torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)
        for m in (layer, twin):
            m.lora_A.copy_(A)
            m.lora_B.copy_(B)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = layer(xa), twin(xb)
    if out.shape != ref.shape:
        raise AssertionError(f"输出形状 {tuple(out.shape)} 不对，应为 {tuple(ref.shape)}（输入 (..., in) → (..., out)）。")
    with torch.no_grad():
        base_out = twin.base(x)
        unscaled = base_out + (ref.detach() - base_out) / twin.scaling
    if torch.allclose(out.detach(), unscaled, atol=1e-5):
        raise AssertionError("少了缩放系数 alpha/r：LoRA 分支的输出要乘以 alpha/r。")
    if not torch.allclose(out, ref, atol=1e-5):
        raise AssertionError("A、B 非零时输出与 LoRALinear 不同：h = base(x) + (alpha/r) · (x Aᵀ) Bᵀ。")
    w = torch.randn(ref.shape, generator=g)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    for name, mine, theirs in (("lora_A", layer.lora_A.grad, twin.lora_A.grad),
                               ("lora_B", layer.lora_B.grad, twin.lora_B.grad), ("x", xa.grad, xb.grad)):
        if mine is None or not torch.allclose(mine, theirs, atol=1e-5):
            raise AssertionError(f"前向对了，对 {name} 的梯度却不同：不要 detach，也不要原地修改参与求导的张量。")


# ---------------------------------------------------------------- task 4: why B starts at zero


def t4_setup():
    """A frozen base layer, a batch ``x`` with targets ``y``, and three ways to initialise (A, B)."""
    g = torch.Generator().manual_seed(154)
    d_in, d_out, r = 16, 12, 4
    base = nn.Linear(d_in, d_out)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d_out, d_in, generator=g) / 4)
        base.bias.zero_()
    x = torch.randn(32, d_in, generator=g)
    y = torch.randn(32, d_out, generator=g)
    A = torch.randn(r, d_in, generator=g) / 4
    B = torch.randn(d_out, r, generator=g) / 4
    inits = {
        "A 随机, B=0": (A, torch.zeros(d_out, r)),
        "A=0, B=0": (torch.zeros(r, d_in), torch.zeros(d_out, r)),
        "A 随机, B 随机": (A, B),
    }
    return base, x, y, inits


T4_ALPHA = 8


def _t4_truth():
    from ..lora import LoRALinear

    base, x, y, inits = t4_setup()
    out = {}
    for name, (A, B) in inits.items():
        layer = LoRALinear(copy.deepcopy(base), r=A.shape[0], alpha=T4_ALPHA)
        with torch.no_grad():
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
        ((layer(x) - y) ** 2).mean().backward()
        out[name] = (layer.lora_A.grad.norm().item(), layer.lora_B.grad.norm().item())
    return out


@exercise("lab15.t4", "对 t4_setup() 的三种 (A, B) 初始化，算出 MSE 损失对 A 和 B 的梯度范数 {名字: (|∂L/∂A|, |∂L/∂B|)}。",
          level="medium")
def t4(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个字典 {初始化的名字: (A 的梯度范数, B 的梯度范数)}。")
    if not isinstance(answer, dict):
        raise TypeError(f"请给出一个字典，而不是 {type(answer).__name__}")
    truth = _t4_truth()
    if set(answer) != set(truth):
        raise AssertionError(f"字典的键应为 {sorted(truth)}，你的是 {sorted(map(str, answer))}。")
    for name, (ga, gb) in truth.items():
        try:
            a, b = (float(v) for v in answer[name])
        except (TypeError, ValueError):
            raise TypeError(f"answer[{name!r}] 应为两个数 (|∂L/∂A|, |∂L/∂B|)。") from None
        close = lambda u, v: math.isclose(u, v, rel_tol=1e-3, abs_tol=1e-7)  # noqa: E731
        if close(a, gb) and close(b, ga) and not close(a, ga):
            raise AssertionError(f"{name}：两个范数的顺序反了，先 A 后 B。")
        if ga > 0 and close(a, ga / (T4_ALPHA / 4)) or gb > 0 and close(b, gb / (T4_ALPHA / 4)):
            raise AssertionError(f"{name}：差了 alpha/r = {T4_ALPHA / 4:g} 倍：LoRA 分支的输出要乘 scaling，梯度也随之放大。")
        if not (close(a, ga) and close(b, gb)):
            raise AssertionError(f"{name}：应为 (|∂L/∂A|, |∂L/∂B|) ≈ ({ga:.4g}, {gb:.4g}) 附近的值，你的是 ({a:.4g}, {b:.4g})；"
                                 "用 LoRALinear(base, r=4, alpha=8)，损失 ((layer(x) - y)**2).mean()，梯度用 .norm()。")


# ---------------------------------------------------------------- task 5: what a rank can fit


def t5_teacher():
    """A frozen base ``nn.Linear(32, 32)`` and the update ``dW`` (rank 4, singular values 4, 3, 2, 1)
    that the LoRA has to learn: the target is ``y = base(x) + x @ dW.T``."""
    g = torch.Generator().manual_seed(155)
    d = T5_DIM
    base = nn.Linear(d, d)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d, d, generator=g) / math.sqrt(d))
        base.bias.zero_()
    for p in base.parameters():
        p.requires_grad_(False)
    U, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    k = len(T5_SINGULAR)
    dW = U[:, :k] @ torch.diag(torch.tensor(T5_SINGULAR)) @ V[:, :k].T  # (out, in), rank k
    return base, dW


def t5_bound(r: int) -> float:
    """Eckart-Young: the least E||(ΔW - dW) x||² / d_out over rank-r ΔW, for x ~ N(0, I)."""
    _, dW = t5_teacher()
    s = torch.linalg.svdvals(dW.double())
    return float((s[r:] ** 2).sum() / dW.shape[0])


@exercise("lab15.t5", "对 r = 1, 2, 4, 8 各训练 3 个种子的 LoRA 去拟合秩为 4 的 dW，给出每个 r 的平均最终 MSE {r: 均值}。",
          level="medium")
def t5(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个字典 {r: 3 个种子的平均最终 MSE}。")
    if not isinstance(answer, dict):
        raise TypeError(f"请给出一个字典 {{r: 平均 MSE}}，而不是 {type(answer).__name__}")
    if sorted(answer) != list(T5_RANKS):
        raise AssertionError(f"字典的键应为 r = {list(T5_RANKS)}，你的是 {sorted(answer)}。")
    for r in T5_RANKS:
        got = _number(answer[r], f"r={r} 的平均 MSE")
        bound = t5_bound(r)
        if got < 0.85 * bound - 1e-4:
            raise AssertionError(f"r={r} 的 MSE {got:.4f} 低于秩 {r} 能达到的下界 {bound:.4f}（Eckart–Young）：不可能。"
                                 "检查 base 是否冻结（只训练 A、B），以及是否在新抽的测试输入上评估。")
        if got > 1.15 * bound + 1e-3:
            hint = "还没收敛：增加步数或调大学习率（Adam，lr=1e-2，约 400 步）。" if bound > 1e-6 else \
                "r ≥ 4 时 LoRA 能精确表示 dW，MSE 应接近 0：检查训练是否收敛、目标是否是 base(x) + x @ dW.T。"
            raise AssertionError(f"r={r} 的 MSE {got:.4f} 明显高于最优值 {bound:.4f}：{hint}")


# ---------------------------------------------------------------- task 6: apply_lora from scratch


class _Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.query = nn.Linear(d, d)
        self.query_norm = nn.LayerNorm(d)  # a name that contains "query" but is not a target
        self.value = nn.Linear(d, d)
        self.value_gate = nn.Linear(d, d)  # contains "value": a substring match would wrap it
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        h = self.query_norm(self.query(x)) + self.value(x) * torch.sigmoid(self.value_gate(x))
        return x + self.mlp(h)


class T6Model(nn.Module):
    """A toy network whose module names test the target rule: blocks.*.query / value, a top-level
    ``value`` (full name equal to the target), decoys ``query_norm`` and ``value_gate``, a ``head``."""

    def __init__(self, d: int = 8, n_blocks: int = 2, n_out: int = 3):
        super().__init__()
        self.embed = nn.Linear(5, d)
        self.blocks = nn.ModuleList(_Block(d) for _ in range(n_blocks))
        self.value = nn.Linear(d, d)
        self.head = nn.Linear(d, n_out)

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(self.value(h))


def _t6_summary(model: nn.Module):
    from ..lora import LoRALinear

    wrapped = sorted(n for n, m in model.named_modules() if isinstance(m, LoRALinear))
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    return wrapped, trainable


@exercise("lab15.t6", "从零写 my_apply_lora(model, r, alpha, target_modules, modules_to_save)：按 peft 的命名规则"
          "把目标线性层换成 LoRALinear，冻结其余参数，modules_to_save 整个训练。", level="hard")
def t6(answer) -> None:
    from ..lora import apply_lora

    callable_answer(answer, "def my_apply_lora(model, r, alpha, target_modules, modules_to_save): ...", kind="函数或类")
    torch.manual_seed(156)
    model = T6Model()
    twin = apply_lora(copy.deepcopy(model), 2, 4, ["query", "value"], modules_to_save=["head"])
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(156))
    with torch.no_grad():
        plain = model(x)
    try:
        got = answer(model, 2, 4, ["query", "value"], ["head"])
    except Exception as exc:  # noqa: BLE001 - a crash in the reader's code is a verdict
        raise AssertionError(f"调用出错（{type(exc).__name__}: {exc}）。提示：只包装 nn.Linear，"
                             "名字等于目标或以 '.目标' 结尾才算匹配。") from None
    if got is None:
        raise AssertionError("返回了 None：最后 return model（peft 和 apply_lora 都返回修改后的模型）。")
    wrapped, trainable = _t6_summary(got)
    want_wrapped, want_trainable = _t6_summary(twin)
    extra, missing = sorted(set(wrapped) - set(want_wrapped)), sorted(set(want_wrapped) - set(wrapped))
    if any(n.endswith("value_gate") for n in extra):
        raise AssertionError(f"你包装了 {extra[0]}：它的名字只是“含有” value。规则是名字等于目标，或以 '.' + 目标结尾。")
    if "value" in missing:
        raise AssertionError("顶层的 value 层没有被包装：它的完整名字就是 'value'，名字与目标相等也算匹配。")
    if not wrapped and any(hasattr(m, "lora_A") for m in got.modules()):
        raise AssertionError("请用 ftbook.lora.LoRALinear 包装目标层（检查按这个类找到被包装的层）。")
    if extra or missing:
        raise AssertionError(f"包装的层不对：多了 {extra}，少了 {missing}。应为 {want_wrapped}。")
    lora_params = [n for n in want_trainable if n.endswith(("lora_A", "lora_B"))]
    if not any(n in trainable for n in lora_params):
        raise AssertionError("LoRA 的 A、B 不可训练：你大概是在换上 LoRALinear 之后才冻结全部参数。先冻结，再包装。")
    if any(n.startswith("head.") for n in want_trainable if n not in trainable):
        raise AssertionError("分类头 head 没有参与训练：modules_to_save 中模块的全部参数都要 requires_grad_(True)。")
    still = sorted(set(trainable) - set(want_trainable))
    if still:
        raise AssertionError(f"这些参数应当冻结却仍可训练：{still[:4]}：先对模型的全部参数 requires_grad_(False)。")
    if trainable != want_trainable:
        raise AssertionError(f"可训练的参数不对：应为 {want_trainable}，你的是 {trainable}。")
    with torch.no_grad():
        if not torch.allclose(got(x), plain, atol=1e-6):
            raise AssertionError("刚加上 LoRA 的模型输出变了：新的 LoRALinear 应包装原来的层（B=0 时输出不变）。")
