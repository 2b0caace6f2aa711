"""Fine-tuning a BERT classifier on the book's two tracks (English BBC topics, Chinese reviews).

Taught in chapter 10 (``chapters/10_finetuning.ipynb``, "BERT 微调实战"); chapter 11
(``chapters/11_evaluation.ipynb``) reuses it for the hyper-parameter search, and chapters 2, 12 and
14 load :func:`finetuned_checkpoint`.

The loop itself is :func:`ftbook.training.train` (every trick switchable in
:class:`ftbook.training.TrainConfig`); this module holds what is particular to the tracks: their
sizes (:func:`track_config`), their data and base models (:func:`load_track`), the cached
fine-tuned checkpoints (:func:`finetuned_checkpoint`), and the same run with
``transformers.Trainer`` for comparison (:func:`train_with_trainer`).

Command line: ``python -m ftbook finetune --help`` (:mod:`ftbook.cli`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable

from .config import Profile, get_profile, register_sizes
from .data import DynamicPaddingCollator, Encoded
from .training import TrainConfig, evaluate, total_steps, train, warmup_steps

register_sizes(
    "finetune",
    tiny={
        "max_length": 128,  # the profile's max_length; BBC articles are truncated to it
        "batch_size": 16,
        "eval_batch_size": 64,
        "english_lr": 3e-4,  # chapter 11's search: the best of 3e-5 / 1e-4 / 3e-4 for short runs
        "english_max_steps": 80,  # ~0.75 epoch of the 1,717 training articles (~1.5 min on 2 quiet cores)
        "english_eval_every": 40,
        "chinese_lr": 3e-4,
        "chinese_max_steps": 1800,  # ~2 epochs of the 13,810 training reviews; early stopping on validation
        "chinese_eval_every": 300,
        # reviews run from a few characters to the 128-token cut: group them by length (chapter 3)
        "english_group_by_length": False,  # nearly every BBC article fills all 128 tokens
        "chinese_group_by_length": True,
        "epochs": 2,
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,
        "patience": 3,
        "seed": 0,
        # Trainer comparison and benchmark (chapter 10), hyper-parameter search (chapter 11)
        "compare_steps": 8,
        "compare_eval_samples": 189,
        "search_max_length": 32,  # a BBC headline and the start of its first sentence
        "search_steps": 16,
        "search_eval_samples": 189,
        "search_lrs": (3e-5, 1e-4, 3e-4),
        "search_warmups": (0.0, 0.2),
    },
    full={
        "max_length": 256,
        "batch_size": 32,
        "eval_batch_size": 128,
        "english_lr": 3e-5,
        "english_max_steps": None,
        "english_eval_every": None,
        "chinese_lr": 2e-5,
        "chinese_max_steps": None,
        "chinese_eval_every": None,
        "english_group_by_length": False,
        "chinese_group_by_length": True,
        "epochs": 3,
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,
        "patience": 2,
        "seed": 0,
        "compare_steps": 200,
        "compare_eval_samples": None,
        "search_max_length": 128,
        "search_steps": 300,
        "search_eval_samples": None,
        "search_lrs": (1e-5, 3e-5, 1e-4),
        "search_warmups": (0.0, 0.1),
    },
)

TRACKS = ("english", "chinese")


def track_config(track: str = "english", profile: str | Profile | None = None, **overrides) -> TrainConfig:
    """The profile's :class:`TrainConfig` for one track ('english' or 'chinese')."""
    _check_track(track)
    s = get_profile(profile).sizes("finetune")
    cfg = dict(
        lr=getattr(s, f"{track}_lr"), max_steps=getattr(s, f"{track}_max_steps"), epochs=s.epochs,
        batch_size=s.batch_size, eval_batch_size=s.eval_batch_size, warmup_ratio=s.warmup_ratio,
        weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm, eval_every=getattr(s, f"{track}_eval_every"),
        patience=s.patience, seed=s.seed, group_by_length=getattr(s, f"{track}_group_by_length"),
    )
    unknown = sorted(set(overrides) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise TypeError(f"unknown TrainConfig fields {unknown}; known: {[f.name for f in fields(TrainConfig)]}")
    cfg.update(overrides)
    return TrainConfig(**cfg)


def _check_track(track: str) -> None:
    if track not in TRACKS:
        raise ValueError(f"track must be one of {TRACKS}, got {track!r}")


# --------------------------------------------------------------------------- models and tracks


def load_track(track: str = "english", profile: str | Profile | None = None):
    """``(model, tokenizer, dataset)``: the profile's pretrained model with a fresh classifier head
    (``id2label`` / ``label2id`` from the data) and the track's ``DatasetDict``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from . import resources

    _check_track(track)
    prof = get_profile(profile)
    ds = resources.english_news(prof) if track == "english" else resources.chinese_reviews(prof)
    names = ds["train"].features["label"].names
    source = base_model_path(track, prof)
    tokenizer = resources.from_pretrained(AutoTokenizer, source)
    model = resources.quiet_load(lambda: resources.from_pretrained(
        AutoModelForSequenceClassification, source, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}))
    return model, tokenizer, ds


def base_model_path(track: str, profile: str | Profile | None = None) -> str:
    """Path (tiny) or hub id (full) of the pretrained model a track starts from."""
    from .models import model_source

    _check_track(track)
    return model_source(track, profile)


def _build_finetuned(track: str, prof: Profile, folder: Path) -> None:
    import torch

    from .environment import set_seed

    s = prof.sizes("finetune")
    set_seed(s.seed)
    model, tokenizer, ds = load_track(track, prof)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    data = {k: Encoded.from_dataset(ds[k], tokenizer, s.max_length) for k in ("train", "validation", "test")}
    config = track_config(track, prof, progress=False)
    start = time.perf_counter()
    result = train(model, data["train"], data["validation"], config)
    seconds = time.perf_counter() - start
    test = evaluate(model, data["test"], s.eval_batch_size)
    model.cpu()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    metrics = {
        "track": track, "profile": prof.name, "base_model": Path(base_model_path(track, prof)).name,
        "train_examples": len(data["train"]), "steps": result.steps, "samples": result.samples,
        "train_seconds": round(seconds, 2), "samples_per_second": round(result.samples / seconds, 2),
        "best": result.best, "history": result.history, "stopped_early": result.stopped_early,
        "test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_n": test["n"],
        "config": config.to_dict(), "torch_threads": torch.get_num_threads(), "device": device.type,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")


def _track_sizes(sizes, track: str) -> dict:
    """The sizes that change one track's checkpoint (not the other track's, not the experiments')."""
    other = [t + "_" for t in TRACKS if t != track]
    return {k: v for k, v in vars(sizes).items()
            if not k.startswith(("search_", "compare_", *other))}


def finetuned_checkpoint(track: str = "english", profile: str | Profile | None = None, *,
                         log: Callable[[str], None] = print) -> Path:
    """A cached fine-tuned sequence-classification checkpoint dir for ``track``.

    It holds ``model.safetensors``, ``config.json`` (with ``id2label`` / ``label2id``), the tokenizer
    files and ``metrics.json`` (validation history, test accuracy, training time); load it with
    ``AutoModelForSequenceClassification.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)``.
    Built once with the profile's sizes (a fixed number of steps), then read from the cache.
    """
    from . import data, distributed, optim, training
    from .checkpoints import cached, fingerprint
    from .models import source_fingerprint

    _check_track(track)
    prof = get_profile(profile)
    s = prof.sizes("finetune")
    fp = fingerprint(sys.modules[__name__], training, optim, data, distributed, track=track, profile=prof.name,
                     sizes=_track_sizes(s, track), source=source_fingerprint(base_model_path(track, prof)),
                     max_length=prof.max_length)
    return cached(f"finetuned-{track}-{prof.name}", lambda tmp: _build_finetuned(track, prof, tmp), fp, log=log)


def finetune_metrics(track: str = "english", profile: str | Profile | None = None) -> dict:
    """``metrics.json`` of :func:`finetuned_checkpoint` (builds it if needed)."""
    return json.loads((finetuned_checkpoint(track, profile) / "metrics.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- transformers.Trainer twin


def train_with_trainer(model, train_data: Encoded, eval_data: Encoded | None, config: TrainConfig,
                       output_dir: str | os.PathLike, tokenizer=None) -> dict:
    """The same run with ``transformers.Trainer`` (same optimizer groups, betas, schedule and
    warm-up, clipping, batch and steps); returns ``{"seconds", "samples_per_second", "steps", "val_accuracy"}``."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    if config.grad_accum != 1 and config.batch_size % config.grad_accum:
        raise ValueError("batch_size must be divisible by grad_accum")
    total = total_steps(len(train_data), config)
    ds = Dataset.from_dict({"input_ids": train_data.input_ids, "labels": train_data.labels})
    hf_collate = DynamicPaddingCollator(pad_token_id=train_data.pad_token_id)
    args = TrainingArguments(
        output_dir=str(output_dir), learning_rate=config.lr, weight_decay=config.weight_decay,
        warmup_steps=warmup_steps(total, config), lr_scheduler_type=config.schedule,
        adam_beta1=config.betas[0], adam_beta2=config.betas[1],
        max_grad_norm=config.max_grad_norm or 0.0, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, max_steps=total, seed=config.seed,
        report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
        disable_tqdm=not config.progress, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=hf_collate)
    if not config.progress:  # without a progress bar, Trainer prints its final metrics dict instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "steps": total, "samples_per_second": total * config.batch_size * config.grad_accum / seconds}
    if eval_data is not None:
        out["val_accuracy"] = evaluate(model, eval_data, config.eval_batch_size)["accuracy"]
    return out


def _compare_build(prof: Profile, folder: Path) -> None:
    """Our loop and ``Trainer`` from the same start, same data, same steps (chapter 10's table)."""
    import tempfile

    import torch

    from .environment import set_seed

    s = prof.sizes("finetune")
    rows = []
    for engine in ("ftbook", "trainer"):
        set_seed(s.seed)
        model, tokenizer, ds = load_track("english", prof)
        train_data = Encoded.from_dataset(ds["train"], tokenizer, s.max_length)
        val = Encoded.from_dataset(ds["validation"], tokenizer, s.max_length, limit=s.compare_eval_samples)
        cfg = track_config("english", prof, max_steps=s.compare_steps, eval_every=None, patience=None,
                           progress=False)
        if engine == "ftbook":
            res = train(model, train_data, None, cfg)
            row = {"seconds": res.seconds, "samples_per_second": res.samples_per_second,
                   "val_accuracy": evaluate(model, val, s.eval_batch_size)["accuracy"]}
        else:
            with tempfile.TemporaryDirectory() as tmp:
                row = train_with_trainer(model, train_data, val, cfg, tmp)
        rows.append({"engine": engine, "steps": s.compare_steps, "batch_size": s.batch_size, **row})
    (folder / "compare.json").write_text(json.dumps({"rows": rows, "threads": torch.get_num_threads()},
                                                    indent=1), encoding="utf-8")


def compare_with_trainer(profile: str | Profile | None = None) -> list[dict]:
    """Cached side-by-side run of our loop and ``transformers.Trainer`` (English track)."""
    from . import data, optim, training
    from .checkpoints import cached, fingerprint
    from .models import source_fingerprint

    prof = get_profile(profile)
    s = prof.sizes("finetune")
    fp = fingerprint(sys.modules[__name__], training, optim, data, profile=prof.name, steps=s.compare_steps,
                     lr=s.english_lr, batch=s.batch_size, max_length=s.max_length, eval=s.compare_eval_samples,
                     source=source_fingerprint(base_model_path("english", prof)))
    folder = cached(f"finetune-compare-{prof.name}", lambda tmp: _compare_build(prof, tmp), fp)
    return json.loads((folder / "compare.json").read_text(encoding="utf-8"))["rows"]
