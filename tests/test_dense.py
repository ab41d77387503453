"""The dense solve chain (magtorch.solvers.dense): float32 factor with float64 refinement,
float64 Cholesky, eigendecomposition; each against an independent float64 LAPACK solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import magtorch
from magtorch.solvers.dense import MIXED_PRECISION_MIN_N, dense_inverse, dense_solve
from tests._reference import assert_close, ref_distances, ref_similarity


def _similarity(rng, n, t, d=5):
    x = rng.standard_normal((n, d))
    return ref_similarity(ref_distances(x), t)


@pytest.mark.parametrize("t", [0.3, 1.0, 5.0])
def test_mixed_precision_matches_float64(rng, t):
    """n above the mixed-precision threshold: the refined solution is float64-accurate."""
    n = MIXED_PRECISION_MIN_N + 44
    z = _similarity(rng, n, t).unsqueeze(0)
    ones = torch.ones(1, n, dtype=torch.float64)
    sol = dense_solve(z, ones)
    ref = torch.linalg.solve(z, ones.unsqueeze(-1)).squeeze(-1)
    assert int(sol.stage[0]) == 1  # the float32 factor was used
    assert_close(sol.weights, ref, rtol=1e-11)
    assert float(sol.residual[0]) <= 1e-12
    assert_close(sol.weights.sum(), ref.sum(), rtol=1e-13)


def test_float32_factor_failure_falls_back_to_float64(rng):
    """At a tiny scale Z is too ill-conditioned for a float32 Cholesky of a 300-point set in
    R^2; the float64 stage must take over and the note must say so."""
    n = MIXED_PRECISION_MIN_N + 44
    x = rng.standard_normal((n, 2))
    z = ref_similarity(ref_distances(x), 1e-5)
    assert int(torch.linalg.cholesky_ex(z.float())[1]) != 0  # the premise: float32 fails
    if int(torch.linalg.cholesky_ex(z)[1]) != 0:
        pytest.skip("float64 Cholesky fails too on this draw")
    res = magtorch.solve(torch.from_numpy(x), 1e-5)
    ref = torch.linalg.solve(z, torch.ones(n, 1, dtype=torch.float64)).sum()
    assert any("float64" in note for note in res.info.notes)
    # Z is very ill-conditioned here: the magnitude is still accurate (it is well conditioned).
    assert_close(res.magnitude, ref, rtol=1e-8)


def test_eigh_stage_on_indefinite_matrix():
    """The K_{3,2} graph metric at t = 0.2 is indefinite: solved by eigendecomposition,
    positive_definite False, and the weights satisfy Z w = 1."""
    dist = torch.full((5, 5), 2.0, dtype=torch.float64)
    dist[:3, 3:] = 1.0
    dist[3:, :3] = 1.0
    dist.fill_diagonal_(0.0)
    z = torch.exp(-0.2 * dist).unsqueeze(0)
    sol = dense_solve(z, torch.ones(1, 5, dtype=torch.float64))
    assert int(sol.stage[0]) == 3 and not bool(sol.positive_definite[0])
    assert_close(z[0] @ sol.weights[0], torch.ones(5, dtype=torch.float64), rtol=1e-13)


def test_dense_inverse_against_linalg_inv(rng):
    z = torch.stack([_similarity(rng, 20, 0.7), _similarity(rng, 20, 2.0)])
    inv, singular = dense_inverse(z)
    assert not bool(singular.any())
    assert_close(inv, torch.linalg.inv(z), rtol=1e-11)


def test_chunked_solves_and_gradients_equal_unchunked(rng):
    """A memory budget that forces one problem per chunk gives the same magnitudes, weights and
    gradients (points and t) as one batched chunk, on a ragged batch with several scales."""
    x = torch.tensor(rng.standard_normal((3, 9, 2)), requires_grad=True)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    t = torch.tensor([0.5, 1.5], dtype=torch.float64, requires_grad=True)

    def run():
        w = magtorch.weights(x, t, mask=mask)
        loss = (w * torch.arange(9.0, dtype=torch.float64)).sum() + w.sum(-1).pow(2).sum()
        gx, gt = torch.autograd.grad(loss, (x, t))
        return w.detach(), gx, gt

    big = run()
    per_problem = 32 * 9 * 9  # bytes of one dense problem (magtorch._memory.BYTES_PER_ENTRY)
    magtorch.set_memory_budget(8 * 3 * 9 * 9 + per_problem)  # distances + one problem
    try:
        small = run()
    finally:
        magtorch.set_memory_budget(None)
    for a, b in zip(big, small, strict=True):
        assert_close(a, b, rtol=1e-12)


def test_memory_budget_refuses_before_allocating():
    magtorch.set_memory_budget(10**6)
    try:
        with pytest.raises(magtorch.MemoryBudgetError, match="n=400"):
            magtorch.magnitude(torch.zeros(400, 2, dtype=torch.float64), 1.0, solver="cholesky")
    finally:
        magtorch.set_memory_budget(None)


def test_refinement_accuracy_is_float64_level_on_clustered_data(rng):
    """Clustered data at moderate t (condition number ~1e5): refined and float64 agree."""
    centres = rng.standard_normal((6, 3)) * 4
    x = np.concatenate([c + 0.3 * rng.standard_normal((60, 3)) for c in centres])
    z = ref_similarity(ref_distances(x), 0.8)
    ref = torch.linalg.solve(z, torch.ones(len(x), 1, dtype=torch.float64)).squeeze(-1)
    w = magtorch.weights(torch.from_numpy(x), 0.8)
    cond = float(torch.linalg.cond(z))
    # Norm-wise forward error of a backward-stable float64 solve is ~cond * eps.
    error = float((w - ref).norm() / ref.norm())
    assert error <= max(1e-13, 10 * cond * 2.2e-16), (error, cond)
