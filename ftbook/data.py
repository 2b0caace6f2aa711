"""Data preparation: cleaning, tokeniser comparison, encoding, dynamic padding, length buckets.

Taught in chapter 3 (``chapters/03_data.ipynb``, 数据预处理). The character vocabulary lives in
:mod:`ftbook.vocab` (same chapter).

* Cleaning of real Chinese and English text: :func:`to_halfwidth` (full-width letters, digits,
  space and, optionally, punctuation), :func:`strip_html`, :func:`remove_urls`,
  :func:`normalize_whitespace`, all in :func:`clean_text`; :func:`deduplicate` after cleaning
  (texts that differ only in width or spaces are the same text) and :func:`clean_dataset` for a
  ``datasets.Dataset``, with a report of everything removed.
* Tokenisers compared: :func:`train_wordpiece` (``tokenizers``' trainer) and :func:`unk_rate`.
* Encoding with ``Dataset.map(batched=True)``: :func:`encode_dataset` (no padding yet, truncation
  counted and reported, bad text and labels refused with the row that is wrong).
* Batching: :class:`DynamicPaddingCollator` (pads each batch to its own longest sequence, like
  ``transformers.DataCollatorWithPadding``) and :class:`LengthBucketSampler` (batches of similar
  length, so there is little padding left to add). :func:`padding_stats` measures the waste;
  ``benchmarks/padding.py`` measures the speed on MiniLM.
* :class:`Encoded` / :func:`encode`: the examples every training loop of the book consumes
  (chapter 10's :func:`ftbook.training.train`); their batches come from the same collator.
"""

from __future__ import annotations

import contextlib
import html
import math
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import register_sizes

__all__ = [
    "to_halfwidth",
    "strip_html",
    "remove_urls",
    "normalize_whitespace",
    "clean_text",
    "deduplicate",
    "clean_dataset",
    "train_wordpiece",
    "unk_rate",
    "encode_dataset",
    "DynamicPaddingCollator",
    "IGNORE_INDEX",
    "Encoded",
    "encode",
    "LengthBucketSampler",
    "padding_stats",
    "padding_strategies",
    "compare_padding",
]

register_sizes(
    "data",
    tiny={"max_length": 128, "batch_size": 32, "wordpiece_vocab": 12000, "bench_texts": 128,
          "n_unk_texts": 2000},
    full={"max_length": 256, "batch_size": 32, "wordpiece_vocab": 30000, "bench_texts": 4096,
          "n_unk_texts": 20000},
)

# ---------------------------------------------------------------- cleaning

# Full-width ASCII variants U+FF01..U+FF5E map to U+0021..U+007E by subtracting 0xFEE0.
_FW_ALNUM = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if chr(cp - 0xFEE0).isalnum()}
_FW_PUNCT = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if not chr(cp - 0xFEE0).isalnum()}
_IDEOGRAPHIC_SPACE = {0x3000: 0x20}


def _check_str(text: Any, what: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}: {text!r:.60}")
    return text


def to_halfwidth(text: str, punctuation: bool = False) -> str:
    """Full-width letters, digits and the ideographic space (U+3000) to their ASCII forms.

    ``ＡＢＣ１２３`` becomes ``ABC123``: an English tokenizer knows the second, not the first.
    Chinese punctuation (``，。！？：（）``) is kept unless ``punctuation=True``: it is the
    normal punctuation of Chinese text and Chinese BERT vocabularies contain it.
    (``unicodedata.normalize("NFKC", ...)`` also does this, but changes much more:
    ``①`` -> ``1``, ``㎡`` -> ``m2``, ``…`` -> ``...``.)
    """
    _check_str(text)
    table = {**_FW_ALNUM, **_IDEOGRAPHIC_SPACE, **(_FW_PUNCT if punctuation else {})}
    return text.translate(table)


_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>|<!--.*?-->", re.S)
_BLOCK_TAG = re.compile(r"<(?:br|p|div|li|tr|h[1-6])\b[^<>]*>|</(?:p|div|li|tr|h[1-6])>", re.I)


def strip_html(text: str) -> str:
    """Remove HTML tags and comments and decode entities (``&amp;`` -> ``&``, ``&nbsp;`` -> space).

    Block tags (``<br>``, ``<p>``...) become a space so words on both sides stay apart. Only
    things shaped like tags are removed: ``a < b > c`` is left alone.
    """
    _check_str(text)
    text = _BLOCK_TAG.sub(" ", text)
    text = _TAG.sub("", text)
    return html.unescape(text)


