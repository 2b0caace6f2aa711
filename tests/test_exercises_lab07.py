"""Checkers of lab 7: the right answer passes, None fails, typical mistakes fail with their message."""

import math
import statistics

import pytest
import torch

from ftbook.exercises import check, get, lab07
from ftbook.optim import param_groups


def right_attention(q, k, v, attention_mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    blocked = 1.0 - attention_mask[:, None, None, :].to(scores.dtype)
    return torch.softmax(scores + blocked * torch.finfo(scores.dtype).min, dim=-1) @ v


def attention_with(rows=False, scale="sqrt"):
    def fn(q, k, v, attention_mask):
        d = q.size(-1)
        div = {"sqrt": math.sqrt(d), "d": d, "none": 1.0}[scale]
        m = attention_mask[:, None, :, None] if rows else attention_mask[:, None, None, :]
        scores = q @ k.transpose(-2, -1) / div + (1.0 - m.to(q.dtype)) * torch.finfo(q.dtype).min
        return torch.softmax(scores, dim=-1) @ v
    return fn


def pre_ln(layer, x):
    h = x + layer.attn(layer.norm1(x))
    return h + layer.ffn(layer.norm2(h))


def clip(grads, max_norm):
    total = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    c = min(1.0, max_norm / (total + 1e-6))
    return [g * c for g in grads], total


def test_registered_with_levels():
    levels = [get(f"lab07.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab07.t{k}").prompt for k in range(1, 7))


def test_t1_masked_weights(capsys):
    q, k = torch.tensor(lab07.T1_QUERY), torch.tensor(lab07.T1_KEYS)
    s = k @ q / math.sqrt(2)
    right = torch.softmax(s.masked_fill(torch.tensor([False, False, False, True]), float("-inf")), 0)
    assert check("lab07.t1", right, quiet=True)
    assert check("lab07.t1", right.tolist(), quiet=True)
    assert not check("lab07.t1", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab07.t1", "0.14", quiet=True)
    assert not check("lab07.t1", [0.5, 0.5], quiet=True)
    with pytest.raises(AssertionError, match="填充的 key"):
        lab07.t1(torch.softmax(s, 0))
    with pytest.raises(AssertionError, match="忘了缩放"):
        lab07.t1(torch.softmax((k @ q).masked_fill(torch.tensor([0, 0, 0, 1]).bool(), -1e9), 0))
    with pytest.raises(AssertionError, match="softmax 之后"):
        lab07.t1(torch.softmax(s, 0) * torch.tensor([1.0, 1, 1, 0]))


def test_t2_no_decay_count():
    model = lab07.t2_model()
    truth = sum(p.numel() for g in param_groups(model, 0.1) if g["weight_decay"] == 0 for p in g["params"])
    assert truth == 4 * (4 * 32 + 4 * 32 + 64 + 32) + 2 * 32 + 16  # the count by hand
    assert check("lab07.t2", truth, quiet=True)
    assert not check("lab07.t2", None, quiet=True)
    assert not check("lab07.t2", "1488", quiet=True)
    with pytest.raises(AssertionError, match="最终的 LayerNorm"):
        lab07.t2(truth - 64)
    with pytest.raises(AssertionError, match="head 的偏置"):
        lab07.t2(truth - 16)
    with pytest.raises(AssertionError, match="要衰减"):
        lab07.t2(sum(p.numel() for p in model.parameters()) - truth)
    with pytest.raises(AssertionError, match="只数了 LayerNorm"):
        lab07.t2(4 * 4 * 32 + 2 * 32)


def test_t3_masked_attention():
    assert check("lab07.t3", right_attention, quiet=True)
    assert not check("lab07.t3", None, quiet=True)
    assert not check("lab07.t3", lambda q, k, v, m: None, quiet=True)
    with pytest.raises(AssertionError, match="整行"):
        lab07.t3(attention_with(rows=True, scale="d"))  # the planted bugs, both
    with pytest.raises(AssertionError, match="整行"):
        lab07.t3(attention_with(rows=True))
    with pytest.raises(AssertionError, match="除以的是 head_dim"):
        lab07.t3(attention_with(scale="d"))
    with pytest.raises(AssertionError, match="没有除以"):
        lab07.t3(attention_with(scale="none"))
    with pytest.raises(AssertionError, match="断开"):
        lab07.t3(lambda q, k, v, m: right_attention(q.detach(), k, v, m))


def test_t4_pre_ln_forward():
    assert check("lab07.t4", pre_ln, quiet=True)
    assert not check("lab07.t4", None, quiet=True)
    assert not check("lab07.t4", lambda layer, x: None, quiet=True)
    with pytest.raises(AssertionError, match="Post-LN"):
        lab07.t4(lambda layer, x: layer(x))
    with pytest.raises(AssertionError, match="残差通路也被归一化"):
        lab07.t4(lambda l, x: (lambda h: l.norm2(h) + l.ffn(l.norm2(h)))(l.norm1(x) + l.attn(l.norm1(x))))
    with pytest.raises(AssertionError, match="用反了"):
        lab07.t4(lambda l, x: (lambda h: h + l.ffn(l.norm1(h)))(x + l.attn(l.norm2(x))))
    with pytest.raises(AssertionError, match="没有加残差"):
        lab07.t4(lambda l, x: l.ffn(l.norm2(x + l.attn(l.norm1(x)))))
    with pytest.raises(AssertionError, match="求导"):
        lab07.t4(lambda l, x: pre_ln(l, x).detach())


def test_t5_clip():
    assert check("lab07.t5", clip, quiet=True)
    assert not check("lab07.t5", None, quiet=True)
    assert not check("lab07.t5", lambda g, m: None, quiet=True)

    def per_tensor(grads, max_norm):
        total = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        return [g * min(1.0, max_norm / (float(g.norm()) + 1e-6)) for g in grads], total

    def scales_up(grads, max_norm):
        total = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        return [g * max_norm / total for g in grads], total

    def after_norm(grads, max_norm):
        out, total = clip(grads, max_norm)
        return out, math.sqrt(sum(float(g.pow(2).sum()) for g in out))

    with pytest.raises(AssertionError, match="每个张量分别"):
        lab07.t5(per_tensor)
    with pytest.raises(AssertionError, match="不会放大"):
        lab07.t5(scales_up)
    with pytest.raises(AssertionError, match="裁剪之后的范数"):
        lab07.t5(after_norm)
    with pytest.raises(AssertionError, match="开方"):
        lab07.t5(lambda g, m: (clip(g, m)[0], clip(g, m)[1] ** 2))


def _answer(post, pre, more_stable=None, std=statistics.stdev):
    arm = lambda accs: {"accs": accs, "mean": statistics.mean(accs), "std": std(accs)}  # noqa: E731
    ans = {"post": arm(post), "pre": arm(pre)}
    ans["more_stable"] = more_stable or max(ans, key=lambda n: ans[n]["mean"])
    return ans


@pytest.fixture(scope="module")
def pre0():
    return lab07.stability_run("pre", 0)["accuracy"]


def test_t6_stability(pre0):
    post, pre = [0.06, 0.061, 0.062], [pre0, 0.99, 0.5]  # only pre seed 0 is rerun by the checker
    assert check("lab07.t6", _answer(post, pre), quiet=True)
    assert not check("lab07.t6", None, quiet=True)
    assert not check("lab07.t6", [post, pre], quiet=True)
    empty = {"post": {"accs": [], "mean": None, "std": None}, "pre": {"accs": [], "mean": None, "std": None},
             "more_stable": None}
    with pytest.raises(AssertionError, match="还没有填"):
        lab07.t6(empty)
    with pytest.raises(AssertionError, match="总体标准差"):
        lab07.t6(_answer(post, pre, std=statistics.pstdev))
    bad_mean = _answer(post, pre)
    bad_mean["pre"]["mean"] = 0.5
    with pytest.raises(AssertionError, match="均值"):
        lab07.t6(bad_mean)
    wrong = "post" if _answer(post, pre)["more_stable"] == "pre" else "pre"
    with pytest.raises(AssertionError, match="看你自己的数"):
        lab07.t6(_answer(post, pre, more_stable=wrong))
    with pytest.raises(AssertionError, match="重跑"):
        lab07.t6(_answer(post, [0.123456, 0.99, 0.5]))
    with pytest.raises(AssertionError, match="放反"):
        lab07.t6(_answer([pre0, 0.99, 0.5], [0.06, 0.061, 0.062]))
    with pytest.raises(AssertionError, match="顺序"):
        lab07.t6(_answer(post, [0.99, pre0, 0.5]))
    no_choice = _answer(post, pre)
    no_choice["more_stable"] = None
    with pytest.raises(AssertionError, match="more_stable"):
        lab07.t6(no_choice)
