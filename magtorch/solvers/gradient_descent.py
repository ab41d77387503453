r"""Gradient descent on the squared residual (Andreeva et al., AAAI 2025, §3.1).

Minimise the strongly convex loss

.. math:: f(w) = \tfrac12 \|Z w - b\|^2, \qquad \nabla f(w) = Z (Z w - b).

By default each step uses the exact line search for this quadratic,
``alpha = ||g||^2 / ||Z g||^2`` (two products ``Z v`` per step, no step size to tune). With
``lr`` set, steps are ``w <- w - lr g + momentum (w - w_prev)`` (the paper's setting is
``lr=0.005, momentum=0.9``). The convergence rate depends on ``cond(Z)^2``: this solver is slow on
ill-conditioned ``Z`` (small ``t``) and is here for comparison; it reports non-convergence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import MagtorchError
from ..operators import SimilarityOperator
from .base import Solver, SolverOutput, register_solver
from .iterative_normalization import SYNC_EVERY

__all__ = ["GradientDescentSolver"]


@register_solver
class GradientDescentSolver(Solver):
    name = "gradient_descent"
    default_rtol = 1e-6
    default_max_iter = 10000

    def __init__(self, lr: float | None = None, momentum: float = 0.0) -> None:
        if lr is not None and not lr > 0:
            raise MagtorchError(f"lr must be > 0 or None (exact line search); got {lr!r}")
        if not 0 <= momentum < 1:
            raise MagtorchError(f"momentum must be in [0, 1); got {momentum!r}")
        self.lr = lr
        self.momentum = momentum

    def solve(
        self, op: SimilarityOperator, b: Tensor, *, rtol: float, max_iter: int
    ) -> SolverOutput:
        num = b.shape[0]
        tiny = torch.finfo(b.dtype).tiny
        bnorm = b.norm(dim=-1).clamp_min(tiny)
        w = b.clone()
        previous = w.clone()
        r = op.matvec(w) - b
        residual = r.norm(dim=-1) / bnorm
        done = residual <= rtol
        iterations = torch.zeros(num, dtype=torch.int64, device=b.device)
        for step in range(max_iter):
            # The all-done test reads a value from the device: every SYNC_EVERY steps only.
            if step % SYNC_EVERY == 0 and bool(done.all()):
                break
            g = op.matvec(r)
            zg = op.matvec(g)
            if self.lr is None:
                alpha = (g * g).sum(-1) / (zg * zg).sum(-1).clamp_min(tiny)
                step = -alpha[:, None] * g
            else:
                step = -self.lr * g + self.momentum * (w - previous)
            step = torch.where(done[:, None], torch.zeros_like(step), step)
            previous = w
            w = w + step
            r = op.matvec(w) - b if self.lr is not None else r - alpha[:, None] * zg
            iterations += (~done).long()
            residual = torch.where(done, residual, r.norm(dim=-1) / bnorm)
            done = done | (residual <= rtol)
        residual = (op.matvec(w) - b).norm(dim=-1) / bnorm
        return SolverOutput(
            weights=w,
            iterations=iterations,
            residual=residual,
            converged=residual <= rtol,
            positive_definite=None,
        )
