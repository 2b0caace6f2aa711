"""ftbook.optim against torch.optim and transformers' schedules."""

import copy
import io

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


def run(model, opt, steps=100, sched=None, data=None):
    losses = []
    for ids, y in (batches(steps) if data is None else data):
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


@pytest.mark.parametrize("ours_cls,twin_cls", [(O.Adam, torch.optim.Adam), (O.AdamW, torch.optim.AdamW)])
def test_weight_decay_with_zero_gradient_like_torch(ours_cls, twin_cls):
    # zero gradient: Adam's L2 term still moves through m/v; AdamW just shrinks by (1 - lr*wd)
    got, want = [], []
    for cls, out in ((ours_cls, got), (twin_cls, want)):
        p = torch.nn.Parameter(torch.tensor([2.0, -3.0], dtype=torch.float64))
        opt = cls([p], lr=0.1, weight_decay=0.5)
        for _ in range(3):
            p.grad = torch.zeros_like(p)
            opt.step()
            out.append(p.detach().clone())
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("maximize", [False, True])
def test_closure_and_maximize_like_torch(maximize):
    traj = {}
    for cls in (O.SGD, torch.optim.SGD):
        p = torch.nn.Parameter(torch.tensor([1.0, -0.5]))
        opt = cls([p], lr=0.1, momentum=0.5, maximize=maximize)

        def closure():
            opt.zero_grad()
            loss = (p**2).sum()
            loss.backward()
            return loss

        traj[cls] = [(opt.step(closure).item(), p.detach().clone()) for _ in range(3)]
    for (la, pa), (lb, pb) in zip(traj[O.SGD], traj[torch.optim.SGD]):
        assert la == lb
        torch.testing.assert_close(pa, pb)
    first_loss, after = traj[O.SGD][1][0], traj[O.SGD][-1][0]
    assert (after > first_loss) == maximize  # ascent goes up, descent goes down


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


WARMUP_TOTAL = [(0, 10), (3, 10), (10, 10), (2, 6), (7, 100), (1, 1), (0, 1)]


def _sgd(lr=0.5):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(opt, sched, steps):
    """The learning rate of every step, ``steps`` of them (``optimizer.step`` then ``scheduler.step``)."""
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name,warmup,total", [  # 'constant' takes no warm-up: test_constant_refuses_warmup
    (name, w, t) for name in sorted(O.SCHEDULES) for w, t in WARMUP_TOTAL if not (name == "constant" and w)])
def test_every_schedule_equals_transformers_get_scheduler(name, warmup, total):
    opt = _sgd()
    theirs = _lrs(opt, transformers.get_scheduler(name, opt, num_warmup_steps=warmup,
                                                  num_training_steps=total), total + 5)
    # the multiplier of SCHEDULES, at every step and beyond the end (stays at 0, never negative)
    fn = O.SCHEDULES[name]
    mult = [0.5 * fn(step, num_warmup_steps=warmup, num_training_steps=total) for step in range(total + 5)]
    assert mult == pytest.approx(theirs, abs=1e-12)
    # ftbook.optim.get_scheduler, with transformers' argument names
    opt = _sgd()
    ours = O.get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total)
    assert _lrs(opt, ours, total + 5) == pytest.approx(theirs, abs=1e-12)


def test_get_scheduler_covers_the_book_schedules():
    assert {"linear", "cosine", "constant", "constant_with_warmup"} <= set(O.SCHEDULES)
    for name in O.SCHEDULES:  # every name ftbook accepts is one transformers knows
        assert transformers.SchedulerType(name).value == name


@pytest.mark.parametrize("name", ["cosine_schedule", "polynomial", "Linear", ""])
def test_get_scheduler_unknown_name_names_the_choices(name):
    with pytest.raises(ValueError) as info:
        O.get_scheduler(name, _sgd(), num_warmup_steps=0, num_training_steps=10)
    assert repr(name) in str(info.value)
    for choice in O.SCHEDULES:
        assert repr(choice) in str(info.value)
    if name != "polynomial":  # transformers refuses it too
        with pytest.raises(ValueError):
            transformers.get_scheduler(name, _sgd(), num_warmup_steps=0, num_training_steps=10)


def test_constant_refuses_warmup():
    # transformers silently ignores num_warmup_steps for "constant"; ftbook says so instead
    with pytest.raises(ValueError, match="constant_with_warmup"):
        O.get_scheduler("constant", _sgd(), num_warmup_steps=3, num_training_steps=10)


