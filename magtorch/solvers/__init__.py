"""Solvers for ``Z_t w = 1``: one interface, one result type, a registry of names.

Registered names: ``"cholesky"`` (dense, default), ``"iterative_normalization"``,
``"gradient_descent"``. ``"auto"`` is resolved by :func:`magtorch.magnitude.resolve_solver`.
"""

from .base import (
    SOLVERS,
    Solver,
    SolverOutput,
    available_solvers,
    get_solver,
    register_solver,
)
from .cholesky import CholeskySolver
from .dense import dense_inverse, dense_solve
from .gradient_descent import GradientDescentSolver
from .iterative_normalization import IterativeNormalizationSolver

__all__ = [
    "SOLVERS",
    "CholeskySolver",
    "GradientDescentSolver",
    "IterativeNormalizationSolver",
    "Solver",
    "SolverOutput",
    "available_solvers",
    "dense_inverse",
    "dense_solve",
    "get_solver",
    "register_solver",
]