# scheme://... or www.... made of URL characters; a final . , ; : ! ? ) ' " is not part of it.
_URL = re.compile(r"(?:https?|ftp)://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+|www\.[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+",
                  re.I)


def remove_urls(text: str, replacement: str = "") -> str:
    """Replace web addresses (``http(s)://``, ``ftp://``, ``www.``) by ``replacement``.

    Only ASCII URL characters are taken, so the Chinese text right after an address stays:
    ``见http://a.com/x.html，很好`` -> ``见，很好``.
    """
    _check_str(text)
    _check_str(replacement, "replacement")

    def sub(m: re.Match) -> str:
        url = m.group(0)
        tail = len(url) - len(url.rstrip(".,;:!?)'\""))
        return replacement + url[len(url) - tail:] if tail else replacement

    return _URL.sub(sub, text)


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)


def normalize_whitespace(text: str) -> str:
    """Every run of whitespace (``\\n``, ``\\t``, U+3000, U+00A0...) to one space; strip the ends.

    Zero-width characters and other control characters are removed.
    """
    _check_str(text)
    text = text.translate(_ZERO_WIDTH)
    text = "".join(" " if ch.isspace() else ch for ch in text
                   if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    return " ".join(text.split())


def clean_text(text: str, *, halfwidth: bool = True, html_tags: bool = True, urls: bool = True,
               whitespace: bool = True, punctuation: bool = False, lowercase: bool = False) -> str:
    """The cleaning pipeline, in this order: HTML, URLs, full-width -> half-width, whitespace.

    URLs go before the width change so a full-width ``）`` after an address is kept as the
    Chinese text's own punctuation. Raises ``TypeError`` for anything but a ``str``.
    """
    _check_str(text)
    if html_tags:
        text = strip_html(text)
    if urls:
        text = remove_urls(text)
    if halfwidth:
        text = to_halfwidth(text, punctuation=punctuation)
    if whitespace:
        text = normalize_whitespace(text)
    if lowercase:
        text = text.lower()
    return text


def deduplicate(texts: Sequence[str], labels: Sequence[int] | None = None, key=None
                ) -> tuple[list[str], list[int] | None, dict]:
    """Keep the first copy of each text (compared after ``key``, default :func:`clean_text`).

    With ``labels``, texts that occur with two different labels are dropped altogether (we cannot
    know which label is right). Returns ``(texts, labels, report)``; the report counts
    ``duplicates``, ``conflicting`` (texts dropped for conflicting labels) and ``kept``.
    """
    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    key = clean_text if key is None else key
    keys = [key(_check_str(t, f"text #{i}")) for i, t in enumerate(texts)]
    keep, report = _dedup_indices(keys, labels)
    return ([texts[i] for i in keep], None if labels is None else [labels[i] for i in keep], report)


def _dedup_indices(keys: Sequence[str], labels: Sequence | None) -> tuple[list[int], dict]:
    first: dict[str, int] = {}
    label_sets: dict[str, set] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
        if labels is not None:
            label_sets.setdefault(k, set()).add(labels[i])
    conflicting = {k for k, s in label_sets.items() if len(s) > 1}
    keep = [i for i, k in enumerate(keys) if first[k] == i and k not in conflicting]
    report = {"input": len(keys), "duplicates": len(keys) - len(first),
              "conflicting": len(conflicting), "kept": len(keep)}
    return keep, report


def clean_dataset(ds, text_column: str = "text", label_column: str | None = "label",
                  batch_size: int = 1000, **clean_options):
    """Clean a ``datasets.Dataset`` (batched ``map``), drop texts left empty and duplicates.

    Returns ``(dataset, report)`` with ``report = {"input", "empty_after_cleaning",
    "duplicates", "conflicting", "kept"}``.
    """
    if text_column not in ds.column_names:
        raise KeyError(f"column {text_column!r} not in dataset columns {ds.column_names}")

    def batch_clean(batch):
        return {text_column: [clean_text(t, **clean_options) if isinstance(t, str) else t
                              for t in batch[text_column]]}

    _check_texts(ds[text_column], text_column, allow_empty=True)
    n = len(ds)
    ds = ds.map(batch_clean, batched=True, batch_size=batch_size)
    ds = ds.filter(lambda b: [bool(t) for t in b[text_column]], batched=True, batch_size=batch_size)
    empty = n - len(ds)
    labels = ds[label_column] if label_column else None
    keep, rep = _dedup_indices(ds[text_column], labels)  # rows are clean: compare them as they are
    ds = ds.select(keep)
    report = {"input": n, "empty_after_cleaning": empty, "duplicates": rep["duplicates"],
              "conflicting": rep["conflicting"], "kept": len(ds)}
    return ds, report


# ---------------------------------------------------------------- tokenisers


def train_wordpiece(texts: Iterable[str], vocab_size: int = 6000, min_frequency: int = 2,
                    lowercase: bool = True, model_max_length: int = 512, split_chinese_chars: bool = False):
    """Train a BERT-style WordPiece tokenizer with the ``tokenizers`` library.

    With ``split_chinese_chars=False`` (default) a run of Chinese between spaces/punctuation is
    one "word" that WordPiece cuts into learnt pieces (``酒店``, ``##不错``); ``True`` splits every
    CJK character first, as BERT's own normaliser does, so WordPiece cannot merge Chinese at all.
    Returns a ``transformers.PreTrainedTokenizerFast`` with BERT's special tokens. Note: the
    trainer is **not deterministic** (the vocabulary can differ by a few tokens between runs);
    save the tokenizer with the model, or build a character vocabulary with :mod:`ftbook.vocab`.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(vocab_size, int) or vocab_size < 10:
        raise ValueError(f"vocab_size must be an int >= 10, got {vocab_size!r}")
    texts = list(texts)
    if not texts:
        raise ValueError("cannot train a tokenizer on no texts")
    _check_texts(texts, "texts", allow_empty=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, handle_chinese_chars=split_chinese_chars,
                                                strip_accents=lowercase, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=special, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=model_max_length)


def unk_rate(tokenizer, texts: Iterable[str]) -> float:
    """Fraction of tokens (special tokens excluded) that are the tokenizer's ``[UNK]``."""
    texts = list(texts)
    if not texts:
        raise ValueError("unk_rate needs at least one text")
    _check_texts(texts, "texts", allow_empty=True)
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        raise ValueError("tokenizer has no unk_token_id")
    ids = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    total = sum(len(x) for x in ids)
    if total == 0:
        raise ValueError("the texts produced no tokens at all")
    return sum(x.count(unk) for x in ids) / total


# ---------------------------------------------------------------- encoding


def _check_texts(texts: Sequence, column: str, allow_empty: bool = False, offset: int = 0) -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"row {offset + i} of {column!r} is {type(t).__name__} ({t!r:.40}), expected str")
        if not allow_empty and not t.strip():
            raise ValueError(
                f"row {offset + i} of {column!r} is empty or only whitespace; clean the data first "
                f"(ftbook.data.clean_dataset drops such rows)"
            )


