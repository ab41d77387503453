"""Subset approximations: greedy maximisation, prefix curves, the discrete centre hierarchy.

References are independent float64 dense solves in numpy/scipy (``Z^{-1} 1`` by
``numpy.linalg.solve``), brute-force searches over all candidates, closed forms on the line,
and the hierarchy invariants checked from scratch with scipy's distance matrices.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from magtorch.errors import MagtorchError
from magtorch.subset import (
    DiscreteCenterHierarchy,
    greedy_subset,
    prefix_magnitudes,
)

SCIPY_METRIC = {"euclidean": "euclidean", "l1": "cityblock"}


def dense_mag(x: np.ndarray, t: float, metric: str = "euclidean") -> float:
    z = np.exp(-t * cdist(x, x, SCIPY_METRIC[metric]))
    return float(np.linalg.solve(z, np.ones(len(x))).sum())


def points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)))


# ------------------------------------------------------------------------- greedy


@pytest.mark.parametrize("t", [0.5, 2.0])
@pytest.mark.parametrize("metric", ["euclidean", "l1"])
def test_greedy_curve_equals_dense_prefix_magnitudes(t: float, metric: str) -> None:
    x = points(50, 3, seed=1)
    res = greedy_subset(x, t, metric=metric, tol=0.0)
    idx = res.indices.numpy()
    assert sorted(idx.tolist()) == list(range(50)) and res.stop_reason == "max_size"
    xn = x.numpy()
    expected = [dense_mag(xn[idx[: j + 1]], t, metric) for j in range(50)]
    np.testing.assert_allclose(res.magnitude.numpy(), expected, rtol=1e-10)
    # the curve ends at the exact magnitude of the whole set
    assert float(res.magnitude[-1]) == pytest.approx(dense_mag(xn, t, metric), rel=1e-10)


def test_greedy_every_step_is_the_exhaustive_argmax() -> None:
    x = points(25, 2, seed=2).numpy()
    t = 1.3
    res = greedy_subset(torch.from_numpy(x), t, tol=0.0, start=7)
    order = res.indices.tolist()
    assert order[0] == 7
    for step in range(1, 25):
        chosen = order[:step]
        rest = [b for b in range(25) if b not in chosen]
        mags = [dense_mag(x[chosen + [b]], t) for b in rest]
        assert order[step] == rest[int(np.argmax(mags))]
        assert float(res.gains[step]) == pytest.approx(max(mags) - dense_mag(x[chosen], t))


def test_greedy_first_step_is_the_farthest_point() -> None:
    # from S = {x_s}, Mag({x_s, b}) = 2 / (1 + exp(-t d)): the farthest point wins
    x = points(200, 4, seed=3)
    res = greedy_subset(x, 0.7, max_size=2)
    far = int(torch.cdist(x[:1], x)[0].argmax())
    assert res.indices.tolist() == [0, far]
    d = float(torch.cdist(x[:1], x[far : far + 1]))
    assert float(res.magnitude[1]) == pytest.approx(2 / (1 + math.exp(-0.7 * d)), rel=1e-13)


def test_greedy_weights_and_potential_match_dense_solve() -> None:
    x = points(80, 3, seed=4)
    t = 1.0
    res = greedy_subset(x, t, max_size=20)
    xs = x.numpy()[res.indices.numpy()]
    w = np.linalg.solve(np.exp(-t * cdist(xs, xs)), np.ones(20))
    np.testing.assert_allclose(res.weights.numpy(), w, rtol=1e-9, atol=1e-12)
    h = np.exp(-t * cdist(x.numpy(), xs)) @ w
    np.testing.assert_allclose(res.potential.numpy(), h, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h[res.indices.numpy()], 1.0, rtol=1e-9)
    assert res.size == 20


def test_greedy_is_monotone_and_below_the_magnitude_of_x() -> None:
    x = points(120, 2, seed=5)
    mag_x = dense_mag(x.numpy(), 1.0)
    res = greedy_subset(x, 1.0, tol=1e-3)
    assert res.stop_reason == "tolerance"
    assert bool((res.gains > 0).all())
    assert bool((torch.diff(res.magnitude) > 0).all())
    assert float(res.magnitude[-1]) <= mag_x
    # stopping rule: the next best gain is below tol * Mag(S), every gain taken was not
    chosen = res.indices.tolist()
    xn = x.numpy()
    mag_s = dense_mag(xn[chosen], 1.0)
    best_next = max(dense_mag(xn[chosen + [b]], 1.0) for b in range(120) if b not in chosen)
    assert best_next - mag_s < 1e-3 * mag_s
    prev = res.magnitude[:-1]
    assert bool((res.gains[1:] >= 1e-3 * prev).all())
    # the greedy subset beats random subsets of the same size by a wide margin here
    rng = np.random.default_rng(0)
    rand = dense_mag(xn[rng.choice(120, size=res.size, replace=False)], 1.0)
    assert mag_x - float(res.magnitude[-1]) < 0.5 * (mag_x - rand)


def test_greedy_on_the_line_matches_the_closed_form() -> None:
    v = np.sort(np.random.default_rng(6).uniform(0, 10, 30))
    res = greedy_subset(torch.from_numpy(v[:, None]), 0.8, tol=0.0)
    for j in (2, 5, 17, 30):
        s = np.sort(v[res.indices.numpy()[:j]])
        exact = 1 + np.tanh(0.8 * np.diff(s) / 2).sum()
        assert float(res.magnitude[j - 1]) == pytest.approx(exact, rel=1e-11)
    # from the left end (start=0, v sorted) the next pick is the right end
    assert res.indices[:2].tolist() == [0, 29]


def test_greedy_skips_duplicates() -> None:
    x = points(15, 2, seed=7)
    xd = torch.cat([x, x[:5], x[3:4]])
    res = greedy_subset(xd, 1.0, tol=0.0)
    assert res.stop_reason == "exhausted" and res.size == 15
    assert sorted(xd[res.indices].tolist()) == sorted(x.tolist())
    assert float(res.magnitude[-1]) == pytest.approx(dense_mag(x.numpy(), 1.0), rel=1e-10)


def test_greedy_precomputed_matches_points() -> None:
    x = points(40, 3, seed=8)
    d = torch.cdist(x, x).fill_diagonal_(0.0)
    a = greedy_subset(x, 1.5, max_size=12)
    b = greedy_subset(d, 1.5, metric="precomputed", max_size=12)
    assert a.indices.tolist() == b.indices.tolist()
    torch.testing.assert_close(a.magnitude, b.magnitude, rtol=1e-10, atol=0)


def test_greedy_float32_input_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    x = points(30, 2, seed=9)
    a = greedy_subset(x.float(), 1.0, max_size=10, progress=True)
    assert a.magnitude.dtype == torch.float64
    b = greedy_subset(x.float().double(), 1.0, max_size=10)
    assert a.indices.tolist() == b.indices.tolist()
    assert "magtorch:" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_greedy_cuda_matches_cpu() -> None:
    x = points(300, 3, seed=10)
    a = greedy_subset(x, 1.0, max_size=50)
    b = greedy_subset(x.cuda(), 1.0, max_size=50)
    assert a.indices.tolist() == b.indices.cpu().tolist()
    torch.testing.assert_close(a.magnitude, b.magnitude.cpu(), rtol=1e-9, atol=0)


# ------------------------------------------------------------------------- prefix curves


def test_prefix_magnitudes_for_several_scales_with_duplicates() -> None:
    x = points(40, 3, seed=11)
    xd = torch.cat([x, x[:3]])  # ids 40..42 duplicate 0..2
    order = torch.from_numpy(np.random.default_rng(0).permutation(43))
    t = torch.tensor([0.3, 1.0, 4.0])
    curve = prefix_magnitudes(xd, order, t)
    assert curve.shape == (3, 43)
    xn = xd.numpy()
    for i, s in enumerate(t.tolist()):
        for j in (1, 10, 25, 43):
            distinct = np.unique(xn[order[:j].numpy()], axis=0)
            assert float(curve[i, j - 1]) == pytest.approx(dense_mag(distinct, s), rel=1e-10)
    single = prefix_magnitudes(xd, order, 1.0, max_size=7)
    torch.testing.assert_close(single, curve[1, :7], rtol=1e-12, atol=0)


# ------------------------------------------------------------------------- hierarchy


def check_hierarchy(h: DiscreteCenterHierarchy, metric: str = "euclidean") -> None:
    """Nesting, covering, separation and a single top, recomputed from the coordinates."""
    levels = [lvl.numpy() for lvl in h.levels]
    assert sorted(levels[0].tolist()) == sorted(h.ids.tolist())
    assert len(levels[-1]) == 1
    if len(levels[0]) > 1:
        assert len(levels[-2]) > 1  # no redundant single-point levels
    for i in range(1, len(levels)):
        r = h.radius * 2.0 ** (i - 1)
        assert set(levels[i]) <= set(levels[i - 1]), f"nesting broken at level {i}"
        d = cdist(h.point(levels[i - 1]).numpy(), h.point(levels[i]).numpy(), SCIPY_METRIC[metric])
        assert (d.min(1) <= r).all(), f"covering broken at level {i}"
        dc = cdist(h.point(levels[i]).numpy(), h.point(levels[i]).numpy(), SCIPY_METRIC[metric])
        np.fill_diagonal(dc, np.inf)
        assert (dc > r).all(), f"separation broken at level {i}"
    order = h.order().tolist()
    assert sorted(order) == sorted(h.ids.tolist())
    tops = {p: max(i for i, lvl in enumerate(levels) if p in lvl) for p in order}
    assert [tops[p] for p in order] == sorted(tops.values(), reverse=True)


@pytest.mark.parametrize("metric", ["euclidean", "l1"])
@pytest.mark.parametrize("radius", [0.05, 0.5, 3.0])
def test_hierarchy_invariants_after_construction(metric: str, radius: float) -> None:
    h = DiscreteCenterHierarchy(points(200, 2, seed=12), radius=radius, metric=metric)
    check_hierarchy(h, metric)
    assert h.n == 200 and h.height == len(h.radii)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**31 - 1),
    ops=st.lists(st.tuples(st.booleans(), st.integers(1, 12)), min_size=1, max_size=8),
    radius=st.sampled_from([0.1, 0.4, 1.0]),
    metric=st.sampled_from(["euclidean", "l1"]),
)
def test_hierarchy_invariants_hold_after_inserts_and_deletes(
    seed: int, ops: list[tuple[bool, int]], radius: float, metric: str
) -> None:
    rng = np.random.default_rng(seed)
    h = DiscreteCenterHierarchy(
        torch.from_numpy(rng.standard_normal((30, 2))), radius=radius, metric=metric
    )
    alive = set(range(30))
    for is_insert, k in ops:
        if is_insert:
            # clustered and far points, so that inserts land at low and at top levels
            new = rng.standard_normal((k, 2)) * rng.choice([0.2, 1.0, 8.0])
            ids = h.insert(torch.from_numpy(new)).tolist()
            assert len(ids) == k and not alive & set(ids)
            alive |= set(ids)
        else:
            k = min(k, len(alive) - 1)
            if k == 0:
                continue
            gone = rng.choice(sorted(alive), size=k, replace=False).tolist()
            h.delete(gone)
            alive -= set(gone)
        assert set(h.ids.tolist()) == alive
        check_hierarchy(h, metric)


def test_delete_of_the_top_and_of_a_lone_centre() -> None:
    x = torch.tensor([[0.0], [0.3], [0.6], [5.0], [5.2], [40.0]], dtype=torch.float64)
    h = DiscreteCenterHierarchy(x, radius=0.5)
    top = h.levels[-1].tolist()
    h.delete(top)
    check_hierarchy(h)
    h.delete([5])
    check_hierarchy(h)
    assert sorted(h.ids.tolist()) == sorted(set(range(6)) - set(top) - {5})


def test_insert_near_a_centre_changes_no_other_point() -> None:
    x = points(100, 2, seed=13)
    h = DiscreteCenterHierarchy(x, radius=0.5)
    before = [lvl.tolist() for lvl in h.levels]
    (q,) = h.insert(x[:1] + 1e-3).tolist()  # within r_1 of point 0, a centre of S_1
    after = [lvl.tolist() for lvl in h.levels]
    assert after[0] == before[0] + [q]
    assert after[1:] == before[1:]  # q only joins S_0
    check_hierarchy(h)


def test_hierarchy_curve_ends_at_the_exact_magnitude_and_equals_prefixes() -> None:
    x = points(90, 3, seed=14)
    h = DiscreteCenterHierarchy(x, radius=0.3)
    t = torch.tensor([0.5, 2.0])
    curve = h.curve(t)
    order = h.order().numpy()
    xn = x.numpy()
    for i, s in enumerate(t.tolist()):
        assert float(curve[i, -1]) == pytest.approx(dense_mag(xn, s), rel=1e-10)
        for j in (1, 7, 40):
            assert float(curve[i, j - 1]) == pytest.approx(dense_mag(xn[order[:j]], s), rel=1e-10)
        assert bool((torch.diff(curve[i]) > -1e-12).all())  # monotone (positive definite)
    assert float(curve[0, 0]) == 1.0


def test_hierarchy_order_beats_random_order_on_blobs() -> None:
    rng = np.random.default_rng(15)
    centres = rng.uniform(-20, 20, size=(6, 2))
    x = torch.from_numpy(np.repeat(centres, 40, axis=0) + 0.3 * rng.standard_normal((240, 2)))
    h = DiscreteCenterHierarchy(x, radius=0.25)
    k = 30
    hier = float(h.curve(1.0, max_size=k)[-1])
    rand = float(prefix_magnitudes(x, torch.from_numpy(rng.permutation(240)[:k]), 1.0)[-1])
    exact = dense_mag(x.numpy(), 1.0)
    assert exact - hier < exact - rand


def test_cosine_hierarchy_invariants() -> None:
    x = points(60, 3, seed=16)
    h = DiscreteCenterHierarchy(x, radius=0.1, metric="cosine")
    xu = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    ang = np.arccos(np.clip(xu @ xu.T, -1, 1))
    for i, lvl in enumerate(h.levels[1:], start=1):
        r = 0.1 * 2.0 ** (i - 1)
        prev = h.levels[i - 1].numpy()
        assert (ang[np.ix_(prev, lvl.numpy())].min(1) <= r + 1e-12).all()
        sep = ang[np.ix_(lvl.numpy(), lvl.numpy())] + np.diag([np.inf] * len(lvl))
        assert (sep > r - 1e-12).all()


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: greedy_subset(x, [1.0, 2.0]), "single scale"),
        (lambda x: greedy_subset(x, -1.0), "t must be finite and > 0"),
        (lambda x: greedy_subset(x, 1.0, max_size=0), "max_size"),
        (lambda x: greedy_subset(x, 1.0, tol=-1.0), "tol"),
        (lambda x: greedy_subset(x, 1.0, start=10), "start"),
        (lambda x: greedy_subset(x[None], 1.0), "single set"),
        (lambda x: greedy_subset(x, 1.0, metric="foo"), "metric"),
        (lambda x: prefix_magnitudes(x, torch.tensor([0, 0]), 1.0), "repeat"),
        (lambda x: prefix_magnitudes(x, torch.tensor([0, 10]), 1.0), "outside"),
        (lambda x: prefix_magnitudes(x, torch.tensor([0.5]), 1.0), "integer"),
        (lambda x: DiscreteCenterHierarchy(x, radius=0.0), "radius"),
        (lambda x: DiscreteCenterHierarchy(x, metric="precomputed"), "not supported"),
    ],
)
def test_errors(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MagtorchError, match=match):
        call(points(10, 2, seed=0))


def test_hierarchy_update_errors() -> None:
    h = DiscreteCenterHierarchy(points(10, 2, seed=0))
    with pytest.raises(MagtorchError, match="shape"):
        h.insert(torch.zeros(2, 3))
    with pytest.raises(MagtorchError, match="NaN"):
        h.insert(torch.full((1, 2), float("nan")))
    h.delete([3])
    with pytest.raises(MagtorchError, match="alive"):
        h.delete([3])
    with pytest.raises(MagtorchError, match="alive"):
        h.delete([99])
    with pytest.raises(MagtorchError, match="repeat"):
        h.delete([1, 1])
    with pytest.raises(MagtorchError, match="every point"):
        h.delete(h.ids.tolist())
    with pytest.raises(MagtorchError, match="integer"):
        h.delete([0.5])


def test_prefix_magnitudes_reports_an_indefinite_space() -> None:
    d = torch.tensor([[0.0, 1e-4, 1e-4], [1e-4, 0.0, 10.0], [1e-4, 10.0, 0.0]])
    with pytest.raises(MagtorchError, match="not positive definite"):
        prefix_magnitudes(d, torch.arange(3), 1.0, metric="precomputed")
