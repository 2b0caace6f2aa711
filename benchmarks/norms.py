"""From-scratch LayerNorm / RMSNorm vs PyTorch's kernels on BERT-like shapes, as ratios from one run.

    python benchmarks/norms.py            # sizes of the tiny profile: (8, 128, 768)
    FTBOOK_PROFILE=full python benchmarks/norms.py

Two figures per implementation:
* forward+backward time (median of ``bench_repeats`` runs, after a warm-up), and its ratio to
  ``torch.nn.functional.layer_norm`` (resp. ``rms_norm``);
* memory kept for the backward pass: the bytes of every tensor autograd saves (the input itself
  excluded, it is alive anyway), counted with ``torch.autograd.graph.saved_tensors_hooks`` (exact
  and deterministic, unlike process RSS), and its ratio to the input's size.

Timings on a shared machine are noisy: compare the ratios of one run, never assert on them.
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


def saved_bytes(fn, x, w, b) -> int:
    """Bytes of the tensors autograd keeps for backward when running ``fn`` once."""
    total = 0
    seen: set[int] = set()

    def pack(t):
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen and key not in (x.untyped_storage().data_ptr(),):
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, w, b)
    # the input itself is alive anyway (it belongs to the previous layer); count it once if saved
    return total


def time_fwd_bwd(fn, x, w, b, repeats: int) -> float:
    g = torch.randn_like(x)
    for _ in range(3):
        fn(x, w, b).backward(g)
    times = []
    for _ in range(repeats):
        x.grad = w.grad = None
        if b is not None:
            b.grad = None
        t0 = time.perf_counter()
        fn(x, w, b).backward(g)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    import argparse

    import ftbook.norms  # noqa: F401  (registers the sizes)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine, more threads mostly measure contention)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    sizes = get_profile().sizes("norms")
    shape = (sizes.batch, sizes.seq, sizes.hidden)
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(sizes.hidden, requires_grad=True)
    b = torch.randn(sizes.hidden, requires_grad=True)
    ns = (sizes.hidden,)
    cases = {
        "F.layer_norm (torch kernel)": lambda x, w, b: F.layer_norm(x, ns, w, b),
        "ftbook layer_norm (autograd)": lambda x, w, b: layer_norm(x, ns, w, b),
        "ftbook layer_norm_manual": lambda x, w, b: layer_norm_manual(x, ns, w, b),
        "ftbook layer_norm_one_pass": lambda x, w, b: layer_norm_one_pass(x, ns, w, b),
        "F.rms_norm (torch)": lambda x, w, b: F.rms_norm(x, ns, w),
        "ftbook rms_norm": lambda x, w, b: rms_norm(x, ns, w),
    }
    print(f"shape {shape}, float32, {torch.get_num_threads()} threads, median of {sizes.bench_repeats}")
    print(f"{'implementation':<30} {'fwd+bwd ms':>10} {'x torch':>8} {'saved MB':>9} {'x input':>8}")
    base_t = None
    x_bytes = x.numel() * x.element_size()
    for name, fn in cases.items():
        t = time_fwd_bwd(fn, x, w, b, sizes.bench_repeats)
        m = saved_bytes(fn, x, w, b)
        if base_t is None or name.startswith("F.rms_norm"):
            base_t = t  # time ratios against the torch twin of each family
        print(f"{name:<30} {t * 1e3:10.2f} {t / base_t:8.2f} {m / 2**20:9.2f} {m / x_bytes:8.2f}", flush=True)
    print(f"input tensor: {x.numel() * 4 / 2**20:.2f} MB (not counted: it is alive anyway)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
