"""``show_source(obj)``: the code a chapter teaches, shown on its page from the module itself.

Used by every chapter that teaches a from-scratch piece (chapters 4-10): the text explains it, the
cell shows the very source that the tests check against the PyTorch / transformers twin, so the
page and the package cannot drift apart. The result renders as highlighted code in Jupyter,
Colab and the built book (HTML with inline styles, no stylesheet needed) and as plain text
elsewhere (a terminal, nbval).
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Source lines of one object: ``name``, the file it lives in, the first line number, and text."""

    name: str
    path: str
    first_line: int
    text: str

    def __repr__(self) -> str:  # plain text: what nbval and a terminal see
        return f"# {self.name}  ({self.path}:{self.first_line})\n{self.text}"

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        body = highlight(self.text, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=False))
        caption = (f'<div style="font-size:0.8em;color:#666">{self.name} '
                   f'&mdash; <code>{self.path}:{self.first_line}</code></div>')
        return caption + body


def show_source(obj, *, start: str | None = None, stop: str | None = None, dedent: bool = True) -> Source:
    """The source of a function, class or method, or the part of it from the first line containing
    ``start`` up to (not including) the first later line containing ``stop``.

    Long pieces are shown in the parts the text explains: ``show_source(Adam.step, start="for p in")``.
    Raises ``ValueError`` when ``start`` or ``stop`` is not found, so a renamed line cannot
    silently empty a page.
    """
    try:
        lines, first = inspect.getsourcelines(obj)
    except (TypeError, OSError) as exc:
        raise TypeError(f"show_source needs a function, class or method defined in a file, got {obj!r}") from exc
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    module = inspect.getmodule(obj)
    path = module.__name__.replace(".", "/") + ".py" if module else "?"
    begin, end = 0, len(lines)
    if start is not None:
        begin = next((i for i, line in enumerate(lines) if start in line), None)
        if begin is None:
            raise ValueError(f"{name}: no line contains start={start!r}")
    if stop is not None:
        end = next((i for i in range(begin + 1, len(lines)) if stop in lines[i]), None)
        if end is None:
            raise ValueError(f"{name}: no line after start contains stop={stop!r}")
    text = "".join(lines[begin:end])
    return Source(name, path, first + begin, textwrap.dedent(text) if dedent else text)
