"""Checkers of lab 10: the right answer passes, None fails, typical mistakes fail with their message."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ftbook import optim, training
from ftbook.exercises import check, get, lab10


def test_registered_with_levels():
    levels = [get(f"lab10.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab10.t{k}").prompt for k in range(1, 7))


def test_t1_steps():
    per_epoch = math.ceil(1717 / 32)
    total = per_epoch * 3
    assert check("lab10.t1", (total, int(0.06 * total)), quiet=True)
    assert not check("lab10.t1", None, quiet=True)
    assert not check("lab10.t1", (None, None), quiet=True)
    assert not check("lab10.t1", (162.0, 9.0), quiet=True)
    with pytest.raises(AssertionError, match="grad_accum"):
        lab10.t1((math.ceil(1717 / 16) * 3, 19))
    with pytest.raises(AssertionError, match="向上取整"):
        lab10.t1((1717 // 32 * 3, 9))
    with pytest.raises(AssertionError, match="四舍五入"):
        lab10.t1((total, round(0.06 * total)))
    with pytest.raises(AssertionError, match="每个 epoch 的"):
        lab10.t1((total, int(0.06 * per_epoch)))


def clip(grads, max_norm, per_tensor=False, upscale=False, report_after=False, sum_norms=False):
    norm = sum(g.norm() for g in grads) if sum_norms else torch.stack([g.norm() for g in grads]).norm()
    if per_tensor:
        out = [g * min(1.0, max_norm / (g.norm().item() + 1e-6)) for g in grads]
    else:
        coef = max_norm / (norm + 1e-6)
        out = [g * (coef if upscale else coef.clamp(max=1.0)) for g in grads]
    return out, (torch.stack([g.norm() for g in out]).norm() if report_after else norm)


def test_t2_clip():
    assert check("lab10.t2", clip, quiet=True)
    assert not check("lab10.t2", None, quiet=True)
    assert not check("lab10.t2", lambda g, m: None, quiet=True)
    assert not check("lab10.t2", lambda g, m: (None, None), quiet=True)
    assert not check("lab10.t2", lambda g, m: 3.0, quiet=True)
    with pytest.raises(AssertionError, match="分别裁剪"):
        lab10.t2(functools.partial(clip, per_tensor=True))
    with pytest.raises(AssertionError, match="不放大"):
        lab10.t2(functools.partial(clip, upscale=True))
    with pytest.raises(AssertionError, match="裁剪之后"):
        lab10.t2(functools.partial(clip, report_after=True))
    with pytest.raises(AssertionError, match="之和"):
        lab10.t2(functools.partial(clip, sum_norms=True))


def no_decay(model, by_name=False, keep_frozen=False, all_direct=False):
    out = set()
    for prefix, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            full = f"{prefix}.{name}" if prefix else name
            if not p.requires_grad and not keep_frozen:
                continue
            if by_name:
                hit = name == "bias" or "LayerNorm" in full
            else:
                hit = name == "bias" or isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or \
                    (all_direct and name == "gain")
            if hit:
                out.add(full)
    return out


def test_t3_no_decay():
    assert check("lab10.t3", no_decay, quiet=True)
    assert not check("lab10.t3", None, quiet=True)
    assert not check("lab10.t3", lambda m: None, quiet=True)
    assert not check("lab10.t3", lambda m: "bias", quiet=True)
    with pytest.raises(AssertionError, match="模块的类型"):
        lab10.t3(functools.partial(no_decay, by_name=True))
    with pytest.raises(AssertionError, match="冻结"):
        lab10.t3(lambda m: no_decay(m) | {"emb.weight"} if hasattr(m, "emb") else no_decay(m))
    with pytest.raises(AssertionError, match="要衰减"):
        lab10.t3(functools.partial(no_decay, all_direct=True))


def predict(model, data, batch_size=8, eval_mode=True, no_grad=True, unsort=True, restore=True):
    was = model.training
    if eval_mode:
        model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    out = []
    with torch.set_grad_enabled(not no_grad):
        for s in range(0, len(order), batch_size):
            batch = data.batch(order[s: s + batch_size])
            batch.pop("labels")
            out.append(model(**batch).logits)
    if restore:
        model.train(was)
    logits = torch.cat(out)
    if not unsort:
        return logits
    result = torch.empty_like(logits)
    result[torch.tensor(order)] = logits
    return result


def test_t4_sorted_prediction():
    assert check("lab10.t4", predict, quiet=True)
    assert check("lab10.t4", lambda m, d, b: training.predict_logits(m, d, b), quiet=True)
    assert not check("lab10.t4", None, quiet=True)
    assert not check("lab10.t4", lambda m, d, b: None, quiet=True)
    assert not check("lab10.t4", lambda m, d, b: [0.0], quiet=True)
    with pytest.raises(AssertionError, match="原顺序|放回"):
        lab10.t4(functools.partial(predict, unsort=False))
    with pytest.raises(AssertionError, match="no_grad"):
        lab10.t4(functools.partial(predict, no_grad=False))
    with pytest.raises(AssertionError, match="恢复"):
        lab10.t4(functools.partial(predict, restore=False))
    with pytest.raises(AssertionError, match="dropout"):
        lab10.t4(functools.partial(predict, eval_mode=False))


def accumulate(model, micro_batches, mode="right"):
    count = sum(int((y != -100).sum()) for _, y in micro_batches)
    total = 0.0
    for x, y in micro_batches:
        logits = model(x).reshape(-1, 4)
        if mode == "means":
            loss = F.cross_entropy(logits, y.reshape(-1), ignore_index=-100) / len(micro_batches)
        elif mode == "denominator":
            loss = F.cross_entropy(logits, y.reshape(-1), ignore_index=-100, reduction="sum") / \
                sum(y.numel() for _, y in micro_batches)
        else:
            loss = F.cross_entropy(logits, y.reshape(-1), ignore_index=-100, reduction="sum")
            loss = loss / count if mode == "right" else loss
        loss.backward()
        total += loss.item()
    return total


def test_t5_accumulation():
    assert check("lab10.t5", accumulate, quiet=True)
    assert not check("lab10.t5", None, quiet=True)
    assert not check("lab10.t5", lambda m, b: None, quiet=True)
    with pytest.raises(AssertionError, match="先取平均"):
        lab10.t5(functools.partial(accumulate, mode="means"))
    with pytest.raises(AssertionError, match="没有归一化"):
        lab10.t5(functools.partial(accumulate, mode="sum"))
    with pytest.raises(AssertionError, match="−100 的位置"):
        lab10.t5(functools.partial(accumulate, mode="denominator"))


def my_train(model, data, config, decay_all=False, clip=True, warm=True):
    groups = optim.param_groups(model, config.weight_decay, decay_norm_and_bias=decay_all)
    opt = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    per_epoch = training.steps_per_epoch(len(data), config)
    total = training.total_steps(len(data), config)
    warmup = training.warmup_steps(total, config) if warm else 0
    sched = optim.get_scheduler(config.schedule, opt, warmup, total)
    model.train()
    losses = []
    for step in range(total):
        epoch, k = divmod(step, per_epoch)
        chunk = training.epoch_batches(data.lengths, epoch, config)[k]
        micro = [data.batch(chunk[i: i + config.batch_size]) for i in range(0, len(chunk), config.batch_size)]
        count = sum(int((b["labels"] != -100).sum()) for b in micro)
        step_loss = 0.0
        for b in micro:
            loss = training.cross_entropy_loss(model, b) / count
            loss.backward()
            step_loss += loss.item()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(step_loss)
    return losses


def test_t6_loop():
    assert check("lab10.t6", my_train, quiet=True)
    assert not check("lab10.t6", None, quiet=True)
    assert not check("lab10.t6", lambda m, d, c: None, quiet=True)
    assert not check("lab10.t6", lambda m, d, c: [0.0] * 6, quiet=True)
    with pytest.raises(AssertionError, match="一点没变"):
        lab10.t6(lambda m, d, c: [None] * 6)
    with pytest.raises(AssertionError, match="权重衰减"):
        lab10.t6(functools.partial(my_train, decay_all=True))
    with pytest.raises(AssertionError, match="裁剪"):
        lab10.t6(functools.partial(my_train, clip=False))
    with pytest.raises(AssertionError, match="预热"):
        lab10.t6(functools.partial(my_train, warm=False))
