r"""Pairwise distances, exact at zero, batched and differentiable.

For point clouds ``x`` of shape ``(..., n, d)`` and ``y`` of shape ``(..., m, d)`` (batch axes
broadcast), :func:`pairwise_distances` returns ``D[..., i, j] = d(x_i, y_j)`` of shape
``(..., n, m)`` for

* ``"euclidean"``: :math:`\|x_i - y_j\|_2`,
* ``"l1"`` (aliases ``"cityblock"``, ``"manhattan"``): :math:`\|x_i - y_j\|_1`,
* ``"cosine"`` (alias ``"angular"``): the angular distance on the sphere
  :math:`\arccos\big(\langle x_i, y_j\rangle / \|x_i\|\|y_j\|\big) \in [0, \pi]`, a metric
  (unlike ``1 - cos``), computed as
  :math:`2\,\mathrm{atan2}(\|\hat x - \hat y\|, \|\hat x + \hat y\|)`, accurate near 0 and
  :math:`\pi`,
* ``"precomputed"``: ``x`` already is a distance matrix ``(..., n, n)``; it is validated
  (square, finite, non-negative, symmetric, zero diagonal) and returned.

Distances are **exact at zero**: ``torch.cdist``'s default matrix-product path computes
``|x|^2 + |y|^2 - 2<x, y>`` and leaves ~1e-8 on the diagonal, which makes ``Mag(tX)`` exceed ``n``
at large ``t``. Our Euclidean path (:class:`EuclideanDistances`) uses the fast matrix product on
centred points only where it is accurate, and recomputes from coordinate differences every pair
whose squared distance is below ``CANCELLATION_RATIO`` times ``|x|^2 + |y|^2`` (where the product
form loses digits): the diagonal and duplicates come out exactly 0, and every distance has
relative error below about ``1e-12``. Its backward pass is two matrix products
(``O(n m d)`` BLAS work) instead of ``torch.cdist``'s pairwise kernel. Gradients at zero
distance are zero (a subgradient), never NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._validation import ScaleLike, as_scales, check_finite, check_mask, check_metric, check_points
from .errors import MagtorchError

__all__ = ["pairwise_distances", "similarity_matrix"]

#: Pairs with ``|x - y|^2 < CANCELLATION_RATIO (|x|^2 + |y|^2)`` are recomputed from differences:
#: the product form's rounding error relative to the squared distance is about
#: ``eps / CANCELLATION_RATIO`` (1e-13 in float64 with 1e-3).
CANCELLATION_RATIO = 1e-3


def _squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``|x_i - y_j|^2`` by matrix product, with close pairs recomputed exactly."""
    centre = torch.cat([x, y], dim=-2).mean(dim=-2, keepdim=True)
    xc, yc = x - centre, y - centre
    x2 = (xc * xc).sum(-1)
    y2 = (yc * yc).sum(-1)
    scale = x2.unsqueeze(-1) + y2.unsqueeze(-2)
    d2 = torch.baddbmm(
        scale.reshape(-1, *scale.shape[-2:]),
        xc.reshape(-1, *xc.shape[-2:]),
        yc.reshape(-1, *yc.shape[-2:]).transpose(-2, -1),
        alpha=-2.0,
    ).reshape(scale.shape)
    close = d2 < CANCELLATION_RATIO * scale
    idx = close.nonzero(as_tuple=True)
    if idx[0].numel():
        batch = idx[:-2]
        diff = xc[(*batch, idx[-2])] - yc[(*batch, idx[-1])]
        d2[idx] = (diff * diff).sum(-1)
    return d2.clamp_min_(0.0)


