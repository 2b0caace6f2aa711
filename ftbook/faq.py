"""The FAQ experiments: small, cached, reproducible answers to the questions readers ask.

Taught in chapter 14 (``chapters/14_tools_summary_faq.ipynb``, "FAQ：用实验回答").

Every experiment fine-tunes the book's small character-level Chinese BERT (chapter 9's
:func:`ftbook.pretrain.pretrained_chinese_bert`, pre-trained with MLM on the reviews' train texts)
or the same architecture from random weights, on the bundled Chinese reviews, so that each runs in
seconds on a CPU; the ``full`` profile runs the same code on ``bert-base-chinese``. Results are
cached with :func:`ftbook.checkpoints.cached` (fingerprinted by sizes, seed and library versions),
so a chapter re-runs instantly and a cold cache rebuilds the same numbers. The independent runs of
each experiment train side by side with :func:`ftbook.workers.run_all` (one thread each, so the
numbers do not depend on how many run at once).

* :func:`review_domain` / :func:`reviews_by_domain`: the reviews mix three product domains
  (hotels, laptops, books); a keyword rule separates them, so domain shift can be measured.
* :func:`domain_shift_experiment`: train on one domain, test on another, with and without
  pre-training that has read the target domain's unlabeled text (FAQ 1).
* :func:`lr_experiment`: a learning-rate range test and a confirmation sweep (FAQ 2).
* :func:`overfitting_experiment`: a small train set with and without dropout, weight decay and
  early stopping (FAQ 3).
* :class:`EarlyStopping`: the rule used there (patience on validation loss, keep the best epoch).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import Profile, get_profile, register_sizes
from .workers import one_thread, run_all

EXPERIMENT_VERSION = 2  # bump when the code below changes the numbers it produces

register_sizes(
    "faq",
    tiny=dict(
        max_length=64, batch_size=32,
        shift_train=1200, shift_eval=200, shift_epochs=3, shift_lr=5e-4,
        lr_train=1200, lr_eval=400, lr_range_steps=80, lr_sweep_steps=120,
        overfit_train=128, overfit_eval=200, overfit_epochs=15, overfit_lr=1e-3, overfit_patience=3,
    ),
    full=dict(
        max_length=128, batch_size=32,
        shift_train=4000, shift_eval=300, shift_epochs=3, shift_lr=3e-5,
        lr_train=4000, lr_eval=1000, lr_range_steps=150, lr_sweep_steps=400,
        overfit_train=300, overfit_eval=1000, overfit_epochs=20, overfit_lr=3e-5, overfit_patience=3,
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
# A tiny character-level BERT and its training loops
# ----------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """Token ids and labels of a list of texts, padded to ``max_length``."""

    input_ids: Any  # (n, max_length) long
    attention_mask: Any  # (n, max_length) long
    labels: Any  # (n,) long

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def encode(tokenizer, texts: Sequence[str], labels: Sequence[int] | None, max_length: int) -> Encoded:
    import torch

    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length",
                    return_tensors="pt")
    y = torch.tensor(list(labels) if labels is not None else [-100] * len(texts), dtype=torch.long)
    return Encoded(enc["input_ids"], enc["attention_mask"], y)


def _batches(n: int, batch_size: int, generator):
    import torch

    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def _trim(data: Encoded, idx):
    """Rows ``idx``, cut to the longest sequence among them (dynamic padding)."""
    mask = data.attention_mask[idx]
    width = int(mask.sum(1).max())
    return data.input_ids[idx, :width], mask[:, :width], data.labels[idx]


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


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for ``patience`` epochs; keep the best.

    ``step(loss)`` returns True when training should stop. ``best_epoch`` (0-based) is the epoch
    whose weights early stopping keeps; ``min_delta`` is the improvement that counts.
    """

    patience: int = 3
    min_delta: float = 0.0
    best_loss: float = math.inf
    best_epoch: int = -1
    epochs_seen: int = 0

    def __post_init__(self):
        if not isinstance(self.patience, int) or isinstance(self.patience, bool) or self.patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {self.patience!r}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")

    def step(self, val_loss: float) -> bool:
        if not isinstance(val_loss, (int, float)) or math.isnan(val_loss):
            raise ValueError(f"val_loss must be a real number, got {val_loss!r}")
        epoch = self.epochs_seen
        self.epochs_seen += 1
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch = float(val_loss), epoch
            return False
        return epoch - self.best_epoch >= self.patience


