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


class SpecialTok:  # what mlm_dataset reads from a tokenizer
    all_special_ids = [0, 1, 2, 3, MASK]
    pad_token_id = 0


def test_mlm_dataset_labels_every_non_special_token_and_pads_with_ignore():
    data = pretrain.mlm_dataset([[2, 7, 9, 3], [2, 8, 3]], SpecialTok())
    assert data.labels == [[-100, 7, 9, -100], [-100, 8, -100]]
    batch = data.batch([0, 1])  # ftbook.data.DynamicPaddingCollator
    assert batch["input_ids"].tolist() == [[2, 7, 9, 3], [2, 8, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 7, 9, -100], [-100, 8, -100, -100]]
    with pytest.raises(ValueError, match="max_length"):
        pretrain.encode_corpus(None, ["x"], 2)


def test_masked_lm_loss_masks_only_candidates_and_is_reproducible():
    data = pretrain.mlm_dataset([[2, *range(10, 40), 3], [2, *range(50, 60), 3]], SpecialTok())
    batch = data.batch([0, 1])
    a = pretrain.MaskedLMLoss(mask_token_id=MASK, vocab_size=VOCAB, mlm_probability=0.5, seed=3)
    b = pretrain.MaskedLMLoss(mask_token_id=MASK, vocab_size=VOCAB, mlm_probability=0.5, seed=3)
    (ia, la), (ib, lb) = a.mask(batch), b.mask(batch)
    assert torch.equal(ia, ib) and torch.equal(la, lb)  # same seed, same masks
    assert not torch.equal(a.mask(batch)[1], la)  # the next batch gets new masks (dynamic masking)
    candidates = batch["labels"] != -100
    assert (la[~candidates] == -100).all() and (la != -100).sum() > 5
    assert torch.equal(ia[~candidates], batch["input_ids"][~candidates])  # [CLS]/[SEP]/[PAD] untouched


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
    budget_data = pretrain._budget_data  # the label budgets: 200 labelled texts rather than 13,810

    def small_budget_data(prof, sizes):
        train_texts, train_labels, eval_texts, eval_labels = budget_data(prof, sizes)
        return train_texts[:200], train_labels[:200], eval_texts, eval_labels

    monkeypatch.setattr(pretrain, "_budget_data", small_budget_data)
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


def test_label_budget_experiment_small(small_profile, tmp_path, monkeypatch):
    res = pretrain.label_budget_experiment("tiny", root=tmp_path, log=lambda m: None)
    assert [r["labels"] for r in res["rows"]] == [16, 200]
    assert res["n_eval"] == 40 and res["steps"] == 3
    for r in res["rows"]:
        assert 0.0 <= r["pretrained"] <= 1.0 and 0.0 <= r["random"] <= 1.0
    logs = []
    assert pretrain.label_budget_experiment("tiny", root=tmp_path, log=logs.append) == res
    assert not logs  # cached: nothing trained
    small = pretrain._budget_data  # one flipped label is other data: the cache is rebuilt
    flipped = lambda prof, sizes: (lambda t, y, et, ey: (t, [1 - y[0], *y[1:]], et, ey))(*small(prof, sizes))  # noqa: E731
    monkeypatch.setattr(pretrain, "_budget_data", flipped)
    pretrain.label_budget_experiment("tiny", root=tmp_path, log=logs.append)
    assert any("other settings" in m for m in logs)


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
    summed = pretrain.mlm_loss(model, ids, attn, labels, reduction="sum")
    torch.testing.assert_close(summed, ref * 4, rtol=1e-12, atol=0)  # 4 targets: what train() sums
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(g_ours[n], p.grad, rtol=1e-9, atol=1e-12, msg=n)
    assert len(g_ours) > 10


# ---------------------------------------------------------------------------------------------
# pretrain_mlm runs ftbook.training.train: twin of a plain torch + transformers loop
# ---------------------------------------------------------------------------------------------
def _tiny_mlm(tmp_path, n_texts=24):
    from transformers import BertConfig, BertForMaskedLM

    texts = pretrain.pretraining_corpus("tiny")[:n_texts]
    tok = pretrain.build_tokenizer(texts, tmp_path, min_freq=1, max_length=24)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return BertForMaskedLM(config), tok, pretrain.encode_corpus(tok, texts, 24)


