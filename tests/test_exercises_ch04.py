import math

import torch

from ftbook.exercises import check


def test_q1_right_and_wrong():
    p0 = math.exp(2) / (math.exp(2) + math.exp(1) + 1)
    assert check("ch04.q1", -math.log(p0), quiet=True)
    assert not check("ch04.q1", p0, quiet=True)
    assert not check("ch04.q1", None, quiet=True)


def test_q2_right_and_wrong():
    p = torch.softmax(torch.tensor([2.0, 1.0, 0.0]), 0)
    g = p - torch.tensor([1.0, 0.0, 0.0])
    assert check("ch04.q2", g, quiet=True)
    assert not check("ch04.q2", -g, quiet=True)
    assert not check("ch04.q2", [0.1, 0.2], quiet=True)
    assert not check("ch04.q2", None, quiet=True)


def test_q3_right_and_wrong():
    def stable(x):
        m = x.max()
        return m + torch.log(torch.exp(x - m).sum())

    def naive(x):
        return torch.log(torch.exp(x).sum())

    assert check("ch04.q3", stable, quiet=True)
    assert not check("ch04.q3", naive, quiet=True)
    assert not check("ch04.q3", None, quiet=True)
