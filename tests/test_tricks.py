"""ftbook.tricks: the small Post-/Pre-LN encoder, its helpers and their errors."""

import math

import pytest
import torch

from ftbook.norms import LayerNorm
from ftbook.tricks import (TinyEncoder, TrickConfig, cached_runs, layer_grad_norms, param_groups,
                           reversal_batch, softmax_saturation, train, warmup_lambda)

SMALL = dict(vocab=8, seq_len=6, d_model=16, n_heads=2, n_layers=3, d_ff=32)


@pytest.mark.parametrize("norm", ["post", "pre", "none"])
def test_encoder_shapes_and_structure(norm):
    m = TinyEncoder(TrickConfig(norm=norm, **SMALL))
    ids, tgt = reversal_batch(4, 6, 8, torch.Generator().manual_seed(0))
    assert m(ids).shape == (4, 6, 8)
    n_ln = sum(isinstance(x, LayerNorm) for x in m.modules())
    assert n_ln == {"post": 6, "pre": 7, "none": 0}[norm]


def test_pre_and_post_blocks_compute_what_they_say():
    torch.manual_seed(0)
    for norm in ("post", "pre"):
        m = TinyEncoder(TrickConfig(norm=norm, **SMALL))
        blk = m.blocks[0]
        x = torch.randn(2, 6, 16)
        h = blk.ln1(x + blk.attn(x)) if norm == "post" else x + blk.attn(blk.ln1(x))
        want = blk.ln2(h + blk.ff(h)) if norm == "post" else h + blk.ff(blk.ln2(h))
        torch.testing.assert_close(blk(x), want)


def test_reversal_batch():
    ids, tgt = reversal_batch(3, 5, 7, torch.Generator().manual_seed(1))
    assert torch.equal(tgt, ids.flip(1)) and ids.max() < 7
    with pytest.raises(ValueError, match="seq_len"):
        reversal_batch(3, 0, 7)


def test_layer_grad_norms_residual_matters():
    ids, tgt = reversal_batch(16, 6, 8, torch.Generator().manual_seed(0))
    cfg = dict(SMALL, n_layers=8)
    torch.manual_seed(0)
    res = layer_grad_norms(TinyEncoder(TrickConfig(norm="pre", **cfg)), ids, tgt)
    torch.manual_seed(0)
    nores = layer_grad_norms(TinyEncoder(TrickConfig(norm="pre", residual=False, **cfg)), ids, tgt)
    assert len(res) == 8 and all(math.isfinite(v) and v > 0 for v in res)
    assert nores[0] / nores[-1] < res[0] / res[-1]
    with pytest.raises(TypeError, match="TinyEncoder"):
        layer_grad_norms(torch.nn.Linear(2, 2), ids, tgt)


def test_param_groups_split_by_dim():
    m = TinyEncoder(TrickConfig(**SMALL))
    decay, no_decay = param_groups(m, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
    assert len(param_groups(m, 0.1, no_decay_norm_and_bias=False)) == 1
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(m, -1)


def test_warmup_lambda():
    f = warmup_lambda(4, 10)
    assert [round(f(s), 2) for s in range(10)] == [0.25, 0.5, 0.75, 1.0, 1.0, 0.83, 0.67, 0.5, 0.33, 0.17]
    with pytest.raises(ValueError, match="total_steps"):
        warmup_lambda(10, 10)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_lambda(-1, 10)


def test_train_learns_and_is_deterministic():
    cfg = TrickConfig(norm="pre", **SMALL)
    a = train(cfg, lr=3e-3, steps=60, batch=32)
    b = train(cfg, lr=3e-3, steps=60, batch=32)
    assert a.losses == b.losses
    assert a.losses[-1] < a.losses[0] - 0.3
    assert len(a.grad_norms) == 60 and not a.diverged and 0 < a.ln_gain
    with pytest.raises(ValueError, match="lr"):
        train(cfg, lr=0, steps=1)
    with pytest.raises(ValueError, match="clip"):
        train(cfg, lr=1e-3, steps=1, clip=0)


def test_train_restores_thread_count():
    before = torch.get_num_threads()
    train(TrickConfig(**SMALL), lr=1e-3, steps=2, batch=4)
    assert torch.get_num_threads() == before


def test_config_errors():
    with pytest.raises(ValueError, match="norm"):
        TrickConfig(norm="middle")
    with pytest.raises(ValueError, match="divisible"):
        TrickConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="n_layers"):
        TrickConfig(n_layers=0)


def test_softmax_saturation():
    big, small = softmax_saturation(1024, scaled=False), softmax_saturation(1024, scaled=True)
    assert abs(small["score_std"] - 1) < 0.1 and abs(big["score_std"] - 32) < 3
    assert big["grad_norm"] < small["grad_norm"] / 4 and big["max_weight"] > 0.9
    with pytest.raises(ValueError, match="d_k"):
        softmax_saturation(0, scaled=True)


def test_cached_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    runs = {"a": {"cfg": dict(SMALL), "lr": 1e-3, "steps": 3, "batch": 4}}
    logs = []
    first = cached_runs("t", runs, log=logs.append)
    second = cached_runs("t", runs, log=logs.append)
    assert first == second and len(first["a"]["losses"]) == 3
    assert sum("training" in m for m in logs) == 1  # built once, then read from the cache
    with pytest.raises(ValueError, match="non-empty"):
        cached_runs("t", {})


@pytest.mark.parametrize("profile", ["tiny", "full"])
def test_sizes_chapter_7_relies_on(profile):
    from ftbook.config import get_profile

    s = get_profile(profile).sizes("tricks")
    assert s.lr_high in s.lrs and s.lr_too_high in s.lrs and s.lr_high < s.lr_too_high
    assert 0 < s.warmup < s.steps
    cfg = TrickConfig.from_sizes(s, norm="post")  # every model field comes from the profile
    assert (cfg.d_model, cfg.n_layers, cfg.vocab) == (s.d_model, s.n_layers, s.vocab)
