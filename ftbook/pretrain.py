"""Pre-training a small Chinese BERT with masked language modelling (MLM).

Taught in chapter 9 (``chapters/09_pretraining.ipynb``, "预训练"). Other chapters (2, 10, 11, 13,
14) get the book's Chinese model from :func:`pretrained_chinese_bert`, which the book pre-trained
once with :func:`train_chinese_bert` (``python -m ftbook pretrain``) and ships in the repository.

* :func:`mask_tokens` - BERT's 80/10/10 masking rule, the same statistics as
  ``transformers.DataCollatorForLanguageModeling`` (tested).
* :func:`packed_corpus` - :func:`ftbook.corpus.chinese_corpus` (review TRAIN texts + People's
  Daily minus the NER held-out sentences) as full-length sequences.
* :func:`mlm_dataset` / :class:`MaskedLMLoss` / :func:`pretrain_mlm` - MLM through the book's one
  training loop (:func:`ftbook.training.train`); every batch is masked afresh as it comes (dynamic
  masking), and the vocabulary head runs only at the masked positions (:func:`mlm_loss`).
* :func:`mlm_scores` - held-out masked-character accuracy and loss; :func:`unigram_entropy` - the
  loss of guessing by character frequency (the plateau an MLM must leave).
* :func:`train_chinese_bert` - the long, resumable run; :func:`ship` / :func:`check_shipped` /
  :func:`pretrained_chinese_bert` - its result in ``ftbook/weights/chinese-bert-tiny``.
* "Why pre-train" (100 / 300 / 1000 / all labels, pre-trained vs random init vs TF-IDF) is
  :mod:`ftbook.label_budgets`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .config import Profile, get_profile, register_sizes
from .corpus import corpus_digest

register_sizes(
    "pretrain",
    tiny={
        "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
        "intermediate_size": 1024, "max_length": 128, "min_freq": 2, "batch_size": 32,
        "steps": 10000, "lr": 1e-3, "warmup_steps": 500, "weight_decay": 0.01,
        # 40% rather than BERT's 15%: 2.7x the predictions per step for the same compute
        # (benchmarks/pretrain_recipes.py compares the two on equal steps)
        "mlm_probability": 0.4, "log_every": 25, "seed": 0,
        "live_steps": 80,  # chapter 9's live run of train_chinese_bert (the shipped run took `steps`)
    },
    full={
        "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "max_length": 256, "min_freq": 2, "batch_size": 32,
        "steps": 20000, "lr": 1e-4, "warmup_steps": 1000, "weight_decay": 0.01,
        "mlm_probability": 0.15, "log_every": 100, "seed": 0, "live_steps": 200,
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
def encode_corpus(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of every text with ``[CLS] ... [SEP]``, truncated to ``max_length`` (no padding:
    :class:`ftbook.data.DynamicPaddingCollator` pads each batch to its longest text)."""
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3 ([CLS] x [SEP]), got {max_length}")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def mlm_dataset(encoded: Sequence[Sequence[int]], tokenizer) -> "Encoded":  # noqa: F821
    """The token ids as an :class:`ftbook.data.Encoded` with *token* labels: each token's own id
    where MLM may pick it as a target, ``IGNORE_INDEX`` on special tokens (``[CLS]``, ``[SEP]``,
    ...; batches pad with ``IGNORE_INDEX`` too). :class:`MaskedLMLoss` draws the targets among
    these candidates, batch by batch."""
    from .data import IGNORE_INDEX, Encoded

    specials = set(tokenizer.all_special_ids)
    ids = [list(x) for x in encoded]
    labels = [[IGNORE_INDEX if t in specials else t for t in x] for x in ids]
    return Encoded(ids, labels, pad_token_id=int(tokenizer.pad_token_id))


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


def held_out_texts(profile: str | Profile | None = None, limit: int = 1000) -> list[str]:
    """Text pre-training never sees, for masked-character accuracy: the first ``limit`` reviews of
    the VALIDATION split and the first ``limit`` NER VALIDATION sentences (test splits unread)."""
    from .resources import chinese_reviews
    from .tagging import people_daily_ner

    prof = get_profile(profile)
    reviews = list(chinese_reviews(prof)["validation"]["text"][:limit])
    news = ["".join(c) for c in people_daily_ner(prof)["validation"]["chars"][:limit]]
    return reviews + news


