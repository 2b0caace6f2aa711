"""The FAQ experiments: small, cached, reproducible answers to the questions readers ask.

Taught in chapter 17 (``chapters/17_tools_summary_faq.ipynb``, "FAQ：用实验回答").

Every experiment fine-tunes the book's small character-level Chinese BERT (chapter 9's
:func:`ftbook.pretrain.pretrained_chinese_bert`, pre-trained with MLM on the reviews' train texts
and the People's Daily, shipped with the book) or the same architecture from random weights, on
the bundled Chinese reviews, so that each runs in minutes on a CPU; the ``full`` profile runs the same code on ``bert-base-chinese``. Results are
cached with :func:`ftbook.checkpoints.cached` (:func:`ftbook.checkpoints.fingerprint`: sizes, seed,
the base model, the code that trains and the library versions),
so a chapter re-runs instantly and a cold cache rebuilds the same numbers. The independent runs of
each experiment train side by side with :func:`ftbook.workers.run_all` (one thread each, so the
numbers do not depend on how many run at once).

* :func:`review_domain` / :func:`reviews_by_domain`: the reviews mix three product domains
  (hotels, laptops, books); a keyword rule separates them, so domain shift can be measured.
* :func:`dapt_checkpoint`: domain-adaptive pre-training, the shipped BERT's MLM continued on one
  domain's unlabelled texts.
* :func:`domain_shift_experiment`: train on one domain, test on another: from random weights,
  from the pre-trained BERT, and from that BERT after DAPT on the target domain (FAQ 1).
* :func:`lr_experiment`: a learning-rate range test and a confirmation sweep (FAQ 2).
* :func:`overfitting_experiment`: a small train set with and without dropout, weight decay and
  early stopping (FAQ 3).

Every arm runs over several seeds (``sizes.seeds``) and reports mean and standard deviation
(:func:`mean_std`).

Every run trains through the book's one loop, :func:`ftbook.training.train` (AdamW over
:func:`ftbook.optim.param_groups`, linear warm-up and decay, gradient clipping), evaluated after
every epoch; early stopping is the loop's own, on the validation loss (:func:`train_config`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .config import Profile, get_profile, register_sizes
from .data import Encoded, encode
from .training import TrainConfig, evaluate, steps_per_epoch, train
from .workers import one_thread, run_all

register_sizes(
    "faq",
    # tiny: one training step of the shipped 4-layer, hidden-256 BERT on 32 reviews takes a second
    # or more on one CPU core, so the runs are short: reviews cut to 32 tokens, 400 labels and 3
    # epochs (FAQ 1 and 2), 10 epochs of 128 reviews (FAQ 3); the three experiments together then
    # take a few minutes on 2 cores
    tiny=dict(
        max_length=32, batch_size=32,
        shift_train=400, shift_eval=100, shift_epochs=3, shift_lr=5e-4,
        lr_train=400, lr_eval=200, lr_range_steps=60, lr_sweep_steps=39,
        overfit_train=128, overfit_eval=200, overfit_epochs=10, overfit_lr=1e-3, overfit_patience=3,
        # seeds of every arm; continued MLM pre-training (DAPT) of the shipped model on one
        # domain's unlabelled train texts, packed to 128 characters, about 5 minutes on one core
        seeds=3, dapt_steps=500, dapt_lr=3e-4, dapt_warmup=50, dapt_max_length=128, dapt_batch=32,
    ),
    full=dict(
        max_length=128, batch_size=32,
        shift_train=4000, shift_eval=300, shift_epochs=3, shift_lr=3e-5,
        lr_train=4000, lr_eval=1000, lr_range_steps=150, lr_sweep_steps=400,
        overfit_train=300, overfit_eval=1000, overfit_epochs=20, overfit_lr=3e-5, overfit_patience=3,
        seeds=3, dapt_steps=2000, dapt_lr=5e-5, dapt_warmup=200, dapt_max_length=256, dapt_batch=32,
    ),
)

# A review belongs to a domain when its keywords match and no other domain's do.
REVIEW_DOMAINS: Mapping[str, tuple[str, ...]] = {
    "hotel": ("酒店", "房间", "宾馆", "前台", "入住", "早餐", "携程", "服务员", "住"),
    "laptop": ("电脑", "屏幕", "键盘", "电池", "系统", "散热", "硬盘", "笔记本", "驱动", "内存",
               "显卡", "本本", "风扇", "光驱", "鼠标", "机器"),
    "book": ("书", "作者", "阅读", "印刷", "读", "小说", "故事"),
}
DOMAIN_NAMES_ZH = {"hotel": "酒店", "laptop": "笔记本电脑", "book": "图书"}


def review_domain(text: str) -> str | None:
    """``'hotel'``, ``'laptop'`` or ``'book'`` when exactly one domain's keywords occur, else None."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    hits = [name for name, words in REVIEW_DOMAINS.items() if any(w in text for w in words)]
    return hits[0] if len(hits) == 1 else None


