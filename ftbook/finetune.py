"""Fine-tuning a BERT classifier: a complete, correct training loop and its tricks.

Taught in chapter 10 (``chapters/10_finetuning.ipynb``, "BERT 微调实战"); chapter 11
(``chapters/11_evaluation.ipynb``) reuses it for the hyper-parameter search, and chapters 2, 12 and
14 load :func:`finetuned_checkpoint`.

The loop trains every weight of an ``AutoModelForSequenceClassification`` (full fine-tuning) and
names each trick, each one switchable in :class:`TrainConfig`:

* linear warm-up then linear decay of the learning rate (:func:`linear_warmup_decay`);
* gradient clipping by global norm (``max_grad_norm``);
* weight decay on weights only, not on LayerNorm and bias (:func:`param_groups`);
* gradient accumulation (``grad_accum``), exact: the loss is normalised by the examples of the
  whole optimizer step, so 2 x 8 equals 16 (up to float rounding);
* mixed precision on a GPU (bf16 if supported, else fp16 with a gradient scaler);
* evaluation every epoch (or every ``eval_every`` steps) and early stopping on validation accuracy;
* deterministic seeds and data order; ``group_by_length`` batches texts of similar length
  together (chapter 3's :class:`ftbook.data.LengthBucketSampler`: less padding, same randomness);
  ``tqdm.auto`` progress;
* checkpoints in safetensors with config, tokenizer, optimizer/scheduler/RNG state, written
  atomically; ``resume=True`` continues an interrupted run to the same weights;
* data parallel: started by ``torchrun`` (or ``accelerate launch``) the same code wraps the model
  in ``DistributedDataParallel``; every rank takes an equal share of each global batch, so N
  processes reach the weights of 1 process with the same global batch.

Command line: ``python -m ftbook finetune --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import Profile, get_profile, register_sizes

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
        "chinese_max_steps": 600,  # ~0.7 epoch of the 13,810 training reviews (~1 min on 2 cores)
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
AMP_MODES = ("auto", "off", "bf16", "fp16")


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Every setting of :func:`train`; each trick has its own switch.

    ``batch_size`` is the *global* micro-batch (summed over data-parallel ranks); one optimizer
    step consumes ``batch_size * grad_accum`` examples.
    """

    lr: float = 5e-5
    epochs: int = 3
    max_steps: int | None = None  # stops earlier than ``epochs`` when set
    batch_size: int = 16
    grad_accum: int = 1
    eval_batch_size: int = 64
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming up
    schedule: str = "linear"  # "linear" (warm-up + linear decay) or "constant" (warm-up only)
    weight_decay: float = 0.01
    decay_norm_and_bias: bool = False  # True decays LayerNorm and bias too (the naive way)
    max_grad_norm: float | None = 1.0  # None: no clipping
    amp: str = "auto"  # "auto": bf16/fp16 on a GPU, off on CPU; "off", "bf16", "fp16"
    eval_every: int | None = None  # steps between evaluations; None: once per epoch
    patience: int | None = 2  # evaluations without improvement before stopping; None: never
    load_best: bool = True  # end with the weights of the best evaluation
    save_every: int | None = None  # steps between resumable checkpoints (needs output_dir)
    group_by_length: bool = False  # batches of similar length (Trainer: train_sampling_strategy)
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        def positive(name, allow_none=False, number=int):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, number) or value <= 0:
                kind = "int" if number is int else "number"
                raise ValueError(f"TrainConfig.{name} must be a positive {kind}"
                                 f"{' or None' if allow_none else ''}, got {value!r}")

        positive("lr", number=(int, float))
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            positive(name)
        for name in ("max_steps", "eval_every", "patience", "save_every"):
            positive(name, allow_none=True)
        positive("max_grad_norm", allow_none=True, number=(int, float))
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"TrainConfig.schedule must be 'linear' or 'constant', got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if not isinstance(self.group_by_length, bool):
            raise ValueError(f"TrainConfig.group_by_length must be True or False, got {self.group_by_length!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be a non-negative int, got {self.seed!r}")

    def to_dict(self) -> dict:
        return asdict(self)


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


# --------------------------------------------------------------------------- data


