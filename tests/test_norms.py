"""ftbook.norms against its torch twins: values, gradients, errors, the large-offset case."""

import pytest
import torch
import torch.nn.functional as F

from ftbook.norms import (
    LayerNorm,
    LayerNormFunction,
    NormDtypeError,
    NormShapeError,
    RMSNorm,
    layer_norm,
    layer_norm_manual,
    layer_norm_one_pass,
    rms_norm,
)

SHAPES = [  # (input shape, normalized_shape)
    ((7,), (7,)),
    ((3, 5), (5,)),
    ((2, 4, 6), (6,)),
    ((2, 4, 6), (4, 6)),
    ((2, 4, 6), (2, 4, 6)),
    ((2, 3, 4, 5), (4, 5)),
    ((0, 8), (8,)),
    ((2, 1), (1,)),
]
LN_FUNCS = [layer_norm, layer_norm_manual]
TOL = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}


def _params(shape, dtype, affine, with_bias, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=dtype) if affine else None
    b = torch.randn(shape, generator=g, dtype=dtype) if with_bias else None
    return w, b


@pytest.mark.parametrize("fn", LN_FUNCS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_shape,ns", SHAPES)
@pytest.mark.parametrize("affine,with_bias", [(True, True), (True, False), (False, False), (False, True)])
def test_layer_norm_values_and_grads_match_torch(fn, dtype, in_shape, ns, affine, with_bias):
    torch.manual_seed(0)
    x = (torch.randn(in_shape, dtype=dtype) * 3 + 2).requires_grad_()
    w, b = _params(ns, dtype, affine, with_bias)
    ws = [t.clone().requires_grad_() if t is not None else None for t in (w, b)]
    wt = [t.clone().requires_grad_() if t is not None else None for t in (w, b)]
    x2 = x.detach().clone().requires_grad_()
    ours = fn(x, ns, ws[0], ws[1], eps=1e-5)
    theirs = F.layer_norm(x2, ns, wt[0], wt[1], eps=1e-5)
    torch.testing.assert_close(ours, theirs, **TOL[dtype])
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    if x.numel() == 0:
        return
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(x.grad, x2.grad, **{k: v * 10 for k, v in TOL[dtype].items()})
    for a, c in zip(ws, wt):
        if a is not None:
            torch.testing.assert_close(a.grad, c.grad, **{k: v * 10 for k, v in TOL[dtype].items()})


@pytest.mark.parametrize("fn", LN_FUNCS)
@pytest.mark.parametrize("ns", [(6,), (4, 6)])
def test_layer_norm_gradcheck_float64(fn, ns):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(ns, dtype=torch.float64, requires_grad=True)
    b = torch.randn(ns, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: fn(x, ns, w, b, 1e-5), (x, w, b))
    assert torch.autograd.gradcheck(lambda x: fn(x, ns), (x,))


def test_autograd_version_supports_double_backward_manual_refuses():
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: layer_norm(x, (5,), w), (x, w))
    y = layer_norm_manual(x, (5,), w)
    (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_manual_backward_saves_only_what_it_needs():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = LayerNormFunction.apply(x, w, None, 1, 1e-5)
    x_hat, rstd, weight = y.grad_fn.saved_tensors
    assert [tuple(t.shape) for t in (x_hat, rstd, weight)] == [(4, 6), (4, 1), (6,)]
    # the same statistics as PyTorch's own kernel, which returns (output, mean, 1/sigma)
    _, _, torch_rstd = torch.native_layer_norm(x.detach(), (6,), None, None, 1e-5)
    torch.testing.assert_close(rstd, torch_rstd, **TOL[torch.float64])
    torch.testing.assert_close(x_hat, F.layer_norm(x.detach(), (6,), eps=1e-5), **TOL[torch.float64])
    assert torch.equal(weight, w.detach())


@pytest.mark.parametrize("fn", LN_FUNCS)
def test_large_common_offset_stays_accurate(fn):
    torch.manual_seed(0)
    x = torch.randn(64, 768) + 1e4  # float32, unit spread around 1e4
    ref = F.layer_norm(x.double(), (768,))  # exact statistics of the same float32 numbers
    torch_err = (F.layer_norm(x, (768,)).double() - ref).abs().max().item()
    our_err = (fn(x, (768,)).double() - ref).abs().max().item()
    assert our_err <= 2 * torch_err + 1e-6, (our_err, torch_err)
    assert our_err < 5e-3
    one_pass_err = (layer_norm_one_pass(x, (768,)).double() - ref).abs().max().item()
    assert one_pass_err > 0.1, "the one-pass variance should visibly fail at a 1e4 offset"


def test_large_offset_gradients_match_float64():
    torch.manual_seed(0)
    x = (torch.randn(8, 64) + 1e4).requires_grad_()
    x64 = x.detach().double().requires_grad_()
    g = torch.randn(8, 64)
    layer_norm_manual(x, (64,)).backward(g)
    F.layer_norm(x64, (64,)).backward(g.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=5e-3, rtol=0)


def test_one_pass_matches_when_no_offset():
    x = torch.randn(4, 32, dtype=torch.float64)
    torch.testing.assert_close(layer_norm_one_pass(x, (32,)), F.layer_norm(x, (32,)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_input(dtype):
    x = torch.randn(4, 32).to(dtype)
    ours, theirs = layer_norm(x, (32,)), F.layer_norm(x, (32,))
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.float(), theirs.float(), atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------------- errors
BAD_CALLS = [
    (lambda f, x: f(x, 4), TypeError),  # an int, not a tuple (the functional twin refuses it)
    (lambda f, x: f(x, (4.0,)), TypeError),
    (lambda f, x: f(x, ()), RuntimeError),
    (lambda f, x: f(x, (5,)), RuntimeError),
    (lambda f, x: f(x, (2, 4)), RuntimeError),
    (lambda f, x: f(x, (-1,)), RuntimeError),
    (lambda f, x: f(x, (2, 3, 4, 4)), RuntimeError),
    (lambda f, x: f(x, (4,), torch.ones(3)), RuntimeError),
    (lambda f, x: f(x, (4,), None, torch.ones(3)), RuntimeError),
    (lambda f, x: f(x, (4,), torch.ones(4, dtype=torch.float64)), RuntimeError),
    (lambda f, x: f(x.long(), (4,)), RuntimeError),
]


@pytest.mark.parametrize("fn", [layer_norm, layer_norm_manual, layer_norm_one_pass])
@pytest.mark.parametrize("call,exc", BAD_CALLS)
def test_errors_where_torch_raises(fn, call, exc):
    x = torch.randn(2, 3, 4)
    with pytest.raises(exc):
        call(F.layer_norm, x)
    with pytest.raises(exc):
        call(fn, x)


def test_error_messages_say_what_was_expected():
    x = torch.randn(2, 5, 384)
    with pytest.raises(NormShapeError, match=r"\(768,\).*\(2, 5, 384\).*expected input of shape \(\*, 768\)"):
        layer_norm(x, (768,))
    with pytest.raises(NormShapeError, match=r"weight has shape \(3,\), expected.*\(384,\)"):
        layer_norm(x, (384,), torch.ones(3))
    with pytest.raises(NormDtypeError, match="floating-point"):
        layer_norm(x.long(), (384,))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        layer_norm([1.0, 2.0], (2,))
    assert issubclass(NormShapeError, ValueError) and issubclass(NormShapeError, RuntimeError)


# ---------------------------------------------------------------------------- modules
@pytest.mark.parametrize("backward", ["autograd", "manual"])
@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"elementwise_affine": False}, {"eps": 1e-12}])
@pytest.mark.parametrize("ns", [8, (8,), (3, 8)])
def test_layernorm_module_matches_torch(backward, kwargs, ns):
    torch.manual_seed(0)
    ours, theirs = LayerNorm(ns, backward=backward, **kwargs), torch.nn.LayerNorm(ns, **kwargs)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert ours.normalized_shape == theirs.normalized_shape and ours.eps == theirs.eps
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    torch.testing.assert_close(ours(x), theirs(x2))
    ours(x).square().sum().backward()
    theirs(x2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    for (n1, p1), (n2, p2) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert n1 == n2
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-4, rtol=1e-4)
    assert repr(ours).startswith("LayerNorm(") and str(ours.normalized_shape) in repr(ours)


