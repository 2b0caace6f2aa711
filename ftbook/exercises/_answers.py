"""Shared answer checks of the lab checkpoints (``ftbook/exercises/labNN.py``): an unanswered or
wrongly typed answer gets the same clear message in every lab. Chapters' and labs' checkers import
these instead of writing their own copy."""

from __future__ import annotations

import torch


def number(answer, what: str) -> float:
    """``answer`` as a float; ``None`` -> "not answered yet", a non-number -> ``TypeError``."""
    if answer is None:
        raise AssertionError(f"还没有作答：请给出{what}（一个数）。")
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数（int 或 float），而不是 {type(answer).__name__}")
    return float(answer)


def callable_answer(answer, example: str, kind: str = "函数") -> None:
    """Check that ``answer`` is a function (or, with ``kind="函数或类"``, a class) the student passed."""
    if answer is None:
        raise AssertionError(f"还没有作答：请传入一个{kind}，例如 {example}")
    if not callable(answer):
        raise TypeError(f"请传入一个{kind}（callable），而不是 {type(answer).__name__}")


def returned(value, what: str) -> None:
    """A student's function returned ``None``: its TODO is not done yet."""
    if value is None:
        raise AssertionError(f"函数返回了 None：还没有完成 TODO（应返回{what}）。")
