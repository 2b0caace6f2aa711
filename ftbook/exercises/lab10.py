"""Checkpoints of lab 10 (``chapters/labs/lab10.ipynb``): the parts of a fine-tuning loop - step
counts and warm-up, global-norm clipping, the weight-decay groups, sorted evaluation, exact gradient
accumulation and a whole loop that matches ``ftbook.training.train``. Chapter 10 teaches it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import exercise
from ._answers import callable_answer as _callable

T1 = {"n": 1717, "batch_size": 16, "grad_accum": 2, "epochs": 3, "warmup_ratio": 0.06}


def _int_pair(answer, what: str) -> tuple[int, int]:
    if answer is None or (isinstance(answer, (tuple, list)) and any(v is None for v in answer)):
        raise AssertionError(f"还没有作答：请给出一对整数 {what}。")
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise TypeError(f"请给出一对整数 {what}（tuple），而不是 {type(answer).__name__}")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in answer):
        raise TypeError(f"{what} 都应是整数（int）：步数没有小数。")
    return int(answer[0]), int(answer[1])


def _t1_config(**kw):
    from ..training import TrainConfig

    args = {k: T1[k] for k in ("batch_size", "grad_accum", "epochs", "warmup_ratio")} | kw
    return TrainConfig(progress=False, **args)


@exercise("lab10.t1", "1,717 条训练样本、batch_size=16、grad_accum=2、3 个 epoch、warmup_ratio=0.06："
          "优化器一共走几步、其中预热几步？", level="easy")
def t1(answer) -> None:
    from ..training import total_steps, warmup_steps

    total, warm = _int_pair(answer, "(total_steps, warmup_steps)")
    cfg = _t1_config()
    want_total = total_steps(T1["n"], cfg)
    want_warm = warmup_steps(want_total, cfg)
    if (total, warm) == (want_total, want_warm):
        return
    no_accum = total_steps(T1["n"], _t1_config(grad_accum=1))
    if total == no_accum:
        raise AssertionError("你按 batch_size=16 数了步数；一次优化器更新吃掉 batch_size × grad_accum = 32 个样本。")
    if total == T1["n"] // (T1["batch_size"] * T1["grad_accum"]) * T1["epochs"]:
        raise AssertionError("每个 epoch 最后那个不满的批次也算一步：步数要向上取整（math.ceil）。")
    if total == math.ceil(T1["n"] * T1["epochs"] / (T1["batch_size"] * T1["grad_accum"])):
        raise AssertionError("每个 epoch 单独向上取整（最后一个小批次不跨 epoch 拼接），再乘以 epoch 数。")
    if total != want_total:
        raise AssertionError(f"总步数 {total} 不对：每个 epoch ⌈n / (batch_size × grad_accum)⌉ 步，再乘以 epoch 数。")
    if warm == round(T1["warmup_ratio"] * want_total) or warm == math.ceil(T1["warmup_ratio"] * want_total):
        raise AssertionError("总步数对了；预热步数是 int(warmup_ratio × total)，向下取整（与 Trainer 相同），不是四舍五入。")
    if warm == int(T1["warmup_ratio"] * want_total / T1["epochs"]):
        raise AssertionError("warmup_ratio 是整个训练的比例，不是每个 epoch 的：乘以总步数。")
    raise AssertionError(f"总步数对了；预热步数 {warm} 不对：warmup_steps = int(warmup_ratio × total_steps)。")


def _grads(gen, shapes, scale):
    return [torch.randn(*s, generator=gen, dtype=torch.float64) * scale for s in shapes]


@exercise("lab10.t2", "写 clip_global_norm(grads, max_norm)：按全局范数裁剪一组梯度，返回 (裁剪后的梯度, 裁剪前的全局范数)，"
          "与 torch.nn.utils.clip_grad_norm_ 相同。", level="easy")
def t2(answer) -> None:
    _callable(answer, "def clip_global_norm(grads, max_norm): ...")
    gen = torch.Generator().manual_seed(102)
    shapes = [(4, 3), (3,), (2, 5)]
    for scale, max_norm in ((3.0, 1.0), (0.05, 1.0), (1.0, 2.5)):
        grads = _grads(gen, shapes, scale)
        params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        want_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        out = answer([g.clone() for g in grads], max_norm)
        if out is None or (isinstance(out, tuple) and any(v is None for v in out)):
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回 (clipped, total_norm)）。")
        try:
            clipped, norm = out
            clipped = [torch.as_tensor(c, dtype=torch.float64) for c in clipped]
            norm = float(norm)
        except (TypeError, ValueError):
            raise TypeError("clip_global_norm 应返回二元组 (裁剪后的梯度列表, 裁剪前的全局范数)。") from None
        if len(clipped) != len(grads) or any(c.shape != g.shape for c, g in zip(clipped, grads)):
            raise AssertionError("返回的梯度个数或形状与输入不同：每个张量都要保留原来的形状。")
        new_norm = torch.stack([c.norm() for c in clipped]).norm().item()
        if not math.isclose(norm, want_norm, rel_tol=1e-6):
            if math.isclose(norm, new_norm, rel_tol=1e-6):
                raise AssertionError("返回的是裁剪之后的范数；要返回裁剪之前的（训练循环把它记下来看有多少步被裁剪）。")
            if math.isclose(norm, sum(g.norm().item() for g in grads), rel_tol=1e-6):
                raise AssertionError("全局范数不是各张量范数之和，而是所有元素拼成一个向量后的 L2 范数：√(Σ‖g_i‖²)。")
            raise AssertionError(f"全局范数应为 {want_norm:.6f}，你的是 {norm:.6f}：把所有梯度拼成一个向量求 L2 范数。")
        if all(torch.allclose(c, p.grad, rtol=1e-5, atol=1e-9) for c, p in zip(clipped, params)):
            continue
        if want_norm < max_norm:
            raise AssertionError("范数小于 max_norm 时梯度应原样保留：裁剪只缩小，不放大（系数取 min(1, max_norm/norm)）。")
        if all(c.norm().item() <= max_norm * (1 + 1e-6) for c in clipped) and new_norm > max_norm * 1.01:
            raise AssertionError("你把每个张量分别裁剪到了 max_norm；要用同一个系数 max_norm / 全局范数 缩放全部梯度，方向才不变。")
        raise AssertionError(f"max_norm = {max_norm} 时裁剪后的梯度与 torch 不同：系数是 max_norm / (total_norm + 1e-6)。")


def _t3_models():
    from torch import nn
    from transformers import BertConfig, BertForSequenceClassification

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(6)
            self.proj = nn.Linear(6, 6, bias=False)
            self.mlp = nn.Linear(6, 6)
            self.gain = nn.Parameter(torch.ones(6))

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 6)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.final = nn.RMSNorm(6)
            self.head = nn.Linear(6, 3)
            self.emb.weight.requires_grad_(False)  # frozen: in no group at all

    torch.manual_seed(0)
    bert = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32, num_labels=2))
    return {"BERT": bert, "Toy（LayerNorm 叫 ln、RMSNorm 叫 final、冻结了词嵌入）": Toy()}


@exercise("lab10.t3", "写 no_decay_names(model)：按模块类型（不是按名字）找出不做权重衰减的参数名，"
          "与 ftbook.optim.param_groups 一致。", level="medium")
def t3(answer) -> None:
    from ..optim import param_groups

    _callable(answer, "def no_decay_names(model): ...")
    for label, model in _t3_models().items():
        names = {id(p): n for n, p in model.named_parameters()}
        groups = param_groups(model, weight_decay=0.1)
        want = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
        got = answer(model)
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回参数名的集合）。")
        if not isinstance(got, (set, frozenset, list, tuple)):
            raise TypeError(f"请返回参数名的集合（set），而不是 {type(got).__name__}")
        got = set(got)
        if got == want:
            continue
        missing, extra = sorted(want - got), sorted(got - want)
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        if extra and set(extra) <= frozen:
            raise AssertionError(f"{label}：{extra} 被冻结了（requires_grad=False），不进任何参数组；跳过它们。")
        if missing and all(".ln." in m or m.startswith("final.") for m in missing):
            raise AssertionError(f"{label}：漏了 {missing[:3]}……名字里没有 “LayerNorm” 也可能是归一化层："
                                 "要看模块的类型（isinstance(module, (nn.LayerNorm, nn.RMSNorm))），不要看名字。")
        if any(n.endswith("gain") for n in extra):
            raise AssertionError(f"{label}：{[n for n in extra if n.endswith('gain')]} 是普通模块上的参数，"
                                 "不是偏置、也不属于归一化层：它要衰减。")
        hint = (f"漏了 {missing[:4]}" if missing else "") + (f" 多了 {extra[:4]}" if extra else "")
        raise AssertionError(f"{label}：{hint.strip()}。规则：参数名（不含前缀）是 bias，或它直接属于一个归一化层。")


def _t4_setup():
    from transformers import BertConfig, BertForSequenceClassification

    from ..data import Encoded

    gen = torch.Generator().manual_seed(104)
    lengths = torch.randint(2, 17, (23,), generator=gen).tolist()
    ids = [[2] + torch.randint(5, 40, (n - 1,), generator=gen).tolist() for n in lengths]
    data = Encoded(ids, torch.randint(0, 3, (23,), generator=gen).tolist(), pad_token_id=0)
    torch.manual_seed(1)
    model = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=3,
                                                     hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3))
    return model, data


@exercise("lab10.t4", "修好 predict_sorted(model, data, batch_size)：按长度排序组批以减少填充，返回的 logits 仍按原顺序，"
          "与 ftbook.training.predict_logits 相同。", level="medium")
def t4(answer) -> None:
    from ..training import predict_logits

    _callable(answer, "def predict_sorted(model, data, batch_size=8): ...")
    model, data = _t4_setup()
    want = predict_logits(model, data, batch_size=5)
    model.train()
    got = answer(model, data, 5)
    if got is None:
        raise AssertionError("函数返回了 None：还没有完成 TODO（应返回 (n, num_labels) 的 logits 张量）。")
    if not isinstance(got, torch.Tensor):
        raise TypeError(f"请返回一个 torch.Tensor，而不是 {type(got).__name__}")
    if tuple(got.shape) != tuple(want.shape):
        raise AssertionError(f"logits 的形状应为 {tuple(want.shape)}（每个样本一行），你的是 {tuple(got.shape)}。")
    if got.requires_grad:
        raise AssertionError("返回的 logits 还带着计算图（requires_grad=True）：评估要放在 torch.no_grad() 里。")
    if not model.training:
        raise AssertionError("函数结束后模型停在了 eval 模式；调用前它在 train 模式，应恢复原来的模式（model.train(was_training)）。")
    if torch.allclose(got, want, atol=1e-5):
        return
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    if torch.allclose(got, want[torch.tensor(order)], atol=1e-5):
        raise AssertionError("logits 还是按长度排序后的顺序：要把第 k 行放回样本 order[k] 的位置（result[order] = logits）。")
    model.train()
    again = answer(model, data, 5)
    if not torch.allclose(got, again, atol=1e-6):
        raise AssertionError("两次调用结果不同：dropout 还开着，预测前要 model.eval()。")
    raise AssertionError(f"logits 与 predict_logits 最多差 {(got - want).abs().max().item():.3g}：检查填充与 attention_mask。")


def t5_problem():
    """Task 5's model (embedding + linear token classifier, float64) and 3 micro-batches with -100 labels."""
    gen = torch.Generator().manual_seed(105)
    torch.manual_seed(105)
    model = torch.nn.Sequential(torch.nn.Embedding(12, 5), torch.nn.Linear(5, 4)).double()
    micro = []
    for length, keep in ((7, 0.9), (3, 0.3), (5, 0.6)):  # very different numbers of real labels
        x = torch.randint(0, 12, (2, length), generator=gen)
        y = torch.randint(0, 4, (2, length), generator=gen)
        y[torch.rand(2, length, generator=gen) > keep] = -100
        y[0, 0] = 1  # at least one real label per micro-batch
        micro.append((x, y))
    return model, micro


