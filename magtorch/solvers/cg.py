r"""Preconditioned conjugate gradient (``solver="cg"``) with certified Gauss/Gauss-Radau bounds.

Batched over ``P`` stacked problems ``Z_p w_p = b_p`` and matrix-free: the operator is only asked
for products ``Z v`` (:meth:`~magtorch.operators.SimilarityOperator.matvec`) and, to build the
preconditioner, single columns (``column``). Stopping is on the **relative** residual
``||b - Z w|| / ||b|| <= rtol``; when the recursively updated residual says "converged", the
residual is recomputed from a fresh product (and CG restarted from there if the recursion drifted),
so the reported residual is honest.

Preconditioner (``preconditioner="nystrom"``, the default): a rank-``k`` greedy pivoted Cholesky
factor :math:`Z \approx L L^\top` (``k`` columns of ``Z``, ``O(n k^2)``), the remainder
:math:`E = Z - L L^\top \succeq 0` replaced by :math:`\mu I` with :math:`\mu` the mean of
:math:`\mathrm{diag}(E)` (the similarity matrix has no added diagonal, so the shift comes from the
factor's own error), applied with a thin SVD :math:`L = U S V^\top`:
:math:`M^{-1} r = U (S^2 + \mu)^{-1} U^\top r + (r - U U^\top r)/\mu`.
Measured iteration counts to relative residual 1e-8 (``t_med = 1 / median distance``; digits:
the 1797 sklearn digits, 64 features; breast cancer: 569 standardised points, 30 features;
N(0, I): 2000 points in R^10; ``k``: pivots; cond: float64 ``eigvalsh``; reproduced by
``python -m benchmarks.scale --conditioning``):

=============  ======  =======  =====  ====  =====  =====
data           t/t_med cond Z   plain  k=50  k=200  k=500
=============  ======  =======  =====  ====  =====  =====
digits         0.1     1.7e5    122    46    27     20
digits         1       7.2e3    101    47    30     23
digits         10      4.1      14     15    16     16
breast cancer  0.1     4.8e4    71     33    20     16
breast cancer  1       2.1e3    61     36    22     19
breast cancer  10      4.6      13     15    16     16
N(0, I) R^10   0.1     1.4e5    79     41    28     21
N(0, I) R^10   1       5.9e3    73     43    30     25
N(0, I) R^10   10      2.8      10     12    13     14
=============  ======  =======  =====  ====  =====  =====

So the preconditioner cuts iterations 2.5-6x where ``Z_t`` is ill-conditioned (small and
median scales) and costs a few where ``Z_t`` is close to the identity; there (mean remaining
diagonal > ``SKIP_SHIFT``) it is switched off. The default rank :func:`default_rank` balances
its ``O(n k^2)`` build against the ``O(n^2)`` products. Warm starts across the scales of a
magnitude function (``warm_start=True``) saved about 10% of the iterations (556 vs 620 for 30
scales at ``n = 2000``) but run the scales one at a time instead of sharing each block of
distances among all scales, and were 2.6x slower; they are off by default.

Bounds on :math:`\mathrm{Mag} = b^\top Z^{-1} b` (Golub & Meurant; Strakoš & Tichý 2002;
Meurant & Tichý 2019 for the Gauss-Radau recurrence in CG): with :math:`w_0 = 0`, CG's
:math:`b^\top w_k = \sum_{j<k} \alpha_j\, r_j^\top z_j` is the ``k``-point Gauss rule, a
**lower** bound (the gap is :math:`\|w - w_k\|_Z^2 \ge 0`). Given :math:`0 < \mu \le
\lambda_{\min}(M^{-1} Z)`, the Gauss-Radau rule adds :math:`\gamma^{(\mu)}_k\, r_k^\top z_k` with
:math:`\gamma^{(\mu)}_0 = 1/\mu`, :math:`\gamma^{(\mu)}_{k+1} = (\gamma^{(\mu)}_k - \alpha_k) /
(\mu(\gamma^{(\mu)}_k - \alpha_k) + \beta_{k+1})`, an **upper** bound. Both are exact-arithmetic
statements; in floating point they hold up to rounding of the order of the final residual
(Strakoš & Tichý). With a warm start ``w_0``: :math:`\mathrm{Mag} = b^\top w_0 + w_0^\top r_0 +
r_0^\top Z^{-1} r_0` and the rules bound the last term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import MagtorchError
from .base import Solver, SolverOutput, register_solver

__all__ = ["CGResult", "ConjugateGradientSolver", "NystromPreconditioner", "default_rank", "pcg"]

PRECONDITIONERS = ("nystrom", "none")

#: Problems whose mean remaining diagonal after pivoting exceeds this run unpreconditioned.
SKIP_SHIFT = 0.5

#: Floor of the preconditioner's shift relative to the largest eigenvalue of ``L L^T``.
MIN_RELATIVE_SHIFT = 1e-8


class NystromPreconditioner:
    r"""Rank-``k`` pivoted-Cholesky (Nyström) preconditioner :math:`M = L L^\top + \mu I`.

    Built from ``k`` columns of ``Z`` per problem (greedy pivot: largest remaining diagonal).
    Points where ``active`` is False (identity rows) are passed through unchanged.

    Args:
        op: the operator; needs ``column(i (P,)) -> (P, n)`` and ``shape``.
        rank: number of pivots ``k`` (capped at ``n``).
        active: ``(P, n)`` bool or ``None`` (all active).
        tol: stop pivoting when every remaining diagonal is below ``tol``.

    Attributes:
        mu: ``(P,)`` the shift.
        rank: pivots taken.

    Example:
        >>> import torch
        >>> from magtorch.operators import DenseSimilarity
        >>> x = torch.linspace(0, 1, 6, dtype=torch.float64)
        >>> z = torch.exp(-(x[:, None] - x[None, :]).abs()).unsqueeze(0)
        >>> m = NystromPreconditioner(DenseSimilarity(z), rank=6)  # exact: M^{-1} Z = I
        >>> r = torch.ones(1, 6, dtype=torch.float64)
        >>> bool(torch.allclose(m.apply(DenseSimilarity(z).matvec(r)), r, atol=1e-8))
        True
    """

    def __init__(
        self, op: Any, rank: int, active: Tensor | None = None, tol: float = 1e-14
    ) -> None:
        num, n = op.shape
        dtype, device = op.dtype, op.device
        k = min(rank, n)
        diag = (
            torch.ones(num, n, dtype=dtype, device=device)
            if active is None
            else active.to(dtype).clone()
        )
        self.active = active
        factor_t = torch.zeros(num, k, n, dtype=dtype, device=device)  # L^T, rows contiguous
        rows = torch.arange(num, device=device)
        taken = 0
        from .._threads import cpu_single_thread

        with cpu_single_thread(device):
            for j in range(k):
                best, pivot = diag.max(-1)
                if float(best.max()) <= tol:
                    break
                col = op.column(pivot)  # (P, n)
                if active is not None:
                    col = col * active
                if j:
                    done = factor_t[:, :j]  # (P, j, n)
                    col = col - torch.bmm(done[rows, :, pivot].unsqueeze(1), done).squeeze(1)
                piv = best.clamp_min(tol).sqrt()
                col = torch.where((best > tol).unsqueeze(-1), col / piv.unsqueeze(-1), 0.0)
                factor_t[:, j] = col
                diag = (diag - col * col).clamp_min_(0.0)
                diag[rows, pivot] = 0.0
                taken = j + 1
        factor = factor_t[:, :taken].transpose(-2, -1)
        count = (
            torch.full((num,), float(n), dtype=dtype, device=device)
            if active is None
            else active.sum(-1).to(dtype).clamp_min(1.0)
        )
        mu = diag.sum(-1) / count
        self.rank = taken
        self._u = None
        if taken:
            q, r_factor = torch.linalg.qr(factor)  # thin SVD as QR, then SVD of the k x k R
            u_r, s, _ = torch.linalg.svd(r_factor)
            u = q @ u_r
            # cond(M) <= 1 / MIN_RELATIVE_SHIFT: the projection r - U U^T r (error ~ eps |r|) is
            # divided by mu, so mu must not fall to rounding level.
            mu = torch.maximum(mu, MIN_RELATIVE_SHIFT * s[:, 0] ** 2)
            self._u = u
            self._inv = 1.0 / (s * s + mu.unsqueeze(-1))
        self.mu = mu.clamp_min(torch.finfo(dtype).tiny)
        # Where the factor captured little (Z close to I: mean remaining diagonal above
        # SKIP_SHIFT), M would only add rounding and iterations (measured: 10 -> 13 iterations
        # at t = 10 t_med): those problems run unpreconditioned.
        self.skip = self.mu > SKIP_SHIFT

    def apply(self, r: Tensor) -> Tensor:
        """:math:`M^{-1} r` for ``r (P, n)``."""
        if self._u is None:
            out = r / self.mu.unsqueeze(-1)
        else:
            c = torch.bmm(r.unsqueeze(1), self._u).squeeze(1)  # U^T r
            uc = torch.bmm(self._u, c.unsqueeze(-1)).squeeze(-1)
            out = (r - uc) / self.mu.unsqueeze(-1)
            out = out + torch.bmm(self._u, (c * self._inv).unsqueeze(-1)).squeeze(-1)
        if self.active is not None:
            out = torch.where(self.active, out, r)
        return torch.where(self.skip.unsqueeze(-1), r, out)

    def lambda_min_bound(self, lambda_min_z: Tensor) -> Tensor:
        r"""A lower bound on :math:`\lambda_{\min}(M^{-1} Z)` from one on
        :math:`\lambda_{\min}(Z)`: :math:`\ell / (\ell + \mu)` (since :math:`Z - L L^\top
        \succeq 0`); 1 caps it for the identity rows."""
        bound = (lambda_min_z / (lambda_min_z + self.mu)).clamp_max(1.0)
        return torch.where(self.skip, lambda_min_z, bound)


def default_rank(n: int) -> int:
    """Pivots of the default preconditioner: ``3 sqrt(n)``, between 50 and 500 (building it
    costs ``O(n k^2)``, a product with ``Z`` ``O(n^2)``; measured in BENCHMARKS.md)."""
    return int(min(n, max(50, min(500, round(3 * math.sqrt(n))))))


@dataclass
class CGResult:
    """Output of :func:`pcg`, all per problem ``(P,)`` except ``x (P, n)``."""

    x: Tensor
    iterations: Tensor
    residual: Tensor
    converged: Tensor
    lower: Tensor
    upper: Tensor
    restarts: int = 0


def pcg(
    matvec: Any,
    b: Tensor,
    *,
    rtol: float,
    max_iter: int,
    precondition: Any = None,
    x0: Tensor | None = None,
    mu: Tensor | None = None,
    stop: str = "residual",
    max_restarts: int = 3,
    partial: bool = False,
) -> CGResult:
    r"""Batched preconditioned CG for ``A x = b`` (``A`` SPD), ``b (P, n)``.

    Args:
        matvec: ``v (P, n) -> A v``.
        b: right-hand sides.
        rtol: stop a problem when ``||b - A x|| <= rtol ||b||`` (``stop="residual"``) or when the
            bound gap ``(upper - lower) <= rtol * lower`` (``stop="gap"``; needs ``mu``).
        max_iter: cap on iterations (products with ``A``) per problem, restarts included.
        precondition: ``r -> M^{-1} r`` or ``None``.
        x0: warm start (default 0).
        mu: ``(P,)`` lower bound on :math:`\lambda_{\min}(M^{-1}A)` for the Gauss-Radau upper
            bound (``None``: upper is ``inf``).
        stop: ``"residual"`` or ``"gap"``.
        max_restarts: restarts from a recomputed residual when the recursive one drifted.
        partial: call ``matvec(v, running)`` with the ``(P,)`` mask of unconverged problems
            (rows of finished problems may be returned as anything; they are not used).

    Returns:
        :class:`CGResult` with the recomputed relative residual and the bounds on
        :math:`b^\top A^{-1} b`.

    Example:
        >>> import torch
        >>> a = torch.tensor([[[4.0, 1.0], [1.0, 3.0]]], dtype=torch.float64)
        >>> b = torch.ones(1, 2, dtype=torch.float64)
        >>> out = pcg(lambda v: (a @ v.unsqueeze(-1)).squeeze(-1), b, rtol=1e-12, max_iter=10)
        >>> out.x, int(out.iterations)
        (tensor([[0.1818, 0.2727]], dtype=torch.float64), 2)
    """
    if stop not in ("residual", "gap"):
        raise MagtorchError(f"stop must be 'residual' or 'gap'; got {stop!r}")
    if stop == "gap" and mu is None:
        raise MagtorchError("stop='gap' needs a lower bound mu on the smallest eigenvalue")
    num = b.shape[0]
    apply_m = precondition if precondition is not None else (lambda r: r)
    bnorm = b.norm(dim=-1).clamp_min(torch.finfo(b.dtype).tiny)
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        x = x0.clone()
        r = b - matvec(x)
    base = (b * x).sum(-1) + (x * r).sum(-1)  # Mag = base + r0^T A^{-1} r0
    lower = base.clone()
    iterations = torch.zeros(num, dtype=torch.int64, device=b.device)
    total = 0
    restarts = 0
    upper = torch.full_like(bnorm, math.inf)
    while True:
        z = apply_m(r)
        p = z.clone()
        rz = (r * z).sum(-1)
        gamma_mu = None if mu is None else 1.0 / mu
        done = _done(r, bnorm, rtol, stop, lower, upper)
        if gamma_mu is not None:
            upper = lower + gamma_mu * rz
            done = _done(r, bnorm, rtol, stop, lower, upper)
        while total < max_iter and not bool(done.all()):
            ap = matvec(p, ~done) if partial else matvec(p)
            pap = (p * ap).sum(-1)
            alpha = torch.where(
                done | (pap <= 0), 0.0, rz / pap.clamp_min(torch.finfo(b.dtype).tiny)
            )
            x = x + alpha.unsqueeze(-1) * p
            r = r - alpha.unsqueeze(-1) * ap
            lower = lower + alpha * rz
            z = apply_m(r)
            rz_new = (r * z).sum(-1)
            beta = torch.where(done, 0.0, rz_new / rz.clamp_min(torch.finfo(b.dtype).tiny))
            if gamma_mu is not None:
                diff = (gamma_mu - alpha).clamp_min(0.0)
                gamma_mu = torch.where(
                    done, gamma_mu, diff / (mu * diff + beta).clamp_min(torch.finfo(b.dtype).tiny)
                )
                upper = torch.where(done, upper, lower + gamma_mu * rz_new)
            p = z + beta.unsqueeze(-1) * p
            iterations = iterations + (~done).to(torch.int64)
            rz = torch.where(done, rz, rz_new)
            total += 1
            done = done | _done(r, bnorm, rtol, stop, lower, upper) | (pap <= 0)
        # Honest residual from a fresh product; restart where the recursion drifted.
        r = b - matvec(x)
        residual = r.norm(dim=-1) / bnorm
        if stop == "gap":
            converged = torch.where(
                torch.isfinite(upper), (upper - lower) <= rtol * lower.abs(), residual <= rtol
            )
        else:
            converged = residual <= rtol
        if bool(converged.all()) or total >= max_iter or restarts >= max_restarts:
            break
        restarts += 1
        base = (b * x).sum(-1) + (x * r).sum(-1)
        lower = torch.where(converged, lower, base)
    return CGResult(x, iterations, residual, converged, lower, upper, restarts)


def _done(r: Tensor, bnorm: Tensor, rtol: float, stop: str, lower: Tensor, upper: Tensor) -> Tensor:
    """Per-problem stop test; with ``stop="gap"``, problems without a finite upper bound fall
    back to the residual test."""
    residual_ok = r.norm(dim=-1) <= rtol * bnorm
    if stop == "gap":
        return torch.where(
            torch.isfinite(upper), (upper - lower) <= rtol * lower.abs(), residual_ok
        )
    return residual_ok


@register_solver
class ConjugateGradientSolver(Solver):
    r"""Matrix-free preconditioned conjugate gradient (``solver="cg"``).

    Args:
        preconditioner: ``"nystrom"`` (rank-``rank`` pivoted Cholesky, default) or ``"none"``.
        rank: pivots of the preconditioner (capped at ``n``); ``None``: :func:`default_rank`.
        lambda_min: a known lower bound on :math:`\lambda_{\min}(Z_t)` for the certified
            Gauss-Radau upper bound; ``None`` uses the Gershgorin bound
            :math:`2 - \max_i (Z_t 1)_i` where it is positive (no certified upper bound
            elsewhere: ``inf``).
        stop: ``"residual"`` (relative residual <= ``rtol``) or ``"gap"`` (relative gap of the
            bounds on the magnitude <= ``rtol``).
        warm_start: start each scale of a multi-scale solve from the previous scale's weights
            (the problems are solved one scale at a time then). Off by default: it saved about
            10% of the iterations of a 30-scale function but loses the distance blocks shared
            by all scales of a batched solve (2.6x slower at n = 2000, BENCHMARKS.md).
        bounds: compute the Gauss-Radau upper bound (one extra product for the Gershgorin
            bound); the Gauss lower bound is always free.

    Example:
        >>> import torch, magtorch
        >>> x = torch.randn(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> res = magtorch.solve(x, 1.0, solver="cg")
        >>> dense = magtorch.magnitude(x, 1.0, solver="cholesky")
        >>> bool(res.info.converged), bool(torch.isclose(res.magnitude, dense, rtol=1e-9))
        (True, True)
    """

    name = "cg"
    default_rtol = 1e-6
    default_max_iter = 1000
    matrix_free: ClassVar[bool] = True

    def __init__(
        self,
        preconditioner: str = "nystrom",
        rank: int | None = None,
        lambda_min: float | None = None,
        stop: str = "residual",
        warm_start: bool = False,
        bounds: bool = False,
    ) -> None:
        if preconditioner not in PRECONDITIONERS:
            raise MagtorchError(
                f"preconditioner must be one of {PRECONDITIONERS}; got {preconditioner!r}"
            )
        if rank is not None and (not isinstance(rank, int) or rank < 1):
            raise MagtorchError(f"rank must be a positive int or None; got {rank!r}")
        if lambda_min is not None and not lambda_min > 0:
            raise MagtorchError(f"lambda_min must be a positive float or None; got {lambda_min!r}")
        if stop not in ("residual", "gap"):
            raise MagtorchError(f"stop must be 'residual' or 'gap'; got {stop!r}")
        self.preconditioner = preconditioner
        self.rank = rank
        self.lambda_min = lambda_min
        self.stop = stop
        self.warm_start = warm_start
        self.bounds = bounds or stop == "gap"

    def run(
        self,
        op: Any,
        b: Tensor,
        *,
        rtol: float,
        max_iter: int,
        active: Tensor | None = None,
        x0: Tensor | None = None,
    ) -> CGResult:
        """Run PCG on ``op`` (any operator with ``matvec``; ``column`` for the preconditioner)."""
        precond = None
        if self.preconditioner == "nystrom" and hasattr(op, "column"):
            precond = NystromPreconditioner(op, self.rank or default_rank(op.shape[1]), active)
        lam = None
        if self.lambda_min is not None:
            lam = torch.full((b.shape[0],), float(self.lambda_min), dtype=b.dtype, device=b.device)
        elif self.bounds:
            rowsum = op.matvec(torch.ones_like(b) if active is None else active.to(b.dtype))
            gersh = 2.0 - rowsum.amax(-1)
            lam = torch.where(gersh > 0, gersh, torch.nan)
        mu = None
        if lam is not None:
            mu = lam if precond is None else precond.lambda_min_bound(lam)
            mu = torch.where(torch.isnan(mu), 0.0, mu)
            if not bool((mu > 0).any()):
                mu = None
        stop = self.stop if mu is not None else "residual"
        matvec = op.matvec
        out = pcg(
            matvec,
            b,
            rtol=rtol,
            max_iter=max_iter,
            precondition=None if precond is None else precond.apply,
            x0=x0,
            mu=mu,
            stop=stop,
            partial=getattr(op, "supports_partial", False),
        )
        if mu is not None:
            out.upper = torch.where(mu > 0, out.upper, math.inf)
        return out

    def solve(self, op: Any, b: Tensor, *, rtol: float, max_iter: int) -> SolverOutput:
        active = b != 0
        out = self.run(op, b, rtol=rtol, max_iter=max_iter, active=active)
        return SolverOutput(
            weights=out.x,
            iterations=out.iterations,
            residual=out.residual,
            converged=out.converged,
            notes=[] if not out.restarts else [f"cg restarted {out.restarts} time(s)"],
        )
