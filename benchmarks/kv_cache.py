"""Greedy generation speed of ftbook.decoder.Decoder with the KV cache on and off.

    python benchmarks/kv_cache.py [--small] [--new-tokens 32 64 128 256] [--prompt-len 16] [--batch 1]

A randomly initialised decoder of SmolLM2-135M's shape by default (vocab 49152, hidden 576, 30
layers, 9 heads, 3 kv heads, intermediate 1536, tied embeddings; each size is an option), or a tiny
one with ``--small`` for a quick run. One thread, fixed seed. For each number of new tokens it times
``ftbook.generation.generate`` (greedy, no eos) with ``use_cache=True`` and ``use_cache=False``, checks
that both produced the same tokens, and prints new tokens per second and the ratio. Without the cache
every step re-runs the whole sequence, so the ratio grows with the length. The machine may be
shared: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import time

import torch

SMOLLM2_135M = {"vocab_size": 49152, "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "intermediate_size": 1536}
SMALL = {"vocab_size": 1024, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 128}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help=f"a tiny decoder instead: {SMALL}")
    for name, default in SMOLLM2_135M.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                        help=f"default {default} (SmolLM2-135M), {SMALL[name]} with --small")
    ap.add_argument("--new-tokens", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="best of this many runs per setting")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    base = SMALL if args.small else SMOLLM2_135M
    args.shape = {k: base[k] if getattr(args, k) is None else getattr(args, k) for k in base}
    return args


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None) -> int:
    from ftbook.decoder import Decoder, DecoderConfig
    from ftbook.generation import generate

    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    longest = args.prompt_len + max(args.new_tokens)
    config = DecoderConfig(**args.shape, max_position_embeddings=max(8192, longest), tie_word_embeddings=True)
    model = Decoder(config).eval()
    prompt = torch.randint(0, config.vocab_size, (args.batch, args.prompt_len))
    generate(model, prompt, 4)  # warm-up
    print(f"decoder {args.shape}, {model.num_parameters() / 1e6:.1f}M parameters, random weights, seed {args.seed}")
    print(f"batch {args.batch}, prompt {args.prompt_len} tokens, greedy, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats}")
    print(f"{'new tokens':>10} {'cache tok/s':>12} {'no cache tok/s':>15} {'ratio':>7} {'same tokens':>12}")
    for n in args.new_tokens:
        t_on, on = timed(lambda: generate(model, prompt, n, use_cache=True), args.repeats)
        t_off, off = timed(lambda: generate(model, prompt, n, use_cache=False), args.repeats)
        rate_on, rate_off = n * args.batch / t_on, n * args.batch / t_off
        print(f"{n:>10} {rate_on:>12.1f} {rate_off:>15.1f} {rate_on / rate_off:>7.2f} {str(torch.equal(on, off)):>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
