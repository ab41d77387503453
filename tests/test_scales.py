"""Scale selection and magnitude-function summaries: convergence_scale, magnitude_dimension,
magnitude_area, magnitude_difference, against closed forms and quadrature of the independent
float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import brentq, minimize_scalar

import magtorch
from tests._reference import (
    as64,
    assert_close,
    l1_grid_points,
    line_magnitude,
    line_points,
    ref_distances,
    ref_magnitude,
    ref_magnitude_many,
    ref_weights_from_distances,
)


def ref_convergence_scale(x, q=0.95, n_distinct=None):
    n = len(x) if n_distinct is None else n_distinct
    return brentq(lambda t: float(ref_magnitude(x, t)) - q * n, 1e-6, 1e6, xtol=1e-15, rtol=1e-15)


def ref_log_slopes(x, ts, h=1e-5):
    """t Mag'(t) / Mag(t) from central differences of log Mag in log t (reference solves)."""
    D = ref_distances(x)
    out = []
    for t in np.asarray(ts, dtype=np.float64):
        mp = float(ref_weights_from_distances(D, t * math.exp(h)).sum())
        mm = float(ref_weights_from_distances(D, t * math.exp(-h)).sum())
        out.append((math.log(mp) - math.log(mm)) / (2 * h))
    return np.array(out)


# ------------------------------------------------------------------------- convergence_scale


@pytest.mark.parametrize("q", [0.6, 0.8, 0.95, 0.99])  # q = 0.5: Mag = 1 only at t = 0
def test_convergence_scale_two_points(q, device):
    d = 2.3
    x = torch.tensor([[0.0, 1.0], [d, 1.0]], dtype=torch.float64, device=device)
    tc = magtorch.convergence_scale(x, q)
    assert tc.device.type == device.type
    # 2 / (1 + e^{-td}) = 2q  <=>  t = log(q / (1 - q)) / d
    assert_close(tc, math.log(q / (1 - q)) / d, rtol=1e-8)


@pytest.mark.parametrize("q", [0.7, 0.95])
def test_convergence_scale_hits_the_target(q, rng):
    x = rng.normal(size=(9, 3))
    tc = float(magtorch.convergence_scale(torch.tensor(x), q))
    assert_close(ref_magnitude(x, tc), q * 9, rtol=1e-8)
    # it is the smallest such scale: below it the magnitude stays under the target
    below = np.linspace(0.01, 1.0, 50) * tc * (1 - 1e-6)
    assert np.all(ref_magnitude_many(x, below) < q * 9)


def test_convergence_scale_line_closed_form():
    gaps = [0.5, 1.0, 0.25, 2.0]
    x = torch.tensor(line_points(gaps))
    tc = float(magtorch.convergence_scale(x, 0.9))
    assert_close(line_magnitude(gaps, tc), 0.9 * 5, rtol=1e-8)


def test_convergence_scale_batched_and_duplicates(rng):
    a = rng.normal(size=(6, 2))
    b = rng.normal(size=(6, 2))
    b_dup = np.concatenate([b[:4], b[[0, 1]]])  # 4 distinct points
    tc = magtorch.convergence_scale(torch.tensor(np.stack([a, b_dup])), 0.9)
    assert tc.shape == (2,)
    assert_close(tc[0], ref_convergence_scale(a, 0.9), rtol=1e-8)
    assert_close(tc[1], ref_convergence_scale(b[:4], 0.9), rtol=1e-8)


# ------------------------------------------------------------------------ magnitude_dimension


def _line_set():
    return np.linspace(0.0, 1.0, 101)[:, None]


def _grid_set(m):
    return l1_grid_points(m, 2) / (m - 1)


# The reference slope (central differences of log Mag in log t with step 1e-5, float64 solves)
# is good to ~1e-10; the implementation may maximise over the given grid of scales or refine
# between grid points, so the dimension must lie between the grid maximum and the continuous
# maximum over [t_min, t_max] (these differ by ~1e-5..1e-4 here), and must equal the slope at
# the scale it reports.
DIM_RTOL = 1e-7


