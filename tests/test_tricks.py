"""ftbook.tricks: the small Post-/Pre-LN encoder (ftbook.transformer layers, twinned with
torch.nn.TransformerEncoderLayer), its data, its training through ftbook.training (twinned with a
plain torch + transformers loop), and their errors."""

import math

import pytest
import torch

from ftbook import training
from ftbook.data import Encoded
from ftbook.norms import LayerNorm
from ftbook.transformer import EncoderLayer
from ftbook.tricks import (NoResidualLayer, TinyEncoder, TrickConfig, cached_runs, layer_grad_norms, spike_loss,
                           reversal_batch, reversal_data, softmax_saturation, train)

SMALL = dict(vocab=8, seq_len=6, d_model=16, n_heads=2, n_layers=3, d_ff=32)


@pytest.mark.parametrize("norm", ["post", "pre", "none"])
def test_encoder_shapes_and_structure(norm):
    m = TinyEncoder(TrickConfig(norm=norm, **SMALL))
    ids, tgt = reversal_batch(4, 6, 8, torch.Generator().manual_seed(0))
    assert m(ids).shape == (4, 6, 8)
    assert m(input_ids=ids, attention_mask=torch.ones_like(ids)).shape == (4, 6, 8)  # as train() calls it
    n_ln = sum(isinstance(x, LayerNorm) for x in m.modules())
    assert n_ln == {"post": 6, "pre": 7, "none": 0}[norm]  # Pre-LN: one final LayerNorm after the stack
    assert all(type(layer) is EncoderLayer and layer.norm_first == (norm == "pre") for layer in m.layers)


def test_padding_mask_is_honoured_and_an_all_ones_mask_dropped():
    m = TinyEncoder(TrickConfig(norm="post", **SMALL)).eval()
    ids = reversal_batch(2, 6, 8, torch.Generator().manual_seed(0))[0]
    with torch.no_grad():
        torch.testing.assert_close(m(ids, torch.ones_like(ids)), m(ids))
        mask = torch.tensor([[1] * 4 + [0] * 2] * 2)
        other = ids.clone()
        other[:, 4:] = (ids[:, 4:] + 1) % 8  # change only the padded tokens
        torch.testing.assert_close(m(ids, mask)[:, :4], m(other, mask)[:, :4])
        assert not torch.allclose(m(ids)[:, :4], m(other)[:, :4])  # without the mask they leak


