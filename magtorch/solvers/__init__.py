"""Solvers for ``Z_t w = 1``: one interface, one result type, a registry of names.

Registered names: ``"cholesky"`` (dense, default), ``"cg"`` (matrix-free preconditioned
conjugate gradient), ``"iterative_normalization"``, ``"gradient_descent"``. ``"auto"`` is
resolved by :func:`magtorch._problem.resolve_solver`.
"""

from .base import (
    SOLVERS,
    Solver,
    SolverOutput,
    available_solvers,
    get_solver,
    register_solver,
)
from .cg import ConjugateGradientSolver, NystromPreconditioner, pcg
from .cholesky import CholeskySolver
from .dense import dense_inverse, dense_solve
from .gradient_descent import GradientDescentSolver
from .iterative_normalization import IterativeNormalizationSolver

__all__ = [
    "SOLVERS",
    "CholeskySolver",
    "ConjugateGradientSolver",
    "NystromPreconditioner",
    "GradientDescentSolver",
    "IterativeNormalizationSolver",
    "Solver",
    "SolverOutput",
    "available_solvers",
    "dense_inverse",
    "dense_solve",
    "get_solver",
    "pcg",
    "register_solver",
]
