"""ftbook.faq: domain rule, subsets, early stopping, masking, the tiny training loops (small)."""

import math

import pytest
import torch

from ftbook import faq



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


def test_early_stopping_keeps_the_best_epoch():
    stop = faq.EarlyStopping(patience=2)
    decisions = [stop.step(x) for x in [1.0, 0.8, 0.9, 0.85]]
    assert decisions == [False, False, False, True] and stop.best_epoch == 1
    assert faq.best_epoch([0.9, 0.6, 0.7, 0.8, 0.5], patience=2) == 1  # 0.5 is never reached
    assert faq.best_epoch([0.9, 0.6, 0.7, 0.8, 0.5], patience=3) == 4
    assert faq.best_epoch([0.5, 0.5, 0.5], patience=1) == 0
    with pytest.raises(ValueError, match="patience must be an int >= 1"):
        faq.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        faq.EarlyStopping(min_delta=-1)
    with pytest.raises(ValueError, match="real number"):
        faq.EarlyStopping().step(float("nan"))
    with pytest.raises(ValueError, match="empty"):
        faq.best_epoch([], 2)


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


def test_encode_rejects_mismatched_labels(tok):
    with pytest.raises(ValueError, match="differ in length"):
        faq.encode(tok, ["好"], [0, 1], 8)


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


def test_tiny_classifier_learns_a_trivial_rule(ckpt, tok):
    texts = ["好评很好", "差评很差"] * 16
    labels = [1, 0] * 16
    data = faq.encode(tok, texts, labels, 16)
    model = faq.new_classifier(ckpt, pretrained=False, dropout=0.0)
    hist = faq.train_classifier(model, data, data, epochs=8, lr=3e-3, batch_size=8)
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.val_acc[-1] == 1.0
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        faq.train_classifier(model, data, data, epochs=0, lr=1e-3, batch_size=8)
    with pytest.raises(ValueError, match="lr must be > 0"):
        faq.train_classifier(model, data, data, epochs=1, lr=0, batch_size=8)


def test_early_stopping_restores_the_best_weights(ckpt, tok):
    data = faq.encode(tok, ["好评很好", "差评很差"] * 8, [1, 0] * 8, 16)
    flipped = faq.encode(tok, ["好评很好", "差评很差"] * 8, [0, 1] * 8, 16)
    model = faq.new_classifier(ckpt, pretrained=False, dropout=0.0)
    stopper = faq.EarlyStopping(patience=2)
    hist = faq.train_classifier(model, data, flipped, epochs=20, lr=3e-3, batch_size=8, early_stopping=stopper)
    assert hist.stopped_epoch is not None and hist.stopped_epoch < 19
    assert hist.best_epoch == stopper.best_epoch
    loss, _ = faq.evaluate(model, flipped)
    assert math.isclose(loss, hist.val_loss[hist.best_epoch], rel_tol=1e-4)


def test_domain_shift_bad_arguments():
    with pytest.raises(ValueError, match="unknown domain 'car'"):
        faq.domain_shift_experiment("car", "book")
    with pytest.raises(ValueError, match="must differ"):
        faq.domain_shift_experiment("book", "book")
