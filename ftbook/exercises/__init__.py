"""Self-checking exercises: the course kit.

Used by the "练习" section at the end of every chapter. A chapter's checkers live in
``ftbook/exercises/chNN.py`` and register themselves with :func:`exercise`; a reader calls
``check("ch06.q1", answer)`` and is told whether the answer is right and, if not, what is wrong.

Notebook convention: solution cells carry the cell tag ``solution`` (plus ``hide-cell`` for code,
or a ``{admonition}`` with ``:class: dropdown`` for prose), so the book hides them until clicked
and ``python -m ftbook course export`` removes them from student notebooks.

Labs (``chapters/labs/labNN.ipynb``, checkers in ``ftbook/exercises/labNN.py``) register their
checkpoints with a ``level`` (``"easy"`` / ``"medium"`` / ``"hard"``, worth :data:`POINTS` points).
When the environment variable ``FTBOOK_GRADE_LOG`` names a file, every :func:`check` appends one
JSON line ``{"id", "ok", "level", "points", "message"}`` to it: that is what
``python -m ftbook course grade`` (:mod:`ftbook.grading`) reads back from a student's notebook.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

_REGISTRY: dict[str, "Exercise"] = {}
POINTS = {"easy": 1, "medium": 2, "hard": 3}  # a lab checkpoint's weight in the grade
GRADE_LOG_ENV = "FTBOOK_GRADE_LOG"


@dataclass(frozen=True)
class Exercise:
    id: str
    prompt: str
    checker: Callable[[Any], None]
    level: str | None = None  # labs: "easy" / "medium" / "hard"; chapter exercises: None

    @property
    def points(self) -> int:
        return POINTS.get(self.level, 1)


def exercise(id: str, prompt: str = "", level: str | None = None):
    """Decorator: register ``checker(answer)`` under ``id`` (``"chNN.qK"``, labs ``"labNN.tK"``).

    The checker raises ``AssertionError`` (or ``ValueError`` / ``TypeError``) with a message
    that tells the reader what is wrong; returning normally means correct. ``level`` grades a lab
    checkpoint: ``"easy"``, ``"medium"`` or ``"hard"``.
    """
    if not isinstance(id, str) or "." not in id:
        raise ValueError(f"exercise id must look like 'ch06.q1', got {id!r}")
    if level is not None and level not in POINTS:
        raise ValueError(f"level must be one of {sorted(POINTS)} or None, got {level!r}")

    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _REGISTRY[id] = Exercise(id=id, prompt=prompt or (fn.__doc__ or "").strip(), checker=fn,
                                 level=level)
        return fn

    return register


def get(id: str) -> Exercise:
    """The registered exercise ``id``, importing its chapter's module on first use."""
    if id not in _REGISTRY:
        chapter = id.split(".", 1)[0]
        try:
            importlib.import_module(f"{__name__}.{chapter}")
        except ModuleNotFoundError:
            pass
    if id not in _REGISTRY:
        raise KeyError(f"no exercise {id!r}; known: {', '.join(sorted(_REGISTRY)) or 'none loaded'}")
    return _REGISTRY[id]


def check(id: str, answer: Any, *, quiet: bool = False) -> bool:
    """Check ``answer`` for exercise ``id``; print a verdict in Chinese and return True/False."""
    ex = get(id)
    try:
        ex.checker(answer)
    except Exception as exc:  # any failure of the reader's answer is a verdict, not a crash
        if not quiet:
            print(f"❌ {id} 还不对：{exc}")
        _log(ex, False, str(exc))
        return False
    if not quiet:
        print(f"✅ {id} 正确！")
    _log(ex, True, "")
    return True


def _log(ex: Exercise, ok: bool, message: str) -> None:
    """Append the verdict to ``$FTBOOK_GRADE_LOG`` when the grader set it (one JSON line)."""
    path = os.environ.get(GRADE_LOG_ENV)
    if not path:
        return
    record = {"id": ex.id, "ok": ok, "level": ex.level, "points": ex.points, "message": message[:500]}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def registered(prefix: str) -> list[Exercise]:
    """Every exercise whose id starts with ``prefix + "."`` (importing its module), sorted by id."""
    get_module = f"{__name__}.{prefix}"
    try:
        importlib.import_module(get_module)
    except ModuleNotFoundError as exc:
        raise KeyError(f"no exercises module {get_module}") from exc
    def natural(e: Exercise) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", e.id)]

    return sorted((e for k, e in _REGISTRY.items() if k.startswith(prefix + ".")), key=natural)
