"""A stand-in Hugging Face hub for the ``full`` profile, offline.

Fills a hub cache (``HF_HUB_CACHE``) and a datasets cache (``HF_DATASETS_CACHE``) with small models,
tokenizers and datasets saved under the exact repo ids the ``full`` profile names, so that with
``HF_HUB_OFFLINE=1`` the ``full`` code path (hub resolution, ``from_pretrained``, ``load_dataset``,
tokenisation, training) runs here for real. Only the sizes are small: the models are random and
few-layered, the datasets are slices of the bundled data in the hub datasets' own columns.

    python tests/standin_hub.py OUT        # OUT/hub and OUT/datasets; then
    HF_HUB_CACHE=OUT/hub HF_DATASETS_CACHE=OUT/datasets HF_HUB_OFFLINE=1 FTBOOK_PROFILE=full ...

Used by ``tests/test_full_path.py``.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sys
import tempfile
from pathlib import Path

CHINESE_BERT = "bert-base-chinese"
ENGLISH_BERT = "bert-base-uncased"
SMALL_LLM = "Qwen/Qwen2.5-0.5B-Instruct"
CHINESE_DATA = "lansinuote/ChnSentiCorp"
ENGLISH_DATA = "SetFit/bbc-news"
BBC_ORDER = ["tech", "sport", "politics", "entertainment", "business"]  # the stand-in's id order (not ours)


def _put_model_repo(hub: Path, repo_id: str, src: Path) -> Path:
    """Lay ``src``'s files out as the hub cache does: ``models--org--name/{refs/main, snapshots/<sha>/}``."""
    folder = hub / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, snapshot / f.name)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def _bert(tokenizer_dir: Path, out: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    BertForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    if not (out / "vocab.txt").is_file():  # the hub repos have one (a fast tokenizer may save only tokenizer.json)
        vocab = sorted(tok.get_vocab().items(), key=lambda item: item[1])
        assert [i for _, i in vocab] == list(range(len(vocab))), "vocabulary ids are not contiguous"
        (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")


def _llm(out: Path) -> None:
    """A 2-layer Qwen2 with SmolLM2's tokenizer and chat template (both are ChatML: <|im_start|> /
    <|im_end|>), as the instruct chapter uses Qwen2.5-0.5B-Instruct's."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ftbook.resources import small_llm_path

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(small_llm_path("tiny"))
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)


def _put_dataset(datasets_cache: Path, repo_id: str, splits: dict) -> None:
    """Prepare ``splits`` (name -> ``datasets.Dataset``) where ``load_dataset(repo_id)`` looks when
    offline: ``<cache>/<org>___<snake_name>/default/0.0.0/<hash>/`` (datasets' cached-module path)."""
    from datasets.data_files import DataFilesDict
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet

    org, name = repo_id.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for split, ds in splits.items():
            path = Path(tmp) / f"{split}.parquet"
            ds.to_parquet(str(path))
            files[split] = [str(path)]
        builder = Parquet(cache_dir=str(Path(tmp) / "built"), dataset_name=name, hash="standin",
                          data_files=DataFilesDict.from_local_or_remote(files))
        builder.download_and_prepare()
        target = datasets_cache / f"{org}___{camelcase_to_snakecase(name)}" / "default" / "0.0.0"
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target / "standin", ignore_errors=True)
        shutil.copytree(builder.cache_dir, target / "standin")


def _datasets(datasets_cache: Path, n: int) -> None:
    """Real texts from the bundled data, in the hub datasets' schemas: ChnSentiCorp has ``text``,
    ``label`` (0 negative, 1 positive) and three splits; SetFit/bbc-news has ``text``, ``label``,
    ``label_text`` and no validation split. Its ids here are deliberately not the bundled order, so a
    reader that assumes an order instead of reading ``label_text`` fails."""
    from datasets import Dataset

    from ftbook.resources import chinese_reviews, english_news

    def pooled(ds):  # every split, shuffled, so the hash buckets that carve out validation are all present
        pairs = [(t, y) for split in ds.values() for t, y in zip(split["text"], split["label"])]
        random.Random(0).shuffle(pairs)
        return [t for t, _ in pairs], [y for _, y in pairs]

    texts, labels = pooled(chinese_reviews("tiny"))
    step = len(texts) // (2 * n)
    texts, labels = texts[::step], labels[::step]
    _put_dataset(datasets_cache, CHINESE_DATA, {
        "train": Dataset.from_dict({"text": texts[:n], "label": labels[:n]}),
        "validation": Dataset.from_dict({"text": texts[n:n + n // 4], "label": labels[n:n + n // 4]}),
        "test": Dataset.from_dict({"text": texts[n + n // 4:n + n // 2], "label": labels[n + n // 4:n + n // 2]})})
    en = english_news("tiny")
    names = en["train"].features["label"].names
    order = BBC_ORDER  # hub id i names order[i]
    assert sorted(order) == sorted(names)
    texts, labels = pooled(en)
    step = len(texts) // (n + n // 4)
    texts, labels = texts[::step], [order.index(names[y]) for y in labels[::step]]
    _put_dataset(datasets_cache, ENGLISH_DATA, {
        split: Dataset.from_dict({"text": texts[a:b], "label": labels[a:b], "label_text": [order[y] for y in labels[a:b]]})
        for split, (a, b) in (("train", (0, n)), ("test", (n, n + n // 4)))})


def build(out: str | Path, n: int = 200) -> dict:
    """Write the stand-in hub under ``out``; return the environment that points at it."""
    from ftbook.pretrain import pretrained_chinese_bert
    from ftbook.resources import minilm_path

    out = Path(out)
    hub, datasets_cache = out / "hub", out / "datasets"
    with tempfile.TemporaryDirectory() as tmp:
        for repo_id, make in ((CHINESE_BERT, lambda d: _bert(pretrained_chinese_bert("tiny"), d)),
                              (ENGLISH_BERT, lambda d: _bert(minilm_path(), d)),  # MiniLM has BERT-uncased's vocab
                              (SMALL_LLM, _llm)):
            src = Path(tmp) / repo_id.replace("/", "--")
            make(src)
            _put_model_repo(hub, repo_id, src)
    _datasets(datasets_cache, n)
    return {"HF_HUB_CACHE": str(hub), "HF_DATASETS_CACHE": str(datasets_cache), "HF_HUB_OFFLINE": "1",
            "FTBOOK_PROFILE": "full"}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/standin_hub.py OUT")
    for key, value in build(sys.argv[1]).items():
        print(f"export {key}={value}")
