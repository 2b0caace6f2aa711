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


def test_pool_is_kept_between_calls_and_can_be_shut_down():
    import os

    first = set(workers.run_all(os.getpid, [((), {})] * 4, workers=2))
    again = set(workers.run_all(os.getpid, [((), {})] * 4, workers=2))
    assert os.getpid() not in first and again <= first  # the same worker processes, not new ones
    workers.shutdown_pool()
    assert not set(workers.run_all(os.getpid, [((), {})] * 2, workers=2)) & first  # fresh ones
    workers.shutdown_pool()
    workers.shutdown_pool()  # a second call is harmless


def test_a_dead_worker_is_a_clear_error_and_the_next_call_works():
    import os

    with pytest.raises(RuntimeError, match="died.*restarted"):
        workers.run_all(os._exit, [((3,), {}), ((3,), {})], workers=2, names=["crash", "crash 2"])
    assert workers.run_all(_train_from_kwargs, _runs(), workers=2) == workers.run_all(
        _train_from_kwargs, _runs(), workers=1)


def test_a_worker_killed_while_idle_is_replaced():
    import os
    import signal

    pids = set(workers.run_all(os.getpid, [((), {})] * 2, workers=2))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    import time

    time.sleep(0.5)  # let the pool notice
    assert workers.run_all(os.getpid, [((), {})] * 2, workers=2)  # no error: a new pool


def test_idle_workers_ignore_ctrl_c():
    import os
    import signal
    import time

    workers.shutdown_pool()
    pids = set(workers.run_all(os.getpid, [((), {})] * 2, workers=2))
    for pid in pids:
        os.kill(pid, signal.SIGINT)  # what Jupyter's interrupt sends to the kernel's process group
    time.sleep(0.5)
    assert set(workers.run_all(os.getpid, [((), {})] * 4, workers=2)) <= pids  # still the same workers
    workers.shutdown_pool()
