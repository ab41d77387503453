r"""Iterative normalisation (Andreeva et al., "Approximating Metric Magnitude of Point Sets",
AAAI 2025, Algorithm 1).

Start from ``w = 1`` and repeat, for all points in parallel,

.. math:: w_i \leftarrow w_i \,/\, (Z w)_i ,

i.e. rescale each weight so its row of ``Z w`` is pushed to 1. Each step costs one product
``Z w`` (``O(n^2)``, matrix-free capable). The iterates stay **positive**, so when the true
weighting has negative entries the iteration cannot reach ``Z w = 1``: it stalls at a positive
vector whose residual stays large and whose sum under-estimates the magnitude. We detect the stall
(residual not improving) and report ``converged=False`` with a note instead of hiding it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..operators import SimilarityOperator
from .base import Solver, SolverOutput, register_solver

__all__ = ["IterativeNormalizationSolver"]

#: Iterations over which a residual improvement of less than ``STALL_FACTOR`` counts as a stall.
STALL_WINDOW = 50
STALL_FACTOR = 0.99
#: Steps between checks of "every problem done" (each check synchronises with the device).
SYNC_EVERY = 8


@register_solver
class IterativeNormalizationSolver(Solver):
    name = "iterative_normalization"
    default_rtol = 1e-6
    default_max_iter = 2000

    def solve(
        self, op: SimilarityOperator, b: Tensor, *, rtol: float, max_iter: int
    ) -> SolverOutput:
        num = b.shape[0]
        bnorm = b.norm(dim=-1).clamp_min(torch.finfo(b.dtype).tiny)
        w = b.clone()
        iterations = torch.zeros(num, dtype=torch.int64, device=b.device)
        done = torch.zeros(num, dtype=torch.bool, device=b.device)
        stalled = torch.zeros_like(done)
        best = torch.full((num,), float("inf"), dtype=b.dtype, device=b.device)
        best_at = torch.zeros_like(iterations)
        residual = best.clone()
        for step in range(max_iter + 1):
            zw = op.matvec(w)
            residual = torch.where(done, residual, (zw - b).norm(dim=-1) / bnorm)
            done = done | (residual <= rtol)
            improved = residual < STALL_FACTOR * best
            best = torch.where(improved, residual, best)
            best_at = torch.where(improved, step, best_at)
            stalled = stalled | (~done & (step - best_at >= STALL_WINDOW))
            # The all-done test reads a value from the device: every SYNC_EVERY steps only.
            if step == max_iter or (step % SYNC_EVERY == 0 and bool((done | stalled).all())):
                break
            active = ~(done | stalled)
            ratio = torch.where(b > 0, b / zw, torch.zeros_like(zw))
            w = torch.where(active[:, None], w * ratio, w)
            iterations += active.long()
        notes: list[str] = []
        if bool(stalled.any()):
            notes.append(
                f"iterative normalisation stalled on {int(stalled.sum())} problem(s) (residual "
                f"{float(residual[stalled].min()):.2e} or more): it keeps weights positive, and "
                "the true weighting has negative entries there, so the magnitude is "
                "under-estimated; use solver='cholesky'"
            )
        return SolverOutput(
            weights=w,
            iterations=iterations,
            residual=residual,
            converged=residual <= rtol,
            positive_definite=None,
            notes=notes,
        )
