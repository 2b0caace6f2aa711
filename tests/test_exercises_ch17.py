"""Chapter 14's exercise checkers: a right and a wrong answer each, and bad inputs."""

from ftbook.exercises import check
from ftbook.exercises.ch17 import kept_epoch


def keep_epoch_right(val_losses, patience):
    best, best_i = float("inf"), -1
    for i, loss in enumerate(val_losses):
        if loss < best:
            best, best_i = loss, i
        elif i - best_i >= patience:
            break
    return best_i


def keep_epoch_argmin(val_losses, patience):  # ignores that training stopped early
    return min(range(len(val_losses)), key=val_losses.__getitem__)


def keep_epoch_last(val_losses, patience):
    return len(val_losses) - 1


def test_kept_epoch_is_the_loops_early_stopping():
    """The reference of q1 is ftbook.training.train itself: strict improvement only, stop after
    ``patience`` evaluations without one, keep the best (never an epoch after the stop)."""
    assert kept_epoch([0.9, 0.6, 0.7, 0.8, 0.5], patience=2) == 1  # stopped before 0.5
    assert kept_epoch([0.9, 0.6, 0.7, 0.8, 0.5], patience=3) == 4
    assert kept_epoch([0.5, 0.5, 0.5], patience=1) == 0  # equal is not better
    assert kept_epoch([0.5, 0.4, 0.3, 0.2], patience=1) == 3


def test_q1_right_function():
    assert check("ch17.q1", keep_epoch_right)


def test_q1_wrong_functions(capsys):
    assert not check("ch17.q1", keep_epoch_argmin)
    assert "耐心耗尽" in capsys.readouterr().out
    assert not check("ch17.q1", keep_epoch_last)
    assert not check("ch17.q1", lambda losses, patience: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not check("ch17.q1", 2)


def test_q2_saliency(capsys):
    assert check("ch17.q2", [0, 2, 1])
    assert check("ch17.q2", (0.0, 2.0, 1.0))
    assert not check("ch17.q2", [0, -2, 1])
    assert "第 [2] 个" in capsys.readouterr().out
    assert not check("ch17.q2", [-1, -1, -1])
    assert "点积" in capsys.readouterr().out
    assert not check("ch17.q2", [0, 2])
    assert not check("ch17.q2", 3)
    assert not check("ch17.q2", [0, float("nan"), 1])


def test_q3_learning_rate(capsys):
    assert check("ch17.q3", 1e-3)
    assert check("ch17.q3", 0.001)
    assert not check("ch17.q3", 1e-2)
    assert "发散" in capsys.readouterr().out
    assert not check("ch17.q3", 1e-5)
    assert not check("ch17.q3", 3e-3)
    assert not check("ch17.q3", "1e-3")
