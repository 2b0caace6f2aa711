"""Checkers of chapter 7's exercises: a right and a wrong answer each."""

import torch

from ftbook.attention import key_padding_mask, row_padding_mask
from ftbook.exercises import check
from ftbook.tricks import param_groups


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


def test_q3():
    assert check("ch07.q3", param_groups, quiet=True)
    assert not check("ch07.q3", lambda m, wd: [{"params": list(m.parameters()), "weight_decay": wd}], quiet=True)
    assert not check("ch07.q3", lambda m, wd: [{"params": [p for p in m.parameters() if p.dim() >= 2],
                                                "weight_decay": wd}], quiet=True)
    assert not check("ch07.q3", lambda m, wd: None, quiet=True)
    assert not check("ch07.q3", None, quiet=True)


def test_q4():
    from ftbook.tricks import warmup_lambda

    assert check("ch07.q4", 5e-3, quiet=True)
    assert check("ch07.q4", 1e-2 * warmup_lambda(50, 150)(100), quiet=True)
    assert not check("ch07.q4", 1e-2, quiet=True)  # forgot the decay
    assert not check("ch07.q4", 1e-2 * 50 / 150, quiet=True)  # decay over the whole run
    assert not check("ch07.q4", None, quiet=True)
    assert not check("ch07.q4", "5e-3", quiet=True)
