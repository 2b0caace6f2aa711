"""ftbook.optim against torch.optim and transformers' schedules."""

import copy
import math

import pytest
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification

from ftbook import optim as O


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=3,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        ids = torch.randint(1, 60, (4, 8), generator=g)
        yield ids, torch.randint(0, 3, (4,), generator=g)


def run(model, opt, steps=100, sched=None):
    losses = []
    for ids, y in batches(steps):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=y).loss
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return losses


# 100 steps for one setting of each optimiser, 15 steps for the other options (the test is slow
# on a busy 2-core machine; every option changes the trajectory from the first steps on).
CASES = [
    (O.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01), 100),
    (O.SGD, torch.optim.SGD, dict(lr=0.1), 15),
    (O.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True), 15),
    (O.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=False), 15),
    (O.Adam, torch.optim.Adam, dict(lr=1e-3, weight_decay=0.1), 100),
    (O.Adam, torch.optim.Adam, dict(lr=1e-3, betas=(0.8, 0.99), amsgrad=True), 15),
    (O.AdamW, torch.optim.AdamW, dict(lr=1e-3), 100),
    (O.AdamW, torch.optim.AdamW, dict(lr=2e-3, weight_decay=0.3, eps=1e-6, amsgrad=True), 15),
]


@pytest.mark.parametrize("ours_cls,twin_cls,kwargs,steps", CASES)
def test_trajectory_equals_torch_on_bert(ours_cls, twin_cls, kwargs, steps):
    a = tiny_bert()
    b = copy.deepcopy(a)
    la = run(a, ours_cls(a.parameters(), **kwargs), steps)
    lb = run(b, twin_cls(b.parameters(), **kwargs), steps)
    assert la == pytest.approx(lb, rel=1e-6, abs=1e-7)
    assert la[-1] != la[0]  # something was learnt (the test can fail)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=na)


def test_param_groups_and_scheduler_work_like_torch():
    a = tiny_bert()
    b = copy.deepcopy(a)

    def groups(m):
        decay = [p for n, p in m.named_parameters() if "bias" not in n and "LayerNorm" not in n]
        rest = [p for n, p in m.named_parameters() if "bias" in n or "LayerNorm" in n]
        return [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]

    oa, ob = O.AdamW(groups(a), lr=3e-3), torch.optim.AdamW(groups(b), lr=3e-3)
    sa = O.get_linear_schedule_with_warmup(oa, 5, 20)
    sb = transformers.get_linear_schedule_with_warmup(ob, 5, 20)
    la, lb = run(a, oa, 20, sa), run(b, ob, 20, sb)
    assert la == pytest.approx(lb, rel=1e-6, abs=1e-7)


def test_momentum_differs_from_plain_sgd():
    a, b = tiny_bert(), tiny_bert()
    la = run(a, O.SGD(a.parameters(), lr=0.05), 5)
    lb = run(b, O.SGD(b.parameters(), lr=0.05, momentum=0.9), 5)
    assert la != pytest.approx(lb)


def test_adamw_decay_is_decoupled():
    # zero gradient: Adam's L2 term still moves through m/v; AdamW just shrinks by (1 - lr*wd)
    p = torch.nn.Parameter(torch.tensor([2.0]))
    opt = O.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(1)
    opt.step()
    assert p.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5))
    q = torch.nn.Parameter(torch.tensor([2.0]))
    opt = O.Adam([q], lr=0.1, weight_decay=0.5)
    q.grad = torch.zeros(1)
    opt.step()
    assert q.item() == pytest.approx(2.0 - 0.1, rel=1e-5)  # first Adam step has size ~lr


def test_closure_and_maximize():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = O.SGD([p], lr=0.1, maximize=True)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(1.0)
    assert p.item() == pytest.approx(1.2)  # gradient ascent


@pytest.mark.parametrize("cls,kwargs,match", [
    (O.SGD, dict(lr=-1.0), "invalid lr"),
    (O.SGD, dict(lr="0.1"), "lr must be a number"),
    (O.SGD, dict(lr=0.1, nesterov=True), "nesterov"),
    (O.SGD, dict(lr=0.1, momentum=-0.5), "invalid momentum"),
    (O.Adam, dict(betas=(0.9, 1.0)), "beta parameter at index 1"),
    (O.Adam, dict(betas=0.9), "betas must be a pair"),
    (O.Adam, dict(eps=-1e-8), "invalid eps"),
    (O.AdamW, dict(weight_decay=-0.1), "invalid weight_decay"),
])
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_empty_params_rejected():
    with pytest.raises(ValueError):
        O.Adam([])


def test_sparse_grad_rejected():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        O.Adam(emb.parameters()).step()


@pytest.mark.parametrize("warmup,total", [(0, 10), (3, 10), (10, 10), (7, 100), (1, 1)])
def test_schedules_equal_transformers_at_every_step(warmup, total):
    for ours, theirs, extra in [
        (O.get_linear_schedule_with_warmup, transformers.get_linear_schedule_with_warmup, {}),
        (O.get_cosine_schedule_with_warmup, transformers.get_cosine_schedule_with_warmup, {}),
        (O.get_cosine_schedule_with_warmup, transformers.get_cosine_schedule_with_warmup, {"num_cycles": 1.5}),
    ]:
        pa, pb = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        oa, ob = torch.optim.SGD([pa], lr=0.5), torch.optim.SGD([pb], lr=0.5)
        sa, sb = ours(oa, warmup, total, **extra), theirs(ob, warmup, total, **extra)
        for _ in range(total + 5):  # also beyond the end: stays at 0, never negative
            assert sa.get_last_lr() == pytest.approx(sb.get_last_lr(), abs=1e-12)
            oa.step(), ob.step(), sa.step(), sb.step()


def test_schedule_shape():
    f = O.linear_schedule_with_warmup
    assert [f(s, num_warmup_steps=2, num_training_steps=6) for s in range(7)] == [0, 0.5, 1, 0.75, 0.5, 0.25, 0]
    c = O.cosine_schedule_with_warmup
    assert c(2, num_warmup_steps=2, num_training_steps=6) == 1.0
    assert c(4, num_warmup_steps=2, num_training_steps=6) == pytest.approx(0.5)
    assert c(6, num_warmup_steps=2, num_training_steps=6) == pytest.approx(0.0, abs=1e-12)
    assert O.SCHEDULES["cosine"] is c


@pytest.mark.parametrize("warmup,total,match", [
    (-1, 10, "num_warmup_steps must be >= 0"),
    (11, 10, "must not exceed"),
    (0, 0, "num_training_steps must be > 0"),
    (1.5, 10, "must be an int"),
])
def test_schedule_bad_arguments(warmup, total, match):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises((ValueError, TypeError), match=match):
        O.get_linear_schedule_with_warmup(opt, warmup, total)
    with pytest.raises((ValueError, TypeError), match=match):
        O.get_cosine_schedule_with_warmup(opt, warmup, total)


def test_sizes_registered():
    from ftbook.config import get_profile

    s = get_profile("tiny").sizes("optim")
    assert s.steps > 0 and math.isfinite(s.batch_size)