def packed_corpus(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of ``texts`` packed into full sequences by :func:`ftbook.corpus.pack`."""
    from .corpus import pack

    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return pack(ids, max_length, cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id)


def new_model(tokenizer, sizes, seed: int = 0):
    """A randomly initialised ``BertForMaskedLM`` of :func:`bert_config` (seeded)."""
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    return BertForMaskedLM(bert_config(len(tokenizer), sizes))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def _masked_logits(model, input_ids, attention_mask, selected):
    """Vocabulary logits ``(M, V)`` of the ``M`` positions where ``selected`` is True only."""
    hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    return model.cls(hidden[selected])                                                        # (M, V)


def mlm_loss(model, input_ids, attention_mask, labels, reduction: str = "mean"):
    """``BertForMaskedLM``'s loss, with the vocabulary projection computed only where it counts.

    ``model(input_ids, attention_mask, labels=labels).loss`` projects *every* position onto the
    vocabulary, then ignores the ~85% whose label is -100. Projecting only the masked positions
    gives the same loss and gradients (tested) at a fraction of the cost: with a 3,776-character
    vocabulary and hidden size 128, the head is most of a tiny model's compute.
    ``reduction="sum"`` gives the summed loss that :func:`ftbook.training.train` expects.
    """
    import torch.nn.functional as F

    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    selected = labels != -100                                   # (B, T) bool
    logits = _masked_logits(model, input_ids, attention_mask, selected)
    return F.cross_entropy(logits, labels[selected], reduction=reduction)


class MaskedLMLoss:
    """The ``loss_fn`` of :func:`ftbook.training.train` for MLM (dynamic masking).

    Each batch of :func:`mlm_dataset` arrives unmasked; :meth:`mask` draws its targets with
    :func:`mask_tokens` (batch ``k`` from a generator seeded with ``(seed, k)``: a run is
    reproducible, and a resumed one, told ``calls=k``, masks on as the uninterrupted run would) among the tokens
    whose label is not ``IGNORE_INDEX``, and the loss is :func:`mlm_loss` over the targets.

    The loop divides a step's summed loss by the labels it counts *before* the forward pass -
    here every candidate token - so the sum is rescaled by ``candidates / targets``: the step's
    loss is then exactly the mean cross-entropy over the masked positions (one micro-batch per
    step, one process, as :func:`pretrain_mlm` runs), what ``BertForMaskedLM(labels=...)`` gives.
    """

    def __init__(self, *, mask_token_id: int, vocab_size: int, mlm_probability: float = 0.15,
                 seed: int = 0, calls: int = 0):
        self.mask_token_id, self.vocab_size, self.mlm_probability = mask_token_id, vocab_size, mlm_probability
        self.seed, self.calls = seed, calls  # a resumed run passes the batches already masked

    def mask(self, batch: dict):
        """``(inputs, labels)`` of a padded batch (on the CPU): masked ids, and labels that are
        ``-100`` everywhere but at the targets."""
        import torch

        from .data import IGNORE_INDEX

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)  # batch k: seed k
        self.calls += 1
        return mask_tokens(batch["input_ids"].cpu(), (batch["labels"] == IGNORE_INDEX).cpu(),
                           mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                           mlm_probability=self.mlm_probability, generator=generator)

    def __call__(self, model, batch: dict):
        from .data import IGNORE_INDEX

        inputs, labels = self.mask(batch)
        device = batch["input_ids"].device
        summed = mlm_loss(model, inputs.to(device), batch["attention_mask"], labels.to(device), reduction="sum")
        candidates = int((batch["labels"] != IGNORE_INDEX).sum())
        return summed * (candidates / max(1, int((labels != IGNORE_INDEX).sum())))


def _mlm_run(data, tokenizer, *, steps: int, batch_size: int, lr: float, warmup_steps: int,
             weight_decay: float, mlm_probability: float, seed: int, amp: str, calls: int = 0, **config_kw):
    """``(TrainConfig, MaskedLMLoss)`` of an MLM run over ``data``: exactly ``steps`` optimizer
    steps (as many epochs as that takes), clipping at 1, no early stopping; ``calls`` batches
    already masked (a resumed run). Shared by :func:`pretrain_mlm` and :func:`train_chinese_bert`."""
    from dataclasses import replace

    from .distributed import world
    from .training import TrainConfig, steps_per_epoch

    if world()[1] > 1:  # mlm_loss calls model.bert / model.cls directly: no DDP gradient sync
        raise RuntimeError("MLM pre-training runs in a single process (no torchrun)")
    config = TrainConfig(lr=lr, max_steps=steps, batch_size=batch_size, warmup_steps=warmup_steps,
                         weight_decay=weight_decay, max_grad_norm=1.0, patience=None, seed=seed,
                         amp=amp, **config_kw)
    config = replace(config, epochs=math.ceil(steps / steps_per_epoch(len(data), config)))
    loss_fn = MaskedLMLoss(mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                           mlm_probability=mlm_probability, seed=seed, calls=calls)
    return config, loss_fn


def pretrain_mlm(model, encoded: Sequence[Sequence[int]], *, tokenizer, steps: int, batch_size: int,
                 lr: float, warmup_steps: int = 0, weight_decay: float = 0.01,
                 mlm_probability: float = 0.15, seed: int = 0, log_every: int = 25, amp: str = "off",
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Train ``model`` (a ``BertForMaskedLM``) with MLM on ``encoded`` texts; return the loss log.

    Runs :func:`ftbook.training.train` for ``steps`` optimizer steps over :func:`mlm_dataset`
    (``batch_size`` whole texts a step, shuffled epoch after epoch, padded to the longest) with
    ``loss_fn`` :class:`MaskedLMLoss`; hence AdamW over :func:`ftbook.optim.param_groups` (no
    decay for biases and LayerNorm), the linear schedule of :func:`ftbook.optim.get_scheduler`
    (lr 0 at the first step, peak after ``warmup_steps``), gradients clipped to norm 1. The log
    holds ``{"step", "loss", "seconds"}`` averaged over each ``log_every`` steps.
    """
    from .training import train

    if steps <= 0 or batch_size <= 0:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if len(encoded) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} texts, got {len(encoded)}")
    data = mlm_dataset(encoded, tokenizer)
    config, loss_fn = _mlm_run(data, tokenizer, steps=steps, batch_size=batch_size, lr=lr,
                               warmup_steps=warmup_steps, weight_decay=weight_decay,
                               mlm_probability=mlm_probability, seed=seed, amp=amp, progress=False)
    history, start = [], time.perf_counter()

    def on_step(state) -> None:
        if state.step % log_every and state.step != steps:
            return
        done = history[-1]["step"] if history else 0
        loss = sum(state.losses[done:]) / (state.step - done)
        history.append({"step": state.step, "loss": round(loss, 4),
                        "seconds": round(time.perf_counter() - start, 1)})
        if log:
            log(f"[ftbook] pretrain step {state.step}/{steps} loss {loss:.4f}")

    train(model, data, None, config, loss_fn=loss_fn, on_step=on_step)
    model.eval()
    return history


