r"""Matrix-free magnitude: ``Z_t v`` computed in row blocks from the points, never ``n x n``.

:class:`PointsSimilarity` is the :class:`~magtorch.operators.SimilarityOperator` of ``N`` point
sets at ``T`` scales each (``P = N T`` stacked problems): a product ``Z v`` recomputes distances
of a block of rows to all points (``O(rows * n * d)``), exponentiates them for every scale and
multiplies, so memory is ``O(rows * n * T)`` with the block size taken from the memory budget
(:func:`magtorch._memory.rows_per_chunk`). Points outside ``active`` (padding, extra copies of
duplicated points) get identity rows and columns, exactly as in the dense path.

:class:`PointsProblem` is the matrix-free sibling of :class:`magtorch._problem.Problem`
(``prepare`` builds it when the solver is matrix-free, ``solver="cg"``, and the metric is not
``"precomputed"``). Duplicates (multiset rule: points at distance exactly 0 count once) are found
by sorting coordinates (``torch.unique(dim=0)``; unit vectors for the angular metric), not from a
distance matrix.

Gradients (:class:`PointsSolve`) use the implicit-gradient maths of :mod:`magtorch.autograd`:
:math:`dL = \sum_{ij} u_i w_j Z_{ij} (t\, dD_{ij} + D_{ij}\, dt)` with
:math:`u = Z^{-1}\bar w + \overline{\mathrm{Mag}}\, w`, so the magnitude's gradient needs no
second solve (an adjoint CG solve runs only when the weights themselves are differentiated). The
backward pass rebuilds each block of distances with autograd on and back-propagates
:math:`\sum_{ij} C_{ij} D_{ij}` with the detached coefficients :math:`C = t\,(u w^\top)\circ Z`,
so the gradient to the points comes from the metric's own derivative, block by block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from ._memory import rows_per_chunk
from ._problem import ProblemBase, valid_points
from ._progress import Progress
from ._threads import cpu_single_thread
from ._validation import ScaleLike, as_scales, check_positive_int, check_tolerance
from .autograd import SolveReport, gather_to_representatives, spread
from .errors import ConvergenceWarning, MagtorchError, warn_user
from .pairwise import CANCELLATION_RATIO, EuclideanDistances
from .solvers.base import Solver

__all__ = [
    "MagnitudeBounds",
    "PointsProblem",
    "PointsSimilarity",
    "PointsSolve",
    "block_distances",
    "find_duplicate_points",
    "magnitude_bounds",
]


def block_distances(a: Tensor, b: Tensor, metric: str) -> Tensor:
    """Distances ``(N, r, n)`` from rows ``a (N, r, d)`` to points ``b (N, n, d)``.

    For ``metric="cosine"`` both must already be unit vectors (see :func:`points_for_metric`).
    """
    if metric == "euclidean":
        return EuclideanDistances.apply(a, b)
    if metric == "l1":
        return torch.cdist(a, b, p=1.0)
    if metric == "cosine":
        return 2.0 * torch.atan2(EuclideanDistances.apply(a, b), EuclideanDistances.apply(a, -b))
    raise MagtorchError(f"the matrix-free path needs points, not metric={metric!r}")


def points_for_metric(x64: Tensor, valid: Tensor, metric: str) -> Tensor:
    """The coordinates distances are computed from: ``x`` (padding zeroed), or for the angular
    metric unit vectors ``x / |x|`` (padding set to ``e_1``); differentiable."""
    if metric != "cosine":
        return torch.where(valid.unsqueeze(-1), x64, torch.zeros((), dtype=x64.dtype))
    norm = x64.norm(dim=-1, keepdim=True)
    if bool(((norm == 0) & valid.unsqueeze(-1)).any()):
        raise MagtorchError("metric='cosine' is undefined for zero vectors; remove them first")
    unit = torch.zeros_like(x64[..., :1, :]).squeeze(-2)
    unit[..., 0] = 1.0
    safe = torch.where(valid.unsqueeze(-1), norm, torch.ones((), dtype=x64.dtype))
    return torch.where(valid.unsqueeze(-1), x64 / safe, unit.unsqueeze(-2))


def find_duplicate_points(y: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(rep, counts, active)`` as :func:`magtorch._problem._find_duplicates`, from coordinates.

    Two real points are copies when their coordinates are identical (distance exactly 0 for every
    supported metric); found by ``torch.unique(dim=0)`` per set, ``O(n log n)``.

    Example:
        >>> import torch
        >>> y = torch.tensor([[[0.0], [1.0], [0.0]]], dtype=torch.float64)
        >>> rep, counts, active = find_duplicate_points(y, torch.ones(1, 3, dtype=torch.bool))
        >>> rep.tolist(), active.tolist()
        ([[0, 1, 0]], [[True, True, False]])
    """
    num, n = valid.shape
    idx = torch.arange(n, device=y.device)
    rep = idx.expand(num, n).clone()
    ydet = y.detach()
    for s in range(num):
        real = valid[s].nonzero().squeeze(-1)
        if real.numel() < 2:
            continue
        _, inverse = torch.unique(ydet[s, real], dim=0, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.int64, device=y.device)
        first.scatter_reduce_(0, inverse, real, reduce="amin")
        rep[s, real] = first[inverse]
    counts = torch.zeros(num, n, dtype=torch.float64, device=y.device)
    counts.scatter_add_(-1, rep, valid.to(torch.float64))
    active = valid & (rep == idx)
    return rep, counts.clamp_min(1.0), active


