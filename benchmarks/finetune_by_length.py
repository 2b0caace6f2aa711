"""Where the fine-tuned Chinese BERT and TF-IDF + LR differ: test accuracy by review length.

    python benchmarks/finetune_by_length.py [--cut 126]

Chapter 10's Chinese classifier (``finetune.finetuned_checkpoint("chinese")``, truncated to the
profile's ``max_length`` tokens) against the tuned TF-IDF + logistic regression baseline
(``baselines.baseline_report``, which reads the whole review), on the test split, split at ``--cut``
characters (the characters that fit in 128 tokens with [CLS] and [SEP]). It shows how much of the gap
truncation can explain: long reviews are a fifth of the test split. Prints figures only.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cut", type=int, default=126, help="review length (characters) that splits the test set")
    args = ap.parse_args(argv)

    from ftbook import baselines, evaluation, finetune
    from ftbook.config import get_profile

    torch.set_num_threads(1)
    prof = get_profile()
    pred = evaluation.checkpoint_predictions(finetune.finetuned_checkpoint("chinese", prof), "chinese", "test", prof)
    texts, y = pred["texts"], np.array(pred["labels"])
    tfidf = np.array(baselines.baseline_report("chinese", prof)["tfidf_lr"]["test_predictions"])
    bert, lengths = pred["logits"].argmax(-1), np.array([len(t) for t in texts])
    print(f"测试集 {len(y):,} 条评论：BERT {np.mean(bert == y):.4f}，TF-IDF + 逻辑回归 {np.mean(tfidf == y):.4f}")
    for name, part in ((f"不超过 {args.cut} 字", lengths <= args.cut), (f"超过 {args.cut} 字", lengths > args.cut)):
        print(f"{name}：{int(part.sum()):,} 条  BERT {np.mean(bert[part] == y[part]):.4f}  "
              f"TF-IDF + 逻辑回归 {np.mean(tfidf[part] == y[part]):.4f}")


if __name__ == "__main__":
    main()
