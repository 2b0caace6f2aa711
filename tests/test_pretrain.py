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


# ---------------------------------------------------------------------------------------------
# The long run (train_chinese_bert), with a very small size so the test trains in seconds
# ---------------------------------------------------------------------------------------------
SMALL = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
    "max_length": 32, "min_freq": 2, "batch_size": 8, "steps": 6, "lr": 1e-3, "warmup_steps": 2,
    "weight_decay": 0.01, "mlm_probability": 0.15, "log_every": 3, "seed": 0,
}


@pytest.fixture
def small_profile(monkeypatch):
    from ftbook import corpus
    from ftbook.resources import chinese_reviews

    section = dict(config._SECTIONS["pretrain"])
    section["tiny"] = MappingProxyType({**config._SECTIONS["pretrain"]["tiny"], **SMALL})
    monkeypatch.setitem(config._SECTIONS, "pretrain", section)
    texts = list(chinese_reviews("tiny")["train"]["text"][:200])
    monkeypatch.setattr(corpus, "chinese_corpus", lambda profile=None: list(texts))
    monkeypatch.setattr(pretrain, "held_out_texts", lambda profile=None: list(texts[:20]))
    return texts


def test_train_chinese_bert_writes_a_loadable_model_and_its_log(small_profile, tmp_path):
    from transformers import AutoTokenizer, BertForMaskedLM, BertForSequenceClassification

    from ftbook.vocab import build_char_vocab

    out = pretrain.train_chinese_bert(tmp_path / "run", command="test", progress=False, save_every=3,
                                      eval_every=3)
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab == build_char_vocab(small_profile, min_freq=2)  # deterministic vocabulary
    mlm = BertForMaskedLM.from_pretrained(out)
    assert mlm.config.hidden_size == 32 and mlm.config.vocab_size == len(vocab)
    clf = BertForSequenceClassification.from_pretrained(out, num_labels=2)
    assert torch.equal(clf.bert.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight)
    text = "这家酒店很好"
    assert AutoTokenizer.from_pretrained(out)(text)["input_ids"][1:-1] == [vocab.index(c) for c in text]
    record = json.loads((out / "train_log.json").read_text(encoding="utf-8"))
    assert [h["step"] for h in record["history"]] == [3, 6] == [e["step"] for e in record["evals"]]
    assert record["command"] == "test" and record["sizes"]["steps"] == 6
    assert record["corpus"]["texts"] == 200 and record["corpus"]["characters"] == sum(map(len, small_profile))
    assert record["unigram_entropy"] > 3 and record["wall_seconds"] >= 0  # rounded to 0.1 s: a tiny run may print 0.0
    assert pretrain.training_log(out) == record["history"]


def test_train_chinese_bert_resumes_to_the_same_weights(small_profile, tmp_path):
    from safetensors.torch import load_file

    whole = pretrain.train_chinese_bert(tmp_path / "a", progress=False, save_every=3)
    part = pretrain.train_chinese_bert(tmp_path / "b", progress=False, save_every=3, stop_after_steps=3)
    assert not (part / "model.safetensors").exists()  # interrupted: only run/last was written
    pretrain.train_chinese_bert(tmp_path / "b", progress=False, save_every=3, resume=True)
    wa, wb = load_file(str(whole / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)


def test_train_chinese_bert_rejects_unknown_settings(small_profile, tmp_path):
    with pytest.raises(ValueError, match="unknown pre-training settings.*hidden"):
        pretrain.train_chinese_bert(tmp_path, hidden=64)


def test_ship_and_check(small_profile, tmp_path):
    from ftbook.checkpoints import CorruptCheckpointError

    run = pretrain.train_chinese_bert(tmp_path / "run", progress=False)
    dest = pretrain.ship(run, tmp_path / "shipped")
    assert sorted(p.name for p in dest.iterdir()) == sorted([*pretrain.SHIPPED_FILES, MANIFEST])
    assert pretrain.pretrained_chinese_bert("tiny", folder=dest) == dest
    (dest / "vocab.txt").rename(tmp_path / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="vocab.txt is missing.*python -m ftbook pretrain"):
        pretrain.pretrained_chinese_bert("tiny", folder=dest)
    (tmp_path / "vocab.txt").rename(dest / "vocab.txt")
    weights = dest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated file
    with pytest.raises(CorruptCheckpointError, match="model.safetensors.*python -m ftbook pretrain"):
        pretrain.pretrained_chinese_bert("tiny", folder=dest)
    with pytest.raises(FileNotFoundError, match="is the run finished"):
        pretrain.ship(tmp_path, tmp_path / "other")


def test_the_shipped_model_is_intact_loads_and_has_learned_chinese():
    """The model the repository ships: verified, loaded in seconds, and it fills in ordinary
    cloze sentences of both domains (reviews, news) that pre-training never saw."""
    import time

    from transformers import AutoTokenizer, BertForMaskedLM

    start = time.perf_counter()
    path = pretrain.pretrained_chinese_bert("tiny")
    model, tok = BertForMaskedLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    assert time.perf_counter() - start < 60  # no training happens here
    for text, answer in (("交通很方[MASK]", "便"), ("坚持改革开[MASK]", "放")):
        assert pretrain.fill_mask(model, tok, text, top_k=1)[0][0][0] == answer, text
    record = json.loads((path / "train_log.json").read_text(encoding="utf-8"))
    assert record["sizes"]["steps"] == record["history"][-1]["step"]


def test_unigram_entropy_and_mlm_scores_against_bert_for_masked_lm():
    import math

    from transformers import BertConfig, BertForMaskedLM

    assert pretrain.unigram_entropy([[2, 7, 7, 3], [2, 8, 8, 3]], special_ids=[2, 3]) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="no tokens"):
        pretrain.unigram_entropy([[2, 3]], special_ids=[2, 3])
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32)).eval()
    data = pretrain.mlm_dataset([[2, *range(10, 40), 3], [2, *range(50, 70), 3]], SpecialTok())
    scores = pretrain.mlm_scores(model, data, mask_token_id=MASK, vocab_size=VOCAB, seed=1, mlm_probability=0.5)
    masker = pretrain.MaskedLMLoss(mask_token_id=MASK, vocab_size=VOCAB, mlm_probability=0.5, seed=1)
    batch = data.batch([0, 1])
    inputs, labels = masker.mask(batch)  # the same positions mlm_scores masked
    with torch.no_grad():
        out = model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels)
    assert scores["n"] == int((labels != -100).sum()) > 10
    assert scores["masked_loss"] == pytest.approx(float(out.loss), rel=1e-5)
    right = (out.logits.argmax(-1) == labels)[labels != -100].float().mean()
    assert scores["masked_accuracy"] == pytest.approx(float(right))


def test_fill_mask_needs_a_mask(small_profile, tmp_path):
    from transformers import BertForMaskedLM

    from ftbook.vocab import char_tokenizer

    path = pretrain.train_chinese_bert(tmp_path, progress=False)
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

    from ftbook.resources import chinese_reviews

    texts = list(chinese_reviews("tiny")["train"]["text"][:n_texts])
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
