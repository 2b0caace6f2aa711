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
"""

from __future__ import annotations

import sys
from pathlib import Path

BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_PREFIX = "[![Open In Colab]"
SETUP_TAG = "setup"


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


def setup_source(root: str | Path | None = None) -> str:
    """Source of the setup cell: install in Colab only, then ``ftbook.setup_chapter()``."""
    url, branch = repository(root)
    return (
        "# 环境准备：在 Colab 中先安装 ftbook（本地运行时这一步什么也不做），\n"
        "# 然后固定随机种子、选择设备与配置（tiny / full）、设置中文字体。\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        "\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\",\n"
        f"                    \"ftbook[serve] @ git+{url}@{branch}\"], check=True)\n"
        "\n"
        "import ftbook\n"
        "\n"
        "ctx = ftbook.setup_chapter()"
    )


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "sync":
        print("usage: python -m ftbook.colab sync [NOTEBOOK ...]")
        return 2
    root = book_root()
    paths = [Path(p) for p in argv[1:]] or sorted((root / "chapters").glob("*.ipynb"))
    for p in paths:
        print(f"{'updated' if sync_notebook(p, root) else 'ok     '} {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
