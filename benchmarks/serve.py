"""Bounded loopback load on the real HTTP server (chapter 12): requests/s, p50/p95 latency, errors.

    python benchmarks/serve.py                    # the chapter-10 checkpoint (ftbook.finetune)
    python benchmarks/serve.py --checkpoint DIR   # any classifier checkpoint folder

Starts ``python -m ftbook serve`` on a free 127.0.0.1 port, then measures in one run:
1. single-request latency (one client, one text per request, sequential);
2. concurrent clients, one text per request;
3. concurrent clients, ``bench_batch`` texts per request (client-side batching);
and prints the ratios between them. Every load is a fixed request count and stops by itself.
The machine is shared and noisy: compare rows of one run, never across runs.
"""

from __future__ import annotations

import argparse
import sys

from ftbook.config import get_profile
from ftbook.serve import load_test, running_server


def main(argv: list[str] | None = None) -> int:
    sizes = get_profile().sizes("serve")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="classifier folder (default: ftbook.finetune.finetuned_checkpoint())")
    ap.add_argument("--requests", type=int, default=sizes.bench_requests)
    ap.add_argument("--concurrency", type=int, default=sizes.bench_concurrency)
    ap.add_argument("--batch", type=int, default=sizes.bench_batch)
    args = ap.parse_args(argv)
    if args.checkpoint is None:
        from ftbook.finetune import finetuned_checkpoint

        args.checkpoint = finetuned_checkpoint("english")
    from ftbook.resources import english_news

    texts = [t.split("\n")[0] + ". " + t.split("\n")[1][:300] for t in english_news()["test"]["text"][:64]]
    rows = []
    with running_server(args.checkpoint) as url:
        load_test(url, texts, requests=4)  # warm-up: first requests pay for lazy initialisation
        rows.append(("sequential, 1 text/request", load_test(url, texts, requests=max(8, args.requests // 4))))
        rows.append((f"{args.concurrency} clients, 1 text/request",
                     load_test(url, texts, requests=args.requests, concurrency=args.concurrency)))
        rows.append((f"{args.concurrency} clients, {args.batch} texts/request",
                     load_test(url, texts, requests=max(4, args.requests // args.batch),
                               concurrency=args.concurrency, batch=args.batch)))
    print(f"{'load':<32} {'requests':>8} {'errors':>6} {'req/s':>7} {'texts/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, r in rows:
        print(f"{name:<32} {r['requests']:>8} {r['errors']:>6} {r['requests_per_s']:>7.1f} "
              f"{r['texts_per_s']:>8.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f}")
    single, conc, batched = (r for _, r in rows)
    print(f"texts/s, concurrent vs sequential: {conc['texts_per_s'] / single['texts_per_s']:.2f}x")
    print(f"texts/s, batched vs concurrent 1-text: {batched['texts_per_s'] / conc['texts_per_s']:.2f}x")
    print(f"p50 latency under load vs alone: {conc['p50_ms'] / single['p50_ms']:.2f}x")
    return 1 if any(r["errors"] for _, r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