def _reference_mlm(model, tok, encoded, *, steps, batch_size, lr, warmup_steps, weight_decay, mlm_probability):
    """BERT's recipe written with torch and transformers only: no decay for biases and
    LayerNorm weights (by name, as transformers' examples do), transformers' linear schedule,
    clipping at 1, BertForMaskedLM's own loss over every position. Same batches and masks as
    ftbook (the order of ftbook.training.epoch_batches, masks from MaskedLMLoss's generator)."""
    from transformers import get_linear_schedule_with_warmup

    from ftbook.training import TrainConfig, epoch_batches

    names = dict(model.named_parameters())
    no_decay = [n for n in names if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": [p for n, p in names.items() if n not in no_decay], "weight_decay": weight_decay},
                             {"params": [names[n] for n in no_decay], "weight_decay": 0.0}], lr=lr)
    sched = get_linear_schedule_with_warmup(opt, warmup_steps, steps)
    data = pretrain.mlm_dataset(encoded, tok)
    order = epoch_batches(data.lengths, 0, TrainConfig(batch_size=batch_size, seed=0))
    masker = pretrain.MaskedLMLoss(mask_token_id=tok.mask_token_id, vocab_size=len(tok),
                                   mlm_probability=mlm_probability, seed=0)
    losses = []
    for step in range(steps):
        batch = data.batch(order[step])
        inputs, labels = masker.mask(batch)
        loss = model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_pretrain_mlm_equals_a_torch_and_transformers_loop(tmp_path):
    import copy

    model, tok, encoded = _tiny_mlm(tmp_path)
    twin = copy.deepcopy(model)
    settings = dict(steps=3, batch_size=8, lr=1e-2, warmup_steps=1, weight_decay=0.5, mlm_probability=0.3)
    history = pretrain.pretrain_mlm(model, encoded, tokenizer=tok, log_every=1, **settings)
    losses = _reference_mlm(twin, tok, encoded, **settings)
    assert [h["step"] for h in history] == [1, 2, 3]
    assert [h["loss"] for h in history] == pytest.approx(losses, abs=1e-4)
    ln = "bert.embeddings.LayerNorm.weight"
    assert not torch.equal(dict(model.named_parameters())[ln], torch.ones(16))  # it was trained
    for (name, ours), (_, theirs) in zip(model.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)


def test_pretrain_mlm_learns(tmp_path):
    """80 steps on a small corpus: the MLM loss ends more than a nat below uniform guessing."""
    import math

    model, tok, encoded = _tiny_mlm(tmp_path, n_texts=64)
    history = pretrain.pretrain_mlm(model, encoded, tokenizer=tok, steps=80, batch_size=16, lr=1e-2,
                                    warmup_steps=4, mlm_probability=0.3, log_every=20)
    assert [h["step"] for h in history] == [20, 40, 60, 80]
    assert history[-1]["loss"] < math.log(len(tok)) - 1.0, history
    assert history[-1]["loss"] < history[0]["loss"] - 0.5, history


def _synthetic_reviews(n, seed):
    """Texts whose label is whether '好' or '差' is in them (among filler characters)."""
    import random

    rng = random.Random(seed)
    filler = "这家店的房间服务一般我们住了两天早餐还可以"
    texts, labels = [], []
    for _ in range(n):
        y = rng.randrange(2)
        chars = [rng.choice(filler) for _ in range(rng.randrange(6, 14))]
        chars.insert(rng.randrange(len(chars)), "好" if y else "差")
        texts.append("".join(chars))
        labels.append(y)
    return texts, labels


def test_finetune_accuracy_trains_exactly_steps_and_beats_chance(tmp_path, monkeypatch):
    from transformers import BertConfig

    from ftbook import training

    texts, labels = _synthetic_reviews(120, seed=0)
    eval_texts, eval_labels = _synthetic_reviews(200, seed=1)
    tok = pretrain.build_tokenizer(texts, tmp_path, min_freq=1, max_length=32)
    BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(tmp_path)
    runs = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda *a, **k: runs.append(real_train(*a, **k)) or runs[-1])
    acc = pretrain.finetune_accuracy(tmp_path, texts, labels, eval_texts, eval_labels, pretrained=False,
                                     steps=60, lr=2e-3, batch_size=16, max_length=32)
    assert runs[0].steps == 60 and runs[0].samples > 120  # 8 steps an epoch: repeated for 60 steps
    majority = max(sum(eval_labels), len(eval_labels) - sum(eval_labels)) / len(eval_labels)
    assert acc > majority + 0.2, (acc, majority)


def test_fingerprints_name_the_code_that_builds_them():
    sizes = config.get_profile("tiny").sizes("pretrain")
    fp = pretrain._fingerprint(sizes, ["一", "二"])
    assert {"ftbook.pretrain", "ftbook.training", "ftbook.optim", "ftbook.data", "ftbook.vocab"} <= fp["code"].keys()
    assert fp["steps"] == sizes.steps and fp["n_texts"] == 2
    assert pretrain._fingerprint(sizes, ["一", "三"])["corpus"] != fp["corpus"]
