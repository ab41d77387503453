r"""The solve as a custom :class:`torch.autograd.Function` with the implicit gradient.

Forward solves :math:`Z_t w = 1` for every set and scale. For a loss :math:`L(w, \mathrm{Mag})`
with upstream gradients :math:`\bar w` and :math:`\overline{\mathrm{Mag}}`, differentiating
:math:`Z w = 1` gives :math:`dw = -Z^{-1}(dZ)\,w`, hence

.. math::

    dL = -u^\top (dZ)\, w, \qquad u = Z^{-1}\bar w + \overline{\mathrm{Mag}}\, w .

When only the magnitude is differentiated (the common case: losses, regularisers),
:math:`\bar w = 0` and :math:`u = \overline{\mathrm{Mag}}\, w`: **no second solve**. With
:math:`Z_{ij} = e^{-t D_{ij}}`:

.. math::

    \frac{\partial L}{\partial D_{ij}} = t\, Z_{ij}\, \mathrm{sym}(u w^\top)_{ij}, \qquad
    \frac{\partial L}{\partial t} = \sum_{ij} D_{ij} Z_{ij}\, \mathrm{sym}(u w^\top)_{ij},

so for the magnitude :math:`\partial \mathrm{Mag}/\partial t = w^\top (D \circ Z) w`. The backward
pass recomputes ``Z`` chunk by chunk from the saved distances instead of keeping ``T`` matrices
alive: saved state is ``D`` (shared by all scales) and the weights, ``O(n^2 + T n)``.

Multisets: the solve runs on the distinct points (``active``); a repeated point's weight is split
equally among its copies (``rep``: index of each point's representative, ``counts``: copies per
representative). The adjoint maps through the same split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._memory import problems_per_chunk
from ._progress import Progress
from .operators import DenseSimilarity, build_similarity, select_sets
from .solvers.base import Solver
from .solvers.dense import dense_solve

__all__ = ["MagnitudeSolve", "SolveConfig", "SolveReport", "spread", "gather_to_representatives"]


@dataclass
class SolveConfig:
    """Which solver runs the forward pass, with its tolerance and iteration cap."""

    solver: Solver
    rtol: float
    max_iter: int
    derivative: bool = False
    progress: bool = False


@dataclass
class SolveReport:
    """Diagnostics filled in by the forward pass, shapes ``(N, T)``."""

    iterations: Tensor | None = None
    residual: Tensor | None = None
    converged: Tensor | None = None
    positive_definite: Tensor | None = None
    derivative: Tensor | None = None
    bounds: Tensor | None = None  # (N, T, 2) lower/upper bounds on Mag (matrix-free CG only)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def spread(w_red: Tensor, rep: Tensor, counts: Tensor) -> Tensor:
    """Weights of distinct points ``(N, T, n)`` -> weights of all points, split among copies."""
    index = rep.unsqueeze(1).expand_as(w_red)
    share = counts.gather(-1, rep).unsqueeze(1)
    return w_red.gather(-1, index) / share


def gather_to_representatives(g: Tensor, rep: Tensor, counts: Tensor, active: Tensor) -> Tensor:
    """Adjoint of :func:`spread`: sum each copy's gradient into its representative."""
    share = counts.gather(-1, rep).unsqueeze(1)
    out = torch.zeros_like(g).scatter_add_(-1, rep.unsqueeze(1).expand_as(g), g / share)
    return out * active.unsqueeze(1)


def _problem_chunks(num: int, n: int, device: torch.device, scales: int):
    """Yield ``(problems, set_index, scale_index)`` for chunks of the ``num * scales`` problems."""
    total = num * scales
    size = problems_per_chunk(total, n, device)
    for start in range(0, total, size):
        p = torch.arange(start, min(start + size, total), device=device)
        yield p, torch.div(p, scales, rounding_mode="floor"), p % scales


def solve_stacked(
    d: Tensor, t: Tensor, active: Tensor, config: SolveConfig, report: SolveReport
) -> Tensor:
    """Weights of the distinct points for every set and scale: ``(N, T, n)``."""
    num, n = active.shape
    scales = t.shape[1]
    w = torch.empty(num * scales, n, dtype=d.dtype, device=d.device)
    iterations = torch.empty(num * scales, dtype=torch.int64, device=d.device)
    residual = torch.empty(num * scales, dtype=d.dtype, device=d.device)
    converged = torch.empty(num * scales, dtype=torch.bool, device=d.device)
    positive_definite: Tensor | None = torch.ones_like(converged)
    derivative = torch.empty_like(residual) if config.derivative else None
    flat_t = t.reshape(-1)
    progress = Progress(num * scales, n, enabled=config.progress)
    for p, b, _ in _problem_chunks(num, n, d.device, scales):
        z = build_similarity(d, flat_t[p], active, index=b)
        rhs = active.index_select(0, b).to(d.dtype)
        out = config.solver.solve(
            DenseSimilarity(z), rhs, rtol=config.rtol, max_iter=config.max_iter
        )
        if derivative is not None:  # dMag/dt = w^T (D o Z) w, on the Z already built
            dz = z.mul_(select_sets(d, b))
            derivative[p] = (
                torch.bmm(dz, out.weights.unsqueeze(-1)).squeeze(-1) * out.weights
            ).sum(-1)
        del z
        progress.update(len(p))
        w[p] = out.weights
        iterations[p] = out.iterations
        residual[p] = out.residual
        converged[p] = out.converged
        if out.positive_definite is None:
            positive_definite = None
        elif positive_definite is not None:
            positive_definite[p] = out.positive_definite
        report.notes.extend(out.notes)
        report.warnings.extend(out.warnings)
    report.iterations = iterations.view(num, scales)
    report.residual = residual.view(num, scales)
    report.converged = converged.view(num, scales)
    report.positive_definite = (
        None if positive_definite is None else positive_definite.view(num, scales)
    )
    if derivative is not None:
        report.derivative = derivative.view(num, scales)
    progress.close()
    return w.view(num, scales, n)