def _torch_layer(ours: EncoderLayer, norm_first: bool) -> torch.nn.TransformerEncoderLayer:
    d = ours.norm1.weight.numel()
    ref = torch.nn.TransformerEncoderLayer(d, ours.attn.num_heads, ours.ffn.up.out_features, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=norm_first)
    a = ours.attn
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
        ref.self_attn.out_proj.weight.copy_(a.out.weight)
        ref.self_attn.out_proj.bias.copy_(a.out.bias)
        for mine, theirs in ((ours.ffn.up, ref.linear1), (ours.ffn.down, ref.linear2),
                             (ours.norm1, ref.norm1), (ours.norm2, ref.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return ref.eval()


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_equals_torch_transformer_stack(norm):
    """Post-LN and Pre-LN (with its final LayerNorm) equal torch's own encoder layers."""
    torch.manual_seed(0)
    m = TinyEncoder(TrickConfig(norm=norm, **SMALL)).eval()
    for p in m.parameters():  # non-trivial LayerNorm gains and biases
        torch.nn.init.normal_(p, std=0.3)
    ids, _ = reversal_batch(3, 6, 8, torch.Generator().manual_seed(2))
    x = m.tok(ids) + m.pos(torch.arange(6))  # (3, 6, 16)
    for layer in m.layers:
        x = _torch_layer(layer, norm_first=norm == "pre")(x)
    if norm == "pre":
        x = torch.nn.functional.layer_norm(x, (16,), m.final_norm.weight, m.final_norm.bias, eps=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(m(ids), m.head(x), atol=1e-5, rtol=1e-5)


def test_pre_ln_output_is_normalised_and_post_ln_without_final_norm():
    for norm in ("post", "pre"):
        m = TinyEncoder(TrickConfig(norm=norm, **SMALL))
        hidden = []
        m.head.register_forward_hook(lambda mod, inp, out: hidden.append(inp[0]))
        m(reversal_batch(2, 6, 8)[0])
        torch.testing.assert_close(hidden[0].mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
        assert isinstance(m.final_norm, LayerNorm if norm == "pre" else torch.nn.Identity)


def test_no_norm_and_no_residual_ablations():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 16)
    plain = TinyEncoder(TrickConfig(norm="none", **SMALL)).layers[0]
    h = x + plain.attn(x)
    torch.testing.assert_close(plain(x), h + plain.ffn(h))  # residuals, no LayerNorm
    for norm in ("post", "pre", "none"):
        layer = TinyEncoder(TrickConfig(norm=norm, residual=False, **SMALL)).layers[0]
        assert isinstance(layer, NoResidualLayer)
        if norm == "pre":
            want = layer.ffn(layer.norm2(layer.attn(layer.norm1(x))))
        else:
            want = layer.norm2(layer.ffn(layer.norm1(layer.attn(x))))
        torch.testing.assert_close(layer(x), want)


def test_reversal_batch_and_data():
    ids, tgt = reversal_batch(3, 5, 7, torch.Generator().manual_seed(1))
    assert torch.equal(tgt, ids.flip(1)) and ids.max() < 7
    with pytest.raises(ValueError, match="seq_len"):
        reversal_batch(3, 0, 7)
    data = reversal_data(10, 5, 7, seed=3)
    assert isinstance(data, Encoded) and len(data) == 10 and set(data.lengths) == {5}
    b = data.batch(range(10))
    assert torch.equal(b["labels"], b["input_ids"].flip(1)) and bool(b["attention_mask"].all())
    assert reversal_data(10, 5, 7, seed=3).input_ids == data.input_ids != reversal_data(10, 5, 7, 4).input_ids


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


def _plain_loop(cfg, lr, steps, warmup, batch, clip, weight_decay, seed, betas=(0.9, 0.98)):
    """The same run written with torch and transformers only (the twin of tricks.train)."""
    from transformers import get_scheduler

    torch.manual_seed(seed)
    model = TinyEncoder(cfg)
    no_decay = {id(p) for m in model.modules() if isinstance(m, LayerNorm) for p in m.parameters()}
    no_decay |= {id(p) for n, p in model.named_parameters() if n.endswith("bias")}
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
                             {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}],
                            lr=lr, betas=betas)
    sched = get_scheduler("constant_with_warmup" if warmup else "constant", opt, num_warmup_steps=warmup,
                          num_training_steps=steps)
    ids, tgt = reversal_batch(steps * batch, cfg.seq_len, cfg.vocab, torch.Generator().manual_seed(seed + 1))
    order = training.epoch_batches([cfg.seq_len] * len(ids), 0, training.TrainConfig(batch_size=batch, seed=seed))
    losses = []
    for chunk in order:
        logits = model(ids[chunk])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab), tgt[chunk].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip or math.inf)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("norm,warmup", [("post", 4), ("pre", 0)])
def test_train_equals_a_plain_torch_loop(norm, warmup):
    """Betas, warm-up schedule, clipping and the no-decay rule really reach the optimizer."""
    cfg = TrickConfig(norm=norm, **SMALL)
    kw = dict(lr=3e-3, steps=12, warmup=warmup, batch=8, clip=0.85, weight_decay=0.1)
    got = train(cfg, **kw)
    assert min(got["grad_norms"]) < kw["clip"] < max(got["grad_norms"])  # clipping only some steps
    assert got["losses"] == pytest.approx(_plain_loop(cfg, **kw, seed=0), abs=2e-5)
    changes = [dict(clip=None), dict(betas=(0.9, 0.999)), dict(weight_decay=10.0)] + [dict(warmup=0)] * bool(warmup)
    for changed in changes:  # the twin would notice a setting that does not reach the optimizer
        other = _plain_loop(cfg, **{**kw, **changed}, seed=0)
        assert got["losses"] != pytest.approx(other, abs=2e-5), changed


