"""Property tests (hypothesis): invariances and inequalities of magnitude that hold for every
finite subset of Euclidean space, checked on small well-separated float64 sets. Tolerances
scale with the condition number of Z (forward error of a dense solve ~ cond(Z) * eps)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import magtorch
from tests._reference import assert_close, min_pairwise_distance, ref_cond

EPS = float(np.finfo(np.float64).eps)
MIN_DIST = 1e-3
MAX_COND = 1e8


@st.composite
def point_sets(draw, min_n=1, max_n=12, max_d=4, n=None, d=None):
    n = draw(st.integers(min_n, max_n)) if n is None else n
    d = draw(st.integers(1, max_d)) if d is None else d
    elems = st.floats(-5.0, 5.0, allow_nan=False, allow_infinity=False, width=64)
    x = draw(arrays(np.float64, (n, d), elements=elems))
    assume(min_pairwise_distance(x) >= MIN_DIST)
    return x


@st.composite
def batches(draw, max_b=4, max_n=6, max_d=2):
    """B sets sharing one shape (n, d)."""
    b = draw(st.integers(2, max_b))
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, max_d))
    return [draw(point_sets(n=n, d=d)) for _ in range(b)]


scales = st.floats(0.05, 20.0, allow_nan=False, allow_infinity=False)


def _tol(x, t):
    """Relative tolerance for comparing two dense float64 solves of the same problem."""
    cond = ref_cond(x, t)
    assume(cond < MAX_COND)
    return max(1e-10, 100 * cond * EPS)


@given(point_sets(min_n=2), scales, st.randoms(use_true_random=False))
def test_permutation_invariance(x, t, rnd):
    tol = _tol(x, t)
    perm = list(range(len(x)))
    rnd.shuffle(perm)
    mag = magtorch.magnitude(torch.tensor(x), t)
    mag_p = magtorch.magnitude(torch.tensor(x[perm]), t)
    assert_close(mag_p, mag, rtol=tol)
    w = magtorch.weights(torch.tensor(x), t)
    w_p = magtorch.weights(torch.tensor(x[perm]), t)
    assert_close(w_p, w[perm], rtol=tol, atol=tol * float(w.abs().max()))


def _random_rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@given(point_sets(min_n=2), scales, st.integers(0, 2**32 - 1))
def test_isometry_invariance(x, t, seed):
    tol = _tol(x, t)
    d = x.shape[1]
    rot = _random_rotation(d, seed)
    shift = np.random.default_rng(seed + 1).uniform(-10, 10, size=d)
    y = x @ rot.T + shift
    mag = magtorch.magnitude(torch.tensor(x), t)
    mag_y = magtorch.magnitude(torch.tensor(y), t)
    # rotated coordinates move distances by ~ eps * |x|; their effect is within cond * eps
    assert_close(mag_y, mag, rtol=tol)


@given(point_sets(min_n=1, max_n=11), scales, st.data())
def test_monotone_under_inclusion(x, t, data):
    d = x.shape[1]
    elems = st.floats(-5.0, 5.0, allow_nan=False, allow_infinity=False, width=64)
    p = data.draw(arrays(np.float64, (1, d), elements=elems))
    xp = np.concatenate([x, p])
    assume(min_pairwise_distance(xp) >= MIN_DIST)
    tol = _tol(xp, t)
    mag = float(magtorch.magnitude(torch.tensor(x), t))
    mag_p = float(magtorch.magnitude(torch.tensor(xp), t))
    assert mag_p >= mag * (1 - tol)
    # and never more than one point's worth: Mag(X u {p}) - Mag(X) = (1-h)^2/(1 - k'Z^-1 k) <= 1
    assert mag_p <= mag + 1 + tol * mag_p


@given(point_sets(min_n=1), scales)
def test_magnitude_at_least_one_and_at_most_n(x, t):
    tol = _tol(x, t)
    mag = float(magtorch.magnitude(torch.tensor(x), t))
    assert mag >= 1 - tol
    assert mag <= len(x) * (1 + tol)


@given(batches(), scales)
def test_batched_equals_looped(same, t):
    tols = [_tol(s, t) for s in same]
    batch = torch.tensor(np.stack(same))
    mag = magtorch.magnitude(batch, t)
    w = magtorch.weights(batch, t)
    assert mag.shape == (len(same),)
    for b, s in enumerate(same):
        assert_close(mag[b], magtorch.magnitude(torch.tensor(s), t), rtol=tols[b])
        w1 = magtorch.weights(torch.tensor(s), t)
        assert_close(w[b], w1, rtol=tols[b], atol=tols[b] * float(w1.abs().max()))


@given(
    st.lists(point_sets(min_n=1, max_n=8, max_d=2), min_size=1, max_size=4),
    st.integers(1, 2),
    scales,
    st.integers(0, 2**32 - 1),
)
def test_masked_padded_equals_unpadded(sets, d, t, seed):
    sets = [s[:, :d] if s.shape[1] >= d else None for s in sets]
    sets = [s for s in sets if s is not None and min_pairwise_distance(s) >= MIN_DIST]
    assume(len(sets) >= 1)
    tols = [_tol(s, t) for s in sets]
    n_max = max(len(s) for s in sets) + 2
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(sets), n_max, d)) * 100  # garbage padding (may even collide)
    mask = np.zeros((len(sets), n_max), dtype=bool)
    for b, s in enumerate(sets):
        # scatter the real points among the slots
        slots = np.sort(rng.choice(n_max, size=len(s), replace=False))
        x[b, slots] = s
        mask[b, slots] = True
    xt, mt = torch.tensor(x), torch.tensor(mask)
    mag = magtorch.magnitude(xt, t, mask=mt)
    w = magtorch.weights(xt, t, mask=mt)
    assert mag.shape == (len(sets),)
    for b, s in enumerate(sets):
        mag1 = magtorch.magnitude(torch.tensor(s), t)
        w1 = magtorch.weights(torch.tensor(s), t)
        assert_close(mag[b], mag1, rtol=tols[b])
        assert_close(w[b][mt[b]], w1, rtol=tols[b], atol=tols[b] * float(w1.abs().max()))
        # padding carries no weight: the weights still sum to the magnitude
        assert torch.all(w[b][~mt[b]] == 0)