def reviews_by_domain(profile: str | Profile | None = None) -> dict[str, dict[str, tuple[list[str], list[int]]]]:
    """``{domain: {split: (texts, labels)}}`` from :func:`ftbook.resources.chinese_reviews`.

    Reviews that match no domain or several are left out (``None`` from :func:`review_domain`).
    """
    from .resources import chinese_reviews

    ds = chinese_reviews(profile)
    out: dict[str, dict[str, tuple[list[str], list[int]]]] = {
        d: {s: ([], []) for s in ds} for d in REVIEW_DOMAINS
    }
    for split in ds:
        for text, label in zip(ds[split]["text"], ds[split]["label"]):
            dom = review_domain(text)
            if dom is not None:
                out[dom][split][0].append(text)
                out[dom][split][1].append(label)
    return out


def balanced_subset(texts: Sequence[str], labels: Sequence[int], n: int) -> tuple[list[str], list[int]]:
    """The first ``n // 2`` texts of each of the two labels (the split is already hash-shuffled)."""
    if n < 2:
        raise ValueError(f"n must be >= 2 (one example per label at least), got {n}")
    if len(texts) != len(labels):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    per = n // 2
    picked: list[tuple[str, int]] = []
    for want in (0, 1):
        rows = [(t, y) for t, y in zip(texts, labels) if y == want][:per]
        if len(rows) < per:
            raise ValueError(f"only {len(rows)} texts with label {want}, asked for {per}")
        picked += rows
    picked.sort(key=lambda r: hash_key(r[0]))
    return [t for t, _ in picked], [y for _, y in picked]


