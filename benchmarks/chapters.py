"""Execute each chapter in a fresh kernel and print a table: chapter, wall seconds, peak RSS.

    python benchmarks/chapters.py                 # every chapters/*.ipynb
    python benchmarks/chapters.py 06 07           # chapters whose file name starts with 06 / 07
    python benchmarks/chapters.py --write 03      # also store the fresh outputs in the notebook

Peak RSS is the kernel process tree's, sampled every 0.2 s with psutil. The machine is shared
and noisy: compare rows from one run, never assert on these figures in tests.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"


class PeakRSS(threading.Thread):
    """Poll the RSS of a process and its children; keep the maximum (bytes)."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.proc, self.every, self.peak, self._stop_evt = psutil.Process(pid), every, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            self._stop_evt.wait(self.every)

    def stop(self) -> int:
        self._stop_evt.set()
        self.join()
        return self.peak


def run_notebook(path: Path, timeout: int = 1800, write: bool = False) -> tuple[float, int, str]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    status = "ok"
    start = time.perf_counter()
    with client.setup_kernel():
        monitor = PeakRSS(client.km.provisioner.process.pid)
        monitor.start()
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            client.set_widgets_metadata()  # store widget state, so static pages can show widgets
        except Exception as exc:  # report and go on with the next chapter
            status = f"FAILED: {type(exc).__name__} (details on stderr)"
            print(f"--- {path.name} failed:\n" + "\n".join(str(exc).splitlines()[-25:]), file=sys.stderr)
        finally:
            peak = monitor.stop()
    wall = time.perf_counter() - start
    if write and status == "ok":
        nbformat.write(nb, path)
    return wall, peak, status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="file-name prefixes (default: all)")
    ap.add_argument("--write", action="store_true", help="store the fresh outputs in the notebooks")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    paths = sorted(CHAPTERS.glob("*.ipynb"))
    if args.chapters:
        paths = [p for p in paths if any(p.name.startswith(c) for c in args.chapters)]
    if not paths:
        print(f"no chapter matches {args.chapters}", file=sys.stderr)
        return 2
    print(f"{'chapter':<32} {'wall s':>8} {'peak RSS MB':>12}  status")
    total, failed = 0.0, 0
    for path in paths:
        wall, peak, status = run_notebook(path, args.timeout, args.write)
        total += wall
        failed += status != "ok"
        print(f"{path.name:<32} {wall:8.1f} {peak / 2**20:12.0f}  {status}", flush=True)
    print(f"{'total':<32} {total:8.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
