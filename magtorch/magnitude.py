r"""Weights, magnitude, its derivative, and magnitude potentials.

For a finite set :math:`X = \{x_1, \dots, x_n\}` and a scale :math:`t > 0`, the similarity matrix
is :math:`Z_t[i, j] = e^{-t\, d(x_i, x_j)}`; the **weighting** :math:`w` solves :math:`Z_t w = 1`
and the **magnitude** is :math:`\mathrm{Mag}(tX) = \sum_i w_i`. The **potential** of a point
:math:`z` is :math:`h_X(z) = \sum_j w_j e^{-t d(z, x_j)}` (it equals 1 on :math:`X`).

Shapes: points ``(..., n, d)`` with any leading batch axes, optional boolean ``mask (..., n)``
(True marks real points of a ragged batch); ``t`` a float, a 0-d tensor, or a 1-d tensor of ``T``
scales, in which case results gain a ``T`` axis: magnitudes ``(..., T)``, weights
``(..., T, n)``. Results have the input's dtype and device; the dense path computes in float64
(float32 inputs are upcast, so they get float64 accuracy rounded to float32).

Multisets: points at distance exactly 0 count once; a repeated point's weight is split equally
among its copies, so weights sum to the magnitude of the distinct points.

Gradients flow to the points and to a tensor ``t`` through the implicit gradient of
:mod:`magtorch.autograd` (no second solve for the magnitude).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ._memory import problems_per_chunk, rows_per_chunk
from ._problem import Problem, masked_float64, prepare
from ._validation import (
    ScaleLike,
    as_scales,
    check_finite,
    check_fraction,
    check_points,
    check_positive_int,
)
from .autograd import SolveReport
from .errors import MagtorchError
from .operators import build_similarity, select_sets
from .pairwise import distances, pairwise_distances
from .solvers.base import Solver
from .solvers.dense import dense_inverse

__all__ = [
    "ClassPotentials",
    "MagnitudeFunction",
    "MagnitudeResult",
    "SolveInfo",
    "class_potentials",
    "loo_potential",
    "magnitude",
    "magnitude_derivative",
    "magnitude_function",
    "positive_magnitude",
    "potential",
    "potential_ratio",
    "solve",
    "weights",
]


@dataclass
class SolveInfo:
    """Diagnostics of a solve; tensors have the magnitude's shape unless stated.

    Attributes:
        method: the solver that ran.
        iterations: iterations per solve (0 for a direct factorisation).
        residual: relative residual ``||Z w - 1|| / ||1||`` per solve.
        converged: whether each solve met ``rtol``.
        n_distinct: distinct real points per set, shape ``batch``.
        positive_definite: whether ``Z`` was positive definite (``None`` if the solver cannot tell).
        notes: remarks such as fallbacks taken.
    """

    method: str
    iterations: Tensor
    residual: Tensor
    converged: Tensor
    n_distinct: Tensor
    positive_definite: Tensor | None
    notes: list[str]


class MagnitudeResult(NamedTuple):
    """What :func:`solve` returns: ``weights``, ``magnitude`` and ``info``."""

    weights: Tensor
    magnitude: Tensor
    info: SolveInfo


class MagnitudeFunction(NamedTuple):
    """Scales ``t (T,)`` and the magnitude ``(..., T)`` at each."""

    t: Tensor
    magnitude: Tensor


def _run(
    x: Tensor, t: ScaleLike, *, derivative: bool = False, **kwargs
) -> tuple[Problem, Tensor, bool, Tensor, Tensor, SolveReport]:
    """Prepare ``x``, solve at ``t``; returns the problem, the scales, whether ``t`` was a scalar,
    the weights ``(N, T, n)``, magnitudes ``(N, T)`` and the report."""
    prob = prepare(x, **_solve_kwargs(kwargs))
    scales = as_scales(t, device=prob.device)
    w, mag, report = prob.solve(prob.expand_scales(scales), derivative=derivative)
    return prob, scales, scales.dim() == 0, w, mag, report


def solve(
    x: Tensor,
    t: ScaleLike,
    *,
    metric: str = "euclidean",
    mask: Tensor | None = None,
    solver: str | Solver = "auto",
    rtol: float | None = None,
    max_iter: int | None = None,
    on_nonconvergence: str = "warn",
    progress: bool = False,
) -> MagnitudeResult:
    r"""Solve :math:`Z_t w = 1`: weights, magnitude and diagnostics.

    Args:
        x: points ``(..., n, d)`` (distances ``(..., n, n)`` with ``metric="precomputed"``).
        t: a positive scale or a 1-d tensor of ``T`` scales.
        metric: ``"euclidean"``, ``"l1"``, ``"cosine"`` (angular) or ``"precomputed"``.
        mask: optional boolean ``(..., n)``; False marks padding (weight 0).
        solver: ``"auto"`` (dense Cholesky here), ``"cholesky"``, ``"iterative_normalization"``,
            ``"gradient_descent"``, or a :class:`~magtorch.solvers.Solver` instance.
        rtol: relative residual tolerance (``None``: the solver's default).
        max_iter: iteration cap of iterative solvers (``None``: the solver's default).
        on_nonconvergence: ``"warn"`` (a :class:`~magtorch.ConvergenceWarning`) or ``"raise"``
            (a :class:`~magtorch.ConvergenceError`) when a solve misses ``rtol``.
        progress: print solves done and time left to stderr (for long runs).

    Returns:
        :class:`MagnitudeResult` with ``weights (..., [T,] n)``, ``magnitude (..., [T])`` and
        ``info`` (:class:`SolveInfo`).

    Example:
        >>> import math, torch, magtorch
        >>> res = magtorch.solve(torch.tensor([[0.0], [1.0]], dtype=torch.float64), 1.0)
        >>> float(res.magnitude), 2 / (1 + math.exp(-1.0))
        (1.4621171572600098, 1.4621171572600098)
        >>> bool(res.info.converged)
        True
    """
    prob, _, scalar, w, mag, report = _run(
        x,
        t,
        metric=metric,
        mask=mask,
        solver=solver,
        rtol=rtol,
        max_iter=max_iter,
        on_nonconvergence=on_nonconvergence,
        progress=progress,
    )

    info = SolveInfo(
        method=prob.solver.name,
        iterations=prob.output(report.iterations, scalar, torch.int64),
        residual=prob.output(report.residual, scalar),
        converged=prob.output(report.converged, scalar, torch.bool),
        n_distinct=prob.n_distinct.reshape(prob.batch_shape),
        positive_definite=None
        if report.positive_definite is None
        else prob.output(report.positive_definite, scalar, torch.bool),
        notes=list(dict.fromkeys(report.notes + report.warnings)),
    )
    return MagnitudeResult(prob.output(w, scalar), prob.output(mag, scalar), info)


def weights(x: Tensor, t: ScaleLike, **kwargs) -> Tensor:
    r"""The weighting :math:`w = Z_t^{-1} 1`: ``(..., n)`` or ``(..., T, n)``.

    Keywords as in :func:`solve`.

    Example:
        >>> import torch, magtorch
        >>> magtorch.weights(torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64), 1.0)
        tensor([0.7311, 0.4621, 0.7311], dtype=torch.float64)
    """
    return solve(x, t, **kwargs).weights


def magnitude(x: Tensor, t: ScaleLike, **kwargs) -> Tensor:
    r"""The magnitude :math:`\mathrm{Mag}(tX) = 1^\top Z_t^{-1} 1`: ``(...)`` or ``(..., T)``.

    Keywords as in :func:`solve`. Differentiable in ``x`` and ``t``.

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)  # gaps 1 and 2
        >>> magtorch.magnitude(x, torch.tensor([0.5, 2.0]))  # 1 + tanh(t/2) + tanh(t)
        tensor([1.7070, 2.7256], dtype=torch.float64)
    """
    return solve(x, t, **kwargs).magnitude


def positive_magnitude(x: Tensor, t: ScaleLike, **kwargs) -> Tensor:
    r"""Positive magnitude :math:`\mathrm{PMag}(tX) = \sum_i \max(w_i, 0)`.

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        >>> bool(torch.isclose(magtorch.positive_magnitude(x, 1.0), magtorch.magnitude(x, 1.0)))
        True
    """
    return weights(x, t, **kwargs).clamp_min(0).sum(-1)


def _quadratic_form(prob: Problem, w: Tensor, t: Tensor) -> Tensor:
    r""":math:`w^\top (D \circ Z_t) w` for ``w (N, T, n)`` and ``t (N, T)``; differentiable."""
    if not isinstance(prob, Problem):  # matrix-free: recomputed by row blocks
        return prob.quadratic_form(w, t)
    num, scales, n = w.shape
    flat_t = t.reshape(-1)
    flat_w = w.reshape(num * scales, n)
    size = problems_per_chunk(num * scales, n, prob.d.device)
    parts = []
    for start in range(0, num * scales, size):
        p = torch.arange(start, min(start + size, num * scales), device=prob.d.device)
        b = torch.div(p, scales, rounding_mode="floor")
        d = select_sets(prob.d, b)
        z = build_similarity(prob.d, flat_t[p], prob.valid, index=b)
        wp = flat_w[p]
        parts.append(torch.einsum("pi,pij,pj->p", wp, d * z, wp))
    return torch.cat(parts).view(num, scales)


def magnitude_derivative(x: Tensor, t: ScaleLike, **kwargs) -> Tensor:
    r"""The derivative :math:`\frac{d}{dt}\mathrm{Mag}(tX) = w^\top (D \circ Z_t)\, w`.

    Closed form from the weighting (no finite differences); same shape as :func:`magnitude`.
    Keywords as in :func:`solve`.

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)  # Mag = 1 + tanh(t/2)
        >>> exact = 0.5 / torch.cosh(torch.tensor(0.35, dtype=torch.float64)) ** 2
        >>> bool(torch.isclose(magtorch.magnitude_derivative(x, 0.7), exact, rtol=1e-12))
        True
    """
    differentiable = torch.is_grad_enabled() and (
        x.requires_grad or (isinstance(t, Tensor) and t.requires_grad)
    )
    prob, scales, scalar, w, _, report = _run(x, t, derivative=not differentiable, **kwargs)
    if not differentiable:
        return prob.output(report.derivative, scalar)
    return prob.output(_quadratic_form(prob, w, prob.expand_scales(scales)), scalar)


def _solve_kwargs(kwargs: dict) -> dict:
    defaults = {
        "metric": "euclidean",
        "mask": None,
        "solver": "auto",
        "rtol": None,
        "max_iter": None,
        "on_nonconvergence": "warn",
        "progress": False,
    }
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise MagtorchError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    return {**defaults, **kwargs}


def magnitude_function(
    x: Tensor,
    t: ScaleLike | None = None,
    *,
    n_scales: int = 64,
    q: float = 0.95,
    **kwargs,
) -> MagnitudeFunction:
    r"""The magnitude function :math:`t \mapsto \mathrm{Mag}(tX)` on a grid of scales.

    Args:
        x: points ``(..., n, d)``.
        t: scales ``(T,)``; ``None`` chooses ``n_scales`` log-spaced scales from
            ``1e-2 * t_conv`` to ``t_conv``, where ``t_conv`` is the largest
            :func:`~magtorch.convergence_scale` (at fraction ``q``) over the batch.
        n_scales: number of scales when ``t`` is ``None``.
        q: convergence fraction used to choose the grid.
        **kwargs: as in :func:`solve`.

    Returns:
        :class:`MagnitudeFunction` ``(t (T,), magnitude (..., T))``.

    Example:
        >>> import torch, magtorch
        >>> f = magtorch.magnitude_function(torch.randn(50, 3, dtype=torch.float64), n_scales=8)
        >>> f.t.shape, f.magnitude.shape
        (torch.Size([8]), torch.Size([8]))
    """
    kwargs = _solve_kwargs(kwargs)
    if t is None:
        from .scales import convergence_scale

        n_scales = check_positive_int(n_scales, "n_scales", minimum=2)
        check_fraction(q, "q")
        t_conv = convergence_scale(x, q, **kwargs).detach().to(torch.float64).max()
        if not t_conv > 0:
            raise MagtorchError("x has a single distinct point: its magnitude function is 1")
        t = torch.logspace(-2, 0, n_scales, dtype=torch.float64, device=x.device) * t_conv
    scales = as_scales(t, device=x.device)
    if scales.dim() == 0:
        scales = scales.reshape(1)
    return MagnitudeFunction(scales.detach().to(x.dtype), magnitude(x, scales, **kwargs))


def _cross_distances(z: Tensor, prob: Problem, x: Tensor, name: str = "z") -> Tensor:
    """Distances ``(N, m, n)`` from query points ``z`` to the points of ``prob``."""
    if prob.metric == "precomputed":
        dz = check_points(z, name, precomputed=False).to(torch.float64)
        if dz.shape[-1] != prob.n:
            raise MagtorchError(
                f"{name} must hold distances to the n={prob.n} points (last axis n) with "
                f"metric='precomputed'; got shape {tuple(z.shape)}"
            )
    else:
        z = check_points(z, name)
        if z.shape[-1] != x.shape[-1]:
            raise MagtorchError(
                f"{name} must have x's number of features {x.shape[-1]}; got {z.shape[-1]}"
            )
        check_finite(z, name)
        x64 = masked_float64(x, prob.valid.reshape(x.shape[:-1]))
        dz = distances(z.to(torch.float64), x64, prob.metric)
    batch = prob.batch_shape
    try:
        dz = dz.expand(*batch, *dz.shape[-2:]) if dz.dim() - 2 < len(batch) else dz
    except RuntimeError as err:
        raise MagtorchError(
            f"{name}'s batch shape {tuple(dz.shape[:-2])} does not match x's {tuple(batch)}"
        ) from err
    if dz.shape[:-2] != batch:
        raise MagtorchError(
            f"{name}'s batch shape {tuple(dz.shape[:-2])} does not match x's {tuple(batch)}"
        )
    return dz.reshape(prob.num_sets, dz.shape[-2], prob.n)


def potential(z: Tensor, x: Tensor, t: ScaleLike, **kwargs) -> Tensor:
    r"""Magnitude potential :math:`h_X(z) = \sum_j w_j e^{-t d(z, x_j)}` of each row of ``z``.

    Args:
        z: query points ``(..., m, d)`` (batch axes match ``x``'s or are absent); with
            ``metric="precomputed"``, distances ``(..., m, n)`` from the queries to ``x``.
        x: the reference set ``(..., n, d)``.
        t: scale(s).
        **kwargs: as in :func:`solve` (``mask`` masks ``x``).

    Returns:
        ``(..., m)`` or ``(..., T, m)``. Equals 1 on points of ``x``.

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        >>> magtorch.potential(torch.tensor([[0.0], [10.0]], dtype=torch.float64), x, 1.0)
        tensor([1.0000e+00, 1.2341e-04], dtype=torch.float64)
    """
    prob, scales, scalar, w, _, _ = _run(x, t, **kwargs)
    dz = _cross_distances(z, prob, x)  # (N, m, n)
    h = _kernel_sum(dz, prob.expand_scales(scales), w, prob.valid.unsqueeze(1))
    return prob.output(h, scalar)


def _kernel_sum(dz: Tensor, t: Tensor, w: Tensor, mask: Tensor) -> Tensor:
    r""":math:`\sum_j m_{ij} w_j e^{-t\, dz_{ij}}` for ``dz (N, m, n)``, ``t (N, T)``,
    ``w (N, T, n)`` and ``mask`` broadcastable to ``(N, m, n)``; returns ``(N, T, m)``.

    The kernel ``(N, T, rows, n)`` is built a block of rows at a time.
    """
    num, scale_count, n = w.shape
    m = dz.shape[1]
    mask = mask.to(dz.dtype).expand(num, m, n)
    step = rows_per_chunk(m, 16 * num * scale_count * n, dz.device)
    parts = []
    for start in range(0, m, step):
        rows = slice(start, start + step)
        kernel = torch.exp(-t[:, :, None, None] * dz[:, None, rows]) * mask[:, None, rows]
        parts.append((kernel @ w.unsqueeze(-1)).squeeze(-1))
    return torch.cat(parts, dim=-1)


def _loo(prob: Problem, t: Tensor) -> Tensor:
    r"""Leave-one-out potentials ``(N, T, n)``: :math:`1 - w_i / P_{ii}` on distinct points."""
    num, n = prob.active.shape
    scales = t.shape[1]
    flat_t = t.reshape(-1)
    size = problems_per_chunk(num * scales, n, prob.d.device)
    parts = []
    for start in range(0, num * scales, size):
        p = torch.arange(start, min(start + size, num * scales), device=prob.d.device)
        b = torch.div(p, scales, rounding_mode="floor")
        z = build_similarity(prob.d, flat_t[p], prob.active, index=b)
        inv, singular = dense_inverse(z)
        if bool(singular.any()):
            raise MagtorchError(
                "the similarity matrix is numerically singular at t="
                f"{float(flat_t[p][singular][0]):.4g}: leave-one-out potentials are undefined"
            )
        w = inv.sum(-1)
        parts.append(1.0 - w / inv.diagonal(dim1=-2, dim2=-1))
    loo = torch.cat(parts).view(num, scales, n)
    unique = (prob.active & (prob.counts == 1)).unsqueeze(1)
    copies = (prob.valid & ~unique.squeeze(1)).unsqueeze(1)
    loo = torch.where(unique, loo, torch.zeros((), dtype=loo.dtype, device=loo.device))
    return torch.where(copies, torch.ones((), dtype=loo.dtype, device=loo.device), loo)


def loo_potential(x: Tensor, t: ScaleLike, **kwargs) -> Tensor:
    r"""Leave-one-out potentials :math:`h_{X \setminus \{i\}}(x_i) = 1 - w_i / P_{ii}`.

    With :math:`P = Z_t^{-1}` (dense, ``O(n^3)``). A point with an exact duplicate in ``X`` gets
    1 (removing one copy leaves the set unchanged); padded entries get 0. Also
    :math:`\mathrm{Mag}(X) - \mathrm{Mag}(X \setminus \{i\}) = w_i^2 / P_{ii}`.

    Args:
        x: points ``(..., n, d)``.
        t: scale(s).
        **kwargs: ``metric``, ``mask`` (the solver keywords are accepted; the dense inverse is
            always used).

    Returns:
        ``(..., n)`` or ``(..., T, n)``; differentiable.

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        >>> magtorch.loo_potential(x, 1.0)  # h_{x_2}(x_1) = e^{-1}
        tensor([0.3679, 0.3679], dtype=torch.float64)
    """
    kw = _solve_kwargs(kwargs)
    prob = prepare(x, **kw)
    scales = as_scales(t, device=prob.d.device)
    return prob.output(_loo(prob, prob.expand_scales(scales)), scales.dim() == 0)


def _check_labels(labels: Tensor, n: int, name: str) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != n:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise MagtorchError(f"{name} must be a 1-d integer tensor of length {n}; got {shape}")
    if labels.is_floating_point() or labels.is_complex():
        raise MagtorchError(f"{name} must hold integer class labels; got dtype {labels.dtype}")
    return labels


def _class_batches(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Padded index matrix ``(C, M)`` of each class's members, its mask, and the classes."""
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    width = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(width, device=labels.device)
    mask = slot.unsqueeze(0) < counts.unsqueeze(1)
    pos = (starts.unsqueeze(1) + slot.unsqueeze(0)).clamp_max(labels.shape[0] - 1)
    index = torch.where(mask, order[pos], torch.zeros_like(pos))
    return index, mask, classes


def _take(x: Tensor, index: Tensor, metric: str) -> Tensor:
    """Rows ``index (C, M)`` of points ``(n, d)``, or the sub-matrices of distances ``(n, n)``."""
    if metric == "precomputed":
        return x[index.unsqueeze(-1), index.unsqueeze(-2)]
    return x[index]


class ClassPotentials(NamedTuple):
    """Per-point class potential, all-data potential and their ratio (each ``(n,)``/``(T, n)``)."""

    class_potential: Tensor
    all_potential: Tensor
    ratio: Tensor


def class_potentials(
    z: Tensor,
    labels: Tensor,
    t: ScaleLike,
    *,
    reference: Tensor | None = None,
    reference_labels: Tensor | None = None,
    metric: str = "euclidean",
    **kwargs,
) -> ClassPotentials:
    r"""Class potential :math:`h_{X_c}(z_i)`, all-data potential :math:`h_X(z_i)` and their ratio.

    ``c = labels[i]``. Without ``reference``, ``X`` is ``z`` itself and both potentials leave
    :math:`z_i` out: :math:`h_{Z_c \setminus \{i\}}(z_i)` and
    :math:`h_{Z \setminus \{i\}}(z_i)` (:func:`loo_potential` on the whole set and on every
    class, one batched call; a class of size one has class potential 0). With ``reference``
    (e.g. training logits) and ``reference_labels``, each row of ``z`` is scored against the
    reference set and its class, without leaving anything out (a class absent from the
    reference has potential 0). The ratio is ``inf``/``nan`` where the all-data potential is 0.

    Args:
        z: points ``(n, d)`` (e.g. logits); distances ``(n, n)`` with ``metric="precomputed"``
            and no reference.
        labels: ``(n,)`` integer classes of ``z``.
        t: scale(s).
        reference: optional reference points ``(n_ref, d)``.
        reference_labels: ``(n_ref,)`` classes of ``reference``.
        metric: as in :func:`pairwise_distances`.
        **kwargs: solver keywords as in :func:`solve`.

    Returns:
        :class:`ClassPotentials`, each field ``(n,)`` or ``(T, n)``.

    Example:
        >>> import torch, magtorch
        >>> z = torch.tensor([[0.0], [1.0], [5.0]], dtype=torch.float64)
        >>> cls, every, ratio = magtorch.class_potentials(z, torch.tensor([0, 0, 1]), 1.0)
        >>> cls  # h of the other class member at distance 1: e^{-1}; a lone class: 0
        tensor([0.3679, 0.3679, 0.0000], dtype=torch.float64)
    """
    kw = _solve_kwargs({**kwargs, "metric": metric})
    if "mask" in kwargs:
        raise MagtorchError("class_potentials takes no mask: pass only the real points")
    z = check_points(z, "z", precomputed=metric == "precomputed" and reference is None)
    if z.dim() != 2:
        raise MagtorchError(f"z must be unbatched (n, d); got shape {tuple(z.shape)}")
    labels = _check_labels(labels, z.shape[0], "labels")
    if reference is None:
        if reference_labels is not None:
            raise MagtorchError("reference_labels given without reference")
        every = loo_potential(z, t, **kw)
        index, mask, _ = _class_batches(labels)
        per_class = loo_potential(_take(z, index, metric), t, **{**kw, "mask": mask})
        # per_class: (C, [T,] M) -> scatter back to (..., n)
        if per_class.dim() == 3:
            per_class = per_class.transpose(0, 1)  # (T, C, M)
        flat = per_class.reshape(*per_class.shape[:-2], -1)
        own = torch.zeros_like(every)
        own[..., index[mask]] = flat[..., mask.reshape(-1)]
        return ClassPotentials(own, every, own / every)
    if reference_labels is None:
        raise MagtorchError("reference_labels is required with reference")
    reference = check_points(reference, "reference")
    if reference.dim() != 2:
        raise MagtorchError(f"reference must be (n_ref, d); got shape {tuple(reference.shape)}")
    reference_labels = _check_labels(reference_labels, reference.shape[0], "reference_labels")
    every = potential(z, reference, t, **kw)
    # Each reference point's weight within its own class (classes partition the reference).
    index, mask, _ = _class_batches(reference_labels)
    scales = as_scales(t, device=z.device).reshape(1, -1)  # (1, T)
    w_class = weights(_take(reference, index, metric), scales[0], **{**kw, "mask": mask})
    w_ref = torch.zeros(
        1, scales.shape[1], reference.shape[0], dtype=torch.float64, device=z.device
    )  # (1, T, n_ref)
    w_ref[0][:, index[mask]] = w_class.to(torch.float64).transpose(0, 1)[:, mask]
    same = labels.unsqueeze(1) == reference_labels.unsqueeze(0)  # (n, n_ref)
    d = pairwise_distances(z.to(torch.float64), reference.to(torch.float64), metric=metric)
    own = _kernel_sum(d.unsqueeze(0), scales, w_ref, same.unsqueeze(0))[0]  # (T, n)
    own = own.reshape(every.shape).to(every.dtype)
    return ClassPotentials(own, every, own / every)


def potential_ratio(
    z: Tensor,
    labels: Tensor,
    t: ScaleLike,
    *,
    reference: Tensor | None = None,
    reference_labels: Tensor | None = None,
    metric: str = "euclidean",
    **kwargs,
) -> Tensor:
    r"""Class-vs-all potential ratio :math:`r(z_i) = h_{X_c}(z_i) / h_X(z_i)`, ``c = labels[i]``.

    The ``ratio`` field of :func:`class_potentials` (same arguments; leave-one-out within ``z``
    without ``reference``).

    Returns:
        ``(n,)`` or ``(T, n)``.

    Example:
        >>> import torch, magtorch
        >>> z = torch.tensor([[0.0], [0.1], [5.0], [5.1]], dtype=torch.float64)
        >>> r = magtorch.potential_ratio(z, torch.tensor([0, 0, 1, 1]), 1.0)
        >>> bool((r > 0.99).all())  # each point's potential comes from its own class
        True
    """
    return class_potentials(
        z,
        labels,
        t,
        reference=reference,
        reference_labels=reference_labels,
        metric=metric,
        **kwargs,
    ).ratio
