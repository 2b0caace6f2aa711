"""Pre-training a small Chinese BERT with masked language modelling (MLM).

Taught in chapter 9 (``chapters/09_pretraining.ipynb``, "预训练"). Other chapters (2, 10, ...) get
the book's Chinese model from :func:`pretrained_chinese_bert`, which trains it once and caches it.

* :func:`mask_tokens` - BERT's 80/10/10 masking rule, the same statistics as
  ``transformers.DataCollatorForLanguageModeling`` (tested).
* :func:`pretraining_corpus` - the TRAIN split texts of the bundled Chinese reviews (labels are
  never read; validation and test texts are never seen by pre-training).
* :func:`pretrain_mlm` - the training loop (whole texts, one review per sequence, dynamic padding).
* :func:`pretrained_chinese_bert` - a cached checkpoint dir (``config.json``, ``model.safetensors``,
  ``vocab.txt``, tokenizer files, ``train_log.json``) that ``from_pretrained`` loads.
* :func:`label_budget_experiment` - "why pre-train": fine-tune on 100 / 300 / 1000 / all labels,
  pre-trained vs randomly initialised (cached as a small JSON).

Text cleaning: the vocabulary is built from the raw (stripped, de-duplicated) review texts; no
further cleaning is applied, so the tokenizer sees exactly the characters the vocabulary counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

from .config import Profile, get_profile, register_sizes

FORMAT_VERSION = 2  # bump when the training code changes what a checkpoint contains

register_sizes(
    "pretrain",
    tiny={
        "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 512, "max_length": 64, "min_freq": 2, "batch_size": 32,
        "steps": 900, "lr": 1e-3, "warmup_steps": 60, "weight_decay": 0.01,
        # 40% rather than BERT's 15%: more predictions per step for a short CPU run
        # (benchmarks/mlm_masking.py: masked-character accuracy and downstream accuracy both higher)
        "mlm_probability": 0.4, "log_every": 25, "seed": 0,
        # "why pre-train" experiment
        "budgets": [100, 300, 1000, None], "ft_steps": 100, "ft_lr": 3e-4, "ft_batch_size": 32,
        "ft_eval_max": None,
    },
    full={
        "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "max_length": 256, "min_freq": 2, "batch_size": 32,
        "steps": 20000, "lr": 1e-4, "warmup_steps": 1000, "weight_decay": 0.01,
        "mlm_probability": 0.15, "log_every": 100, "seed": 0,
        "budgets": [100, 300, 1000, None], "ft_steps": 600, "ft_lr": 3e-5, "ft_batch_size": 32,
        "ft_eval_max": None,
    },
)

HUB_CHINESE_BERT = "bert-base-chinese"


# ----------------------------------------------------------------------------------------------
# Masking
# ----------------------------------------------------------------------------------------------
def mask_tokens(input_ids, special_tokens_mask=None, *, mask_token_id: int, vocab_size: int,
                mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                random_replace_prob: float = 0.1, generator=None):
    """BERT's masking: pick ``mlm_probability`` of the non-special tokens as targets; of those,
    ``mask_replace_prob`` become ``[MASK]``, ``random_replace_prob`` a random token, the rest stay.

    Returns ``(inputs, labels)``: a masked copy of ``input_ids`` and labels that are ``-100``
    (ignored by the loss) everywhere except at the targets. Same argument meaning and sampling
    order as ``DataCollatorForLanguageModeling.torch_mask_tokens``.
    """
    import torch

    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.long:
        raise TypeError(f"input_ids must be a LongTensor, got {type(input_ids).__name__}"
                        f"{'' if not isinstance(input_ids, torch.Tensor) else ' of ' + str(input_ids.dtype)}")
    for name, p in (("mlm_probability", mlm_probability), ("mask_replace_prob", mask_replace_prob),
                    ("random_replace_prob", random_replace_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-12:
        raise ValueError(f"mask_replace_prob + random_replace_prob must be <= 1, got "
                         f"{mask_replace_prob} + {random_replace_prob}")
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab_size})")
    if special_tokens_mask is None:
        special = torch.zeros_like(input_ids, dtype=torch.bool)
    else:
        special = torch.as_tensor(special_tokens_mask).bool()
        if special.shape != input_ids.shape:
            raise ValueError(f"special_tokens_mask shape {tuple(special.shape)} does not match "
                             f"input_ids shape {tuple(input_ids.shape)}")
    inputs, labels = input_ids.clone(), input_ids.clone()
    prob = torch.full(labels.shape, float(mlm_probability))
    prob.masked_fill_(special, 0.0)
    masked = torch.bernoulli(prob, generator=generator).bool()  # the prediction targets
    labels[~masked] = -100
    replaced = torch.bernoulli(torch.full(labels.shape, float(mask_replace_prob)),
                               generator=generator).bool() & masked
    inputs[replaced] = mask_token_id
    if mask_replace_prob == 1 or random_replace_prob == 0:
        return inputs, labels
    scaled = random_replace_prob / (1 - mask_replace_prob)  # of the rest, how many get a random token
    randomised = torch.bernoulli(torch.full(labels.shape, float(scaled)),
                                 generator=generator).bool() & masked & ~replaced
    random_words = torch.randint(vocab_size, labels.shape, dtype=torch.long, generator=generator)
    inputs[randomised] = random_words[randomised]
    return inputs, labels


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def pretraining_corpus(profile: str | Profile | None = None) -> list[str]:
    """The unlabelled pre-training texts: the TRAIN split of the Chinese reviews, labels dropped."""
    from .resources import chinese_reviews

    train = chinese_reviews(profile)["train"]
    return list(train["text"])


def corpus_digest(texts: Sequence[str]) -> str:
    """SHA-256 over the texts (order included): part of the cache fingerprint."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def encode_corpus(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of every text with ``[CLS] ... [SEP]``, truncated to ``max_length``."""
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3 ([CLS] x [SEP]), got {max_length}")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0):
    """Pad to the longest sequence in the batch: ``(input_ids, attention_mask)`` LongTensors."""
    import torch

    if not seqs:
        raise ValueError("cannot pad an empty batch")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def build_tokenizer(texts: Sequence[str], folder: str | Path, min_freq: int = 2, max_length: int = 512):
    """Build the deterministic character vocab of ``texts``, save it to ``folder``, return a tokenizer."""
    from .vocab import build_char_vocab, char_tokenizer, save_vocab

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_vocab(build_char_vocab(texts, min_freq=min_freq), folder / "vocab.txt")
    return char_tokenizer(folder / "vocab.txt", model_max_length=max_length)