class EuclideanDistances(torch.autograd.Function):
    r"""Euclidean distances ``(..., n, m)`` with a matrix-product backward.

    With upstream gradient ``G`` and ``A = G / D`` (0 where ``D = 0``):
    :math:`\nabla_x = \mathrm{diag}(A 1)\, x - A y` and
    :math:`\nabla_y = \mathrm{diag}(A^\top 1)\, y - A^\top x`.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
        ctx.shapes = (x.shape, y.shape)
        x = x.expand(*batch, *x.shape[-2:])
        y = y.expand(*batch, *y.shape[-2:])
        d = _squared_euclidean(x, y).sqrt_()
        ctx.save_for_backward(x, y, d)
        return d

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, y, d = ctx.saved_tensors
        a = grad.div(d).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # 0 where d == 0
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = (a.sum(-1, keepdim=True) * x - a @ y).sum_to_size(ctx.shapes[0])
        if ctx.needs_input_grad[1]:
            a_t = a.transpose(-2, -1)
            grad_y = (a_t.sum(-1, keepdim=True) * y - a_t @ x).sum_to_size(ctx.shapes[1])
        return grad_x, grad_y


def _angular(x: Tensor, y: Tensor) -> Tensor:
    xn = x.norm(dim=-1, keepdim=True)
    yn = y.norm(dim=-1, keepdim=True)
    if bool((xn == 0).any()) or bool((yn == 0).any()):
        raise MagtorchError("metric='cosine' is undefined for zero vectors; remove them first")
    xu, yu = x / xn, y / yn
    chord = EuclideanDistances.apply(xu, yu)
    antichord = EuclideanDistances.apply(xu, -yu)
    return 2.0 * torch.atan2(chord, antichord)


def check_distance_matrix(d: Tensor, name: str = "x") -> Tensor:
    """Validate a precomputed distance matrix ``(..., n, n)`` and return it."""
    d = check_points(d, name, precomputed=True)
    check_finite(d, name)
    if bool((d < 0).any()):
        raise MagtorchError(f"{name} (metric='precomputed') has negative distances")
    if bool((d.diagonal(dim1=-2, dim2=-1) != 0).any()):
        raise MagtorchError(f"{name} (metric='precomputed') must have a zero diagonal")
    scale = d.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-300)
    asym = ((d - d.transpose(-2, -1)).abs() / scale).amax()
    if bool(asym > 1e-10):
        raise MagtorchError(
            f"{name} (metric='precomputed') must be symmetric; max relative asymmetry "
            f"{float(asym):.3g}"
        )
    return d


def pairwise_distances(x: Tensor, y: Tensor | None = None, *, metric: str = "euclidean") -> Tensor:
    """Distances between the rows of ``x`` and ``y`` (``y=None``: ``x`` with itself).

    Args:
        x: points ``(..., n, d)``, or a distance matrix ``(..., n, n)`` with
            ``metric="precomputed"``.
        y: points ``(..., m, d)``; batch axes broadcast with ``x``'s.
        metric: ``"euclidean"``, ``"l1"``, ``"cosine"`` (angular) or ``"precomputed"``.

    Returns:
        ``(..., n, m)`` distances, in ``x``'s dtype and device, differentiable.

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> magtorch.pairwise_distances(x)
        tensor([[0., 5.],
                [5., 0.]])
    """
    metric = check_metric(metric)
    if metric == "precomputed":
        if y is not None:
            raise MagtorchError("y must be None with metric='precomputed' (x is the matrix)")
        return check_distance_matrix(x)
    x = check_points(x, "x")
    check_finite(x, "x")
    if y is None:
        y = x
    else:
        y = check_points(y, "y")
        check_finite(y, "y")
    if x.shape[-1] != y.shape[-1]:
        raise MagtorchError(
            f"x and y must have the same number of features; got {x.shape[-1]} and {y.shape[-1]}"
        )
    return distances(x, y, metric)


def distances(x: Tensor, y: Tensor, metric: str) -> Tensor:
    """:func:`pairwise_distances` for inputs already validated (``metric`` canonical, not
    ``"precomputed"``); used internally so that each call checks its input once."""
    if metric == "euclidean":
        return EuclideanDistances.apply(x, y)
    if metric == "l1":
        return torch.cdist(x, y, p=1.0)
    return _angular(x, y)


def similarity_matrix(
    x: Tensor,
    t: ScaleLike,
    *,
    metric: str = "euclidean",
    mask: Tensor | None = None,
) -> Tensor:
    r"""The similarity matrix :math:`Z_t[i, j] = \exp(-t\, d(x_i, x_j))`.

    Args:
        x: points ``(..., n, d)`` (or distances ``(..., n, n)`` with ``metric="precomputed"``).
        t: a positive scale, or a 1-d tensor of ``T`` scales.
        metric: see :func:`pairwise_distances`.
        mask: optional boolean ``(..., n)``; padded points (False) get identity rows/columns.

    Returns:
        ``(..., n, n)`` for a scalar ``t``, ``(..., T, n, n)`` for ``T`` scales.

    Example:
        >>> import torch, magtorch
        >>> z = magtorch.similarity_matrix(torch.tensor([[0.0], [1.0]]), 2.0)
        >>> torch.allclose(z[0, 1], torch.exp(torch.tensor(-2.0)))
        True
    """
    d = pairwise_distances(x, metric=metric)
    mask = check_mask(mask, d.shape[:-1])
    scales = as_scales(t, device=d.device).to(d.dtype)
    if scales.dim() == 1:
        d = d.unsqueeze(-3)
        scales = scales[:, None, None]
    z = torch.exp(-scales * d)
    if mask is not None:
        pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
        if scales.dim() == 3:
            pair = pair.unsqueeze(-3)
        eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
        z = torch.where(pair, z, eye)
    return z