def _adjoint_solve(d: Tensor, t: Tensor, active: Tensor, g: Tensor) -> Tensor:
    """``Z^{-1} g`` for every set and scale (dense), ``g`` of shape ``(N, T, n)``."""
    num, n = active.shape
    scales = t.shape[1]
    flat_g = g.reshape(num * scales, n)
    out = torch.zeros_like(flat_g)
    flat_t = t.reshape(-1)
    for p, b, _ in _problem_chunks(num, n, d.device, scales):
        z = build_similarity(d, flat_t[p], active, index=b)
        out[p] = dense_solve(z, flat_g[p]).weights
    return out.view_as(g)


def implicit_gradient(
    d: Tensor,
    t: Tensor,
    valid: Tensor,
    u: Tensor,
    w: Tensor,
    need_d: bool,
    need_t: bool,
    symmetric: bool = False,
) -> tuple[Tensor | None, Tensor | None]:
    """``(dL/dD, dL/dt)`` from the adjoint ``u`` and weights ``w`` (both ``(N, T, n)``).

    Per chunk of problems: ``G = Z o (t u) w^T`` built in place on a fresh ``Z``;
    ``dL/dt = <G, D> / t``; ``G`` accumulates into ``dL/dD``, symmetrised once at the end (the sum
    over ``T`` of the symmetrised terms equals the symmetrised sum). ``symmetric=True`` (``u`` a
    multiple of ``w`` per problem, as when only the magnitude is differentiated) skips that step.
    """
    num, n = valid.shape
    scales = t.shape[1]
    acc: Tensor | None = None
    grad_t = torch.zeros(num * scales, dtype=d.dtype, device=d.device) if need_t else None
    flat_t = t.reshape(-1)
    flat_tu = (u * t.unsqueeze(-1)).reshape(num * scales, n)
    flat_w = w.reshape(num * scales, n)
    for p, b, _ in _problem_chunks(num, n, d.device, scales):
        g = build_similarity(d, flat_t[p], valid, index=b)
        g.mul_(flat_tu[p].unsqueeze(-1)).mul_(flat_w[p].unsqueeze(-2))
        one_set = b.numel() == 1 or bool((b == b[0]).all())
        if grad_t is not None:
            if one_set:
                inner = g.view(len(p), -1) @ d[b[0]].reshape(-1)
            else:
                inner = (g * d.index_select(0, b)).sum((-2, -1))
            grad_t[p] = inner / flat_t[p]
        if need_d:
            if acc is None and num == 1:
                acc = g.sum(0, keepdim=True) if len(p) > 1 else g
            elif one_set:
                if acc is None:
                    acc = torch.zeros_like(d)
                acc[b[0]] += g.sum(0) if len(p) > 1 else g[0]
            else:
                if acc is None:
                    acc = torch.zeros_like(d)
                acc.index_add_(0, b, g)
        del g
    grad_d = acc
    if acc is not None and not symmetric:
        grad_d = acc.add_(acc.transpose(-2, -1).clone()).mul_(0.5)
    return grad_d, None if grad_t is None else grad_t.view(num, scales)


class MagnitudeSolve(torch.autograd.Function):
    """``(D, t) -> (w, Mag)`` with the implicit gradient; see the module docstring.

    Inputs: ``d (N, n, n)`` float64 symmetric distances, ``t (N, T)`` float64 scales,
    ``valid (N, n)`` real points, ``active (N, n)`` distinct real points, ``rep (N, n)``
    representative index, ``counts (N, n)`` copies per representative, a :class:`SolveConfig`
    and a :class:`SolveReport` to fill. Outputs: ``w (N, T, n)``, ``mag (N, T)``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        d: Tensor,
        t: Tensor,
        valid: Tensor,
        active: Tensor,
        rep: Tensor,
        counts: Tensor,
        config: SolveConfig,
        report: SolveReport,
    ) -> tuple[Tensor, Tensor]:
        w_red = solve_stacked(d, t, active, config, report)
        w = spread(w_red, rep, counts)
        ctx.save_for_backward(d, t, valid, active, rep, counts, w)
        return w, w_red.sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_w: Tensor | None, grad_mag: Tensor | None):  # type: ignore[override]
        d, t, valid, active, rep, counts, w = ctx.saved_tensors
        u = torch.zeros_like(w)
        if grad_mag is not None:
            u += grad_mag.unsqueeze(-1) * w
        symmetric = True
        if grad_w is not None and bool(grad_w.any()):
            symmetric = False
            g_red = gather_to_representatives(grad_w, rep, counts, active)
            u += spread(_adjoint_solve(d, t, active, g_red), rep, counts)
        grad_d, grad_t = implicit_gradient(
            d, t, valid, u, w, ctx.needs_input_grad[0], ctx.needs_input_grad[1], symmetric
        )
        return grad_d, grad_t, None, None, None, None, None, None
