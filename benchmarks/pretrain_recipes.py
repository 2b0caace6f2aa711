"""Pre-training recipes for the book's Chinese BERT, compared on equal compute (chapter 9).

Each candidate trains the same model (the ``tiny`` sizes of ``ftbook.pretrain``) from the same
seed for the same number of optimizer steps of the same batch (sequences packed to
``--max-length`` tokens by :func:`ftbook.corpus.pack`) and is scored by masked-character accuracy
(15% masking, fixed seed) on held-out text: the reviews' VALIDATION split and the chapter 13 NER
VALIDATION sentences (the test splits are not read). One process per candidate, one thread each.

    python benchmarks/pretrain_recipes.py --steps 500            # all candidates, in parallel
    python benchmarks/pretrain_recipes.py --only mask40 --steps 500
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CANDIDATES = {  # name: what changes against BERT's recipe (15% masking, lr 1e-3)
    "mask15": {"mlm_probability": 0.15},
    "mask40": {"mlm_probability": 0.40},
}


def run_one(name: str, steps: int, max_length: int, amp: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from ftbook.pretrain import (build_tokenizer, held_out_texts, masked_accuracy, new_model,
                                 packed_corpus, pretrain_mlm)
    from ftbook.config import get_profile
    from ftbook.corpus import chinese_corpus

    sizes = get_profile("tiny").sizes("pretrain")
    texts = chinese_corpus("tiny")
    tok = build_tokenizer(texts, f"/tmp/ftbook-recipes-{name}", min_freq=sizes.min_freq, max_length=max_length)
    packed = packed_corpus(tok, texts, max_length)
    model = new_model(tok, sizes, seed=sizes.seed)
    settings = dict(lr=sizes.lr, warmup_steps=sizes.warmup_steps, mlm_probability=sizes.mlm_probability)
    settings.update(CANDIDATES[name])
    start = time.perf_counter()
    pretrain_mlm(model, packed, tokenizer=tok, steps=steps, batch_size=sizes.batch_size,
                 weight_decay=sizes.weight_decay, seed=sizes.seed, amp=amp, **settings)
    seconds = time.perf_counter() - start
    acc = masked_accuracy(model, tok, held_out_texts("tiny"), max_length=max_length)
    return {"candidate": name, "steps": steps, "seconds": round(seconds, 1),
            "held_out_masked_accuracy": round(acc, 4), **settings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(CANDIDATES))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--amp", default="bf16", choices=["off", "bf16"])
    args = ap.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.steps, args.max_length, args.amp)), flush=True)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "--only", name, "--steps", str(args.steps),
                               "--max-length", str(args.max_length), "--amp", args.amp],
                              stdout=subprocess.PIPE, text=True, env=env) for name in CANDIDATES]
    rows = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    print(f"{'candidate':<10} {'steps':>6} {'seconds':>8} {'held-out acc':>12}")
    for r in rows:
        print(f"{r['candidate']:<10} {r['steps']:>6} {r['seconds']:>8} {r['held_out_masked_accuracy']:>12.4f}")


if __name__ == "__main__":
    main()
