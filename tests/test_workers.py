"""ftbook.workers: parallel runs give exactly the serial results; bad input is a clear error."""

import pytest
import torch

from ftbook import workers
from ftbook.tricks import _train_from_kwargs

TINY = {"vocab": 8, "seq_len": 6, "d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 32}


def _runs():
    return [((dict(cfg=TINY, lr=lr, steps=6, batch=8, seed=seed),), {}) for lr, seed in ((1e-3, 0), (3e-3, 1), (1e-2, 2))]


def test_parallel_equals_serial_exactly():
    serial = workers.run_all(_train_from_kwargs, _runs(), workers=1)
    parallel = workers.run_all(_train_from_kwargs, _runs(), workers=2)
    assert serial == parallel  # one thread per run in both: bit-identical losses
    assert len(serial) == 3 and serial[0]["losses"] != serial[1]["losses"]  # order kept, runs differ


def test_serial_restores_thread_count():
    before = torch.get_num_threads()
    workers.run_all(_train_from_kwargs, _runs()[:1], workers=1)
    assert torch.get_num_threads() == before


def test_one_thread_restores():
    before = torch.get_num_threads()
    with workers.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_error_in_a_worker_names_the_task():
    bad = [((dict(cfg=TINY, lr=-1.0, steps=2, batch=4),), {})]
    with pytest.raises(RuntimeError, match="lr=-1 failed in a worker.*lr must be a positive"):
        workers.run_all(_train_from_kwargs, _runs()[:1] + bad, workers=2, names=["ok", "lr=-1"])


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_workers(value):
    with pytest.raises(ValueError, match="workers"):
        workers.run_all(_train_from_kwargs, _runs(), workers=value)


def test_bad_tasks_and_names():
    with pytest.raises(TypeError, match="args tuple, kwargs dict"):
        workers.run_all(_train_from_kwargs, [({"lr": 1},)], workers=1)
    with pytest.raises(ValueError, match="2 names for 3 tasks"):
        workers.run_all(_train_from_kwargs, _runs(), workers=1, names=["a", "b"])


def test_default_workers(monkeypatch):
    monkeypatch.delenv("FTBOOK_WORKERS", raising=False)
    assert 1 <= workers.default_workers() <= 2
    monkeypatch.setenv("FTBOOK_WORKERS", "3")
    assert workers.default_workers() == 3
    monkeypatch.setenv("FTBOOK_WORKERS", "zero")
    with pytest.raises(ValueError, match="FTBOOK_WORKERS must be a positive integer"):
        workers.default_workers()


def _pool():
    """The kept executor, and the pids of its worker processes (the pool's state, not which
    worker happened to run a task: that depends on timing)."""
    executor = workers._POOL["executor"]
    return executor, set(executor._processes)


def test_pool_is_kept_between_calls_and_can_be_shut_down():
    import os

    first = set(workers.run_all(os.getpid, [((), {})] * 4, workers=2))
    pool, pids = _pool()
    assert os.getpid() not in first and first <= pids and 1 <= len(pids) <= 2
    processes = list(pool._processes.values())
    again = set(workers.run_all(os.getpid, [((), {})] * 4, workers=2))
    same, now = _pool()
    assert same is pool and pids <= now and again <= now  # the same worker processes, not new ones
    assert len(now) <= 2
    workers.shutdown_pool()
    assert "executor" not in workers._POOL
    assert not any(p.is_alive() for p in processes)  # shutdown waits for them to end
    workers.shutdown_pool()  # a second call is harmless
    fresh = set(workers.run_all(os.getpid, [((), {})] * 2, workers=2))
    new, new_pids = _pool()
    assert new is not pool and fresh <= new_pids  # fresh ones (kept for the next tests)


def test_a_dead_worker_is_a_clear_error_and_the_next_call_works():
    import os

    with pytest.raises(RuntimeError, match="died.*restarted"):
        workers.run_all(os._exit, [((3,), {}), ((3,), {})], workers=2, names=["crash", "crash 2"])
    assert workers.run_all(_train_from_kwargs, _runs(), workers=2) == workers.run_all(
        _train_from_kwargs, _runs(), workers=1)


def test_a_worker_killed_while_idle_is_replaced():
    import os
    import signal

    workers.run_all(os.getpid, [((), {})] * 2, workers=2)
    pool, _ = _pool()
    processes = list(pool._processes.values())
    for proc in processes:
        os.kill(proc.pid, signal.SIGKILL)
    for proc in processes:
        proc.join()  # surely dead now; the executor's own thread may not have noticed yet
    again = set(workers.run_all(os.getpid, [((), {})] * 2, workers=2))  # no error: a new pool
    new, new_pids = _pool()
    assert new is not pool and again <= new_pids


def _ignores_sigint(pid: int) -> bool:
    import signal
    from pathlib import Path

    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("reading a process's ignored signals needs Linux's /proc")
    line = next(l for l in status.read_text().splitlines() if l.startswith("SigIgn:"))
    return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)


def test_idle_workers_ignore_ctrl_c():
    import os
    import signal

    ran = set(workers.run_all(os.getpid, [((), {})] * 2, workers=2))
    pool, _ = _pool()
    for pid in ran:  # a worker that ran a task has run the pool's initializer
        assert _ignores_sigint(pid), pid
        os.kill(pid, signal.SIGINT)  # what Jupyter's interrupt sends; ignored: discarded at once
    again = set(workers.run_all(os.getpid, [((), {})] * 4, workers=2))
    same, pids = _pool()
    assert same is pool and ran <= pids and again <= pids  # still the same workers
    assert all(p.is_alive() for p in pool._processes.values())
    workers.shutdown_pool()
