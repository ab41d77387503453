r"""The similarity operator :math:`Z_t` seen by the solvers.

A solver needs the operator only through :meth:`SimilarityOperator.matvec` (iterative methods) or
:meth:`SimilarityOperator.dense` (direct factorisations). Problems are stacked: ``P`` independent
systems of size ``n`` (sets x scales, flattened), vectors have shape ``(P, n)``.

Padded points (``active`` False) get an identity row and column, so with a zero right-hand side
their weight is exactly 0 and they never touch the real points. The same mechanism removes the
extra copies of duplicated points (multiset semantics, see :mod:`magtorch.magnitude`).

:class:`DenseSimilarity` stores ``Z`` (``P n^2`` numbers). The matrix-free operator
:class:`magtorch.matrix_free.PointsSimilarity` (chunked ``Z v`` from the points, never storing
``n x n``) is another :class:`SimilarityOperator`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

__all__ = ["DenseSimilarity", "SimilarityOperator", "build_similarity", "select_sets"]


class SimilarityOperator(Protocol):
    """What a solver may ask of ``Z``: shape, dtype, device, products, and (maybe) the matrix."""

    @property
    def shape(self) -> tuple[int, int]:
        """``(P, n)``: number of stacked problems and points per problem."""
        ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def matvec(self, v: Tensor) -> Tensor:
        """``Z v`` for ``v`` of shape ``(P, n)``."""
        ...

    def dense(self) -> Tensor:
        """The matrices ``(P, n, n)``; matrix-free operators raise."""
        ...


def select_sets(d: Tensor, index: Tensor) -> Tensor:
    """``d[index]`` without a copy when all of ``index`` names one set (a broadcast view)."""
    if index.numel() == 1 or bool((index == index[0]).all()):
        return d[index[0]].expand(index.numel(), *d.shape[1:])
    return d.index_select(0, index)


def build_similarity(
    d: Tensor, t: Tensor, active: Tensor | None, index: Tensor | None = None
) -> Tensor:
    r"""``Z = exp(-t d)`` for stacked problems, with identity rows/columns where not ``active``.

    Args:
        d: distances ``(N, n, n)``.
        t: scales ``(P,)``, one per problem.
        active: boolean ``(N, n)`` or ``None`` (all active).
        index: ``(P,)`` which matrix of ``d`` (and row of ``active``) each problem uses;
            ``None`` means ``P == N`` and problem ``p`` uses ``d[p]``.

    Returns:
        ``(P, n, n)``, a new tensor. Built in place (one allocation) unless autograd must
        record it.
    """
    if index is not None:
        d = select_sets(d, index)
        active = None if active is None else active.index_select(0, index)
    scale = (-t)[:, None, None]
    if torch.is_grad_enabled() and (d.requires_grad or t.requires_grad):
        z = torch.exp(d * scale)
    else:
        z = torch.mul(d, scale)
        z.exp_()
    if active is not None and not bool(active.all()):
        pair = active.unsqueeze(-1) & active.unsqueeze(-2)
        eye = torch.eye(z.shape[-1], dtype=torch.bool, device=z.device)
        z = torch.where(pair, z, eye.to(z.dtype))
    return z


class DenseSimilarity:
    """A stored stack of similarity matrices ``(P, n, n)``.

    Example:
        >>> import torch
        >>> z = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
        >>> DenseSimilarity(z).matvec(torch.ones(2, 3, dtype=torch.float64)).shape
        torch.Size([2, 3])
    """

    def __init__(self, z: Tensor) -> None:
        self._z = z

    @property
    def shape(self) -> tuple[int, int]:
        return (self._z.shape[0], self._z.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self._z.dtype

    @property
    def device(self) -> torch.device:
        return self._z.device

    def matvec(self, v: Tensor) -> Tensor:
        return torch.bmm(self._z, v.unsqueeze(-1)).squeeze(-1)

    def column(self, index: Tensor) -> Tensor:
        """Column ``index[p]`` of each matrix: ``(P, n)`` (for preconditioners)."""
        rows = torch.arange(self._z.shape[0], device=self._z.device)
        return self._z[rows, :, index]

    def dense(self) -> Tensor:
        return self._z
