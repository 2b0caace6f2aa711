"""The book's one training loop, in the parts ``transformers.Trainer`` separates.

Taught in chapter 10 (``chapters/10_finetuning.ipynb``, "BERT 微调实战"). Every model the book
trains goes through :func:`train`: the fine-tuned classifiers (chapters 2, 10, 11), the
label-budget runs (chapter 9), the NER tagger (chapter 13), the FAQ experiments (chapter 17), the SFT run (chapter 16) and
the Post-/Pre-LN encoders of chapter 7. A different objective is a ``loss_fn`` argument; a
different validation metric an ``evaluate_fn``.

The parts, each switchable in :class:`TrainConfig`:

1. :func:`check_arguments` - bad settings and data fail before any work;
2. :func:`create_optimizer` - AdamW over :func:`ftbook.optim.param_groups` (no decay for biases
   and normalisation weights), the schedule of :func:`ftbook.optim.get_scheduler`, and a gradient
   scaler for fp16;
3. :func:`restore` - ``resume=True`` continues an interrupted run to the same weights;
4. :func:`training_step` - forward and backward over the micro-batches of one optimizer step
   (gradient accumulation, exact: the summed loss is divided by the targets of the whole step;
   ``no_sync`` under DDP until the last micro-batch; autocast for mixed precision);
5. :func:`optimizer_step` - unscale, clip by global norm, step, schedule, zero the gradients;
6. :func:`maybe_evaluate` / :func:`maybe_save` - evaluation every epoch or ``eval_every`` steps,
   early stopping on a validation metric, atomic safetensors checkpoints (``last/``, ``best/``).

Data come as :class:`ftbook.data.Encoded`; batches in random order, or grouped by length
(:class:`ftbook.data.LengthBucketSampler`). Started by ``torchrun`` the same code wraps the model
in ``DistributedDataParallel``; every rank takes an equal share of each global batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .data import IGNORE_INDEX, Encoded
from .distributed import all_sum, unwrap, world

AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Every setting of :func:`train`; each trick has its own switch (names follow
    ``transformers.TrainingArguments`` where it has the same setting).

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
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    schedule: str = "linear"  # a name of ftbook.optim.SCHEDULES
    weight_decay: float = 0.01
    decay_norm_and_bias: bool = False  # True decays LayerNorm and bias too (the naive way)
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0  # None: no clipping
    amp: str = "auto"  # "auto": bf16/fp16 on a GPU, off on CPU; "off", "bf16", "fp16"
    eval_every: int | None = None  # steps between evaluations; None: once per epoch
    metric_for_best_model: str = "accuracy"  # a key of what evaluation returns
    greater_is_better: bool = True
    patience: int | None = 2  # evaluations without improvement before stopping; None: never
    load_best: bool = True  # end with the weights of the best evaluation
    save_every: int | None = None  # steps between resumable checkpoints (needs output_dir)
    group_by_length: bool = False  # batches of similar length (Trainer: train_sampling_strategy)
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for name in ("lr", "max_grad_norm"):
            _positive(self, name, allow_none=name == "max_grad_norm", number=(int, float))
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            _positive(self, name)
        for name in ("max_steps", "eval_every", "patience", "save_every"):
            _positive(self, name, allow_none=True)
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise ValueError(f"TrainConfig.warmup_steps must be an int >= 0 or None, got {self.warmup_steps!r}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        from .optim import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        for name in ("group_by_length", "greater_is_better", "load_best", "decay_norm_and_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be a non-negative int, got {self.seed!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


def _positive(config, name: str, allow_none: bool = False, number=int) -> None:
    value = getattr(config, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, number) or value <= 0:
        kind = "int" if number is int else "number"
        raise ValueError(f"TrainConfig.{name} must be a positive {kind}"
                         f"{' or None' if allow_none else ''}, got {value!r}")


@dataclass
class TrainState:
    """Everything the loop carries from step to step; saved as ``trainer_state.json`` so that a
    resumed run continues exactly where the interrupted one stopped."""

    step: int = 0
    samples: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)  # one record per evaluation
    best: dict | None = None  # the record of the best evaluation
    bad_evals: int = 0  # evaluations since the best one
    losses: list[float] = field(default_factory=list)  # mean training loss of every step
    grad_norms: list[float] = field(default_factory=list)  # global gradient norm before clipping
    stopped_early: bool = False
    config: dict = field(default_factory=dict)


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
    losses: list[float] = field(default_factory=list, repr=False)
    grad_norms: list[float] = field(default_factory=list, repr=False)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


# --------------------------------------------------------------------------- batches


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


def total_steps(n: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps of the whole run: ``epochs`` epochs, or ``max_steps`` if fewer."""
    total = steps_per_epoch(n, config, world_size) * config.epochs
    return min(total, config.max_steps) if config.max_steps is not None else total


