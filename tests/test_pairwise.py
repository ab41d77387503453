"""pairwise_distances and similarity_matrix against scipy.spatial.distance and hand formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import distance as sd

import magtorch
from tests._reference import assert_close, ref_distances

RTOL = 1e-12  # float64 distances from coordinate differences: a few ulps


@pytest.mark.parametrize("metric,scipy_metric", [("euclidean", "euclidean"), ("l1", "cityblock")])
def test_against_scipy_cdist(metric, scipy_metric, rng, device):
    x = rng.normal(size=(13, 4))
    y = rng.normal(size=(7, 4))
    xt = torch.tensor(x, device=device)
    yt = torch.tensor(y, device=device)
    out = magtorch.pairwise_distances(xt, yt, metric=metric)
    assert out.device.type == device.type
    assert out.dtype == torch.float64
    assert_close(out, sd.cdist(x, y, metric=scipy_metric), rtol=RTOL, atol=1e-14)
    out_xx = magtorch.pairwise_distances(xt, metric=metric)
    assert_close(out_xx, sd.cdist(x, x, metric=scipy_metric), rtol=RTOL, atol=0.0)


def test_cosine_is_angular(rng, device):
    x = rng.normal(size=(11, 5))
    y = rng.normal(size=(6, 5))
    out = magtorch.pairwise_distances(
        torch.tensor(x, device=device), torch.tensor(y, device=device), metric="cosine"
    )
    assert out.device.type == device.type
    # scipy's "cosine" distance is 1 - cos(angle); the angular distance is arccos(cos(angle))
    expected = np.arccos(np.clip(1.0 - sd.cdist(x, y, metric="cosine"), -1.0, 1.0))
    assert_close(out, expected, rtol=1e-10, atol=1e-12)
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= np.pi


def test_cosine_hand_formula_known_angles():
    # unit vectors at 0, 45, 90, 180 degrees (and a scaled copy: the angle ignores length)
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-2.0, 0.0]], dtype=torch.float64)
    out = magtorch.pairwise_distances(x[:1], x, metric="cosine")
    assert_close(out, [[0.0, np.pi / 4, np.pi / 2, np.pi]], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "l1", "cosine"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_zero_diagonal_and_duplicates(metric, dtype, rng, device):
    # large-norm coordinates: the |x|^2 + |y|^2 - 2<x,y> (matmul) path of torch.cdist leaves
    # O(sqrt(eps) |x|) garbage here; the distance of a point to itself must be exactly 0.
    base = rng.normal(size=(20, 8)) * 37.0 + 100.0
    x = np.concatenate([base, base[[3, 7, 7]]])  # rows 20, 21, 22 repeat rows 3, 7, 7
    xt = torch.tensor(x, dtype=dtype, device=device)
    D = magtorch.pairwise_distances(xt, metric=metric).cpu()
    assert D.dtype == dtype
    assert torch.all(torch.diagonal(D) == 0), torch.diagonal(D).abs().max()
    for i, j in [(3, 20), (7, 21), (7, 22), (21, 22)]:
        assert D[i, j] == 0 and D[j, i] == 0, (i, j, float(D[i, j]))
    # and the same holds with an explicit y holding the same points
    Dxy = magtorch.pairwise_distances(xt, xt.clone(), metric=metric).cpu()
    assert torch.all(torch.diagonal(Dxy) == 0)


def test_near_duplicates_resolved_euclidean():
    # two points 1e-7 apart at coordinates ~1e2: the difference-based formula is exact to
    # ~1e-16 absolute (relative 1e-9), the Gram-matrix formula gives ~1e-6 absolute errors.
    base = np.array([[123.456, -98.765, 55.5]])
    delta = np.array([[1e-7, -2e-7, 0.5e-7]])
    x = torch.tensor(np.concatenate([base, base + delta]))
    D = magtorch.pairwise_distances(x)
    expected = ref_distances(x)[0, 1]
    assert_close(D[0, 1], expected, rtol=1e-8)


def test_symmetric_output(rng):
    x = torch.tensor(rng.normal(size=(30, 3)))
    D = magtorch.pairwise_distances(x)
    assert torch.equal(D, D.T)


def test_batched_matches_unbatched(rng, device):
    x = torch.tensor(rng.normal(size=(3, 9, 2)), device=device)
    y = torch.tensor(rng.normal(size=(3, 5, 2)), device=device)
    out = magtorch.pairwise_distances(x, y)
    assert out.shape == (3, 9, 5)
    for b in range(3):
        assert_close(out[b], sd.cdist(x[b].cpu().numpy(), y[b].cpu().numpy()), rtol=RTOL)


def test_precomputed_passthrough(rng):
    x = rng.normal(size=(8, 3))
    D = sd.squareform(sd.pdist(x))
    out = magtorch.pairwise_distances(torch.tensor(D), metric="precomputed")
    assert_close(out, D, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("metric", ["euclidean", "l1"])
def test_similarity_matrix(metric, rng, device):
    x = rng.normal(size=(10, 3))
    xt = torch.tensor(x, device=device)
    scipy_metric = {"euclidean": "euclidean", "l1": "cityblock"}[metric]
    D = sd.cdist(x, x, metric=scipy_metric)
    Z = magtorch.similarity_matrix(xt, 0.7, metric=metric)
    assert Z.device.type == device.type
    assert_close(Z, np.exp(-0.7 * D), rtol=1e-12)
    ts = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    Zs = magtorch.similarity_matrix(xt, ts.to(device), metric=metric)
    assert Zs.shape == (3, 10, 10)
    for k, t in enumerate(ts.tolist()):
        assert_close(Zs[k], np.exp(-t * D), rtol=1e-12)


def test_similarity_matrix_precomputed(rng):
    x = rng.normal(size=(6, 2))
    D = sd.squareform(sd.pdist(x))
    Z = magtorch.similarity_matrix(torch.tensor(D), 2.5, metric="precomputed")
    assert_close(Z, np.exp(-2.5 * D), rtol=1e-12)


def test_euclidean_accurate_where_the_product_form_cancels(rng):
    """Points far from the origin and close together: |x|^2 + |y|^2 - 2<x, y> loses ~10 digits
    there; the close pairs must be recomputed from differences (relative error ~1e-15)."""
    centre = np.full(5, 1e4)
    x = centre + 1e-3 * rng.standard_normal((40, 5))
    y = centre + 1e-3 * rng.standard_normal((30, 5))
    got = magtorch.pairwise_distances(torch.from_numpy(x), torch.from_numpy(y))
    assert_close(got, sd.cdist(x, y), rtol=RTOL)
    assert_close(magtorch.pairwise_distances(torch.from_numpy(x)), sd.cdist(x, x), rtol=RTOL)


def test_euclidean_gradient_and_batch_broadcasting(rng):
    """Backward (two matrix products) against finite differences, with batch axes that
    broadcast between x (2, 1, n, d) and y (1, 3, m, d)."""
    x = torch.tensor(rng.standard_normal((2, 1, 5, 3)), requires_grad=True)
    y = torch.tensor(rng.standard_normal((1, 3, 4, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: magtorch.pairwise_distances(a, b), (x, y))
    d = magtorch.pairwise_distances(x, y)
    assert d.shape == (2, 3, 5, 4)
    assert_close(
        d, ref_distances(x.detach().expand(2, 3, 5, 3), y.detach().expand(2, 3, 4, 3)), rtol=RTOL
    )


def test_euclidean_gradient_at_zero_distance_is_finite():
    """A duplicated point: the distance is exactly 0 and its (sub)gradient 0, never NaN."""
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    d = magtorch.pairwise_distances(x)
    assert float(d.detach()[0, 1]) == 0.0
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    # Only the pairs with the third point contribute: d/dx of |x_i - x_j| is the unit vector.
    unit = (x.detach()[0] - x.detach()[2]) / (x.detach()[0] - x.detach()[2]).norm()
    assert_close(x.grad[0], 2 * unit, rtol=1e-12)