def _t5_reference(model, micro, mode: str):
    model.zero_grad()
    losses = [F.cross_entropy(model(x).reshape(-1, 4), y.reshape(-1), ignore_index=-100,
                              reduction="sum" if mode != "means" else "mean") for x, y in micro]
    count = sum(int((y != -100).sum()) for _, y in micro)
    total = {"right": sum(losses) / count, "means": sum(losses) / len(micro), "sum": sum(losses),
             "means_no_k": sum(losses)}[mode]
    total.backward()
    return [p.grad.clone() for p in model.parameters()]


@exercise("lab10.t5", "写 accumulate_backward(model, micro_batches)：逐个小批次反向传播，使累积的梯度与整批"
          "（忽略 −100 的平均交叉熵）完全相同。", level="medium")
def t5(answer) -> None:
    _callable(answer, "def accumulate_backward(model, micro_batches): ...")
    model, micro = t5_problem()
    refs = {mode: _t5_reference(model, micro, mode) for mode in ("right", "means", "sum")}
    model.zero_grad(set_to_none=True)
    answer(model, [(x.clone(), y.clone()) for x, y in micro])
    grads = [p.grad for p in model.parameters()]
    if any(g is None for g in grads):
        raise AssertionError("模型的 .grad 还是 None：函数里要对每个小批次的损失调用 backward()。")
    close = lambda ref: all(torch.allclose(g, r, rtol=1e-6, atol=1e-10) for g, r in zip(grads, ref))  # noqa: E731
    if close(refs["right"]):
        return
    if close(refs["means"]):
        raise AssertionError("每个小批次先取平均再除以小批次个数：各小批次的有效标签数不同（有 −100），权重就不对了。"
                             "用 reduction='sum'，再除以整步所有小批次的有效标签总数。")
    if close([r * len(micro) for r in refs["means"]]):
        raise AssertionError("每个小批次的平均损失直接相加，梯度大了约 k 倍，而且各小批次的权重不对：应除以整步的有效标签总数。")
    if close(refs["sum"]):
        raise AssertionError("只求了和，没有归一化：再除以整步所有小批次里不是 −100 的标签总数。")
    count_all = sum(y.numel() for _, y in micro)
    if close([r * sum(int((y != -100).sum()) for _, y in micro) / count_all for r in refs["right"]]):
        raise AssertionError("分母把 −100 的位置也算进去了：只数 labels != −100 的标签。")
    raise AssertionError("累积的梯度与整批的梯度不同：Σ_小批次 CE_sum / N_有效（N_有效 是整步的有效标签总数）。")


