"""Bounded loopback load on the real HTTP server (chapter 12): requests/s, p50/p95/p99 latency, errors.

    python benchmarks/serve.py                          # both fine-tuned classifiers (ftbook.finetune)
    python benchmarks/serve.py --checkpoint DIR         # any classifier checkpoint folder

Starts ``python -m ftbook serve`` on a free 127.0.0.1 port per model, then runs
:func:`ftbook.serve.load_sweep`: ``bench_requests`` one-text requests at each concurrency of
``bench_levels``, then client-side batches of ``bench_batch`` texts; every level is bounded in count
and in time (``bench_max_seconds``). Prints the table and the ratios to the one-client row.
The machine is shared and noisy: compare rows of one run, never across runs.
"""

from __future__ import annotations

import argparse
import sys

from ftbook.config import get_profile
from ftbook.serve import format_sweep, load_sweep, running_server


def bench_texts(track: str) -> list[str]:
    """64 test texts of a track (news: the headline and the start of the first paragraph)."""
    if track == "english":
        from ftbook.resources import english_news

        return [t.split("\n")[0] + ". " + t.split("\n")[1][:300] for t in english_news()["test"]["text"][:64]]
    from ftbook.resources import chinese_reviews

    return list(chinese_reviews()["test"]["text"][:64])


def main(argv: list[str] | None = None) -> int:
    sizes = get_profile().sizes("serve")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="classifier folder (default: both tracks' fine-tuned classifiers)")
    ap.add_argument("--requests", type=int, default=sizes.bench_requests)
    ap.add_argument("--levels", type=int, nargs="+", default=list(sizes.bench_levels))
    ap.add_argument("--batch", type=int, default=sizes.bench_batch)
    ap.add_argument("--max-seconds", type=float, default=sizes.bench_max_seconds)
    args = ap.parse_args(argv)
    if args.checkpoint is None:
        from ftbook.finetune import finetuned_checkpoint

        targets = [(track, finetuned_checkpoint(track)) for track in ("english", "chinese")]
    else:
        targets = [("english", args.checkpoint)]
    errors = 0
    for track, ckpt in targets:
        with running_server(ckpt) as url:
            rows = load_sweep(url, bench_texts(track), requests=args.requests, levels=args.levels,
                              batch=args.batch, max_seconds=args.max_seconds)
        print(f"== {track}: {ckpt}")
        print(format_sweep(rows))
        one = rows[0]
        for r in rows[1:]:
            print(f"{r['name']}: texts/s {r['texts_per_s'] / one['texts_per_s']:.2f}x, "
                  f"p50 {r['p50_ms'] / one['p50_ms']:.2f}x of one client")
        errors += sum(r["errors"] for r in rows)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
