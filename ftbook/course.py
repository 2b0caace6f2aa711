"""The course kit: student and instructor notebooks from the book's chapters.

Taught in the course page (``chapters/course.md``, "导出学生版与教师版").

    python -m ftbook course export OUTDIR [--chapters DIR] [--only 06 07]

writes ``OUTDIR/student/*.ipynb`` - the chapters, ``labs/`` and ``projects/`` (every cell tagged
``solution`` removed, every output and execution count cleared; ``projects/RUBRIC.md`` beside them) and ``OUTDIR/instructor/*.ipynb`` (the chapters as they are, with their
solutions and stored outputs), plus a ``README.md`` in each saying what it holds, and each exported
chapter's quiz (:mod:`ftbook.quiz`) as ``quizzes/chNN.md``: questions only for students, answers and
every choice's explanation for the instructor. :func:`leaked_solutions` proves a student notebook
holds no solution text; the quiz export checks the same for the quizzes.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path
from typing import Iterable

SOLUTION_TAG = "solution"
STUDENT_NOTE = (
    "```{note}\n"
    "学生版：参考答案已移除，输出已清空。请从上到下运行，并在 `## 练习` 一节中作答，"
    "`ftbook.exercises.check(...)` 会告诉你答案是否正确。\n"
    "```"
)


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell) -> bool:
    return SOLUTION_TAG in _tags(cell)


def student_notebook(nb):
    """A copy of ``nb`` without solution cells, outputs and execution counts."""
    import nbformat

    if not isinstance(nb, nbformat.NotebookNode) or "cells" not in nb:
        raise TypeError(f"expected a notebook (nbformat.NotebookNode), got {type(nb).__name__}")
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if not is_solution(c)]
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            # The hide-cell toggle only makes sense for solutions; keep other tags.
        cell.metadata.pop("execution", None)
    if out.cells and out.cells[0].cell_type == "markdown":
        out.cells.insert(2 if len(out.cells) > 1 else 1, nbformat.v4.new_markdown_cell(STUDENT_NOTE))
    out.metadata.pop("widgets", None)  # saved widget state belongs to outputs
    return out


def _lines(cell) -> set[str]:
    return {line.strip() for line in cell.source.splitlines()}


def solution_lines(nb) -> set[str]:
    """Lines only the solution cells hold: long enough not to occur by chance, and not shared with
    a cell students see anyway (e.g. the ``ftbook.exercises.check(...)`` call both repeat)."""
    shown = set().union(*(_lines(c) for c in nb.cells if not is_solution(c)))
    lines = set()
    for cell in nb.cells:
        if is_solution(cell):
            for line in _lines(cell):
                if len(line) >= 12 and not line.startswith((":::", "```", ":class:")) and line not in shown:
                    lines.add(line)
    return lines


def leaked_solutions(student, instructor) -> list[str]:
    """Solution lines of ``instructor`` that appear anywhere in ``student`` (should be empty)."""
    text = "\n".join(c.source for c in student.cells)
    return sorted(line for line in solution_lines(instructor) if line in text)


def export(outdir: str | Path, chapters: str | Path | None = None, only: Iterable[str] = ()) -> dict:
    """Write the student and instructor notebooks and quizzes; return ``{"student": [...],
    "instructor": [...], "student_quizzes": [...], "instructor_quizzes": [...]}`` (paths).

    ``chapters`` defaults to the book's ``chapters/`` folder; ``only`` keeps notebooks whose name
    starts with one of the given prefixes. Refuses to write into the chapters folder itself.
    """
    import nbformat

    from .colab import book_root

    src = Path(chapters) if chapters is not None else book_root() / "chapters"
    if not src.is_dir():
        raise FileNotFoundError(f"chapters folder {src} does not exist")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f"OUTDIR {outdir} exists and is not a folder")
    if outdir.resolve() == src.resolve() or src.resolve() in outdir.resolve().parents:
        raise ValueError(f"OUTDIR {outdir} is inside the chapters folder {src}; choose another folder")
    only = tuple(only)
    paths = [p for pattern in ("*.ipynb", "labs/*.ipynb", "projects/*.ipynb") for p in sorted(src.glob(pattern))
             if not only or p.name.startswith(only)]
    if not paths:
        raise FileNotFoundError(f"no notebooks in {src}" + (f" starting with {only}" if only else ""))
    written: dict[str, list[Path]] = {"student": [], "instructor": []}
    for kind in ("student", "instructor"):
        (outdir / kind).mkdir(parents=True, exist_ok=True)
    for path in paths:
        rel = path.relative_to(src)  # 06_layer_norm.ipynb, labs/lab06.ipynb, projects/midterm.ipynb
        nb = nbformat.read(path, as_version=4)
        student = student_notebook(nb)
        leaks = leaked_solutions(student, nb)
        if leaks:  # never ship a student notebook that still holds solution text
            raise RuntimeError(f"{rel}: solution text survived in the student notebook: {leaks[:3]}")
        for kind in ("student", "instructor"):
            (outdir / kind / rel).parent.mkdir(parents=True, exist_ok=True)
            written[kind].append(outdir / kind / rel)
        nbformat.write(student, outdir / "student" / rel)
        shutil.copyfile(path, outdir / "instructor" / rel)
    if any(p.parent.name == "projects" for p in paths):
        written["rubrics"] = _export_rubrics(outdir, sorted(p.stem for p in paths if p.parent.name == "projects"))
    chapters_only = [p for p in paths if p.parent == src]
    for kind, pages in _export_quizzes(outdir, {p.name[:2] for p in chapters_only}).items():
        written[f"{kind}_quizzes"] = pages
    (outdir / "student" / "README.md").write_text(
        "# 学生版\n\n参考答案已移除、输出已清空。需要 `pip install ftbook`（或在 Colab 中打开，"
        "第一格会自动安装）。\n", encoding="utf-8")
    (outdir / "instructor" / "README.md").write_text(
        "# 教师版\n\n与书中章节相同：含参考答案（标签 `solution`）与运行结果。\n", encoding="utf-8")
    return written


def _export_rubrics(outdir: Path, names: list[str]) -> list[Path]:
    """``projects/RUBRIC.md`` (the same for students and instructors: a rubric is no secret)."""
    from . import projects

    known = [n for n in names if n in projects.RUBRIC]
    text = "# 项目评分表\n\n" + "\n\n".join(f"## {n}\n\n{projects.rubric_table(n)}" for n in known) + "\n"
    out = []
    for kind in ("student", "instructor"):
        path = outdir / kind / "projects" / "RUBRIC.md"
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out


def _export_quizzes(outdir: Path, numbers: set[str]) -> dict[str, list[Path]]:
    """``quizzes/chNN.md`` of the exported chapters: with answers and explanations for the
    instructor, without them for students (checked: no explanation text survives)."""
    from . import quiz

    out: dict[str, list[Path]] = {"student": [], "instructor": []}
    for key in (k for k in quiz.available() if k[2:] in numbers):
        student = quiz.render_markdown(key, answers=False)
        secrets = [q.explanation for q in quiz.load(key).questions if q.explanation]
        secrets += [c.explanation for q in quiz.load(key).questions for c in q.choices]
        leaks = [t for t in secrets if t in student]
        if leaks:
            raise RuntimeError(f"{key}: answer text survived in the student quiz: {leaks[:2]}")
        for kind, text in (("student", student), ("instructor", quiz.render_markdown(key))):
            path = outdir / kind / "quizzes" / f"{key}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            out[kind].append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftbook course",
                                 description="export student / instructor notebooks; grade submissions")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write OUTDIR/student and OUTDIR/instructor")
    ex.add_argument("outdir")
    ex.add_argument("--chapters", default=None, help="folder of chapter notebooks (default: the book's)")
    ex.add_argument("--only", nargs="*", default=[], help="notebook name prefixes, e.g. 06 07")
    from . import grading

    grading.add_parser(sub)
    args = ap.parse_args(argv)
    if args.command == "grade":
        return grading.run_cli(args)
    try:
        written = export(args.outdir, args.chapters, args.only)
    except (FileNotFoundError, NotADirectoryError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n, q = len(written["student"]), len(written["student_quizzes"])
    print(f"wrote {n} student and {n} instructor notebooks (chapters, labs, projects), {q} quizzes each, "
          f"under {args.outdir}")
    return 0
