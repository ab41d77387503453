"""Preparation shared by every public function: validate, measure distances once, find duplicates.

A :class:`Problem` holds the float64 distances of ``N`` sets (batch axes flattened), which points
are real (``valid``), which are distinct (``active``, the multiset rule), and how to map results
back to the caller's shapes and dtype. Its :meth:`Problem.solve` runs the differentiable solve for
any scales ``t (N, T)``, so scale searches reuse the distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ._memory import memory_budget, problems_per_chunk
from ._validation import (
    check_finite,
    check_mask,
    check_metric,
    check_on_nonconvergence,
    check_points,
    check_positive_int,
    check_tolerance,
)
from .autograd import MagnitudeSolve, SolveConfig, SolveReport
from .errors import (
    ConvergenceError,
    ConvergenceWarning,
    MagnitudeWarning,
    MagtorchError,
    MemoryBudgetError,
    warn_user,
)
from .pairwise import check_distance_matrix, distances
from .solvers.base import Solver, available_solvers, get_solver

if TYPE_CHECKING:
    from .matrix_free import PointsProblem

__all__ = ["Problem", "prepare", "resolve_solver"]


#: ``solver="auto"`` uses dense Cholesky whenever the dense matrices fit the memory budget and
#: matrix-free CG otherwise. Measured crossover on the development machine (2-core CPU, one
#: thread, N(0, I) in R^10 at t = 1 / median distance, rtol 1e-6; BENCHMARKS.md, "Magnitude at
#: scale"): dense was faster at every size measured (n = 2000: 0.62 s vs 1.05 s; 4000: 1.2 s vs
#: 4.4 s; 8000: 4.5 s vs 25.8 s; 20000, float64 Cholesky: 49 s vs 244 s), so there is no size
#: threshold: CG is the path for problems whose dense matrices do not fit (O(n) memory).
AUTO_CG_MIN_POINTS: int | None = None


def resolve_solver(
    solver: str | Solver,
    n: int,
    *,
    num: int = 1,
    device: torch.device | None = None,
    precomputed: bool = True,
) -> Solver:
    """Map ``solver`` (a registered name, ``"auto"``, or a :class:`Solver` instance) to a solver.

    ``"auto"`` chooses dense Cholesky when ``num`` dense problems fit the memory budget (and
    ``n < AUTO_CG_MIN_POINTS`` if that is set), and the matrix-free ``"cg"`` otherwise (points
    only: precomputed distances are already dense and stay with Cholesky).
    """
    if isinstance(solver, Solver):
        return solver
    if solver == "auto":
        if precomputed:
            return get_solver("cholesky")
        budget = memory_budget(device or torch.device("cpu"))
        fits = 32 * n * n <= budget and 8 * num * n * n <= budget
        small = AUTO_CG_MIN_POINTS is None or n < AUTO_CG_MIN_POINTS
        return get_solver("cholesky" if small and fits else "cg")
    if not isinstance(solver, str) or solver not in available_solvers():
        raise MagtorchError(f"unknown solver={solver!r}; allowed: {', '.join(available_solvers())}")
    return get_solver(solver)


@dataclass(kw_only=True)
class ProblemBase:
    """What every problem holds besides its geometry: which points are real (``valid``) and
    distinct (``active``, the multiset rule), the solver options, and how to map results back
    to the caller's shapes and dtype. :class:`Problem` adds the dense distances,
    :class:`magtorch.matrix_free.PointsProblem` the coordinates."""

    valid: Tensor  # (N, n) bool
    active: Tensor  # (N, n) bool, distinct real points
    rep: Tensor  # (N, n) int64
    counts: Tensor  # (N, n) float64
    batch_shape: torch.Size
    dtype: torch.dtype
    metric: str
    solver: Solver
    rtol: float
    max_iter: int
    on_nonconvergence: str
    progress: bool = False

    @property
    def num_sets(self) -> int:
        return self.valid.shape[0]

    @property
    def n(self) -> int:
        return self.valid.shape[-1]

    @property
    def n_distinct(self) -> Tensor:
        """Number of distinct real points per set, ``(N,)``."""
        return self.active.sum(-1)

    def _check(self, report: SolveReport, t: Tensor) -> None:
        failed = ~report.converged
        if bool(failed.any()):
            worst = float(report.residual[failed].nan_to_num(float("inf")).max())
            scales = t.detach()[failed].flatten()[:5].tolist()
            message = (
                f"solver={self.solver.name!r}: {int(failed.sum())} of {failed.numel()} solves "
                f"missed rtol={self.rtol:g} (worst relative residual {worst:.3g}; at t="
                f"{', '.join(f'{s:.4g}' for s in scales)}{'...' if failed.sum() > 5 else ''})"
            )
            remarks = report.notes + report.warnings
            if remarks:
                message += ". " + "; ".join(dict.fromkeys(remarks))
            if self.on_nonconvergence == "raise":
                raise ConvergenceError(message)
            warn_user(message, ConvergenceWarning)
        elif report.warnings:
            warn_user("; ".join(dict.fromkeys(report.warnings)), MagnitudeWarning)

    def expand_scales(self, t: Tensor) -> Tensor:
        """``(T,)`` or 0-d scales -> ``(N, T)``."""
        return t.reshape(1, -1).expand(self.num_sets, -1)

    def output(self, value: Tensor, scalar_t: bool, dtype: torch.dtype | None = None) -> Tensor:
        """Reshape ``(N, T, *rest)`` to ``batch_shape + (T,) + rest`` (no T if ``scalar_t``),
        in ``dtype`` (default: the input's)."""
        if scalar_t:
            value = value.squeeze(1)
        return value.reshape((*self.batch_shape, *value.shape[1:])).to(dtype or self.dtype)


@dataclass(kw_only=True)
class Problem(ProblemBase):
    """A problem with dense float64 distances ``d (N, n, n)``."""

    d: Tensor  # (N, n, n) float64

    @property
    def device(self) -> torch.device:
        return self.d.device

    def max_distance(self) -> Tensor:
        """Each set's diameter, ``(N,)``."""
        return self.d.detach().amax(dim=(-2, -1))

    def solve(self, t: Tensor, derivative: bool = False) -> tuple[Tensor, Tensor, SolveReport]:
        """Weights ``(N, T, n)`` and magnitudes ``(N, T)`` (float64) at scales ``t (N, T)``.

        ``derivative=True`` also fills ``report.derivative`` with ``dMag/dt`` (not
        differentiable) from the matrices the solve built.
        """
        report = SolveReport()
        config = SolveConfig(self.solver, self.rtol, self.max_iter, derivative, self.progress)
        w, mag = MagnitudeSolve.apply(
            self.d, t, self.valid, self.active, self.rep, self.counts, config, report
        )
        self._check(report, t)
        return w, mag, report


def _find_duplicates(d: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Representatives of coincident points (distance exactly 0) and copies per representative."""
    num, n = valid.shape
    idx = torch.arange(n, device=d.device)
    eq = (d == 0) & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    rep = eq.to(torch.uint8).argmax(-1)  # first j with d_ij == 0 (j <= i since d_ii == 0)
    rep = torch.where(valid, rep, idx.expand(num, n))
    counts = torch.zeros(num, n, dtype=d.dtype, device=d.device)
    counts.scatter_add_(-1, rep, valid.to(d.dtype))
    active = valid & (rep == idx)
    return rep, counts.clamp_min(1.0), active


@dataclass
class SolveOptions:
    """Validated solver keywords shared by the problems of one call."""

    solver: Solver
    rtol: float
    max_iter: int
    on_nonconvergence: str
    progress: bool = False


def solve_options(
    solver: str | Solver = "auto",
    rtol: float | None = None,
    max_iter: int | None = None,
    on_nonconvergence: str = "warn",
    progress: bool = False,
    n: int = 0,
    *,
    num: int = 1,
    device: torch.device | None = None,
    precomputed: bool = True,
) -> SolveOptions:
    """Validate the solver keywords (``n``, ``num``, ``device``, ``precomputed``: the problem,
    for ``solver="auto"``)."""
    solver_obj = resolve_solver(solver, n, num=num, device=device, precomputed=precomputed)
    rtol = check_tolerance(rtol)
    return SolveOptions(
        solver=solver_obj,
        rtol=solver_obj.default_rtol if rtol is None else rtol,
        max_iter=solver_obj.default_max_iter
        if max_iter is None
        else check_positive_int(max_iter, "max_iter"),
        on_nonconvergence=check_on_nonconvergence(on_nonconvergence),
        progress=bool(progress),
    )


def check_dense_memory(num: int, n: int, device: torch.device, name: str = "x") -> None:
    """Raise :class:`~magtorch.MemoryBudgetError` before allocating ``num`` dense ``n x n`` sets."""
    problems_per_chunk(1, n, device)  # raises when one problem cannot fit
    budget = memory_budget(device)
    if 8 * num * n * n > budget:
        raise MemoryBudgetError(
            f"{name} holds {num} sets of n={n} points: their float64 distance matrices need "
            f"{8 * num * n * n / 1e9:.3g} GB but the memory budget on {device} is "
            f"{budget / 1e9:.3g} GB; split the batch or raise magtorch.set_memory_budget"
        )


def from_distances(
    d: Tensor,
    valid: Tensor,
    options: SolveOptions,
    *,
    batch_shape: torch.Size,
    dtype: torch.dtype,
    metric: str,
) -> Problem:
    """A :class:`Problem` for float64 distances ``d (N, n, n)`` and real points ``valid (N, n)``;
    finds the duplicates (multiset rule)."""
    rep, counts, active = _find_duplicates(d.detach(), valid)
    return Problem(
        d=d,
        valid=valid,
        active=active,
        rep=rep,
        counts=counts,
        batch_shape=batch_shape,
        dtype=dtype,
        metric=metric,
        solver=options.solver,
        rtol=options.rtol,
        max_iter=options.max_iter,
        on_nonconvergence=options.on_nonconvergence,
        progress=options.progress,
    )


def valid_points(mask: Tensor | None, num: int, n: int, device: torch.device) -> Tensor:
    """``mask`` flattened to ``(num, n)``, or all True."""
    if mask is None:
        return torch.ones(num, n, dtype=torch.bool, device=device)
    return mask.reshape(num, n)


def masked_float64(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` in float64 with padded rows zeroed (their values must not reach the distances)."""
    x64 = x.to(torch.float64)
    if mask is not None:
        x64 = torch.where(mask.unsqueeze(-1), x64, torch.zeros((), dtype=x64.dtype))
    return x64


def prepare(
    x: Tensor,
    *,
    metric: str = "euclidean",
    mask: Tensor | None = None,
    solver: str | Solver = "auto",
    rtol: float | None = None,
    max_iter: int | None = None,
    on_nonconvergence: str = "warn",
    progress: bool = False,
    name: str = "x",
) -> Problem | PointsProblem:
    """Validate the arguments, compute float64 distances, and detect duplicates.

    A matrix-free solver (``solver="cg"``, or ``"auto"`` on large ``n``) on points gets a
    :class:`~magtorch.matrix_free.PointsProblem` instead: coordinates, no distance matrix."""
    metric = check_metric(metric)
    precomputed = metric == "precomputed"
    x = check_points(x, name, precomputed=precomputed)
    mask = check_mask(mask, x.shape[:-1])
    n = x.shape[-2]
    batch_shape = x.shape[:-2]
    num = math.prod(batch_shape)
    options = solve_options(
        solver,
        rtol,
        max_iter,
        on_nonconvergence,
        progress,
        n,
        num=num,
        device=x.device,
        precomputed=precomputed,
    )
    if getattr(options.solver, "matrix_free", False) and not precomputed:
        from .matrix_free import points_problem  # matrix-free: no n x n distances

        check_finite(x, name, mask)
        return points_problem(
            x, mask, options, metric=metric, batch_shape=batch_shape, num=num, n=n
        )
    check_dense_memory(num, n, x.device, name)
    if precomputed:
        d = check_distance_matrix(x, name).to(torch.float64)
        d = 0.5 * (d + d.transpose(-2, -1))
    else:
        check_finite(x, name, mask)
        x64 = masked_float64(x, mask)
        d = distances(x64, x64, metric)
    return from_distances(
        d.reshape(num, n, n),
        valid_points(mask, num, n, x.device),
        options,
        batch_shape=batch_shape,
        dtype=x.dtype,
        metric=metric,
    )