def ref_dimension_bounds(x, ts):
    """(max of the slope over the grid ts, max over the interval [ts[0], ts[-1]])."""
    ts = np.asarray(ts, dtype=np.float64)
    slopes = ref_log_slopes(x, ts)
    i = int(slopes.argmax())
    lo, hi = math.log(ts[max(i - 1, 0)]), math.log(ts[min(i + 1, len(ts) - 1)])
    r = minimize_scalar(
        lambda s: -ref_log_slopes(x, [math.exp(s)])[0],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-9},
    )
    return float(slopes.max()), max(float(slopes.max()), float(-r.fun))


def _check_dimension(x, res_dim, res_scale, ts):
    grid_max, cont_max = ref_dimension_bounds(x, ts)
    dim = float(res_dim)
    assert grid_max * (1 - DIM_RTOL) <= dim <= cont_max * (1 + DIM_RTOL), (
        grid_max,
        cont_max,
        dim,
    )
    scale = float(res_scale)
    assert ts[0] * (1 - 1e-9) <= scale <= ts[-1] * (1 + 1e-9)
    assert_close(ref_log_slopes(x, [scale])[0], dim, rtol=DIM_RTOL)
    return grid_max


@pytest.mark.parametrize("name", ["line", "grid"])
def test_magnitude_dimension_explicit_scales(name):
    x = _line_set() if name == "line" else _grid_set(15)
    tc = ref_convergence_scale(x)
    ts = np.logspace(math.log10(tc) - 2, math.log10(tc), 64)
    res = magtorch.magnitude_dimension(torch.tensor(x), torch.tensor(ts))
    expected = _check_dimension(x, res.dimension, res.scale, ts)
    # honest expectation: a finite set's maximal slope differs from its "ideal" dimension
    # (0.927 for 101 points on a segment, 1.572 for a 15 x 15 grid)
    ideal = 1.0 if name == "line" else 2.0
    assert 0.6 * ideal < expected < 1.05 * ideal


def test_magnitude_dimension_default_scales():
    x = _line_set()
    tc = ref_convergence_scale(x)
    ts = np.logspace(math.log10(tc) - 2, math.log10(tc), 64)  # the documented default range
    res = magtorch.magnitude_dimension(torch.tensor(x))
    _check_dimension(x, res.dimension, res.scale, ts)


def test_magnitude_dimension_batched():
    x = np.stack([_line_set()[::2], _line_set()[::2] * 3.0])  # a set and a scaled copy
    ts = np.logspace(-1, 3, 64)
    res = magtorch.magnitude_dimension(torch.tensor(x), torch.tensor(ts))
    assert res.dimension.shape == (2,)
    assert res.scale.shape == (2,)
    for b in range(2):
        _check_dimension(x[b], res.dimension[b], res.scale[b], ts)


@pytest.mark.slow
def test_magnitude_dimension_fine_grid_approaches_two():
    x = _grid_set(30)
    tc = ref_convergence_scale(x)
    ts = np.logspace(math.log10(tc) - 2, math.log10(tc), 64)
    res = magtorch.magnitude_dimension(torch.tensor(x), torch.tensor(ts))
    expected = _check_dimension(x, res.dimension, res.scale, ts)
    assert expected > 1.6


# ----------------------------------------------------------------------------- magnitude_area

GAPS = np.array([0.5, 1.0, 0.25, 2.0, 0.75])
# Method tolerance for integrals of Mag over [0, t_max]: magtorch integrates by composite
# Gauss-Legendre quadrature (scales.py), exact to ~1e-12 on these analytic integrands; the
# references are closed forms or adaptive scipy quad at epsrel 1e-12.
AREA_RTOL = 1e-9


def line_area(gaps, t_max):
    """int_0^T (1 + sum tanh(t g/2)) dt = T + sum (2/g) log cosh(T g / 2)."""
    g = np.asarray(gaps)
    return t_max + float((2.0 / g * np.log(np.cosh(t_max * g / 2.0))).sum())