def encode_dataset(ds, tokenizer, max_length: int, text_column: str = "text",
                   label_column: str | None = "label", num_labels: int | None = None,
                   batch_size: int = 1000, keep_text: bool = False):
    """Tokenise a ``datasets.Dataset`` with ``map(batched=True)``: ids and masks, **no padding**.

    Adds ``input_ids``, ``attention_mask`` (and ``token_type_ids`` if the tokenizer makes them),
    ``length`` (tokens after truncation) and ``truncated`` (True where the text was cut to
    ``max_length`` tokens: documented truncation, counted, never silent). Labels go to ``labels``.

    Refuses: a missing column, non-string or empty text (naming the row), labels outside
    ``0..num_labels-1`` (``num_labels`` defaults to the ``ClassLabel``'s number of names).
    """
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
    if text_column not in ds.column_names:
        raise KeyError(f"column {text_column!r} not in dataset columns {ds.column_names}")
    if label_column is not None:
        if label_column not in ds.column_names:
            raise KeyError(f"label column {label_column!r} not in dataset columns {ds.column_names} "
                           f"(pass label_column=None for unlabelled data)")
        if num_labels is None:
            feat = ds.features[label_column]
            names = getattr(feat, "names", None)
            if names is None:
                raise ValueError(f"label column {label_column!r} is not a ClassLabel; pass num_labels")
            num_labels = len(names)
        labels = ds[label_column]
        for i, y in enumerate(labels):
            if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < num_labels:
                raise ValueError(f"row {i}: label {y!r} is outside the label set 0..{num_labels - 1}")

    def encode(batch, indices):
        texts = batch[text_column]
        _check_texts(texts, text_column, offset=indices[0] if indices else 0)
        enc = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)
        out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        out["length"] = [len(x) for x in enc["input_ids"]]
        if getattr(enc, "encodings", None):
            out["truncated"] = [len(e.overflowing) > 0 for e in enc.encodings]
        else:  # slow tokenizer: count the full length once more
            full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
            out["truncated"] = [len(x) > max_length for x in full]
        if label_column is not None:
            out["labels"] = batch[label_column]
        return out

    remove = [c for c in ds.column_names if not (keep_text and c == text_column)]
    return ds.map(encode, batched=True, batch_size=batch_size, with_indices=True, remove_columns=remove)