def test_warmup_starts_at_lr_zero():
    cfg = TrickConfig(norm="pre", **SMALL)
    kw = dict(lr=1e-2, steps=6, batch=8)
    warm, cold = train(cfg, warmup=3, **kw), train(cfg, **kw)
    assert warm["losses"][0] == cold["losses"][0]  # same model, same first batch
    # step 0 had lr 0: the second step starts from the initial weights, the cold run's did not
    assert warm["losses"][1] != cold["losses"][1]
    torch.manual_seed(0)
    fresh = TinyEncoder(cfg)
    data = reversal_data(6 * 8, 6, 8, seed=1)
    order = training.epoch_batches(data.lengths, 0, training.TrainConfig(batch_size=8, seed=0))
    b = data.batch(order[1])
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(fresh(b["input_ids"]).reshape(-1, 8), b["labels"].reshape(-1))
    assert warm["losses"][1] == pytest.approx(float(loss), abs=1e-5)


def test_train_learns_beats_chance_and_is_deterministic():
    cfg = TrickConfig(norm="pre", **SMALL)
    a = train(cfg, lr=3e-3, steps=60, batch=32)
    b = train(cfg, lr=3e-3, steps=60, batch=32)
    assert a == b
    assert a["losses"][-1] < a["losses"][0] - 0.3
    assert a["accuracy"] > 2 / 8  # twice chance (vocabulary 8)
    assert len(a["grad_norms"]) == 60 and not a["diverged"] and 0 < a["ln_gain"]
    with pytest.raises(ValueError, match="lr"):
        train(cfg, lr=0, steps=1)
    with pytest.raises(ValueError, match="clip"):
        train(cfg, lr=1e-3, steps=1, clip=0)
    with pytest.raises(ValueError, match="steps"):
        train(cfg, lr=1e-3, steps=0)
    with pytest.raises(ValueError, match="schedule"):
        train(cfg, lr=1e-3, steps=2, schedule="sawtooth")


def test_weight_decay_rule_keeps_layernorm_gains():
    cfg = TrickConfig(norm="pre", **SMALL)
    kw = dict(lr=1e-2, steps=30, batch=8, weight_decay=1.0)
    everything, rule = train(cfg, no_decay_norm_and_bias=False, **kw), train(cfg, **kw)
    assert everything["ln_gain"] < rule["ln_gain"] - 0.1


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
    with pytest.raises(ValueError, match="residual"):
        TrickConfig(residual="no")


def test_softmax_saturation():
    big, small = softmax_saturation(1024, scaled=False), softmax_saturation(1024, scaled=True)
    assert abs(small["score_std"] - 1) < 0.1 and abs(big["score_std"] - 32) < 3
    assert big["grad_norm"] < small["grad_norm"] / 4 and big["max_weight"] > 0.9
    # what reaches W_q is larger without the scaling, not smaller; half the rows pass nothing back
    assert big["q_grad_norm"] > 4 * small["q_grad_norm"] and big["dead_share"] > 0.4 and small["dead_share"] == 0
    assert big["entropy"] < 0.5 < 3.0 < small["entropy"] < math.log(32)
    with pytest.raises(ValueError, match="d_k"):
        softmax_saturation(0, scaled=True)


def test_softmax_saturation_gradients_equal_the_closed_form():
    """dp/ds = diag(p) - p p^T, and ds/dq = k / sqrt(d_k): the q gradient is the chain of the two."""
    import torch

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, 8, generator=g, dtype=torch.float64), torch.randn(5, 8, generator=g, dtype=torch.float64)
    u = torch.randn(3, 5, generator=g, dtype=torch.float64)
    p = torch.softmax(q @ k.T / 8 ** 0.5, -1)
    grad_s = torch.stack([(torch.diag(p[i]) - torch.outer(p[i], p[i])) @ u[i] for i in range(3)])
    qq = q.clone().requires_grad_()
    (auto,) = torch.autograd.grad(torch.softmax(qq @ k.T / 8 ** 0.5, -1), qq, u)
    assert torch.allclose(auto, grad_s @ k / 8 ** 0.5)
    with pytest.raises(ValueError, match="init"):
        TrickConfig(init="xavier")


def test_cached_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    runs = {"a": {"cfg": dict(SMALL), "lr": 1e-3, "steps": 3, "batch": 4}}
    logs = []
    first = cached_runs("t", runs, log=logs.append, workers=1)
    second = cached_runs("t", runs, log=logs.append, workers=1)
    assert first == second and len(first["a"]["losses"]) == 3
    assert sum("training" in m for m in logs) == 1  # built once, then read from the cache
    with pytest.raises(ValueError, match="non-empty"):
        cached_runs("t", {})


