"""The dense direct solver (``solver="cholesky"``), the default for small and medium ``n``.

See :mod:`magtorch.solvers.dense` for the precision chain (float32 factor with float64 refinement,
float64 Cholesky, eigendecomposition for indefinite or singular ``Z``). Cost ``O(n^3)`` time and
``O(n^2)`` memory per problem.
"""

from __future__ import annotations

from torch import Tensor

from ..operators import SimilarityOperator
from .base import Solver, SolverOutput, register_solver, relative_residual
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
        residual = relative_residual(op, sol.weights, b)
        converged = ~sol.singular & (residual <= rtol)
        notes: list[str] = []
        n_eigh = int((sol.stage == 3).sum())
        if n_eigh:
            indefinite = int((~sol.positive_definite & ~sol.singular).sum())
            singular = int(sol.singular.sum())
            cond = float(sol.condition[sol.stage == 3].nan_to_num(float("inf")).max())
            notes.append(
                f"{n_eigh} problem(s) not positive definite in float64: solved by "
                f"eigendecomposition ({indefinite} indefinite, {singular} numerically singular "
                f"-> NaN; largest condition number {cond:.3g})"
            )
        if int((sol.stage == 2).sum()) and self.mixed_precision and op.shape[1] >= 256:
            notes.append(
                f"{int((sol.stage == 2).sum())} problem(s) too ill-conditioned for the float32 "
                "factor: solved in float64"
            )
        return SolverOutput(
            weights=sol.weights,
            iterations=sol.iterations,
            residual=residual,
            converged=converged,
            positive_definite=sol.positive_definite,
            notes=notes,
        )
