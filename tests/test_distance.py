"""magnitude_distance against closed forms on the line, an independent float64 dense reference
(tests/_reference.py, with duplicates removed by hand), finite differences, and its own
properties (symmetry, limits, subsets, multisets, batching, masks, work skipped for fixed y)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import magtorch
import magtorch.autograd
from magtorch.distance import magnitude_distance
from tests._reference import assert_close, line_magnitude, ref_magnitude

F64 = torch.float64


# ------------------------------------------------------------------------------- references


def _distinct(points) -> np.ndarray:
    """The distinct rows of ``points`` (the multiset's support)."""
    return np.unique(np.asarray(points, dtype=np.float64), axis=0)


def ref_distance(x, y, t: float, normalized: bool = False, metric: str = "euclidean") -> float:
    """2 Mag(X u Y) - Mag(X) - Mag(Y), each by a float64 dense solve on the distinct points."""
    x = np.asarray(x.detach() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    y = np.asarray(y.detach() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    union = _distinct(np.concatenate([x, y]))
    mu = float(ref_magnitude(union, t, metric=metric))
    mx = float(ref_magnitude(_distinct(x), t, metric=metric))
    my = float(ref_magnitude(_distinct(y), t, metric=metric))
    d = 2 * mu - mx - my
    return d / mu if normalized else d


def line_distance(x: list[float], y: list[float], t: float) -> float:
    """Closed form on the real line: Mag = 1 + sum tanh(t g / 2) over sorted distinct gaps."""

    def mag(points: list[float]) -> float:
        return line_magnitude(np.diff(np.unique(points)), t)

    return 2 * mag(x + y) - mag(x) - mag(y)


def _col(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64).unsqueeze(-1)


@pytest.fixture
def xy(rng):
    x = torch.tensor(rng.normal(size=(7, 3)), dtype=F64)
    y = torch.tensor(rng.normal(size=(5, 3)) + 0.4, dtype=F64)
    return x, y


# ------------------------------------------------------------------------------- values

X_LINE = [0.0, 1.0, 3.0]
Y_LINE = [0.5, 3.0, 6.0, 6.5]


@pytest.mark.parametrize("t", [0.05, 0.7, 3.0])
def test_closed_form_on_the_line(t):
    d = magnitude_distance(_col(X_LINE), _col(Y_LINE), t)
    assert_close(d, line_distance(X_LINE, Y_LINE, t), rtol=1e-12)


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("metric", ["euclidean", "l1"])
def test_agrees_with_dense_reference(xy, metric, normalized):
    x, y = xy
    ts = [0.3, 1.0, 4.0]
    d = magnitude_distance(x, y, torch.tensor(ts, dtype=F64), metric=metric, normalized=normalized)
    expected = [ref_distance(x, y, t, normalized, metric) for t in ts]
    assert_close(d, expected, rtol=1e-10)


def test_cosine_metric_agrees_with_reference(xy):
    x, y = xy
    d = magnitude_distance(x, y, 0.8, metric="cosine")
    assert_close(d, ref_distance(x, y, 0.8, metric="cosine"), rtol=1e-10)


def test_symmetric_and_non_negative(rng):
    for _ in range(5):
        x = torch.tensor(rng.normal(size=(int(rng.integers(1, 9)), 2)), dtype=F64)
        y = torch.tensor(rng.normal(size=(int(rng.integers(1, 9)), 2)), dtype=F64)
        t = float(rng.uniform(0.1, 5.0))
        expected = ref_distance(x, y, t)
        assert expected > 0
        assert_close(magnitude_distance(x, y, t), expected, rtol=1e-10)
        assert_close(magnitude_distance(y, x, t), expected, rtol=1e-10)


def test_zero_for_equal_permuted_and_duplicated_sets(xy):
    x, _ = xy
    ts = torch.tensor([0.2, 1.0, 10.0], dtype=F64)
    zero = torch.zeros(3, dtype=F64)
    # every term is Mag(X) (~1 to 7), so float64 rounding leaves at most a few 1e-15
    assert_close(magnitude_distance(x, x, ts), zero, rtol=0, atol=1e-13)
    permuted = x[torch.tensor([3, 0, 6, 1, 5, 2, 4])]
    assert_close(magnitude_distance(x, permuted, ts), zero, rtol=0, atol=1e-13)
    repeated = torch.cat([x, x[:3], x[:1]])  # a multiset with the same distinct points
    assert_close(magnitude_distance(repeated, x, ts), zero, rtol=0, atol=1e-13)
    assert_close(magnitude_distance(x[:1].expand(4, 3), x[:1], ts), zero, rtol=0, atol=0)


def test_shared_points_are_counted_once(xy):
    x, y = xy
    y_shared = torch.cat([y, x[:2], x[:2]])  # y holds two of x's points, twice
    d = magnitude_distance(x, y_shared, 0.9)
    assert_close(d, ref_distance(x, _distinct(y_shared.numpy()), 0.9), rtol=1e-10)


def test_small_scale_limit_is_zero():
    # on the line d_t ~ (t/2)(2 span(X u Y) - span(X) - span(Y)) as t -> 0
    for t in (1e-3, 1e-6):
        d = magnitude_distance(_col(X_LINE), _col(Y_LINE), t)
        expected = line_distance(X_LINE, Y_LINE, t)
        assert abs(expected - t / 2 * (2 * 6.5 - 3.0 - 6.0)) < t**2
        # Z_t has condition ~ 1 / t: the absolute error is ~ eps / t, relative to Mag ~ 1
        assert_close(d, expected, rtol=0, atol=1e-15 / t)


def test_large_scale_limit_counts_the_symmetric_difference(rng):
    # X and Y share 2 distinct points; X has 3 more (one repeated), Y 4 more
    shared = rng.normal(size=(2, 3))
    x = np.concatenate([shared, rng.normal(size=(3, 3)) + 5.0])
    x = np.concatenate([x, x[-1:]])
    y = np.concatenate([rng.normal(size=(4, 3)) - 5.0, shared, shared[:1]])
    x_t, y_t = torch.tensor(x, dtype=F64), torch.tensor(y, dtype=F64)
    assert float(torch.pdist(torch.tensor(_distinct(np.concatenate([x, y])))).min()) > 0.05
    d = magnitude_distance(x_t, y_t, 2000.0)  # exp(-2000 * 0.05) ~ 1e-44: Z_t = I in float64
    assert float(d) == 7.0
    on_line = magnitude_distance(_col(X_LINE), _col(Y_LINE), 1e3)
    assert float(on_line) == 5.0  # {0, 1, 3} vs {0.5, 3, 6, 6.5}: 3 is shared


def test_subset_gives_difference_of_magnitudes(xy):
    x, y = xy
    big = torch.cat([y, x])
    for t in (0.4, 2.5):
        expected = float(ref_magnitude(big, t)) - float(ref_magnitude(y, t))
        assert_close(magnitude_distance(y, big, t), expected, rtol=1e-10)
    sub, sup = [1.0, 3.0], [0.0, 1.0, 3.0, 4.5]
    d = magnitude_distance(_col(sub), _col(sup), 1.3)
    expected = line_magnitude([1.0, 2.0, 1.5], 1.3) - line_magnitude([2.0], 1.3)
    assert_close(d, expected, rtol=1e-12)


def test_two_singletons():
    # Mag of two points at distance r is 2 / (1 + e^{-t r}); singletons have magnitude 1
    d = magnitude_distance(_col([0.0]), _col([2.0]), 0.6, normalized=True)
    mu = 2 / (1 + math.exp(-1.2))
    assert_close(d, (2 * mu - 2) / mu, rtol=1e-13)


# ------------------------------------------------------------------------------- shapes


def test_batched_equals_looped(rng):
    x = torch.tensor(rng.normal(size=(2, 3, 6, 2)), dtype=F64)
    y = torch.tensor(rng.normal(size=(2, 3, 4, 2)), dtype=F64)
    ts = [0.5, 2.0]
    t = torch.tensor(ts, dtype=F64)
    d = magnitude_distance(x, y, t)
    assert d.shape == (2, 3, 2)
    for i in range(2):
        for j in range(3):
            # the same float64 computation, batched: equal up to rounding
            assert_close(d[i, j], magnitude_distance(x[i, j], y[i, j], t), rtol=1e-13)
            assert_close(d[i, j], [ref_distance(x[i, j], y[i, j], t) for t in ts], rtol=1e-10)
    assert magnitude_distance(x, y, 1.0).shape == (2, 3)


def test_masked_equals_unpadded(rng):
    sizes_x, sizes_y = [6, 3], [2, 5]
    x = torch.tensor(rng.normal(size=(2, 6, 3)), dtype=F64)
    y = torch.tensor(rng.normal(size=(2, 5, 3)), dtype=F64)
    x_mask = torch.arange(6) < torch.tensor(sizes_x)[:, None]
    y_mask = torch.arange(5) < torch.tensor(sizes_y)[:, None]
    x[~x_mask] = 1e3  # padding values must not matter
    y[~y_mask] = -7.0
    ts = torch.tensor([0.3, 3.0], dtype=F64)
    d = magnitude_distance(x, y, ts, x_mask=x_mask, y_mask=y_mask, normalized=True)
    for b in range(2):
        xb, yb = x[b, : sizes_x[b]], y[b, : sizes_y[b]]
        assert_close(d[b], magnitude_distance(xb, yb, ts, normalized=True), rtol=1e-13)
        expected = [ref_distance(xb, yb, float(t), normalized=True) for t in ts]
        assert_close(d[b], expected, rtol=1e-10)


def test_float32_in_float32_out(xy):
    x, y = xy
    d = magnitude_distance(x.float(), y.float(), 1.0)
    assert d.dtype == torch.float32
    # computed in float64 from the float32 points, then rounded once
    assert_close(d, ref_distance(x.float().double(), y.float().double(), 1.0), rtol=1e-7)


# ------------------------------------------------------------------------------- gradients


def test_gradcheck_points(xy):
    x, y = (p[:4].clone().requires_grad_() for p in xy)
    ts = torch.tensor([0.4, 1.7], dtype=F64)
    assert gradcheck(lambda x, y: magnitude_distance(x, y, ts), (x, y))
    assert gradcheck(lambda x, y: magnitude_distance(x, y, 0.9, normalized=True), (x, y))
    assert gradcheck(lambda x: magnitude_distance(x, y.detach(), 0.9), (x,))
    assert gradcheck(lambda y: magnitude_distance(x.detach(), y, 0.9, metric="l1"), (y,))


def test_gradcheck_scale(xy):
    x, y = (p[:4] for p in xy)
    t0 = torch.tensor(0.8, dtype=F64, requires_grad=True)
    assert gradcheck(lambda t: magnitude_distance(x, y, t), (t0,))
    ts = torch.tensor([0.3, 2.0], dtype=F64, requires_grad=True)
    assert gradcheck(lambda t: magnitude_distance(x, y, t, normalized=True), (ts,))


def test_scale_derivative_on_the_line():
    # d/dt of 1 + sum tanh(t g / 2) is sum (g / 2) / cosh^2(t g / 2)
    t = torch.tensor(0.7, dtype=F64, requires_grad=True)
    magnitude_distance(_col(X_LINE), _col(Y_LINE), t).backward()

    def dmag(points: list[float]) -> float:
        g = np.diff(np.unique(points))
        return float((g / 2 / np.cosh(0.7 * g / 2) ** 2).sum())

    expected = 2 * dmag(X_LINE + Y_LINE) - dmag(X_LINE) - dmag(Y_LINE)
    assert_close(t.grad, expected, rtol=1e-12)


def _solve_sizes(monkeypatch) -> list[int]:
    """Record the set size of every implicit-gradient computation in the backward pass."""
    sizes: list[int] = []
    original = magtorch.autograd.implicit_gradient

    def recording(d, *args, **kwargs):
        sizes.append(d.shape[-1])
        return original(d, *args, **kwargs)

    monkeypatch.setattr(magtorch.autograd, "implicit_gradient", recording)
    return sizes


def test_fixed_y_gets_no_gradient_and_costs_no_backward_work(xy, monkeypatch):
    x, y = xy  # n = 7, m = 5
    sizes = _solve_sizes(monkeypatch)
    xg = x.clone().requires_grad_()
    magnitude_distance(xg, y, torch.tensor([0.5, 2.0], dtype=F64)).sum().backward()
    assert y.grad is None and not y.requires_grad
    assert sorted(sizes) == [7, 12]  # X and X u Y; no backward work for the Y term
    assert torch.isfinite(xg.grad).all()

    sizes.clear()  # the control: with y requiring grad the Y term has a backward pass
    yg = y.clone().requires_grad_()
    magnitude_distance(x, yg, 1.0).backward()
    assert sorted(sizes) == [5, 12]
    sizes.clear()
    magnitude_distance(xg, yg, 1.0).backward()
    assert sorted(sizes) == [5, 7, 12]


def test_gradient_matches_finite_difference_of_reference(xy):
    x, y = xy
    xg = x.clone().requires_grad_()
    magnitude_distance(xg, y, 1.1).backward()
    h = 1e-6
    for i, k in [(0, 0), (3, 2), (6, 1)]:
        xp, xm = x.clone(), x.clone()
        xp[i, k] += h
        xm[i, k] -= h
        fd = (ref_distance(xp, y, 1.1) - ref_distance(xm, y, 1.1)) / (2 * h)
        assert_close(xg.grad[i, k], fd, rtol=1e-6, atol=1e-9)


def test_collapsed_generator_batch_is_valid(xy):
    _, y = xy
    x = torch.full((6, 3), 0.25, dtype=F64, requires_grad=True)
    d = magnitude_distance(x, y, torch.tensor([0.5, 2.0], dtype=F64))
    expected = [ref_distance(x[:1], y, t) for t in (0.5, 2.0)]
    assert_close(d, expected, rtol=1e-10)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    # the copies share the gradient of the single distinct point equally
    assert_close(x.grad, x.grad[:1].expand(6, 3), rtol=1e-12)
    single = x.detach()[:1].clone().requires_grad_()
    magnitude_distance(single, y, torch.tensor([0.5, 2.0], dtype=F64)).sum().backward()
    assert_close(x.grad.sum(0), single.grad[0], rtol=1e-10)


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y": torch.zeros(4, 2)}, "same number of features"),
        ({"y": torch.zeros(2, 4, 3)}, "same batch shape"),
        ({"x_mask": torch.ones(4, dtype=torch.bool)}, "x_mask must have shape"),
        ({"y_mask": torch.ones(3)}, "y_mask must have dtype"),
        ({"y_mask": torch.zeros(4, dtype=torch.bool)}, "empty set"),
        ({"metric": "precomputed"}, "precomputed"),
        ({"metric": "chebyshev"}, "unknown metric"),
        ({"t": 0.0}, "t must be finite and > 0"),
        ({"t": torch.ones(2, 2)}, "scalar or 1-d"),
        ({"normalized": "yes"}, "normalized must be a bool"),
        ({"solver": "magic"}, "unknown solver"),
        ({"x": torch.tensor([[0.0, float("nan"), 1.0]])}, "x contains NaN"),
        ({"x": torch.zeros(0, 3)}, "x is an empty set"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"x": torch.zeros(5, 3), "y": torch.ones(4, 3), "t": 1.0, **kwargs}
    x, y, t = args.pop("x"), args.pop("y"), args.pop("t")
    with pytest.raises(magtorch.MagtorchError, match=match):
        magnitude_distance(x, y, t, **args)
