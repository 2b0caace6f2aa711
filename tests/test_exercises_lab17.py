"""Checkers of lab 17: the right answer passes, None fails, typical mistakes fail with their message."""

import math

import numpy as np
import pytest
import torch

from ftbook import interpret, lr_finder
from ftbook.exercises import check, get, lab17


def test_registered_with_levels():
    levels = [get(f"lab17.t{k}").level for k in range(1, 6)]
    assert levels == ["easy", "easy", "medium", "medium", "hard"]
    assert all(get(f"lab17.t{k}").prompt for k in range(1, 6))


def ema(losses, beta, corrected=True):
    avg, out = 0.0, []
    for t, x in enumerate(losses):
        avg = beta * x + (1 - beta) * avg
        out.append(avg / (1 - (1 - beta) ** (t + 1)) if corrected else avg)
    return out


def test_t1_smoothing():
    assert check("lab17.t1", ema, quiet=True)
    assert not check("lab17.t1", None, quiet=True)
    assert not check("lab17.t1", lambda l, b: l[:3], quiet=True)
    with pytest.raises(AssertionError, match="偏差修正"):
        lab17.t1(lambda l, b: ema(l, b, corrected=False))
    with pytest.raises(AssertionError, match="用反了"):
        lab17.t1(lambda l, b: ema(l, 1 - b))


def test_t1_matches_the_range_test_formula():
    # the range test rounds its smoothed values to 6 digits: the formula is the same
    losses = [0.9, 0.7, 0.8, 0.6]
    assert ema(losses, 0.05)[0] == pytest.approx(0.9)


def test_t2_weight_decay():
    truth = lab17.t2_truth()
    assert 0 < truth < 1 - (1 - 1e-3 * 0.01) ** 200
    assert check("lab17.t2", truth, quiet=True)
    assert not check("lab17.t2", None, quiet=True)
    assert not check("lab17.t2", "0.001", quiet=True)
    with pytest.raises(AssertionError, match="恒定学习率"):
        lab17.t2(1 - (1 - 1e-3 * 0.01) ** 200)
    with pytest.raises(AssertionError, match="1 − λ"):
        lab17.t2(1 - (1 - 0.01) ** 200)
    with pytest.raises(AssertionError, match="保留下来"):
        lab17.t2(1 - truth)
    with pytest.raises(AssertionError, match="百分数"):
        lab17.t2(100 * truth)


def test_t3_suggest():
    assert check("lab17.t3", lr_finder.suggest_lr, quiet=True)
    assert not check("lab17.t3", None, quiet=True)
    assert not check("lab17.t3", lambda lrs, losses: "1e-3", quiet=True)

    def lowest(lrs, losses):
        y = np.asarray(losses[5:-3])
        return lrs[5 + int(np.argmin(y))]

    def whole(lrs, losses):
        x, y = np.log10(lrs)[5:-3], np.asarray(losses[5:-3])
        return float(10 ** x[int(np.argmin(np.gradient(y, x)))])

    with pytest.raises(AssertionError, match="最低点的学习率"):
        lab17.t3(lowest)
    with pytest.raises(AssertionError, match="整条曲线"):
        lab17.t3(whole)


def gxi(model, tok, text, target, sign=1.0, absolute=False):
    scores = interpret.token_saliency(model, tok, text, target=target).scores
    return [abs(s) if absolute else sign * s for s in scores]


def test_t4_grad_x_input():
    assert check("lab17.t4", gxi, quiet=True)
    assert not check("lab17.t4", None, quiet=True)
    assert not check("lab17.t4", lambda *a: [0.0], quiet=True)
    with pytest.raises(AssertionError, match="符号反了"):
        lab17.t4(lambda *a: gxi(*a, sign=-1.0))
    with pytest.raises(AssertionError, match="绝对值"):
        lab17.t4(lambda *a: gxi(*a, absolute=True))

    def grad_norm(model, tok, text, target):
        enc = tok(text, return_tensors="pt")
        emb = model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
        model(inputs_embeds=emb, attention_mask=enc["attention_mask"],
              token_type_ids=enc["token_type_ids"]).logits[0, target].backward()
        return emb.grad.norm(dim=-1)[0].tolist()

    with pytest.raises(AssertionError, match="范数"):
        lab17.t4(grad_norm)


def drop(model, tok, text, k, lowest=False, skip_special=True, give_p1=False):
    sal = interpret.token_saliency(model, tok, text)
    enc = tok(text, truncation=True, max_length=128, return_tensors="pt")
    ids = enc["input_ids"].clone()
    special = set(tok.all_special_ids) if skip_special else set()
    cand = [i for i, t in enumerate(ids[0].tolist()) if t not in special]
    ranked = sorted(cand, key=lambda i: sal.scores[i] if lowest else -sal.scores[i])
    ids[0, ranked[:k]] = tok.mask_token_id
    with torch.no_grad():
        p1 = torch.softmax(model(input_ids=ids, attention_mask=enc["attention_mask"],
                                 token_type_ids=enc["token_type_ids"]).logits, -1)[0, sal.target].item()
    return p1 if give_p1 else sal.probability - p1


def test_t5_deletion():
    assert check("lab17.t5", drop, quiet=True)
    assert not check("lab17.t5", None, quiet=True)
    assert not check("lab17.t5", lambda *a: "0.1", quiet=True)
    with pytest.raises(AssertionError, match="删除之后的概率"):
        lab17.t5(lambda *a: drop(*a, give_p1=True))
    with pytest.raises(AssertionError, match="下降量应为"):
        lab17.t5(lambda *a: drop(*a, lowest=True))
    with pytest.raises(AssertionError, match="符号反了"):
        lab17.t5(lambda *a: -drop(*a))


def test_test_reviews_are_long_enough():
    reviews = lab17.test_reviews(20)
    assert len(reviews) == 20 and all(len(t) >= 8 for t in reviews)
    assert not math.isnan(lab17.t2_truth())
