r"""Dense direct solves of ``Z w = b``: mixed-precision Cholesky, float64 Cholesky, eigh.

The chain, per problem, stops at the first stage that succeeds:

1. **float32 Cholesky + float64 refinement** (``n >= MIXED_PRECISION_MIN_N``): factor ``Z`` in
   float32 (about 3x faster than float64 on CPU) and use the factor as the preconditioner of a
   float64 conjugate-gradient refinement on the float64 ``Z``. It stops when the float64 residual
   reaches ``REFINE_RTOL`` (relative), the accuracy a float64 Cholesky attains, so the result is
   as accurate as stage 2. If float32 factorisation fails (``Z`` too ill-conditioned for float32)
   or the refinement stalls, the problem goes to stage 2.
2. **float64 Cholesky** (``torch.linalg.cholesky_ex``): ``Z`` positive definite in float64.
3. **Symmetric eigendecomposition** (``torch.linalg.eigh``): ``Z`` is indefinite (non-Euclidean
   metrics such as the angular distance can give indefinite ``Z``; magnitude may then be negative)
   or numerically singular. A singular ``Z`` (smallest ``|eigenvalue|`` below
   ``n * eps * largest``) has no magnitude: the weights are NaN and the problem is reported as not
   converged. Otherwise the weights are exact up to the condition number, which is reported.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["DenseSolution", "dense_inverse", "dense_solve"]

#: Smallest ``n`` for which the float32-factor path pays off (measured: below it the float64
#: factorisation is as fast as the refinement's overhead).
MIXED_PRECISION_MIN_N = 256
#: Relative residual at which the float64 refinement stops (a float64 Cholesky solve reaches
#: 1e-15 to 1e-14 on these matrices).
REFINE_RTOL = 1e-14
#: Refinement iterations before giving the problem to float64 Cholesky.
REFINE_MAX_ITER = 25


class DenseSolution(NamedTuple):
    weights: Tensor  # (P, n)
    residual: Tensor  # (P,) relative residual ||b - z w|| / ||b||
    iterations: Tensor  # (P,)
    stage: Tensor  # (P,) 1 mixed, 2 float64 Cholesky, 3 eigh
    positive_definite: Tensor  # (P,)
    singular: Tensor  # (P,)
    condition: Tensor  # (P,) condition number from eigh, NaN where not computed


def _matvec(z: Tensor, v: Tensor) -> Tensor:
    return torch.bmm(z, v.unsqueeze(-1)).squeeze(-1)


def _relative_residual(z: Tensor, w: Tensor, b: Tensor) -> Tensor:
    bnorm = b.norm(dim=-1).clamp_min(torch.finfo(b.dtype).tiny)
    return (b - _matvec(z, w)).norm(dim=-1) / bnorm


def _pcg_refine(z: Tensor, b: Tensor, factor32: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Float64 CG on ``z w = b`` preconditioned by the float32 Cholesky factor ``factor32``.

    Starts from ``w = 0`` so the first step is the float32 solve itself (no extra product);
    each step costs one float64 product and one pair of float32 triangular solves. Returns the
    weights, the iterations and the true relative residual ``||b - z w|| / ||b||``.
    """
    upper = factor32.transpose(-2, -1)

    def precondition(r: Tensor) -> Tensor:
        y = torch.linalg.solve_triangular(factor32, r.to(torch.float32).unsqueeze(-1), upper=False)
        return torch.linalg.solve_triangular(upper, y, upper=True).squeeze(-1).to(torch.float64)

    bnorm = b.norm(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    w = torch.zeros_like(b)
    r = b.clone()
    s = precondition(r)
    p = s
    rs = (r * s).sum(-1)
    done = torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
    iterations = torch.zeros(b.shape[0], dtype=torch.int64, device=b.device)
    for _ in range(REFINE_MAX_ITER):
        zp = _matvec(z, p)
        alpha = torch.where(done, 0.0, rs / (p * zp).sum(-1))
        w = w + alpha[:, None] * p
        r = r - alpha[:, None] * zp
        iterations += (~done).long()
        done = done | (r.norm(dim=-1) <= REFINE_RTOL * bnorm)
        if bool(done.all()):
            break
        s = precondition(r)
        rs_new = (r * s).sum(-1)
        beta = torch.where(done, 0.0, rs_new / rs)
        p = s + beta[:, None] * p
        rs = rs_new
    return w, iterations, _relative_residual(z, w, b)


def _eigh_solve(z: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    lam, vec = torch.linalg.eigh(z)
    absmax = lam.abs().amax(-1)
    absmin = lam.abs().amin(-1)
    n = z.shape[-1]
    singular = absmin <= n * torch.finfo(z.dtype).eps * absmax
    coeff = (vec.transpose(-2, -1) @ b.unsqueeze(-1)).squeeze(-1) / lam
    w = (vec @ coeff.unsqueeze(-1)).squeeze(-1)
    w = torch.where(singular[:, None], torch.full_like(w, float("nan")), w)
    return w, lam.amin(-1) > 0, singular, absmax / absmin


def dense_solve(z: Tensor, b: Tensor, *, mixed_precision: bool = True) -> DenseSolution:
    """Solve ``z w = b`` for stacked float64 matrices ``z (P, n, n)`` and ``b (P, n)``.

    Example:
        >>> import torch
        >>> z = torch.tensor([[[1.0, 0.5], [0.5, 1.0]]], dtype=torch.float64)
        >>> dense_solve(z, torch.ones(1, 2, dtype=torch.float64)).weights
        tensor([[0.6667, 0.6667]], dtype=torch.float64)
    """
    num, n = b.shape
    w = torch.empty_like(b)
    residual = torch.full((num,), float("nan"), dtype=b.dtype, device=b.device)
    iterations = torch.zeros(num, dtype=torch.int64, device=b.device)
    stage = torch.zeros(num, dtype=torch.int64, device=b.device)
    positive_definite = torch.ones(num, dtype=torch.bool, device=b.device)
    singular = torch.zeros(num, dtype=torch.bool, device=b.device)
    condition = torch.full((num,), float("nan"), dtype=torch.float64, device=b.device)
    todo = torch.ones(num, dtype=torch.bool, device=b.device)

    def pending() -> tuple[Tensor, Tensor, Tensor]:
        """Indices still to solve and their matrices/right-hand sides (no copy when all)."""
        idx = todo.nonzero().squeeze(-1)
        if idx.numel() == num:
            return idx, z, b
        return idx, z[idx], b[idx]

    if mixed_precision and n >= MIXED_PRECISION_MIN_N:
        factor32, info = torch.linalg.cholesky_ex(z.to(torch.float32))
        if bool((info == 0).any()):
            idx, zz, bb = pending()
            wi, iters, res = _pcg_refine(zz, bb, factor32)
            # Accept within a factor of the target (recurrence and true residual drift apart).
            ok = (res <= 100 * REFINE_RTOL) & (info == 0)
            residual[idx[ok]] = res[ok]
            w[idx[ok]] = wi[ok]
            iterations[idx] = torch.where(info == 0, iters, 0)
            stage[idx[ok]] = 1
            todo[idx[ok]] = False
        del factor32

    if bool(todo.any()):
        idx, zz, bb = pending()
        factor, info = torch.linalg.cholesky_ex(zz)
        ok = info == 0
        if bool(ok.any()):
            wi = torch.cholesky_solve(bb.unsqueeze(-1), factor).squeeze(-1)
            w[idx[ok]] = wi[ok]
            stage[idx[ok]] = 2
            todo[idx[ok]] = False
        del factor

    if bool(todo.any()):
        idx, zz, bb = pending()
        wi, pd, sing, cond = _eigh_solve(zz, bb)
        w[idx] = wi
        positive_definite[idx] = pd
        singular[idx] = sing
        condition[idx] = cond
        stage[idx] = 3
    rest = stage != 1
    if bool(rest.all()):
        residual = _relative_residual(z, w, b)
    elif bool(rest.any()):
        residual[rest] = _relative_residual(z[rest], w[rest], b[rest])
    return DenseSolution(w, residual, iterations, stage, positive_definite, singular, condition)


def dense_inverse(z: Tensor) -> tuple[Tensor, Tensor]:
    """Inverses of stacked symmetric ``z (P, n, n)`` (Cholesky, eigendecomposition fallback).

    Differentiable through torch's linear-algebra autograd. Returns ``(inverse, singular)``;
    singular problems get NaN inverses.
    """
    factor, info = torch.linalg.cholesky_ex(z)
    ok = info == 0
    if bool(ok.all()):
        return torch.cholesky_inverse(factor), torch.zeros_like(ok)
    lam, vec = torch.linalg.eigh(z)
    absmax = lam.abs().amax(-1)
    singular = lam.abs().amin(-1) <= z.shape[-1] * torch.finfo(z.dtype).eps * absmax
    inv_eig = (vec / lam.unsqueeze(-2)) @ vec.transpose(-2, -1)
    inv = torch.where(ok[:, None, None], torch.cholesky_inverse(factor), inv_eig)
    inv = torch.where(singular[:, None, None], torch.full_like(inv, float("nan")), inv)
    return inv, singular & ~ok
