"""The one solver interface, its result type, and the registry.

A solver takes a :class:`~magtorch.operators.SimilarityOperator` for ``P`` stacked systems and a
right-hand side ``b`` of shape ``(P, n)`` (ones on the real points, zeros on padding) and returns a
:class:`SolverOutput`: the weights and per-problem diagnostics. Nothing is silently inaccurate: a
solver reports ``converged=False`` where it missed its tolerance, and the caller warns or raises.

New solvers register under a new name with :func:`register_solver`::

    @register_solver
    class MySolver(Solver):
        name = "my_solver"
        def solve(self, op, b, *, rtol, max_iter): ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from ..errors import MagtorchError
from ..operators import SimilarityOperator

__all__ = [
    "SOLVERS",
    "Solver",
    "SolverOutput",
    "available_solvers",
    "get_solver",
    "register_solver",
]


@dataclass
class SolverOutput:
    """Weights and diagnostics of ``P`` stacked solves.

    Attributes:
        weights: ``(P, n)`` float64.
        iterations: ``(P,)`` int64; 0 for a direct factorisation.
        residual: ``(P,)`` relative residual ``||Z w - b|| / ||b||``.
        converged: ``(P,)`` bool; False where the tolerance was missed.
        positive_definite: ``(P,)`` bool where the solver could tell (a Cholesky factorisation
            succeeded or an eigendecomposition was taken), else ``None``.
        notes: remarks for ``info.notes`` (fallbacks taken, biases).
        warnings: remarks the user must hear even when every solve converged (e.g. an
            indefinite ``Z``: the magnitude is valid but may be negative); emitted as
            :class:`~magtorch.MagnitudeWarning`.
    """

    weights: Tensor
    iterations: Tensor
    residual: Tensor
    converged: Tensor
    positive_definite: Tensor | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Solver:
    """Base class: subclasses set ``name``, defaults, and implement :meth:`solve`."""

    name: ClassVar[str] = ""
    default_rtol: ClassVar[float] = 1e-6
    default_max_iter: ClassVar[int] = 1000
    needs_dense: ClassVar[bool] = False

    def solve(
        self, op: SimilarityOperator, b: Tensor, *, rtol: float, max_iter: int
    ) -> SolverOutput:
        raise NotImplementedError


SOLVERS: dict[str, type[Solver]] = {}


def register_solver(cls: type[Solver]) -> type[Solver]:
    """Class decorator: make ``cls`` available as ``solver=cls.name``."""
    if not cls.name or cls.name == "auto":
        raise MagtorchError(f"solver class {cls.__name__} needs a name other than 'auto'")
    SOLVERS[cls.name] = cls
    return cls


def available_solvers() -> tuple[str, ...]:
    """Names accepted by ``solver=`` (``"auto"`` first)."""
    return ("auto", *SOLVERS)


def get_solver(name: str) -> Solver:
    """Instantiate the solver registered as ``name`` (not ``"auto"``; resolve that first)."""
    if not isinstance(name, str) or name not in SOLVERS:
        raise MagtorchError(f"unknown solver={name!r}; allowed: {', '.join(available_solvers())}")
    return SOLVERS[name]()
