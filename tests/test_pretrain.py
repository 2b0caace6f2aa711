"""Tests of ftbook.pretrain: BERT's 80/10/10 masking (same statistics as transformers'
DataCollatorForLanguageModeling), the cached pre-trained checkpoint, bad inputs."""

import json
from types import MappingProxyType

import pytest
import torch

from ftbook import config, pretrain
from ftbook.checkpoints import MANIFEST
from ftbook.resources import ResourceUnavailableError

MASK, VOCAB = 4, 1000


def _ids(batch=64, seq=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, VOCAB, (batch, seq), generator=g)


def _stats(inputs, labels, original):
    target = labels != -100
    n = target.sum().item()
    return {
        "masked": n / original.numel(),
        "mask_token": ((inputs == MASK) & target).sum().item() / n,
        "unchanged": ((inputs == original) & target).sum().item() / n,
        "random": ((inputs != original) & (inputs != MASK) & target).sum().item() / n,
    }


def test_mask_statistics_match_transformers_collator():
    from transformers import DataCollatorForLanguageModeling

    class FakeTok:  # the collator only needs these from the tokenizer for torch_mask_tokens
        mask_token = "[MASK]"
        pad_token = "[PAD]"

        def convert_tokens_to_ids(self, tok):
            return MASK

        def __len__(self):
            return VOCAB

    ids = _ids(256, 128)
    ours = _stats(*pretrain.mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB,
                                        generator=torch.Generator().manual_seed(1)), ids)
    coll = DataCollatorForLanguageModeling(tokenizer=FakeTok(), mlm_probability=0.15, seed=1,
                                           return_tensors="pt")
    coll.generator = torch.Generator().manual_seed(1)
    special = torch.zeros_like(ids, dtype=torch.bool)
    theirs = _stats(*coll.torch_mask_tokens(ids.clone(), special), ids)
    n = ids.numel() * 0.15
    for key, expected in (("masked", 0.15), ("mask_token", 0.8), ("random", 0.1), ("unchanged", 0.1)):
        # binomial standard error on ~5k targets is < 0.006; allow 4 sigma
        tol = 0.004 if key == "masked" else 0.025
        assert abs(ours[key] - expected) < tol, (key, ours)
        assert abs(ours[key] - theirs[key]) < tol, (key, ours, theirs)
    assert n > 4000


def test_mask_is_exactly_the_collators_draw_with_same_generator():
    """Same sampling order as the collator: identical output for an identical generator state."""
    from transformers import DataCollatorForLanguageModeling

    class FakeTok:
        mask_token = "[MASK]"

        def convert_tokens_to_ids(self, tok):
            return MASK

        def __len__(self):
            return VOCAB

    ids = _ids(8, 32)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    coll = DataCollatorForLanguageModeling(tokenizer=FakeTok(), return_tensors="pt")
    coll.generator = torch.Generator().manual_seed(7)
    theirs = coll.torch_mask_tokens(ids.clone(), special)
    ours = pretrain.mask_tokens(ids, special, mask_token_id=MASK, vocab_size=VOCAB,
                                generator=torch.Generator().manual_seed(7))
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_special_tokens_are_never_masked_and_input_untouched():
    ids = _ids(32, 64)
    before = ids.clone()
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, :2] = True
    special[:, -5:] = True
    inputs, labels = pretrain.mask_tokens(ids, special, mask_token_id=MASK, vocab_size=VOCAB,
                                          mlm_probability=0.9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, before)
    assert (labels[special] == -100).all()
    assert torch.equal(inputs[special], ids[special])
    target = labels != -100
    assert torch.equal(labels[target], ids[target])


@pytest.mark.parametrize("kwargs, match", [
    ({"mlm_probability": 1.5}, "mlm_probability"),
    ({"mask_replace_prob": 0.9, "random_replace_prob": 0.2}, "<= 1"),
    ({"mask_token_id": 5000}, "outside the vocabulary"),
    ({"vocab_size": 0}, "vocab_size"),
])
def test_mask_bad_arguments(kwargs, match):
    args = {"mask_token_id": MASK, "vocab_size": VOCAB, **kwargs}
    with pytest.raises(ValueError, match=match):
        pretrain.mask_tokens(_ids(2, 4), **args)