@pytest.mark.parametrize("warmup,total", WARMUP_TOTAL)
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
    for name in O.SCHEDULES:
        with pytest.raises((ValueError, TypeError), match=match):
            O.get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total)


def test_sizes_registered():
    from ftbook.config import get_profile

    tiny, full = vars(get_profile("tiny").sizes("optim")), vars(get_profile("full").sizes("optim"))
    assert set(tiny) == set(full) >= {"steps", "batch_size", "n_train", "n_eval"}
    for key in tiny:  # the full profile is the larger experiment, in every size
        assert full[key] >= tiny[key], key
    assert tiny != full


# ------------------------------------------------------------- state_dict round trip
ROUND_TRIP = [
    (O.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    (O.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True)),
    (O.Adam, torch.optim.Adam, dict(lr=1e-3, weight_decay=0.1, amsgrad=True)),
    (O.AdamW, torch.optim.AdamW, dict(lr=2e-3, weight_decay=0.3)),
]


def _checkpoint(model, opt, sched) -> dict:
    """Save and load back through bytes, as a checkpoint file would (no shared tensors)."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("ours_cls,twin_cls,kwargs", ROUND_TRIP)
def test_state_dict_round_trip_resumes_exactly(ours_cls, twin_cls, kwargs):
    k, n = 4, 6
    data = list(batches(k + n))

    def fresh(model):
        opt = ours_cls(model.parameters(), **kwargs)
        return opt, O.get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=k + n)

    straight = tiny_bert()
    opt, sched = fresh(straight)
    l_straight = run(straight, opt, sched=sched, data=data)

    first = tiny_bert()
    opt, sched = fresh(first)
    l_resumed = run(first, opt, sched=sched, data=data[:k])
    ckpt = _checkpoint(first, opt, sched)
    copy_ = tiny_bert(seed=7)  # other weights until the checkpoint is loaded
    copy_.load_state_dict(ckpt["model"])
    opt, sched = fresh(copy_)  # the scheduler first: building it resets the group's lr ...
    opt.load_state_dict(ckpt["optimizer"])  # ... which the optimizer's state then restores
    sched.load_state_dict(ckpt["scheduler"])
    l_resumed += run(copy_, opt, sched=sched, data=data[k:])
    assert l_resumed == l_straight  # bit-identical
    for (name, a), (_, b) in zip(straight.named_parameters(), copy_.named_parameters()):
        assert torch.equal(a, b), name

    # the optimizer's state matters: resuming without it gives another trajectory
    lost = tiny_bert(seed=7)
    lost.load_state_dict(ckpt["model"])
    opt, sched = fresh(lost)
    sched.load_state_dict(ckpt["scheduler"])
    opt.param_groups[0]["lr"] = sched.get_last_lr()[0]
    assert run(lost, opt, sched=sched, data=data[k:]) != l_straight[k:]

    # and the uninterrupted run is torch.optim's (with transformers' schedule)
    twin = tiny_bert()
    opt = twin_cls(twin.parameters(), **kwargs)
    sched = transformers.get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=k + n)
    assert run(twin, opt, sched=sched, data=data) == pytest.approx(l_straight, rel=1e-6, abs=1e-7)
    for (name, a), (_, b) in zip(straight.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


# ------------------------------------------------------------------ parameter groups
def _names(model, params):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_param_groups_decay_what_transformers_trainer_decays():
    from transformers import Trainer

    model = tiny_bert()
    model.bert.embeddings.word_embeddings.requires_grad_(False)  # frozen: in no group
    groups = O.param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # Trainer.create_optimizer: decay get_decay_parameter_names(model), of the trainable parameters
    want = set(Trainer.get_decay_parameter_names(None, model)) & trainable
    assert _names(model, groups[0]["params"]) == want
    assert _names(model, groups[1]["params"]) == trainable - want
    everything = O.param_groups(model, 0.1, decay_norm_and_bias=True)
    assert len(everything) == 1 and _names(model, everything[0]["params"]) == trainable


def test_param_groups_find_ftbook_norms_by_type():
    from transformers.trainer_pt_utils import get_parameter_names

    from ftbook.norms import LayerNorm
    from ftbook.transformer import Encoder, EncoderConfig

    enc = Encoder(EncoderConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=16, norm_first=True))
    decay, rest = O.param_groups(enc, 0.01)
    want = set(get_parameter_names(enc, [LayerNorm], ["bias"]))  # transformers' walk, our norm type
    assert _names(enc, decay["params"]) == want
    assert _names(enc, rest["params"]) == {n for n, _ in enc.named_parameters()} - want
    assert "final_norm.weight" not in want and "layers.0.norm1.weight" not in want
