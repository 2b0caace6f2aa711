"""Throughput of ftbook's training loop vs ``transformers.Trainer`` on the same model, data and batch.

    python benchmarks/finetune.py                  # English track (MiniLM), profile sizes
    python benchmarks/finetune.py --steps 8 --rounds 3 --max-length 64

Both engines start from the same pretrained weights and run the same number of optimizer steps
with the same batch size, learning rate, warm-up, weight decay and clipping. The engines are
interleaved (ours, Trainer, ours, Trainer, ...) so that load on a shared machine hits both alike;
the ratio is computed from the medians of one run. Never assert on these figures in tests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from ftbook import finetune as F
from ftbook import training
from ftbook.data import Encoded
from ftbook.config import get_profile
from ftbook.environment import set_seed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--steps", type=int, help="optimizer steps per measurement (default: compare_steps)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-length", type=int, help="default: the profile's finetune max_length")
    args = ap.parse_args(argv)
    prof = get_profile(args.profile)
    s = prof.sizes("finetune")
    steps = args.steps or s.compare_steps
    max_length = args.max_length or s.max_length
    _, tokenizer, ds = F.load_track("english", prof)
    train = Encoded.from_dataset(ds["train"], tokenizer, max_length)
    cfg = F.track_config("english", prof, max_steps=steps, eval_every=None, patience=None, progress=False)
    speeds: dict[str, list[float]] = {"ftbook": [], "trainer": []}
    for r in range(args.rounds):
        for engine in speeds:
            set_seed(s.seed)
            model, _, _ = F.load_track("english", prof)
            if engine == "ftbook":
                res = training.train(model, train, None, cfg)
                speeds[engine].append(res.samples_per_second)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    speeds[engine].append(F.train_with_trainer(model, train, None, cfg, tmp)["samples_per_second"])
            print(f"round {r + 1} {engine:<8} {speeds[engine][-1]:7.2f} samples/s", flush=True)
    ours, theirs = statistics.median(speeds["ftbook"]), statistics.median(speeds["trainer"])
    print(f"threads {torch.get_num_threads()}, batch {cfg.batch_size}, max_length {max_length}, steps {steps}")
    print(f"median samples/s: ftbook {ours:.2f}, Trainer {theirs:.2f}; ratio ftbook/Trainer {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
