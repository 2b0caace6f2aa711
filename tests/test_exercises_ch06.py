"""Checkers of chapter 6's exercises: a right and a wrong answer each."""

import torch
import torch.nn.functional as F

from ftbook.exercises import check, get


def test_q1():
    right = F.layer_norm(torch.tensor([1.0, 2.0, 3.0, 4.0]), (4,), eps=0.0).tolist()
    assert check("ch06.q1", right, quiet=True)
    assert not check("ch06.q1", [-1.1619, -0.3873, 0.3873, 1.1619], quiet=True)  # unbiased variance
    assert not check("ch06.q1", [1, 2, 3, 4], quiet=True)
    assert not check("ch06.q1", None, quiet=True)
    assert not check("ch06.q1", 3.0, quiet=True)


def test_q2():
    def good(x):
        mu = x.mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + 1e-5)

    def one_pass(x):
        mu = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - mu * mu
        return (x - mu) / torch.sqrt(var.clamp_min(0) + 1e-5)

    assert check("ch06.q2", good, quiet=True)
    assert not check("ch06.q2", one_pass, quiet=True)
    assert not check("ch06.q2", lambda x: x, quiet=True)
    assert not check("ch06.q2", None, quiet=True)
    assert not check("ch06.q2", 1.0, quiet=True)


def test_q3(capsys):
    assert check("ch06.q3", 38400, quiet=True)
    assert not check("ch06.q3", 36864)
    assert "嵌入层" in capsys.readouterr().out
    assert not check("ch06.q3", None, quiet=True)
    assert not check("ch06.q3", "38400", quiet=True)
    assert get("ch06.q3").prompt
