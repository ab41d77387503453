"""Tests of magtorch.cluster: magnitude clustering (Algorithm 4) against brute-force references.

References (tests/_reference.py, no magtorch): dense float64 re-solves of Mag(c ∪ {b}) - Mag(c),
a brute-force Algorithm 4 that re-solves every (point, cluster) pair, and the closed form on
the line, where adding a point at gap g to the end of a cluster raises magnitude by tanh(t g/2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from magtorch import MagtorchError
from magtorch._greedy_clusters import GreedyClusterState
from magtorch.cluster import MagnitudeClustering, ThresholdSweep
from tests._reference import (
    as64,
    ref_distances,
    ref_extension_increase,
    ref_greedy_clustering,
    ref_magnitude,
    ref_mean_distance_scaled,
)


def _blobs(seed: int = 0, per: int = 15, spread: float = 0.25) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    noise = torch.randn(3, per, 2, generator=g, dtype=torch.float64)
    x = (centres[:, None] + spread * noise).reshape(-1, 2)
    return x, np.repeat(np.arange(3), per)


def _same_partition(a, b) -> bool:
    """Equal up to the names of the labels."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ----------------------------------------------------------------------------- the increments


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_increase_equals_dense_resolve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 3))
    t = 1.5
    K = torch.exp(-t * ref_distances(x))
    state = GreedyClusterState(K)
    order = rng.permutation(40)
    for p in order[:3]:
        state.open(int(p))
    for i, p in enumerate(order[3:25]):  # random memberships, not the greedy order
        state.join(int(p), int(rng.integers(3)) if i % 4 else i % 3)
    free, inc = state.increases()
    labels = state.labels.numpy()
    assert sorted(free.tolist()) == sorted(order[25:].tolist())
    for c in range(3):
        members = x[labels == c]
        assert state.mags[c] == pytest.approx(float(ref_magnitude(members, t)), rel=1e-10)
        for j, b in enumerate(free.tolist()):
            expected = ref_extension_increase(members, x[b], t)
            assert float(inc[j, c]) == pytest.approx(expected, rel=1e-8, abs=1e-12)


