"""Every chapter opens and runs in Colab: badge, setup cell, a no-op setup outside Colab, the
``full`` profile resolving offline, and the exercise section of every written chapter."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ftbook import colab
from ftbook.config import _SECTIONS, get_profile

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
PLACEHOLDER = "本章正在编写中"


def read(path):
    return nbformat.read(path, as_version=4)


def test_there_are_fourteen_chapters():
    assert len(NOTEBOOKS) == 14, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_points_at_the_repository(path):
    url, branch = colab.repository(ROOT)
    first = read(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# 第 ")
    badge = colab.badge_line(path, ROOT)
    assert badge in first.source.splitlines(), f"{path.name}: run python -m ftbook.colab sync {path}"
    gh = url.removeprefix("https://github.com/")
    assert f"colab.research.google.com/github/{gh}/blob/{branch}/chapters/{path.name}" in badge


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_the_generated_one(path):
    cell = read(path).cells[1]
    assert cell.cell_type == "code"
    assert colab.SETUP_TAG in cell.metadata.get("tags", [])
    assert cell.source == colab.setup_source(ROOT), f"{path.name}: run python -m ftbook.colab sync {path}"


RUN_SETUP = r"""
import json, subprocess, sys
calls = []
def record(*args, **kwargs):
    calls.append([str(a) for a in (args[0] if args else kwargs.get("args", []))])
    class Done: returncode = 0
    return Done()
subprocess.run = subprocess.call = subprocess.check_call = record
if sys.argv[1] == "colab":  # pretend to be Colab
    import types
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
ns = {}
exec(open(sys.argv[2], encoding="utf-8").read(), ns)
print(json.dumps({"calls": calls, "profile": ns["ctx"].profile.name, "device": ns["ctx"].device.type}))
"""


def run_setup(tmp_path, where):
    src = tmp_path / "setup_cell.py"
    src.write_text(colab.setup_source(ROOT), encoding="utf-8")
    env = {k: v for k, v in __import__("os").environ.items() if k != "FTBOOK_PROFILE"}
    out = subprocess.run([sys.executable, "-c", RUN_SETUP, where, str(src)], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_setup_cell_installs_nothing_outside_colab(tmp_path):
    result = run_setup(tmp_path, "local")
    assert result["calls"] == []
    assert result["profile"] == "tiny"


def test_setup_cell_installs_ftbook_in_colab(tmp_path):
    # The positive control: the same harness sees the pip call when google.colab is present.
    url, branch = colab.repository(ROOT)
    result = run_setup(tmp_path, "colab")
    assert len(result["calls"]) == 1
    cmd = result["calls"][0]
    assert cmd[1:4] == ["-m", "pip", "install"]
    assert f"git+{url}@{branch}" in cmd[-1]
    assert not any(re.fullmatch(r"torch\b.*", c) for c in cmd), "Colab has torch: never reinstall it"
    assert result["profile"] == "tiny"  # no GPU here, so Colab keeps the tiny profile


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_full_profile_resolves_offline(no_network):
    import ftbook.resources as resources

    full = get_profile("full")
    assert full.name == "full" and not full.offline
    assert resources.model_source("english", full) == "bert-base-uncased"
    assert resources.model_source("chinese", "full") == "bert-base-chinese"
    assert "/" in full.english_data and "/" in full.chinese_data  # hub dataset ids
    for section in sorted(_SECTIONS):  # every registered section has full sizes
        tiny, big = vars(get_profile("tiny").sizes(section)), vars(full.sizes(section))
        assert set(tiny) == set(big), section


def test_full_sizes_of_the_faq_are_larger():
    import ftbook.faq  # noqa: F401  registers "faq"

    tiny, full = get_profile("tiny").sizes("faq"), get_profile("full").sizes("faq")
    assert full.max_length > tiny.max_length and full.shift_train > tiny.shift_train


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="expected one of tiny, full"):
        get_profile("huge")


CHECK_CALL = re.compile(r"ftbook\.exercises\.check\(\s*[\"'](ch\d\d\.q\d+)[\"']")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_has_exercises_with_checks_and_solutions(path):
    nb = read(path)
    text = "\n".join(c.source for c in nb.cells)
    if PLACEHOLDER in text:
        pytest.skip(f"{path.name} is still a placeholder")
    headings = [c for c in nb.cells if c.cell_type == "markdown" and re.search(r"^## 练习\s*$", c.source, re.M)]
    assert headings, f"{path.name}: no '## 练习' section"
    ids = [m for c in nb.cells if c.cell_type == "code" for m in CHECK_CALL.findall(c.source)]
    assert ids, f"{path.name}: no ftbook.exercises.check(...) call"
    assert any("solution" in c.metadata.get("tags", []) for c in nb.cells), f"{path.name}: no solution cell"
    from ftbook.exercises import get

    for ex_id in ids:
        assert ex_id.startswith(path.name[:2].join(("ch", ""))), f"{path.name}: {ex_id} is another chapter's"
        get(ex_id)  # a checker is registered for every id the chapter uses
