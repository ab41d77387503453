"""The dense direct solver (``solver="cholesky"``), the default for small and medium ``n``.

See :mod:`magtorch.solvers.dense` for the precision chain (float32 factor with float64 refinement,
float64 Cholesky, eigendecomposition for indefinite or singular ``Z``). Cost ``O(n^3)`` time and
``O(n^2)`` memory per problem.
"""

from __future__ import annotations

from torch import Tensor

from ..operators import SimilarityOperator
from .base import Solver, SolverOutput, register_solver
from .dense import dense_solve

__all__ = ["CholeskySolver"]


@register_solver
class CholeskySolver(Solver):
    """Direct dense solve; ``rtol`` only judges the final residual (a direct solve has no
    iterations to stop)."""

    name = "cholesky"
    default_rtol = 1e-8
    default_max_iter = 1
    needs_dense = True

    def __init__(self, mixed_precision: bool = True) -> None:
        self.mixed_precision = mixed_precision

    def solve(
        self, op: SimilarityOperator, b: Tensor, *, rtol: float, max_iter: int
    ) -> SolverOutput:
        sol = dense_solve(op.dense(), b, mixed_precision=self.mixed_precision)
        residual = sol.residual
        converged = ~sol.singular & (residual <= rtol)
        notes: list[str] = []
        warnings: list[str] = []
        if bool((sol.stage == 2).any()) and self.mixed_precision and op.shape[1] >= 256:
            notes.append(
                f"{int((sol.stage == 2).sum())} problem(s) too ill-conditioned for the float32 "
                "factor: solved in float64"
            )
        indefinite = ~sol.positive_definite & ~sol.singular
        if bool(indefinite.any()):
            cond = float(sol.condition[indefinite].max())
            warnings.append(
                f"Z_t is indefinite for {int(indefinite.sum())} problem(s) (the metric is not of "
                f"negative type at these scales): solved by eigendecomposition (condition number "
                f"up to {cond:.3g}); the magnitude is defined but weights and magnitude may be "
                "negative"
            )
        if bool(sol.singular.any()):
            notes.append(
                f"Z_t is numerically singular for {int(sol.singular.sum())} problem(s): the "
                "magnitude is undefined there (NaN)"
            )
        return SolverOutput(
            weights=sol.weights,
            iterations=sol.iterations,
            residual=residual,
            converged=converged,
            positive_definite=sol.positive_definite,
            notes=notes,
            warnings=warnings,
        )
