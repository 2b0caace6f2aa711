"""Inference throughput of ftbook.transformer.Encoder vs transformers.BertModel (same weights, same input).

    python benchmarks/encoder.py [--batch 32] [--seq 128] [--repeats 5]

Loads the packaged pretrained MiniLM (6 layers, hidden 384), copies it into our encoder (SDPA and
explicit attention), checks the outputs agree, then times each model on the same padded batch,
interleaved, best of ``repeats``. Prints sequences/s and the ratios measured in this one run; the
machine is shared, so compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import time

import torch


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    from transformers import BertModel

    from ftbook.resources import minilm_path
    from ftbook.transformer import Encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    hf = BertModel.from_pretrained(minilm_path()).eval()
    models = {
        "transformers.BertModel": lambda ids, m: hf(input_ids=ids, attention_mask=m).last_hidden_state,
    }
    for impl in ("sdpa", "explicit"):
        enc = Encoder.from_hf(hf, attn_impl=impl).eval()
        models[f"ftbook Encoder ({impl})"] = (lambda e: lambda ids, m: e(ids, m))(enc)
    ids = torch.randint(1000, 30000, (args.batch, args.seq))
    lengths = torch.linspace(args.seq // 4, args.seq, args.batch).long()
    mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()  # padded batch
    with torch.inference_mode():
        ref = models["transformers.BertModel"](ids, mask)
        for name, fn in models.items():
            diff = (fn(ids, mask) - ref)[mask.bool()].abs().max().item()
            print(f"{name:<28} max |diff| on real tokens vs BertModel: {diff:.2e}")
        times = {name: [] for name in models}
        for _ in range(args.repeats):  # interleave so load changes hit every model alike
            for name, fn in models.items():
                times[name].append(best_time(lambda: fn(ids, mask), 1))
    base = min(times["transformers.BertModel"])
    print(f"\nbatch {args.batch} x seq {args.seq}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'model':<28} {'seq/s':>8} {'ratio vs BertModel':>20}")
    for name, ts in times.items():
        t = min(ts)
        print(f"{name:<28} {args.batch / t:8.1f} {base / t:20.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
