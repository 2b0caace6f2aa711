"""Independent training runs in parallel worker processes, one torch thread each.

Used by the cached experiments that train several small models side by side: chapter 9's label
budgets (:func:`ftbook.label_budgets.run_experiment`), chapter 11's learning-rate x warm-up
search (:func:`ftbook.evaluation.lr_warmup_search`) and chapter 17's FAQ experiments
(:mod:`ftbook.faq`).

Why processes: a model this small keeps one core busy but gains little from a second intra-op
thread, so on the book's 2-core machine two single-threaded runs side by side finish about twice
as fast as the same runs one after another with two threads each. Every run seeds itself and
runs with exactly one thread whether it is in a worker or in this process, so the results do not
depend on ``workers`` (tested).

The worker processes are kept between calls (:func:`shutdown_pool` ends them; so does the end of
the Python process): starting one means a fresh interpreter importing torch and transformers,
seconds that chapters with several experiments would otherwise pay for each of them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from typing import Any, Callable, Sequence

__all__ = ["default_workers", "one_thread", "run_all", "shutdown_pool"]

_POOL: dict = {}  # {"workers": int, "executor": ProcessPoolExecutor} while a pool is alive


def default_workers() -> int:
    """``FTBOOK_WORKERS`` if set, else the number of usable cores, at most 2."""
    value = os.environ.get("FTBOOK_WORKERS")
    if value is not None:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"FTBOOK_WORKERS must be a positive integer, got {value!r}")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


@contextlib.contextmanager
def one_thread():
    """Run the block with one intra-op torch thread (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _call(fn: Callable, args: tuple, kwargs: dict):
    import datasets
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    # a worker's output would land in the middle of the notebook's: keep loading reports and
    # progress bars (transformers' and datasets' "Map") quiet; errors still come back as exceptions
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    return fn(*args, **kwargs)


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent: Jupyter's interrupt (SIGINT to the kernel's process
    group) reaches :func:`run_all`, which stops them; idle workers would only print a traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _healthy(executor) -> bool:
    """False when the pool is broken or one of its processes has ended since the last call.

    A worker killed while idle (e.g. for memory) is noticed by the executor's own thread some
    time later; a task submitted before that would fail. A process's sentinel is ready as soon
    as the process has ended, so looking at them is immediate.
    """
    from multiprocessing.connection import wait

    if getattr(executor, "_broken", False):
        return False
    processes = list((getattr(executor, "_processes", None) or {}).values())  # no public API
    try:
        return not wait([p.sentinel for p in processes], timeout=0)
    except (OSError, ValueError):  # a handle already closed: the process is gone
        return False


def _executor(workers: int):
    """The kept pool of ``workers`` spawn processes (a new one if the size changed or a worker died)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    executor = _POOL.get("executor")
    healthy = executor is not None and _healthy(executor)
    if healthy and _POOL.get("workers") == workers:
        return executor
    shutdown_pool(kill=not healthy)  # a dead worker's pool: stop the others rather than wait
    _POOL["executor"] = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                            initializer=_ignore_interrupts)
    _POOL["workers"] = workers
    return _POOL["executor"]


def shutdown_pool(kill: bool = False) -> None:
    """End the kept worker processes (``kill=True``: without waiting for running tasks)."""
    executor = _POOL.pop("executor", None)
    _POOL.pop("workers", None)
    if executor is None:
        return
    if kill:
        for proc in list(getattr(executor, "_processes", {}).values()):  # no public API for this
            proc.terminate()
    executor.shutdown(wait=not kill, cancel_futures=True)


atexit.register(shutdown_pool)  # a no-op when no pool is alive


def run_all(fn: Callable, tasks: Sequence[tuple[tuple, dict]], workers: int | None = None,
            log: Callable[[str], None] | None = None, names: Sequence[str] | None = None) -> list[Any]:
    """``[fn(*args, **kwargs) for args, kwargs in tasks]``, in up to ``workers`` processes.

    ``fn`` must be importable by name (a module-level function) and its arguments picklable, since
    workers are fresh ``spawn`` processes (safe under Jupyter and with torch). Results come back in
    task order. ``workers=None`` uses :func:`default_workers`; ``1`` runs in this process. An error
    in any run is raised here, naming the task.
    """
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    tasks = list(tasks)
    if names is None:
        names = [f"task {i}" for i in range(len(tasks))]
    if len(names) != len(tasks):
        raise ValueError(f"got {len(names)} names for {len(tasks)} tasks")
    for i, task in enumerate(tasks):
        if not (isinstance(task, tuple) and len(task) == 2 and isinstance(task[0], tuple)
                and isinstance(task[1], dict)):
            raise TypeError(f"{names[i]}: each task must be an (args tuple, kwargs dict) pair, got {task!r:.80}")
    workers = min(workers, max(1, len(tasks)))
    results: list[Any] = []
    if workers == 1:
        with one_thread():
            for name, (args, kwargs) in zip(names, tasks):
                results.append(fn(*args, **kwargs))
                if log:
                    log(f"[ftbook] {name} done")
        return results

    from concurrent.futures.process import BrokenProcessPool

    def submit_all() -> list:
        pool = _executor(workers)
        return [pool.submit(_call, fn, args, kwargs) for args, kwargs in tasks]

    try:
        futures = submit_all()
    except BrokenProcessPool:  # a kept worker died while idle (e.g. killed for memory): start afresh
        shutdown_pool(kill=True)
        futures = submit_all()
    try:
        for name, fut in zip(names, futures):
            try:
                results.append(fut.result())
            except BrokenProcessPool as exc:  # a worker died (out of memory, killed): start afresh next time
                shutdown_pool(kill=True)
                raise RuntimeError(f"{name}: a worker process died ({exc}); the pool is restarted on the next call") from exc
            except Exception as exc:
                raise RuntimeError(f"{name} failed in a worker process: {type(exc).__name__}: {exc}") from exc
            if log:
                log(f"[ftbook] {name} done")
    except BaseException:
        # an error or an interrupt (Ctrl-C in Jupyter): the rest of this call's runs are not wanted
        for fut in futures:
            fut.cancel()
        if any(not fut.done() for fut in futures):  # still running: stop them rather than wait
            shutdown_pool(kill=True)
        raise
    return results