# ---------------------------------------------------------------- batching


class DynamicPaddingCollator:
    """Collate encoded examples into tensors, padding each batch to its **own** longest sequence.

    Like ``transformers.DataCollatorWithPadding`` (right padding; ``labels`` or ``label`` become
    ``labels``; other keys ``length``/``truncated``/text are dropped). ``padding="max_length"``
    pads every batch to ``max_length`` (the wasteful baseline of chapter 3's benchmark);
    ``pad_to_multiple_of`` rounds the length up (8 helps GPU tensor cores).

    ``pad_token_id`` may be given directly or through ``tokenizer``.
    """

    PAD_KEYS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, tokenizer=None, *, pad_token_id: int | None = None, padding: str = "longest",
                 max_length: int | None = None, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if not isinstance(pad_token_id, int) or isinstance(pad_token_id, bool) or pad_token_id < 0:
            raise ValueError(f"need a pad token id (an int >= 0) or a tokenizer that has one, got {pad_token_id!r}")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        self.pad_token_id = pad_token_id
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        for i, f in enumerate(features):
            if not isinstance(f, Mapping) or "input_ids" not in f:
                raise KeyError(f"example {i} has no 'input_ids' (got keys {list(f) if isinstance(f, Mapping) else type(f).__name__}); "
                               f"encode the texts first (ftbook.data.encode_dataset)")
            n = len(f["input_ids"])
            if n == 0:
                raise ValueError(f"example {i} has no tokens")
            for k in self.PAD_KEYS[1:]:
                if k in f and len(f[k]) != n:
                    raise ValueError(f"example {i}: {k} has {len(f[k])} entries but input_ids has {n}")
            if self.max_length is not None and n > self.max_length:
                raise ValueError(f"example {i} has {n} tokens, more than max_length={self.max_length}; "
                                 f"truncate when encoding (encode_dataset(..., max_length=...))")
        longest = max(len(f["input_ids"]) for f in features)
        target = self.max_length if self.padding == "max_length" else longest
        if self.pad_to_multiple_of:
            target = math.ceil(target / self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, torch.Tensor] = {}
        for key in self.PAD_KEYS:
            present = [key in f for f in features]
            if not any(present) and key != "attention_mask":
                continue
            if any(present) and not all(present):
                raise KeyError(f"{key!r} is in some examples of the batch but not in all")
            fill = self.pad_token_id if key == "input_ids" else 0
            rows = []
            for f in features:
                seq = list(f[key]) if key in f else [1] * len(f["input_ids"])
                rows.append(seq + [fill] * (target - len(seq)))
            batch[key] = torch.tensor(rows, dtype=torch.long)
        label_key = "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
        if label_key is not None:
            batch["labels"] = self._labels([f.get(label_key) for f in features], label_key, features, target)
        return batch

    @staticmethod
    def _labels(ys: list, key: str, features, target: int) -> torch.Tensor:
        """One label per example, or one per token (token classification, masked LM): those are
        padded with ``IGNORE_INDEX`` (-100), which the loss skips (``DataCollatorForTokenClassification``)."""
        if any(y is None for y in ys):
            raise KeyError(f"{key!r} is missing in some examples of the batch")
        if not isinstance(ys[0], (list, tuple)):
            return torch.tensor(ys, dtype=torch.float if isinstance(ys[0], float) else torch.long)
        for i, (y, f) in enumerate(zip(ys, features)):
            if not isinstance(y, (list, tuple)) or len(y) != len(f["input_ids"]):
                raise ValueError(f"example {i}: token labels must be a list as long as input_ids "
                                 f"({len(f['input_ids'])}), got {y!r:.60}")
        return torch.tensor([list(y) + [IGNORE_INDEX] * (target - len(y)) for y in ys], dtype=torch.long)


