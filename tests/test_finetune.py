"""Tests of ftbook.finetune: the tracks' settings and the cached fine-tuned checkpoint."""

from __future__ import annotations

import json

import pytest
from toy import data, tiny_model, tokenizer, toy_texts  # noqa: F401 (fixtures)

from ftbook import finetune as F
from ftbook import training
from ftbook.data import Encoded


def test_track_config_reads_profile_and_rejects_unknown():
    cfg = F.track_config("english", "tiny")
    sizes = F.get_profile("tiny").sizes("finetune")
    assert cfg.lr == sizes.english_lr and cfg.max_steps == sizes.english_max_steps
    assert F.track_config("chinese", "tiny", lr=1e-3).lr == 1e-3
    with pytest.raises(TypeError, match="unknown TrainConfig fields"):
        F.track_config("english", "tiny", learning_rate=1e-3)
    with pytest.raises(ValueError, match="track must be one of"):
        F.track_config("french")


def test_track_config_groups_chinese_reviews_by_length():
    assert F.track_config("chinese", "tiny").group_by_length is True
    assert F.track_config("english", "tiny").group_by_length is False


# ----------------------------------------------------------------------------- cached checkpoint


def test_finetuned_checkpoint_builds_once_and_loads(tokenizer, data, tmp_path, monkeypatch):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from transformers import AutoModelForSequenceClassification

    texts, labels = toy_texts()
    feats = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    ds = DatasetDict({k: Dataset.from_dict({"text": texts, "label": labels}, features=feats)
                      for k in ("train", "validation", "test")})
    calls = []

    def fake_load(track, prof):
        calls.append(track)
        return tiny_model(tokenizer), tokenizer, ds

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(F, "load_track", fake_load)
    monkeypatch.setattr(F, "base_model_path", lambda track, prof=None: str(tmp_path / "base"))
    path = F.finetuned_checkpoint("english", "tiny", log=lambda m: None)
    again = F.finetuned_checkpoint("english", "tiny", log=lambda m: None)
    assert path == again and calls == ["english"]
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert model.config.label2id == {"negative": 0, "positive": 1}
    metrics = json.loads((path / "metrics.json").read_text())
    test = Encoded.from_dataset(ds["test"], tokenizer, 128)
    assert metrics["steps"] > 0 and metrics["history"]
    assert metrics["test_accuracy"] == pytest.approx(training.evaluate(model, test)["accuracy"])  # honest figure
    with pytest.raises(ValueError, match="track must be one of"):
        F.finetuned_checkpoint("klingon")
