"""Runs a chapter's Colab setup cell for real, in a fresh virtual environment that plays Colab.

``tests/test_colab.py`` checks the cell's text (and its logic against a fake pip); this file runs
pip for real (issue #19, item 3):

* **The pretend Colab.** A fresh venv (``--without-pip``) whose site-packages holds one ``.pth``
  file adding a "base" folder as a site dir. The base holds symbolic links to every distribution
  of this test's own environment (``.venv``: torch, transformers, pip, ipykernel ... at the tested
  versions) *except* those the setup cell exists to supply: :data:`ftbook.colab.COLAB_INSTALL`,
  :data:`ftbook.colab.COLAB_NO_DEPS` and ftbook itself. Those are really absent (no files, no
  metadata), so the cell has to install them; whatever pip installs lands in the venv's own
  site-packages, where it can be listed. The base also holds a stand-in ``google.colab`` package;
  the kernel that runs the chapter imports it at start-up, as Colab's kernel does.
* **The book's repository** is a bare clone of this checkout, and the cell's GitHub URL is
  rewritten to ``git+file://`` that clone (:func:`local_cell`); nothing readers run is changed.
  The pinned ref (``_config.yml`` ``colab.ref``) is installed as it is.
* **What is checked.** The first run installs exactly the missing packages at the versions of
  ``requirements.txt`` and ftbook at the pinned commit (``direct_url.json``), prints each of them
  (in Chinese) and the commit, and leaves torch as it was (version, files, modification times);
  a second run installs and prints nothing new. Then chapter 4, unchanged (its own setup cell
  with the GitHub URL, which must now find everything in place), runs top to bottom in a Jupyter
  kernel of that venv.

Transitive dependencies of the missing packages (protobuf for onnx, starlette for fastapi ...)
are present in the pretend Colab at the tested versions; in a real Colab that lacks one, pip
resolves it. pip reaches the package index (as everywhere in this project): the cell downloads
about 300 MB of wheels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

import nbformat
import pytest

from ftbook import colab

pytestmark = pytest.mark.colab_cell

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "04_cross_entropy.ipynb"
SITE = Path(sysconfig.get_paths()["purelib"])  # this environment: the pretend Colab's packages
SUPPLIED = (*colab.COLAB_INSTALL, *colab.COLAB_NO_DEPS, "ftbook")  # what the cell must install
DONE = "ftbook 代码版本: "  # the cell's last line; setup_chapter()'s output follows it
KERNEL = "colab-sim"

COLAB_STUB = '''"""Stand-in for Colab's google.colab (tests/test_colab_cell.py).

The book's setup cell and ftbook.environment.in_colab() only look for this module in sys.modules.
"""
'''
KERNEL_LAUNCHER = '''"""Colab's kernel: google.colab is imported before the first cell runs."""
import google.colab  # noqa: F401
from ipykernel import kernelapp

