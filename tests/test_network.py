"""Tests for magtorch.weight_magnitude: the line closed form, sampling, parameter selection.

Every number compared against comes from an independent float64 dense solve
(``torch.linalg.solve`` on ``exp(-t |x_i - x_j|)``, tests._reference) on the *distinct* values
(a multiset's magnitude is that of its distinct points), or from a finite difference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from magtorch import magnitude as engine_magnitude
from magtorch import set_memory_budget
from magtorch.errors import MagtorchError, MemoryBudgetError
from magtorch.network import (
    line_magnitude,
    line_weights,
    sampled_line_magnitude,
    select_parameters,
    weight_magnitude,
)
from tests._reference import F64, assert_close, ref_magnitude, ref_weights

SCALES = [0.05, 0.7, 3.0, 40.0]


# ----------------------------------------------------------------------------- references


def ref_line_magnitude(values, t: float) -> float:
    """Dense float64 magnitude of the distinct values, as points of R^1."""
    u = np.unique(np.asarray(values, dtype=np.float64))
    return float(ref_magnitude(u[:, None], t))


def ref_line_weights(values, t: float) -> np.ndarray:
    """Dense float64 weighting of the distinct values, split equally among copies."""
    v = np.asarray(values, dtype=np.float64)
    u, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    w = ref_weights(u[:, None], t).numpy()
    return w[inverse] / counts[inverse]


def ref_dense_grad(values: np.ndarray, t: float) -> np.ndarray:
    """dMag/dvalues by autograd through a float64 dense solve (distinct values only)."""
    x = torch.tensor(values, dtype=F64, requires_grad=True)
    z = torch.exp(-t * (x[:, None] - x[None, :]).abs())
    w = torch.linalg.solve(z, torch.ones(len(values), dtype=F64))
    w.sum().backward()
    return x.grad.numpy()


def ref_points_magnitude(points: torch.Tensor, t: float) -> torch.Tensor:
    """Differentiable float64 dense magnitude of points (n, d) under the Euclidean metric."""
    diff = points[:, None, :] - points[None, :, :]
    d = diff.pow(2).sum(-1).clamp_min(1e-300).sqrt() * (1 - torch.eye(len(points), dtype=F64))
    z = torch.exp(-t * d)
    return torch.linalg.solve(z, torch.ones(len(points), dtype=F64)).sum()


def with_duplicates(rng: np.random.Generator, n: int) -> np.ndarray:
    """n values on a 0.25 grid in [-3, 3]: for n >= 10 many repeats."""
    return np.round(rng.uniform(-3, 3, n) * 4) / 4


# ----------------------------------------------------------------------------- line_magnitude


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_line_magnitude_matches_dense_solve_with_duplicates(rng, n: int) -> None:
    values = with_duplicates(rng, n)
    x = torch.tensor(values, dtype=F64)
    got = line_magnitude(x, torch.tensor(SCALES, dtype=F64))
    expected = [ref_line_magnitude(values, t) for t in SCALES]
    assert_close(got, expected, rtol=1e-10)


def test_line_magnitude_batched_shapes(rng) -> None:
    values = rng.normal(size=(2, 3, 15))
    values[0, 1, :5] = values[0, 1, 5]  # a repeated value in one set
    got = line_magnitude(torch.tensor(values), torch.tensor(SCALES, dtype=F64))
    assert got.shape == (2, 3, len(SCALES))
    expected = [[[ref_line_magnitude(v, t) for t in SCALES] for v in row] for row in values]
    assert_close(got, expected, rtol=1e-10)
    scalar = line_magnitude(torch.tensor(values), 0.7)
    assert scalar.shape == (2, 3)
    assert_close(scalar, np.array(expected)[..., 1], rtol=1e-10)


def test_line_magnitude_all_equal_is_one_with_zero_gradient() -> None:
    x = torch.full((50,), 0.3, dtype=F64, requires_grad=True)
    mag = line_magnitude(x, 5.0)
    assert mag.item() == 1.0
    mag.backward()
    assert torch.equal(x.grad, torch.zeros(50, dtype=F64))


def test_line_magnitude_float32_is_accurate(rng) -> None:
    values = (rng.normal(size=200_000) * 0.05).astype(np.float32)
    t = 300.0
    # independent: float64 sort of the float32 values, exactly summed
    s = np.sort(values.astype(np.float64))
    expected = 1.0 + math.fsum(np.tanh(t * np.diff(s) / 2))
    got = line_magnitude(torch.from_numpy(values), t)
    assert got.dtype == torch.float32
    # float64 inside: only the final rounding to float32 (2^-24 relative) remains
    assert abs(float(got) - expected) / expected < 1.2e-7


def test_line_magnitude_gradcheck() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(12, dtype=F64, generator=gen).requires_grad_()
    t = torch.tensor([0.5, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(line_magnitude, (x, t))
    x2 = torch.randn(2, 6, dtype=F64, generator=gen).requires_grad_()
    t2 = torch.tensor(1.3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(line_magnitude, (x2, t2))


def test_line_magnitude_gradient_matches_dense_solve_and_engine(rng) -> None:
    values = rng.normal(size=25)
    t = 1.7
    x = torch.tensor(values, requires_grad=True)
    line_magnitude(x, t).backward()
    np.testing.assert_allclose(x.grad.numpy(), ref_dense_grad(values, t), rtol=1e-8, atol=1e-12)
    # the engine's implicit gradient on the same points agrees
    y = torch.tensor(values[:, None], requires_grad=True)
    engine_magnitude(y, t).backward()
    np.testing.assert_allclose(x.grad.numpy(), y.grad[:, 0].numpy(), rtol=1e-8, atol=1e-12)


def test_line_magnitude_scale_gradient_matches_finite_difference(rng) -> None:
    values = with_duplicates(rng, 30)
    t = torch.tensor(2.0, dtype=F64, requires_grad=True)
    line_magnitude(torch.tensor(values), t).backward()
    h = 1e-5
    fd = (ref_line_magnitude(values, 2.0 + h) - ref_line_magnitude(values, 2.0 - h)) / (2 * h)
    assert float(t.grad) == pytest.approx(fd, rel=1e-7)


def test_repeated_values_share_the_gradient_of_their_distinct_point() -> None:
    distinct = np.array([-1.0, 0.2, 0.5, 2.0])
    copies = np.array([3, 1, 2, 1])
    values = np.repeat(distinct, copies)
    perm = np.random.default_rng(0).permutation(len(values))
    t = 1.1
    x = torch.tensor(values[perm], requires_grad=True)
    line_magnitude(x, t).backward()
    grad = np.empty(len(values))
    grad[perm] = x.grad.numpy()
    expected = np.repeat(ref_dense_grad(distinct, t) / copies, copies)
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- line_weights


@pytest.mark.parametrize("n", [1, 2, 9, 40])
def test_line_weights_match_dense_solve(rng, n: int) -> None:
    values = with_duplicates(rng, n)
    got = line_weights(torch.tensor(values), torch.tensor(SCALES, dtype=F64))
    assert got.shape == (len(SCALES), n)
    expected = np.stack([ref_line_weights(values, t) for t in SCALES])
    assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert_close(got.sum(-1), [ref_line_magnitude(values, t) for t in SCALES], rtol=1e-10)


def test_line_weights_batched_float32_and_gradient(rng) -> None:
    values = rng.normal(size=(3, 8))
    got = line_weights(torch.tensor(values, dtype=torch.float32), 2.0)
    assert got.shape == (3, 8) and got.dtype == torch.float32
    assert_close(got, np.stack([ref_line_weights(v, 2.0) for v in values]), rtol=2e-6)
    x = torch.tensor(values[0], requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: line_weights(v, 0.8), (x,))


# ----------------------------------------------------------------------------- sampled


def test_sampled_is_exact_when_everything_fits(rng) -> None:
    values = with_duplicates(rng, 30)
    scales = torch.tensor(SCALES, dtype=F64)
    got = sampled_line_magnitude(torch.tensor(values), scales, n_samples=28)
    assert_close(got, [ref_line_magnitude(values, t) for t in SCALES], rtol=1e-10)


def test_sampled_is_a_lower_bound_keeps_extremes_and_is_reproducible() -> None:
    values = np.random.default_rng(1).permutation(np.arange(100.0))
    x = torch.tensor(values, requires_grad=True)
    t = torch.tensor([1e-3, 0.3, 3.0], dtype=F64)
    gen = torch.Generator().manual_seed(7)
    est = sampled_line_magnitude(x, t, n_samples=5, generator=gen)
    est_values = est.detach()
    exact = [ref_line_magnitude(values, float(s)) for s in t]
    assert bool((est_values <= torch.tensor(exact) + 1e-12).all())  # monotone under inclusion
    # both extremes 0 and 99 are in: at small t any such subset has 1 + t * 99 / 2 - O(t^3),
    # while without an extreme the range is at most 98
    assert float(est_values[0]) > 1 + math.tanh(1e-3 * 99 / 2) - 1e-12
    assert float(est_values[0]) < 1 + 99 * math.tanh(1e-3 / 2) + 1e-12
    # at t = 3 (gaps of 1 count tanh(1.5) each) seven points are far below the exact value
    assert float(est_values[2]) < 1 + 6 * math.tanh(3 * 99 / 2 / 6) + 1e-12 < exact[2] / 2
    est.sum().backward()
    touched = x.grad != 0
    assert int(touched.sum()) <= 7
    assert bool(touched[values.argmin()]) and bool(touched[values.argmax()])
    again = sampled_line_magnitude(x, t, n_samples=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(est.detach(), again.detach())


# ----------------------------------------------------------------------------- parameters


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)).double()


def test_select_parameters_defaults_patterns_predicates_and_trainable() -> None:
    net = small_net()
    names = [n for n, _ in select_parameters(net)]
    assert names == ["0.weight", "2.weight"]  # not biases, not LayerNorm's 1-d scale
    assert [n for n, _ in select_parameters(net, include="*.bias")] == [
        "0.bias",
        "1.bias",
        "2.bias",
    ]
    assert [n for n, _ in select_parameters(net, include=["0.*", "2.bias"])] == [
        "0.weight",
        "0.bias",
        "2.bias",
    ]
    by_predicate = select_parameters(net, include=lambda name, p: p.shape[0] == 2)
    assert [n for n, _ in by_predicate] == ["2.weight", "2.bias"]
    net[0].weight.requires_grad_(False)
    assert [n for n, _ in select_parameters(net)] == ["2.weight"]
    assert len(select_parameters(net, trainable_only=False)) == 2
    with pytest.raises(MagtorchError, match="no parameter selected.*trainable_only"):
        select_parameters(net, include="0.weight")


def test_select_parameters_accepts_tensors_mappings_and_pairs() -> None:
    a = torch.randn(3, 2, requires_grad=True)
    b = torch.randn(4, 4, requires_grad=True)
    assert [n for n, _ in select_parameters([a, b, a])] == ["0", "1"]  # tied: once
    assert [n for n, _ in select_parameters({"a": a, "b": b})] == ["a", "b"]
    assert [n for n, _ in select_parameters([("x", a)])] == ["x"]
    assert [n for n, _ in select_parameters(a)] == ["0"]
    with pytest.raises(MagtorchError, match="not a tensor"):
        select_parameters([a, 3.0])
    with pytest.raises(MagtorchError, match="include"):
        select_parameters([a], include=3)


def test_scalar_mode_whole_model_and_per_layer() -> None:
    net = small_net()
    w0 = net[0].weight.detach().numpy().ravel()
    w2 = net[2].weight.detach().numpy().ravel()
    t = 2.5
    whole = weight_magnitude(net, t)
    assert_close(whole, ref_line_magnitude(np.concatenate([w0, w2]), t), rtol=1e-10)
    total, parts = weight_magnitude(net, t, per_layer=True, return_per_layer=True)
    m0, m2 = ref_line_magnitude(w0, t), ref_line_magnitude(w2, t)
    assert_close(parts["0.weight"], m0, rtol=1e-10)
    assert_close(parts["2.weight"], m2, rtol=1e-10)
    assert_close(total, m0 + m2, rtol=1e-10)
    mean = weight_magnitude(net, torch.tensor([t, 1.0]), per_layer=True, reduction="mean")
    assert_close(mean[0], (m0 + m2) / 2, rtol=1e-10)
    # gradients reach the selected weights only
    whole.backward()
    assert net[0].weight.grad is not None and net[0].bias.grad is None


def test_sampled_mode_matches_exact_on_small_models() -> None:
    net = small_net()  # 20 weights <= 1000 + 2: the sample is everything
    assert_close(weight_magnitude(net, 1.5, mode="sampled"), weight_magnitude(net, 1.5), rtol=0)


def test_neurons_mode_matches_dense_reference_and_gradient() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 5, 3), nn.Flatten(), nn.Linear(4, 6)).double()
    t = 0.8
    total, parts = weight_magnitude(net, t, mode="neurons", return_per_layer=True)
    conv = net[0].weight.detach().reshape(5, -1)  # each output channel: 2 * 3 * 3 = 18 weights
    lin = net[2].weight.detach()
    ref_conv = float(ref_magnitude(conv, t))
    ref_lin = float(ref_magnitude(lin, t))
    assert_close(parts["0.weight"], ref_conv, rtol=1e-10)
    assert_close(parts["2.weight"], ref_lin, rtol=1e-10)
    assert_close(total, ref_conv + ref_lin, rtol=1e-10)
    mean = weight_magnitude(net, t, mode="neurons", reduction="mean")
    assert_close(mean, (ref_conv + ref_lin) / 2, rtol=1e-10)
    total.backward()
    w = lin.clone().requires_grad_()
    ref_points_magnitude(w, t).backward()
    assert_close(net[2].weight.grad, w.grad, rtol=1e-7, atol=1e-12)


def test_neurons_mode_errors_name_the_parameter() -> None:
    net = small_net()
    with pytest.raises(MagtorchError, match="'0.bias'"):
        weight_magnitude(net, 1.0, mode="neurons", include="0.*")
    set_memory_budget(64)
    try:
        # the dense solver refuses (solver="auto" would go matrix-free instead)
        with pytest.raises(MemoryBudgetError, match="'0.weight' has 4 neurons"):
            weight_magnitude(net, 1.0, mode="neurons", solver="cholesky")
    finally:
        set_memory_budget(None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "exact"}, "mode must be one of"),
        ({"reduction": "max"}, "reduction must be one of"),
        ({"per_layer": 1}, "per_layer"),
        ({"mode": "sampled", "n_samples": 0}, "n_samples"),
        ({"mode": "sampled", "generator": 3}, "generator"),
    ],
)
def test_weight_magnitude_rejects_bad_arguments(kwargs, match: str) -> None:
    net = nn.Linear(40, 40)
    with pytest.raises(MagtorchError, match=match):
        weight_magnitude(net, 1.0, **kwargs)


def test_line_functions_reject_bad_values() -> None:
    with pytest.raises(MagtorchError, match="empty"):
        line_magnitude(torch.zeros(0), 1.0)
    with pytest.raises(MagtorchError, match="NaN"):
        line_weights(torch.tensor([0.0, math.nan]), 1.0)
    with pytest.raises(MagtorchError, match="t must be finite and > 0"):
        line_magnitude(torch.zeros(3), -1.0)
    with pytest.raises(MagtorchError, match="0-d"):
        line_magnitude(torch.tensor(1.0), 1.0)