def test_opening_a_cluster_gives_the_two_point_increase() -> None:
    # Mag({a, b}) - Mag({a}) = 2 / (1 + e^{-d}) - 1 = tanh(d / 2)
    d = torch.tensor([0.0, 0.3, 1.0, 4.0], dtype=torch.float64)
    x = torch.cat([torch.zeros(1), d[1:]])[:, None]
    state = GreedyClusterState(torch.exp(-torch.cdist(x, x)))
    state.open(0)
    _, inc = state.increases()
    np.testing.assert_allclose(inc[:, 0].numpy(), np.tanh(d[1:].numpy() / 2), rtol=1e-14)


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.05), (1, 0.15), (2, 0.3), (3, 0.6)])
def test_matches_brute_force_algorithm_4(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(100 + seed)
    x = np.concatenate([rng.normal(size=(12, 2)), rng.normal(size=(12, 2)) + 4.0])
    expected = ref_greedy_clustering(x, threshold, t=1.0)
    model = MagnitudeClustering(threshold=threshold).fit(x)
    assert model.labels_.tolist() == expected


def test_cluster_magnitudes_are_those_of_the_scaled_clusters() -> None:
    x, _ = _blobs(per=10)
    model = MagnitudeClustering(threshold=0.1, t=2.0).fit(x)
    D = ref_mean_distance_scaled(x)
    for c in range(model.n_clusters_):
        idx = torch.as_tensor(model.labels_ == c).nonzero().squeeze(1)
        Z = torch.exp(-2.0 * D[idx][:, idx])
        expected = float(torch.linalg.solve(Z, torch.ones(len(idx), dtype=torch.float64)).sum())
        assert float(model.cluster_magnitudes_[c]) == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- recovery


def test_line_clusters_recovered_between_the_closed_form_gaps() -> None:
    # three groups on a line, gaps <= 0.2 inside, >= 3 between: with m the mean distance, any
    # end insertion costs tanh(t g / 2m) (middle insertions cost less), so thresholds strictly
    # between tanh(0.2 t / 2m) and tanh(3 t / 2m) recover the groups exactly.
    rng = np.random.default_rng(7)
    gaps = np.concatenate([rng.uniform(0.05, 0.2, 9), [3.0], rng.uniform(0.05, 0.2, 6), [4.0]])
    gaps = np.concatenate([gaps, rng.uniform(0.05, 0.2, 11)])
    x = np.concatenate([[0.0], np.cumsum(gaps)])[:, None]
    truth = np.repeat([0, 1, 2], [10, 7, 12])
    m = float(ref_distances(x).sum()) / (len(x) * (len(x) - 1))
    t = 1.0
    lo, hi = math.tanh(0.2 * t / (2 * m)), math.tanh(3.0 * t / (2 * m))
    for threshold in np.linspace(lo, hi, 7)[1:-1]:
        labels = MagnitudeClustering(threshold=float(threshold), t=t).fit_predict(x)
        assert _same_partition(labels, truth)
    assert MagnitudeClustering(threshold=hi * 1.01, t=t).fit(x).n_clusters_ < 3


def test_well_separated_blobs_recovered_exactly() -> None:
    from sklearn.metrics import adjusted_rand_score

    x, truth = _blobs(seed=3, per=20)
    auto = MagnitudeClustering().fit(x)
    assert auto.n_clusters_ == 3
    assert adjusted_rand_score(truth, auto.labels_.numpy()) == 1.0
    fixed = MagnitudeClustering(threshold=0.2).fit(x)
    assert adjusted_rand_score(truth, fixed.labels_.numpy()) == 1.0


def test_far_outlier_is_a_singleton() -> None:
    x, _ = _blobs(per=15)
    x = torch.cat([x, torch.tensor([[40.0, 40.0]], dtype=torch.float64)])
    model = MagnitudeClustering(threshold=0.1).fit(x)
    assert model.n_clusters_ == 4
    assert (model.labels_ == model.labels_[-1]).sum() == 1


# ----------------------------------------------------------------------------- the estimator


def test_fit_predict_equals_fit_labels() -> None:
    x, _ = _blobs(seed=5)
    a = MagnitudeClustering().fit_predict(x)
    b = MagnitudeClustering().fit(x).labels_
    assert torch.equal(a, b)


def test_invariant_to_scale_and_translation() -> None:
    x, _ = _blobs(seed=1)
    base = MagnitudeClustering(threshold=0.05).fit(x)
    moved = MagnitudeClustering(threshold=0.05).fit(17.0 * x + torch.tensor([3.0, -8.0]))
    assert torch.equal(base.labels_, moved.labels_)
    assert moved.scale_ == pytest.approx(17.0 * base.scale_, rel=1e-12)
    auto_a = MagnitudeClustering().fit(x)
    auto_b = MagnitudeClustering().fit(0.01 * x)
    assert torch.equal(auto_a.labels_, auto_b.labels_)
    assert auto_a.threshold_ == pytest.approx(auto_b.threshold_, rel=1e-9)


def test_equivariant_to_permutation() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) + [3.0, 1.0]])
    perm = rng.permutation(len(x))
    for kwargs in ({"threshold": 0.04}, {}):
        a = MagnitudeClustering(**kwargs).fit(x)
        b = MagnitudeClustering(**kwargs).fit(x[perm])
        # labels are numbered by creation order, which does not depend on the input order
        np.testing.assert_array_equal(b.labels_, a.labels_[perm])
        assert perm[b.seed_] == a.seed_


def test_numpy_in_numpy_out_tensor_in_tensor_out() -> None:
    x, _ = _blobs()
    assert isinstance(MagnitudeClustering(threshold=0.1).fit_predict(x.numpy()), np.ndarray)
    labels = MagnitudeClustering(threshold=0.1).fit_predict(x)
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.long


def test_precomputed_matches_points() -> None:
    x, _ = _blobs(seed=2)
    a = MagnitudeClustering(threshold=0.1).fit_predict(x)
    b = MagnitudeClustering(threshold=0.1, metric="precomputed").fit_predict(ref_distances(x))
    assert torch.equal(a, b)


def test_duplicates_join_their_twin_and_do_not_change_magnitude() -> None:
    x, _ = _blobs(per=8)
    xd = torch.cat([x, x[:5], x[:2]])
    model = MagnitudeClustering(threshold=0.1).fit(xd)
    assert torch.equal(model.labels_[24:29], model.labels_[:5])
    assert torch.equal(model.labels_[29:], model.labels_[:2])
    plain = MagnitudeClustering(threshold=0.1).fit(x)
    assert model.n_clusters_ == plain.n_clusters_
    # mean distance differs with duplicates, so compare with the reference on xd's scaling
    D = ref_mean_distance_scaled(xd)[:24, :24]
    for c in range(model.n_clusters_):
        idx = torch.as_tensor(model.labels_[:24] == c).nonzero().squeeze(1)
        Z = torch.exp(-D[idx][:, idx])
        expected = float(torch.linalg.solve(Z, torch.ones(len(idx), dtype=torch.float64)).sum())
        assert float(model.cluster_magnitudes_[c]) == pytest.approx(expected, rel=1e-9)