def hash_key(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# The models and the one training recipe of the FAQ runs
# ----------------------------------------------------------------------------------------------


def base_checkpoint(profile: str | Profile | None = None) -> Path:
    """The pre-trained Chinese BERT the FAQ experiments start from (chapter 9's, or the hub's)."""
    from .pretrain import pretrained_chinese_bert

    return Path(pretrained_chinese_bert(profile))


def load_tokenizer(checkpoint: str | Path):
    """The checkpoint's tokenizer (the character vocabulary for the book's own BERT)."""
    from transformers import AutoTokenizer

    from .resources import from_pretrained

    return from_pretrained(AutoTokenizer, str(checkpoint))


def new_classifier(checkpoint: str | Path, pretrained: bool = True, dropout: float | None = None,
                   num_labels: int = 2, seed: int = 0):
    """A ``BertForSequenceClassification`` with ``checkpoint``'s architecture.

    ``pretrained=True`` copies the checkpoint's encoder weights; ``False`` gives the same network
    with random weights (the "no pre-training" control). ``dropout`` overrides both dropouts.
    """
    import torch
    from transformers import AutoConfig, BertForSequenceClassification

    from .resources import quiet_load

    config = AutoConfig.from_pretrained(str(checkpoint), num_labels=num_labels)
    if dropout is not None:
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    torch.manual_seed(seed)
    if not pretrained:
        return BertForSequenceClassification(config)
    # the new head is expected to be "missing": no load report
    return quiet_load(lambda: BertForSequenceClassification.from_pretrained(str(checkpoint), config=config))


def train_config(*, epochs: int, lr: float, batch_size: int, weight_decay: float = 0.01,
                 patience: int | None = None, seed: int = 0) -> TrainConfig:
    """The recipe of every FAQ run: :func:`ftbook.training.train` with AdamW (no decay for biases
    and LayerNorm), 10 % linear warm-up then linear decay, clipping at 1, an evaluation after
    every epoch. ``patience`` switches on early stopping on the *validation loss* (lower is
    better); the run then ends with the best epoch's weights, otherwise with the last epoch's."""
    return TrainConfig(lr=lr, epochs=epochs, batch_size=batch_size, eval_batch_size=128, warmup_ratio=0.1,
                       schedule="linear", weight_decay=weight_decay, max_grad_norm=1.0, amp="off",
                       metric_for_best_model="loss", greater_is_better=False, patience=patience,
                       load_best=patience is not None, seed=seed, progress=False)


def fine_tune(model, train_data: Encoded, val_data: Encoded, config: TrainConfig) -> dict:
    """Train with :func:`ftbook.training.train` and return the per-epoch curves.

    ``{"train_loss", "val_loss", "val_acc", "best_epoch", "stopped_epoch", "steps"}``: the mean
    training loss of each epoch's steps (from ``TrainResult.losses``), the validation loss and
    accuracy after each epoch (``TrainResult.history``), the 0-based epoch with the lowest
    validation loss, and the epoch at which early stopping ended the run (None if it did not).
    """
    result = train(model, train_data, val_data, config)
    per_epoch = steps_per_epoch(len(train_data), config)
    losses = result.losses
    epoch_loss = [sum(losses[i:i + per_epoch]) / len(losses[i:i + per_epoch]) for i in range(0, len(losses), per_epoch)]
    history = result.history
    return {"train_loss": [round(x, 6) for x in epoch_loss],
            "val_loss": [round(r["val_loss"], 6) for r in history],
            "val_acc": [round(r["val_accuracy"], 6) for r in history],
            "best_epoch": history.index(result.best),
            "stopped_epoch": len(history) - 1 if result.stopped_early else None,
            "steps": result.steps}


# ----------------------------------------------------------------------------------------------
# Cached experiments
# ----------------------------------------------------------------------------------------------


def _fingerprint(kind: str, prof, sizes, seed: int, *extra_modules, **settings) -> dict:
    """:func:`ftbook.checkpoints.fingerprint` of an experiment: this module and the training code
    (loop, optimizer groups and schedule, data), the base model, sizes and seed."""
    from . import data, optim, training
    from .checkpoints import fingerprint
    from .models import source_fingerprint

    return fingerprint(sys.modules[__name__], training, optim, data, *extra_modules, kind=kind,
                       profile=prof.name, sizes=vars(sizes), seed=seed,
                       base=source_fingerprint(str(base_checkpoint(prof))), **settings)


def _cached_json(name: str, fingerprint: dict, compute: Callable[[], dict], log) -> dict:
    from .checkpoints import cached

    def build(tmp: Path) -> None:
        with one_thread():  # a model this small gains little from more; results repeatable
            result = compute()
        (tmp / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False),
                                          encoding="utf-8")

    folder = cached(name, build, fingerprint, log=log or (lambda s: None))
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def _check_domain(name: str) -> None:
    if name not in REVIEW_DOMAINS:
        raise ValueError(f"unknown domain {name!r}; expected one of {', '.join(REVIEW_DOMAINS)}")


def _accuracy(model, data: Encoded) -> float:
    return round(evaluate(model, data, batch_size=128)["accuracy"], 4)