def warmup_steps(total: int, config: TrainConfig) -> int:
    """``config.warmup_steps`` if set, else ``int(warmup_ratio * total)`` (as Trainer does)."""
    if config.warmup_steps is not None:
        return min(config.warmup_steps, total)
    return int(config.warmup_ratio * total)


# --------------------------------------------------------------------------- loss and evaluation


def _logits(outputs):
    return outputs.logits if hasattr(outputs, "logits") else outputs


def cross_entropy_loss(model, batch: dict):
    """The default objective: the *summed* cross-entropy over every label that is not
    ``IGNORE_INDEX`` (one per example for classification, one per token for tagging or MLM).
    The loop divides by the number of those labels in the whole optimizer step."""
    import torch.nn.functional as F

    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = _logits(model(**inputs))
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def predict_logits(model, data: Encoded, batch_size: int = 64, device=None):
    """Logits of every example, in order, as a float32 CPU tensor: ``(n, num_labels)`` for one
    label per example, ``(n, max_len, num_labels)`` padded for token labels."""
    import torch

    if len(data) == 0:
        raise ValueError("cannot predict on an empty set")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out, order = [], sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))  # less padding
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = data.batch(order[start: start + batch_size])
            batch.pop("labels", None)
            out.append(_logits(model(**{k: v.to(device) for k, v in batch.items()})).float().cpu())
    model.train(was_training)
    if out[0].dim() == 3:  # token logits: pad every batch to the longest sequence
        width = max(o.size(1) for o in out)
        out = [torch.nn.functional.pad(o, (0, 0, 0, width - o.size(1))) for o in out]
    logits = torch.cat(out)
    result = torch.empty_like(logits)
    result[torch.tensor(order)] = logits
    return result


def evaluate(model, data: Encoded, batch_size: int = 64) -> dict:
    """``{"loss", "accuracy", "n"}`` over every label that is not ``IGNORE_INDEX`` (examples for
    classification, tokens for tagging), sharded and summed across data-parallel ranks."""
    import torch
    import torch.nn.functional as F

    rank, size = world()
    shard = data.subset(range(rank, len(data), size)) if size > 1 else data
    logits = predict_logits(model, shard, batch_size)
    labels = shard.batch(range(len(shard)))["labels"]
    if logits.dim() == 3:
        labels = F.pad(labels, (0, logits.size(1) - labels.size(1)), value=IGNORE_INDEX)
    logits, labels = logits.reshape(-1, logits.size(-1)), labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    loss_sum = float(F.cross_entropy(logits[keep], labels[keep], reduction="sum"))
    correct = float((logits[keep].argmax(-1) == labels[keep]).sum())
    loss_sum, correct, n = all_sum([loss_sum, correct, float(keep.sum())])
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": int(n)}


# --------------------------------------------------------------------------- the parts of the loop


