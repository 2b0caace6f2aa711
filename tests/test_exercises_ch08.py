import torch

from ftbook.exercises import check


def split_heads(x, num_heads):
    b, s, h = x.shape
    return x.view(b, s, num_heads, h // num_heads).transpose(1, 2)


def split_heads_wrong(x, num_heads):
    b, s, h = x.shape
    return x.view(b, num_heads, s, h // num_heads)


def additive_mask(am):
    return torch.zeros(am.shape).masked_fill(am == 0, torch.finfo(torch.float32).min)[:, None, None, :]


def row_mask(am):
    return torch.zeros(am.shape).masked_fill(am == 0, -1e9)[:, None, :, None]


def test_q1(capsys):
    assert check("ch08.q1", 7087872)
    assert not check("ch08.q1", 4 * 768 * 768 + 2 * 768 * 3072)
    assert "偏置" in capsys.readouterr().out
    assert not check("ch08.q1", "7087872")
    assert not check("ch08.q1", None)


def test_q2(capsys):
    assert check("ch08.q2", split_heads)
    assert not check("ch08.q2", split_heads_wrong)
    assert "transpose" in capsys.readouterr().out
    assert not check("ch08.q2", None)
    assert not check("ch08.q2", lambda x, n: x)


def test_q3(capsys):
    assert check("ch08.q3", additive_mask)
    assert not check("ch08.q3", row_mask)
    assert "bug" in capsys.readouterr().out
    assert not check("ch08.q3", lambda am: am[:, None, None, :].float())
    assert not check("ch08.q3", None)
