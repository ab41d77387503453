"""Potentials: h_X(z), leave-one-out potentials and potential ratios, against explicit
deletion with the independent float64 dense reference and against the Schur-complement
identities of DESIGN.md section 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import magtorch
from tests._reference import (
    as64,
    assert_close,
    line_points,
    ref_distances,
    ref_magnitude,
    ref_potential,
    ref_similarity,
    ref_weights,
)

RTOL = 1e-10


def _points(rng, n=9, d=3):
    return rng.normal(size=(n, d))


@pytest.mark.parametrize("t", [0.3, 1.0, 4.0])
def test_potential_against_reference(t, rng, device):
    x = _points(rng)
    z = rng.normal(size=(5, 3)) * 1.5
    h = magtorch.potential(torch.tensor(z, device=device), torch.tensor(x, device=device), t)
    assert h.device.type == device.type
    assert h.shape == (5,)
    assert_close(h, ref_potential(z, x, t), rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "l1"])
@pytest.mark.parametrize("t", [0.2, 1.0, 5.0])
def test_potential_on_the_set_is_one(metric, t, rng, device):
    x = torch.tensor(_points(rng), device=device)
    h = magtorch.potential(x, x, t, metric=metric)
    assert_close(h, np.ones(9), rtol=0.0, atol=1e-10)


def test_potential_vector_of_scales_and_batch(rng):
    x = torch.tensor(rng.normal(size=(2, 6, 2)))
    z = torch.tensor(rng.normal(size=(2, 4, 2)))
    ts = [0.5, 2.0, 8.0]
    h = magtorch.potential(z, x, torch.tensor(ts, dtype=torch.float64))
    assert h.shape == (2, 3, 4)
    for b in range(2):
        for k, t in enumerate(ts):
            assert_close(h[b, k], ref_potential(z[b], x[b], t), rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("t", [0.25, 1.0, 3.0])
def test_one_point_extension(t, rng):
    """Mag(X u {z}) - Mag(X) = (1 - h_X(z))^2 / (1 - k^T Z^-1 k), k = exp(-t d(z, X))."""
    x = _points(rng, n=8, d=2)
    z = rng.normal(size=(6, 2)) * 1.3
    h = magtorch.potential(torch.tensor(z), torch.tensor(x), t)
    Zx = ref_similarity(ref_distances(x), t)
    for j in range(len(z)):
        k = torch.exp(-t * ref_distances(z[j : j + 1], x))[0]
        schur = 1.0 - float(k @ torch.linalg.solve(Zx, k))
        gain_ref = float(ref_magnitude(np.concatenate([x, z[j : j + 1]]), t)) - float(
            ref_magnitude(x, t)
        )
        gain = (1.0 - float(h[j])) ** 2 / schur
        assert_close(gain, gain_ref, rtol=1e-8, atol=1e-12, msg=f"z index {j}")


@pytest.mark.parametrize("t", [0.3, 1.0, 4.0])
def test_loo_potential_by_explicit_deletion(t, rng, device):
    x = _points(rng, n=10, d=3)
    loo = magtorch.loo_potential(torch.tensor(x, device=device), t)
    assert loo.device.type == device.type
    assert loo.shape == (10,)
    expected = [
        float(ref_potential(x[i : i + 1], np.delete(x, i, axis=0), t)[0]) for i in range(10)
    ]
    assert_close(loo, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t", [0.3, 1.0, 4.0])
def test_deletion_identity(t, rng):
    """Mag(X) - Mag(X \\ {i}) = w_i^2 / P_ii = w_i (1 - h_{X\\{i}}(x_i))."""
    x = _points(rng, n=10, d=3)
    xt = torch.tensor(x)
    w = magtorch.weights(xt, t)
    loo = magtorch.loo_potential(xt, t)
    mag = magtorch.magnitude(xt, t)
    P = torch.linalg.inv(ref_similarity(ref_distances(x), t))
    w_ref = ref_weights(x, t)
    for i in range(10):
        mag_del = float(ref_magnitude(np.delete(x, i, axis=0), t))
        drop_ref = float(ref_magnitude(x, t)) - mag_del
        # closed form from the reference inverse
        assert_close(float(w_ref[i]) ** 2 / float(P[i, i]), drop_ref, rtol=1e-8, atol=1e-12)
        # magtorch's weights and leave-one-out potential reproduce the deletion
        assert_close(float(w[i]) * (1.0 - float(loo[i])), drop_ref, rtol=1e-8, atol=1e-12)
        mag_del_mt = magtorch.magnitude(torch.tensor(np.delete(x, i, axis=0)), t)
        assert_close(float(mag) - float(mag_del_mt), drop_ref, rtol=1e-8, atol=1e-12)


def test_loo_potential_on_a_line_closed_form():
    """On a line, h_Y(z) for z between neighbours of Y at distances a, b is
    (e^{-ta} + e^{-tb}) / (1 + e^{-t(a+b)}), and e^{-ta} beyond an end of Y; deleting a
    point merges its two gaps, so Mag drops by tanh(t g_l/2) + tanh(t g_r/2) - tanh(t(g_l+g_r)/2)
    (an end point: by tanh(t g/2))."""
    gaps = np.array([0.4, 1.0, 0.7, 1.5])
    x = line_points(gaps)
    t = 1.3
    xt = torch.tensor(x[::-1].copy())  # reversed order
    loo = magtorch.loo_potential(xt, t).flip(0)
    w = magtorch.weights(xt, t).flip(0)
    e = np.exp(-t * gaps)
    expected = np.concatenate([[e[0]], (e[:-1] + e[1:]) / (1 + e[:-1] * e[1:]), [e[-1]]])
    assert_close(loo, expected, rtol=1e-10)
    th = np.tanh(t * gaps / 2)
    merged = np.tanh(t * (gaps[:-1] + gaps[1:]) / 2)
    drop = np.concatenate([[th[0]], th[:-1] + th[1:] - merged, [th[-1]]])
    assert_close(w * (1 - loo), drop, rtol=1e-9)


def test_loo_potential_with_exact_duplicate_is_one(rng):
    x = _points(rng, n=7, d=2)
    x = np.concatenate([x, x[[2]]])  # row 7 repeats row 2
    t = 1.0
    loo = magtorch.loo_potential(torch.tensor(x), t)
    assert_close(loo[[2, 7]], [1.0, 1.0], rtol=0.0, atol=1e-10)
    distinct = x[:7]
    for i in [0, 1, 3, 4, 5, 6]:
        expected = float(ref_potential(x[i : i + 1], np.delete(distinct, i, axis=0), t)[0])
        assert_close(loo[i], expected, rtol=1e-9, atol=1e-12, msg=f"row {i}")


def test_loo_potential_vector_of_scales(rng):
    x = _points(rng, n=6, d=2)
    ts = [0.5, 2.0]
    loo = magtorch.loo_potential(torch.tensor(x), torch.tensor(ts, dtype=torch.float64))
    assert loo.shape == (2, 6)
    for k, t in enumerate(ts):
        expected = [
            float(ref_potential(x[i : i + 1], np.delete(x, i, axis=0), t)[0]) for i in range(6)
        ]
        assert_close(loo[k], expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------- potential ratio


def _ref_ratio_loo(z, labels, t):
    out = []
    for i in range(len(z)):
        others = np.delete(np.arange(len(z)), i)
        same = others[labels[others] == labels[i]]
        h_all = float(ref_potential(z[i : i + 1], z[others], t)[0])
        h_cls = float(ref_potential(z[i : i + 1], z[same], t)[0]) if len(same) else 0.0
        out.append(h_cls / h_all)
    return np.array(out)


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_potential_ratio_leave_one_out(t, rng, device):
    z = np.concatenate([rng.normal(size=(5, 2)), rng.normal(size=(4, 2)) + 2.5, [[9.0, 9.0]]])
    labels = np.array([0] * 5 + [1] * 4 + [2])  # class 2 has a single member
    r = magtorch.potential_ratio(
        torch.tensor(z, device=device), torch.tensor(labels, device=device), t
    )
    assert r.device.type == device.type
    assert r.shape == (10,)
    expected = _ref_ratio_loo(z, labels, t)
    assert expected[-1] == 0.0
    assert_close(r, expected, rtol=1e-9, atol=1e-12)


def test_potential_ratio_vector_of_scales(rng):
    z = np.concatenate([rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) + 1.5])
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    ts = [0.4, 3.0]
    r = magtorch.potential_ratio(
        torch.tensor(z), torch.tensor(labels), torch.tensor(ts, dtype=torch.float64)
    )
    assert r.shape == (2, 8)
    for k, t in enumerate(ts):
        assert_close(r[k], _ref_ratio_loo(z, labels, t), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_potential_ratio_with_reference(t, rng):
    ref = np.concatenate([rng.normal(size=(6, 2)), rng.normal(size=(5, 2)) + 3.0])
    ref_labels = np.array([0] * 6 + [1] * 5)
    z = rng.normal(size=(7, 2)) * 2.0 + 1.0
    labels = np.array([0, 1, 1, 0, 1, 0, 0])
    r = magtorch.potential_ratio(
        torch.tensor(z),
        torch.tensor(labels),
        t,
        reference=torch.tensor(ref),
        reference_labels=torch.tensor(ref_labels),
    )
    h_all = ref_potential(z, ref, t)
    h_cls = torch.stack(
        [ref_potential(z[i : i + 1], ref[ref_labels == labels[i]], t)[0] for i in range(7)]
    )
    assert_close(r, h_cls / h_all, rtol=1e-9, atol=1e-12)
    assert as64(r).shape == (7,)


def test_potential_with_duplicates_in_the_set(rng):
    # a multiset has the potential of its distinct points
    x = _points(rng, n=6, d=2)
    x_dup = np.concatenate([x, x[[1, 1, 4]]])
    z = rng.normal(size=(4, 2))
    h = magtorch.potential(torch.tensor(z), torch.tensor(x_dup), 0.8)
    assert_close(h, ref_potential(z, x, 0.8), rtol=RTOL, atol=1e-12)


def test_potential_and_loo_with_mask(rng):
    x = _points(rng, n=7, d=2)
    pad = np.concatenate([x[:3], [[50.0, 50.0], [0.0, 0.0]], x[3:]])  # rows 3, 4: padding
    mask = torch.tensor([True] * 3 + [False] * 2 + [True] * 4)
    z = rng.normal(size=(3, 2))
    t = 0.9
    h = magtorch.potential(torch.tensor(z), torch.tensor(pad), t, mask=mask)
    assert_close(h, ref_potential(z, x, t), rtol=RTOL, atol=1e-12)
    loo = magtorch.loo_potential(torch.tensor(pad), t, mask=mask)
    assert loo.shape == (9,)
    expected = [float(ref_potential(x[i : i + 1], np.delete(x, i, axis=0), t)[0]) for i in range(7)]
    assert_close(loo[mask], expected, rtol=1e-9, atol=1e-12)


def test_potential_ignores_nan_padding():
    """Padded reference points may hold anything (here NaN): the potential of queries against a
    masked batch equals the potential against the unpadded set."""
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.standard_normal((2, 5, 2)))
    z = torch.tensor(rng.standard_normal((2, 3, 2)))
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    x[1, 3:] = float("nan")
    got = magtorch.potential(z, x, 0.8, mask=mask)
    for b, n in [(0, 5), (1, 3)]:
        assert_close(got[b], ref_potential(z[b], x[b, :n], 0.8), rtol=1e-11)
