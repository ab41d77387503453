"""Solvers: each agrees with the independent float64 dense reference to its own tolerance,
reports honest diagnostics, and says so when it misses its tolerance; agreement with magnipy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import magtorch
from tests._reference import (
    as64,
    assert_close,
    l1_grid_points,
    ref_distances,
    ref_magnitude,
    ref_similarity,
    ref_weights,
)

ITERATIVE = ["iterative_normalization", "gradient_descent"]
ALL_SOLVERS = ["cholesky", *ITERATIVE]


def _positive_weight_set(rng, n=12):
    """Well-separated points at a moderate scale: all reference weights are positive.
    A 4 x 3 grid of spacing 2 with jitter in [-0.4, 0.4]^2 (minimum distance >= 1.2)."""
    grid = np.stack(np.meshgrid(np.arange(4.0), np.arange(3.0), indexing="ij"), -1)
    x = 2.0 * grid.reshape(-1, 2) + rng.uniform(-0.4, 0.4, size=(12, 2))
    return x[:n]


def _error_bound(x, t, rtol, metric="euclidean"):
    """||w - w*||_2 <= ||Z^-1||_2 ||Zw - 1||_2 = rtol sqrt(n) / lambda_min(Z)."""
    Z = ref_similarity(ref_distances(x, metric=metric), t)
    lam_min = float(torch.linalg.eigvalsh(Z)[0])
    n = Z.shape[-1]
    return rtol * math.sqrt(n) / lam_min


def _residual(x, t, w):
    Z = ref_similarity(ref_distances(x), t)
    n = Z.shape[-1]
    return float(torch.linalg.norm(Z @ as64(w) - 1.0) / math.sqrt(n))


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_solver_agrees_with_dense_reference(solver, rng, device):
    x = _positive_weight_set(rng)
    t = 1.0
    w_ref = ref_weights(x, t)
    assert float(w_ref.min()) > 0  # precondition
    rtol = 1e-10
    res = magtorch.solve(
        torch.tensor(x, device=device), t, solver=solver, rtol=rtol, max_iter=20000
    )
    assert res.weights.device.type == device.type
    assert res.magnitude.device.type == device.type
    bound = _error_bound(x, t, rtol) if solver != "cholesky" else 1e-12
    err = float(torch.linalg.norm(as64(res.weights) - w_ref))
    assert err <= 1.01 * bound + 1e-13, (err, bound)
    mag_err = abs(float(res.magnitude) - float(w_ref.sum()))
    assert mag_err <= math.sqrt(len(x)) * (1.01 * bound + 1e-13), (mag_err, bound)
    # magnitude is the sum of the returned weights
    assert_close(res.magnitude, as64(res.weights).sum(), rtol=1e-12)
    # the magnitude() front end dispatches to the same solver
    mag = magtorch.magnitude(torch.tensor(x), t, solver=solver, rtol=rtol, max_iter=20000)
    assert abs(float(mag) - float(w_ref.sum())) <= math.sqrt(len(x)) * (1.01 * bound + 1e-13)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_solver_info_fields(solver, rng):
    x = _positive_weight_set(rng)
    t = 1.0
    rtol = 1e-8
    max_iter = 20000
    with warnings.catch_warnings():
        warnings.simplefilter("error", magtorch.ConvergenceWarning)
        res = magtorch.solve(torch.tensor(x), t, solver=solver, rtol=rtol, max_iter=max_iter)
    info = res.info
    assert info.method == solver
    assert bool(info.converged)
    assert info.converged.dtype == torch.bool
    assert int(info.n_distinct) == len(x)
    if solver == "cholesky":  # a successful factorisation proves positive definiteness
        assert bool(info.positive_definite)
    assert isinstance(info.notes, list)
    it = int(info.iterations)
    if solver == "cholesky":
        assert it <= 1
    else:
        assert 1 <= it <= max_iter
    # the reported residual is the relative residual ||Zw - 1|| / ||1|| of the returned weights
    actual = _residual(x, t, res.weights)
    assert actual <= rtol * 1.01
    assert float(info.residual) <= rtol
    assert_close(info.residual, actual, rtol=0.05, atol=1e-15)


@pytest.mark.parametrize("solver", ITERATIVE)
def test_iterative_info_shapes_batched_several_scales(solver, rng):
    x = torch.tensor(np.stack([_positive_weight_set(rng, n=8) for _ in range(3)]))
    ts = torch.tensor([1.0, 3.0], dtype=torch.float64)
    res = magtorch.solve(x, ts, solver=solver, rtol=1e-9, max_iter=20000)
    assert res.weights.shape == (3, 2, 8)
    assert res.magnitude.shape == (3, 2)
    for field in ("iterations", "residual", "converged"):
        assert tuple(getattr(res.info, field).shape) == (3, 2), field
    assert tuple(res.info.n_distinct.shape) in [(3,), (3, 2)]
    for b in range(3):
        for k, t in enumerate(ts.tolist()):
            bound = _error_bound(x[b], t, 1e-9)
            err = float(torch.linalg.norm(as64(res.weights[b, k]) - ref_weights(x[b], t)))
            assert err <= 1.01 * bound + 1e-13


def test_auto_solver_is_exact_on_small_dense_problems(rng):
    x = rng.normal(size=(20, 3))
    for t in [0.1, 1.0, 10.0]:
        res = magtorch.solve(torch.tensor(x), t)
        assert_close(res.magnitude, ref_magnitude(x, t), rtol=1e-10)
        assert bool(res.info.converged)


# ---------------------------------------------------------------- negative true weights


def _negative_weight_problem():
    """The 3x3x3 grid of R^3 (euclidean) at t = 1: the centre and face weights are negative."""
    x = l1_grid_points(3, 3)
    t = 1.0
    w_ref = ref_weights(x, t)
    assert float(w_ref.min()) < -0.1  # precondition, checked with the reference
    return x, t, w_ref


def test_iterative_normalization_negative_weights_warns_and_is_biased_low():
    x, t, w_ref = _negative_weight_problem()
    with pytest.warns(magtorch.ConvergenceWarning):
        res = magtorch.solve(
            torch.tensor(x), t, solver="iterative_normalization", rtol=1e-8, max_iter=2000
        )
    assert not bool(res.info.converged)
    assert float(res.info.residual) > 1e-8
    # the reported residual is honest: it is the residual of the returned weights
    assert_close(res.info.residual, _residual(x, t, res.weights), rtol=0.05)
    # iterative normalisation keeps weights non-negative ...
    assert float(res.weights.min()) >= 0.0
    # ... so at best it finds a positive weighting w with sum(w) = w^T Z w, whence
    # sum(w) = (1^T w)^2 / (w^T Z w) <= Mag: biased low against the true magnitude.
    assert float(res.magnitude) < float(w_ref.sum())


def test_iterative_normalization_negative_weights_raises():
    x, t, _ = _negative_weight_problem()
    with pytest.raises(magtorch.ConvergenceError):
        magtorch.solve(
            torch.tensor(x),
            t,
            solver="iterative_normalization",
            rtol=1e-8,
            max_iter=2000,
            on_nonconvergence="raise",
        )
    with pytest.raises(magtorch.ConvergenceError):
        magtorch.magnitude(
            torch.tensor(x),
            t,
            solver="iterative_normalization",
            rtol=1e-8,
            max_iter=2000,
            on_nonconvergence="raise",
        )


def test_convergence_error_is_a_magtorch_error():
    assert issubclass(magtorch.ConvergenceError, magtorch.MagtorchError)
    assert issubclass(magtorch.ConvergenceWarning, UserWarning)
    assert issubclass(magtorch.MagtorchError, ValueError)
    assert issubclass(magtorch.MemoryBudgetError, magtorch.MagtorchError)
    assert issubclass(magtorch.MemoryBudgetError, MemoryError)


def test_gradient_descent_out_of_iterations_is_flagged(rng):
    # an ill-conditioned problem cannot reach 1e-12 in 3 gradient steps
    x = rng.normal(size=(15, 2))
    t = 0.5
    with pytest.warns(magtorch.ConvergenceWarning):
        res = magtorch.solve(torch.tensor(x), t, solver="gradient_descent", rtol=1e-12, max_iter=3)
    assert not bool(res.info.converged)
    assert int(res.info.iterations) <= 3
    assert float(res.info.residual) > 1e-12
    assert_close(res.info.residual, _residual(x, t, res.weights), rtol=0.05)
    with pytest.raises(magtorch.ConvergenceError):
        magtorch.solve(
            torch.tensor(x),
            t,
            solver="gradient_descent",
            rtol=1e-12,
            max_iter=3,
            on_nonconvergence="raise",
        )


# -------------------------------------------------------------------- non-Euclidean inputs


def _k32_distances():
    """Complete bipartite graph K_{3,2} with the graph metric: not positive definite at
    small scales (Leinster 2013, Example 2.4.11)."""
    D = np.full((5, 5), 2.0)
    D[:3, 3:] = 1.0
    D[3:, :3] = 1.0
    np.fill_diagonal(D, 0.0)
    return D


def test_positive_definite_flag_precomputed():
    D = _k32_distances()
    t_small, t_large = 0.2, 2.0
    assert float(np.linalg.eigvalsh(np.exp(-t_small * D))[0]) < 0  # precondition
    assert float(np.linalg.eigvalsh(np.exp(-t_large * D))[0]) > 0  # precondition
    with pytest.warns(UserWarning, match="indefinite"):  # detected, and said so
        res = magtorch.solve(torch.tensor(D), t_small, metric="precomputed")
    assert not bool(res.info.positive_definite)
    # Z_t is indefinite but invertible here (cond ~ 1e2): the magnitude is still defined
    assert_close(res.magnitude, ref_weights_from_d(D, t_small).sum(), rtol=1e-10)
    assert_close(res.weights, ref_weights_from_d(D, t_small), rtol=1e-10, atol=1e-13)
    res = magtorch.solve(torch.tensor(D), t_large, metric="precomputed")
    assert bool(res.info.positive_definite)
    assert_close(res.magnitude, ref_weights_from_d(D, t_large).sum(), rtol=1e-10)


def ref_weights_from_d(D, t):
    Z = torch.exp(-t * torch.tensor(D))
    return torch.linalg.solve(Z, torch.ones(Z.shape[0], 1, dtype=Z.dtype))[:, 0]


# ------------------------------------------------------------------------------- magnipy


def test_agreement_with_magnipy():
    from magnipy.magnitude.compute import compute_magnitude_from_distances

    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 10))
    ts = np.logspace(-2, 1, 10)
    D = ref_distances(x).numpy()
    expected = compute_magnitude_from_distances(
        D, ts=ts, method="cholesky", perturb_singularities=False
    )
    mag = magtorch.magnitude(torch.tensor(x), torch.tensor(ts))
    assert_close(mag, expected, rtol=1e-9)
    mag_chol = magtorch.magnitude(torch.tensor(x), torch.tensor(ts), solver="cholesky")
    assert_close(mag_chol, expected, rtol=1e-9)
    # and the weights
    w_expected = compute_magnitude_from_distances(
        D, ts=ts, method="cholesky", perturb_singularities=False, get_weights=True
    )
    w = magtorch.weights(torch.tensor(x), torch.tensor(ts))
    assert_close(w.T, w_expected, rtol=1e-9, atol=1e-12)
