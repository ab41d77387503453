"""The matrix-free similarity operator: products, columns and quadratic forms equal the dense
float64 reference for every metric, stacked sets x scales, padding and duplicates, whatever the
row-block size; duplicates are found from coordinates as the dense path finds them."""

from __future__ import annotations

import pytest
import torch

import magtorch
from magtorch._problem import _find_duplicates
from magtorch.matrix_free import PointsSimilarity, find_duplicate_points, points_for_metric
from tests._reference import assert_close, ref_distances, ref_similarity

F64 = torch.float64


def _batch(metric: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 30, 4, dtype=F64, generator=g)
    x[0, 4] = x[0, 2]
    x[1, 9] = x[1, 0]
    if metric == "cosine":
        x[1, 11] = 2.0 * x[1, 1]  # same direction (exact scaling): angular distance 0
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[1, 25:] = False
    return x, valid


def _dense_reference(x, valid, active, t, metric):
    """``(N*T, n, n)``: exp(-t D) on active pairs, identity elsewhere (the dense path's rule)."""
    mats = []
    for s in range(x.shape[0]):
        d = ref_distances(x[s], metric=metric)
        for ts in t[s].tolist():
            z = ref_similarity(d, ts)
            pair = active[s].unsqueeze(-1) & active[s].unsqueeze(-2)
            mats.append(torch.where(pair, z, torch.eye(x.shape[1], dtype=F64)))
    return torch.stack(mats)


@pytest.mark.parametrize("metric", ["euclidean", "l1", "cosine"])
@pytest.mark.parametrize("budget", [None, 1000])
def test_operator_matches_dense(metric, budget):
    x, valid = _batch(metric)
    y = points_for_metric(x, valid, metric)
    rep, counts, active = find_duplicate_points(y, valid)
    t = torch.tensor([[0.3, 2.0, 5.0], [1.0, 0.1, 7.0]], dtype=F64)
    try:
        magtorch.set_memory_budget(budget)  # a tiny budget forces blocks of one row
        op = PointsSimilarity(y, t, active, metric)
        if budget is not None:
            assert op.rows == 1
        z = _dense_reference(x, valid, active, t, metric)
        v = torch.randn(6, 30, dtype=F64, generator=torch.Generator().manual_seed(1))
        assert_close(op.matvec(v), (z @ v.unsqueeze(-1)).squeeze(-1), rtol=1e-12, atol=1e-13)
        idx = torch.tensor([0, 3, 7, 2, 29, 5])
        assert_close(op.column(idx), z[torch.arange(6), :, idx], rtol=1e-12, atol=1e-14)
        w = v * active.repeat_interleave(3, 0)
        dz = []
        for s in range(2):
            d = ref_distances(x[s], metric=metric)
            dz += [d * z[3 * s + j] for j in range(3)]
        quad = torch.einsum("pi,pij,pj->p", w, torch.stack(dz), w)
        assert_close(op.quadratic(w), quad, rtol=1e-11, atol=1e-12)
    finally:
        magtorch.set_memory_budget(None)


@pytest.mark.parametrize("metric", ["euclidean", "l1", "cosine"])
def test_duplicates_match_dense_rule(metric):
    x, valid = _batch(metric)
    y = points_for_metric(x, valid, metric)
    rep, counts, active = find_duplicate_points(y, valid)
    d = torch.stack([ref_distances(x[s], metric=metric) for s in range(2)])
    rep_d, counts_d, active_d = _find_duplicates(d, valid)
    assert torch.equal(rep, rep_d)
    assert torch.equal(active, active_d)
    assert torch.equal(counts, counts_d)
    assert int(active[0].sum()) == 29
    assert int(active[1].sum()) == (24 if metric != "cosine" else 23)


def test_operator_never_builds_dense():
    x, valid = _batch("euclidean")
    op = PointsSimilarity(x, torch.ones(2, 1, dtype=F64), None, "euclidean")
    with pytest.raises(magtorch.MagtorchError, match="matrix-free"):
        op.dense()


def test_cosine_zero_vector_rejected():
    x = torch.randn(5, 3, dtype=F64)
    x[2] = 0.0
    with pytest.raises(magtorch.MagtorchError, match="zero vectors"):
        magtorch.magnitude(x, 1.0, metric="cosine", solver="cg")
