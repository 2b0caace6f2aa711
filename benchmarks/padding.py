"""Padding waste and throughput: pad-to-max vs dynamic padding vs length buckets (chapter 3).

    python benchmarks/padding.py                      # 1024 cleaned Chinese reviews, MiniLM, batch 32
    python benchmarks/padding.py --texts 512 --max-length 256 --batch-size 16

The model is the packaged all-MiniLM-L6-v2 (a real 6-layer BERT), forward pass only
(inference mode), on the bundled Chinese reviews tokenised by its own tokenizer (the token values
do not change the cost; the lengths are the reviews' real lengths). The same texts go through
all three strategies; ratios are against pad-to-max measured in the same run. The machine is
shared and noisy: quote ratios, not absolute numbers; the CPU-time ratio (this process's
CPU seconds) is steadier than the wall-clock one when other jobs compete for the cores.
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import AutoModel, AutoTokenizer

from ftbook import data as D
from ftbook.resources import chinese_reviews, minilm_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    import datasets
    datasets.disable_progress_bars()

    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path())
    ds, _ = D.clean_dataset(chinese_reviews()["train"])
    ds = ds.select(range(min(args.texts, len(ds))))
    enc = D.encode_dataset(ds, tok, args.max_length)
    encoded = [enc[i] for i in range(len(enc))]
    print(f"MiniLM forward, {len(encoded)} texts, batch {args.batch_size}, max_length {args.max_length}, "
          f"{torch.get_num_threads()} threads; truncated {sum(enc['truncated'])} texts")
    rows = D.compare_padding(model, encoded, args.batch_size, args.max_length, tok.pad_token_id,
                             seed=args.seed, repeats=args.repeats)
    base, base_cpu = rows[0]["seconds"], rows[0]["cpu_seconds"]
    print(f"{'strategy':<12} {'pad %':>7} {'tokens':>9} {'wall s':>8} {'cpu s':>8} {'samples/s':>10} "
          f"{'wall speed-up':>14} {'cpu speed-up':>13}")
    for r in rows:
        print(f"{r['strategy']:<12} {100 * r['pad_fraction']:7.1f} {r['padded_tokens']:9d} {r['seconds']:8.2f} "
              f"{r['cpu_seconds']:8.2f} {r['samples_per_s']:10.1f} {base / r['seconds']:13.2f}x "
              f"{base_cpu / r['cpu_seconds']:12.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