def bert_config(vocab_size: int, sizes) -> "transformers.BertConfig":  # noqa: F821
    """The ``BertConfig`` of the book's small Chinese BERT for the given sizes."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=sizes.hidden_size, num_hidden_layers=sizes.num_hidden_layers,
        num_attention_heads=sizes.num_attention_heads, intermediate_size=sizes.intermediate_size,
        max_position_embeddings=max(512, sizes.max_length), type_vocab_size=2, pad_token_id=0,
    )


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def mlm_loss(model, input_ids, attention_mask, labels):
    """``BertForMaskedLM``'s loss, with the vocabulary projection computed only where it counts.

    ``model(input_ids, attention_mask, labels=labels).loss`` projects *every* position onto the
    vocabulary, then ignores the ~85% whose label is -100. Projecting only the masked positions
    gives the same loss and gradients (tested) at a fraction of the cost: with a 3,776-character
    vocabulary and hidden size 128, the head is most of a tiny model's compute.
    """
    import torch.nn.functional as F

    hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    selected = labels != -100                                   # (B, T) bool
    logits = model.cls(hidden[selected])                        # (M, V): M masked positions only
    return F.cross_entropy(logits, labels[selected])


def pretrain_mlm(model, encoded: Sequence[Sequence[int]], *, tokenizer, steps: int, batch_size: int,
                 lr: float, warmup_steps: int = 0, weight_decay: float = 0.01,
                 mlm_probability: float = 0.15, seed: int = 0, log_every: int = 25,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Train ``model`` (a ``BertForMaskedLM``) with MLM on ``encoded`` texts; return the loss log.

    Each step takes ``batch_size`` whole texts (shuffled, epoch after epoch), pads them to the
    longest, masks them with :func:`mask_tokens`; the loss is :func:`mlm_loss` (the vocabulary
    head only at masked positions); AdamW with linear warm-up and decay. The log
    holds ``{"step", "loss", "seconds"}`` averaged over each ``log_every`` steps.
    """
    import torch

    from .optim import get_linear_schedule_with_warmup

    if steps <= 0 or batch_size <= 0:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if len(encoded) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} texts, got {len(encoded)}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup_steps, num_training_steps=steps)
    specials = set(tokenizer.all_special_ids)
    vocab_size = len(tokenizer)
    model.train()
    history, running, count, start = [], 0.0, 0, time.perf_counter()
    order, pos = torch.randperm(len(encoded), generator=gen).tolist(), 0
    for step in range(steps):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(encoded), generator=gen).tolist(), 0
        batch = [encoded[i] for i in order[pos: pos + batch_size]]
        pos += batch_size
        ids, attn = pad_batch(batch, tokenizer.pad_token_id)
        special = torch.tensor([[t in specials for t in row] for row in ids.tolist()])
        inputs, labels = mask_tokens(ids, special, mask_token_id=tokenizer.mask_token_id,
                                     vocab_size=vocab_size, mlm_probability=mlm_probability,
                                     generator=gen)
        loss = mlm_loss(model, inputs, attn, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running += loss.item()
        count += 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": round(running / count, 4),
                            "seconds": round(time.perf_counter() - start, 1)})
            if log:
                log(f"[ftbook] pretrain step {step + 1}/{steps} loss {running / count:.4f}")
            running, count = 0.0, 0
    model.eval()
    return history


