"""Self-checking exercises: the course kit.

Used by the "练习" section at the end of every chapter. A chapter's checkers live in
``ftbook/exercises/chNN.py`` and register themselves with :func:`exercise`; a reader calls
``check("ch06.q1", answer)`` and is told whether the answer is right and, if not, what is wrong.

Notebook convention: solution cells carry the cell tag ``solution`` (plus ``hide-cell`` for code,
or a ``{admonition}`` with ``:class: dropdown`` for prose), so the book hides them until clicked
and ``python -m ftbook course export`` removes them from student notebooks.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

_REGISTRY: dict[str, "Exercise"] = {}


@dataclass(frozen=True)
class Exercise:
    id: str
    prompt: str
    checker: Callable[[Any], None]


def exercise(id: str, prompt: str = ""):
    """Decorator: register ``checker(answer)`` under ``id`` (``"chNN.qK"``).

    The checker raises ``AssertionError`` (or ``ValueError`` / ``TypeError``) with a message
    that tells the reader what is wrong; returning normally means correct.
    """
    if not isinstance(id, str) or "." not in id:
        raise ValueError(f"exercise id must look like 'ch06.q1', got {id!r}")

    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _REGISTRY[id] = Exercise(id=id, prompt=prompt or (fn.__doc__ or "").strip(), checker=fn)
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
        return False
    if not quiet:
        print(f"✅ {id} 正确！")
    return True