def test_layernorm_module_dtype_device_and_bad_args():
    m, twin = LayerNorm(4, dtype=torch.float64), torch.nn.LayerNorm(4, dtype=torch.float64)
    for (n1, p1), (n2, p2) in zip(m.named_parameters(), twin.named_parameters(), strict=True):
        assert n1 == n2 and p1.dtype == p2.dtype == torch.float64 and torch.equal(p1, p2)
    with pytest.raises(ValueError, match="backward must be one of"):
        LayerNorm(4, backward="fast")
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(4, eps=-1.0)
    with pytest.raises(NormShapeError, match="positive"):
        LayerNorm(0)
    with pytest.raises(TypeError, match="normalized_shape"):
        LayerNorm("768")
    with pytest.raises(RuntimeError):
        LayerNorm(4)(torch.randn(2, 5))


# ---------------------------------------------------------------------------- RMSNorm
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_shape,ns", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [None, 1e-6])
def test_rms_norm_matches_torch(dtype, in_shape, ns, affine, eps):
    torch.manual_seed(0)
    x = (torch.randn(in_shape, dtype=dtype) + 1).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    w = torch.randn(ns, dtype=dtype, requires_grad=True) if affine else None
    w2 = w.detach().clone().requires_grad_() if affine else None
    ours, theirs = rms_norm(x, ns, w, eps), F.rms_norm(x2, ns, w2, eps)
    torch.testing.assert_close(ours, theirs, **TOL[dtype])
    if x.numel():
        g = torch.randn_like(ours)
        ours.backward(g)
        theirs.backward(g)
        torch.testing.assert_close(x.grad, x2.grad, **{k: v * 10 for k, v in TOL[dtype].items()})
        if affine:
            torch.testing.assert_close(w.grad, w2.grad, **{k: v * 10 for k, v in TOL[dtype].items()})


