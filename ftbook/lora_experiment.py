"""LoRA against full fine-tuning on the Chinese review track: accuracy, parameters, memory, speed.

Taught in chapter 15 (chapters/15_lora.ipynb), "LoRA：参数高效微调".

:func:`lora_vs_full` fine-tunes the profile's Chinese BERT (tiny: the book's shipped 4.6M-parameter
model; full: ``bert-base-chinese``) on the review track in two ways:

* ``full``: every parameter trained;
* ``lora r=...``: :func:`ftbook.lora.apply_lora` on the attention ``query`` and ``value`` linears
  (``alpha = 2 r``, so ``alpha / r`` is the same for every rank), the classifier head trained in full.

Every run is :func:`ftbook.training.train`. The learning rate of each arm is chosen on the
validation split over a small grid (LoRA's own grid is higher: only a few, freshly initialised
parameters move); only then is the test split read, once per chosen run. A TF-IDF + logistic
regression row (:func:`ftbook.baselines.baseline_report`, trained on the same examples) is added.
The result is cached with :func:`ftbook.checkpoints.cached`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "lora_experiment",
    tiny={
        "train_samples": 2000,  # a stratified subset of the 13,810 training reviews
        "val_samples": 250,  # the first reviews of the validation split (lr choice)
        "test_samples": 500,  # the first reviews of the test split (read once per chosen run)
        "max_length": 64,
        "batch_size": 16,
        "eval_batch_size": 128,
        "max_steps": 40,  # 640 reviews seen: the whole chapter runs in about 3 minutes on 2 cores
        "epochs": 1,
        "ranks": (1, 4, 16),
        "full_lrs": (1e-4, 3e-4),
        "lora_lrs": (1e-3, 3e-3),
        "seeds": (0,),
    },
    full={
        "train_samples": None,
        "val_samples": None,
        "test_samples": None,
        "max_length": 256,
        "batch_size": 32,
        "eval_batch_size": 128,
        "max_steps": None,
        "epochs": 2,
        "ranks": (1, 4, 16),
        "full_lrs": (2e-5, 5e-5),
        "lora_lrs": (3e-4, 1e-3),
        "seeds": (0, 1, 2),
    },
)

TARGETS = ("query", "value")


def adam_state_bytes(model) -> int:
    """Bytes AdamW keeps in ``optimizer.state`` for ``model``'s trainable parameters.

    Per trainable tensor ``p``: ``exp_avg`` and ``exp_avg_sq`` (each like ``p``) and a 1-element
    float32 ``step`` tensor (PyTorch's default, non-fused AdamW).
    """
    total = 0
    for p in model.parameters():
        if p.requires_grad:
            total += 2 * p.numel() * p.element_size() + 4
    return total


def measured_state_bytes(optimizer) -> int:
    """Sum of the bytes of every tensor in ``optimizer.state`` (what :func:`adam_state_bytes` predicts)."""
    import torch

    return sum(v.numel() * v.element_size() for s in optimizer.state.values()
               for v in s.values() if isinstance(v, torch.Tensor))


def make_model(folder, method: str, r: int | None = None, seed: int = 0):
    """A ``BertForSequenceClassification`` (2 labels) from ``folder``; LoRA on query/value if ``method == "lora"``."""
    import torch
    from transformers import BertForSequenceClassification

    from .lora import apply_lora
    from .resources import quiet_load

    if method not in ("full", "lora"):
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    if method == "lora" and r is None:
        raise ValueError("method 'lora' needs a rank r")
    torch.manual_seed(seed)  # the new classifier head (and LoRA's A) depend on the seed
    model = quiet_load(lambda: BertForSequenceClassification.from_pretrained(folder, num_labels=2))
    if method == "lora":
        apply_lora(model, r, 2 * r, list(TARGETS), modules_to_save=["classifier"])
    return model


def _check_sizes(s) -> None:
    if not s.ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in s.ranks):
        raise ValueError(f"ranks must be positive ints, got {s.ranks!r}")
    for name in ("full_lrs", "lora_lrs", "seeds"):
        if not getattr(s, name):
            raise ValueError(f"{name} must not be empty")


def _subset(split, n: int | None):
    return split if n is None else split.select(range(min(n, len(split))))


def load_data(prof: Profile, s):
    """``(folder, train, val, test, train_indices)``: Encoded splits of the review track (labels 0/1)."""
    from transformers import AutoTokenizer

    from . import resources
    from .baselines import label_budget_indices
    from .data import encode
    from .data import no_progress_bars
    from .pretrain import pretrained_chinese_bert

    folder = pretrained_chinese_bert(prof)
    tok = resources.from_pretrained(AutoTokenizer, str(folder))
    ds = resources.chinese_reviews(prof)
    idx = label_budget_indices(ds["train"]["label"], s.train_samples, seed=0)
    splits = [ds["train"].select(idx), _subset(ds["validation"], s.val_samples), _subset(ds["test"], s.test_samples)]
    with no_progress_bars():  # no "Map" bars on the chapter's page
        enc = [encode(sp["text"], sp["label"], tok, s.max_length, num_labels=2) for sp in splits]
    return (folder, *enc, idx)


def _trainable_state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def run_arm(folder, data, s, method: str, r: int | None, log: Callable[[str], None] = print) -> dict:
    """One arm: lr chosen on validation (seed ``s.seeds[0]``), then every seed at that lr; test read once per run."""
    import torch

    from .lora import count_parameters
    from .training import TrainConfig, evaluate, train

    train_data, val_data, test_data = data
    lrs = s.full_lrs if method == "full" else s.lora_lrs
    name = "full" if method == "full" else f"lora r={r}"

    def fit(lr, seed):
        model = make_model(folder, method, r, seed)
        config = TrainConfig(lr=lr, max_steps=s.max_steps, epochs=s.epochs, batch_size=s.batch_size,
                             eval_batch_size=s.eval_batch_size, patience=None, load_best=False,
                             seed=seed, progress=False)
        result = train(model, train_data, None, config)
        val = evaluate(model, val_data, s.eval_batch_size)["accuracy"]
        return model, result, val

    grid, best = {}, None
    for lr in lrs:  # lr choice on validation, first seed only
        model, result, val = fit(lr, s.seeds[0])
        grid[lr] = val
        log(f"[lora_experiment] {name} lr={lr:g}: val accuracy {val:.3f}")
        if best is None or val > best[2]:
            best = (lr, result, val, _trainable_state(model), model)
    lr, result, val, state, model = best
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in state:
                p.copy_(state[n])
    vals, tests, sps = [val], [evaluate(model, test_data, s.eval_batch_size)["accuracy"]], [result.seconds / result.steps]
    for seed in s.seeds[1:]:
        model, result, val = fit(lr, seed)
        vals.append(val)
        tests.append(evaluate(model, test_data, s.eval_batch_size)["accuracy"])
        sps.append(result.seconds / result.steps)
    trainable, total = count_parameters(model)
    return {"arm": name, "method": method, "r": r, "lr": lr, "lr_grid": {str(k): v for k, v in grid.items()},
            "val_accuracies": vals, "test_accuracies": tests,
            "val_accuracy": sum(vals) / len(vals), "test_accuracy": sum(tests) / len(tests),
            "trainable_params": trainable, "total_params": total,
            "optimizer_state_bytes": adam_state_bytes(model), "seconds_per_step": sum(sps) / len(sps),
            "steps": result.steps, "seeds": list(s.seeds)}


def baseline_row(prof: Profile, s, train_size: int, log: Callable[[str], None] = print) -> dict:
    """TF-IDF + logistic regression on the same training examples, scored on the same test reviews."""
    from . import resources
    from .baselines import baseline_report

    limit = None if s.train_samples is None else train_size
    report = baseline_report("chinese", prof, train_limit=limit, seed=0, log=log)["tfidf_lr"]
    labels = resources.chinese_reviews(prof)["test"]["label"]
    n = len(labels) if s.test_samples is None else min(s.test_samples, len(labels))
    preds = report["test_predictions"][:n]  # the test reviews the BERT runs are scored on
    test = sum(int(p == y) for p, y in zip(preds, labels[:n])) / n
    return {"arm": "tfidf_lr", "method": "tfidf_lr", "r": None, "lr": None,
            "val_accuracy": report["val_accuracy"], "test_accuracy": test,
            "val_accuracies": [report["val_accuracy"]], "test_accuracies": [test],
            "trainable_params": None, "total_params": None, "optimizer_state_bytes": None,
            "seconds_per_step": None, "steps": None, "seeds": [0]}


def lora_vs_full(profile: str | Profile | None = None, *, root: str | Path | None = None,
                 log: Callable[[str], None] = print) -> list[dict]:
    """Full fine-tuning vs LoRA at each rank of the profile vs TF-IDF + LR, cached; a list of row dicts.

    Each BERT row: ``arm``, ``method``, ``r``, chosen ``lr`` and its ``lr_grid`` (validation
    accuracy per lr), ``val_accuracy`` / ``test_accuracy`` (means over ``seeds``) and their lists,
    ``trainable_params``, ``total_params``, ``optimizer_state_bytes`` (AdamW's state, see
    :func:`adam_state_bytes`), ``seconds_per_step`` and ``steps``.
    """
    from . import baselines, data, lora, resources, training
    from .checkpoints import cached, fingerprint

    prof = get_profile(profile)
    s = prof.sizes("lora_experiment")
    _check_sizes(s)
    fp = fingerprint(sys.modules[__name__], lora, training, data, resources, baselines,
                     profile=prof.name, sizes=vars(s), model=prof.chinese_model)

    def build(tmp: Path) -> None:
        folder, train_data, val_data, test_data, idx = load_data(prof, s)
        rows = [run_arm(folder, (train_data, val_data, test_data), s, "full", None, log)]
        rows += [run_arm(folder, (train_data, val_data, test_data), s, "lora", r, log) for r in s.ranks]
        rows.append(baseline_row(prof, s, len(idx), log))
        (tmp / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")

    folder = cached(f"lora-vs-full-{prof.name}", build, fp, root=root, log=log)
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def results_table(rows: Sequence[dict]):
    """A ``pandas.DataFrame`` for the chapter: one row per arm, Chinese column names."""
    import pandas as pd

    table = []
    for row in rows:
        mb = row["optimizer_state_bytes"]
        table.append({"方法": row["arm"], "学习率": row["lr"], "验证准确率": row["val_accuracy"],
                      "测试准确率": row["test_accuracy"], "可训练参数": row["trainable_params"],
                      "优化器状态 (MB)": None if mb is None else mb / 2**20,
                      "秒/步": row["seconds_per_step"]})
    return pd.DataFrame(table)
