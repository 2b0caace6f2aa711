"""Grading a class: 30 submissions of one lab through ``python -m ftbook course grade`` (course kit).

    python benchmarks/grading.py                     # lab05, 30 submissions, 2 workers
    python benchmarks/grading.py --lab lab04 --students 30 --workers 2 --timeout 120

The submissions are made from the lab itself, as a class would hand them in: most students
solved every task (the instructor version without the student scaffolds), some handed in the
untouched student version, and three are accidents the grader must contain - an infinite loop,
a ``sys.exit()`` in the middle, and a file that is not a notebook. Prints the wall time, the
time per submission and the rows by status; the course kit's target is 30 submissions in
<= 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import copy
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from ftbook import course, grading

ROOT = Path(__file__).resolve().parents[1]


def make_class(lab: Path, folder: Path, students: int) -> dict[str, str]:
    """Write ``students`` submissions of ``lab`` into ``folder``; return {student: kind}."""
    nb = nbformat.read(lab, as_version=4)
    blank = course.student_notebook(nb)
    solved = copy.deepcopy(blank)  # each scaffold filled in: its given values, then the solution's code
    solutions = {i - 1: c.source for i, c in enumerate(nb.cells) if course.is_solution(c) and c.cell_type == "code"}
    filled = [nb.cells[i].source + "\n\n" + src for i, src in sorted(solutions.items())]
    scaffolds = [c for c in solved.cells if c.cell_type == "code" and any(c.source == nb.cells[i].source for i in solutions)]
    for cell, source in zip(scaffolds, filled):
        cell.source = source
    kinds = {}
    for k in range(students):
        name = f"student{k:02d}"
        if k == 0:
            (folder / f"{name}.ipynb").write_text("{ this is not a notebook", encoding="utf-8")
            kinds[name] = "not a notebook"
            continue
        sub = copy.deepcopy(blank if k % 10 == 1 else solved)
        kinds[name] = "blank" if k % 10 == 1 else "solved"
        if k == 2:
            sub.cells.insert(len(sub.cells) // 2, nbformat.v4.new_code_cell("while True:\n    pass"))
            kinds[name] = "infinite loop"
        if k == 3:
            sub.cells.insert(len(sub.cells) // 2, nbformat.v4.new_code_cell("import sys\nsys.exit(1)"))
            kinds[name] = "sys.exit"
        (folder / name).mkdir()
        nbformat.write(sub, folder / name / lab.name)
    return kinds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default="lab05")
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=120)
    args = ap.parse_args(argv)
    lab = ROOT / "chapters" / "labs" / f"{args.lab}.ipynb"
    if not lab.is_file():
        print(f"error: no lab {lab}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        subs, out = Path(tmp) / "subs", Path(tmp) / "grades.csv"
        subs.mkdir()
        kinds = make_class(lab, subs, args.students)
        t0 = time.perf_counter()
        rows = grading.grade(subs, out, timeout=args.timeout, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
    by_kind = collections.defaultdict(collections.Counter)
    for r in rows:
        by_kind[kinds[r["student"]]][r["status"]] += 1
    print(f"{args.students} submissions of {args.lab}, {args.workers} workers, timeout {args.timeout} s: "
          f"{wall:.0f} s wall, {wall / args.students:.1f} s per submission (target: 30 in <= 300 s)")
    for kind, counts in sorted(by_kind.items()):
        print(f"  {kind:>15}: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