def check_arguments(model, train_data, config, output_dir, resume: bool) -> None:
    """Refuse what cannot work, before any work: wrong types, empty data, labels the model has
    no class for, a batch that does not split over the processes, resume without a folder."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(train_data, Encoded) or len(train_data) == 0:
        raise ValueError("train_data must be a non-empty Encoded set (see ftbook.data.encode)")
    if (config.save_every or resume) and output_dir is None:
        raise ValueError("save_every and resume need output_dir")
    num_labels = getattr(getattr(unwrap(model), "config", None), "num_labels", None)
    if num_labels is not None and train_data.labels and not isinstance(train_data.labels[0], list):
        bad = [y for y in set(train_data.labels) if y >= num_labels]
        if bad:
            raise ValueError(f"labels {sorted(bad)} do not fit a model with num_labels={num_labels}")
    if config.batch_size % world()[1]:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of the world size {world()[1]}")


def amp_dtype(mode: str, device):
    """The autocast dtype of ``mode``: ``"auto"`` is bf16 (fp16 where bf16 is missing) on a GPU and
    off on a CPU; ``"bf16"`` / ``"fp16"`` are honoured on either (slow on a CPU, but tested there)."""
    import torch

    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def create_optimizer(model, config: TrainConfig, total: int, device):
    """``(optimizer, scheduler, scaler)``: AdamW over the book's parameter groups, the schedule
    ``config.schedule`` with its warm-up, and a ``GradScaler`` when training in fp16."""
    import torch

    from .optim import get_scheduler, param_groups

    groups = param_groups(model, config.weight_decay, config.decay_norm_and_bias)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    scheduler = get_scheduler(config.schedule, optimizer, warmup_steps(total, config), total)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype(config.amp, device) == torch.float16 else None
    return optimizer, scheduler, scaler


def restore(model, optimizer, scheduler, scaler, config: TrainConfig, output_dir: Path) -> tuple[TrainState, dict | None]:
    """Load ``output_dir/last`` into the model, optimizer, scheduler, scaler and RNG; return the
    saved :class:`TrainState` and the best weights so far (``best/``), if any."""
    import torch
    from safetensors.torch import load_file

    from .checkpoints import load_training_state, load_weights

    saved, tensors = load_training_state(output_dir / "last")
    ignore = ("progress",)
    if {k: v for k, v in saved["config"].items() if k not in ignore} != {
            k: v for k, v in config.to_dict().items() if k not in ignore}:
        raise ValueError(f"resume with the same TrainConfig as the interrupted run: {saved['config']}")
    load_weights(model, output_dir / "last")
    optimizer.load_state_dict(tensors["optimizer"])
    scheduler.load_state_dict(tensors["scheduler"])
    if scaler is not None and "scaler" in tensors:
        scaler.load_state_dict(tensors["scaler"])
    torch.set_rng_state(tensors["rng_cpu"])
    if "rng_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["rng_cuda"])
    state = TrainState(**saved)
    best = None
    if state.best is not None and (output_dir / "best" / "model.safetensors").is_file():
        best = load_file(str(output_dir / "best" / "model.safetensors"))
    return state, best


def training_step(net, data: Encoded, chunk: Sequence[int], config: TrainConfig, device, *,
                  loss_fn: Callable, dtype, scaler) -> float:
    """Forward and backward over the micro-batches of one optimizer step; returns the mean loss.

    Each micro-batch's summed loss is divided by the targets of the *whole* step (over every
    rank), so ``grad_accum`` 2 x 8 equals one batch of 16 and N processes equal one. DDP averages
    gradients over ranks, hence the factor ``world_size``.
    """
    import torch

    rank, size = world()
    micro = [data.batch(ids[rank::size]) for ids in
             (chunk[i: i + config.batch_size] for i in range(0, len(chunk), config.batch_size))]
    count = all_sum([float(sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro))])[0]
    loss_sum = 0.0
    for j, batch in enumerate(micro):
        batch = {k: v.to(device) for k, v in batch.items()}
        last = j == len(micro) - 1
        ctx = net.no_sync() if hasattr(net, "no_sync") and size > 1 and not last else contextlib.nullcontext()
        with ctx:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(net, batch)
            scaled = loss * size / count
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += float(loss.detach())
    return all_sum([loss_sum])[0] / count


def optimizer_step(net, optimizer, scheduler, scaler, max_grad_norm: float | None) -> float:
    """Unscale (fp16), clip to ``max_grad_norm``, step, advance the schedule, zero the gradients.
    Returns the global gradient norm *before* clipping (what clipping looked at)."""
    import torch

    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm if max_grad_norm else math.inf)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def maybe_evaluate(net, eval_data, state: TrainState, config: TrainConfig, *, per_epoch: int, total: int,
                   t0: float, evaluate_fn: Callable) -> bool:
    """Evaluate when it is time (every ``eval_every`` steps, else at each epoch's end, and at the
    last step); record it, and count evaluations without improvement for early stopping.
    Returns True when this evaluation is the best so far."""
    if eval_data is None or (state.history and state.history[-1]["step"] == state.step):
        return False
    due = (config.eval_every and state.step % config.eval_every == 0) or \
        (not config.eval_every and state.step % per_epoch == 0) or state.step == total
    if not due:
        return False
    metrics = evaluate_fn(unwrap(net), eval_data)
    net.train()
    key = config.metric_for_best_model
    if key not in metrics:
        raise KeyError(f"metric_for_best_model={key!r} is not among the evaluation's metrics {sorted(metrics)}")
    record = {"step": state.step, "epoch": round(state.step / per_epoch, 4), "samples": state.samples,
              "seconds": round(time.perf_counter() - t0, 3), "train_loss": state.losses[-1],
              **{f"val_{k}": v for k, v in metrics.items() if k != "n"}}
    state.history.append(record)
    better = state.best is None or (metrics[key] > state.best[f"val_{key}"] if config.greater_is_better
                                    else metrics[key] < state.best[f"val_{key}"])
    if better:
        state.best, state.bad_evals = record, 0
    else:
        state.bad_evals += 1
        state.stopped_early = config.patience is not None and state.bad_evals >= config.patience
    return better


def maybe_save(net, out: Path | None, state: TrainState, config: TrainConfig, total: int, tokenizer,
               optimizer, scheduler, scaler) -> None:
    """Write the resumable ``last/`` checkpoint every ``save_every`` steps, at the end, and when
    stopping early."""
    from .checkpoints import save_checkpoint

    if out is None:
        return
    if (config.save_every and state.step % config.save_every == 0) or state.step == total or state.stopped_early:
        save_checkpoint(out / "last", net, tokenizer, optimizer, scheduler, scaler, asdict(state))


# --------------------------------------------------------------------------- the loop


def train(model, train_data: Encoded, eval_data: Encoded | None = None, config: TrainConfig | None = None,
          *, tokenizer=None, output_dir: str | os.PathLike | None = None, resume: bool = False,
          loss_fn: Callable | None = None, evaluate_fn: Callable | None = None,
          on_eval: Callable[[dict], None] | None = None, on_step: Callable[[TrainState], None] | None = None,
          stop_after_steps: int | None = None) -> TrainResult:
    """Train ``model`` (every weight that requires a gradient) on ``train_data``.

    ``loss_fn(model, batch)`` returns the summed loss of a batch (default
    :func:`cross_entropy_loss`); ``evaluate_fn(model, eval_data)`` a dict of metrics (default
    :func:`evaluate`) holding ``config.metric_for_best_model``. ``output_dir``: where resumable
    checkpoints (``last/``) and the best weights (``best/``) go; ``resume=True`` continues from
    ``output_dir/last``. ``stop_after_steps`` simulates a crash after that many steps.
    """
    import torch

    config = config or TrainConfig()
    check_arguments(model, train_data, config, output_dir, resume)
    loss_fn = loss_fn or cross_entropy_loss
    evaluate_fn = evaluate_fn or (lambda m, d: evaluate(m, d, config.eval_batch_size))
    rank, size = world()
    device = next(model.parameters()).device
    dtype = amp_dtype(config.amp, device)
    torch.manual_seed(config.seed + rank)  # dropout masks
    per_epoch = steps_per_epoch(len(train_data), config, size)
    total = total_steps(len(train_data), config, size)
    optimizer, scheduler, scaler = create_optimizer(model, config, total, device)
    out = Path(output_dir) if output_dir is not None else None
    state, best_weights = TrainState(config=config.to_dict()), None
    if resume:
        state, best_weights = restore(model, optimizer, scheduler, scaler, config, out)
    net = model
    if size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net.train()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=state.step, disable=not config.progress or rank > 0, desc="train", leave=False)
    t0, interrupted, batches = time.perf_counter() - state.seconds, False, {}
    while state.step < total and not state.stopped_early:
        epoch, in_epoch = divmod(state.step, per_epoch)
        if epoch not in batches:
            batches = {epoch: epoch_batches(train_data.lengths, epoch, config, size)}
        chunk = batches[epoch][in_epoch]
        state.losses.append(training_step(net, train_data, chunk, config, device, loss_fn=loss_fn,
                                          dtype=dtype, scaler=scaler))
        state.grad_norms.append(optimizer_step(net, optimizer, scheduler, scaler, config.max_grad_norm))
        state.step, state.samples = state.step + 1, state.samples + len(chunk)
        bar.update(1)
        bar.set_postfix(loss=f"{state.losses[-1]:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if maybe_evaluate(net, eval_data, state, config, per_epoch=per_epoch, total=total, t0=t0,
                          evaluate_fn=evaluate_fn):
            best_weights = {k: v.detach().cpu().clone() for k, v in unwrap(net).state_dict().items()}
            if out is not None:
                from .checkpoints import save_checkpoint

                save_checkpoint(out / "best", net, tokenizer, state=state.best)
        if on_eval is not None and rank == 0 and state.history and state.history[-1]["step"] == state.step:
            on_eval(state.history[-1])
        if on_step is not None:
            on_step(state)
        state.seconds = time.perf_counter() - t0
        maybe_save(net, out, state, config, total, tokenizer, optimizer, scheduler, scaler)
        if stop_after_steps is not None and stop_after_steps <= state.step < total:
            interrupted = True
            break
    bar.close()
    if config.load_best and best_weights is not None and not interrupted:
        unwrap(net).load_state_dict(best_weights)
    return TrainResult(history=state.history, best=state.best, steps=state.step, samples=state.samples,
                       seconds=time.perf_counter() - t0, stopped_early=state.stopped_early,
                       interrupted=interrupted, losses=state.losses, grad_norms=state.grad_norms)
