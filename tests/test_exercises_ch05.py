from ftbook.exercises import check


def test_q1_right_and_wrong():
    assert check("ch05.q1", 1.0 - 0.1 * (0.9 * 0.5 + 2.0), quiet=True)
    assert not check("ch05.q1", 0.8, quiet=True)
    assert not check("ch05.q1", None, quiet=True)


def test_q2_right_and_wrong():
    assert check("ch05.q2", 0.01, quiet=True)
    assert not check("ch05.q2", 0.01 * 0.003, quiet=True)
    assert not check("ch05.q2", None, quiet=True)


def test_q3_right_and_wrong():
    assert check("ch05.q3", (2.5e-5, 2.5e-5), quiet=True)
    assert not check("ch05.q3", (2.5e-5, 5e-5 * 450 / 1000), quiet=True)
    assert not check("ch05.q3", 3, quiet=True)