class PointsSimilarity:
    r"""Matrix-free :math:`Z_t` for ``N`` sets ``y (N, n, d)`` at scales ``t (N, T)``.

    Problems are ordered set-major: problem ``p = s T + j`` is set ``s`` at scale ``t[s, j]``.

    Example:
        >>> import torch
        >>> y = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
        >>> op = PointsSimilarity(y, torch.tensor([[1.0]], dtype=torch.float64), None, "euclidean")
        >>> op.matvec(torch.tensor([[1.0, 0.0]], dtype=torch.float64))  # first column: 1, e^-1
        tensor([[1.0000, 0.3679]], dtype=torch.float64)
    """

    supports_partial = True

    def __init__(self, y: Tensor, t: Tensor, active: Tensor | None, metric: str) -> None:
        self.y = y.detach()
        self.t = t.detach().to(torch.float64)
        self.active = active
        self.metric = metric
        num, n, _ = self.y.shape
        self.num_sets, self.num_scales, self.n = num, self.t.shape[1], n
        self.rows_budget = rows_per_chunk(n, 8 * num * n * 3, self.y.device)
        self.rows = min(
            rows_per_chunk(n, 8 * num * n * (self.num_scales + 2), self.y.device),
            max(1, BLOCK_ELEMENTS // (num * n * self.num_scales)),
        )
        if self.y.device.type == "cuda":  # large blocks pay off on a GPU
            self.rows = rows_per_chunk(n, 8 * num * n * (self.num_scales + 2), self.y.device)
        self.products = 0
        if metric == "euclidean":  # centred coordinates and squared norms, reused by every block
            centre = self.y.mean(-2, keepdim=True)
            self._yc = self.y - centre
            self._n2 = (self._yc * self._yc).sum(-1)
            self._n2max = self._n2.amax(-1, keepdim=True)
            self._yct = self._yc.transpose(-2, -1).contiguous()

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_sets * self.num_scales, self.n)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64

    @property
    def device(self) -> torch.device:
        return self.y.device

    def _active_rows(self) -> Tensor | None:
        """``active`` repeated per scale ``(P, n)``."""
        if self.active is None:
            return None
        return self.active.repeat_interleave(self.num_scales, dim=0)

    def _distances(self, rows: slice) -> Tensor:
        """Distances ``(N, r, n)`` of a block of rows to all points (not differentiable).

        Euclidean: ``|a|^2 + |b|^2 - 2 <a, b>`` on centred points by one matrix product, with
        every pair that might have lost digits (``d^2 < CANCELLATION_RATIO (|a|^2 + max |b|^2)``,
        a superset of :func:`magtorch.pairwise.distances`' test) recomputed from differences, so
        the diagonal and duplicates are exactly 0 as in the dense path.
        """
        if self.metric != "euclidean":
            return block_distances(self.y[:, rows], self.y, self.metric)
        yc, yct, n2 = self._yc, self._yct, self._n2
        a = yc[:, rows]
        d2 = torch.baddbmm(n2.unsqueeze(-2).expand(a.shape[0], a.shape[1], -1), a, yct, alpha=-2.0)
        d2.add_(n2[:, rows].unsqueeze(-1))
        threshold = CANCELLATION_RATIO * (n2[:, rows] + self._n2max).unsqueeze(-1)
        idx = (d2 < threshold).nonzero(as_tuple=True)
        if idx[0].numel():
            diff = a[idx[0], idx[1]] - yc[idx[0], idx[2]]
            d2[idx] = (diff * diff).sum(-1)
        return d2.clamp_min_(0.0).sqrt_()

    def _kernel(self, rows: slice) -> tuple[Tensor, Tensor]:
        """Distances ``(N, r, n)`` and similarities ``(N, T, r, n)`` of a block of rows."""
        d = self._distances(rows)
        k = d.unsqueeze(1) * (-self.t)[:, :, None, None]
        return d, k.exp_()

    def matvec(self, v: Tensor, running: Tensor | None = None) -> Tensor:
        """``Z v`` for ``v (P, n)``.

        ``running`` (``(P,)`` bool): compute only the scales where some problem still runs
        (the other rows of the result are 0), so converged scales cost nothing.
        """
        self.products += 1
        num, scales, n = self.num_sets, self.num_scales, self.n
        v = v.view(num, scales, n)
        out = torch.zeros_like(v)
        cols = None
        if running is not None:
            keep = running.view(num, scales).any(0)
            if not bool(keep.all()):
                cols = keep.nonzero().squeeze(-1)
        t = self.t if cols is None else self.t[:, cols]
        vs = v if cols is None else v[:, cols]
        vm = vs if self.active is None else vs * self.active.unsqueeze(1)
        count = t.shape[1]
        res = torch.empty_like(vm)
        rows_n = self.rows
        if self.y.device.type != "cuda":
            rows_n = max(1, min(self.rows_budget, BLOCK_ELEMENTS // (num * n)))
        with torch.no_grad(), cpu_single_thread(self.device):
            for start in range(0, n, rows_n):
                rows = slice(start, start + rows_n)
                d = self._distances(rows)
                if count == 1:
                    k = d.mul_(-t[:, :, None]).exp_()
                    res[:, 0, rows] = torch.bmm(k, vm[:, 0].unsqueeze(-1)).squeeze(-1)
                    continue
                for j in range(count):  # one scale at a time: 2-d products, cache-sized blocks
                    k = torch.mul(d, -t[:, j, None, None]).exp_()
                    res[:, j, rows] = torch.bmm(k, vm[:, j].unsqueeze(-1)).squeeze(-1)
        if self.active is not None:
            res = torch.where(self.active.unsqueeze(1), res, vs)
        if cols is None:
            out = res
        else:
            out[:, cols] = res
        return out.reshape(num * scales, n)

    def column(self, index: Tensor) -> Tensor:
        """Column ``index[p]`` of ``Z_p``: ``(P, n)``."""
        num, scales = self.num_sets, self.num_scales
        sets = torch.arange(num * scales, device=self.device) // scales
        if self.metric == "euclidean":
            yc, n2 = self._yc, self._n2
            pts = yc[sets, index]  # (P, d)
            if num == 1:
                g = pts @ self._yct[0]  # (P, n)
            else:
                g = torch.bmm(yc.index_select(0, sets), pts.unsqueeze(-1)).squeeze(-1)
            n2p = n2.index_select(0, sets)
            d2 = n2p + n2[sets, index].unsqueeze(-1) - 2.0 * g
            threshold = CANCELLATION_RATIO * (n2[sets, index] + self._n2max[sets, 0]).unsqueeze(-1)
            idx = (d2 < threshold).nonzero(as_tuple=True)
            if idx[0].numel():
                diff = yc[sets[idx[0]], idx[1]] - pts[idx[0]]
                d2[idx] = (diff * diff).sum(-1)
            d = d2.clamp_min_(0.0).sqrt_()
        else:
            pts = self.y[sets, index].unsqueeze(1)  # (P, 1, d)
            d = block_distances(pts, self.y.index_select(0, sets), self.metric)[:, 0]  # (P, n)
        col = torch.exp(-self.t.reshape(-1, 1) * d)
        act = self._active_rows()
        if act is not None:
            p = torch.arange(num * scales, device=self.device)
            unit = torch.arange(self.n, device=self.device) == index[:, None]
            keep = act & act[p, index].unsqueeze(-1)  # identity rows/columns off ``active``
            col = torch.where(keep, col, unit.to(col.dtype))
        return col

    def quadratic(self, w: Tensor) -> Tensor:
        r""":math:`w^\top (D \circ Z) w` per problem for ``w (P, n)`` zero off ``active``."""
        num, scales, n = self.num_sets, self.num_scales, self.n
        wv = w.view(num, scales, n)
        out = torch.zeros(num, scales, dtype=torch.float64, device=self.device)
        with torch.no_grad(), cpu_single_thread(self.device):
            for start in range(0, n, self.rows):
                rows = slice(start, start + self.rows)
                d, k = self._kernel(rows)
                k.mul_(d.unsqueeze(1))
                out += (torch.matmul(k, wv.unsqueeze(-1)).squeeze(-1) * wv[:, :, rows]).sum(-1)
        return out.reshape(-1)

    def dense(self) -> Tensor:
        raise MagtorchError("PointsSimilarity is matrix-free: it never builds the n x n matrix")


#: Entries of a row block of the kernel (512 KB in float64): blocks that stay in cache are several
#: times faster on CPU than large temporaries (measured: 0.17 s vs 1.0 s per product at n = 4000).
BLOCK_ELEMENTS = 16384


@dataclass
class PointsConfig:
    """Solver settings of a matrix-free solve."""

    solver: Solver
    rtol: float
    max_iter: int
    metric: str
    derivative: bool = False
    progress: bool = False


def solve_points(
    y: Tensor, t: Tensor, active: Tensor, config: PointsConfig, report: SolveReport
) -> Tensor:
    """Weights of the distinct points ``(N, T, n)`` for every set and scale, by CG."""
    num, n = active.shape
    scales = t.shape[1]
    solver: Any = config.solver
    w = torch.zeros(num, scales, n, dtype=torch.float64, device=y.device)
    fields = {
        k: torch.zeros(num, scales, dtype=dt, device=y.device)
        for k, dt in (
            ("iterations", torch.int64),
            ("residual", torch.float64),
            ("converged", torch.bool),
            ("lower", torch.float64),
            ("upper", torch.float64),
        )
    }
    derivative = torch.zeros(num, scales, dtype=torch.float64, device=y.device)
    b_all = active.to(torch.float64)
    progress = Progress(num * scales, n, enabled=config.progress)
    if getattr(solver, "warm_start", False) and scales > 1:
        order = torch.argsort(t.detach().mean(0)).tolist()
        groups = [[j] for j in order]
    else:
        groups = [list(range(scales))]
    previous: Tensor | None = None
    for cols in groups:
        index = torch.tensor(cols, device=y.device)
        op = PointsSimilarity(y, t.detach()[:, index], active, config.metric)
        b = b_all.repeat_interleave(len(cols), dim=0)
        act = active.repeat_interleave(len(cols), dim=0)
        out = solver.run(op, b, rtol=config.rtol, max_iter=config.max_iter, active=act, x0=previous)
        if len(groups) > 1:
            previous = out.x
        w[:, index] = out.x.view(num, len(cols), n)
        for key in fields:
            fields[key][:, index] = getattr(out, key).view(num, len(cols)).to(fields[key].dtype)
        if config.derivative:
            derivative[:, index] = op.quadratic(out.x).view(num, len(cols))
        if out.restarts:
            report.notes.append(f"cg restarted {out.restarts} time(s) after residual drift")
        progress.update(num * len(cols))
    progress.close()
    report.iterations = fields["iterations"]
    report.residual = fields["residual"]
    report.converged = fields["converged"]
    report.positive_definite = None
    report.bounds = torch.stack([fields["lower"], fields["upper"]], -1)
    if config.derivative:
        report.derivative = derivative
    return w


def points_gradient(
    y: Tensor,
    t: Tensor,
    valid: Tensor,
    u: Tensor,
    w: Tensor,
    metric: str,
    need_y: bool,
    need_t: bool,
) -> tuple[Tensor | None, Tensor | None]:
    r"""``(dL/dy, dL/dt)`` from the adjoint ``u`` and weights ``w`` (``(N, T, n)``), by blocks.

    :math:`dL = \sum_{ij} u_i w_j Z_{ij}\,(t\, dD_{ij} + D_{ij}\, dt)`.
    """
    num, n = valid.shape
    scales = t.shape[1]
    rows_n = rows_per_chunk(n, 8 * num * n * (scales + 3), y.device)
    td = t.detach()
    grad_t = torch.zeros(num, scales, dtype=torch.float64, device=y.device) if need_t else None
    yd = y.detach().requires_grad_(need_y)
    grad_y = torch.zeros_like(yd) if need_y else None
    for start in range(0, n, rows_n):
        rows = slice(start, start + rows_n)
        with torch.enable_grad(), cpu_single_thread(y.device):
            d = block_distances(yd[:, rows], yd, metric)  # (N, r, n)
            with torch.no_grad():
                coef = (-td)[:, :, None, None] * d.detach().unsqueeze(1)
                coef.exp_()
                coef.mul_(u[:, :, rows].unsqueeze(-1)).mul_(w.unsqueeze(-2))  # u_i w_j Z_ij
                if grad_t is not None:
                    grad_t += (coef * d.detach().unsqueeze(1)).sum((-2, -1))
                weight = (coef * td[:, :, None, None]).sum(1)  # sum over scales of t u w Z
            if need_y:
                (g,) = torch.autograd.grad((weight * d).sum(), yd)
                grad_y += g
    return grad_y, grad_t


class PointsSolve(torch.autograd.Function):
    """``(y, t) -> (w, Mag)`` matrix-free, with the implicit gradient (module docstring).

    Inputs: coordinates ``y (N, n, d)`` float64 (see :func:`points_for_metric`), scales
    ``t (N, T)``, ``valid``, ``active``, ``rep``, ``counts`` (as in
    :class:`magtorch.autograd.MagnitudeSolve`), a :class:`PointsConfig`, a report to fill.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        y: Tensor,
        t: Tensor,
        valid: Tensor,
        active: Tensor,
        rep: Tensor,
        counts: Tensor,
        config: PointsConfig,
        report: SolveReport,
    ) -> tuple[Tensor, Tensor]:
        w_red = solve_points(y, t, active, config, report)
        w = spread(w_red, rep, counts)
        ctx.save_for_backward(y, t, valid, active, rep, counts, w)
        ctx.config = config
        return w, w_red.sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_w: Tensor | None, grad_mag: Tensor | None):  # type: ignore[override]
        y, t, valid, active, rep, counts, w = ctx.saved_tensors
        config: PointsConfig = ctx.config
        u = torch.zeros_like(w)
        if grad_mag is not None:
            u += grad_mag.unsqueeze(-1) * w
        if grad_w is not None and bool(grad_w.any()):
            g_red = gather_to_representatives(grad_w, rep, counts, active)
            num, scales, n = g_red.shape
            op = PointsSimilarity(y, t, active, config.metric)
            act = active.repeat_interleave(scales, dim=0)
            out = config.solver.run(  # type: ignore[attr-defined]
                op,
                g_red.reshape(num * scales, n),
                rtol=config.rtol,
                max_iter=config.max_iter,
                active=act,
            )
            if not bool(out.converged.all()):
                warn_user(
                    f"the adjoint CG solve for the weights' gradient missed rtol={config.rtol:g} "
                    f"(worst relative residual {float(out.residual.max()):.3g})",
                    ConvergenceWarning,
                )
            u += spread(out.x.view(num, scales, n), rep, counts)
        grad_y, grad_t = points_gradient(
            y, t, valid, u, w, config.metric, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        )
        return grad_y, grad_t, None, None, None, None, None, None


def _not_dense(name: str) -> MagtorchError:
    return MagtorchError(
        f"{name} needs the dense n x n matrices (distances or the inverse of Z_t), which the "
        "matrix-free solver='cg' never builds: use solver='cholesky' (O(n^2) memory)"
    )


@dataclass(kw_only=True)
class PointsProblem(ProblemBase):
    """Matrix-free counterpart of :class:`magtorch._problem.Problem`: holds coordinates ``y``."""

    y: Tensor  # (N, n, d) float64, differentiable

    @property
    def d(self) -> Tensor:
        raise _not_dense("this function")

    @property
    def device(self) -> torch.device:
        return self.y.device

    def max_distance(self) -> Tensor:
        """An upper bound on each set's diameter, ``(N,)`` (twice the largest distance to the
        centroid; ``pi`` for the angular metric)."""
        y = self.y.detach()
        if self.metric == "cosine":
            return torch.full((self.num_sets,), math.pi, dtype=torch.float64, device=y.device)
        valid = self.valid.unsqueeze(-1).to(y.dtype)
        centre = (y * valid).sum(-2, keepdim=True) / valid.sum(-2, keepdim=True).clamp_min(1)
        p = 1.0 if self.metric == "l1" else 2.0
        return 2.0 * ((y - centre).norm(p=p, dim=-1) * self.valid).amax(-1)

    def solve(self, t: Tensor, derivative: bool = False) -> tuple[Tensor, Tensor, SolveReport]:
        """As :meth:`magtorch._problem.Problem.solve`; ``report.bounds (N, T, 2)`` holds the
        Gauss lower and Gauss-Radau upper bounds on the magnitude."""
        report = SolveReport()
        config = PointsConfig(
            self.solver, self.rtol, self.max_iter, self.metric, derivative, self.progress
        )
        w, mag = PointsSolve.apply(
            self.y, t, self.valid, self.active, self.rep, self.counts, config, report
        )
        self._check(report, t)
        return w, mag, report

    def quadratic_form(self, w: Tensor, t: Tensor) -> Tensor:
        r"""Differentiable :math:`w^\top (D \circ Z_t) w`, ``(N, T)``, by row blocks
        (each block recomputed in the backward pass: memory stays ``O(rows * n)``)."""
        num, scales, n = w.shape
        rows_n = rows_per_chunk(n, 8 * num * n * (scales + 3), self.device)

        def block(y: Tensor, tt: Tensor, ww: Tensor, start: int) -> Tensor:
            d = block_distances(y[:, start : start + rows_n], y, self.metric)
            k = torch.exp(-tt[:, :, None, None] * d.unsqueeze(1)) * d.unsqueeze(1)
            pair = self.valid[:, start : start + rows_n].unsqueeze(-1) & self.valid.unsqueeze(-2)
            k = k * pair.unsqueeze(1)
            return (
                torch.matmul(k, ww.unsqueeze(-1)).squeeze(-1) * ww[:, :, start : start + rows_n]
            ).sum(-1)

        total = torch.zeros(num, scales, dtype=torch.float64, device=self.device)
        for start in range(0, n, rows_n):
            total = total + checkpoint(block, self.y, t, w, start, use_reentrant=False)
        return total


def points_problem(
    x: Tensor,
    mask: Tensor | None,
    options: Any,
    *,
    metric: str,
    batch_shape: torch.Size,
    num: int,
    n: int,
) -> PointsProblem:
    """Build a :class:`PointsProblem` from validated points ``x (..., n, d)``."""
    valid = valid_points(mask, num, n, x.device)
    x64 = x.to(torch.float64).reshape(num, n, x.shape[-1])
    y = points_for_metric(x64, valid, metric)
    rep, counts, active = find_duplicate_points(y, valid)
    return PointsProblem(
        y=y,
        valid=valid,
        active=active,
        rep=rep,
        counts=counts,
        batch_shape=batch_shape,
        dtype=x.dtype,
        metric=metric,
        solver=options.solver,
        rtol=options.rtol,
        max_iter=options.max_iter,
        on_nonconvergence=options.on_nonconvergence,
        progress=options.progress,
    )


class MagnitudeBounds(NamedTuple):
    """Certified bracket of the magnitude: ``lower <= Mag <= upper`` (shapes of
    :func:`~magtorch.magnitude`), the CG ``iterations``, and ``certified`` (whether ``upper``
    rests on a proven lower bound of the smallest eigenvalue; ``upper`` is ``inf`` otherwise)."""

    lower: Tensor
    upper: Tensor
    iterations: Tensor
    certified: Tensor


def magnitude_bounds(
    x: Tensor,
    t: ScaleLike,
    *,
    rtol: float = 1e-6,
    metric: str = "euclidean",
    mask: Tensor | None = None,
    lambda_min: float | None = None,
    max_iter: int = 1000,
    preconditioner: str = "nystrom",
    rank: int | None = None,
    on_nonconvergence: str = "warn",
) -> MagnitudeBounds:
    r"""Lower and upper bounds on :math:`\mathrm{Mag}(tX) = 1^\top Z_t^{-1} 1` from CG.

    The Gauss rule (lower bound) and the Gauss-Radau rule (upper bound) of the Lanczos process
    that preconditioned CG runs (see :mod:`magtorch.solvers.cg`); CG stops when
    ``upper - lower <= rtol * lower``. The upper bound needs :math:`0 < \ell \le
    \lambda_{\min}(Z_t)`: ``lambda_min`` if given (your responsibility), otherwise the
    Gershgorin bound :math:`\ell = 2 - \max_i \sum_j Z_{ij}`, which is positive only when
    ``Z_t`` is diagonally dominant (large ``t``); where no bound is available the upper bound is
    ``inf``, ``certified`` is False, and CG stops on the relative residual ``rtol`` instead. The
    bounds hold in exact arithmetic; in floating point up to rounding of the order of the final
    residual.

    Args:
        x: points ``(..., n, d)`` (not ``"precomputed"``).
        t: scale(s).
        rtol: target relative gap.
        metric, mask: as in :func:`~magtorch.solve`.
        lambda_min: lower bound on the smallest eigenvalue of every ``Z_t``.
        max_iter: CG iteration cap.
        preconditioner, rank: see :class:`~magtorch.solvers.ConjugateGradientSolver`.
        on_nonconvergence: ``"warn"`` or ``"raise"`` when the gap (or residual) target is missed.

    Returns:
        :class:`MagnitudeBounds`.

    Example:
        >>> import math, torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
        >>> lo, hi, its, ok = magtorch.magnitude_bounds(x, 2.0, rtol=1e-10)
        >>> exact = 1 + math.tanh(1.0) + math.tanh(2.0)  # gaps 1 and 2 on a line
        >>> bool(lo <= exact * (1 + 1e-12)), bool(hi >= exact * (1 - 1e-12)), bool(ok)
        (True, True, True)
    """
    from ._problem import prepare
    from .solvers.cg import ConjugateGradientSolver

    rtol = check_tolerance(rtol)
    solver = ConjugateGradientSolver(
        preconditioner=preconditioner,
        rank=None if rank is None else check_positive_int(rank, "rank"),
        lambda_min=lambda_min,
        stop="gap",
        warm_start=False,
        bounds=True,
    )
    prob = prepare(
        x,
        metric=metric,
        mask=mask,
        solver=solver,
        rtol=rtol,
        max_iter=max_iter,
        on_nonconvergence=on_nonconvergence,
    )
    if not isinstance(prob, PointsProblem):
        raise MagtorchError("magnitude_bounds needs points; metric='precomputed' is not supported")
    scales = as_scales(t, device=prob.device)
    scalar = scales.dim() == 0
    with torch.no_grad():
        _, _, report = prob.solve(prob.expand_scales(scales))
    bounds = report.bounds
    assert bounds is not None
    lower, upper = bounds[..., 0], bounds[..., 1]
    return MagnitudeBounds(
        prob.output(lower, scalar, torch.float64),
        prob.output(upper, scalar, torch.float64),
        prob.output(report.iterations, scalar, torch.int64),
        prob.output(torch.isfinite(upper), scalar, torch.bool),
    )
