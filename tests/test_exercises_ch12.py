"""Each checker of chapter 12 accepts the right answer and rejects a wrong one."""

from ftbook.exercises import check


def test_q1():
    assert check("ch12.q1", 422, quiet=True)
    assert not check("ch12.q1", 413, quiet=True)
    assert not check("ch12.q1", None, quiet=True)


def test_q2():
    from ftbook.serve import _percentile

    assert check("ch12.q2", lambda xs: _percentile(xs, 95), quiet=True)
    assert not check("ch12.q2", lambda xs: sorted(xs)[int(0.95 * len(xs))], quiet=True)
    assert not check("ch12.q2", lambda xs: None, quiet=True)
    assert not check("ch12.q2", None, quiet=True)


def test_q3():
    assert check("ch12.q3", {"batch", "sequence"}, quiet=True)
    assert not check("ch12.q3", {"batch", "hidden"}, quiet=True)
    assert not check("ch12.q3", set(), quiet=True)
