"""Bad input is rejected where it enters, with magtorch.MagtorchError naming the argument."""

from __future__ import annotations

import math
import resource
import time

import numpy as np
import pytest
import torch

import magtorch

F64 = torch.float64
X = r"\bx\b"
T = r"\bt\b"


def _x(n=5, d=2, seed=0):
    return torch.tensor(np.random.default_rng(seed).normal(size=(n, d)), dtype=F64)


FUNCS = {
    "magnitude": lambda x, t, **kw: magtorch.magnitude(x, t, **kw),
    "weights": lambda x, t, **kw: magtorch.weights(x, t, **kw),
    "solve": lambda x, t, **kw: magtorch.solve(x, t, **kw),
    "magnitude_derivative": lambda x, t, **kw: magtorch.magnitude_derivative(x, t, **kw),
    "loo_potential": lambda x, t, **kw: magtorch.loo_potential(x, t, **kw),
    "similarity_matrix": lambda x, t, **kw: magtorch.similarity_matrix(x, t, **kw),
}


@pytest.mark.parametrize("func", sorted(FUNCS))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_points(func, bad):
    x = _x()
    x[2, 1] = bad
    with pytest.raises(magtorch.MagtorchError, match=X):
        FUNCS[func](x, 1.0)


def test_non_finite_points_pairwise():
    x = _x()
    x[0, 0] = math.nan
    with pytest.raises(magtorch.MagtorchError, match=X):
        magtorch.pairwise_distances(x)


@pytest.mark.parametrize("func", sorted(FUNCS))
def test_empty_set(func):
    with pytest.raises(magtorch.MagtorchError, match=X):
        FUNCS[func](torch.empty(0, 2, dtype=F64), 1.0)


@pytest.mark.parametrize("func", sorted(FUNCS))
@pytest.mark.parametrize(
    "t",
    [
        0.0,
        -1.0,
        math.nan,
        math.inf,
        torch.tensor([0.5, 0.0]),
        torch.tensor([1.0, math.nan]),
        [1.0, -2.0],
    ],
    ids=["zero", "negative", "nan", "inf", "vec-zero", "vec-nan", "list-negative"],
)
def test_bad_scale(func, t):
    with pytest.raises(magtorch.MagtorchError, match=T):
        FUNCS[func](_x(), t)


def test_scale_with_wrong_ndim():
    with pytest.raises(magtorch.MagtorchError, match=T):
        magtorch.magnitude(_x(), torch.ones(2, 2))


@pytest.mark.parametrize("shape", [(5,), (), (0,)])
def test_points_with_wrong_ndim(shape):
    x = torch.ones(shape, dtype=F64)
    with pytest.raises(magtorch.MagtorchError, match=X):
        magtorch.magnitude(x, 1.0)


def test_integer_points_rejected_or_accepted_consistently():
    # integer coordinates are not a floating dtype; either an error naming x or a float result
    x = torch.tensor([[0, 0], [1, 0]])
    try:
        mag = magtorch.magnitude(x, 1.0)
    except magtorch.MagtorchError as err:
        assert "x" in str(err)
    else:
        assert mag.dtype.is_floating_point
        assert abs(float(mag) - 2 / (1 + math.exp(-1.0))) < 1e-6


@pytest.mark.parametrize("func", sorted(FUNCS))
def test_unknown_metric(func):
    with pytest.raises(magtorch.MagtorchError, match="metric"):
        FUNCS[func](_x(), 1.0, metric="manhattan-ish")


def test_unknown_metric_pairwise():
    with pytest.raises(magtorch.MagtorchError, match="metric"):
        magtorch.pairwise_distances(_x(), metric="chebyshev-ish")


@pytest.mark.parametrize("func", ["magnitude", "weights", "solve"])
def test_unknown_solver(func):
    with pytest.raises(magtorch.MagtorchError, match="solver"):
        FUNCS[func](_x(), 1.0, solver="qr-please")


