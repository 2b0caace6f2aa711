"""Length buckets in the book's training loops: time saved, and what happens to the results.

    python benchmarks/bucketing.py            # both: the Chinese fine-tune and the NER tagger
    python benchmarks/bucketing.py --only ner

Chapter 3 shows that random batches of reviews are about half padding at 128 tokens and that
``ftbook.data.LengthBucketSampler`` removes most of it. This script switches the sampler off and
on where the ``tiny`` profile uses it, with everything else equal (same start, seed and steps):

* the Chinese review classifier (``ftbook.finetune``, ``TrainConfig.group_by_length``; 600 steps of
  16 reviews at up to 128 tokens, from the book's pre-trained Chinese BERT): training seconds, the
  padding share of the training batches, validation and test accuracy;
* the People's Daily NER tagger (``ftbook.tagging``, sizes ``group_by_length``; 5 epochs of 2,000
  sentences at up to 66 tokens): training seconds and entity-level F1 on the 500 test sentences.

Runs go one after another in this process; the machine is shared and noisy, so read the time
ratios of one run, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def with_sizes(section: str, **changes) -> None:
    """Override the ``tiny`` sizes of one section (this process only)."""
    from ftbook import config

    config._SECTIONS[section]["tiny"] = MappingProxyType({**config._SECTIONS[section]["tiny"], **changes})


def chinese_finetune(group_by_length: bool) -> dict:
    from transformers import AutoTokenizer

    from ftbook import finetune, resources, training
    from ftbook.data import Encoded
    from ftbook.config import get_profile
    from ftbook.data import padding_stats

    with_sizes("finetune", chinese_group_by_length=group_by_length)
    prof = get_profile("tiny")
    tokenizer = resources.from_pretrained(AutoTokenizer, finetune.base_model_path("chinese", prof))
    sizes = prof.sizes("finetune")
    train = Encoded.from_dataset(resources.chinese_reviews(prof)["train"], tokenizer, sizes.max_length)
    config = finetune.track_config("chinese", prof, progress=False)
    lengths = [len(x) for x in train.input_ids]
    steps = config.max_steps
    batches = training.epoch_batches(lengths, 0, config)[:steps]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        finetune._build_finetuned("chinese", prof, Path(tmp))
        seconds = time.perf_counter() - start
        metrics = json.loads((Path(tmp) / "metrics.json").read_text(encoding="utf-8"))
    return {"train_s": metrics["train_seconds"], "build_s": round(seconds, 1),
            "pad_fraction": round(padding_stats(lengths, batches)["pad_fraction"], 3),
            "val_accuracy": round(metrics["best"]["val_accuracy"], 4),
            "test_accuracy": round(metrics["test_accuracy"], 4)}


def ner(group_by_length: bool) -> dict:
    from ftbook import tagging
    from ftbook.config import get_profile

    with_sizes("tagging", group_by_length=group_by_length)
    sizes = get_profile("tiny").sizes("tagging")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tagging._build_ner(Path(tmp), sizes, 0, "tiny")  # what trained_ner caches, built afresh
        seconds = time.perf_counter() - start
        model, tok = tagging.load_ner(tmp)
    test = tagging.people_daily_ner()["test"].select(range(sizes.eval_sentences))
    true = [[tagging.LABELS[i] for i in s] for s in test["tags"]]
    scores = tagging.entity_scores(true, tagging.predict_tags(model, tok, test["chars"]))
    return {"train_s": round(seconds, 1), "f1": round(scores["f1"], 4),
            "precision": round(scores["precision"], 4), "recall": round(scores["recall"], 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("chinese", "ner"), help="run one of the two comparisons")
    args = ap.parse_args(argv)
    jobs = {"chinese": chinese_finetune, "ner": ner}
    for name, fn in jobs.items():
        if args.only and name != args.only:
            continue
        rows = {flag: fn(flag) for flag in (False, True)}
        print(f"\n{name}: group_by_length off vs on")
        keys = list(rows[False])
        print(f"{'':<16}" + "".join(f"{k:>15}" for k in keys))
        for flag, row in rows.items():
            print(f"{'on' if flag else 'off':<16}" + "".join(f"{row[k]:>15}" for k in keys))
        print(f"speed-up (time off / time on): {rows[False]['train_s'] / rows[True]['train_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
