"""Each chapter-10 checker accepts the right answer and rejects a wrong one."""

import pytest

from ftbook.exercises import check, ch10


def test_q1():
    assert check("ch10.q1", 5e-5, quiet=True)
    assert not check("ch10.q1", 1e-4, quiet=True)
    assert not check("ch10.q1", 0.5, quiet=True)
    assert not check("ch10.q1", None, quiet=True)


def test_q2():
    right = {n for n in ch10.Q2_NAMES if n.endswith("bias") or "LayerNorm" in n}
    assert check("ch10.q2", right, quiet=True)
    assert not check("ch10.q2", right - {"classifier.bias"}, quiet=True)
    assert not check("ch10.q2", right | {"classifier.weight"}, quiet=True)
    assert not check("ch10.q2", {"not.a.param"}, quiet=True)
    assert not check("ch10.q2", None, quiet=True)


def test_q3(capsys):
    assert check("ch10.q3", 4)
    assert not check("ch10.q3", 8)
    assert "两个进程" in capsys.readouterr().out
    assert not check("ch10.q3", 4.0, quiet=True)


def test_q1_value_comes_from_the_schedule():
    from ftbook.finetune import lr_lambda

    assert 1e-4 * lr_lambda(55, 10, 100) == pytest.approx(5e-5)
