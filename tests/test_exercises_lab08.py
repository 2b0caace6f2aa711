"""Checkers of lab 8: the right answer passes, None fails, typical mistakes fail with their message."""

import math

import pytest
import torch
import torch.nn.functional as F

from ftbook.exercises import check, get, lab08


def embed(emb, ids, types):
    return emb.norm(emb.word(ids) + emb.position(torch.arange(ids.size(1)))[None] + emb.token_type(types))


def copy_layer(ours, hf_layer, swap_norms=False, skip=None, transpose_q=False):
    a, o = hf_layer.attention, hf_layer.output
    n1, n2 = (o.LayerNorm, a.output.LayerNorm) if swap_norms else (a.output.LayerNorm, o.LayerNorm)
    pairs = {"attn.query": a.self.query, "attn.key": a.self.key, "attn.value": a.self.value, "attn.out": a.output.dense,
             "norm1": n1, "ffn.up": hf_layer.intermediate.dense, "ffn.down": o.dense, "norm2": n2}
    with torch.no_grad():
        for name, mod in pairs.items():
            if name == skip:
                continue
            dst = ours.get_submodule(name)
            dst.weight.copy_(mod.weight.T if transpose_q and name == "attn.query" else mod.weight)
            dst.bias.copy_(mod.bias)


def test_registered_with_levels():
    levels = [get(f"lab08.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab08.t{k}").prompt for k in range(1, 7))


def test_t1_memory(capsys):
    b, s, h = 32, 512, 12
    assert check("lab08.t1", b * h * s * s * 4 / 2**20, quiet=True)
    assert check("lab08.t1", 384, quiet=True)
    assert not check("lab08.t1", None)
    assert "还没有作答" in capsys.readouterr().out
    assert not check("lab08.t1", "384", quiet=True)
    with pytest.raises(AssertionError, match="MB"):
        lab08.t1(b * h * s * s * 4 / 1e6)
    with pytest.raises(AssertionError, match="头数"):
        lab08.t1(b * s * s * 4 / 2**20)
    with pytest.raises(AssertionError, match="4 个字节"):
        lab08.t1(b * h * s * s / 2**20)


def test_t2_gelu():
    assert check("lab08.t2", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))), quiet=True)
    assert not check("lab08.t2", None, quiet=True)
    assert not check("lab08.t2", lambda x: None, quiet=True)
    with pytest.raises(AssertionError, match="tanh"):
        lab08.t2(lambda x: F.gelu(x, approximate="tanh"))
    with pytest.raises(AssertionError, match="sigmoid"):
        lab08.t2(lambda x: x * torch.sigmoid(1.702 * x))
    with pytest.raises(AssertionError, match="x/√2"):
        lab08.t2(lambda x: 0.5 * x * (1 + torch.erf(x)))
    with pytest.raises(AssertionError, match="求导"):
        lab08.t2(lambda x: F.gelu(x).detach())


def test_t3_embeddings():
    assert check("lab08.t3", embed, quiet=True)
    assert not check("lab08.t3", None, quiet=True)
    assert not check("lab08.t3", lambda e, i, t: None, quiet=True)
    with pytest.raises(AssertionError, match="位置嵌入"):
        lab08.t3(lambda e, i, t: e.norm(e.word(i) + e.token_type(t)))
    with pytest.raises(AssertionError, match="句段"):
        lab08.t3(lambda e, i, t: e.norm(e.word(i) + e.position(torch.arange(i.size(1)))[None]))
    with pytest.raises(AssertionError, match="LayerNorm"):
        lab08.t3(lambda e, i, t: e.word(i) + e.position(torch.arange(i.size(1)))[None] + e.token_type(t))
    with pytest.raises(AssertionError, match="从 0 开始"):
        lab08.t3(lambda e, i, t: e.norm(e.word(i) + e.position(torch.arange(1, i.size(1) + 1))[None] + e.token_type(t)))
    with pytest.raises(AssertionError, match="padding_idx"):
        lab08.t3(lambda e, i, t: e.norm(F.embedding(i, e.word.weight) + e.position(torch.arange(i.size(1)))[None]
                                         + e.token_type(t)))


def test_t4_copy_layer():
    assert check("lab08.t4", copy_layer, quiet=True)
    assert not check("lab08.t4", None, quiet=True)
    with pytest.raises(AssertionError, match="没有被拷贝"):
        lab08.t4(lambda ours, hf: None)
    with pytest.raises(AssertionError, match="norm1.weight 拷成了 output.LayerNorm.weight"):
        lab08.t4(lambda ours, hf: copy_layer(ours, hf, swap_norms=True))
    with pytest.raises(AssertionError, match="ffn.down.weight 没有被拷贝"):
        lab08.t4(lambda ours, hf: copy_layer(ours, hf, skip="ffn.down"))
    with pytest.raises(AssertionError, match="转置"):
        lab08.t4(lambda ours, hf: copy_layer(ours, hf, transpose_q=True))


def test_t5_next_token_head():
    probs = lab08.t5_attentions()
    nxt = probs.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)
    prv = probs.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)
    layer, head = divmod(int(nxt.argmax()), 12)
    assert check("lab08.t5", (layer, head, nxt[layer, head].item()), quiet=True)
    assert not check("lab08.t5", None, quiet=True)
    assert not check("lab08.t5", (None, None, None), quiet=True)
    assert not check("lab08.t5", "1, 8", quiet=True)
    p_layer, p_head = divmod(int(prv.argmax()), 12)
    assert (p_layer, p_head) != (layer, head)
    with pytest.raises(AssertionError, match="前一个词元"):
        lab08.t5((p_layer, p_head, prv[p_layer, p_head].item()))
    with pytest.raises(AssertionError, match="从 0 开始"):
        lab08.t5((layer + 1, head + 1, nxt[layer, head].item()))
    with pytest.raises(AssertionError, match="平均权重不对"):
        lab08.t5((layer, head, probs[layer, head].diagonal(1).sum().item()))


def test_t6_encoder_forward():
    variant = lab08._encoder_variant
    assert check("lab08.t6", lambda e, i, m, t: variant(e, i, m, t), quiet=True)
    assert not check("lab08.t6", None, quiet=True)
    assert not check("lab08.t6", lambda e, i, m, t: None, quiet=True)
    with pytest.raises(AssertionError, match="不要调用"):
        lab08.t6(lambda e, i, m, t: e(i, m, t))
    with pytest.raises(AssertionError, match="注意力掩码"):
        lab08.t6(lambda e, i, m, t: variant(e, i, m, t, use_mask=False))
    with pytest.raises(AssertionError, match="√head_dim"):
        lab08.t6(lambda e, i, m, t: variant(e, i, m, t, scale=False))
    with pytest.raises(AssertionError, match="Pre-LN"):
        lab08.t6(lambda e, i, m, t: variant(e, i, m, t, post=False))
    assert check("lab08.t6", lambda e, i, m, t: variant(e, i, m, t), quiet=True)  # the patches were undone