def _shift_run(ckpt: str, pretrained: bool, train_data: Encoded, val: Encoded, src_test: Encoded,
               tgt_test: Encoded, *, epochs: int, lr: float, batch_size: int, seed: int) -> dict:
    """One domain-shift run: fine-tune, then accuracy on both domains' test sets."""
    model = new_classifier(ckpt, pretrained=pretrained, seed=seed)
    curves = fine_tune(model, train_data, val, train_config(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed))
    return {"source_acc": _accuracy(model, src_test), "target_acc": _accuracy(model, tgt_test),
            "val_acc": curves["val_acc"], "train_loss": curves["train_loss"]}


def _majority(labels: Sequence[int]) -> float:
    p = sum(labels) / len(labels)
    return round(max(p, 1 - p), 4)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``n - 1``; 0 for a single value) of ``values``."""
    import statistics

    if not values:
        raise ValueError("mean_std needs at least one value")
    return (round(statistics.fmean(values), 4),
            round(statistics.stdev(values), 4) if len(values) > 1 else 0.0)


def _seeds(prof_sizes, seeds: Sequence[int] | None) -> list[int]:
    out = list(range(prof_sizes.seeds)) if seeds is None else list(seeds)
    if not out or any(isinstance(x, bool) or not isinstance(x, int) for x in out):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    return out


def _probe(model, tok, doms, max_length: int) -> dict[str, float]:
    """Masked-character accuracy (15 % masking, fixed seed) on each domain's validation texts."""
    from .pretrain import masked_accuracy

    return {d: round(masked_accuracy(model, tok, doms[d]["validation"][0], max_length=max_length), 4)
            for d in REVIEW_DOMAINS}


def dapt_checkpoint(domain: str, profile: str | Profile | None = None,
                    log: Callable[[str], None] | None = None) -> Path:
    """Domain-adaptive pre-training (DAPT, Gururangan et al. 2020): the shipped pre-trained BERT's
    MLM training *continued* on ``domain``'s unlabelled train texts (labels never read). Cached.

    The run is :func:`ftbook.pretrain.pretrain_mlm` for ``dapt_steps`` steps over the texts packed
    to ``dapt_max_length`` (:func:`ftbook.pretrain.packed_corpus`), with the pre-training's masking
    rate. The folder loads with ``from_pretrained``; its ``dapt.json`` records the texts, steps,
    loss log and the masked accuracy on every domain's validation texts before and after.
    """
    from . import pretrain
    from .checkpoints import cached

    _check_domain(domain)
    prof = get_profile(profile)
    s = prof.sizes("faq")
    fp = _fingerprint("dapt", prof, s, 0, pretrain, domain=domain)

    def build(tmp: Path) -> None:
        from transformers import BertForMaskedLM

        from .resources import from_pretrained

        ckpt = base_checkpoint(prof)
        tok = load_tokenizer(ckpt)
        doms = reviews_by_domain(prof)
        texts = doms[domain]["train"][0]
        with one_thread():
            model = from_pretrained(BertForMaskedLM, str(ckpt))
            before = _probe(model, tok, doms, s.dapt_max_length)
            packed = pretrain.packed_corpus(tok, texts, s.dapt_max_length)
            history = pretrain.pretrain_mlm(
                model, packed, tokenizer=tok, steps=s.dapt_steps, batch_size=s.dapt_batch, lr=s.dapt_lr,
                warmup_steps=s.dapt_warmup, mlm_probability=prof.sizes("pretrain").mlm_probability, seed=0, log=log)
            after = _probe(model, tok, doms, s.dapt_max_length)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        record = {"domain": domain, "texts": len(texts), "characters": sum(map(len, texts)),
                  "sequences": len(packed), "steps": s.dapt_steps, "lr": s.dapt_lr,
                  "masked_accuracy_before": before, "masked_accuracy_after": after, "history": history}
        (tmp / "dapt.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")

    return cached(f"faq-dapt-{domain}-{prof.name}", build, fp, log=log or (lambda m: None))


