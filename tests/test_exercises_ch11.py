"""Each chapter-11 checker accepts the right answer and rejects a wrong one."""

import pytest

from ftbook.exercises import check, ch11


def test_q1():
    from sklearn.metrics import f1_score

    right = f1_score(ch11.Q1_TRUE, ch11.Q1_PRED, average="macro")
    assert right == pytest.approx(0.6032, abs=1e-4)
    assert check("ch11.q1", right, quiet=True)
    assert not check("ch11.q1", 0.6, quiet=True)  # the accuracy
    assert not check("ch11.q1", None, quiet=True)


def test_q2():
    assert check("ch11.q2", 0.4083, quiet=True)
    assert not check("ch11.q2", 0.0, quiet=True)
    assert not check("ch11.q2", "0.4083", quiet=True)


def test_q3():
    assert check("ch11.q3", (1e-4, 0.1), quiet=True)
    assert not check("ch11.q3", (3e-4, 0.1), quiet=True)
    assert not check("ch11.q3", (1e-4, 0.0), quiet=True)
    assert not check("ch11.q3", None, quiet=True)