def test_mask_bad_inputs():
    with pytest.raises(TypeError, match="LongTensor"):
        pretrain.mask_tokens(torch.zeros(2, 3), mask_token_id=MASK, vocab_size=VOCAB)
    with pytest.raises(TypeError, match="LongTensor"):
        pretrain.mask_tokens([[1, 2]], mask_token_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="does not match"):
        pretrain.mask_tokens(_ids(2, 4), torch.zeros(2, 5, dtype=torch.bool), mask_token_id=MASK,
                             vocab_size=VOCAB)


def test_pad_batch_and_errors():
    ids, mask = pretrain.pad_batch([[2, 7, 3], [2, 3]], pad_id=0)
    assert ids.tolist() == [[2, 7, 3], [2, 3, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    with pytest.raises(ValueError, match="empty batch"):
        pretrain.pad_batch([])
    with pytest.raises(ValueError, match="max_length"):
        pretrain.encode_corpus(None, ["x"], 2)


def test_corpus_is_train_split_only():
    from ftbook.resources import chinese_reviews

    ds = chinese_reviews("tiny")
    texts = pretrain.pretraining_corpus("tiny")
    assert texts == list(ds["train"]["text"])
    held_out = set(ds["validation"]["text"]) | set(ds["test"]["text"])
    assert not held_out & set(texts)


# ---------------------------------------------------------------------------------------------
# The cached checkpoint, with a very small size so the test trains in seconds
# ---------------------------------------------------------------------------------------------
SMALL = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
    "max_length": 32, "min_freq": 2, "batch_size": 8, "steps": 6, "lr": 1e-3, "warmup_steps": 2,
    "weight_decay": 0.01, "mlm_probability": 0.15, "log_every": 3, "seed": 0,
    "budgets": [16, None], "ft_steps": 3, "ft_lr": 1e-3, "ft_batch_size": 8, "ft_eval_max": 40,
}


@pytest.fixture
def small_profile(monkeypatch):
    section = dict(config._SECTIONS["pretrain"])
    section["tiny"] = MappingProxyType(dict(SMALL))
    monkeypatch.setitem(config._SECTIONS, "pretrain", section)
    texts = pretrain.pretraining_corpus("tiny")[:200]
    monkeypatch.setattr(pretrain, "pretraining_corpus", lambda profile=None: list(texts))
    return texts


def test_pretrained_chinese_bert_builds_loads_and_caches(small_profile, tmp_path):
    from transformers import AutoTokenizer, BertForMaskedLM, BertForSequenceClassification

    from ftbook.vocab import build_char_vocab, char_tokenizer

    logs = []
    path = pretrain.pretrained_chinese_bert("tiny", root=tmp_path, log=logs.append)
    for name in ("config.json", "model.safetensors", "vocab.txt", "train_log.json", MANIFEST):
        assert (path / name).is_file(), name
    # deterministic vocabulary of the train texts
    vocab = (path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab == build_char_vocab(small_profile, min_freq=2)
    mlm = BertForMaskedLM.from_pretrained(path)
    assert mlm.config.hidden_size == 32 and mlm.config.vocab_size == len(vocab)
    clf = BertForSequenceClassification.from_pretrained(path, num_labels=2)
    assert torch.equal(clf.bert.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight)
    text = "这家酒店很好"
    assert char_tokenizer(path)(text)["input_ids"] == AutoTokenizer.from_pretrained(path)(text)["input_ids"]
    hist = pretrain.training_log(path)
    assert [h["step"] for h in hist] == [3, 6]
    # second call: loaded from the cache, not rebuilt
    logs.clear()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert pretrain.pretrained_chinese_bert("tiny", root=tmp_path, log=logs.append) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert not any("pre-training" in m for m in logs)


def test_pretrained_chinese_bert_is_deterministic(small_profile, tmp_path):
    a = pretrain.pretrained_chinese_bert("tiny", root=tmp_path / "a", log=lambda m: None)
    b = pretrain.pretrained_chinese_bert("tiny", root=tmp_path / "b", log=lambda m: None)
    ma = json.loads((a / MANIFEST).read_text())["files"]
    mb = json.loads((b / MANIFEST).read_text())["files"]
    assert ma["vocab.txt"] == mb["vocab.txt"]
    assert ma["model.safetensors"] == mb["model.safetensors"]


def test_corrupted_checkpoint_is_rebuilt(small_profile, tmp_path):
    path = pretrain.pretrained_chinese_bert("tiny", root=tmp_path, log=lambda m: None)
    weights = path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # a truncated (partial) file
    logs = []
    again = pretrain.pretrained_chinese_bert("tiny", root=tmp_path, log=logs.append)
    assert any("rebuilding" in m for m in logs)
    assert (again / "model.safetensors").read_bytes() == good


def test_changed_settings_rebuild(small_profile, tmp_path, monkeypatch):
    pretrain.pretrained_chinese_bert("tiny", root=tmp_path, log=lambda m: None)
    section = dict(config._SECTIONS["pretrain"])
    section["tiny"] = MappingProxyType({**SMALL, "steps": 3})
    monkeypatch.setitem(config._SECTIONS, "pretrain", section)
    logs = []
    path = pretrain.pretrained_chinese_bert("tiny", root=tmp_path, log=logs.append)
    assert any("other settings" in m for m in logs)
    assert [h["step"] for h in pretrain.training_log(path)] == [3]


def test_label_budget_experiment_small(small_profile, tmp_path):
    res = pretrain.label_budget_experiment("tiny", root=tmp_path, log=lambda m: None)
    assert [r["labels"] for r in res["rows"]][0] == 16
    assert res["n_eval"] == 40
    for r in res["rows"]:
        assert 0.0 <= r["pretrained"] <= 1.0 and 0.0 <= r["random"] <= 1.0
    logs = []
    assert pretrain.label_budget_experiment("tiny", root=tmp_path, log=logs.append) == res
    assert not logs  # cached: nothing trained


def test_fill_mask_needs_a_mask(small_profile, tmp_path):
    from transformers import BertForMaskedLM

    from ftbook.vocab import char_tokenizer

    path = pretrain.pretrained_chinese_bert("tiny", root=tmp_path, log=lambda m: None)
    model, tok = BertForMaskedLM.from_pretrained(path).eval(), char_tokenizer(path)
    with pytest.raises(ValueError, match="MASK"):
        pretrain.fill_mask(model, tok, "没有掩码")
    out = pretrain.fill_mask(model, tok, "酒店[MASK]好", top_k=2)
    assert len(out) == 1 and len(out[0]) == 2
    assert 0.0 < out[0][0][1] <= 1.0 and out[0][0][1] >= out[0][1][1]


def test_full_profile_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def boom(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", boom)
    with pytest.raises(ResourceUnavailableError, match="bert-base-chinese.*internet"):
        pretrain.pretrained_chinese_bert("full")


def test_training_log_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_log.json"):
        pretrain.training_log(tmp_path)


def test_pretrain_mlm_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        pretrain.pretrain_mlm(None, [[1]], tokenizer=None, steps=0, batch_size=2, lr=1e-3)
    with pytest.raises(ValueError, match="at least batch_size"):
        pretrain.pretrain_mlm(None, [[1]], tokenizer=None, steps=2, batch_size=2, lr=1e-3)


def test_label_budget_experiment_bad_workers():
    with pytest.raises(ValueError, match="workers"):
        pretrain.label_budget_experiment("tiny", workers=0)


def test_label_budget_parallel_equals_serial(small_profile, tmp_path):
    serial = pretrain.label_budget_experiment("tiny", root=tmp_path / "a", log=lambda m: None, workers=1)
    parallel = pretrain.label_budget_experiment("tiny", root=tmp_path / "b", log=lambda m: None, workers=2)
    assert serial["rows"] == parallel["rows"]  # one thread per run either way: identical numbers


def test_mlm_loss_equals_bert_for_masked_lm_loss():
    """The masked-positions-only head gives BertForMaskedLM's own loss and the same gradients."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(config).double()
    ids = torch.randint(5, 50, (3, 7))
    attn = torch.ones_like(ids)
    attn[2, 5:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 1], labels[1, 3], labels[2, 0], labels[2, 4] = 7, 9, 11, 13
    ours = pretrain.mlm_loss(model, ids, attn, labels)
    ours.backward()
    g_ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ref = model(input_ids=ids, attention_mask=attn, labels=labels).loss
    ref.backward()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(g_ours[n], p.grad, rtol=1e-9, atol=1e-12, msg=n)
    assert len(g_ours) > 10
