"""How much to mask in a short MLM pre-training run: BERT's 15% vs the tiny profile's 40%.

    python benchmarks/mlm_masking.py                 # 0.15 and 0.4, the tiny profile's other sizes
    python benchmarks/mlm_masking.py --rates 0.15 0.3 0.4 0.5 --steps 900

For each masking rate it pre-trains the book's small Chinese BERT from the same random start
(``ftbook.pretrain.pretrain_mlm``, every other size from the ``tiny`` profile), then reports

* the final MLM loss (not comparable across rates: more masking makes the task harder),
* masked-character accuracy on 1,000 validation reviews, always scored with 15% masking,
* test accuracy after fine-tuning on 1,000 labelled reviews for 100 steps (chapter 9's recipe).

Runs go side by side through ``ftbook.workers.run_all`` (one thread each). Background: Wettig et
al. (2022), "Should You Mask 15% in Masked Language Modeling?".
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_rate(rate: float, steps: int, labels: int, ft_steps: int) -> dict:
    import torch
    from transformers import BertForMaskedLM

    from ftbook import pretrain
    from ftbook.config import get_profile
    from ftbook.resources import chinese_reviews

    sizes = get_profile("tiny").sizes("pretrain")
    texts = pretrain.pretraining_corpus("tiny")
    ds = chinese_reviews("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        tok = pretrain.build_tokenizer(texts, tmp, min_freq=sizes.min_freq, max_length=sizes.max_length)
        encoded = pretrain.encode_corpus(tok, texts, sizes.max_length)
        torch.manual_seed(sizes.seed)
        model = BertForMaskedLM(pretrain.bert_config(len(tok), sizes))
        start = time.perf_counter()
        history = pretrain.pretrain_mlm(model, encoded, tokenizer=tok, steps=steps, batch_size=sizes.batch_size,
                                        lr=sizes.lr, warmup_steps=sizes.warmup_steps,
                                        weight_decay=sizes.weight_decay, mlm_probability=rate,
                                        seed=sizes.seed, log_every=max(1, steps // 10))
        seconds = time.perf_counter() - start
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        mlm_acc = pretrain.masked_accuracy(model, tok, list(ds["validation"]["text"][:1000]),
                                           max_length=sizes.max_length)
        order = list(range(len(ds["train"])))
        random.Random(sizes.seed).shuffle(order)  # chapter 9's nested subsets: the first n of this shuffle
        train = ds["train"].select(order[:labels])
        test = ds["test"]
        ft = pretrain.finetune_accuracy(tmp, list(train["text"]), list(train["label"]), list(test["text"]),
                                        list(test["label"]),
                                        pretrained=True, steps=ft_steps, lr=sizes.ft_lr,
                                        batch_size=sizes.ft_batch_size, max_length=sizes.max_length,
                                        seed=sizes.seed)
    return {"rate": rate, "final_mlm_loss": history[-1]["loss"], "masked_acc@15%": round(mlm_acc, 4),
            f"test_acc_{labels}_labels": round(ft, 4), "pretrain_s": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.15, 0.4])
    ap.add_argument("--steps", type=int, default=None, help="pre-training steps (default: the tiny profile's)")
    ap.add_argument("--labels", type=int, default=1000)
    ap.add_argument("--ft-steps", type=int, default=100)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    bad = [r for r in args.rates if not 0 < r < 1]
    if bad:
        ap.error(f"masking rates must be in (0, 1), got {bad}")

    from ftbook import pretrain  # registers the "pretrain" sizes
    from ftbook.config import get_profile
    from ftbook.workers import run_all

    steps = args.steps or get_profile("tiny").sizes("pretrain").steps
    rows = run_all(one_rate, [((r, steps, args.labels, args.ft_steps), {}) for r in args.rates], args.workers,
                   log=print, names=[f"rate {r}" for r in args.rates])
    print(f"pre-training: {steps} steps; fine-tuning: {args.labels} labels x {args.ft_steps} steps; one thread per run")
    keys = list(rows[0])
    print("  ".join(f"{k:>20}" for k in keys))
    for row in rows:
        print("  ".join(f"{row[k]:>20}" for k in keys))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