def best_epoch(val_losses: Sequence[float], patience: int) -> int:
    """The epoch (0-based) whose weights :class:`EarlyStopping` keeps for this loss history."""
    if not val_losses:
        raise ValueError("val_losses is empty: need the validation loss of at least one epoch")
    stopper = EarlyStopping(patience=patience)
    for loss in val_losses:
        if stopper.step(loss):
            break
    return stopper.best_epoch


@dataclass
class History:
    """Per-epoch (or per-evaluation) records of a training run."""

    train_loss: list
    val_loss: list
    val_acc: list
    stopped_epoch: int | None = None
    best_epoch: int | None = None

    def as_dict(self) -> dict:
        return dict(train_loss=self.train_loss, val_loss=self.val_loss, val_acc=self.val_acc,
                    stopped_epoch=self.stopped_epoch, best_epoch=self.best_epoch)


def evaluate(model, data: Encoded, batch_size: int = 128) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``data`` (eval mode, no grad)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            idx = torch.arange(i, min(i + batch_size, len(data)))
            ids, mask, y = _trim(data, idx)
            logits = model(input_ids=ids, attention_mask=mask).logits
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
    model.train()
    return total_loss / len(data), correct / len(data)


def train_classifier(model, train: Encoded, val: Encoded, *, epochs: int, lr: float, batch_size: int,
                     weight_decay: float = 0.0, early_stopping: EarlyStopping | None = None,
                     seed: int = 0, warmup_frac: float = 0.1) -> History:
    """AdamW with linear warm-up and decay; evaluates on ``val`` after every epoch.

    With ``early_stopping``, training stops when it says so and the best epoch's weights are
    restored (so the returned model is the one early stopping keeps).
    """
    import copy

    import torch
    import torch.nn.functional as F

    from .optim import get_linear_schedule_with_warmup  # the same schedule as pre-training

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(train) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=max(1, int(steps * warmup_frac)),
                                            num_training_steps=steps)
    hist = History([], [], [])
    best_state = None
    model.train()
    for epoch in range(epochs):
        seen, total = 0, 0.0
        for idx in _batches(len(train), batch_size, gen):
            ids, mask, y = _trim(train, idx)
            loss = F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        vloss, vacc = evaluate(model, val)
        hist.train_loss.append(round(total / seen, 6))
        hist.val_loss.append(round(vloss, 6))
        hist.val_acc.append(round(vacc, 6))
        if early_stopping is not None:
            stop = early_stopping.step(vloss)
            if early_stopping.best_epoch == epoch:
                best_state = copy.deepcopy(model.state_dict())
            if stop:
                hist.stopped_epoch = epoch
                break
    if early_stopping is not None and best_state is not None:
        model.load_state_dict(best_state)
        hist.best_epoch = early_stopping.best_epoch
    return hist


# ----------------------------------------------------------------------------------------------
# Cached experiments
# ----------------------------------------------------------------------------------------------


def _fingerprint(kind: str, sizes, seed: int, **extra) -> dict:
    import torch
    import transformers

    return dict(kind=kind, version=EXPERIMENT_VERSION, sizes=dict(vars(sizes)), seed=seed,
                torch=torch.__version__.split("+")[0], transformers=transformers.__version__, **extra)


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


def _base_fingerprint(prof) -> dict:
    """Identify the starting checkpoint by the SHA-256 of its weights (its manifest when cached)."""
    from .checkpoints import sha256_file

    ckpt = base_checkpoint(prof)
    weights = sorted(ckpt.glob("*.safetensors"))
    return {"base": ckpt.name, "base_sha256": [sha256_file(w) for w in weights]}


def _shift_run(ckpt: str, pretrained: bool, train: Encoded, val: Encoded, src_test: Encoded,
               tgt_test: Encoded, *, epochs: int, lr: float, batch_size: int, seed: int) -> dict:
    """One domain-shift run: fine-tune, then accuracy on both domains' test sets."""
    model = new_classifier(ckpt, pretrained=pretrained, seed=seed)
    hist = train_classifier(model, train, val, epochs=epochs, lr=lr, batch_size=batch_size,
                            weight_decay=0.01, seed=seed)
    return {"source_acc": round(evaluate(model, src_test)[1], 4),
            "target_acc": round(evaluate(model, tgt_test)[1], 4),
            "val_acc": hist.val_acc, "train_loss": hist.train_loss}


