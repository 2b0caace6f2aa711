"""ftbook.faq: domain rule, subsets, the classifier, the FAQ recipe on ftbook.training (small)."""

import pytest
import torch

from ftbook import faq
from ftbook.data import encode
from ftbook.training import evaluate


def test_review_domain():
    assert faq.review_domain("酒店的房间很干净") == "hotel"
    assert faq.review_domain("键盘手感不错，散热一般") == "laptop"
    assert faq.review_domain("这本书的作者文笔很好") == "book"
    assert faq.review_domain("非常糟糕！") is None  # no domain
    assert faq.review_domain("在酒店房间里用电脑看书") is None  # several domains
    with pytest.raises(TypeError, match="text must be str"):
        faq.review_domain(None)


def test_reviews_by_domain_is_disjoint_and_uses_the_rule():
    doms = faq.reviews_by_domain()
    assert set(doms) == {"hotel", "laptop", "book"}
    seen = set()
    for name, splits in doms.items():
        texts = splits["train"][0]
        assert len(texts) > 1000
        assert all(faq.review_domain(t) == name for t in texts[:200])
        assert not seen & set(texts)
        seen |= set(texts)


def test_balanced_subset():
    texts = [f"t{i}" for i in range(10)]
    labels = [0, 1] * 5
    sub_t, sub_y = faq.balanced_subset(texts, labels, 6)
    assert sorted(sub_y) == [0, 0, 0, 1, 1, 1]
    assert faq.balanced_subset(texts, labels, 6) == (sub_t, sub_y)  # deterministic
    with pytest.raises(ValueError, match="only 5 texts with label 0"):
        faq.balanced_subset(texts, labels, 12)
    with pytest.raises(ValueError, match="differ in length"):
        faq.balanced_subset(texts, labels[:3], 4)
    with pytest.raises(ValueError, match="n must be >= 2"):
        faq.balanced_subset(texts, labels, 1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny pre-trained-looking checkpoint: BertForMaskedLM weights + a character vocabulary."""
    from transformers import BertConfig, BertForMaskedLM

    from ftbook.vocab import build_char_vocab, char_tokenizer, save_vocab

    folder = tmp_path_factory.mktemp("ckpt")
    save_vocab(build_char_vocab(["好评很好", "差评很差", "还行一般", "酒店很好", "书很差"]), folder / "vocab.txt")
    tok = char_tokenizer(folder / "vocab.txt")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tok(ckpt):
    return faq.load_tokenizer(ckpt)


def test_new_classifier_pretrained_or_not(ckpt):
    from safetensors.torch import load_file

    weights = load_file(str(ckpt / "model.safetensors"))
    key = "bert.embeddings.word_embeddings.weight"
    pre = faq.new_classifier(ckpt, pretrained=True)
    assert torch.equal(pre.state_dict()[key], weights[key])
    scratch = faq.new_classifier(ckpt, pretrained=False)
    assert not torch.equal(scratch.state_dict()[key], weights[key])
    assert scratch.config.hidden_size == pre.config.hidden_size == 16
    assert faq.new_classifier(ckpt, dropout=0.3).config.hidden_dropout_prob == 0.3
    with pytest.raises(ValueError, match="dropout must be in"):
        faq.new_classifier(ckpt, dropout=1.5)


def keyword_set(tok, n_per_class=24, flip=False):
    """Reviews whose label is one character ("好" positive, "差" negative) among shared noise."""
    import random

    rng = random.Random(0)
    texts, labels = [], []
    for i in range(2 * n_per_class):
        label = i % 2
        noise = [rng.choice("还行一般酒店书很") for _ in range(5)]
        noise.insert(rng.randrange(6), "好" if label else "差")
        texts.append("".join(noise))
        labels.append(1 - label if flip else label)
    return encode(texts, labels, tok, 16, num_labels=2)


def test_fine_tune_learns_a_keyword_far_above_chance(ckpt, tok):
    train_set, val = keyword_set(tok), keyword_set(tok, 12)
    model = faq.new_classifier(ckpt, pretrained=False, dropout=0.0)
    config = faq.train_config(epochs=8, lr=1e-2, batch_size=8)
    curves = faq.fine_tune(model, train_set, val, config)
    assert len(curves["train_loss"]) == len(curves["val_loss"]) == len(curves["val_acc"]) == 8
    assert curves["steps"] == 8 * 6 and curves["stopped_epoch"] is None
    assert curves["train_loss"][-1] < curves["train_loss"][0] - 0.3
    assert curves["val_acc"][-1] >= 0.9  # chance is 0.5
    # no early stopping: the model kept is the last epoch's
    assert evaluate(model, val)["loss"] == pytest.approx(curves["val_loss"][-1], rel=1e-4)


def test_train_config_is_the_faq_recipe():
    config = faq.train_config(epochs=3, lr=1e-3, batch_size=32, patience=3)
    assert (config.metric_for_best_model, config.greater_is_better, config.load_best) == ("loss", False, True)
    assert (config.schedule, config.warmup_ratio, config.max_grad_norm, config.decay_norm_and_bias) == \
        ("linear", 0.1, 1.0, False)
    assert faq.train_config(epochs=3, lr=1e-3, batch_size=32).patience is None
    assert not faq.train_config(epochs=3, lr=1e-3, batch_size=32).load_best  # keeps the last epoch


def test_early_stopping_on_validation_loss_keeps_the_best_epoch(ckpt, tok):
    """Validation labels flipped: the better the model learns, the worse its validation loss, so
    early stopping must stop long before the last epoch and restore the best epoch's weights."""
    train_set, flipped = keyword_set(tok), keyword_set(tok, 12, flip=True)
    model = faq.new_classifier(ckpt, pretrained=False, dropout=0.0)
    curves = faq.fine_tune(model, train_set, flipped, faq.train_config(epochs=20, lr=1e-2, batch_size=8, patience=2))
    assert curves["stopped_epoch"] is not None and curves["stopped_epoch"] < 19
    assert curves["stopped_epoch"] == curves["best_epoch"] + 2
    assert curves["val_loss"][curves["best_epoch"]] == min(curves["val_loss"])
    assert evaluate(model, flipped)["loss"] == pytest.approx(curves["val_loss"][curves["best_epoch"]], rel=1e-4)
    assert curves["val_loss"][-1] > curves["val_loss"][curves["best_epoch"]]


def test_domain_shift_bad_arguments():
    with pytest.raises(ValueError, match="unknown domain 'car'"):
        faq.domain_shift_experiment("car", "book")
    with pytest.raises(ValueError, match="must differ"):
        faq.domain_shift_experiment("book", "book")


def test_mean_std():
    assert faq.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample standard deviation (n - 1)
    assert faq.mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError, match="at least one value"):
        faq.mean_std([])


