import inspect

import pytest

from ftbook import show_source
from ftbook.optim import Adam
from ftbook.show import Source


def test_whole_function_is_its_source_with_file_and_line():
    src = show_source(show_source)
    lines, first = inspect.getsourcelines(show_source)
    assert src.text == "".join(lines) and src.first_line == first
    assert src.path == "ftbook/show.py" and src.name == "show_source"
    assert repr(src).startswith("# show_source  (ftbook/show.py:")


def test_part_between_start_and_stop_dedented():
    part = show_source(Adam.step, start="for group in", stop="return loss")
    full = inspect.getsource(Adam.step)
    assert part.text.startswith("for group in") and "return loss" not in part.text
    assert all(line in full for line in part.text.strip().splitlines() if line.strip() and not line.startswith(" "))
    lines, first = inspect.getsourcelines(Adam.step)
    offset = next(i for i, line in enumerate(lines) if "for group in" in line)
    assert part.first_line == first + offset


def test_html_is_highlighted_and_self_contained():
    html = show_source(Source)._repr_html_()
    assert '<span style="' in html  # inline styles: no stylesheet needed in Colab or the book
    assert ">class</span>" in html and "Source" in html and "ftbook/show.py" in html


@pytest.mark.parametrize("kwargs, match", [({"start": "no such line"}, "start="), ({"stop": "no such line"}, "stop=")])
def test_missing_markers_fail_loudly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        show_source(Adam.step, **kwargs)


def test_objects_without_source_are_refused():
    with pytest.raises(TypeError, match="needs a function, class or method"):
        show_source(len)
