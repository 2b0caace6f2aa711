"""ftbook.losses against torch.nn.functional: values, gradients, gradcheck, extremes, bad inputs."""

import pytest
import torch
import torch.nn.functional as F

from ftbook import losses as L

torch.manual_seed(0)


def _targets(shape, n_classes, ignore=True, gen=None):
    if len(shape) == 1:
        return torch.tensor(1)
    t = torch.randint(0, n_classes, (shape[0], *shape[2:]), generator=gen)
    if ignore:
        t.view(-1)[0] = -100
    return t


SHAPES = [(5,), (6, 5), (3, 5, 4), (2, 5, 3, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_index_targets_values_and_grads(shape, reduction, label_smoothing, weighted):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64, generator=g)
    t = _targets(shape, 5, gen=g)
    w = torch.rand(5, dtype=torch.float64, generator=g) + 0.1 if weighted else None
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a = L.cross_entropy(xa, t, w, reduction=reduction, label_smoothing=label_smoothing)
    b = F.cross_entropy(xb, t, w, reduction=reduction, label_smoothing=label_smoothing)
    torch.testing.assert_close(a, b)
    a.sum().backward(), b.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_probability_targets(shape, reduction, label_smoothing, weighted):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)
    dim = 0 if len(shape) == 1 else 1
    p = torch.softmax(torch.randn(*shape, dtype=torch.float64, generator=g), dim=dim)
    w = torch.rand(5, dtype=torch.float64, generator=g) + 0.1 if weighted else None
    a = L.cross_entropy(x, p, w, reduction=reduction, label_smoothing=label_smoothing)
    b = F.cross_entropy(x, p, w, reduction=reduction, label_smoothing=label_smoothing)
    torch.testing.assert_close(a, b)
    ga, = torch.autograd.grad(a.sum(), x)
    gb, = torch.autograd.grad(b.sum(), x)
    torch.testing.assert_close(ga, gb)


def test_cross_entropy_gradcheck_float64():
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0, 2], [1, -100], [2, 2], [0, 1]])
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: L.cross_entropy(z, t, w, label_smoothing=0.1), (x,))
    p = torch.softmax(torch.randn(4, 3, dtype=torch.float64), 1)
    y = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: L.cross_entropy(z, p), (y,))


def test_gradient_is_softmax_minus_onehot():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 5, 2, 2])
    L.cross_entropy(x, t, reduction="sum").backward()
    expected = torch.softmax(x.detach(), 1) - F.one_hot(t, 6).double()
    torch.testing.assert_close(x.grad, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits_stay_finite_and_exact(dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype, requires_grad=True)
    t = torch.tensor([1, 0, 0])
    x2 = x.detach().clone().requires_grad_()
    ours = L.cross_entropy(x, t, reduction="none")
    twin = F.cross_entropy(x2, t, reduction="none")
    torch.testing.assert_close(ours, twin)
    exact = F.cross_entropy(x.detach().double(), t, reduction="none")  # the float64 reference
    torch.testing.assert_close(ours.double(), exact)
    ours.sum().backward()
    twin.sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad, x2.grad)
    # the naive formula is what fails here
    naive = -torch.log(torch.exp(x.detach()) / torch.exp(x.detach()).sum(1, keepdim=True))
    assert not torch.isfinite(naive).all()


def test_all_ignored_mean_is_nan_like_torch():
    x = torch.randn(2, 3)
    t = torch.tensor([-100, -100])
    assert torch.isnan(L.cross_entropy(x, t)) and torch.isnan(F.cross_entropy(x, t))
    torch.testing.assert_close(L.cross_entropy(x, t, reduction="sum"), F.cross_entropy(x, t, reduction="sum"))
    torch.testing.assert_close(L.cross_entropy(x, t, reduction="none"), F.cross_entropy(x, t, reduction="none"))


def test_custom_ignore_index():
    x = torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([0, 3, 1])
    torch.testing.assert_close(L.cross_entropy(x, t, ignore_index=3), F.cross_entropy(x, t, ignore_index=3))


def test_log_softmax_and_softmax_match_torch():
    x = torch.randn(3, 7, dtype=torch.float64) * 50
    torch.testing.assert_close(L.log_softmax(x, 1), F.log_softmax(x, 1))
    torch.testing.assert_close(L.softmax(x, 0), F.softmax(x, 0))
    row = torch.tensor([[float("-inf")] * 3, [float("-inf"), 0.0, 1.0]])
    torch.testing.assert_close(L.log_softmax(row), F.log_softmax(row, -1), equal_nan=True)
    torch.testing.assert_close(L.softmax(row), F.softmax(row, -1), equal_nan=True)