@pytest.mark.parametrize("seeds", [[], [True], ["0"]])
def test_experiments_reject_bad_seeds(seeds):
    with pytest.raises(ValueError, match="seeds must be a non-empty sequence of ints"):
        faq.overfitting_experiment(seeds=seeds)
    with pytest.raises(ValueError, match="seeds must be a non-empty sequence of ints"):
        faq.lr_experiment(seeds=seeds)


def test_dapt_continues_mlm_on_the_domain_texts_only(ckpt, tmp_path, monkeypatch):
    """DAPT on a toy corpus: it starts from the given checkpoint (not from random weights), trains
    on the target domain's train texts only, and its MLM on those texts improves."""
    from transformers import BertForMaskedLM

    from ftbook import config

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    monkeypatch.setenv("FTBOOK_NO_PREBUILT", "1")
    monkeypatch.setitem(config._SECTIONS["faq"], "tiny", {**config._SECTIONS["faq"]["tiny"], "dapt_steps": 40,
                        "dapt_lr": 1e-2, "dapt_warmup": 2, "dapt_batch": 4, "dapt_max_length": 16})
    monkeypatch.setattr(faq, "base_checkpoint", lambda profile=None: ckpt)
    book = ["书很差", "好评很好", "书很好", "差评很差"] * 4
    doms = {"hotel": {"train": (["酒店很好"] * 8, [1] * 8), "validation": (["酒店很好"] * 4, [1] * 4)},
            "laptop": {"train": (["还行一般"] * 8, [0] * 8), "validation": (["还行一般"] * 4, [0] * 4)},
            "book": {"train": (book, [0, 1] * 8), "validation": (book[:8], [0, 1] * 4)}}
    monkeypatch.setattr(faq, "reviews_by_domain", lambda profile=None: doms)
    out = faq.dapt_checkpoint("book", "tiny")
    record = __import__("json").loads((out / "dapt.json").read_text(encoding="utf-8"))
    assert record["domain"] == "book" and record["texts"] == len(book) and record["steps"] == 40
    assert set(record["masked_accuracy_before"]) == set(record["masked_accuracy_after"]) == set(doms)
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]
    assert record["masked_accuracy_after"]["book"] > record["masked_accuracy_before"]["book"]
    base = BertForMaskedLM.from_pretrained(str(ckpt)).state_dict()
    adapted = BertForMaskedLM.from_pretrained(str(out)).state_dict()
    assert set(base) == set(adapted)
    assert any(not torch.equal(base[k], adapted[k]) for k in base)
    with pytest.raises(ValueError, match="unknown domain 'car'"):
        faq.dapt_checkpoint("car", "tiny")
