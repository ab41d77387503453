"""Gauss (lower) and Gauss-Radau (upper) bounds on Mag = 1^T Z^-1 1 from CG bracket the dense
float64 value, at every iteration count, with and without the preconditioner."""

from __future__ import annotations

import math

import pytest
import torch

import magtorch
from magtorch.operators import DenseSimilarity
from magtorch.solvers.cg import NystromPreconditioner, pcg
from tests._reference import ref_distances, ref_magnitude, ref_similarity

F64 = torch.float64
#: Rounding slack: the rules hold in exact arithmetic; in float64 up to a few ulps of Mag.
SLACK = 1e-12


def _points(n: int, d: int = 3, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    return spread * torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("t", [0.5, 2.0])
@pytest.mark.parametrize("rank", [0, 20])
def test_bounds_bracket_at_every_iteration(t, rank):
    x = _points(200, seed=1)
    z = ref_similarity(ref_distances(x), t)
    lam = float(torch.linalg.eigvalsh(z)[0])
    exact = float(torch.linalg.solve(z, torch.ones(200, dtype=F64)).sum())
    op = DenseSimilarity(z.unsqueeze(0))
    b = torch.ones(1, 200, dtype=F64)
    lam_t = torch.tensor([0.999 * lam], dtype=F64)
    m = NystromPreconditioner(op, rank) if rank else None
    mu = lam_t if m is None else m.lambda_min_bound(lam_t)
    gaps = []
    for its in (1, 2, 4, 8, 16, 32):
        out = pcg(
            op.matvec,
            b,
            rtol=1e-15,
            max_iter=its,
            precondition=None if m is None else m.apply,
            mu=mu,
        )
        lo, hi = float(out.lower), float(out.upper)
        assert lo <= exact * (1 + SLACK)
        assert hi >= exact * (1 - SLACK)
        gaps.append(hi - lo)
    assert gaps[-1] < 1e-3 * gaps[0]  # the bracket closes as CG converges


def test_magnitude_bounds_with_known_lambda_min():
    x = _points(150, seed=2)
    t = torch.tensor([0.7, 3.0], dtype=F64)
    lam = min(
        float(torch.linalg.eigvalsh(ref_similarity(ref_distances(x), float(s)))[0]) for s in t
    )
    out = magtorch.magnitude_bounds(x, t, rtol=1e-8, lambda_min=0.99 * lam)
    assert bool(out.certified.all())
    for j, s in enumerate(t.tolist()):
        exact = ref_magnitude(x, s)
        assert float(out.lower[j]) <= exact * (1 + SLACK)
        assert float(out.upper[j]) >= exact * (1 - SLACK)
        assert float(out.upper[j] - out.lower[j]) <= 1e-8 * float(out.lower[j])


def test_gershgorin_certifies_large_scales():
    """Well-separated points at a large scale: Z is diagonally dominant and the upper bound is
    certified without a user-supplied eigenvalue bound."""
    x = _points(60, d=2, seed=3, spread=10.0)
    out = magtorch.magnitude_bounds(x, 5.0, rtol=1e-10)
    exact = ref_magnitude(x, 5.0)
    assert bool(out.certified)
    assert float(out.lower) <= exact * (1 + SLACK) <= float(out.upper) * (1 + 2 * SLACK)
    assert float(out.upper - out.lower) <= 1e-10 * float(out.lower)


def test_uncertified_upper_is_infinite_and_lower_still_holds():
    x = _points(100, seed=4)
    out = magtorch.magnitude_bounds(x, 0.5, rtol=1e-6)
    assert not bool(out.certified)
    assert math.isinf(float(out.upper))
    exact = ref_magnitude(x, 0.5)
    assert float(out.lower) <= exact * (1 + SLACK)
    assert float(out.lower) >= exact * (1 - 1e-6)  # CG ran to the residual target instead


def test_bounds_in_solve_report_and_bad_input():
    with pytest.raises(magtorch.MagtorchError, match="precomputed"):
        magtorch.magnitude_bounds(ref_distances(_points(10)), 1.0, metric="precomputed")
    with pytest.raises(magtorch.MagtorchError, match="lambda_min"):
        magtorch.magnitude_bounds(_points(10), 1.0, lambda_min=0.0)