SHIFT_CONDITIONS = {
    # name: (start, labelled side); start "dapt" is dapt_checkpoint(target)
    "scratch": ("random", "src"), "pretrained": ("pretrained", "src"), "dapt": ("dapt", "src"),
    "scratch_target": ("random", "tgt"), "pretrained_target": ("pretrained", "tgt"),
}


def _shift_sets(prof, s, source: str, target: str, tok) -> dict[str, Encoded]:
    doms = reviews_by_domain(prof)

    def enc(texts, labels):
        return encode(texts, labels, tok, s.max_length, num_labels=2)

    return {"src_tr": enc(*balanced_subset(*doms[source]["train"], s.shift_train)),
            "tgt_tr": enc(*balanced_subset(*doms[target]["train"], s.shift_train)),
            "src_val": enc(*balanced_subset(*doms[source]["validation"], s.shift_eval)),
            "tgt_val": enc(*balanced_subset(*doms[target]["validation"], s.shift_eval)),
            "src_te": enc(*doms[source]["test"]), "tgt_te": enc(*doms[target]["test"])}  # whole test splits


def domain_shift_experiment(source: str = "hotel", target: str = "book", profile: str | Profile | None = None,
                            seeds: Sequence[int] | None = None, log: Callable[[str], None] | None = None,
                            workers: int | None = None) -> dict:
    """Fine-tune on ``source`` labels, test on ``source`` and ``target`` (FAQ 1). Cached.

    Five arms (:data:`SHIFT_CONDITIONS`) with the same recipe and number of labels, each over
    ``seeds`` (default ``range(sizes.seeds)``); only the starting weights and the labelled domain
    differ: random weights, chapter 9's BERT (whose pre-training read every domain's train texts,
    labels never), or that BERT after :func:`dapt_checkpoint` on the *target* texts; source labels,
    or (the in-domain references) target labels. Returns ``{"conditions": {name: {"source_acc",
    "target_acc" (one per seed), "source_mean", "source_std", "target_mean", "target_std"}},
    "majority", "n_train", "n_test", "seeds", "dapt": dapt.json}``.
    """
    _check_domain(source)
    _check_domain(target)
    if source == target:
        raise ValueError(f"source and target must differ, both are {source!r}")
    from . import pretrain  # DAPT's training code: part of what made the results

    prof = get_profile(profile)
    s = prof.sizes("faq")
    seeds = _seeds(s, seeds)
    fp = _fingerprint("domain_shift", prof, s, seeds[0], pretrain, source=source, target=target, seeds=seeds,
                      conditions=SHIFT_CONDITIONS)

    def compute() -> dict:
        ckpt = base_checkpoint(prof)
        dapt = dapt_checkpoint(target, prof, log=log)
        sets = _shift_sets(prof, s, source, target, load_tokenizer(ckpt))
        starts = {"random": (str(ckpt), False), "pretrained": (str(ckpt), True), "dapt": (str(dapt), True)}
        tasks = [((*starts[start], sets[f"{side}_tr"], sets[f"{side}_val"], sets["src_te"], sets["tgt_te"]),
                  dict(epochs=s.shift_epochs, lr=s.shift_lr, batch_size=s.batch_size, seed=seed))
                 for start, side in SHIFT_CONDITIONS.values() for seed in seeds]
        names = [f"{name} seed={seed}" for name in SHIFT_CONDITIONS for seed in seeds]
        runs = iter(run_all(_shift_run, tasks, workers, log=log, names=names))
        conditions = {}
        for name in SHIFT_CONDITIONS:
            per_seed = [next(runs) for _ in seeds]
            row = {k: [r[k] for r in per_seed] for k in ("source_acc", "target_acc")}
            row["source_mean"], row["source_std"] = mean_std(row["source_acc"])
            row["target_mean"], row["target_std"] = mean_std(row["target_acc"])
            conditions[name] = row
        src_labels, tgt_labels = sets["src_te"].labels, sets["tgt_te"].labels
        return {"source": source, "target": target, "conditions": conditions, "seeds": seeds,
                "n_train": len(sets["src_tr"]), "n_test": {source: len(src_labels), target: len(tgt_labels)},
                "majority": {source: _majority(src_labels), target: _majority(tgt_labels)},
                "dapt": json.loads((Path(dapt) / "dapt.json").read_text(encoding="utf-8"))}

    return _cached_json(f"faq-domain-shift-{source}-{target}-{prof.name}", fp, compute, log)