@pytest.mark.parametrize("input,target,kwargs,exc,match", [
    (torch.randn(3, 4), torch.tensor([0, 4, 1]), {}, IndexError, "contains class 4"),
    (torch.randn(3, 4), torch.tensor([0, -1, 1]), {}, IndexError, "ignore_index=-100"),
    (torch.randn(3, 4), torch.tensor([0, 1]), {}, ValueError, r"shape \(3,\)"),
    (torch.randn(3, 4), torch.rand(3, 5), {}, ValueError, "probability targets"),
    (torch.randn(3, 4), torch.tensor([True, False, True]), {}, TypeError, "integer tensor"),
    (torch.randint(0, 3, (3, 4)), torch.tensor([0, 1, 2]), {}, TypeError, "floating-point"),
    (torch.randn(3, 4), [0, 1, 2], {}, TypeError, "target must be a torch.Tensor"),
    (torch.randn(3, 4), torch.tensor([0, 1, 2]), {"reduction": "avg"}, ValueError, "reduction must be"),
    (torch.randn(3, 4), torch.tensor([0, 1, 2]), {"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    (torch.randn(3, 4), torch.tensor([0, 1, 2]), {"weight": torch.ones(3)}, ValueError, r"weight must have shape \(4,\)"),
    (torch.tensor(1.0), torch.tensor(0), {}, ValueError, "class dimension"),
])
def test_cross_entropy_bad_inputs(input, target, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        L.cross_entropy(input, target, **kwargs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch(reduction):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, dtype=torch.float64, generator=g) * 10
    y = torch.rand(5, 3, dtype=torch.float64, generator=g)
    w = torch.rand(3, dtype=torch.float64, generator=g)
    pw = torch.rand(3, dtype=torch.float64, generator=g) * 3
    for kw in ({}, {"weight": w}, {"pos_weight": pw}, {"weight": w, "pos_weight": pw}):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a = L.binary_cross_entropy_with_logits(xa, y, reduction=reduction, **kw)
        b = F.binary_cross_entropy_with_logits(xb, y, reduction=reduction, **kw)
        torch.testing.assert_close(a, b)
        a.sum().backward(), b.sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad)
    assert torch.autograd.gradcheck(
        lambda z: L.binary_cross_entropy_with_logits(z, y, pos_weight=pw), (x.clone().requires_grad_(),))


def test_bce_extreme_and_equals_two_class_cross_entropy():
    x = torch.tensor([1e4, -1e4, 0.0, 30.0])
    y = torch.tensor([0.0, 1.0, 1.0, 1.0])
    out = L.binary_cross_entropy_with_logits(x, y, reduction="none")
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(x, y, reduction="none"))
    assert torch.isfinite(out).all() and out[0].item() == 1e4
    # sigmoid BCE on z == softmax CE on logits (0, z)
    z = torch.randn(8, dtype=torch.float64)
    t = torch.randint(0, 2, (8,))
    torch.testing.assert_close(
        L.binary_cross_entropy_with_logits(z, t.double()),
        L.cross_entropy(torch.stack([torch.zeros_like(z), z], 1), t))


def test_bce_gradient_is_sigmoid_minus_y_even_at_zero():
    z = torch.tensor([-3.0, -0.5, 0.0, 0.0, 2.0, 40.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    L.binary_cross_entropy_with_logits(z, y, reduction="sum").backward()
    torch.testing.assert_close(z.grad, torch.sigmoid(z.detach()) - y)
    # tiny losses are kept (log1p), as in torch
    x = torch.tensor([30.0, 60.0])
    torch.testing.assert_close(L.binary_cross_entropy_with_logits(x, torch.ones(2), reduction="none"),
                               F.binary_cross_entropy_with_logits(x, torch.ones(2), reduction="none"),
                               rtol=1e-5, atol=0)


def test_bce_integer_labels_and_bad_inputs():
    x = torch.randn(4)
    torch.testing.assert_close(L.binary_cross_entropy_with_logits(x, torch.tensor([0, 1, 1, 0])),
                               F.binary_cross_entropy_with_logits(x, torch.tensor([0.0, 1, 1, 0])))
    with pytest.raises(ValueError, match=r"must equal input shape \(4,\)"):
        L.binary_cross_entropy_with_logits(x, torch.ones(4, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        L.binary_cross_entropy_with_logits(x, torch.tensor([0.0, 2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="reduction"):
        L.binary_cross_entropy_with_logits(x, torch.ones(4), reduction="max")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(reduction):
    a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64)
    ours, twin = L.mse_loss(a, b, reduction), F.mse_loss(a, b, reduction=reduction)
    torch.testing.assert_close(ours, twin)
    (g_ours,), (g_twin,) = torch.autograd.grad(ours.sum(), a), torch.autograd.grad(twin.sum(), a)
    torch.testing.assert_close(g_ours, g_twin)
    assert torch.autograd.gradcheck(lambda z: L.mse_loss(z, b, reduction), (a,))


def test_mse_refuses_broadcasting():
    pred = torch.randn(5, 1)
    y = torch.randn(5)
    with pytest.raises(ValueError, match="squeeze"):
        L.mse_loss(pred, y)
    with pytest.raises(TypeError, match="floating-point"):
        L.mse_loss(torch.tensor([1, 2]), torch.tensor([1, 2]))