def _fingerprint(sizes, texts: Sequence[str]) -> dict:
    import transformers

    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_length", "min_freq", "batch_size", "steps", "lr", "warmup_steps", "weight_decay",
            "mlm_probability", "seed")
    fp = {k: getattr(sizes, k) for k in keys}
    fp.update(format=FORMAT_VERSION, corpus=corpus_digest(texts), n_texts=len(texts),
              transformers=transformers.__version__.split(".")[0])
    return fp


def _hub_snapshot(repo_id: str) -> Path:
    from .resources import ResourceUnavailableError

    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors"]))
    except Exception as exc:  # offline, DNS, auth, missing repo
        raise ResourceUnavailableError(
            f"could not download {repo_id!r} from the Hugging Face hub ({type(exc).__name__}). "
            f"The 'full' profile needs internet (e.g. Colab); offline, use the default profile: "
            f"unset FTBOOK_PROFILE or pass profile='tiny'"
        ) from None


def pretrained_chinese_bert(profile: str | Profile | None = None, *, root: str | Path | None = None,
                            log: Callable[[str], None] = print) -> Path:
    """Directory of the book's pre-trained Chinese BERT (``from_pretrained`` loads it).

    ``tiny``: a small character-level BERT pre-trained with MLM on the TRAIN split of the bundled
    reviews, built once and cached with :func:`ftbook.checkpoints.cached` (fingerprint: every
    size, the seed, the corpus hash); a corrupted cache is rebuilt. ``full``: a local snapshot of
    the hub's ``bert-base-chinese`` (needs internet; offline -> ``ResourceUnavailableError``).
    """
    from .checkpoints import cached

    prof = get_profile(profile)
    if prof.chinese_model != "ftbook-zh":
        return _hub_snapshot(prof.chinese_model)
    sizes = prof.sizes("pretrain")
    texts = pretraining_corpus(prof)
    fingerprint = _fingerprint(sizes, texts)

    def build(tmp: Path) -> None:
        import torch
        from transformers import BertForMaskedLM

        log(f"[ftbook] pre-training the book's Chinese BERT ({sizes.steps} steps; cached afterwards)")
        torch.manual_seed(sizes.seed)
        tok = build_tokenizer(texts, tmp, min_freq=sizes.min_freq, max_length=sizes.max_length)
        encoded = encode_corpus(tok, texts, sizes.max_length)
        torch.manual_seed(sizes.seed)
        model = BertForMaskedLM(bert_config(len(tok), sizes))
        history = pretrain_mlm(model, encoded, tokenizer=tok, steps=sizes.steps,
                               batch_size=sizes.batch_size, lr=sizes.lr,
                               warmup_steps=sizes.warmup_steps, weight_decay=sizes.weight_decay,
                               mlm_probability=sizes.mlm_probability, seed=sizes.seed,
                               log_every=sizes.log_every)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "train_log.json").write_text(
            json.dumps({"fingerprint": fingerprint, "history": history}, indent=1), encoding="utf-8")

    return cached(f"pretrain-zh-{prof.name}", build, fingerprint, root=root, log=log)