def _review_splits(prof, s, n_train: int, n_eval: int):
    from .resources import chinese_reviews

    ds = chinese_reviews(prof)
    ckpt = base_checkpoint(prof)
    tok = load_tokenizer(ckpt)
    train_set = balanced_subset(ds["train"]["text"], ds["train"]["label"], n_train)
    val = balanced_subset(ds["validation"]["text"], ds["validation"]["label"], n_eval)
    return (ckpt, encode(*train_set, tok, s.max_length, num_labels=2),
            encode(*val, tok, s.max_length, num_labels=2))


def _sweep_run(ckpt: str, lr: float, train_data: Encoded, val: Encoded, *, epochs: int, batch_size: int,
               seed: int) -> dict:
    """One learning rate of the confirmation sweep."""
    model = new_classifier(ckpt, seed=seed)
    curves = fine_tune(model, train_data, val, train_config(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed))
    return {"lr": lr, "val_acc": curves["val_acc"], "train_loss": curves["train_loss"]}


def lr_experiment(profile: str | Profile | None = None, seeds: Sequence[int] | None = None,
                  log: Callable[[str], None] | None = None, workers: int | None = None) -> dict:
    """Learning-rate range test when fine-tuning the pre-trained BERT, then a short sweep (FAQ 2).

    Cached. The range test (seed ``seeds[0]``) takes the steps of the sweep's recipe (AdamW
    groups, weight decay 0.01, clipping at 1; :func:`ftbook.lr_finder.lr_range_test`). The sweep
    trains at the suggestion, 10x below and 10x above it, once per seed. Returns ``{"range":
    {"lrs", "losses", "smoothed", "suggested", "diverged_at"}, "sweep": {key: {"lr", "runs" (one
    ``{"val_acc", "train_loss"}`` per seed), "final_val_acc", "mean", "std"}}, "seeds", ...}``.
    """
    from . import lr_finder
    from .lr_finder import lr_range_test, suggest_lr

    prof = get_profile(profile)
    s = prof.sizes("faq")
    seeds = _seeds(s, seeds)
    fp = _fingerprint("lr", prof, s, seeds[0], lr_finder, seeds=seeds)

    def compute() -> dict:
        ckpt, train_data, val = _review_splits(prof, s, s.lr_train, s.lr_eval)
        model = new_classifier(ckpt, seed=seeds[0])
        rt = lr_range_test(model, train_data, batch_size=s.batch_size, start_lr=1e-6, end_lr=1.0,
                           num_steps=s.lr_range_steps, weight_decay=0.01, max_grad_norm=1.0, seed=seeds[0])
        suggested = suggest_lr(rt.lrs, rt.smoothed)
        epochs = max(1, round(s.lr_sweep_steps * s.batch_size / len(train_data)))
        lrs = (suggested / 10, suggested, suggested * 10)
        tasks = [((str(ckpt), lr, train_data, val), dict(epochs=epochs, batch_size=s.batch_size, seed=seed))
                 for lr in lrs for seed in seeds]
        runs = iter(run_all(_sweep_run, tasks, workers, log=log,
                            names=[f"lr {lr:.2e} seed={seed}" for lr in lrs for seed in seeds]))
        sweep = {}
        for lr in lrs:
            per_seed = [next(runs) for _ in seeds]
            final = [r["val_acc"][-1] for r in per_seed]
            mean, std = mean_std(final)
            sweep[f"{lr:.2e}"] = {"lr": lr, "runs": [{k: r[k] for k in ("val_acc", "train_loss")} for r in per_seed],
                                  "final_val_acc": final, "mean": mean, "std": std}
        return {"range": {"lrs": rt.lrs, "losses": rt.losses, "smoothed": rt.smoothed,
                          "suggested": suggested, "diverged_at": rt.diverged_at},
                "sweep": sweep, "epochs": epochs, "n_train": len(train_data), "seeds": seeds}

    return _cached_json(f"faq-lr-{prof.name}", fp, compute, log)