@dataclass
class Encoded:
    """Tokenised examples: variable-length ``input_ids`` (no padding yet) and integer labels."""

    input_ids: list[list[int]]
    labels: list[int]
    pad_token_id: int = 0
    texts: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"input_ids ({len(self.input_ids)}) and labels ({len(self.labels)}) differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> "Encoded":
        return Encoded([self.input_ids[i] for i in indices], [self.labels[i] for i in indices],
                       self.pad_token_id, None if self.texts is None else [self.texts[i] for i in indices])


def encode(texts: Sequence[str], labels: Sequence[int], tokenizer, max_length: int,
           num_labels: int | None = None) -> Encoded:
    """Tokenise with truncation to ``max_length`` (no padding: batches pad to their own longest)."""
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    if not texts:
        raise ValueError("cannot encode an empty set of texts")
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2 ([CLS] and [SEP]), got {max_length!r}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text #{i} is {type(t).__name__}, expected str")
    for i, y in enumerate(labels):
        if isinstance(y, bool) or not isinstance(y, int) or y < 0 or (num_labels is not None and y >= num_labels):
            raise ValueError(f"label #{i} is {y!r}, expected an int in [0, {num_labels or 'num_labels'})")
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return Encoded([list(x) for x in ids], labels, int(tokenizer.pad_token_id or 0), texts)


def encode_dataset(ds, tokenizer, max_length: int, limit: int | None = None) -> Encoded:
    """:func:`encode` a ``datasets.Dataset`` with ``text`` and ``label`` columns."""
    if "text" not in ds.column_names or "label" not in ds.column_names:
        raise ValueError(f"dataset needs 'text' and 'label' columns, has {ds.column_names}")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    num_labels = ds.features["label"].num_classes if hasattr(ds.features["label"], "num_classes") else None
    return encode(ds["text"], ds["label"], tokenizer, max_length, num_labels)


def collate(examples: Sequence[Sequence[int]], labels: Sequence[int] | None, pad_token_id: int = 0) -> dict:
    """Pad a batch to its longest sequence: ``input_ids``, ``attention_mask``, ``token_type_ids``."""
    import torch

    if not examples:
        raise ValueError("cannot collate an empty batch")
    width = max(len(x) for x in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)  # (batch, seq)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, x in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    if labels is not None:
        batch["labels"] = torch.tensor(list(labels), dtype=torch.long)
    return batch


# --------------------------------------------------------------------------- the tricks


