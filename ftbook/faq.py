"""The FAQ experiments: small, cached, reproducible answers to the questions readers ask.

Taught in chapter 14 (``chapters/14_tools_summary_faq.ipynb``, "FAQ：用实验回答").

Every experiment trains a *tiny* character-level Chinese BERT (``transformers.BertConfig`` with a
few layers, a vocabulary built by :mod:`ftbook.vocab`) on the bundled Chinese reviews, so that each
runs in seconds on a CPU; the ``full`` profile runs the same code with larger sizes. Results are
cached with :func:`ftbook.checkpoints.cached` (fingerprinted by sizes, seed and library versions),
so a chapter re-runs instantly and a cold cache rebuilds the same numbers.

* :func:`review_domain` / :func:`reviews_by_domain`: the reviews mix three product domains
  (hotels, laptops, books); a keyword rule separates them, so domain shift can be measured.
* :func:`domain_shift_experiment`: train on one domain, test on another, with and without
  masked-language-model pre-training on in-domain unlabeled text (FAQ 1).
* :func:`lr_experiment`: a learning-rate range test and a confirmation sweep (FAQ 2).
* :func:`overfitting_experiment`: a small train set with and without dropout, weight decay and
  early stopping (FAQ 3).
* :class:`EarlyStopping`: the rule used there (patience on validation loss, keep the best epoch).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import Profile, get_profile, register_sizes

EXPERIMENT_VERSION = 1  # bump when the code below changes the numbers it produces

register_sizes(
    "faq",
    tiny=dict(
        max_length=64, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
        vocab_min_freq=3, batch_size=32,
        shift_train=1200, shift_eval=200, shift_epochs=6, shift_lr=1e-3,
        mlm_steps=300, mlm_lr=1e-3,
        lr_train=1200, lr_eval=400, lr_range_steps=80, lr_sweep_steps=120,
        overfit_train=160, overfit_eval=400, overfit_epochs=25, overfit_lr=1e-3, overfit_patience=3,
    ),
    full=dict(
        max_length=128, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
        vocab_min_freq=2, batch_size=32,
        shift_train=4000, shift_eval=300, shift_epochs=4, shift_lr=3e-4,
        mlm_steps=3000, mlm_lr=5e-4,
        lr_train=4000, lr_eval=1000, lr_range_steps=200, lr_sweep_steps=400,
        overfit_train=300, overfit_eval=1000, overfit_epochs=30, overfit_lr=3e-4, overfit_patience=3,
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


def build_tokenizer(texts: Sequence[str], folder: str | Path, min_freq: int):
    """Build a deterministic character vocabulary from ``texts``, save it, return the tokenizer."""
    from .vocab import build_char_vocab, char_tokenizer, save_vocab

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_vocab(build_char_vocab(texts, min_freq=min_freq), folder / "vocab.txt")
    return char_tokenizer(folder / "vocab.txt")


def encode(tokenizer, texts: Sequence[str], labels: Sequence[int] | None, max_length: int) -> Encoded:
    import torch

    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length",
                    return_tensors="pt")
    y = torch.tensor(list(labels) if labels is not None else [-100] * len(texts), dtype=torch.long)
    return Encoded(enc["input_ids"], enc["attention_mask"], y)


def tiny_config(vocab_size: int, sizes, dropout: float = 0.1, num_labels: int = 2):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=sizes.hidden_size, num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_heads, intermediate_size=sizes.intermediate_size,
        max_position_embeddings=max(sizes.max_length, 64), hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, num_labels=num_labels,
    )


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


def mask_tokens(input_ids, attention_mask, tokenizer, generator, prob: float = 0.15):
    """BERT's masking: 15% of real tokens are targets; of those 80% [MASK], 10% random, 10% kept."""
    import torch

    ids = input_ids.clone()
    labels = input_ids.clone()
    special = torch.zeros_like(ids, dtype=torch.bool)
    for tok_id in tokenizer.all_special_ids:
        special |= ids == tok_id
    candidates = attention_mask.bool() & ~special
    chosen = (torch.rand(ids.shape, generator=generator) < prob) & candidates
    labels[~chosen] = -100
    roll = torch.rand(ids.shape, generator=generator)
    ids[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    rand_pos = chosen & (roll >= 0.8) & (roll < 0.9)
    ids[rand_pos] = torch.randint(len(tokenizer), ids.shape, generator=generator)[rand_pos]
    return ids, labels


def mlm_pretrain(tokenizer, texts: Sequence[str], sizes, steps: int, lr: float, seed: int = 0,
                 log: Callable[[str], None] | None = None) -> dict:
    """Masked-LM pre-training of a fresh tiny BERT on ``texts``; returns the encoder's state dict."""
    import torch
    from transformers import BertForMaskedLM

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = encode(tokenizer, texts, None, sizes.max_length)
    model = BertForMaskedLM(tiny_config(len(tokenizer), sizes))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_linear(steps, max(1, steps // 10)))
    model.train()
    step = 0
    while step < steps:
        for idx in _batches(len(data), sizes.batch_size, gen):
            ids, mask, _ = _trim(data, idx)
            inp, lab = mask_tokens(ids, mask, tokenizer, gen)
            loss = model(input_ids=inp, attention_mask=mask, labels=lab).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if log and step % 100 == 0:
                log(f"mlm step {step}: loss {loss.item():.3f}")
            if step >= steps:
                break
    return {k: v.detach().clone() for k, v in model.bert.state_dict().items()}


def _warmup_linear(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def new_classifier(vocab_size: int, sizes, encoder_state: dict | None = None, dropout: float = 0.1,
                   seed: int = 0):
    """A tiny ``BertForSequenceClassification``; the encoder copied from ``encoder_state`` if given."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(vocab_size, sizes, dropout=dropout))
    if encoder_state is not None:
        missing, unexpected = model.bert.load_state_dict(encoder_state, strict=False)
        bad = [k for k in missing if not k.startswith("pooler.")] + list(unexpected)
        if bad:
            raise RuntimeError(f"pre-trained encoder does not fit the classifier: {bad[:5]}")
    return model


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

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(train) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_linear(steps, max(1, int(steps * warmup_frac))))
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


@contextlib.contextmanager
def single_thread():
    """Run with one intra-op thread: a model this small gains little from more, and on a busy
    machine two threads fighting for cores were 10x slower; it also makes results repeatable."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cached_json(name: str, fingerprint: dict, compute: Callable[[], dict], log) -> dict:
    from .checkpoints import cached

    def build(tmp: Path) -> None:
        with single_thread():
            result = compute()
        (tmp / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False),
                                          encoding="utf-8")

    folder = cached(name, build, fingerprint, log=log or (lambda s: None))
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def _check_domain(name: str) -> None:
    if name not in REVIEW_DOMAINS:
        raise ValueError(f"unknown domain {name!r}; expected one of {', '.join(REVIEW_DOMAINS)}")


def domain_shift_experiment(source: str = "hotel", target: str = "book", profile: str | Profile | None = None,
                            seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Fine-tune on ``source`` labels, test on ``source`` and ``target`` (FAQ 1). Cached.

    Conditions (same fine-tuning recipe in each, only the starting point or labels differ):

    * ``scratch``: no pre-training, source labels.
    * ``mlm_source``: MLM pre-training on source-domain unlabeled text, source labels.
    * ``mlm_source_target``: the same number of MLM steps on source + target unlabeled text
      (in-domain pre-training: the model has read target-domain text, never its labels).
    * ``target_labels``: no pre-training, the same number of *target* labels (the in-domain ceiling
      of this recipe).

    Returns ``{"conditions": {name: {"source_acc", "target_acc"}}, "sizes": ..., ...}``.
    """
    _check_domain(source)
    _check_domain(target)
    if source == target:
        raise ValueError(f"source and target must differ, both are {source!r}")
    prof = get_profile(profile)
    s = prof.sizes("faq")
    fp = _fingerprint("domain_shift", s, seed, source=source, target=target, profile=prof.name)

    def compute() -> dict:
        import tempfile

        doms = reviews_by_domain(prof)
        src_tr = balanced_subset(*doms[source]["train"], s.shift_train)
        tgt_tr = balanced_subset(*doms[target]["train"], s.shift_train)
        src_te, tgt_te = doms[source]["test"], doms[target]["test"]  # whole test splits
        src_val = balanced_subset(*doms[source]["validation"], s.shift_eval)
        # Unlabeled text for pre-training: the train splits' texts, labels thrown away.
        src_unl = list(doms[source]["train"][0])
        tgt_unl = list(doms[target]["train"][0])
        with tempfile.TemporaryDirectory() as tmp:
            tok = build_tokenizer(src_unl + tgt_unl, tmp, s.vocab_min_freq)
            enc = {k: encode(tok, *v, s.max_length) for k, v in
                   dict(src_tr=src_tr, tgt_tr=tgt_tr, src_te=src_te, tgt_te=tgt_te, src_val=src_val).items()}
            vocab_size = len(tok)
            half = min(len(src_unl), len(tgt_unl))
            encoders = {
                "scratch": None,
                "mlm_source": mlm_pretrain(tok, src_unl, s, s.mlm_steps, s.mlm_lr, seed, log),
                "mlm_source_target": mlm_pretrain(tok, src_unl[:half] + tgt_unl[:half], s,
                                                  s.mlm_steps, s.mlm_lr, seed, log),
            }
        results = {}
        for name, state in [*encoders.items(), ("target_labels", None)]:
            model = new_classifier(vocab_size, s, state, seed=seed)
            train = enc["tgt_tr"] if name == "target_labels" else enc["src_tr"]
            hist = train_classifier(model, train, enc["src_val"], epochs=s.shift_epochs, lr=s.shift_lr,
                                    batch_size=s.batch_size, weight_decay=0.01, seed=seed)
            results[name] = {
                "source_acc": round(evaluate(model, enc["src_te"])[1], 4),
                "target_acc": round(evaluate(model, enc["tgt_te"])[1], 4),
                "val_acc": hist.val_acc,
                "train_loss": hist.train_loss,
            }
            if log:
                log(f"{name}: {results[name]}")
        return {"source": source, "target": target, "conditions": results, "vocab_size": vocab_size,
                "n_train": len(src_tr[0]), "n_unlabeled": 2 * half,
                "n_test": {source: len(src_te[0]), target: len(tgt_te[0])},
                "majority": {source: round(max(p := sum(src_te[1]) / len(src_te[1]), 1 - p), 4),
                             target: round(max(q := sum(tgt_te[1]) / len(tgt_te[1]), 1 - q), 4)}}

    return _cached_json(f"faq-domain-shift-{source}-{target}-{prof.name}", fp, compute, log)


def _review_splits(prof, s, n_train: int, n_eval: int, tmp: str):
    from .resources import chinese_reviews

    ds = chinese_reviews(prof)
    train = balanced_subset(ds["train"]["text"], ds["train"]["label"], n_train)
    val = balanced_subset(ds["validation"]["text"], ds["validation"]["label"], n_eval)
    tok = build_tokenizer(ds["train"]["text"], tmp, s.vocab_min_freq)
    return tok, encode(tok, *train, s.max_length), encode(tok, *val, s.max_length)


def lr_experiment(profile: str | Profile | None = None, seed: int = 0,
                  log: Callable[[str], None] | None = None) -> dict:
    """Learning-rate range test on the tiny BERT classifier, then a short sweep (FAQ 2). Cached.

    Returns ``{"range": {"lrs", "losses", "suggested"}, "sweep": {lr: {"val_acc", "train_loss"}}}``;
    the sweep trains at the suggestion, 10x below and 10x above it.
    """
    import tempfile

    from .lr_finder import lr_range_test, suggest_lr

    prof = get_profile(profile)
    s = prof.sizes("faq")
    fp = _fingerprint("lr", s, seed, profile=prof.name)

    def compute() -> dict:
        import torch
        import torch.nn.functional as F

        with tempfile.TemporaryDirectory() as tmp:
            tok, train, val = _review_splits(prof, s, s.lr_train, s.lr_eval, tmp)
        gen = torch.Generator().manual_seed(seed)

        def batches():
            while True:
                for idx in _batches(len(train), s.batch_size, gen):
                    ids, mask, y = _trim(train, idx)
                    yield (ids, mask), y

        def loss_fn(model, batch):
            (ids, mask), y = batch
            return F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, y)

        model = new_classifier(len(tok), s, seed=seed)
        rt = lr_range_test(model, loss_fn, batches(), start_lr=1e-6, end_lr=1.0,
                           num_steps=s.lr_range_steps)
        suggested = suggest_lr(rt.lrs, rt.losses)
        sweep = {}
        epochs = max(1, round(s.lr_sweep_steps * s.batch_size / len(train)))
        for lr in (suggested / 10, suggested, suggested * 10):
            model = new_classifier(len(tok), s, seed=seed)
            hist = train_classifier(model, train, val, epochs=epochs, lr=lr, batch_size=s.batch_size,
                                    weight_decay=0.01, seed=seed)
            sweep[f"{lr:.2e}"] = {"lr": lr, "val_acc": hist.val_acc, "train_loss": hist.train_loss}
            if log:
                log(f"lr {lr:.2e}: {hist.val_acc}")
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
    "all_three": (0.3, 0.1, True),
}


def overfitting_experiment(profile: str | Profile | None = None, seed: int = 0,
                           log: Callable[[str], None] | None = None) -> dict:
    """A small train set, with and without dropout, weight decay and early stopping (FAQ 3). Cached.

    Each condition starts from the same MLM-pre-trained encoder (pre-trained on the reviews'
    unlabeled train texts) and trains ``overfit_epochs`` epochs on ``overfit_train`` labels.
    Returns ``{"conditions": {name: history dict + "final_val_acc", "kept_val_loss"}}``.
    """
    import tempfile

    from .resources import chinese_reviews

    prof = get_profile(profile)
    s = prof.sizes("faq")
    fp = _fingerprint("overfit", s, seed, profile=prof.name, conditions=OVERFIT_CONDITIONS)

    def compute() -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            tok, train, val = _review_splits(prof, s, s.overfit_train, s.overfit_eval, tmp)
            texts = chinese_reviews(prof)["train"]["text"][: s.mlm_steps * s.batch_size]  # one pass
            encoder = mlm_pretrain(tok, texts, s, s.mlm_steps, s.mlm_lr, seed, log)
        out = {}
        for name, (dropout, wd, es) in OVERFIT_CONDITIONS.items():
            model = new_classifier(len(tok), s, encoder, dropout=dropout, seed=seed)
            stopper = EarlyStopping(patience=s.overfit_patience) if es else None
            hist = train_classifier(model, train, val, epochs=s.overfit_epochs, lr=s.overfit_lr,
                                    batch_size=s.batch_size, weight_decay=wd, early_stopping=stopper,
                                    seed=seed)
            kept_loss, kept_acc = evaluate(model, val)
            out[name] = {**hist.as_dict(), "dropout": dropout, "weight_decay": wd, "early_stopping": es,
                         "kept_val_loss": round(kept_loss, 4), "kept_val_acc": round(kept_acc, 4)}
            if log:
                log(f"{name}: kept val acc {kept_acc:.4f}")
        return {"conditions": out, "n_train": len(train), "n_val": len(val)}

    return _cached_json(f"faq-overfit-{prof.name}", fp, compute, log)