def unigram_entropy(encoded: Sequence[Sequence[int]], special_ids: Sequence[int] = ()) -> float:
    """Entropy (nats) of the token frequencies of ``encoded``, specials left out: the masked-LM
    loss of a model that ignores the context and predicts every masked character by its frequency."""
    from collections import Counter

    specials = set(special_ids)
    counts = Counter(t for ids in encoded for t in ids if t not in specials)
    n = sum(counts.values())
    if n == 0:
        raise ValueError("no tokens to count")
    return -sum(c / n * math.log(c / n) for c in counts.values())


def _machine() -> str:
    import os
    import platform

    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def loss_log(losses: Sequence[float], every: int) -> list[dict]:
    """``[{"step", "loss"}]``: the training loss averaged over each ``every`` steps (the shipped logs)."""
    return [{"step": min(k + every, len(losses)), "loss": round(sum(losses[k:k + every]) / len(losses[k:k + every]), 4)}
            for k in range(0, len(losses), every)]


def train_chinese_bert(out_dir: str | Path, *, profile: str | Profile | None = None, resume: bool = False,
                       save_every: int = 250, eval_every: int = 500, amp: str = "off",
                       command: str | None = None, progress: bool = True,
                       stop_after_steps: int | None = None, **overrides) -> Path:
    """Pre-train the book's Chinese BERT on :func:`ftbook.corpus.chinese_corpus` into ``out_dir``.

    The sizes are the profile's ``pretrain`` sizes, each overridable (``steps=``, ``lr=`` ...).
    Sequences are packed to ``max_length`` (:func:`packed_corpus`); training is
    :func:`ftbook.training.train` with :class:`MaskedLMLoss`, a resumable checkpoint in
    ``out_dir/run/last`` every ``save_every`` steps, and held-out masked accuracy
    (:func:`mlm_scores` on :func:`held_out_texts`) every ``eval_every`` steps. ``out_dir`` ends up
    holding what ``from_pretrained`` loads, plus ``train_log.json`` (command, corpus size and
    digest, sizes, wall time, machine, the loss and evaluation logs)."""
    from .corpus import chinese_corpus, corpus_report
    from .training import train

    prof = get_profile(profile)
    unknown = set(overrides) - set(PRETRAIN_KEYS)
    if unknown:
        raise ValueError(f"unknown pre-training settings {sorted(unknown)}; known: {PRETRAIN_KEYS}")
    sizes = prof.sizes("pretrain")
    vars(sizes).update(overrides)
    out = Path(out_dir)
    texts = chinese_corpus(prof)
    tok = build_tokenizer(texts, out, min_freq=sizes.min_freq, max_length=sizes.max_length)
    data = mlm_dataset(packed_corpus(tok, texts, sizes.max_length), tok)
    held_out = mlm_dataset(encode_corpus(tok, held_out_texts(prof), sizes.max_length), tok)
    model = new_model(tok, sizes, seed=sizes.seed)
    done = 0
    if resume and (out / "run" / "last" / "trainer_state.json").is_file():
        done = json.loads((out / "run" / "last" / "trainer_state.json").read_text(encoding="utf-8"))["step"]
    config, loss_fn = _mlm_run(data, tok, steps=sizes.steps, batch_size=sizes.batch_size, lr=sizes.lr,
                               warmup_steps=sizes.warmup_steps, weight_decay=sizes.weight_decay,
                               mlm_probability=sizes.mlm_probability, seed=sizes.seed, amp=amp, calls=done,
                               load_best=False, save_every=save_every, eval_every=eval_every,
                               metric_for_best_model="masked_accuracy", progress=progress)
    scores = lambda m, d: mlm_scores(m, d, mask_token_id=tok.mask_token_id, vocab_size=len(tok))  # noqa: E731
    result = train(model, data, held_out, config, tokenizer=tok, output_dir=out / "run", resume=done > 0,
                   loss_fn=loss_fn, evaluate_fn=scores, stop_after_steps=stop_after_steps)
    if result.interrupted:
        return out
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    log = loss_log(result.losses, sizes.log_every)
    record = {"command": command, "corpus": corpus_report(texts), "sequences": len(data),
              "sizes": {k: getattr(sizes, k) for k in PRETRAIN_KEYS}, "amp": amp,
              "wall_seconds": round(result.seconds, 1), "machine": _machine(),
              "unigram_entropy": round(unigram_entropy(data.input_ids, tok.all_special_ids), 4),
              "history": log, "evals": [{"step": r["step"], "masked_accuracy": round(r["val_masked_accuracy"], 4),
                                         "masked_loss": round(r["val_masked_loss"], 4)} for r in result.history]}
    (out / "train_log.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    return out


PRETRAIN_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_length", "min_freq", "batch_size", "steps", "lr", "warmup_steps", "weight_decay",
                 "mlm_probability", "log_every", "seed")  # the sizes that change the checkpoint


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


