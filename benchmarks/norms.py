"""From-scratch LayerNorm / RMSNorm vs PyTorch's kernels, as ratios measured in one run.

    python benchmarks/norms.py            # tiny profile: 1024 rows x hidden 256 / 768 / 2048
    python benchmarks/norms.py --hidden 768 4096 --repeats 50
    FTBOOK_PROFILE=full python benchmarks/norms.py

How the times are taken, so that the ratios mean something on a shared, noisy machine:
* every implementation gets the same input (float32 unless ``--dtype``), the same weight and the
  same upstream gradient;
* each is warmed up first (allocator, first-call dispatch), then the repeats are *interleaved*:
  round r runs every implementation once, in an order rotated each round, so a burst of load
  from another process hits all of them alike instead of the one that happened to run then;
* the figure is the median over the rounds, for the forward pass alone (``torch.no_grad``, as
  in inference) and for forward + backward (training); ratios are to ``F.layer_norm``'s time
  measured in the same rounds;
* with one torch thread (the default) the clock is this thread's CPU time (``time.thread_time``):
  every operation, the CPU backward pass included, runs in the calling thread, and CPU time does
  not count the time the process waits while other processes have the core, which on a busy
  machine is most of the wall time. With ``--threads`` > 1 the clock is wall time
  (``time.perf_counter``), since the work is spread over threads.

Memory kept for the backward pass is exact and deterministic: the bytes of every tensor autograd
saves (the input itself excluded, it is alive anyway), counted with
``torch.autograd.graph.saved_tensors_hooks``, as a ratio to the input's size.

Timings vary from run to run: compare the ratios of one run, never assert on them.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ftbook.config import get_profile  # noqa: E402
from ftbook.norms import layer_norm, layer_norm_manual, layer_norm_one_pass, rms_norm  # noqa: E402

CASES = {  # name -> fn(x, w, b, normalized_shape)
    "F.layer_norm (torch kernel)": lambda x, w, b, ns: F.layer_norm(x, ns, w, b),
    "ftbook layer_norm (autograd)": lambda x, w, b, ns: layer_norm(x, ns, w, b),
    "ftbook layer_norm_manual": lambda x, w, b, ns: layer_norm_manual(x, ns, w, b),
    "ftbook layer_norm_one_pass": lambda x, w, b, ns: layer_norm_one_pass(x, ns, w, b),
    "F.rms_norm (torch)": lambda x, w, b, ns: F.rms_norm(x, ns, w),
    "ftbook rms_norm": lambda x, w, b, ns: rms_norm(x, ns, w),
}
BASELINE = "F.layer_norm (torch kernel)"


def saved_bytes(fn, x, w, b, ns) -> int:
    """Bytes of the tensors autograd keeps for backward when running ``fn`` once (input excluded)."""
    total = 0
    seen: set[int] = {x.untyped_storage().data_ptr()}

    def pack(t):
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, w, b, ns)
    return total


def _clear(*tensors) -> None:
    for t in tensors:
        t.grad = None


CLOCK = {"cpu": time.thread_time, "wall": time.perf_counter}
_clock = CLOCK["cpu"]


def _fwd(fn, x, w, b, ns, g) -> float:
    with torch.no_grad():
        t0 = _clock()
        fn(x, w, b, ns)
        return _clock() - t0


def _fwd_bwd(fn, x, w, b, ns, g) -> float:
    _clear(x, w, b)
    t0 = _clock()
    fn(x, w, b, ns).backward(g)
    return _clock() - t0


def time_interleaved(cases: dict, x, w, b, ns, repeats: int, warmup: int = 3) -> dict[str, tuple[float, float]]:
    """Median seconds (forward, forward+backward) of every case, measured in interleaved rounds."""
    g = torch.randn_like(x)
    names = list(cases)
    for name in names:  # warm-up: first calls allocate and dispatch
        for _ in range(warmup):
            _fwd(cases[name], x, w, b, ns, g)
            _fwd_bwd(cases[name], x, w, b, ns, g)
    times: dict[str, tuple[list, list]] = {name: ([], []) for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate: no case always runs first
        for name in order:
            times[name][0].append(_fwd(cases[name], x, w, b, ns, g))
            times[name][1].append(_fwd_bwd(cases[name], x, w, b, ns, g))
    return {name: (statistics.median(f), statistics.median(fb)) for name, (f, fb) in times.items()}


def inputs(rows: int, hidden: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, hidden, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(hidden, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(hidden, generator=g, dtype=dtype).requires_grad_()
    return x, w, b


def print_times(rows: int, hidden: int, dtype: torch.dtype, repeats: int) -> dict[str, tuple[float, float]]:
    x, w, b = inputs(rows, hidden, dtype)
    res = time_interleaved(CASES, x, w, b, (hidden,), repeats)
    base_f, base_fb = res[BASELINE]
    print(f"\n({rows}, {hidden}) {str(dtype).replace('torch.', '')}")
    print(f"{'implementation':<30} {'fwd ms':>8} {'x F.ln':>7} {'fwd+bwd ms':>11} {'x F.ln':>7}")
    for name, (tf, tfb) in res.items():
        print(f"{name:<30} {tf * 1e3:8.3f} {tf / base_f:7.2f} {tfb * 1e3:11.3f} {tfb / base_fb:7.2f}")
    return res


def print_memory(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    w = torch.randn(shape[-1], dtype=dtype, requires_grad=True)
    b = torch.randn(shape[-1], dtype=dtype, requires_grad=True)
    x_bytes = x.numel() * x.element_size()
    print(f"\nmemory saved for backward, input {tuple(shape)} ({x_bytes / 2**20:.2f} MB, not counted: it is alive anyway)")
    print(f"{'implementation':<30} {'saved MB':>9} {'x input':>8}")
    for name, fn in CASES.items():
        m = saved_bytes(fn, x, w, b, (shape[-1],))
        print(f"{name:<30} {m / 2**20:9.2f} {m / x_bytes:8.2f}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    import ftbook.norms  # noqa: F401  (registers the sizes)

    sizes = get_profile().sizes("norms")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine, more threads mostly measure contention)")
    ap.add_argument("--rows", type=int, default=sizes.batch * sizes.seq, help="tokens per batch (batch x seq)")
    ap.add_argument("--hidden", type=int, nargs="+", default=list(sizes.bench_hidden), help="hidden sizes to time")
    ap.add_argument("--repeats", type=int, default=sizes.bench_repeats, help="interleaved rounds (median taken)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--clock", choices=sorted(CLOCK), default=None,
                    help="cpu: this thread's CPU time (default with 1 thread); wall: elapsed time (default otherwise)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    global _clock
    _clock = CLOCK[clock]

    print(f"{torch.get_num_threads()} thread(s), {clock} time, median of {args.repeats} interleaved rounds after "
          "warm-up; times vary from run to run, compare the ratios within one table")
    summary = []
    for hidden in args.hidden:
        res = print_times(args.rows, hidden, dtype, args.repeats)
        rms, ln = res["F.rms_norm (torch)"], res[BASELINE]
        summary.append((hidden, rms[0] / ln[0], rms[1] / ln[1]))
    print("\nF.rms_norm time / F.layer_norm time (same run):")
    for hidden, r_f, r_fb in summary:
        print(f"  hidden {hidden:>5}: forward {r_f:5.2f}   forward+backward {r_fb:5.2f}")
    print_memory((sizes.batch, sizes.seq, sizes.hidden), dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