def _t6_setup(seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    from ..data import Encoded

    gen = torch.Generator().manual_seed(106)
    lengths = torch.randint(3, 13, (37,), generator=gen).tolist()
    ids = [[2] + torch.randint(5, 50, (n - 1,), generator=gen).tolist() for n in lengths]
    labels = [int(sum(x) % 2) for x in ids]  # something learnable
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=2,
                                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    return model, Encoded(ids, labels, pad_token_id=0)


def t6_config(**kw):
    """Task 6's settings: 2 epochs of 37 examples in steps of 8 x 2 (3 steps an epoch), clipping that bites."""
    from ..training import TrainConfig

    args = dict(lr=3e-3, epochs=2, batch_size=8, grad_accum=2, warmup_ratio=0.34, weight_decay=0.1,
                max_grad_norm=0.1, patience=None, progress=False, seed=3) | kw
    return TrainConfig(**args)


@exercise("lab10.t6", "写 my_train(model, data, config)：参数分组 + AdamW + 预热调度 + 精确梯度累积 + 裁剪，"
          "训练后的权重与 ftbook.training.train 相同。", level="hard")
def t6(answer) -> None:
    from ..training import train

    _callable(answer, "def my_train(model, data, config): ...")
    ref, data = _t6_setup()
    train(ref, data, None, t6_config())
    mine, _ = _t6_setup()
    out = answer(mine, data, t6_config())
    if out is None:
        raise AssertionError("函数返回了 None：还没有完成 TODO（应返回每一步的训练损失列表）。")
    if not isinstance(out, (list, tuple)) or len(out) != 6:
        raise AssertionError(f"应返回每一步的损失（2 个 epoch × 3 步 = 6 个数），你返回了 "
                             f"{len(out) if isinstance(out, (list, tuple)) else type(out).__name__}。")
    want, got = ref.state_dict(), mine.state_dict()
    start, _ = _t6_setup()
    if all(torch.equal(v, got[k]) for k, v in start.state_dict().items()):
        raise AssertionError("权重一点没变：还没有建优化器、反向传播或调用 optimizer.step()。")
    diff = {k: (got[k] - want[k]).abs().max().item() for k in want}
    if max(diff.values()) < 1e-5:
        return
    variants = {
        "所有参数都做了权重衰减：偏置和 LayerNorm 不衰减（optim.param_groups）": dict(decay_norm_and_bias=True),
        "没有裁剪梯度（clip_grad_norm_ 用 config.max_grad_norm）": dict(max_grad_norm=None),
        "学习率没有预热：调度器用 optim.get_scheduler(config.schedule, opt, training.warmup_steps(total, config), total)":
            dict(warmup_ratio=0.0),
        "批次顺序不对：第 e 个 epoch 用 training.epoch_batches(data.lengths, e, config)": dict(seed=0),
    }
    for hint, kw in variants.items():
        other, _ = _t6_setup()
        train(other, data, None, t6_config(**kw))
        if all((got[k] - v).abs().max().item() < 1e-5 for k, v in other.state_dict().items()):
            raise AssertionError(hint + "。")
    worst = max(diff, key=diff.get)
    raise AssertionError(f"训练后的权重与 training.train 不同（{worst} 最多差 {diff[worst]:.3g}）。"
                         "逐项核对：每步 batch_size × grad_accum 个样本、损失 = Σ CE_sum / 整步标签数、"
                         "先裁剪再 optimizer.step()，再 scheduler.step()、zero_grad()。")