def test_trivial_inputs() -> None:
    one = MagnitudeClustering(threshold=0.1).fit(torch.zeros(1, 2))
    assert one.labels_.tolist() == [0] and one.n_clusters_ == 1
    same = MagnitudeClustering(threshold=0.1).fit(torch.ones(5, 3))
    assert same.labels_.tolist() == [0] * 5
    assert MagnitudeClustering().fit(torch.ones(5, 3)).n_clusters_ == 1


def test_random_init_is_reproducible() -> None:
    x, _ = _blobs()
    a = MagnitudeClustering(init="random", random_state=4).fit(x)
    b = MagnitudeClustering(init="random", random_state=4).fit(x)
    assert a.seed_ == b.seed_ and torch.equal(a.labels_, b.labels_)


def test_device_in_device_out(device: torch.device) -> None:
    x, _ = _blobs()
    cpu = MagnitudeClustering(threshold=0.1).fit_predict(x)
    out = MagnitudeClustering(threshold=0.1).fit_predict(x.to(device))
    assert out.device.type == device.type
    assert torch.equal(out.cpu(), cpu)


# ----------------------------------------------------------------------------- the sweep


def test_sweep_is_exposed_and_consistent() -> None:
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(size=(25, 2)) * 0.4 + c for c in ([0, 0], [4, 0], [2, 3])])
    model = MagnitudeClustering(n_thresholds=12).fit(x)
    sweep = model.sweep_
    assert isinstance(sweep, ThresholdSweep)
    T = 12
    assert sweep.thresholds.shape == (T,) and sweep.labels.shape == (T, len(x))
    np.testing.assert_allclose(sweep.thresholds, sweep.max_increase * np.arange(1, T + 1) / T)
    assert 1 <= sweep.n_runs <= T + 1
    # every grid entry, reused or not, is what a fixed-threshold fit gives
    for i in range(T):
        fixed = MagnitudeClustering(threshold=float(sweep.thresholds[i])).fit(x)
        assert fixed.labels_.tolist() == sweep.labels[i].tolist()
        assert fixed.n_clusters_ == int(sweep.n_clusters[i])
    # the choice: middle of the longest run of equal counts
    best = sweep.best_index
    assert int(sweep.run_length[best]) == int(sweep.run_length.max())
    assert model.threshold_ == float(sweep.thresholds[best])
    assert len(x) > model.n_clusters_ == int(sweep.n_clusters[best]) > 1
    # above M everything is one cluster
    assert MagnitudeClustering(threshold=sweep.max_increase * 1.001).fit(x).n_clusters_ == 1


def test_explicit_grid_is_sorted_and_used() -> None:
    x, _ = _blobs(seed=4)
    model = MagnitudeClustering(thresholds=[0.3, 0.01, 0.1, 0.1]).fit(x)
    assert model.sweep_.thresholds.tolist() == [0.01, 0.1, 0.3]
    assert math.isnan(model.sweep_.max_increase)
    assert MagnitudeClustering(threshold=0.2).fit(x).sweep_ is None


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threshold": -1.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": "big"}, "threshold"),
        ({"t": 0.0}, "t must"),
        ({"metric": "chebyshev"}, "metric"),
        ({"thresholds": [0.1, -0.2]}, "thresholds"),
        ({"thresholds": [[0.1]]}, "thresholds"),
        ({"thresholds": [0.1], "threshold": 0.1}, "thresholds"),
        ({"n_thresholds": 1}, "n_thresholds"),
        ({"init": "kmeans++"}, "init"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(MagtorchError, match=name):
        MagnitudeClustering(**kwargs)


@pytest.mark.parametrize(
    ("X", "name"),
    [
        (torch.zeros(5), "X"),
        (torch.zeros(0, 2), "empty"),
        (torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), "NaN"),
        ("points", "X"),
    ],
)
def test_bad_data_raises(X, name: str) -> None:
    with pytest.raises(MagtorchError, match=name):
        MagnitudeClustering(threshold=0.1).fit(X)


def test_references_agree_with_each_other() -> None:
    # the brute-force reference itself: the two-point increase is tanh(d / 2)
    x = as64([[0.0, 0.0]])
    assert ref_extension_increase(x, [0.0, 0.7], 1.0) == pytest.approx(math.tanh(0.35), 1e-14)