SHIPPED_DIR = Path(__file__).parent / "weights" / "chinese-bert-tiny"
SHIPPED_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "train_log.json")
REBUILD_COMMAND = "python -m ftbook pretrain --out /tmp/chinese-bert --amp bf16 --ship"


def ship(run_dir: str | Path, dest: str | Path = SHIPPED_DIR) -> Path:
    """Copy the finished run in ``run_dir`` (made by :func:`train_chinese_bert`) to ``dest`` with a
    ``MANIFEST.json`` of SHA-256 digests, atomically: what the repository ships."""
    from .checkpoints import ship_folder

    record = json.loads((Path(run_dir) / "train_log.json").read_text(encoding="utf-8")) \
        if (Path(run_dir) / "train_log.json").is_file() else {"command": None, "corpus": {"sha256": None}}
    return ship_folder(run_dir, dest, SHIPPED_FILES, {"kind": "shipped-chinese-bert", "command": record["command"],
                                                      "corpus_sha256": record["corpus"]["sha256"]})


def check_shipped(folder: str | Path = SHIPPED_DIR) -> dict:
    """Verify the shipped model's files against its manifest; return the manifest. A missing or
    altered file raises an error that names it and the command that rebuilds it."""
    from .checkpoints import check_shipped_folder

    return check_shipped_folder(folder, SHIPPED_FILES, "the book's pre-trained Chinese BERT", REBUILD_COMMAND)


