"""ftbook.lr_finder: the range test (twin of a plain torch loop), its divergence, the suggestion rule."""

import math

import pytest
import torch

from ftbook.data import Encoded
from ftbook.lr_finder import lr_range_test, suggest_lr


def keyword_data(n=64, length=8, seed=0):
    """Sequences of random tokens; the label says whether token 3 occurs (all the same length, so
    the reference loop below needs no padding)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 30, (n, length), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids[labels == 1, torch.randint(1, length, (int(labels.sum()),), generator=g)] = 3
    ids[:, 0] = 2  # a [CLS]-like first token
    return Encoded(ids.tolist(), labels.tolist(), pad_token_id=0)


def tiny_bert(seed=0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def reference_range_test(model, data, start_lr, end_lr, num_steps, weight_decay, max_grad_norm):
    """The same test written with torch alone: full batches, AdamW with BERT's usual groups (by
    parameter name), ``ExponentialLR``, mean cross-entropy, ``clip_grad_norm_``."""
    import torch.nn.functional as F

    ids = torch.tensor(data.input_ids)
    labels = torch.tensor(data.labels)
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not ("bias" in n or "LayerNorm" in n)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if "bias" in n or "LayerNorm" in n], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=start_lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(end_lr / start_lr) ** (1 / (num_steps - 1)))
    lrs, losses = [], []
    model.train()
    for _ in range(num_steps):
        lrs.append(sched.get_last_lr()[0])
        loss = F.cross_entropy(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return lrs, losses


def test_range_test_matches_a_plain_torch_loop():
    data = keyword_data()
    # a large weight decay, so that decaying LayerNorm or biases would show (by ~6e-3); clipping on
    ours = lr_range_test(tiny_bert(), data, batch_size=len(data), start_lr=1e-3, end_lr=5e-2, num_steps=12,
                         weight_decay=0.5, max_grad_norm=1.0, diverge_factor=100.0)
    lrs, losses = reference_range_test(tiny_bert(), data, 1e-3, 5e-2, 12, weight_decay=0.5, max_grad_norm=1.0)
    assert ours.diverged_at is None and len(ours.lrs) == 12
    assert ours.lrs == pytest.approx(lrs, rel=1e-9)
    assert ours.lrs[0] == pytest.approx(1e-3) and ours.lrs[-1] == pytest.approx(5e-2)
    assert ours.losses == pytest.approx(losses, abs=1e-4)  # round-off grows with the lr; LN decay would show by ~6e-3
    assert min(losses) < losses[0] - 0.05  # the reference did learn: the comparison is not of constants


def test_range_test_restores_weights_and_finds_divergence():
    data = keyword_data()
    model = tiny_bert()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = lr_range_test(model, data, batch_size=16, start_lr=1e-5, end_lr=30.0, num_steps=80)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(b > a for a, b in zip(res.lrs, res.lrs[1:]))  # exponential growth
    ratios = [b / a for a, b in zip(res.lrs, res.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert len(res.lrs) > 64 // 16  # more steps than one epoch: the batches go round again
    assert res.diverged_at is not None and res.diverged_at > 1e-2  # AdamW at lr ~1 blows up
    assert len(res.lrs) < 80 and res.smoothed[-1] > 4 * min(res.smoothed)
    assert min(res.smoothed) < res.smoothed[0] - 0.05  # and it learns before that
    lr = suggest_lr(res.lrs, res.smoothed)
    assert 1e-4 < lr < res.diverged_at


def test_suggest_lr_on_a_known_curve():
    lrs = [10 ** (-6 + 0.25 * i) for i in range(25)]  # 1e-6 .. 1
    # flat, steepest fall around 1e-3, minimum at 1e-2, explosion
    losses = [1.0 - 0.9 / (1 + math.exp(-(math.log10(lr) + 3) * 3)) for lr in lrs]
    losses = [l if lr <= 1e-2 else l + 50 * (lr - 1e-2) for l, lr in zip(losses, lrs)]
    lr = suggest_lr(lrs, losses)
    assert 3e-4 <= lr <= 3e-3


def test_bad_inputs():
    model, data = tiny_bert(), keyword_data(8)
    with pytest.raises(ValueError, match="0 < start_lr < end_lr"):
        lr_range_test(model, data, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_steps must be an int >= 2"):
        lr_range_test(model, data, num_steps=1)
    with pytest.raises(ValueError, match="non-empty ftbook.data.Encoded"):
        lr_range_test(model, [([1, 2], 0)], num_steps=5)
    with pytest.raises(TypeError, match="scalar tensor"):
        lr_range_test(model, data, loss_fn=lambda m, b: 1.0, num_steps=5)
    with pytest.raises(ValueError, match="smooth"):
        lr_range_test(model, data, smooth=0.0)
    with pytest.raises(ValueError, match="differ in length"):
        suggest_lr([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="at least"):
        suggest_lr([1e-3, 1e-2], [1.0, 0.5])
    with pytest.raises(ValueError, match="> 0"):
        suggest_lr([0.0] * 20, [1.0] * 20)