def test_cached_runs_fingerprint_holds_the_code(tmp_path, monkeypatch):
    """A change in any module that builds the runs retrains (ftbook.checkpoints.fingerprint)."""
    import ftbook.checkpoints as checkpoints

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    seen = []
    real = checkpoints.fingerprint
    monkeypatch.setattr(checkpoints, "fingerprint", lambda *m, **s: seen.append(real(*m, **s)) or seen[-1])
    runs = {"a": {"cfg": dict(SMALL), "lr": 1e-3, "steps": 2, "batch": 4}}
    cached_runs("fp", runs, log=lambda m: None, workers=1)
    code = seen[0]["code"]
    for module in ("tricks", "transformer", "training", "optim", "data", "norms", "attention"):
        assert f"ftbook.{module}" in code
    assert seen[0]["runs"] == runs and seen[0]["versions"]["torch"]


@pytest.mark.parametrize("profile", ["tiny", "full"])
def test_sizes_chapter_7_relies_on(profile):
    from ftbook.config import get_profile

    s = get_profile(profile).sizes("tricks")
    assert s.lr_high in s.lrs and s.lr_too_high in s.lrs and s.lr_high < s.lr_too_high
    assert 0 < s.warmup < s.steps and s.lrs[0] < s.lr_high and s.seeds >= 2
    cfg = TrickConfig.from_sizes(s, norm="post")  # every model field comes from the profile
    assert (cfg.d_model, cfg.n_layers, cfg.vocab) == (s.d_model, s.n_layers, s.vocab)


def test_init_switch_bert_vs_pytorch_defaults():
    cfg = dict(vocab=16, seq_len=12, d_model=32, n_heads=4, n_layers=2, d_ff=64)
    torch.manual_seed(0)
    bert = TinyEncoder(TrickConfig(**cfg, init="bert"))
    torch.manual_seed(0)
    default = TinyEncoder(TrickConfig(**cfg, init="pytorch"))
    assert abs(bert.tok.weight.std().item() - 0.02) < 0.003 and abs(default.tok.weight.std().item() - 1) < 0.1
    w = default.layers[0].ffn.fc2.weight if hasattr(default.layers[0].ffn, "fc2") else default.head.weight
    bound = 1 / math.sqrt(w.shape[1])  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.9 * bound
    assert bert.head.bias.abs().max() == 0 and default.head.bias.abs().max() > 0


def test_spike_loss_scales_every_kth_batch_only():
    import torch
    from ftbook import training

    class Const(torch.nn.Module):  # logits that give cross-entropy ln 2 on two classes
        def forward(self, input_ids, attention_mask=None):
            return torch.zeros(input_ids.shape[0], 2)

    batch = {"input_ids": torch.zeros(4, 3, dtype=torch.long), "labels": torch.tensor([0, 1, 0, 1])}
    fn = spike_loss(3, 50.0)
    base = float(training.cross_entropy_loss(Const(), batch))
    got = [float(fn(Const(), batch)) for _ in range(6)]
    assert got == pytest.approx([base, base, 50 * base, base, base, 50 * base])
    assert spike_loss(None) is None
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="spike_every"):
            spike_loss(bad)
    with pytest.raises(ValueError, match="spike_scale"):
        spike_loss(2, 0)


def test_spikes_raise_the_gradient_norm_on_their_steps():
    cfg = TrickConfig(vocab=8, seq_len=6, d_model=16, n_heads=2, n_layers=2, d_ff=32, norm="pre")
    plain = train(cfg, lr=1e-3, steps=12, batch=8, seed=0)
    spiky = train(cfg, lr=1e-3, steps=12, batch=8, seed=0, spike_every=4, spike_scale=100.0)
    assert spiky["grad_norms"][:3] == pytest.approx(plain["grad_norms"][:3])  # identical until the first spike
    assert spiky["grad_norms"][3] > 20 * plain["grad_norms"][3]
    assert spiky["losses"][3] > 20 * plain["losses"][3]