def test_bad_on_nonconvergence():
    with pytest.raises(magtorch.MagtorchError, match="on_nonconvergence"):
        magtorch.magnitude(_x(), 1.0, on_nonconvergence="ignore")


@pytest.mark.parametrize(
    "mask",
    [
        torch.ones(4, dtype=torch.bool),  # wrong length
        torch.ones(2, 5, dtype=torch.bool),  # extra batch dim
        torch.ones(5, dtype=F64),  # not boolean
    ],
    ids=["length", "ndim", "dtype"],
)
def test_mask_shape_mismatch(mask):
    with pytest.raises(magtorch.MagtorchError, match="mask"):
        magtorch.magnitude(_x(), 1.0, mask=mask)


def test_mask_shape_mismatch_batched():
    x = torch.stack([_x(seed=0), _x(seed=1)])
    with pytest.raises(magtorch.MagtorchError, match="mask"):
        magtorch.magnitude(x, 1.0, mask=torch.ones(3, 5, dtype=torch.bool))


def test_mask_with_no_real_point():
    x = torch.stack([_x(seed=0), _x(seed=1)])
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(magtorch.MagtorchError, match="mask|x"):
        magtorch.magnitude(x, 1.0, mask=mask)


def _line_distance_matrix():
    p = np.array([0.0, 1.0, 2.5, 3.0])
    return torch.tensor(np.abs(p[:, None] - p[None]))


@pytest.mark.parametrize("kind", ["not_square", "negative", "asymmetric", "nonzero_diagonal"])
def test_bad_precomputed_matrix(kind):
    D = _line_distance_matrix()
    if kind == "not_square":
        D = D[:, :3]
    elif kind == "negative":
        D[0, 1] = D[1, 0] = -0.5
    elif kind == "asymmetric":
        D[0, 1] += 0.3
    else:
        D[2, 2] = 0.1
    with pytest.raises(magtorch.MagtorchError, match=X):
        magtorch.magnitude(D, 1.0, metric="precomputed")


def test_potential_feature_dims_mismatch():
    with pytest.raises(magtorch.MagtorchError, match=r"\b[zx]\b"):
        magtorch.potential(_x(3, 3), _x(5, 2), 1.0)


def test_potential_ratio_labels_length_mismatch():
    z = _x(6, 2)
    with pytest.raises(magtorch.MagtorchError, match="labels"):
        magtorch.potential_ratio(z, torch.tensor([0, 1, 0, 1, 0]), 1.0)


def test_potential_ratio_reference_labels_mismatch():
    z = _x(6, 2)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    with pytest.raises(magtorch.MagtorchError, match="reference_labels"):
        magtorch.potential_ratio(
            z, labels, 1.0, reference=_x(4, 2, seed=3), reference_labels=torch.tensor([0, 1])
        )


def test_convergence_scale_bad_q():
    for q in [0.0, 1.0, 1.5, -0.1]:
        with pytest.raises(magtorch.MagtorchError, match=r"\bq\b"):
            magtorch.convergence_scale(_x(), q)


def _max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


@pytest.mark.parametrize("func", ["magnitude", "weights", "solve"])
def test_dense_problem_too_large(func):
    # 200000 points: the dense similarity matrix alone is 200000^2 * 8 B = 320 GB
    x = torch.randn(200_000, 2, dtype=F64)
    rss0 = _max_rss_bytes()
    start = time.perf_counter()
    with pytest.raises(magtorch.MemoryBudgetError):
        FUNCS[func](x, 1.0, solver="cholesky")
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"took {elapsed:.1f}s: the budget check must come before any work"
    # no n x n (or n x n / k chunk of size > 1 GB) was allocated before raising
    assert _max_rss_bytes() - rss0 < 1 << 30


def test_memory_budget_error_is_catchable_as_memory_error():
    x = torch.randn(200_000, 2, dtype=F64)
    with pytest.raises(MemoryError):
        magtorch.magnitude(x, 1.0, solver="cholesky")