@pytest.mark.parametrize("t_max", [0.5, 3.0, 20.0])
def test_magnitude_area_line_closed_form(t_max, device):
    x = torch.tensor(line_points(GAPS), device=device)
    area = magtorch.magnitude_area(x, t_max, normalize=False)
    assert area.device.type == device.type
    assert_close(area, line_area(GAPS, t_max), rtol=AREA_RTOL)
    area_n = magtorch.magnitude_area(x, t_max)  # normalize=True: divided by t_max
    assert_close(area_n, line_area(GAPS, t_max) / t_max, rtol=AREA_RTOL)


def test_magnitude_area_default_t_max_is_convergence_scale():
    x = line_points(GAPS)
    tc = brentq(lambda t: line_magnitude(GAPS, t) - 0.95 * 6, 1e-6, 1e6, xtol=1e-14)
    area = magtorch.magnitude_area(torch.tensor(x))
    assert_close(area, line_area(GAPS, tc) / tc, rtol=AREA_RTOL)
    area_q = magtorch.magnitude_area(torch.tensor(x), q=0.8, normalize=False)
    tc8 = brentq(lambda t: line_magnitude(GAPS, t) - 0.8 * 6, 1e-6, 1e6, xtol=1e-14)
    assert_close(area_q, line_area(GAPS, tc8), rtol=AREA_RTOL)


def test_magnitude_area_against_reference_quadrature(rng):
    x = rng.normal(size=(8, 2))
    t_max = 6.0
    expected = quad(
        lambda t: float(ref_magnitude(x, t)) if t > 0 else 1.0,  # Mag(0 X) = 1
        0.0,
        t_max,
        epsabs=1e-13,
        epsrel=1e-12,
    )[0]
    area = magtorch.magnitude_area(torch.tensor(x), t_max, normalize=False)
    assert_close(area, expected, rtol=AREA_RTOL)


def test_magnitude_area_batched(rng):
    x = rng.normal(size=(3, 6, 2))
    t_max = 4.0
    area = magtorch.magnitude_area(torch.tensor(x), t_max)
    assert area.shape == (3,)
    for b in range(3):
        expected = (
            quad(
                lambda t, xb=x[b]: float(ref_magnitude(xb, t)) if t > 0 else 1.0,
                0,
                t_max,
                epsabs=1e-13,
                epsrel=1e-12,
            )[0]
            / t_max
        )
        assert_close(area[b], expected, rtol=AREA_RTOL)


# ------------------------------------------------------------------------ magnitude_difference


def test_magnitude_difference_identical_sets_is_zero(rng):
    x = rng.normal(size=(7, 2))
    perm = rng.permutation(7)
    d = magtorch.magnitude_difference(torch.tensor(x), torch.tensor(x[perm]), 5.0)
    assert abs(float(d)) < 1e-10
    d0 = magtorch.magnitude_difference(torch.tensor(x), torch.tensor(x))
    assert abs(float(d0)) < 1e-10


def test_magnitude_difference_symmetric(rng):
    x = torch.tensor(rng.normal(size=(7, 2)))
    y = torch.tensor(rng.normal(size=(5, 2)) * 2.0)
    dxy = magtorch.magnitude_difference(x, y, 4.0)
    dyx = magtorch.magnitude_difference(y, x, 4.0)
    assert_close(dxy, dyx, rtol=1e-12)
    assert float(dxy) > 0


