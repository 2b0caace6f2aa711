"""Autograding a folder of student notebooks: the course kit's ``course grade``.

Taught in the course page (``chapters/course.md``, "自动评分").

    python -m ftbook course grade SUBMISSIONS_DIR --out grades.csv [--timeout 300] [--workers 2]

``SUBMISSIONS_DIR`` holds either one notebook per student (``zhang_san.ipynb``: the student is the
file's stem) or one folder per student (``zhang_san/lab06.ipynb``, ``zhang_san/midterm.ipynb``, any
data files beside them). Each notebook runs in a fresh kernel, in a private copy of its folder, in
its own process with a wall-clock limit. The checkpoints it calls (``ftbook.exercises.check``)
append their verdicts to a log outside that copy (``FTBOOK_GRADE_LOG``); the items expected of a
notebook are every checkpoint registered for the lab or project it belongs to (``lab06``,
``midterm``: read from the file name, else from the ``check("lab06.t1", ...)`` calls in it).

``grades.csv`` has one row per student, notebook and item: ``student, notebook, item, level,
points, max_points, status, detail`` with ``status`` one of ``pass``, ``fail`` (the checker's
message in ``detail``), ``missing`` (never checked: the cell was deleted, not run, or an earlier
cell raised - the first error is in ``detail``), ``timeout`` (the notebook ran out of time before
the item was checked) or ``error`` (the kernel died, e.g. ``os._exit``; or the notebook could not be
read or recognised). Verdicts reached before a timeout or a crash still count. A summary with each
student's total is written beside it (``grades_summary.csv``).

What this contains is accidents - an infinite loop, a ``sys.exit()``, a cell that deletes files, a
notebook that is not JSON - not a determined cheater: code in a student's notebook runs with the
grader's rights and could forge the log. Run it in a container or as an unprivileged user, and read
the notebooks you grade.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

FIELDS = ("student", "notebook", "item", "level", "points", "max_points", "status", "detail")
PREFIX_RE = re.compile(r"(?<![A-Za-z0-9])(lab\d\d|ch\d\d|midterm|final)(?![0-9])")
CHECK_RE = re.compile(r"""check\(\s*\\?["']((?:lab\d\d|ch\d\d|midterm|final))\.""")  # \" in JSON


@dataclass
class Submission:
    student: str
    notebook: Path  # the notebook inside the student's folder (or alone)
    folder: Path | None  # copied whole into the sandbox; None: only the notebook is copied


@dataclass
class RunResult:
    verdicts: dict[str, dict] = field(default_factory=dict)  # item id -> last logged verdict
    errors: list[str] = field(default_factory=list)  # "单元格 3：NameError: x" (first few)
    fatal: str | None = None  # why the run stopped early: timeout, dead kernel, unreadable
    timed_out: bool = False
    seconds: float = 0.0


def find_submissions(root: str | Path) -> list[Submission]:
    """Top-level ``*.ipynb`` (student = stem) and ``<student>/*.ipynb`` of ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SUBMISSIONS_DIR {root} is not a folder")
    subs = [Submission(p.stem, p, None) for p in sorted(root.glob("*.ipynb"))]
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        subs += [Submission(folder.name, p, folder) for p in sorted(folder.glob("*.ipynb"))]
    if not subs:
        raise FileNotFoundError(f"no notebooks in {root} (expected NAME.ipynb or NAME/*.ipynb)")
    return subs


def prefixes_of(path: Path) -> list[str]:
    """The labs / projects a notebook belongs to: from its name, else from its ``check`` calls."""
    found = PREFIX_RE.findall(path.stem)
    if not found:
        try:
            found = CHECK_RE.findall(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            found = []
    return sorted(set(found))


def _run_child(notebook: Path, log: Path, result: Path, pidfile: Path, cell_timeout: int) -> None:
    """In the child process: execute ``notebook`` in a fresh kernel in its folder; write
    ``result`` (errors and why it stopped). Verdicts go to ``log`` as the cells run."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    os.environ["FTBOOK_GRADE_LOG"] = str(log)
    out: dict = {"errors": [], "fatal": None, "timed_out": False}
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # not JSON, not a notebook: a verdict on the submission
        out["fatal"] = f"无法读取笔记本：{type(exc).__name__}: {str(exc)[:200]}"
        result.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
        return
    client = NotebookClient(nb, timeout=cell_timeout, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    client.on_notebook_start = lambda **kw: pidfile.write_text(str(client.km.provisioner.pid))
    try:
        client.execute()
    except CellTimeoutError:
        out["fatal"], out["timed_out"] = f"单元格超时（>{cell_timeout} 秒）", True
    except DeadKernelError:
        out["fatal"] = "内核中途退出（例如调用了 os._exit 或内存耗尽）"
    except Exception as exc:
        out["fatal"] = f"执行失败：{type(exc).__name__}: {str(exc)[:200]}"
    out["errors"] = _cell_errors(nb)
    result.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")


def _cell_errors(nb) -> list[str]:
    errors = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                errors.append(f"单元格 {i}：{o.get('ename')}: {str(o.get('evalue'))[:160]}")
    return errors[:5]


def _kill(proc: subprocess.Popen, pidfile: Path) -> None:
    """Kill the child's process group and the kernel's (it runs in a session of its own)."""
    pids = [proc.pid]
    if pidfile.exists() and pidfile.read_text().strip().isdigit():
        pids.append(int(pidfile.read_text()))
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def run_notebook(sub: Submission, timeout: int = 300, threads: int = 1) -> RunResult:
    """Run one submission in a sandbox copy, in a child process killed after ``timeout`` s."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ftbook-grade-") as tmp:
        tmp = Path(tmp)
        box, private = tmp / "work", tmp / "grader"
        private.mkdir()
        if sub.folder is not None:
            shutil.copytree(sub.folder, box, symlinks=True)
            notebook = box / sub.notebook.relative_to(sub.folder)
        else:
            box.mkdir()
            notebook = box / sub.notebook.name
            shutil.copyfile(sub.notebook, notebook)
        log, result, pidfile = private / "log.jsonl", private / "result.json", private / "kernel.pid"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   MPLBACKEND="Agg", PYTHONHASHSEED="0")
        env.pop("FTBOOK_GRADE_LOG", None)
        cmd = [sys.executable, "-m", "ftbook.grading", "--child", str(notebook), str(log),
               str(result), str(pidfile), str(max(10, timeout - 15))]
        proc = subprocess.Popen(cmd, cwd=box, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        res = RunResult()
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc, pidfile)
            res.fatal, res.timed_out, stderr = f"超过 {timeout} 秒的总时限，已终止", True, b""
        _kill(proc, pidfile)  # the kernel may outlive a child that exited early
        _read_result(res, result, log, proc.returncode, stderr)
    res.seconds = time.perf_counter() - t0
    return res


def _read_result(res: RunResult, result: Path, log: Path, returncode: int, stderr: bytes) -> None:
    if result.exists():
        data = json.loads(result.read_text(encoding="utf-8"))
        res.errors = data["errors"]
        res.fatal = res.fatal or data["fatal"]
        res.timed_out = res.timed_out or data["timed_out"]
    elif res.fatal is None:  # the child itself died (e.g. killed for memory)
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if stderr else []
        res.fatal = f"评分进程异常退出（返回码 {returncode}）" + (f"：{tail[0][:200]}" if tail else "")
    if log.exists():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                res.verdicts[str(record["id"])] = record
            except (ValueError, KeyError, TypeError):
                res.errors.append(f"评分日志中有无法解析的一行：{line[:80]!r}")


def grade_rows(sub: Submission, res: RunResult, prefixes: list[str]) -> list[dict]:
    """One row per item expected of ``sub`` (registered checkpoints) or logged by it."""
    from . import exercises

    expected: dict[str, exercises.Exercise] = {}
    for prefix in prefixes:
        expected.update({e.id: e for e in exercises.registered(prefix)})
    base = {"student": sub.student, "notebook": sub.notebook.name}
    if not expected and not res.verdicts:
        why = res.fatal or "无法识别作业：文件名和 check(...) 调用中都没有 labNN / midterm / final"
        return [dict(base, item="-", level="", points=0, max_points=0, status="error", detail=why)]
    rows = []
    for item in sorted(set(expected) | set(res.verdicts), key=_natural):
        ex, verdict = expected.get(item), res.verdicts.get(item)
        level = ex.level if ex else (verdict or {}).get("level")
        max_points = ex.points if ex else int((verdict or {}).get("points", 1))
        if verdict is not None:
            status, detail = ("pass", "") if verdict.get("ok") else ("fail", verdict.get("message", ""))
        elif res.timed_out:
            status, detail = "timeout", res.fatal
        elif res.fatal:
            status, detail = "error", res.fatal
        else:
            status = "missing"
            detail = "没有运行到这个检查" + (f"（{res.errors[0]}）" if res.errors else "")
        rows.append(dict(base, item=item, level=level or "", max_points=max_points, status=status,
                         points=max_points if status == "pass" else 0, detail=detail))
    return rows


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def grade(root: str | Path, out: str | Path, timeout: int = 300, workers: int = 2,
          progress: bool = True) -> list[dict]:
    """Grade every submission under ``root``; write ``out`` (CSV) and ``<out>_summary.csv``."""
    if timeout < 20:
        raise ValueError(f"timeout must be at least 20 seconds (a kernel takes a few to start), got {timeout}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    subs = find_submissions(root)
    threads = max(1, (os.cpu_count() or 1) // workers)

    def one(sub: Submission) -> list[dict]:
        res = run_notebook(sub, timeout=timeout, threads=threads)
        if progress:
            got = sum(v.get("ok", False) for v in res.verdicts.values())
            print(f"{sub.student}/{sub.notebook.name}: {got} 项通过，{res.seconds:.0f} 秒"
                  + (f"；{res.fatal}" if res.fatal else ""), flush=True)
        return grade_rows(sub, res, prefixes_of(sub.notebook))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = [r for rs in pool.map(one, subs) for r in rs]
    write_csv(rows, out)
    return rows


def write_csv(rows: list[dict], out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    totals: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        t = totals.setdefault((r["student"], r["notebook"]), [0, 0, 0])
        t[0] += int(r["points"])
        t[1] += int(r["max_points"])
        t[2] += r["status"] in ("timeout", "error")
    summary = out.with_name(out.stem + "_summary.csv")
    with open(summary, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "notebook", "points", "max_points", "problems"])
        writer.writerows([s, n, p, m, k] for (s, n), (p, m, k) in sorted(totals.items()))
    return out, summary


def add_parser(sub) -> None:
    """The ``grade`` sub-command of ``python -m ftbook course``."""
    g = sub.add_parser("grade", help="run and grade a folder of student notebooks")
    g.add_argument("submissions", help="folder of NAME.ipynb or NAME/*.ipynb")
    g.add_argument("--out", default="grades.csv", help="CSV to write (default grades.csv)")
    g.add_argument("--timeout", type=int, default=300, help="seconds per notebook (default 300)")
    g.add_argument("--workers", type=int, default=2, help="notebooks graded at once (default 2)")


def run_cli(args) -> int:
    try:
        rows = grade(args.submissions, args.out, timeout=args.timeout, workers=args.workers)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    students = len({r["student"] for r in rows})
    passed = sum(r["status"] == "pass" for r in rows)
    print(f"graded {students} students, {len(rows)} items ({passed} pass); wrote {args.out}")
    return 0


if __name__ == "__main__":  # the child process of run_notebook; users call `ftbook course grade`
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 7:
        sys.exit("usage: python -m ftbook course grade SUBMISSIONS_DIR --out grades.csv")
    nb_path, log_path, result_path, pid_path, cell_t = sys.argv[2:7]
    _run_child(Path(nb_path), Path(log_path), Path(result_path), Path(pid_path), int(cell_t))