kernelapp.launch_new_instance()
'''


def owners(site: Path) -> dict[str, set[str]]:
    """For every path (relative to ``site``) that a distribution's RECORD lists: its owners."""
    found: dict[str, set[str]] = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = colab.normalize(dist.metadata["Name"])
        for file in dist.files or ():
            parts = Path(file).parts
            if parts and parts[0] != "..":
                for depth in range(1, len(parts) + 1):
                    found.setdefault("/".join(parts[:depth]), set()).add(name)
    return found


def link_tree(src: Path, dest: Path, rel: str, owned: dict[str, set[str]], hidden: set[str]) -> None:
    """Link ``src``'s entries into ``dest``, leaving out what only hidden distributions own.

    A folder shared by a hidden and a kept distribution becomes a real folder whose entries are
    linked one by one.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        key = f"{rel}{entry.name}"
        by = owned.get(key, set())
        if by and by <= hidden:
            continue
        if by & hidden and entry.is_dir() and not entry.is_symlink():
            link_tree(entry, dest / entry.name, key + "/", owned, hidden)
        else:
            (dest / entry.name).symlink_to(entry)


def make_pretend_colab(tmp: Path) -> Path:
    """The fresh venv described in the module docstring; returns its python."""
    hidden = {colab.normalize(n) for n in SUPPLIED}
    owned = owners(SITE)
    base = tmp / "colab-base"
    link_tree(SITE, base, "", owned, hidden)
    (base / "google" / "colab").mkdir(parents=True, exist_ok=True)  # google/ stays a namespace
    (base / "google" / "colab" / "__init__.py").write_text(COLAB_STUB, encoding="utf-8")
    (base / "colab_kernel.py").write_text(KERNEL_LAUNCHER, encoding="utf-8")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    (site_of(python) / "colab_base.pth").write_text(f"import site; site.addsitedir({str(base)!r})\n", encoding="utf-8")
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would leak our own venv or settings."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "FTBOOK_PROFILE", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != Path(sys.executable).parent]
    env["PATH"] = os.pathsep.join(path)
    return {**env, "PIP_NO_INPUT": "1", "OMP_NUM_THREADS": "1", **extra}


def run_py(python: Path, code: str, *args: str, cwd: Path | None = None, env=None) -> str:
    """Run ``code`` in ``python``, by default in the folder above its venv (never this checkout,
    whose ``ftbook/`` and ``ftbook.egg-info`` would be found through the working directory)."""
    out = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True,
                         cwd=cwd or python.parents[2],
                         env=env or clean_env(), timeout=900)
    assert out.returncode == 0, f"{python} failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    return out.stdout


def local_cell(clone: Path) -> str:
    """Chapter 4's setup cell with the book's GitHub URL pointed at the local ``clone``."""
    source = nbformat.read(CHAPTER, as_version=4).cells[1].source
    url, _ = colab.repository(ROOT)
    github = f"git+{url}@"
    assert source.count(github) == 1, f"the setup cell no longer installs from {github}"
    return source.replace(github, f"git+{clone.as_uri()}@")


RUN_CELL = """
import sys
import google.colab  # noqa: F401  (in Colab the kernel has imported it)
exec(compile(open(sys.argv[1], encoding="utf-8").read(), "setup_cell", "exec"), {"__name__": "__main__"})
"""

IMPORTS = ("ftbook", "snownlp", "seqeval", "peft", "onnxruntime", "mplfonts", "gguf")  # import names
HAVE = """
import json, sys, importlib.util
from importlib import metadata

def present(name):
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True

print(json.dumps({n: present(n) for n in sys.argv[1:]} |
                 {"import " + n: importlib.util.find_spec(n) is not None for n in sys.argv[1:]}))
"""

PROBE = """
import json, sys
from importlib import metadata
import torch
d = metadata.distribution("ftbook")
print(json.dumps({"torch": torch.__version__, "torch_file": torch.__file__,
                  "direct_url": json.loads(d.read_text("direct_url.json") or "{}"),
                  "ftbook_file": __import__("ftbook").__file__, "prefix": sys.prefix}))
"""


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder`` (links followed)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def site_of(python: Path) -> Path:
    return Path(run_py(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())


def own_dists(python: Path) -> dict[str, str]:
    """``{name: version}`` of the distributions in the venv's own site-packages (what pip added)."""
    code = ("import json, sysconfig; from importlib import metadata; "
            "print(json.dumps({d.metadata['Name']: d.version for d in "
            "metadata.distributions(path=[sysconfig.get_paths()['purelib']])}))")
    return {colab.normalize(k): v for k, v in json.loads(run_py(python, code)).items()}


def cell_lines(stdout: str) -> list[str]:
    """What the setup cell itself printed: the lines up to and including ``ftbook 代码版本: REF``."""
    lines = stdout.strip().splitlines()
    end = next((i + 1 for i, line in enumerate(lines) if line.startswith(DONE)), None)
    assert end is not None, f"the setup cell did not print its commit line:\n{stdout}"
    return lines[:end]


@pytest.fixture(scope="module")
def pretend_colab(tmp_path_factory):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the pinned ref cannot be cloned")
    tmp = tmp_path_factory.mktemp("colab")
    start = time.perf_counter()
    clone = tmp / "ftbook.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(clone)], check=True)
    python = make_pretend_colab(tmp)
    cell = tmp / "setup_cell.py"
    cell.write_text(local_cell(clone), encoding="utf-8")
    env = clean_env(FTBOOK_CACHE=str(tmp / "cache"), MPLCONFIGDIR=str(tmp / "mpl"))
    torch_dir = Path(run_py(python, "import torch; print(torch.__file__)").strip()).parent
    before = {"torch": snapshot(torch_dir), "dists": own_dists(python),
              "have": json.loads(run_py(python, HAVE, *SUPPLIED, *colab.COLAB_PROVIDES, *IMPORTS, env=env))}
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        stdout = run_py(python, RUN_CELL, str(cell), cwd=tmp, env=env)
        runs.append({"stdout": stdout, "seconds": time.perf_counter() - t0, "dists": own_dists(python),
                     "files": snapshot(site_of(python))})
    print(f"\npretend Colab ready and the cell run twice in {time.perf_counter() - start:.0f} s "
          f"(first run {runs[0]['seconds']:.0f} s, second {runs[1]['seconds']:.0f} s)")
    yield {"python": python, "clone": clone, "env": env, "tmp": tmp, "torch_dir": torch_dir,
           "before": before, "runs": runs, "probe": json.loads(run_py(python, PROBE, env=env))}
    shutil.rmtree(tmp, ignore_errors=True)  # ~0.5 GB of installed wheels; pytest keeps 3 old tmp dirs


def test_the_pretend_colab_lacks_exactly_what_the_cell_supplies(pretend_colab):
    have = pretend_colab["before"]["have"]
    assert {n for n in SUPPLIED if have[n]} == set(), "the cell would have nothing to install"
    assert {n for n in IMPORTS if have["import " + n]} == set(), "importable without the cell"
    assert {n for n in colab.COLAB_PROVIDES if not have[n]} == set(), "Colab ships these"
    assert pretend_colab["before"]["dists"] == {}, "a fresh venv: nothing of its own before the cell"


def test_first_run_installs_the_missing_packages_at_the_tested_versions(pretend_colab):
    tested = colab.pinned_versions(colab.COLAB_INSTALL + colab.COLAB_NO_DEPS, ROOT)
    first = pretend_colab["runs"][0]
    ref = colab.colab_ref(ROOT)
    want = {**{colab.normalize(n): v for n, v in tested.items()}, "ftbook": "0.1.0"}
    assert first["dists"] == want, "pip added something else, or missed a package"
    lines = cell_lines(first["stdout"])
    assert sorted(lines[:-1]) == sorted(f"已安装 {n}=={v}" for n, v in want.items())
    assert lines[-1] == DONE + ref


def test_ftbook_is_installed_at_the_pinned_commit_from_the_clone(pretend_colab):
    probe, ref = pretend_colab["probe"], colab.colab_ref(ROOT)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    vcs = probe["direct_url"].get("vcs_info", {})
    assert vcs.get("vcs") == "git" and vcs.get("commit_id") == commit, probe["direct_url"]
    assert probe["direct_url"]["url"] == pretend_colab["clone"].as_uri()
    assert Path(probe["ftbook_file"]).is_relative_to(probe["prefix"]), "ftbook must come from the venv"
    assert not Path(probe["ftbook_file"]).is_relative_to(ROOT)


def test_torch_is_left_as_it_was(pretend_colab):
    import torch

    probe = pretend_colab["probe"]
    assert probe["torch"] == torch.__version__
    assert Path(probe["torch_file"]).parent == pretend_colab["torch_dir"]
    assert not Path(probe["torch_file"]).resolve().is_relative_to(probe["prefix"])
    assert len(pretend_colab["before"]["torch"]) > 1000  # torch's files, not an empty listing
    assert snapshot(pretend_colab["torch_dir"]) == pretend_colab["before"]["torch"]
    for run in pretend_colab["runs"]:
        assert "torch" not in run["dists"] and not re.search(r"已安装 torch\b", run["stdout"])


def test_second_run_changes_nothing(pretend_colab):
    first, second = pretend_colab["runs"]
    assert second["dists"] == first["dists"]
    assert second["files"] == first["files"], "the second run rewrote installed files"
    assert cell_lines(second["stdout"]) == [DONE + colab.colab_ref(ROOT)]


def test_chapter_runs_top_to_bottom_in_the_pretend_colab_kernel(pretend_colab, monkeypatch):
    from nbclient import NotebookClient

    tmp, python = pretend_colab["tmp"], pretend_colab["python"]
    spec = tmp / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "colab_kernel", "-f", "{connection_file}"],
        "display_name": "pretend Colab", "language": "python", "env": pretend_colab["env"]}), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "FTBOOK_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(CHAPTER, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, ftbook, torch\nprint(sys.prefix, ftbook.__file__, 'google.colab' in sys.modules, torch.__file__)"))
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(CHAPTER.parent)}}
                   ).execute()  # raises CellExecutionError on the first failing cell
    print(f"\n{CHAPTER.name} ran in the pretend Colab kernel in {time.perf_counter() - start:.0f} s")
    text = lambda cell: "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    assert cell_lines(text(nb.cells[1])) == [DONE + colab.colab_ref(ROOT)], "the chapter's own cell installed something"
    prefix, ftbook_file, in_colab, torch_file = text(nb.cells[-1]).split()
    assert in_colab == "True" and Path(ftbook_file).is_relative_to(prefix)
    assert Path(torch_file).parent == pretend_colab["torch_dir"]
    assert own_dists(python) == pretend_colab["runs"][1]["dists"]
