"""Gradients: torch.autograd.gradcheck (finite differences) in float64, the closed form of
points on a line differentiated by hand, and magnitude_derivative against finite differences
of the independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import magtorch
from tests._reference import (
    assert_close,
    line_magnitude,
    line_magnitude_dt,
    line_points,
    ref_distances,
    ref_magnitude,
    ref_similarity,
    ref_weights,
)

F64 = torch.float64


def _x(rng, n=6, d=2):
    return torch.tensor(rng.normal(size=(n, d)), dtype=F64, requires_grad=True)


@pytest.mark.parametrize("metric", ["euclidean", "l1", "cosine"])
@pytest.mark.parametrize("t", [0.4, 2.0])
def test_gradcheck_magnitude_points(metric, t, rng):
    x = _x(rng)
    assert gradcheck(lambda x: magtorch.magnitude(x, t, metric=metric), (x,))


def test_gradcheck_magnitude_points_batched_several_scales(rng):
    x = torch.tensor(rng.normal(size=(2, 5, 3)), dtype=F64, requires_grad=True)
    ts = torch.tensor([0.3, 1.0, 3.0], dtype=F64)
    assert gradcheck(lambda x: magtorch.magnitude(x, ts), (x,))


def test_gradcheck_magnitude_scale(rng):
    x = torch.tensor(rng.normal(size=(7, 2)), dtype=F64)
    t0 = torch.tensor(0.8, dtype=F64, requires_grad=True)
    assert gradcheck(lambda t: magtorch.magnitude(x, t), (t0,))
    ts = torch.tensor([0.2, 1.0, 5.0], dtype=F64, requires_grad=True)
    assert gradcheck(lambda t: magtorch.magnitude(x, t), (ts,))


def test_gradcheck_magnitude_points_and_scale_jointly(rng):
    x = _x(rng, n=5, d=2)
    t0 = torch.tensor(1.3, dtype=F64, requires_grad=True)
    assert gradcheck(lambda x, t: magtorch.magnitude(x, t), (x, t0))


def test_gradcheck_weights(rng):
    x = _x(rng, n=5, d=2)
    assert gradcheck(lambda x: magtorch.weights(x, 0.9), (x,))
    t0 = torch.tensor(0.9, dtype=F64, requires_grad=True)
    assert gradcheck(lambda t: magtorch.weights(x.detach(), t), (t0,))


def test_gradcheck_potential(rng):
    x = _x(rng, n=5, d=2)
    z = torch.tensor(rng.normal(size=(3, 2)), dtype=F64, requires_grad=True)
    assert gradcheck(lambda z, x: magtorch.potential(z, x, 0.7), (z, x))


def test_gradcheck_loo_potential(rng):
    x = _x(rng, n=5, d=2)
    assert gradcheck(lambda x: magtorch.loo_potential(x, 1.1), (x,))


def test_gradcheck_positive_magnitude(rng):
    x = _x(rng, n=5, d=2)
    assert gradcheck(lambda x: magtorch.positive_magnitude(x, 0.9), (x,))


def test_gradcheck_masked(rng):
    x = _x(rng, n=6, d=2)
    mask = torch.tensor([True, True, False, True, True, False])

    def f(x):
        return magtorch.magnitude(x, 0.8, mask=mask)

    assert gradcheck(f, (x,))
    (g,) = torch.autograd.grad(f(x), x)
    # the padded rows do not enter the magnitude: their gradient is exactly zero
    assert torch.all(g[~mask] == 0)
    x_real = x.detach()[mask].clone().requires_grad_(True)
    (g_real,) = torch.autograd.grad(magtorch.magnitude(x_real, 0.8), x_real)
    assert_close(g[mask], g_real, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------- closed form on a line


@pytest.mark.parametrize("t", [0.3, 1.0, 5.0])
def test_gradient_on_a_line_closed_form(t):
    """d/dx_i [1 + sum_k tanh(t (x_{k+1} - x_k)/2)]
    = t/2 (sech^2(t g_{i-1}/2) - sech^2(t g_i/2)) for sorted points, g_i = x_{i+1} - x_i."""
    gaps = np.array([0.5, 1.2, 0.3, 2.0, 0.8])
    pts = line_points(gaps, start=-0.7)[:, 0]
    sech2 = 1.0 / np.cosh(t * gaps / 2) ** 2
    expected = np.zeros_like(pts)
    expected[1:] += t / 2 * sech2
    expected[:-1] -= t / 2 * sech2
    perm = np.array([2, 5, 0, 3, 1, 4])
    x = torch.tensor(pts[perm][:, None], dtype=F64, requires_grad=True)
    mag = magtorch.magnitude(x, t)
    (g,) = torch.autograd.grad(mag, x)
    assert_close(g[:, 0], expected[perm], rtol=1e-9, atol=1e-13)
    # gradient with respect to the scale: sum_k (g_k/2) sech^2(t g_k/2)
    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    (gt,) = torch.autograd.grad(magtorch.magnitude(x.detach(), tt), tt)
    assert_close(gt, line_magnitude_dt(gaps, t), rtol=1e-9)


def test_gradient_float32_on_a_line():
    gaps = np.array([0.5, 1.25, 0.25, 2.0])
    pts = line_points(gaps)[:, 0]
    t = 1.0
    sech2 = 1.0 / np.cosh(t * gaps / 2) ** 2
    expected = np.zeros_like(pts)
    expected[1:] += t / 2 * sech2
    expected[:-1] -= t / 2 * sech2
    x = torch.tensor(pts[:, None], dtype=torch.float32, requires_grad=True)
    (g,) = torch.autograd.grad(magtorch.magnitude(x, t), x)
    assert g.dtype == torch.float32
    assert_close(g[:, 0], expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- magnitude_derivative


@pytest.mark.parametrize("t", [0.1, 0.6, 2.0, 7.0])
def test_magnitude_derivative_line_closed_form(t, device):
    gaps = [0.5, 1.2, 0.3, 2.0]
    x = torch.tensor(line_points(gaps), device=device)
    dm = magtorch.magnitude_derivative(x, t)
    assert dm.device.type == device.type
    assert_close(dm, line_magnitude_dt(gaps, t), rtol=1e-10)


@pytest.mark.parametrize("t", [0.2, 1.0, 3.0])
def test_magnitude_derivative_against_finite_differences(t, rng):
    x = rng.normal(size=(8, 3))
    h = 1e-5 * t
    fd = (float(ref_magnitude(x, t + h)) - float(ref_magnitude(x, t - h))) / (2 * h)
    dm = magtorch.magnitude_derivative(torch.tensor(x), t)
    # central differences: truncation O(h^2 Mag''') ~ 1e-10, rounding ~ eps Mag / h ~ 1e-10
    assert_close(dm, fd, rtol=1e-7, atol=1e-9)
    # and the quadratic form w^T (D o Z) w of the reference weighting
    D = ref_distances(x)
    w = ref_weights(x, t)
    assert_close(dm, w @ (D * ref_similarity(D, t)) @ w, rtol=1e-10)


def test_magnitude_derivative_several_scales_and_batch(rng):
    x = rng.normal(size=(2, 6, 2))
    ts = [0.3, 1.5, 4.0]
    dm = magtorch.magnitude_derivative(torch.tensor(x), torch.tensor(ts, dtype=F64))
    assert dm.shape == (2, 3)
    for b in range(2):
        for k, t in enumerate(ts):
            h = 1e-5 * t
            fd = (float(ref_magnitude(x[b], t + h)) - float(ref_magnitude(x[b], t - h))) / (2 * h)
            assert_close(dm[b, k], fd, rtol=1e-7, atol=1e-9)


def test_magnitude_derivative_matches_line_value_and_magnitude():
    # sanity of the closed forms used above: Mag'(t) by central differences of the closed form
    gaps = [0.5, 1.2, 0.3]
    t, h = 0.9, 1e-5
    fd = (line_magnitude(gaps, t + h) - line_magnitude(gaps, t - h)) / (2 * h)
    assert abs(fd - line_magnitude_dt(gaps, t)) < 1e-9
    dm = magtorch.magnitude_derivative(torch.tensor(line_points(gaps)), t)
    assert_close(dm, fd, rtol=1e-8)


def test_magnitude_derivative_is_differentiable(rng):
    """With points that require grad, dMag/dt = w^T (D o Z) w is built from differentiable
    pieces: its value equals the no-grad path's, and gradcheck passes (the adjoint solve of the
    weights' backward is exercised)."""
    x = torch.tensor(rng.standard_normal((7, 2)), requires_grad=True)
    t = torch.tensor([0.6, 1.7], dtype=torch.float64)
    with_grad = magtorch.magnitude_derivative(x, t)
    assert with_grad.requires_grad
    assert_close(with_grad, magtorch.magnitude_derivative(x.detach(), t), rtol=1e-12)
    assert torch.autograd.gradcheck(lambda a: magtorch.magnitude_derivative(a, t), (x,))