def pretrained_chinese_bert(profile: str | Profile | None = None, *, folder: str | Path | None = None) -> Path:
    """Directory of the book's pre-trained Chinese BERT (``from_pretrained`` loads it).

    ``tiny``: the model the book pre-trained once with :func:`train_chinese_bert` (the command,
    corpus digest, wall time and machine are in its ``train_log.json``) and ships in
    ``ftbook/weights/chinese-bert-tiny``: verified (:func:`check_shipped`), never trained here.
    ``full``: a local snapshot of the hub's ``bert-base-chinese`` (needs internet; offline ->
    ``ResourceUnavailableError``). ``folder``: check and return another copy instead.
    """
    prof = get_profile(profile)
    if prof.chinese_model != "ftbook-zh":
        return _hub_snapshot(prof.chinese_model)
    folder = Path(folder) if folder is not None else SHIPPED_DIR
    check_shipped(folder)
    return folder


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


def mlm_scores(model, data, *, mask_token_id: int, vocab_size: int, seed: int = 0,
               mlm_probability: float = 0.15, batch_size: int = 64) -> dict:
    """Masked-character accuracy and mean masked cross-entropy (nats) of ``model`` on ``data``
    (an :func:`mlm_dataset`), masked by :class:`MaskedLMLoss` with a fixed seed: every call on the
    same data scores the same positions. Returns ``{"masked_accuracy", "masked_loss", "n"}``."""
    import torch
    import torch.nn.functional as F

    masker = MaskedLMLoss(mask_token_id=mask_token_id, vocab_size=vocab_size,
                          mlm_probability=mlm_probability, seed=seed)
    right = total = 0
    loss = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            batch = data.batch(range(i, min(i + batch_size, len(data))))
            inputs, labels = masker.mask(batch)
            selected = labels != -100
            logits = _masked_logits(model, inputs, batch["attention_mask"], selected).float()
            right += int((logits.argmax(-1) == labels[selected]).sum())
            loss += float(F.cross_entropy(logits, labels[selected], reduction="sum"))
            total += int(selected.sum())
    model.train(was_training)
    return {"masked_accuracy": right / max(total, 1), "masked_loss": loss / max(total, 1), "n": total}


def masked_accuracy(model, tokenizer, texts: Sequence[str], max_length: int = 64, seed: int = 0,
                    batch_size: int = 64) -> float:
    """Share of masked characters the model predicts exactly on ``texts`` (one per sequence,
    15% masking, fixed seed): :func:`mlm_scores`."""
    data = mlm_dataset(encode_corpus(tokenizer, texts, max_length), tokenizer)
    return mlm_scores(model, data, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                      seed=seed, batch_size=batch_size)["masked_accuracy"]