def domain_shift_experiment(source: str = "hotel", target: str = "book", profile: str | Profile | None = None,
                            seed: int = 0, log: Callable[[str], None] | None = None,
                            workers: int | None = None) -> dict:
    """Fine-tune on ``source`` labels, test on ``source`` and ``target`` (FAQ 1). Cached.

    Four runs with the same recipe and the same number of labels; only the starting weights and
    the labelled domain differ:

    * ``scratch``: random weights, source labels.
    * ``pretrained``: chapter 9's BERT, whose MLM pre-training read the train texts of *all* review
      domains (target included, labels never), fine-tuned on source labels.
    * ``scratch_target`` / ``pretrained_target``: the same two starts with *target* labels: the
      in-domain reference the shifted runs are compared with.

    Returns ``{"conditions": {name: {"source_acc", "target_acc", ...}}, "majority": ..., ...}``.
    """
    _check_domain(source)
    _check_domain(target)
    if source == target:
        raise ValueError(f"source and target must differ, both are {source!r}")
    prof = get_profile(profile)
    s = prof.sizes("faq")
    fp = _fingerprint("domain_shift", s, seed, source=source, target=target, profile=prof.name,
                      **_base_fingerprint(prof))

    def compute() -> dict:
        ckpt = base_checkpoint(prof)
        tok = load_tokenizer(ckpt)
        doms = reviews_by_domain(prof)
        src_te, tgt_te = doms[source]["test"], doms[target]["test"]  # whole test splits
        enc = {
            "src_tr": encode(tok, *balanced_subset(*doms[source]["train"], s.shift_train), s.max_length),
            "tgt_tr": encode(tok, *balanced_subset(*doms[target]["train"], s.shift_train), s.max_length),
            "src_val": encode(tok, *balanced_subset(*doms[source]["validation"], s.shift_eval), s.max_length),
            "tgt_val": encode(tok, *balanced_subset(*doms[target]["validation"], s.shift_eval), s.max_length),
            "src_te": encode(tok, *src_te, s.max_length),
            "tgt_te": encode(tok, *tgt_te, s.max_length),
        }
        runs = {"scratch": (False, "src"), "pretrained": (True, "src"),
                "scratch_target": (False, "tgt"), "pretrained_target": (True, "tgt")}
        tasks = [((str(ckpt), pretrained, enc[f"{side}_tr"], enc[f"{side}_val"], enc["src_te"], enc["tgt_te"]),
                  dict(epochs=s.shift_epochs, lr=s.shift_lr, batch_size=s.batch_size, seed=seed))
                 for pretrained, side in runs.values()]
        results = dict(zip(runs, run_all(_shift_run, tasks, workers, log=log, names=list(runs))))
        return {"source": source, "target": target, "conditions": results, "n_train": len(enc["src_tr"]),
                "n_test": {source: len(src_te[0]), target: len(tgt_te[0])},
                "majority": {source: round(max(p := sum(src_te[1]) / len(src_te[1]), 1 - p), 4),
                             target: round(max(q := sum(tgt_te[1]) / len(tgt_te[1]), 1 - q), 4)}}

    return _cached_json(f"faq-domain-shift-{source}-{target}-{prof.name}", fp, compute, log)


def _review_splits(prof, s, n_train: int, n_eval: int):
    from .resources import chinese_reviews

    ds = chinese_reviews(prof)
    ckpt = base_checkpoint(prof)
    tok = load_tokenizer(ckpt)
    train = balanced_subset(ds["train"]["text"], ds["train"]["label"], n_train)
    val = balanced_subset(ds["validation"]["text"], ds["validation"]["label"], n_eval)
    return ckpt, encode(tok, *train, s.max_length), encode(tok, *val, s.max_length)


def _sweep_run(ckpt: str, lr: float, train: Encoded, val: Encoded, *, epochs: int, batch_size: int,
               seed: int) -> dict:
    """One learning rate of the confirmation sweep."""
    model = new_classifier(ckpt, seed=seed)
    hist = train_classifier(model, train, val, epochs=epochs, lr=lr, batch_size=batch_size,
                            weight_decay=0.01, seed=seed)
    return {"lr": lr, "val_acc": hist.val_acc, "train_loss": hist.train_loss}