def training_log(checkpoint: str | Path) -> list[dict]:
    """The loss log saved beside a checkpoint built by :func:`pretrained_chinese_bert`."""
    path = Path(checkpoint) / "train_log.json"
    if not path.is_file():
        raise FileNotFoundError(f"no train_log.json in {checkpoint} (not built by ftbook.pretrain?)")
    return json.loads(path.read_text(encoding="utf-8"))["history"]


# ----------------------------------------------------------------------------------------------
# Fill in the blank
# ----------------------------------------------------------------------------------------------
def fill_mask(model, tokenizer, text: str, top_k: int = 3) -> list[list[tuple[str, float]]]:
    """For each ``[MASK]`` in ``text``, the ``top_k`` predicted characters with probabilities."""
    import torch

    if "[MASK]" not in text:
        raise ValueError(f"text must contain at least one [MASK], got {text!r}")
    enc = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]  # (seq, vocab)
    positions = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    out = []
    for p in positions:
        probs = logits[p].softmax(-1)
        val, idx = probs.topk(top_k)
        out.append([(tokenizer.convert_ids_to_tokens(int(i)), float(v)) for v, i in zip(val, idx)])
    return out


def masked_accuracy(model, tokenizer, texts: Sequence[str], max_length: int = 64, seed: int = 0,
                    batch_size: int = 64) -> float:
    """Share of masked characters the model predicts exactly (15% masking, fixed seed)."""
    import torch

    encoded = encode_corpus(tokenizer, texts, max_length)
    gen = torch.Generator().manual_seed(seed)
    specials = set(tokenizer.all_special_ids)
    right = total = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            ids, attn = pad_batch(encoded[i: i + batch_size], tokenizer.pad_token_id)
            special = torch.tensor([[t in specials for t in row] for row in ids.tolist()])
            inputs, labels = mask_tokens(ids, special, mask_token_id=tokenizer.mask_token_id,
                                         vocab_size=len(tokenizer), generator=gen)
            pred = model(input_ids=inputs, attention_mask=attn).logits.argmax(-1)
            sel = labels != -100
            right += int((pred[sel] == labels[sel]).sum())
            total += int(sel.sum())
    return right / max(total, 1)


