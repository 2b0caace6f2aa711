"""Pre-training a small Chinese decoder language model (next-token prediction) from scratch.

Taught in chapter 14 (``chapters/14_decoder_lm.ipynb``, "从零预训练解码器语言模型"). The model is
:class:`ftbook.decoder.Decoder` (Llama-style, tested equal to ``LlamaForCausalLM``); the corpus,
the packing and the character vocabulary are chapter 9's Chinese BERT's, so the two objectives can
be put side by side on the same text:

* :func:`causal_lm_labels` / :func:`lm_dataset` - the labels of a causal LM: the input shifted left by
  one (position ``t`` predicts token ``t + 1``). We shift in the data; ``LlamaForCausalLM(labels=...)``
  shifts inside the model - the same loss (tested). The loss is then the book's one
  :func:`ftbook.training.cross_entropy_loss`, trained by the one loop :func:`ftbook.training.train`.
* :func:`lm_scores` - held-out cross-entropy (nats per token), perplexity and next-token accuracy.
* :func:`ngram_cross_entropy` - the classical baselines on the same targets: a unigram model (add-one)
  and an interpolated bigram model (absolute discounting, the idea behind Kneser-Ney).
* :func:`train_chinese_gpt` - the long, resumable run (``python -m ftbook pretrain-gpt``), shipped in
  ``ftbook/weights/chinese-gpt-tiny``; :func:`pretrained_chinese_gpt` verifies and loads it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "causal_lm",
    tiny={
        "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 704, "max_length": 128, "batch_size": 32, "steps": 3000, "lr": 1e-3,
        "warmup_steps": 200, "weight_decay": 0.1, "seed": 0, "log_every": 25,
        "live_steps": 25,  # chapter 14's live run (the shipped run took `steps`)
    },
    full={
        "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4,
        "intermediate_size": 2048, "max_length": 256, "batch_size": 32, "steps": 20000, "lr": 6e-4,
        "warmup_steps": 1000, "weight_decay": 0.1, "seed": 0, "log_every": 100, "live_steps": 200,
    },
)

CAUSAL_LM_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "intermediate_size", "max_length", "batch_size", "steps", "lr", "warmup_steps",
                  "weight_decay", "seed", "log_every")  # the sizes that change the checkpoint
SHIPPED_DIR = Path(__file__).parent / "weights" / "chinese-gpt-tiny"
SHIPPED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train_log.json")
REBUILD_COMMAND = "python -m ftbook pretrain-gpt --out /tmp/chinese-gpt --amp bf16 --ship"


# ----------------------------------------------------------------------------------------------
# Data: the labels of a causal LM
# ----------------------------------------------------------------------------------------------
def causal_lm_labels(ids: Sequence[int]) -> list[int]:
    """Next-token labels of one sequence: ``labels[t] = ids[t + 1]``; the last position has no next
    token (``-100``, ignored by the loss). MLM's labels, by contrast, are the *same* position's
    token at the ~15-40% masked positions and -100 elsewhere."""
    from .data import IGNORE_INDEX

    ids = list(ids)
    if not ids:
        raise ValueError("a sequence needs at least one token")
    return ids[1:] + [IGNORE_INDEX]


def lm_dataset(sequences: Sequence[Sequence[int]], pad_token_id: int) -> "Encoded":  # noqa: F821
    """:class:`ftbook.data.Encoded` of token sequences with :func:`causal_lm_labels`: what
    :func:`ftbook.training.train` trains with its default loss (padding gets label -100)."""
    from .data import Encoded

    return Encoded([list(s) for s in sequences], [causal_lm_labels(s) for s in sequences], pad_token_id)


def load_tokenizer(folder: str | Path | None = None):
    """The character tokenizer of the book's Chinese BERT (chapter 9): the same vocabulary for both
    objectives. ``[CLS]`` starts a sequence and ``[SEP]`` ends each text (the decoder's end of text)."""
    from transformers import BertTokenizer

    from .pretrain import pretrained_chinese_bert

    return BertTokenizer.from_pretrained(str(folder or pretrained_chinese_bert("tiny")))


def new_decoder(vocab_size: int, sizes, pad_token_id: int | None = None, seed: int = 0):
    """A randomly initialised :class:`ftbook.decoder.Decoder` of the profile's sizes (tied head, seeded)."""
    import torch

    from .decoder import Decoder, DecoderConfig

    torch.manual_seed(seed)
    config = DecoderConfig(vocab_size=vocab_size, hidden_size=sizes.hidden_size,
                           intermediate_size=sizes.intermediate_size, num_hidden_layers=sizes.num_hidden_layers,
                           num_attention_heads=sizes.num_attention_heads,
                           num_key_value_heads=sizes.num_key_value_heads,
                           max_position_embeddings=sizes.max_length, rope_theta=10000.0,
                           tie_word_embeddings=True, pad_token_id=pad_token_id)
    return Decoder(config)


def held_out_sequences(tokenizer, profile: str | Profile | None = None, max_length: int = 128,
                       limit: int = 1000) -> list[list[int]]:
    """``[CLS] text [SEP]`` of chapter 9's held-out texts (validation reviews and NER validation
    sentences, never in the corpus), cut to ``max_length``."""
    from .pretrain import encode_corpus, held_out_texts

    return encode_corpus(tokenizer, held_out_texts(profile, limit=limit), max_length)


# ----------------------------------------------------------------------------------------------
# Evaluation and the n-gram baselines
# ----------------------------------------------------------------------------------------------
def lm_scores(model, data, batch_size: int = 32) -> dict:
    """``{"loss", "perplexity", "accuracy", "n"}`` of next-token prediction over every label of
    ``data`` (an :func:`lm_dataset`, or chapter 16's answer-only SFT labels; a Decoder or a
    transformers causal LM): loss in nats per token, perplexity ``exp(loss)``, accuracy of
    the argmax. Batch by batch, so the ``(n, seq, vocab)`` logits never sit in memory at once."""
    import torch
    import torch.nn.functional as F

    from .data import IGNORE_INDEX
    from .training import _logits

    if len(data) == 0:
        raise ValueError("cannot score an empty set")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = {k: v.to(device) for k, v in data.batch(range(start, min(start + batch_size, len(data)))).items()}
            labels = batch.pop("labels")                                  # (B, T)
            logits = _logits(model(**batch)).float()                      # (B, T, V)
            keep = labels != IGNORE_INDEX
            loss_sum += float(F.cross_entropy(logits[keep], labels[keep], reduction="sum"))
            correct += int((logits[keep].argmax(-1) == labels[keep]).sum())
            n += int(keep.sum())
    model.train(was_training)
    return {"loss": loss_sum / n, "perplexity": math.exp(loss_sum / n), "accuracy": correct / n, "n": n}


def _pairs(sequences: Sequence[Sequence[int]]):
    """Every (previous token, next token) target pair of the sequences, as :func:`causal_lm_labels` has them."""
    for s in sequences:
        yield from zip(s[:-1], s[1:])


def ngram_cross_entropy(train: Sequence[Sequence[int]], held_out: Sequence[Sequence[int]], vocab_size: int,
                        discount: float = 0.75) -> dict:
    """Held-out cross-entropy (nats per token) of two classical LMs fitted on ``train``, on the
    targets the decoder is scored on (every token after the first of each held-out sequence):

    * ``unigram``: ``p(w) = (c(w) + 1) / (N + V)`` (add-one), context ignored;
    * ``bigram``: interpolated absolute discounting,
      ``p(w | v) = max(c(v, w) - d, 0) / c(v) + d * T(v) / c(v) * p_uni(w)`` with ``T(v)`` the number
      of different followers of ``v``; an unseen ``v`` falls back to the unigram.
    """
    if not 0 < discount < 1:
        raise ValueError(f"discount must be in (0, 1), got {discount!r}")
    unigrams = Counter(t for s in train for t in s[1:])
    n = sum(unigrams.values())
    bigrams = Counter(_pairs(train))
    context = Counter(v for v, _ in _pairs(train))
    followers = Counter(v for v, _ in bigrams)
    uni_nll = bi_nll = 0.0
    count = 0
    for v, w in _pairs(held_out):
        p_uni = (unigrams[w] + 1) / (n + vocab_size)
        if context[v]:
            p_bi = max(bigrams[(v, w)] - discount, 0) / context[v] + discount * followers[v] / context[v] * p_uni
        else:
            p_bi = p_uni
        uni_nll -= math.log(p_uni)
        bi_nll -= math.log(p_bi)
        count += 1
    if count == 0:
        raise ValueError("held_out has no target tokens (every sequence needs >= 2 tokens)")
    return {"unigram": uni_nll / count, "bigram": bi_nll / count, "n": count}


# ----------------------------------------------------------------------------------------------
# The long run, shipped
# ----------------------------------------------------------------------------------------------
def _sizes(prof: Profile, overrides: dict):
    unknown = set(overrides) - set(CAUSAL_LM_KEYS)
    if unknown:
        raise ValueError(f"unknown causal-LM settings {sorted(unknown)}; known: {CAUSAL_LM_KEYS}")
    sizes = prof.sizes("causal_lm")
    vars(sizes).update(overrides)
    return sizes


def lm_train_config(n: int, *, steps: int, batch_size: int, lr: float, warmup_steps: int, weight_decay: float,
                    seed: int, amp: str = "off", **config_kw):
    """The :class:`ftbook.training.TrainConfig` of a causal-LM run: exactly ``steps`` optimizer
    steps over ``n`` sequences (as many epochs as that takes), cosine decay after the warm-up (as
    GPT-style pre-training does), clipping at 1, betas (0.9, 0.95), no early stopping."""
    from dataclasses import replace

    from .training import TrainConfig, steps_per_epoch

    config = TrainConfig(lr=lr, max_steps=steps, batch_size=batch_size, warmup_steps=warmup_steps,
                         schedule="cosine", weight_decay=weight_decay, betas=(0.9, 0.95), max_grad_norm=1.0,
                         patience=None, seed=seed, amp=amp, metric_for_best_model="loss",
                         greater_is_better=False, **config_kw)
    return replace(config, epochs=math.ceil(steps / steps_per_epoch(n, config)))


def train_chinese_gpt(out_dir: str | Path, *, profile: str | Profile | None = None, resume: bool = False,
                      save_every: int = 250, eval_every: int = 500, amp: str = "off", command: str | None = None,
                      progress: bool = True, stop_after_steps: int | None = None, **overrides) -> Path:
    """Pre-train the book's Chinese decoder on :func:`ftbook.corpus.chinese_corpus` into ``out_dir``.

    Same corpus, packing (:func:`ftbook.pretrain.packed_corpus`) and vocabulary as the Chinese BERT;
    labels :func:`causal_lm_labels`; the loop :func:`ftbook.training.train` (default loss), resumable
    from ``out_dir/run/last``; held-out :func:`lm_scores` every ``eval_every`` steps. ``out_dir``
    ends up holding the model (:meth:`ftbook.decoder.Decoder.save_pretrained`), the tokenizer and
    ``train_log.json`` (command, corpus digest, sizes, wall time, machine, baselines, logs)."""
    from .corpus import chinese_corpus, corpus_report
    from .pretrain import _machine, loss_log, packed_corpus
    from .training import train

    prof = get_profile(profile)
    sizes = _sizes(prof, overrides)
    out = Path(out_dir)
    tok = load_tokenizer()
    texts = chinese_corpus(prof)
    packed = packed_corpus(tok, texts, sizes.max_length)
    data = lm_dataset(packed, tok.pad_token_id)
    held = held_out_sequences(tok, prof, sizes.max_length)
    model = new_decoder(len(tok), sizes, pad_token_id=tok.pad_token_id, seed=sizes.seed)
    config = lm_train_config(len(data), steps=sizes.steps, batch_size=sizes.batch_size, lr=sizes.lr,
                             warmup_steps=sizes.warmup_steps, weight_decay=sizes.weight_decay, seed=sizes.seed,
                             amp=amp, load_best=False, save_every=save_every, eval_every=eval_every,
                             progress=progress)
    resume = resume and (out / "run" / "last" / "trainer_state.json").is_file()
    result = train(model, data, lm_dataset(held, tok.pad_token_id), config, tokenizer=tok, output_dir=out / "run",
                   resume=resume, evaluate_fn=lambda m, d: lm_scores(m, d), stop_after_steps=stop_after_steps)
    if result.interrupted:
        return out
    model.save_pretrained(out)
    tok.save_pretrained(out)
    log = loss_log(result.losses, sizes.log_every)
    record = {"command": command, "corpus": corpus_report(texts), "sequences": len(data),
              "sizes": {k: getattr(sizes, k) for k in CAUSAL_LM_KEYS}, "amp": amp,
              "parameters": model.num_parameters(), "wall_seconds": round(result.seconds, 1),
              "machine": _machine(), "baselines": {k: round(v, 4) for k, v in
                                                   ngram_cross_entropy(packed, held, len(tok)).items()},
              "history": log, "evals": [{"step": r["step"], "loss": round(r["val_loss"], 4),
                                         "accuracy": round(r["val_accuracy"], 4)} for r in result.history]}
    (out / "train_log.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    return out


def ship(run_dir: str | Path, dest: str | Path = SHIPPED_DIR) -> Path:
    """Copy the finished run (made by :func:`train_chinese_gpt`) to ``dest`` with its manifest."""
    from .checkpoints import ship_folder

    log = Path(run_dir) / "train_log.json"
    record = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else {"command": None, "corpus": {}}
    return ship_folder(run_dir, dest, SHIPPED_FILES, {"kind": "shipped-chinese-gpt", "command": record["command"],
                                                      "corpus_sha256": record["corpus"].get("sha256")})


def check_shipped(folder: str | Path = SHIPPED_DIR) -> dict:
    """Verify the shipped decoder against its manifest (a missing or altered file: a clear error)."""
    from .checkpoints import check_shipped_folder

    return check_shipped_folder(folder, SHIPPED_FILES, "the book's pre-trained Chinese decoder", REBUILD_COMMAND)


def pretrained_chinese_gpt(folder: str | Path | None = None):
    """``(model, tokenizer)``: the decoder the book pre-trained once with :func:`train_chinese_gpt`
    and ships in ``ftbook/weights/chinese-gpt-tiny`` - verified, loaded in eval mode, never trained
    here (the ``full`` profile's decoders are the hub's: :func:`ftbook.resources.small_llm`)."""
    from transformers import BertTokenizer

    from .decoder import Decoder

    folder = Path(folder) if folder is not None else SHIPPED_DIR
    check_shipped(folder)
    return Decoder.from_pretrained(folder), BertTokenizer.from_pretrained(str(folder))


def training_log(folder: str | Path | None = None) -> dict:
    """The shipped run's ``train_log.json`` (command, corpus digest, wall time, baselines, logs)."""
    folder = Path(folder) if folder is not None else SHIPPED_DIR
    return json.loads((folder / "train_log.json").read_text(encoding="utf-8"))


def complete(model, tokenizer, prompt: str, max_new_tokens: int = 40, **sampling) -> str:
    """The text ``model`` writes after ``prompt`` (``[CLS]`` + the prompt's characters, no ``[SEP]``),
    stopping at ``[SEP]`` (end of text); ``sampling`` goes to :func:`ftbook.generation.generate`."""
    import torch

    from .generation import generate

    ids = [tokenizer.cls_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    room = model.config.max_position_embeddings - len(ids)
    if room <= 0:
        raise ValueError(f"prompt of {len(ids)} tokens leaves no room in {model.config.max_position_embeddings} positions")
    out = generate(model, torch.tensor([ids]), min(max_new_tokens, room), eos_token_id=tokenizer.sep_token_id,
                   **sampling)[0, len(ids):].tolist()
    if tokenizer.sep_token_id in out:
        out = out[: out.index(tokenizer.sep_token_id)]
    return "".join(tokenizer.convert_ids_to_tokens(out))