IGNORE_INDEX = -100  # the label the loss skips: padding, special tokens, unmasked positions


@dataclass
class Encoded:
    """Tokenised examples ready for the training loop (chapter 10): variable-length ``input_ids``
    (no padding yet), and one integer label per example (classification) or one per token (token
    classification, masked LM; ``IGNORE_INDEX`` where there is nothing to predict)."""

    input_ids: list[list[int]]
    labels: list
    pad_token_id: int = 0
    texts: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"input_ids ({len(self.input_ids)}) and labels ({len(self.labels)}) differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def subset(self, indices: Sequence[int]) -> "Encoded":
        return Encoded([self.input_ids[i] for i in indices], [self.labels[i] for i in indices],
                       self.pad_token_id, None if self.texts is None else [self.texts[i] for i in indices])

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The examples ``indices`` padded into tensors by :class:`DynamicPaddingCollator`."""
        collate = DynamicPaddingCollator(pad_token_id=self.pad_token_id)
        return collate([{"input_ids": self.input_ids[i], "labels": self.labels[i]} for i in indices])

    @classmethod
    def from_dataset(cls, ds, tokenizer, max_length: int, limit: int | None = None) -> "Encoded":
        """:func:`encode_dataset` a ``datasets.Dataset`` with ``text`` and ``label`` columns (the
        first ``limit`` rows) and keep the ids, labels and texts."""
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        enc = encode_dataset(ds, tokenizer, max_length, keep_text=True)
        pad = tokenizer.pad_token_id
        return cls([list(x) for x in enc["input_ids"]], list(enc["labels"]), int(pad if pad is not None else 0),
                   list(enc["text"]))


def encode(texts: Sequence[str], labels: Sequence[int], tokenizer, max_length: int,
           num_labels: int | None = None) -> Encoded:
    """:class:`Encoded` from parallel lists of texts and integer labels (truncated to
    ``max_length`` tokens, no padding); ``num_labels`` defaults to ``max(labels) + 1``."""
    from datasets import Dataset

    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    if not texts:
        raise ValueError("cannot encode an empty set of texts")
    for i, y in enumerate(labels):
        if isinstance(y, bool) or not isinstance(y, int) or y < 0:
            raise ValueError(f"label #{i} is {y!r}, expected an int >= 0")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text #{i} is {type(t).__name__}, expected str")
    ds = Dataset.from_dict({"text": texts, "label": labels})
    enc = encode_dataset(ds, tokenizer, max_length, num_labels=num_labels or max(labels) + 1)
    pad = tokenizer.pad_token_id
    return Encoded([list(x) for x in enc["input_ids"]], list(enc["labels"]), int(pad if pad is not None else 0),
                   texts)


class LengthBucketSampler(torch.utils.data.Sampler):
    """A batch sampler that groups examples of similar length (less padding, same randomness).

    Each epoch: shuffle all indices, cut them into pools of ``batch_size * pool_batches``, sort
    each pool by length, cut the pools into batches, shuffle the batches. Every index appears
    exactly once per epoch. ``shuffle=False`` sorts the whole data set by length (evaluation).
    Use as ``DataLoader(ds, batch_sampler=LengthBucketSampler(ds["length"], 32), collate_fn=...)``;
    call :meth:`set_epoch` for a new order each epoch (deterministic for a given seed and epoch).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, pool_batches: int = 50,
                 shuffle: bool = True, drop_last: bool = False, seed: int = 0):
        lengths = list(lengths)
        if not lengths:
            raise ValueError("lengths is empty: nothing to sample")
        for i, n in enumerate(lengths):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"lengths[{i}] = {n!r}; expected a non-negative int (token count)")
        for name, v in (("batch_size", batch_size), ("pool_batches", pool_batches)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.lengths, self.batch_size, self.pool_batches = lengths, batch_size, pool_batches
        self.shuffle, self.drop_last, self.seed, self.epoch = shuffle, drop_last, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        if not self.shuffle:
            pools = [sorted(idx, key=lambda i: (self.lengths[i], i))]
        else:
            rng = random.Random(self.seed * 1_000_003 + self.epoch)
            rng.shuffle(idx)
            size = self.batch_size * self.pool_batches
            pools = [sorted(idx[s:s + size], key=lambda i: (self.lengths[i], i)) for s in range(0, len(idx), size)]
        batches = [p[s:s + self.batch_size] for p in pools for s in range(0, len(p), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.drop_last:
            return len(self._batches())
        return math.ceil(n / self.batch_size) if not self.shuffle else len(self._batches())


def padding_stats(lengths: Sequence[int], batches: Iterable[Sequence[int]], pad_to: int | None = None) -> dict:
    """Tokens and padding of a batching: ``{"real", "padded", "pad_fraction", "batches"}``.

    ``batches`` lists indices into ``lengths``; each batch is padded to its longest member, or to
    ``pad_to`` when given (pad-to-max). ``pad_fraction`` is the share of the tensor that is pad.
    """
    real = padded = nb = 0
    for b in batches:
        b = list(b)
        if not b:
            raise ValueError("padding_stats got an empty batch")
        ls = [lengths[i] for i in b]
        width = pad_to if pad_to is not None else max(ls)
        if max(ls) > width:
            raise ValueError(f"a sequence of {max(ls)} tokens does not fit pad_to={pad_to}")
        real += sum(ls)
        padded += width * len(ls)
        nb += 1
    if nb == 0:
        raise ValueError("padding_stats got no batches")
    return {"real": real, "padded": padded, "pad_fraction": 1 - real / padded, "batches": nb}


def padding_strategies(lengths: Sequence[int], batch_size: int, seed: int = 0) -> dict[str, list[list[int]]]:
    """The batches of chapter 3's comparison: random batches (for pad-to-max and dynamic padding)
    and length-bucketed batches, all over the same examples."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    random_batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    bucketed = list(LengthBucketSampler(lengths, batch_size, seed=seed))
    return {"pad_to_max": random_batches, "dynamic": random_batches, "bucketed": bucketed}


def compare_padding(model, encoded, batch_size: int, max_length: int, pad_token_id: int,
                    seed: int = 0, repeats: int = 1) -> list[dict]:
    """Forward ``model`` over ``encoded`` three ways; per strategy: padding share and throughput.

    ``encoded`` is a list of examples (dicts with ``input_ids`` ...), e.g. from
    :func:`encode_dataset`. Returns one dict per strategy with ``pad_fraction``, ``seconds``
    (wall, best of ``repeats``), ``cpu_seconds`` (this process's CPU time, best of ``repeats``:
    steadier than wall time on a shared machine) and ``samples_per_s``. Timings are noisy:
    compare rows of one call.
    """
    import time

    lengths = [len(f["input_ids"]) for f in encoded]
    strategies = padding_strategies(lengths, batch_size, seed)
    collators = {
        "pad_to_max": DynamicPaddingCollator(pad_token_id=pad_token_id, padding="max_length", max_length=max_length),
        "dynamic": DynamicPaddingCollator(pad_token_id=pad_token_id, max_length=max_length),
        "bucketed": DynamicPaddingCollator(pad_token_id=pad_token_id, max_length=max_length),
    }
    keep = ("input_ids", "attention_mask", "token_type_ids")
    rows = []
    model.eval()
    with torch.inference_mode():
        model(**{k: v for k, v in collators["dynamic"]([encoded[0]]).items() if k in keep})  # warm-up
        for name, batches in strategies.items():
            tensors = [{k: v for k, v in collators[name]([encoded[i] for i in b]).items() if k in keep}
                       for b in batches]
            best = best_cpu = float("inf")
            for _ in range(repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                for t in tensors:
                    model(**t)
                best = min(best, time.perf_counter() - start)
                best_cpu = min(best_cpu, time.process_time() - start_cpu)
            stats = padding_stats(lengths, batches, pad_to=max_length if name == "pad_to_max" else None)
            rows.append({"strategy": name, "pad_fraction": stats["pad_fraction"], "padded_tokens": stats["padded"],
                         "seconds": best, "cpu_seconds": best_cpu, "samples_per_s": len(encoded) / best})
    return rows


@contextlib.contextmanager
def no_progress_bars():
    """No ``datasets`` progress bars ("Map", "Saving the dataset") inside the block (restored
    afterwards): for work done in a worker process or behind a cache."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
