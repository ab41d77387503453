r"""Losses built on magnitude: :class:`MagnitudeDistanceLoss`.

The module is a thin shell over :func:`magtorch.distance.magnitude_distance`

.. math::

    d_t(X, Y) = 2\,\mathrm{Mag}(t(X \cup Y)) - \mathrm{Mag}(tX) - \mathrm{Mag}(tY)

(optionally divided by :math:`\mathrm{Mag}(t(X \cup Y))`), followed by a reduction. It holds the
configuration (scales, metric, solver); the forward pass takes the two point clouds and their
optional masks. Gradients flow to whichever of ``x``, ``y`` (and a learnable ``t``) require them;
a fixed data batch ``y`` costs no gradient work.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from magtorch._problem import resolve_solver
from magtorch._validation import (
    ScaleLike,
    as_scales,
    check_metric,
    check_on_nonconvergence,
    check_positive_int,
    check_tolerance,
)
from magtorch.distance import magnitude_distance
from magtorch.errors import MagtorchError
from magtorch.solvers.base import Solver

__all__ = ["MagnitudeDistanceLoss"]

REDUCTIONS = ("mean", "sum", "none")


class MagnitudeDistanceLoss(nn.Module):
    r"""Magnitude distance between a batch ``x`` (e.g. generated) and a batch ``y`` (e.g. data).

    Reduction: the unreduced loss has shape ``(...)`` for a scalar ``t`` and ``(..., T)`` for
    ``T`` scales (batch axes first, scales last). ``"mean"`` averages over **all** of these
    entries (every set and every scale weighs the same), ``"sum"`` adds them, ``"none"`` returns
    them unreduced.

    Args:
        t: a positive scale, or a 1-d sequence/tensor of ``T`` scales. A float stays a float; a
            sequence or tensor becomes a float64 buffer (moved by ``.to(device)``); an
            :class:`torch.nn.Parameter` is kept as a learnable parameter.
        normalized: divide each distance by :math:`\mathrm{Mag}(t(X \cup Y))`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        metric: ``"euclidean"``, ``"l1"`` or ``"cosine"``.
        solver: as in :func:`magtorch.solve`.
        rtol: relative residual tolerance (``None``: the solver's default).
        max_iter: iteration cap of iterative solvers.
        on_nonconvergence: ``"warn"`` or ``"raise"``.

    Shapes (``forward(x, y, x_mask=None, y_mask=None)``):
        ``x (..., n, d)``, ``y (..., m, d)``, masks ``(..., n)`` and ``(..., m)``; output a 0-d
        tensor, or ``(...)`` / ``(..., T)`` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from magtorch.nn.losses import MagnitudeDistanceLoss
        >>> loss_fn = MagnitudeDistanceLoss(t=[0.5, 2.0], reduction="none")
        >>> x = torch.zeros(3, 1, requires_grad=True)  # a collapsed generator batch
        >>> y = torch.tensor([[0.0], [1.0]])
        >>> loss_fn(x, y)  # X = {0} is a subset of Y: Mag(Y) - 1 = tanh(t / 2)
        tensor([0.2449, 0.7616], grad_fn=<...>)
        >>> loss_fn.reduction = "mean"
        >>> loss_fn(x, y).backward()
        >>> x.grad.shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        t: ScaleLike,
        normalized: bool = False,
        reduction: str = "mean",
        metric: str = "euclidean",
        solver: str | Solver = "auto",
        rtol: float | None = None,
        max_iter: int | None = None,
        on_nonconvergence: str = "warn",
    ) -> None:
        super().__init__()
        scales = as_scales(t, device=t.device if isinstance(t, Tensor) else torch.device("cpu"))
        if isinstance(t, nn.Parameter):
            self.t = t
        elif isinstance(t, (int, float)) and not isinstance(t, bool):
            self.t = float(t)
        else:
            self.register_buffer("t", scales.detach().clone())
        if not isinstance(normalized, bool):
            raise MagtorchError(f"normalized must be a bool; got {normalized!r}")
        if reduction not in REDUCTIONS:
            raise MagtorchError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        metric = check_metric(metric)
        if metric == "precomputed":
            raise MagtorchError(
                "MagnitudeDistanceLoss takes points: metric='precomputed' is not supported"
            )
        resolve_solver(solver, 1)  # raises for an unknown solver name
        self.normalized = normalized
        self.reduction = reduction
        self.metric = metric
        self.solver = solver
        self.rtol = check_tolerance(rtol)
        self.max_iter = None if max_iter is None else check_positive_int(max_iter, "max_iter")
        self.on_nonconvergence = check_on_nonconvergence(on_nonconvergence)

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        x_mask: Tensor | None = None,
        y_mask: Tensor | None = None,
    ) -> Tensor:
        """The (reduced) magnitude distance between ``x`` and ``y``; see the class docstring."""
        loss = magnitude_distance(
            x,
            y,
            self.t,
            normalized=self.normalized,
            metric=self.metric,
            x_mask=x_mask,
            y_mask=y_mask,
            solver=self.solver,
            rtol=self.rtol,
            max_iter=self.max_iter,
            on_nonconvergence=self.on_nonconvergence,
        )
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        if self.reduction != "none":
            raise MagtorchError(f"reduction must be one of {REDUCTIONS}; got {self.reduction!r}")
        return loss

    def extra_repr(self) -> str:
        t = self.t if isinstance(self.t, float) else self.t.tolist()
        return (
            f"t={t}, normalized={self.normalized}, reduction={self.reduction!r}, "
            f"metric={self.metric!r}"
        )