def test_rms_norm_gradcheck_and_module():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: rms_norm(x, (5,), w, 1e-6), (x, w))
    for kwargs in ({}, {"eps": 1e-6}, {"elementwise_affine": False}):
        ours, theirs = RMSNorm(5, **kwargs), torch.nn.RMSNorm(5, **kwargs)
        assert set(ours.state_dict()) == set(theirs.state_dict()) and ours.eps == theirs.eps
        xx = torch.randn(2, 5)
        torch.testing.assert_close(ours(xx), theirs(xx))
    with pytest.raises(RuntimeError):
        rms_norm(torch.randn(2, 4), (5,))
    with pytest.raises(ValueError, match="eps"):
        RMSNorm(4, eps=-1)


def test_rms_norm_is_not_centring():
    x = torch.randn(4, 16, dtype=torch.float64) + 5.0
    ln, rms = layer_norm(x, (16,)), rms_norm(x, (16,))
    torch.testing.assert_close(ln, F.layer_norm(x, (16,)))
    torch.testing.assert_close(rms, F.rms_norm(x, (16,)))
    # LayerNorm removes the common offset, RMSNorm keeps it: the two differ by far
    torch.testing.assert_close(ln.mean(-1), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (rms - ln).abs().amax() > 0.5


# ------------------------------------------------------ chapter 6's deep-stack experiment
from ftbook.norms import DeepMLP, deep_stack_task, train_deep_stack  # noqa: E402

SMALL = dict(depth=4, width=16, steps=60, n_train=512, n_val=256)


def test_deep_stack_task_is_fixed_and_balanced_enough():
    (x, y), (xv, yv) = deep_stack_task(100, 50)
    (x2, y2), _ = deep_stack_task(100, 50)
    assert x.shape == (100, 32) and xv.shape == (50, 32) and y.dtype == torch.long
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert len(torch.unique(torch.cat([y, yv]))) == 4  # every class occurs


def test_deep_mlp_same_initial_weights_with_and_without_layer_norm():
    torch.manual_seed(3)
    plain = DeepMLP(32, 16, 5, 4, layer_norm=False)
    torch.manual_seed(3)
    normed = DeepMLP(32, 16, 5, 4, layer_norm=True)
    linear = {k: v for k, v in normed.state_dict().items() if not k.startswith("norms.")}
    assert linear.keys() == plain.state_dict().keys()
    for k, v in plain.state_dict().items():
        assert torch.equal(v, linear[k]), k
    assert sum(isinstance(m, LayerNorm) for m in normed.modules()) == 5
    assert not any(isinstance(m, LayerNorm) for m in plain.modules())
    x = torch.randn(7, 32)
    assert normed(x).shape == (7, 4) and normed.hidden(x).shape == (7, 16)


def test_train_deep_stack_is_deterministic_and_learns():
    a = train_deep_stack(True, 3e-3, 0, **SMALL)
    b = train_deep_stack(True, 3e-3, 0, **SMALL)
    assert a == b
    assert set(a) == {"losses", "train_loss", "val_loss", "val_acc", "init_hidden_std"}
    assert len(a["losses"]) == SMALL["steps"]
    (_, y), _ = deep_stack_task(SMALL["n_train"], SMALL["n_val"])
    prior = torch.bincount(y).float() / len(y)
    entropy = -(prior * prior.log()).sum().item()  # the loss of always answering with the frequencies
    assert a["train_loss"] < entropy - 0.1
    other_seed = train_deep_stack(True, 3e-3, 1, **SMALL)
    assert other_seed["losses"] != a["losses"]


def test_train_deep_stack_layer_norm_keeps_the_signal():
    plain = train_deep_stack(False, 1e-3, 0, **{**SMALL, "depth": 12, "steps": 1})
    normed = train_deep_stack(True, 1e-3, 0, **{**SMALL, "depth": 12, "steps": 1})
    assert normed["init_hidden_std"] > 5 * plain["init_hidden_std"]


def test_chapter_6_sizes_registered():
    from ftbook.config import get_profile

    tiny, full = vars(get_profile("tiny").sizes("norms")), vars(get_profile("full").sizes("norms"))
    keys = {"bench_hidden", "deep_depth", "deep_width", "deep_steps", "deep_train", "deep_val"}
    assert keys <= set(tiny) == set(full)
    assert all(isinstance(h, int) and h > 0 for h in tiny["bench_hidden"])
