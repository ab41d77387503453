"""Oracle tests: magnitude, weights and magnitude_function against exact closed forms
(DESIGN.md section 1) and against an independent float64 dense solve."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import magtorch
from tests._reference import (
    as64,
    assert_close,
    l1_grid_magnitude,
    l1_grid_points,
    line_magnitude,
    line_points,
    line_weights,
    polygon_magnitude,
    polygon_points,
    ref_distances,
    ref_magnitude,
    ref_weights,
    simplex_magnitude,
    simplex_points,
    two_point_magnitude,
)

RTOL = 1e-10  # dense float64 solve on matrices with condition number <= ~1e5
TS = [1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0]
TS32 = np.logspace(-2, 2, 9).tolist()
GAPS = [0.5, 1.3, 2.0, 0.7, 0.05]


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


# ------------------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("t", TS)
def test_two_points(t, device):
    d = 1.7
    x = torch.tensor([[0.0, 0.0], [d, 0.0]], dtype=torch.float64, device=device)
    mag = magtorch.magnitude(x, t)
    assert mag.device.type == device.type
    assert mag.shape == ()
    assert_close(mag, two_point_magnitude(d, t), rtol=RTOL)
    w = magtorch.weights(x, t)
    assert w.device.type == device.type
    assert_close(w, [two_point_magnitude(d, t) / 2] * 2, rtol=RTOL)


@pytest.mark.parametrize("t", TS)
def test_points_on_a_line(t, device):
    x = line_points(GAPS, start=-1.3)
    perm = np.array([3, 0, 5, 1, 4, 2])  # unsorted input: the oracle must not rely on order
    xt = torch.tensor(x[perm], device=device)
    assert_close(magtorch.magnitude(xt, t), line_magnitude(GAPS, t), rtol=RTOL)
    w = magtorch.weights(xt, t)
    assert w.device.type == device.type
    assert_close(w, line_weights(GAPS, t)[perm], rtol=RTOL, atol=1e-14)


def test_points_on_a_line_embedded_in_3d(device):
    # a line segment in R^3 along a generic direction is isometric to the 1-D set
    direction = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    x = line_points(GAPS) * direction + np.array([0.3, 0.1, -4.0])
    for t in [0.2, 2.0]:
        mag = magtorch.magnitude(torch.tensor(x, device=device), t)
        assert_close(mag, line_magnitude(GAPS, t), rtol=RTOL)


@pytest.mark.parametrize("n", [2, 3, 5, 9])
@pytest.mark.parametrize("t", [0.01, 1.0, 20.0])
def test_regular_simplex(n, t, device):
    d = 1.5
    x = torch.tensor(simplex_points(n, d), device=device)
    assert_close(magtorch.magnitude(x, t), simplex_magnitude(n, d, t), rtol=RTOL)
    # homogeneous space: all weights equal, Mag / n
    assert_close(magtorch.weights(x, t), [simplex_magnitude(n, d, t) / n] * n, rtol=RTOL)


@pytest.mark.parametrize("m", [3, 4, 8, 13])
@pytest.mark.parametrize("t", [0.01, 0.7, 5.0])
def test_regular_polygon(m, t, device):
    radius = 1.2
    x = torch.tensor(polygon_points(m, radius), device=device)
    assert_close(magtorch.magnitude(x, t), polygon_magnitude(m, radius, t), rtol=RTOL)


@pytest.mark.parametrize("m,k", [(2, 3), (3, 2), (4, 2), (3, 3)])
@pytest.mark.parametrize("t", [0.05, 1.0, 6.0])
def test_l1_grid(m, k, t, device):
    x = torch.tensor(l1_grid_points(m, k), device=device)
    mag = magtorch.magnitude(x, t, metric="l1")
    assert mag.device.type == device.type
    assert_close(mag, l1_grid_magnitude(m, k, t), rtol=RTOL)


@pytest.mark.parametrize("t", [0.1, 1.0, 4.0])
def test_l1_product_of_lines_multiplies(t, device):
    gx, gy = [0.4, 1.1, 0.3], [2.0, 0.25]
    px, py = line_points(gx)[:, 0], line_points(gy)[:, 0]
    prod = np.array([[a, b] for a in px for b in py])
    mag = magtorch.magnitude(torch.tensor(prod, device=device), t, metric="l1")
    assert_close(mag, line_magnitude(gx, t) * line_magnitude(gy, t), rtol=RTOL)


@pytest.mark.parametrize("t", [0.3, 2.0])
def test_l1_product_general(t, rng):
    # X: 5 points of R^2, Y: a 1-D set; X x_1 Y in R^3 with the l1 metric
    xs = rng.normal(size=(5, 2))
    gy = [0.6, 1.5, 0.2]
    py = line_points(gy)[:, 0]
    prod = np.array([[*p, b] for p in xs for b in py])
    mag = magtorch.magnitude(torch.tensor(prod), t, metric="l1")
    expected = float(ref_magnitude(xs, t, metric="l1")) * line_magnitude(gy, t)
    assert_close(mag, expected, rtol=RTOL)


def test_precomputed_matches_closed_form(device):
    x = line_points(GAPS)
    D = ref_distances(x).to(device)
    for t in [0.1, 2.0]:
        mag = magtorch.magnitude(D, t, metric="precomputed")
        assert mag.device.type == device.type
        assert_close(mag, line_magnitude(GAPS, t), rtol=RTOL)


def test_cosine_metric_against_dense_reference(rng):
    # points on an arc of the circle: the angular distance restricted to an arc of length
    # < pi is isometric to the arc length on a line, so the line closed form applies.
    angles = np.array([0.0, 0.3, 0.45, 1.2, 2.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1) * rng.uniform(0.5, 3.0, (5, 1))
    gaps = np.diff(angles)
    for t in [0.5, 3.0]:
        mag = magtorch.magnitude(torch.tensor(x), t, metric="cosine")
        assert_close(mag, line_magnitude(gaps, t), rtol=1e-9)
    # generic points on S^2 (positive definite at these scales): dense reference
    y = rng.normal(size=(7, 3))
    for t in [1.0, 4.0]:
        mag = magtorch.magnitude(torch.tensor(y), t, metric="cosine")
        assert_close(mag, ref_magnitude(y, t, metric="cosine"), rtol=1e-9)


# ------------------------------------------------------------------------------------ limits


def test_small_t_limit_is_one(rng):
    x = rng.normal(size=(6, 3))
    t = 1e-4
    mag = float(magtorch.magnitude(torch.tensor(x), t))
    assert abs(mag - 1.0) < 1e-3
    assert_close(mag, ref_magnitude(x, t), rtol=1e-9)  # cond(Z) ~ 1e5 here


def test_large_t_limit_is_number_of_distinct_points(rng):
    x = rng.normal(size=(9, 2))
    x = np.concatenate([x, x[:2]])  # 11 rows, 9 distinct points
    dmin = min(np.linalg.norm(x[i] - x[j]) for i in range(9) for j in range(i + 1, 9))
    t = 50.0 / dmin  # off-diagonal similarities <= exp(-50)
    mag = magtorch.magnitude(torch.tensor(x), t)
    assert_close(mag, 9.0, rtol=1e-12)


# ------------------------------------------------------------------------------- multisets


@pytest.mark.parametrize("t", [0.2, 1.0, 5.0])
def test_duplicates_count_once(t, device):
    distinct = line_points(GAPS)
    copies = [0, 2, 2, 5]  # point 0 twice, point 2 three times, point 5 twice
    rows = np.concatenate([np.arange(len(distinct)), copies])
    x = torch.tensor(distinct[rows], device=device)
    mag = magtorch.magnitude(x, t)
    assert mag.device.type == device.type
    assert_close(mag, line_magnitude(GAPS, t), rtol=RTOL)
    # the weight of a repeated point is split equally among its copies
    w = magtorch.weights(x, t).cpu()
    w_distinct = line_weights(GAPS, t)
    multiplicity = np.bincount(rows, minlength=len(distinct))
    expected = w_distinct[rows] / multiplicity[rows]
    assert_close(w, expected, rtol=RTOL, atol=1e-14)
    res = magtorch.solve(x, t)
    assert int(res.info.n_distinct) == len(distinct)


def test_duplicates_batched_with_different_distinct_counts():
    x = torch.tensor(
        [
            [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 2.0]],  # 3 distinct
            [[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [2.0, 2.0]],  # 4 distinct
        ],
        dtype=torch.float64,
    )
    t = 0.8
    mag = magtorch.magnitude(x, t)
    expected = [ref_magnitude(x[0, [0, 1, 3]], t), ref_magnitude(x[1], t)]
    assert_close(mag, torch.stack(expected), rtol=RTOL)
    res = magtorch.solve(x, t)
    assert res.info.n_distinct.tolist() == [3, 4]


# ---------------------------------------------------------------------------- several scales


def test_vector_of_scales_gives_trailing_axis(rng, device):
    x = torch.tensor(rng.normal(size=(7, 3)), device=device)
    ts = [0.05, 0.3, 1.0, 4.0]
    tt = torch.tensor(ts, dtype=torch.float64, device=device)
    mag = magtorch.magnitude(x, tt)
    w = magtorch.weights(x, tt)
    assert mag.shape == (4,)
    assert w.shape == (4, 7)
    assert mag.device.type == device.type
    for k, t in enumerate(ts):
        assert_close(mag[k], magtorch.magnitude(x, t), rtol=1e-12)
        assert_close(w[k], magtorch.weights(x, t), rtol=1e-12)
        assert_close(mag[k], ref_magnitude(x, t), rtol=RTOL)
    # a python list of scales is the same as a tensor of scales
    assert_close(magtorch.magnitude(x, ts), mag, rtol=1e-12)


def test_vector_of_scales_batched(rng):
    x = torch.tensor(rng.normal(size=(2, 3, 6, 2)))  # two leading batch dims
    ts = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    mag = magtorch.magnitude(x, ts)
    w = magtorch.weights(x, ts)
    assert mag.shape == (2, 3, 3)
    assert w.shape == (2, 3, 3, 6)
    for i in range(2):
        for j in range(3):
            for k, t in enumerate(ts.tolist()):
                assert_close(mag[i, j, k], ref_magnitude(x[i, j], t), rtol=RTOL)
                assert_close(w[i, j, k], ref_weights(x[i, j], t), rtol=RTOL, atol=1e-14)


def test_zero_dim_tensor_scale(rng):
    x = torch.tensor(rng.normal(size=(5, 2)))
    mag = magtorch.magnitude(x, torch.tensor(0.9, dtype=torch.float64))
    assert mag.shape == ()
    assert_close(mag, ref_magnitude(x, 0.9), rtol=RTOL)


def test_magnitude_function_explicit_scales(rng):
    x = rng.normal(size=(8, 2))
    ts = torch.logspace(-1, 1, 7, dtype=torch.float64)
    mf = magtorch.magnitude_function(torch.tensor(x), ts)
    assert_close(mf.t, ts, rtol=0.0)
    expected = [float(ref_magnitude(x, t)) for t in ts.tolist()]
    assert_close(mf.magnitude, expected, rtol=RTOL)


def test_magnitude_function_default_scales(rng):
    from scipy.optimize import brentq

    x = rng.normal(size=(8, 2))
    mf = magtorch.magnitude_function(torch.tensor(x), n_scales=16, q=0.9)
    assert mf.t.shape == (16,)
    t_conv = brentq(lambda t: float(ref_magnitude(x, t)) - 0.9 * 8, 1e-3, 1e4, xtol=1e-14)
    assert_close(mf.t[-1], t_conv, rtol=1e-6)
    assert_close(mf.t[0], 1e-2 * t_conv, rtol=1e-6)
    logt = torch.log(as64(mf.t))
    assert_close(torch.diff(logt), torch.full((15,), math.log(100.0) / 15), rtol=1e-6)
    expected = [float(ref_magnitude(x, t)) for t in as64(mf.t).tolist()]
    assert_close(mf.magnitude, expected, rtol=RTOL)


# ---------------------------------------------------------------------- positive magnitude


def test_positive_magnitude_with_negative_weights():
    # the 3x3x3 grid in R^3 (euclidean) has negative weights at t = 1
    x = l1_grid_points(3, 3)
    t = 1.0
    w_ref = ref_weights(x, t)
    assert float(w_ref.min()) < -0.1  # precondition: the oracle has negative weights
    pmag = magtorch.positive_magnitude(torch.tensor(x), t)
    assert_close(pmag, w_ref.clamp(min=0).sum(), rtol=RTOL)
    assert float(pmag) > float(w_ref.sum())


# ----------------------------------------------------------------------------------- float32


ORACLES32 = {
    "two_points": (np.array([[0.0, 0.0], [1.5, 0.0]]), "euclidean"),
    "line": (line_points([0.5, 1.25, 2.0, 0.75]), "euclidean"),
    "simplex": (simplex_points(5, 1.0), "euclidean"),
    "polygon": (polygon_points(8, 1.0), "euclidean"),
    "l1_grid": (l1_grid_points(3, 2), "l1"),
}


@pytest.mark.parametrize("name", sorted(ORACLES32))
def test_float32_inputs(name, device):
    points, metric = ORACLES32[name]
    x32 = torch.tensor(points, dtype=torch.float32, device=device)
    ts = torch.tensor(TS32, dtype=torch.float32, device=device)
    mag = magtorch.magnitude(x32, ts, metric=metric)
    w = magtorch.weights(x32, ts, metric=metric)
    assert mag.dtype == torch.float32 and w.dtype == torch.float32
    assert mag.device.type == device.type
    # the reference uses exactly the float32 points (and float32 scales), solved in float64
    x64 = as64(x32)
    for k, t in enumerate(as64(ts).tolist()):
        assert_close(mag[k], ref_magnitude(x64, t, metric=metric), rtol=1e-5, msg=f"t={t}")
        w_ref = ref_weights(x64, t, metric=metric)
        assert_close(w[k], w_ref, rtol=1e-5, atol=1e-5 * float(w_ref.abs().max()), msg=f"t={t}")
    # scalar float32 t too
    mag1 = magtorch.magnitude(x32, 1.0, metric=metric)
    assert mag1.dtype == torch.float32
    assert_close(mag1, ref_magnitude(x64, 1.0, metric=metric), rtol=1e-5)


# ------------------------------------------------------------------------------------- masks


def test_mask_ragged_batch_several_scales(device):
    gaps_a, gaps_b = [0.5, 1.3], [0.2, 0.9, 1.1, 0.4]
    a, b = line_points(gaps_a), line_points(gaps_b)
    x = np.full((2, 6, 1), 7.0)  # padding sits on a real point of b: it must be ignored
    x[0, [1, 3, 4]] = a
    x[1, :5] = b
    mask = np.zeros((2, 6), dtype=bool)
    mask[0, [1, 3, 4]] = True
    mask[1, :5] = True
    ts = [0.3, 2.0]
    xt = torch.tensor(x, device=device)
    mt = torch.tensor(mask, device=device)
    tt = torch.tensor(ts, dtype=torch.float64, device=device)
    mag = magtorch.magnitude(xt, tt, mask=mt)
    assert mag.shape == (2, 2)
    assert mag.device.type == device.type
    expected = [[line_magnitude(g, t) for t in ts] for g in (gaps_a, gaps_b)]
    assert_close(mag, expected, rtol=RTOL)
    w = magtorch.weights(xt, tt, mask=mt).cpu()
    assert w.shape == (2, 2, 6)
    for k, t in enumerate(ts):
        assert_close(w[0, k, [1, 3, 4]], line_weights(gaps_a, t), rtol=RTOL)
        assert_close(w[1, k, :5], line_weights(gaps_b, t), rtol=RTOL)
    res = magtorch.solve(xt, tt, mask=mt)
    assert res.info.n_distinct.cpu().reshape(2, -1)[:, 0].tolist() == [3, 5]


def test_progress_reports_to_stderr(capsys):
    x = torch.randn(20, 2, dtype=torch.float64)
    magtorch.magnitude(x, torch.tensor([0.5, 1.0, 2.0]), progress=True)
    err = capsys.readouterr().err
    assert "3/3 solves of n=20 points" in err