def param_groups(model, weight_decay: float, decay_norm_and_bias: bool = False) -> list[dict]:
    """AdamW parameter groups: decay the weight matrices, not LayerNorm weights and biases.

    Decaying a LayerNorm gain pulls it towards 0 (shrinking every feature), and decaying a bias
    has no regularising sense; BERT's recipe exempts both.
    """
    import torch

    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    norm_types = (torch.nn.LayerNorm,)
    no_decay: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias" or isinstance(module, norm_types) or "layernorm" in type(module).__name__.lower():
                no_decay.add(id(p))
    decay, rest = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (rest if id(p) in no_decay and not decay_norm_and_bias else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return groups


def lr_lambda(step: int, warmup_steps: int, total_steps: int, schedule: str = "linear") -> float:
    """Learning-rate multiplier at ``step``: linear warm-up 0 -> 1, then linear decay 1 -> 0."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    if schedule != "linear":
        raise ValueError(f"schedule must be 'linear' or 'constant', got {schedule!r}")
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def linear_warmup_decay(optimizer, warmup_steps: int, total_steps: int, schedule: str = "linear"):
    """A ``LambdaLR`` following :func:`lr_lambda` (a picklable, resumable scheduler)."""
    import functools

    from torch.optim.lr_scheduler import LambdaLR

    lr_lambda(0, warmup_steps, total_steps, schedule)  # validate now, not at the first step
    return LambdaLR(optimizer, functools.partial(lr_lambda, warmup_steps=warmup_steps,
                                                 total_steps=total_steps, schedule=schedule))


def _amp_dtype(mode: str, device):
    import torch

    if mode == "off" or device.type != "cuda":
        if mode in ("bf16", "fp16") and device.type != "cuda":
            raise ValueError(f"amp={mode!r} needs a CUDA GPU; on {device.type} use amp='auto' or 'off'")
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


# --------------------------------------------------------------------------- distributed helpers


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the running process group, ``(0, 1)`` without one."""
    d = _dist()
    return (d.get_rank(), d.get_world_size()) if d else (0, 1)


def _barrier() -> None:
    d = _dist()
    if d:
        d.barrier()


def _all_sum(values: list[float]) -> list[float]:
    import torch

    d = _dist()
    if not d:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    d.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- evaluation


def predict_logits(model, data: Encoded, batch_size: int = 64, device=None):
    """Logits of every example, in order, as a float32 CPU tensor ``(n, num_labels)``."""
    import torch

    if len(data) == 0:
        raise ValueError("cannot predict on an empty set")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))  # less padding
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            batch = collate([data.input_ids[i] for i in idx], None, data.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            out.append(model(**batch).logits.float().cpu())
    model.train(was_training)
    logits = torch.cat(out)
    result = torch.empty_like(logits)
    result[torch.tensor(order)] = logits
    return result


def evaluate(model, data: Encoded, batch_size: int = 64) -> dict:
    """``{"loss", "accuracy", "n"}`` on ``data`` (sharded and summed across data-parallel ranks)."""
    import torch
    import torch.nn.functional as F

    rank, size = world()
    shard = data.subset(range(rank, len(data), size)) if size > 1 else data
    logits = predict_logits(model, shard, batch_size)
    labels = torch.tensor(shard.labels)
    loss_sum = float(F.cross_entropy(logits, labels, reduction="sum"))
    correct = float((logits.argmax(-1) == labels).sum())
    loss_sum, correct, n = _all_sum([loss_sum, correct, float(len(shard))])
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": int(n)}


# --------------------------------------------------------------------------- checkpoints


STATE_FILE = "trainer_state.json"


def save_checkpoint(path: str | os.PathLike, model, tokenizer=None, optimizer=None, scheduler=None,
                    scaler=None, state: dict | None = None) -> Path:
    """Write a checkpoint folder atomically (rank 0 only): safetensors weights + config.json,
    tokenizer files, and optionally optimizer / scheduler / scaler / RNG state for resuming."""
    import torch

    from .checkpoints import atomic_dir

    path = Path(path)
    rank, _ = world()
    if rank == 0:
        with atomic_dir(path, {"kind": "finetune-checkpoint"}) as tmp:
            _unwrap(model).save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            if optimizer is not None:
                extra = {"optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
                if scheduler is not None:
                    extra["scheduler"] = scheduler.state_dict()
                if scaler is not None:
                    extra["scaler"] = scaler.state_dict()
                if torch.cuda.is_available():
                    extra["rng_cuda"] = torch.cuda.get_rng_state_all()
                torch.save(extra, tmp / "training_state.pt")
            if state is not None:
                (tmp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
    _barrier()
    return path


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def _load_weights(model, folder: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = _unwrap(model).load_state_dict(state, strict=False)
    # tied weights may be stored once; anything else missing is an error
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(f"checkpoint {folder} does not fit the model: missing {missing}, unexpected {unexpected}")


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What :func:`train` returns: the history of evaluations and the figures of the run."""

    history: list[dict]
    best: dict | None
    steps: int
    samples: int
    seconds: float
    stopped_early: bool
    interrupted: bool = False

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


def _epoch_order(n: int, epoch: int, seed: int, world_size: int) -> list[int]:
    import torch

    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return order[: n - n % world_size]  # equal shares for every rank


def epoch_batches(lengths: Sequence[int], epoch: int, config: TrainConfig, world_size: int = 1) -> list[list[int]]:
    """The examples of each optimizer step in one epoch (``batch_size * grad_accum`` per step).

    Random order, or with ``config.group_by_length`` batches of similar length
    (:class:`ftbook.data.LengthBucketSampler` over the same shuffled examples). Deterministic for a
    seed and epoch, so a resumed run sees the same batches. ``n % world_size`` examples sit out
    each epoch, so every rank gets an equal share.
    """
    order = _epoch_order(len(lengths), epoch, config.seed, world_size)
    step_examples = config.batch_size * config.grad_accum
    if not config.group_by_length:
        return [order[i: i + step_examples] for i in range(0, len(order), step_examples)]
    from .data import LengthBucketSampler

    sampler = LengthBucketSampler([lengths[i] for i in order], step_examples, seed=config.seed)
    sampler.set_epoch(epoch)
    return [[order[j] for j in batch] for batch in sampler]


def steps_per_epoch(n: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps in one epoch of ``n`` examples (the last step may be smaller)."""
    usable = n - n % world_size
    return math.ceil(usable / (config.batch_size * config.grad_accum))


def train(model, train_data: Encoded, eval_data: Encoded | None = None, config: TrainConfig | None = None,
          *, tokenizer=None, output_dir: str | os.PathLike | None = None, resume: bool = False,
          stop_after_steps: int | None = None, on_eval: Callable[[dict], None] | None = None) -> TrainResult:
    """Fine-tune ``model`` (all weights) on ``train_data``; see the module docstring for the tricks.

    ``output_dir``: where resumable checkpoints (``last/``, every ``save_every`` steps and at the end)
    and the best weights (``best/``) go. ``resume=True`` continues from ``output_dir/last``.
    ``stop_after_steps`` simulates an interruption (a crash) after that many optimizer steps.
    Under ``torch.distributed`` (e.g. ``torchrun``) the model is wrapped in DDP.
    """
    import torch
    import torch.nn.functional as F

    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(train_data, Encoded) or len(train_data) == 0:
        raise ValueError("train_data must be a non-empty Encoded set (see ftbook.finetune.encode)")
    if (config.save_every or resume) and output_dir is None:
        raise ValueError("save_every and resume need output_dir")
    num_labels = _unwrap(model).config.num_labels
    bad = [y for y in set(train_data.labels) if y >= num_labels]
    if bad:
        raise ValueError(f"labels {sorted(bad)} do not fit a model with num_labels={num_labels}")
    rank, size = world()
    if config.batch_size % size:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of the world size {size}")
    device = next(model.parameters()).device
    amp_dtype = _amp_dtype(config.amp, device)
    torch.manual_seed(config.seed + rank)  # dropout masks

    per_epoch = steps_per_epoch(len(train_data), config, size)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = int(config.warmup_ratio * total)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay, config.decay_norm_and_bias),
                                  lr=config.lr)
    scheduler = linear_warmup_decay(optimizer, warmup, total, config.schedule)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    state = {"step": 0, "samples": 0, "history": [], "best": None, "bad_evals": 0, "seconds": 0.0,
             "config": config.to_dict()}
    out = Path(output_dir) if output_dir is not None else None
    best_weights = None
    if resume:
        last = out / "last"
        if not (last / STATE_FILE).is_file():
            raise FileNotFoundError(f"nothing to resume: {last} has no {STATE_FILE}")
        from .checkpoints import verify

        verify(last)
        state = json.loads((last / STATE_FILE).read_text(encoding="utf-8"))
        if {k: v for k, v in state["config"].items() if k != "progress"} != {
                k: v for k, v in config.to_dict().items() if k != "progress"}:
            raise ValueError(f"resume with the same TrainConfig as the interrupted run: {state['config']}")
        _load_weights(model, last)
        extra = torch.load(last / "training_state.pt", weights_only=False)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        if scaler is not None and "scaler" in extra:
            scaler.load_state_dict(extra["scaler"])
        torch.set_rng_state(extra["rng_cpu"])
        if "rng_cuda" in extra and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(extra["rng_cuda"])
        if state["best"] is not None and (out / "best").is_dir():
            from safetensors.torch import load_file

            best_weights = load_file(str(out / "best" / "model.safetensors"))

    ddp = None
    if size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = ddp or model
    net.train()

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=state["step"], disable=not config.progress or rank > 0, desc="train",
               leave=False)
    t0 = time.perf_counter() - state["seconds"]
    stopped_early = interrupted = False

    def evaluate_now(epoch: float) -> None:
        nonlocal best_weights, stopped_early
        if eval_data is None:
            return
        metrics = evaluate(_unwrap(net), eval_data, config.eval_batch_size)
        net.train()
        record = {"step": state["step"], "epoch": round(epoch, 4), "samples": state["samples"],
                  "seconds": round(time.perf_counter() - t0, 3), "train_loss": state.get("last_loss"),
                  "val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"]}
        state["history"].append(record)
        if on_eval is not None and rank == 0:
            on_eval(record)
        if state["best"] is None or metrics["accuracy"] > state["best"]["val_accuracy"]:
            state["best"], state["bad_evals"] = record, 0
            best_weights = {k: v.detach().cpu().clone() for k, v in _unwrap(net).state_dict().items()}
            if out is not None:
                save_checkpoint(out / "best", net, tokenizer, state=record)
        else:
            state["bad_evals"] += 1
            if config.patience is not None and state["bad_evals"] >= config.patience:
                stopped_early = True

    lengths = [len(x) for x in train_data.input_ids]
    batches, batches_epoch = None, None
    while state["step"] < total and not stopped_early:
        epoch, in_epoch = divmod(state["step"], per_epoch)
        if batches_epoch != epoch:
            batches, batches_epoch = epoch_batches(lengths, epoch, config, size), epoch
        chunk = batches[in_epoch]
        micro = [chunk[i: i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]
        loss_sum = 0.0
        for j, ids in enumerate(micro):
            local = ids[rank::size]
            batch = collate([train_data.input_ids[i] for i in local], [train_data.labels[i] for i in local],
                            train_data.pad_token_id)
            labels = batch.pop("labels").to(device)
            batch = {k: v.to(device) for k, v in batch.items()}
            sync = j == len(micro) - 1
            ctx = net.no_sync() if ddp is not None and not sync else contextlib.nullcontext()
            with ctx:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = net(**batch).logits
                # sum over this rank's examples / all examples of the step; DDP averages over ranks,
                # so multiply by the world size: the gradient is exactly that of the global mean
                loss = F.cross_entropy(logits.float(), labels, reduction="sum")
                scaled = loss * size / len(chunk)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            loss_sum += float(loss.detach())
        if scaler is not None:
            scaler.unscale_(optimizer)
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["samples"] += len(chunk)
        state["last_loss"] = _all_sum([loss_sum])[0] / len(chunk)
        bar.update(1)
        bar.set_postfix(loss=f"{state['last_loss']:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        end_of_epoch = state["step"] % per_epoch == 0
        if (config.eval_every and state["step"] % config.eval_every == 0) or \
                (not config.eval_every and end_of_epoch) or state["step"] == total:
            if not state["history"] or state["history"][-1]["step"] != state["step"]:
                evaluate_now(state["step"] / per_epoch)
        state["seconds"] = time.perf_counter() - t0
        if out is not None and ((config.save_every and state["step"] % config.save_every == 0)
                                or state["step"] == total or stopped_early):
            save_checkpoint(out / "last", net, tokenizer, optimizer, scheduler, scaler, state)
        if stop_after_steps is not None and state["step"] >= stop_after_steps and state["step"] < total:
            interrupted = True
            break
    bar.close()
    if config.load_best and best_weights is not None and not interrupted:
        _unwrap(net).load_state_dict(best_weights)
    return TrainResult(history=state["history"], best=state["best"], steps=state["step"],
                       samples=state["samples"], seconds=time.perf_counter() - t0,
                       stopped_early=stopped_early, interrupted=interrupted)


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
    from . import resources

    _check_track(track)
    return resources.model_source(track, profile)


def _build_finetuned(track: str, prof: Profile, folder: Path) -> None:
    import torch

    from .environment import set_seed

    s = prof.sizes("finetune")
    set_seed(s.seed)
    model, tokenizer, ds = load_track(track, prof)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    data = {k: encode_dataset(ds[k], tokenizer, s.max_length) for k in ("train", "validation", "test")}
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
    import torch
    import transformers

    from . import resources

    _check_track(track)
    prof = get_profile(profile)
    s = prof.sizes("finetune")
    source = base_model_path(track, prof)
    fingerprint = {
        "track": track, "profile": prof.name, "sizes": _track_sizes(s, track),
        "source": resources.source_fingerprint(source), "max_length": prof.max_length,
        "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "version": 1,
    }
    from .checkpoints import cached

    return cached(f"finetuned-{track}-{prof.name}", lambda tmp: _build_finetuned(track, prof, tmp),
                  json.loads(json.dumps(fingerprint)), log=log)


def finetune_metrics(track: str = "english", profile: str | Profile | None = None) -> dict:
    """``metrics.json`` of :func:`finetuned_checkpoint` (builds it if needed)."""
    return json.loads((finetuned_checkpoint(track, profile) / "metrics.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- transformers.Trainer twin


def train_with_trainer(model, train_data: Encoded, eval_data: Encoded | None, config: TrainConfig,
                       output_dir: str | os.PathLike, tokenizer=None) -> dict:
    """The same run with ``transformers.Trainer`` (same optimizer groups, schedule, clipping,
    batch and steps); returns ``{"seconds", "samples_per_second", "steps", "val_accuracy"}``."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    if config.grad_accum != 1 and config.batch_size % config.grad_accum:
        raise ValueError("batch_size must be divisible by grad_accum")
    total = config.max_steps or steps_per_epoch(len(train_data), config) * config.epochs
    ds = Dataset.from_dict({"input_ids": train_data.input_ids, "labels": train_data.labels})

    def hf_collate(rows):
        return collate([r["input_ids"] for r in rows], [r["labels"] for r in rows], train_data.pad_token_id)

    args = TrainingArguments(
        output_dir=str(output_dir), learning_rate=config.lr, weight_decay=config.weight_decay,
        warmup_steps=int(config.warmup_ratio * total), lr_scheduler_type="linear",
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
        train_data = encode_dataset(ds["train"], tokenizer, s.max_length)
        val = encode_dataset(ds["validation"], tokenizer, s.max_length, limit=s.compare_eval_samples)
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
    import transformers

    from .checkpoints import cached

    prof = get_profile(profile)
    s = prof.sizes("finetune")
    fp = {"profile": prof.name, "steps": s.compare_steps, "lr": s.english_lr, "batch": s.batch_size,
          "max_length": s.max_length, "eval": s.compare_eval_samples, "transformers": transformers.__version__,
          "version": 1}
    folder = cached(f"finetune-compare-{prof.name}", lambda tmp: _compare_build(prof, tmp), fp)
    return json.loads((folder / "compare.json").read_text(encoding="utf-8"))["rows"]


# --------------------------------------------------------------------------- command line


def _load_data_file(path: Path) -> tuple[list[str], list[int], list[str] | None]:
    """A .jsonl / .json / .csv file with ``text`` and ``label`` (int or label name) per row."""
    import csv

    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        raise ValueError(f"data file {path} must end in .csv, .jsonl or .json")
    if not rows or any("text" not in r or "label" not in r for r in rows):
        raise ValueError(f"every row of {path} needs 'text' and 'label'")
    labels = [r["label"] for r in rows]
    if all(isinstance(y, int) or (isinstance(y, str) and y.isdigit()) for y in labels):
        return [r["text"] for r in rows], [int(y) for y in labels], None
    names = sorted({str(y) for y in labels})
    return [r["text"] for r in rows], [names.index(str(y)) for y in labels], names


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m ftbook finetune",
        description="Fine-tune a BERT sequence classifier (chapter 10). Data parallel: "
                    "torchrun --nproc-per-node N -m ftbook finetune ... (gloo on CPU, nccl on GPU).",
    )
    ap.add_argument("--track", choices=TRACKS, default="english",
                    help="bundled data + the profile's model: english (BBC News) or chinese (reviews)")
    ap.add_argument("--model", help="model dir or hub id (default: the track's pretrained model)")
    ap.add_argument("--train-file", type=Path, help=".jsonl/.json/.csv with text,label (default: the track's data)")
    ap.add_argument("--eval-file", type=Path, help="validation file (same format)")
    ap.add_argument("--profile", choices=("tiny", "full"), help="sizes (default: $FTBOOK_PROFILE or tiny)")
    ap.add_argument("--output-dir", type=Path, required=True, help="where checkpoints go (final/, last/, best/)")
    ap.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last")
    ap.add_argument("--max-length", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--batch-size", type=int, help="global batch per micro-step (summed over processes)")
    ap.add_argument("--grad-accum", type=int)
    ap.add_argument("--warmup-ratio", type=float)
    ap.add_argument("--schedule", choices=("linear", "constant"))
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--decay-norm-and-bias", action="store_true", help="also decay LayerNorm and bias")
    ap.add_argument("--max-grad-norm", type=float, help="0 disables clipping")
    ap.add_argument("--amp", choices=AMP_MODES)
    ap.add_argument("--eval-every", type=int, help="steps between evaluations (default: each epoch)")
    ap.add_argument("--patience", type=int, help="0 disables early stopping")
    ap.add_argument("--save-every", type=int)
    ap.add_argument("--group-by-length", action=argparse.BooleanOptionalAction,
                    help="batches of similar length (default: the track's setting; on for chinese)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _init_distributed() -> bool:
    """Join the process group torchrun / accelerate launch describe in the environment."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from . import resources
    from .environment import set_seed

    prof = get_profile(args.profile)
    s = prof.sizes("finetune")
    started = _init_distributed()
    try:
        rank, size = world()
        overrides = {k: v for k, v in {
            "lr": args.lr, "epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
            "grad_accum": args.grad_accum, "warmup_ratio": args.warmup_ratio, "schedule": args.schedule,
            "weight_decay": args.weight_decay, "amp": args.amp, "eval_every": args.eval_every,
            "save_every": args.save_every, "seed": args.seed,
            "group_by_length": args.group_by_length}.items() if v is not None}
        if args.max_grad_norm is not None:
            overrides["max_grad_norm"] = args.max_grad_norm or None
        if args.patience is not None:
            overrides["patience"] = args.patience or None
        overrides["decay_norm_and_bias"] = args.decay_norm_and_bias
        overrides["progress"] = not args.no_progress
        config = track_config(args.track, prof, **overrides)
        set_seed(config.seed)
        max_length = args.max_length or s.max_length
        source = args.model or base_model_path(args.track, prof)
        tokenizer = resources.from_pretrained(AutoTokenizer, source)
        if args.train_file:
            texts, labels, names = _load_data_file(args.train_file)
            names = names or [str(i) for i in range(max(labels) + 1)]
            train_data = encode(texts, labels, tokenizer, max_length)
            eval_data = None
            if args.eval_file:
                et, el, en = _load_data_file(args.eval_file)
                if en is not None and en != names:
                    raise ValueError(f"label names of {args.eval_file} ({en}) differ from the training file's ({names})")
                eval_data = encode(et, el, tokenizer, max_length, len(names))
        else:
            ds = resources.english_news(prof) if args.track == "english" else resources.chinese_reviews(prof)
            names = ds["train"].features["label"].names
            train_data = encode_dataset(ds["train"], tokenizer, max_length)
            eval_data = encode_dataset(ds["validation"], tokenizer, max_length)
        model = resources.quiet_load(lambda: resources.from_pretrained(
            AutoModelForSequenceClassification, source, num_labels=len(names),
            id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}))
        device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
        model.to(device)
        if rank == 0:
            print(f"[finetune] {len(train_data)} train examples, {size} process(es), global batch "
                  f"{config.batch_size}x{config.grad_accum}, model {source}", file=sys.stderr)
        result = train(model, train_data, eval_data, config, tokenizer=tokenizer,
                       output_dir=args.output_dir, resume=args.resume,
                       on_eval=lambda r: print(f"[finetune] step {r['step']}: val_accuracy "
                                               f"{r['val_accuracy']:.4f}", file=sys.stderr))
        save_checkpoint(args.output_dir / "final", model, tokenizer, state={
            "steps": result.steps, "best": result.best, "world_size": size})
        if rank == 0:
            summary = {"steps": result.steps, "samples": result.samples, "seconds": round(result.seconds, 2),
                       "best": result.best, "stopped_early": result.stopped_early, "world_size": size,
                       "output": str(args.output_dir / "final")}
            print(json.dumps(summary))
        return 0
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