def test_magnitude_difference_lines_closed_form():
    gx = np.array([0.5, 1.0, 0.25])
    gy = np.array([2.0, 0.1, 0.3, 0.6])
    x, y = line_points(gx), line_points(gy)
    t_max = 8.0

    def integrand(t):
        return abs(line_magnitude(gx, t) - line_magnitude(gy, t))

    expected = quad(integrand, 0.0, t_max, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    d = magtorch.magnitude_difference(torch.tensor(x), torch.tensor(y), t_max, normalize=False)
    assert_close(d, expected, rtol=AREA_RTOL)
    dn = magtorch.magnitude_difference(torch.tensor(x), torch.tensor(y), t_max)
    assert_close(dn, expected / t_max, rtol=AREA_RTOL)


def test_magnitude_difference_default_t_max():
    gx = np.array([0.5, 1.0, 0.25])
    gy = np.array([2.0, 0.1, 0.3, 0.6])
    tcx = brentq(lambda t: line_magnitude(gx, t) - 0.95 * 4, 1e-6, 1e6, xtol=1e-14)
    tcy = brentq(lambda t: line_magnitude(gy, t) - 0.95 * 5, 1e-6, 1e6, xtol=1e-14)
    t_max = max(tcx, tcy)
    expected = (
        quad(
            lambda t: abs(line_magnitude(gx, t) - line_magnitude(gy, t)),
            0.0,
            t_max,
            epsabs=1e-13,
            epsrel=1e-12,
            limit=200,
        )[0]
        / t_max
    )
    d = magtorch.magnitude_difference(torch.tensor(line_points(gx)), torch.tensor(line_points(gy)))
    assert_close(d, expected, rtol=AREA_RTOL)
    assert as64(d).shape == ()


def test_magnitude_difference_crossing_functions():
    """Mag_X and Mag_Y cross (6 close points vs 3 far points): |Mag_X - Mag_Y| has a kink at
    the crossing, which the integral must still resolve (reference: scipy quad split there)."""
    gx = np.full(5, 0.2)
    gy = np.array([2.0, 2.0])

    def diff(t):
        return line_magnitude(gx, t) - line_magnitude(gy, t)

    t_cross = brentq(diff, 0.5, 20.0, xtol=1e-15)
    assert diff(1.0) < 0 < diff(10.0)  # precondition: the functions cross once
    x, y = torch.tensor(line_points(gx)), torch.tensor(line_points(gy))
    for t_max in [8.0, 50.0]:
        expected = quad(
            lambda t: abs(diff(t)), 0.0, t_max, points=[t_cross], epsabs=1e-13, epsrel=1e-12
        )[0]
        d = magtorch.magnitude_difference(x, y, t_max, normalize=False)
        # a kink costs accuracy only in the panel containing it; 1e-6 is still demanded of a
        # summary statistic (locate the sign change and split the panel there to get ~1e-12)
        assert_close(d, expected, rtol=1e-6, msg=f"t_max={t_max}")


def test_convergence_scale_warm_start_finds_the_same_root():
    """Starting the search at a nearby guess (as the potential callback does epoch to epoch)
    gives the same scale: Mag(tX) = q n to float64 accuracy, checked by the reference."""
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.standard_normal((60, 3)))
    cold = magtorch.convergence_scale(x)
    for guess in (0.5 * float(cold), 1.3 * float(cold), 4.0 * float(cold)):
        warm = magtorch.convergence_scale(x, t_init=guess)
        assert abs(float(warm) - float(cold)) <= 1e-10 * float(cold)
    mag = float(ref_magnitude(x, float(cold)))
    assert abs(mag - 0.95 * 60) <= 1e-9 * 57


def test_convergence_scale_rejects_bad_t_init():
    x = torch.randn(2, 10, 2, dtype=torch.float64)
    with pytest.raises(magtorch.MagtorchError, match="t_init"):
        magtorch.convergence_scale(x, t_init=[1.0, 2.0, 3.0])
    with pytest.raises(magtorch.MagtorchError, match="t_init"):
        magtorch.convergence_scale(x, t_init=-1.0)


@pytest.mark.parametrize("tol", [1e-4, 1e-8])
def test_convergence_scale_tolerance_is_met(tol):
    """A looser ``tol`` stops earlier but still puts Mag(tX) within tol of q n (reference)."""
    rng = np.random.default_rng(11)
    x = torch.tensor(rng.standard_normal((80, 4)))
    t = float(magtorch.convergence_scale(x, tol=tol, t_init=0.7))
    mag = float(ref_magnitude(x, t))
    assert abs(mag - 0.95 * 80) <= tol * 0.95 * 80
    assert abs(t / ref_convergence_scale(x) - 1) < 1e-2


@pytest.mark.parametrize("tol", [0.0, 1.0, -1e-3])
def test_convergence_scale_rejects_bad_tol(tol):
    with pytest.raises(magtorch.MagtorchError, match="tol"):
        magtorch.convergence_scale(torch.randn(5, 2, dtype=torch.float64), tol=tol)