OVERFIT_CONDITIONS = {
    # name: (dropout, weight_decay, early stopping)
    "baseline": (0.0, 0.0, False),
    "dropout": (0.3, 0.0, False),
    "weight_decay": (0.0, 0.1, False),
    "early_stopping": (0.0, 0.0, True),
}


def _overfit_run(ckpt: str, dropout: float, weight_decay: float, early_stopping: bool, train_data: Encoded,
                 val: Encoded, *, epochs: int, lr: float, batch_size: int, patience: int, seed: int) -> dict:
    """One condition of the over-fitting experiment; "kept" is the model training returns."""
    model = new_classifier(ckpt, dropout=dropout, seed=seed)
    config = train_config(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                          patience=patience if early_stopping else None, seed=seed)
    curves = fine_tune(model, train_data, val, config)
    kept = evaluate(model, val, batch_size=128)
    return {**curves, "dropout": dropout, "weight_decay": weight_decay, "early_stopping": early_stopping,
            "kept_val_loss": round(kept["loss"], 4), "kept_val_acc": round(kept["accuracy"], 4)}


def overfitting_experiment(profile: str | Profile | None = None, seeds: Sequence[int] | None = None,
                           log: Callable[[str], None] | None = None, workers: int | None = None) -> dict:
    """A small train set, with and without dropout, weight decay and early stopping (FAQ 3). Cached.

    Each condition fine-tunes the same pre-trained BERT for ``overfit_epochs`` epochs on
    ``overfit_train`` labelled reviews, once per seed (the seed draws the classifier head, the
    dropout masks and the batch order; the data are the same), and is evaluated after every epoch.
    Returns ``{"conditions": {name: {"runs": [curves + "kept_val_loss", "kept_val_acc"] per seed,
    "kept_val_loss", "kept_val_acc" (one per seed), "loss_mean", "loss_std", "acc_mean",
    "acc_std"}}, "seeds", ...}``: the "kept" model is the last epoch's, or early stopping's best.
    """
    prof = get_profile(profile)
    s = prof.sizes("faq")
    seeds = _seeds(s, seeds)
    fp = _fingerprint("overfit", prof, s, seeds[0], conditions=OVERFIT_CONDITIONS, seeds=seeds)

    def compute() -> dict:
        ckpt, train_data, val = _review_splits(prof, s, s.overfit_train, s.overfit_eval)
        tasks = [((str(ckpt), dropout, wd, es, train_data, val),
                  dict(epochs=s.overfit_epochs, lr=s.overfit_lr, batch_size=s.batch_size,
                       patience=s.overfit_patience, seed=seed))
                 for dropout, wd, es in OVERFIT_CONDITIONS.values() for seed in seeds]
        names = [f"{name} seed={seed}" for name in OVERFIT_CONDITIONS for seed in seeds]
        runs = iter(run_all(_overfit_run, tasks, workers, log=log, names=names))
        out = {}
        for name in OVERFIT_CONDITIONS:
            per_seed = [next(runs) for _ in seeds]
            row = {"runs": per_seed, "kept_val_loss": [r["kept_val_loss"] for r in per_seed],
                   "kept_val_acc": [r["kept_val_acc"] for r in per_seed]}
            row["loss_mean"], row["loss_std"] = mean_std(row["kept_val_loss"])
            row["acc_mean"], row["acc_std"] = mean_std(row["kept_val_acc"])
            out[name] = row
        return {"conditions": out, "n_train": len(train_data), "n_val": len(val), "seeds": seeds}

    return _cached_json(f"faq-overfit-{prof.name}", fp, compute, log)