# ----------------------------------------------------------------------------------------------
# Why pre-train: label budgets
# ----------------------------------------------------------------------------------------------
def finetune_accuracy(checkpoint: str | Path, train_texts, train_labels, eval_texts, eval_labels, *,
                      pretrained: bool, steps: int, lr: float, batch_size: int = 32,
                      max_length: int = 64, seed: int = 0) -> float:
    """Fine-tune a sequence classifier for ``steps`` steps and return its accuracy on the eval set.

    ``pretrained=True`` starts from ``checkpoint``'s weights; ``False`` from a random
    initialisation of the same architecture and vocabulary (the control).
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from .optim import get_linear_schedule_with_warmup
    from .vocab import char_tokenizer

    if len(train_texts) != len(train_labels) or len(eval_texts) != len(eval_labels):
        raise ValueError("texts and labels differ in length")
    if not train_texts:
        raise ValueError("no training texts")
    tok = char_tokenizer(Path(checkpoint) / "vocab.txt", model_max_length=max_length)
    torch.manual_seed(seed)
    if pretrained:
        from .resources import quiet_load  # the MLM head is dropped, the new classifier is "missing"

        model = quiet_load(lambda: BertForSequenceClassification.from_pretrained(checkpoint, num_labels=2))
    else:
        model = BertForSequenceClassification(BertConfig.from_pretrained(checkpoint, num_labels=2))
    gen = torch.Generator().manual_seed(seed)
    enc = encode_corpus(tok, train_texts, max_length)
    y = torch.tensor(list(train_labels))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=max(1, steps // 10), num_training_steps=steps)
    bs = min(batch_size, len(enc))
    model.train()
    order, pos = torch.randperm(len(enc), generator=gen).tolist(), 0
    for _ in range(steps):
        if pos + bs > len(order):
            order, pos = torch.randperm(len(enc), generator=gen).tolist(), 0
        idx = order[pos: pos + bs]
        pos += bs
        ids, attn = pad_batch([enc[i] for i in idx], tok.pad_token_id)
        loss = model(input_ids=ids, attention_mask=attn, labels=y[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    eval_enc = encode_corpus(tok, eval_texts, max_length)
    right = 0
    with torch.no_grad():
        for i in range(0, len(eval_enc), 128):
            ids, attn = pad_batch(eval_enc[i: i + 128], tok.pad_token_id)
            pred = model(input_ids=ids, attention_mask=attn).logits.argmax(-1)
            right += int((pred == torch.tensor(list(eval_labels[i: i + 128]))).sum())
    return right / len(eval_enc)


def _run_tasks(tasks, workers: int | None, log) -> dict:
    """Run the independent fine-tuning runs with :func:`ftbook.workers.run_all` (one thread each,
    so the results do not depend on ``workers``)."""
    from .workers import run_all

    names = [f"{n} labels, {name}" for n, name, _, _ in tasks]
    accs = run_all(finetune_accuracy, [(args, kwargs) for _, _, args, kwargs in tasks], workers,
                   log=log, names=names)
    return {(n, name): round(acc, 4) for (n, name, _, _), acc in zip(tasks, accs)}


def label_budget_experiment(profile: str | Profile | None = None, *, root: str | Path | None = None,
                            log: Callable[[str], None] = print, workers: int | None = None) -> dict:
    """Test accuracy after fine-tuning on 100 / 300 / 1000 / all labels, pre-trained vs random init.

    Every run takes the same number of optimiser steps (``ft_steps``) so the two starts get equal
    compute; subsets are the first ``n`` texts of a fixed shuffle of the train split (nested).
    Cached as ``results.json``; returns ``{"rows": [{"labels", "pretrained", "random"}], ...}``.
    The independent runs go to :func:`ftbook.workers.run_all` (``workers=None``: up to 2 processes,
    one thread each; the results do not depend on ``workers``).
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    from .checkpoints import cached
    from .resources import chinese_reviews

    prof = get_profile(profile)
    sizes = prof.sizes("pretrain")
    ckpt = pretrained_chinese_bert(prof, root=root, log=log)
    manifest = json.loads((ckpt / "MANIFEST.json").read_text(encoding="utf-8"))
    fingerprint = {"checkpoint": manifest["files"]["model.safetensors"]["sha256"],
                   "budgets": list(sizes.budgets), "ft_steps": sizes.ft_steps, "ft_lr": sizes.ft_lr,
                   "ft_batch_size": sizes.ft_batch_size, "ft_eval_max": sizes.ft_eval_max,
                   "max_length": sizes.max_length, "seed": sizes.seed, "format": FORMAT_VERSION,
                   "threads": 1}

    def build(tmp: Path) -> None:
        import random

        ds = chinese_reviews(prof)
        train, test = ds["train"], ds["test"]
        order = list(range(len(train)))
        random.Random(sizes.seed).shuffle(order)
        texts = [train[i]["text"] for i in order]
        labels = [train[i]["label"] for i in order]
        n_eval = len(test) if sizes.ft_eval_max is None else min(len(test), sizes.ft_eval_max)
        eval_texts, eval_labels = list(test["text"][:n_eval]), list(test["label"][:n_eval])
        tasks = []
        for budget in sizes.budgets:
            n = len(texts) if budget is None else budget
            for name, pre in (("pretrained", True), ("random", False)):
                kwargs = dict(pretrained=pre, steps=sizes.ft_steps, lr=sizes.ft_lr,
                              batch_size=sizes.ft_batch_size, max_length=sizes.max_length, seed=sizes.seed)
                tasks.append((n, name, (str(ckpt), texts[:n], labels[:n], eval_texts, eval_labels), kwargs))
        accs = _run_tasks(tasks, workers, log)
        rows = []
        for budget in sizes.budgets:
            n = len(texts) if budget is None else budget
            rows.append({"labels": n, "pretrained": accs[(n, "pretrained")], "random": accs[(n, "random")]})
        result = {"rows": rows, "eval_split": "test", "n_eval": n_eval, "steps": sizes.ft_steps,
                  "majority": round(max(sum(eval_labels), n_eval - sum(eval_labels)) / n_eval, 4)}
        (tmp / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")

    folder = cached(f"label-budgets-{prof.name}", build, fingerprint, root=root, log=log)
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))