def lr_experiment(profile: str | Profile | None = None, seed: int = 0,
                  log: Callable[[str], None] | None = None, workers: int | None = None) -> dict:
    """Learning-rate range test when fine-tuning the pre-trained BERT, then a short sweep (FAQ 2).

    Cached. Returns ``{"range": {"lrs", "losses", "smoothed", "suggested", "diverged_at"},
    "sweep": {key: {"lr", "val_acc", "train_loss"}}}``; the sweep trains at the suggestion, 10x
    below and 10x above it.
    """
    from .lr_finder import lr_range_test, suggest_lr

    prof = get_profile(profile)
    s = prof.sizes("faq")
    fp = _fingerprint("lr", s, seed, profile=prof.name, **_base_fingerprint(prof))

    def compute() -> dict:
        import torch
        import torch.nn.functional as F

        ckpt, train, val = _review_splits(prof, s, s.lr_train, s.lr_eval)
        gen = torch.Generator().manual_seed(seed)

        def batches():
            while True:
                for idx in _batches(len(train), s.batch_size, gen):
                    ids, mask, y = _trim(train, idx)
                    yield (ids, mask), y

        def loss_fn(model, batch):
            (ids, mask), y = batch
            return F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, y)

        model = new_classifier(ckpt, seed=seed)
        rt = lr_range_test(model, loss_fn, batches(), start_lr=1e-6, end_lr=1.0,
                           num_steps=s.lr_range_steps)
        suggested = suggest_lr(rt.lrs, rt.smoothed)
        epochs = max(1, round(s.lr_sweep_steps * s.batch_size / len(train)))
        lrs = (suggested / 10, suggested, suggested * 10)
        tasks = [((str(ckpt), lr, train, val), dict(epochs=epochs, batch_size=s.batch_size, seed=seed))
                 for lr in lrs]
        runs = run_all(_sweep_run, tasks, workers, log=log, names=[f"lr {lr:.2e}" for lr in lrs])
        sweep = {f"{lr:.2e}": run for lr, run in zip(lrs, runs)}
        return {"range": {"lrs": rt.lrs, "losses": rt.losses, "smoothed": rt.smoothed,
                          "suggested": suggested, "diverged_at": rt.diverged_at},
                "sweep": sweep, "epochs": epochs, "n_train": len(train)}

    return _cached_json(f"faq-lr-{prof.name}", fp, compute, log)


OVERFIT_CONDITIONS = {
    # name: (dropout, weight_decay, early stopping)
    "baseline": (0.0, 0.0, False),
    "dropout": (0.3, 0.0, False),
    "weight_decay": (0.0, 0.1, False),
    "early_stopping": (0.0, 0.0, True),
}


def _overfit_run(ckpt: str, dropout: float, weight_decay: float, early_stopping: bool, train: Encoded,
                 val: Encoded, *, epochs: int, lr: float, batch_size: int, patience: int, seed: int) -> dict:
    """One condition of the over-fitting experiment; "kept" is the model training returns."""
    model = new_classifier(ckpt, dropout=dropout, seed=seed)
    stopper = EarlyStopping(patience=patience) if early_stopping else None
    hist = train_classifier(model, train, val, epochs=epochs, lr=lr, batch_size=batch_size,
                            weight_decay=weight_decay, early_stopping=stopper, seed=seed)
    kept_loss, kept_acc = evaluate(model, val)
    return {**hist.as_dict(), "dropout": dropout, "weight_decay": weight_decay,
            "early_stopping": early_stopping, "kept_val_loss": round(kept_loss, 4),
            "kept_val_acc": round(kept_acc, 4)}


def overfitting_experiment(profile: str | Profile | None = None, seed: int = 0,
                           log: Callable[[str], None] | None = None, workers: int | None = None) -> dict:
    """A small train set, with and without dropout, weight decay and early stopping (FAQ 3). Cached.

    Each condition fine-tunes the same pre-trained BERT for ``overfit_epochs`` epochs on
    ``overfit_train`` labelled reviews and is evaluated after every epoch.
    Returns ``{"conditions": {name: history + "kept_val_loss", "kept_val_acc"}}``: the "kept" model
    is the last epoch's, or early stopping's best epoch.
    """
    prof = get_profile(profile)
    s = prof.sizes("faq")
    fp = _fingerprint("overfit", s, seed, profile=prof.name, conditions=OVERFIT_CONDITIONS,
                      **_base_fingerprint(prof))

    def compute() -> dict:
        ckpt, train, val = _review_splits(prof, s, s.overfit_train, s.overfit_eval)
        tasks = [((str(ckpt), dropout, wd, es, train, val),
                  dict(epochs=s.overfit_epochs, lr=s.overfit_lr, batch_size=s.batch_size,
                       patience=s.overfit_patience, seed=seed))
                 for dropout, wd, es in OVERFIT_CONDITIONS.values()]
        runs = run_all(_overfit_run, tasks, workers, log=log, names=list(OVERFIT_CONDITIONS))
        out = dict(zip(OVERFIT_CONDITIONS, runs))
        return {"conditions": out, "n_train": len(train), "n_val": len(val)}

    return _cached_json(f"faq-overfit-{prof.name}", fp, compute, log)
