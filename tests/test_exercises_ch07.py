"""Checkers of chapter 7's exercises: a right and a wrong answer each."""

import torch

from ftbook.attention import key_padding_mask, row_padding_mask
from ftbook.exercises import check
from ftbook.optim import SCHEDULES, param_groups


def test_q1():
    assert check("ch07.q1", key_padding_mask, quiet=True)
    assert check("ch07.q1", lambda am: (1.0 - am[:, None, None, :].float()) * -1e9, quiet=True)
    assert not check("ch07.q1", row_padding_mask, quiet=True)  # the classic bug
    assert not check("ch07.q1", lambda am: torch.zeros(5), quiet=True)
    assert not check("ch07.q1", None, quiet=True)
    assert not check("ch07.q1", 3, quiet=True)


def test_q2():
    assert check("ch07.q2", 16, quiet=True)
    assert check("ch07.q2", 16.0, quiet=True)
    assert not check("ch07.q2", 256, quiet=True)
    assert not check("ch07.q2", 1, quiet=True)
    assert not check("ch07.q2", None, quiet=True)
    assert not check("ch07.q2", "16", quiet=True)


def _by_dim(m, wd):
    return [{"params": [p for p in m.parameters() if p.dim() >= 2], "weight_decay": wd},
            {"params": [p for p in m.parameters() if p.dim() < 2], "weight_decay": 0.0}]


def test_q3():
    assert check("ch07.q3", param_groups, quiet=True)  # the book's rule
    assert check("ch07.q3", _by_dim, quiet=True)  # the same split on this model
    assert not check("ch07.q3", lambda m, wd: param_groups(m, wd, decay_norm_and_bias=True), quiet=True)
    assert not check("ch07.q3", lambda m, wd: [{"params": list(m.parameters()), "weight_decay": wd}], quiet=True)
    assert not check("ch07.q3", lambda m, wd: [{"params": [p for p in m.parameters() if p.dim() >= 2],
                                                "weight_decay": wd}], quiet=True)  # 1-D ones missing
    assert not check("ch07.q3", lambda m, wd: [{"params": g["params"], "weight_decay": wd - g["weight_decay"]}
                                               for g in _by_dim(m, wd)], quiet=True)  # the two rates swapped
    assert not check("ch07.q3", lambda m, wd: None, quiet=True)
    assert not check("ch07.q3", None, quiet=True)


def test_q4():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    from ftbook.optim import get_scheduler

    sched = get_scheduler("constant_with_warmup", opt, 50, 150)
    for _ in range(10):
        opt.step()
        sched.step()
    assert check("ch07.q4", sched.get_last_lr()[0], quiet=True)  # what the scheduler really does
    assert check("ch07.q4", 2e-3, quiet=True)
    assert check("ch07.q4", 1e-2 * SCHEDULES["constant_with_warmup"](10, num_warmup_steps=50,
                                                                      num_training_steps=150), quiet=True)
    assert not check("ch07.q4", 1e-2, quiet=True)  # forgot the warm-up
    assert not check("ch07.q4", 1e-2 * 11 / 50, quiet=True)  # (step + 1) / warmup: one step off
    assert not check("ch07.q4", 1e-2 * 10 / 150, quiet=True)  # warm-up over the whole run
    assert not check("ch07.q4", None, quiet=True)
    assert not check("ch07.q4", "2e-3", quiet=True)
