r"""Scale selection and summaries of the magnitude function.

* :func:`convergence_scale`: the smallest ``t`` with :math:`\mathrm{Mag}(tX) = q\,n` (``n`` the
  number of distinct points), found by safeguarded Newton steps in :math:`\log t` using the
  analytic derivative :math:`\mathrm{Mag}' = w^\top (D \circ Z) w`.
* :func:`magnitude_dimension`: the maximum over ``t`` of the slope
  :math:`\frac{d \log \mathrm{Mag}}{d \log t} = t\,\mathrm{Mag}'(t) / \mathrm{Mag}(t)` (analytic
  derivative; grid search then golden-section refinement in :math:`\log t`).
* :func:`magnitude_area` and :func:`magnitude_difference`: integrals of the magnitude function (and
  of the absolute difference of two) over :math:`[0, t_{\max}]` by composite Gauss-Legendre
  quadrature. **Normalisation:** with ``normalize=True`` (default) the integral is divided by
  :math:`t_{\max}`, i.e. the mean of the magnitude function over the interval — the convention of
  magnipy's ``mag_area``/``mag_diff`` (``scale=True``, Limbeck et al. 2024), so values are
  comparable with that library; magnitude itself is not divided by ``n``.

All functions accept batched points ``(..., n, d)`` with ``mask`` and return one value per set.
The scales they return are not differentiable (they are found by search); the areas are
differentiable in the points at fixed ``t_max``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._problem import Problem, prepare
from ._validation import as_scales, check_fraction, check_positive_int
from .errors import MagtorchError
from .magnitude import _solve_kwargs

__all__ = [
    "MagnitudeDimension",
    "convergence_scale",
    "magnitude_area",
    "magnitude_difference",
    "magnitude_dimension",
]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class MagnitudeDimension(NamedTuple):
    """The magnitude dimension ``(...)`` and the scale ``(...)`` where the slope peaks."""

    dimension: Tensor
    scale: Tensor


def _mag_and_slope(prob: Problem, t: Tensor, derivative: bool) -> tuple[Tensor, Tensor | None]:
    """Magnitude ``(N, T)`` and, optionally, ``t Mag'(t)`` at per-set scales ``t (N, T)``."""
    _, mag, report = prob.solve(t, derivative=derivative)
    return mag, None if report.derivative is None else t * report.derivative


def _convergence_scale(
    prob: Problem,
    q: float,
    max_steps: int = 100,
    t_init: Tensor | None = None,
    tol: float = 1e-14,
) -> Tensor:
    """Per-set ``t`` with ``Mag(tX) = q * n_distinct`` to relative accuracy ``tol`` in ``Mag``.

    0 where the target is at most 1 (``Mag(tX) -> 1`` as ``t -> 0``): a single distinct point,
    or ``q <= 1 / n``. One loop of safeguarded Newton steps in ``s = log t``, each solve giving
    ``Mag`` and its slope: while the root is not bracketed, a step moves at most ``log 2`` (the
    doubling grid from ``1 / diameter``; ``log sqrt 2`` from ``t_init``) toward it, so a crossing
    is not jumped over by more than the grid allows; once bracketed, Newton steps that leave the
    bracket are replaced by bisection.
    """
    num = prob.num_sets
    n_max = prob.n_distinct.to(torch.float64)
    target = q * n_max
    g_target = math.log(q / (1.0 - q))
    single = target <= 1.0
    if t_init is None:
        dmax = prob.max_distance().clamp_min(1e-300)
        s = (-torch.log(dmax)).clone()  # t = 1 / diameter: Mag is well below q n there
        max_move = math.log(2.0)
    else:
        s = torch.log(t_init.to(torch.float64)).expand(num).clone()
        max_move = 0.5 * math.log(2.0)
    s = torch.where(single, torch.zeros_like(s), s)
    lo = torch.full((num,), -math.inf, dtype=torch.float64, device=prob.device)
    hi = torch.full_like(lo, math.inf)
    with torch.no_grad():
        for _ in range(max_steps):
            mag, slope = _mag_and_slope(prob, s.exp()[:, None], derivative=True)
            f = mag[:, 0] - target
            lo = torch.where(f < 0, torch.maximum(lo, s), lo)
            hi = torch.where(f >= 0, torch.minimum(hi, s), hi)
            solved = (f.abs() <= tol * target) | single
            bracketed = torch.isfinite(lo) & torch.isfinite(hi)
            # Newton on the logit g = log Mag - log(n - Mag), nearly linear in log t where
            # Mag saturates toward n (Newton on Mag itself overshoots there).
            m = torch.minimum(mag[:, 0].clamp_min(1e-300), n_max * (1 - 1e-15))
            g = torch.log(m / (n_max - m)) - g_target
            dg = slope[:, 0] * (1.0 / m + 1.0 / (n_max - m))
            newton = s - g / dg
            usable = torch.isfinite(newton) & (dg > 0)
            # Unbracketed: move toward the root, at most max_move per step.
            toward = torch.where(f < 0, s + max_move, s - max_move)
            capped = torch.where(
                f < 0, torch.minimum(newton, toward), torch.maximum(newton, toward)
            )
            free = torch.where(usable, capped, toward)
            inside = usable & (newton > lo) & (newton < hi)
            boxed = torch.where(inside, newton, 0.5 * (lo + hi))
            s_new = torch.where(bracketed, boxed, free)
            s_new = torch.where(solved, s, s_new)
            done = solved | (bracketed & ((hi - lo) < 1e-14 * s.abs().clamp_min(1.0)))
            s = s_new
            if bool(done.all()):
                break
        else:
            raise MagtorchError(
                f"convergence_scale: Mag(tX) = q * n (q={q}) not reached to tol={tol:g} in "
                f"{max_steps} solves (t between {lo.exp().min().item():.4g} and "
                f"{hi.exp().max().item():.4g}); is the metric of negative type?"
            )
    return torch.where(single, torch.zeros_like(s), s.exp())


def convergence_scale(
    x: Tensor,
    q: float = 0.95,
    *,
    t_init: float | Tensor | None = None,
    tol: float = 1e-14,
    **kwargs,
) -> Tensor:
    r"""The smallest scale where :math:`\mathrm{Mag}(tX) = q\, n` (``n``: distinct points).

    Safeguarded Newton steps in :math:`\log t` with the analytic derivative, starting from
    ``1 / diameter``: while the root is not bracketed a step multiplies ``t`` by at most 2 (so
    the result is the first crossing on the doubling grid; for magnitude functions that are not
    monotone a smaller crossing between grid points is possible), then Newton with bisection as
    the safeguard (quadratic convergence). Each step is one solve. Returns 0 where
    ``q * n <= 1`` (e.g. a single distinct point): magnitude tends to 1 as ``t -> 0``.

    A previous answer (e.g. the last epoch's scale of slowly changing representations) passed
    as ``t_init`` starts there with steps of at most ``sqrt(2)``: typically 3-5 solves instead
    of 10-15. It finds a crossing near ``t_init``, the smallest one only if the magnitude
    function is monotone.

    Args:
        x: points ``(..., n, d)``.
        q: target fraction in (0, 1).
        t_init: optional starting guess, a positive scalar or one value per set.
        tol: stop when :math:`|\mathrm{Mag}(tX) - qn| \le \mathrm{tol} \cdot qn`; in (0, 1).
            Near the root Newton converges quadratically, so ``1e-8`` instead of the default
            saves about one solve.
        **kwargs: as in :func:`~magtorch.solve` (``metric``, ``mask``, solver options).

    Returns:
        ``(...)`` scales, in ``x``'s dtype (not differentiable).

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)  # 2 / (1 + e^{-t}) = 2 q
        >>> t = magtorch.convergence_scale(x, q=0.95)
        >>> float(t), float(-torch.log(torch.tensor(2 / 1.9 - 1, dtype=torch.float64)))
        (2.944438979166..., 2.944438979166...)
    """
    q = check_fraction(q, "q")
    prob = prepare(x, **_solve_kwargs(kwargs))
    start = None
    if t_init is not None:
        start = as_scales(t_init, device=prob.device, name="t_init").detach().reshape(-1)
        if start.numel() not in (1, prob.num_sets):
            raise MagtorchError(
                f"t_init must be a scalar or hold one value per set ({prob.num_sets}); "
                f"got {start.numel()}"
            )
    tol = check_fraction(tol, "tol")
    return (
        _convergence_scale(prob, q, t_init=start, tol=tol).reshape(prob.batch_shape).to(prob.dtype)
    )


def _golden_max(prob: Problem, lo: Tensor, hi: Tensor, iterations: int) -> Tensor:
    """Golden-section search for the max of the slope over ``log t`` in ``[lo, hi]`` per set."""

    def slope_at(s: Tensor) -> Tensor:
        mag, slope = _mag_and_slope(prob, s.exp()[:, None], derivative=True)
        return (slope / mag)[:, 0]

    a, b = lo.clone(), hi.clone()
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    fc, fd = slope_at(c), slope_at(d)
    for _ in range(iterations):
        left = fc > fd  # max in [a, d]
        a = torch.where(left, a, c)
        b = torch.where(left, d, b)
        new_c = torch.where(left, b - _GOLDEN * (b - a), d)
        new_d = torch.where(left, c, a + _GOLDEN * (b - a))
        new_point = torch.where(left, new_c, new_d)
        f_new = slope_at(new_point)
        fc, fd = torch.where(left, f_new, fd), torch.where(left, fc, f_new)
        c, d = new_c, new_d
    return 0.5 * (a + b)


def magnitude_dimension(
    x: Tensor,
    t: Tensor | None = None,
    *,
    n_scales: int = 32,
    q: float = 0.95,
    refine_steps: int = 25,
    **kwargs,
) -> MagnitudeDimension:
    r"""Magnitude dimension: :math:`\max_t\, t\,\mathrm{Mag}'(t) / \mathrm{Mag}(t)`.

    The slope of :math:`\log \mathrm{Mag}` against :math:`\log t` uses the analytic derivative.
    With ``t=None`` the slope is evaluated on ``n_scales`` log-spaced scales from
    ``1e-3 * t_conv`` to ``2 * t_conv`` (``t_conv`` = :func:`convergence_scale` at ``q``, per set)
    and the best grid point is refined by ``refine_steps`` golden-section steps in :math:`\log t`.
    With a 1-d ``t``, the maximum over those scales is returned (no refinement).

    Returns:
        :class:`MagnitudeDimension` ``(dimension, scale)``, each ``(...)``.

    Example:
        >>> import torch, magtorch
        >>> x = torch.linspace(0, 1, 200, dtype=torch.float64)[:, None]
        >>> dim = magtorch.magnitude_dimension(x).dimension
        >>> 0.9 < float(dim) < 1.05
        True
    """
    kw = _solve_kwargs(kwargs)
    prob = prepare(x, **kw)
    with torch.no_grad():
        if t is None:
            n_scales = check_positive_int(n_scales, "n_scales", minimum=3)
            t_conv = _convergence_scale(prob, check_fraction(q, "q"))
            if bool((t_conv <= 0).any()):
                raise MagtorchError(
                    "x has a set whose convergence scale is 0 (q * n <= 1, e.g. a single "
                    "distinct point): give t or a larger q"
                )
            grid = torch.logspace(
                -3, math.log10(2.0), n_scales, dtype=torch.float64, device=prob.device
            )
            scales = t_conv[:, None] * grid
        else:
            scales = prob.expand_scales(as_scales(t, device=prob.device).reshape(-1))
        mag, slope = _mag_and_slope(prob, scales, derivative=True)
        ratio = slope / mag
        best = ratio.argmax(-1)
        rows = torch.arange(prob.num_sets, device=prob.device)
        dim, at = ratio[rows, best], scales[rows, best]
        if t is None and refine_steps > 0:
            log_s = scales.log()
            lo = log_s[rows, (best - 1).clamp_min(0)]
            hi = log_s[rows, (best + 1).clamp_max(scales.shape[1] - 1)]
            s_star = _golden_max(prob, lo, hi, check_positive_int(refine_steps, "refine_steps"))
            mag_star, slope_star = _mag_and_slope(prob, s_star.exp()[:, None], derivative=True)
            refined = (slope_star / mag_star)[:, 0]
            better = refined > dim
            dim = torch.where(better, refined, dim)
            at = torch.where(better, s_star.exp(), at)
    shape = prob.batch_shape
    return MagnitudeDimension(dim.reshape(shape).to(prob.dtype), at.reshape(shape).to(prob.dtype))


def _quadrature(t_max: Tensor, panels: int, order: int = 8) -> tuple[Tensor, Tensor]:
    """Composite Gauss-Legendre nodes ``(N, panels*order)`` and weights on ``[0, t_max]``."""
    nodes, wts = np.polynomial.legendre.leggauss(order)
    nodes = torch.as_tensor(nodes, dtype=torch.float64, device=t_max.device)
    wts = torch.as_tensor(wts, dtype=torch.float64, device=t_max.device)
    edges = torch.arange(panels, dtype=torch.float64, device=t_max.device)
    unit = ((edges[:, None] + 0.5 * (nodes[None, :] + 1.0)) / panels).reshape(-1)
    unit_w = (wts[None, :].expand(panels, -1) / (2.0 * panels)).reshape(-1)
    return t_max[:, None] * unit, t_max[:, None] * unit_w


def _t_max(t_max, prob: Problem, q: float, name: str = "t_max") -> Tensor:
    if t_max is None:
        value = _convergence_scale(prob, check_fraction(q, "q"))
        if bool((value <= 0).any()):
            raise MagtorchError(
                f"{name}: a set's convergence scale is 0 (q * n <= 1, e.g. a single distinct "
                "point); give t_max"
            )
        return value
    value = as_scales(t_max, device=prob.device, name=name).detach()
    if value.dim() == 0:
        return value.expand(prob.num_sets)
    if value.numel() != prob.num_sets:
        raise MagtorchError(
            f"{name} must be a scalar or hold one value per set ({prob.num_sets}); "
            f"got {value.numel()}"
        )
    return value.reshape(prob.num_sets)


def magnitude_area(
    x: Tensor,
    t_max: float | Tensor | None = None,
    *,
    q: float = 0.95,
    normalize: bool = True,
    panels: int = 8,
    **kwargs,
) -> Tensor:
    r"""Area under the magnitude function, :math:`\int_0^{t_{\max}} \mathrm{Mag}(tX)\, dt`.

    Divided by :math:`t_{\max}` when ``normalize`` (the mean magnitude over the interval, as in
    magnipy's ``mag_area(scale=True)``). ``t_max=None`` uses each set's
    :func:`convergence_scale` at ``q``. Composite Gauss-Legendre quadrature with ``panels``
    panels of 8 nodes (``8 * panels`` solves, batched).

    Returns:
        ``(...)``, differentiable in ``x`` at fixed ``t_max``.

    Example:
        >>> import torch, magtorch
        >>> x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)  # Mag = 1 + tanh(t/2)
        >>> area = magtorch.magnitude_area(x, 2.0, normalize=False)
        >>> exact = 2.0 + 2 * torch.log(torch.cosh(torch.tensor(1.0, dtype=torch.float64)))
        >>> bool(torch.isclose(area, exact, rtol=1e-12))
        True
    """
    prob = prepare(x, **_solve_kwargs(kwargs))
    upper = _t_max(t_max, prob, q)
    nodes, wts = _quadrature(upper, check_positive_int(panels, "panels"))
    _, mag, _ = prob.solve(nodes)
    area = (mag * wts).sum(-1)
    if normalize:
        area = area / upper
    return area.reshape(prob.batch_shape).to(prob.dtype)


def _sign_changes(gap, nodes: Tensor, f: Tensor, steps: int = 60) -> Tensor | None:
    """Roots of ``gap`` between consecutive ``nodes`` where ``f = gap(nodes)`` changes sign.

    Returns ``(N, K)`` sorted roots (padded with the last node), or ``None`` when no set has a
    sign change. Each bracket is refined by the Illinois variant of regula falsi (batched).
    """
    change = (f[:, 1:] * f[:, :-1]) < 0
    count = change.sum(-1)
    k = int(count.max()) if count.numel() else 0
    if k == 0:
        return None
    order = torch.argsort((~change).to(torch.int8), dim=-1, stable=True)[:, :k]  # first k changes
    real = torch.arange(k, device=f.device)[None, :] < count[:, None]
    last = nodes.shape[1] - 1
    a = torch.where(real, nodes.gather(1, order), nodes[:, last:])
    b = torch.where(real, nodes.gather(1, order + 1), nodes[:, last:])
    fa = torch.where(real, f.gather(1, order), torch.ones_like(a))
    fb = torch.where(real, f.gather(1, order + 1), -torch.ones_like(b))
    side = torch.zeros_like(a)
    for _ in range(steps):
        c = torch.where(real, (a * fb - b * fa) / (fb - fa), a)
        if bool(((b - a).abs() <= 1e-15 * b.abs()).all()):
            break
        fc = torch.where(real, gap(c), torch.zeros_like(c))
        left = fc * fa > 0  # root in [c, b]
        a, fa = torch.where(left, c, a), torch.where(left, fc, fa)
        b, fb = torch.where(left, b, c), torch.where(left, fb, fc)
        # Illinois: halve the stale end's value when the same end survives twice.
        fb = torch.where(left & (side > 0), fb / 2, fb)
        fa = torch.where(~left & (side < 0), fa / 2, fa)
        side = torch.where(left, torch.ones_like(side), -torch.ones_like(side))
        if bool((fc == 0).all()):
            break
    roots = torch.where(real, c, nodes[:, last:])
    return roots.sort(dim=-1).values


def magnitude_difference(
    x: Tensor,
    y: Tensor,
    t_max: float | Tensor | None = None,
    *,
    q: float = 0.95,
    normalize: bool = True,
    panels: int = 16,
    y_mask: Tensor | None = None,
    **kwargs,
) -> Tensor:
    r"""Area between two magnitude functions, :math:`\int_0^{t_{\max}} |\mathrm{Mag}(tX) -
    \mathrm{Mag}(tY)|\, dt`.

    Divided by :math:`t_{\max}` when ``normalize`` (magnipy's ``mag_diff(scale=True)``).
    ``t_max=None`` takes, per pair of sets, the larger of the two convergence scales at ``q``.
    Composite Gauss-Legendre quadrature (``panels`` panels of 8 nodes). Where the two functions
    cross between quadrature nodes, the crossing is located (regula falsi) and the integral is
    split there, so the kink of :math:`|\cdot|` costs no accuracy (crossings closer together
    than the node spacing can be missed).

    Args:
        x: points ``(..., n, d)``.
        y: points ``(..., m, d)`` with the same batch shape.
        y_mask: optional boolean ``(..., m)`` for ``y`` (``mask`` applies to ``x``).

    Returns:
        ``(...)``, differentiable in ``x`` and ``y`` at fixed ``t_max``.

    Example:
        >>> import torch, magtorch
        >>> x = torch.randn(30, 2, dtype=torch.float64)
        >>> float(magtorch.magnitude_difference(x, x))
        0.0
        >>> bool(magtorch.magnitude_difference(x, 2 * x) > 0)
        True
    """
    kw = _solve_kwargs(kwargs)
    px = prepare(x, **kw)
    py = prepare(y, **{**kw, "mask": y_mask}, name="y")
    if px.batch_shape != py.batch_shape:
        raise MagtorchError(
            f"x and y must have the same batch shape; got {tuple(px.batch_shape)} and "
            f"{tuple(py.batch_shape)}"
        )
    if t_max is None:
        upper = torch.maximum(_t_max(None, px, q), _t_max(None, py, q, name="t_max (y)"))
    else:
        upper = _t_max(t_max, px, q)
    panels = check_positive_int(panels, "panels")

    def gap(t: Tensor) -> Tensor:
        return px.solve(t)[1] - py.solve(t)[1]

    nodes, wts = _quadrature(upper, panels)
    f = gap(nodes)
    roots = _sign_changes(gap, nodes, f)
    if roots is None:  # no crossing: one smooth integrand
        area = (f.abs() * wts).sum(-1)
    else:  # integrate f on each interval where its sign is constant, then add |.|
        edges = torch.cat([torch.zeros_like(upper)[:, None], roots, upper[:, None]], dim=1)
        area = torch.zeros_like(upper)
        for j in range(edges.shape[1] - 1):
            seg_nodes, seg_wts = _quadrature(edges[:, j + 1] - edges[:, j], panels)
            seg_nodes = seg_nodes + edges[:, j : j + 1]
            area = area + (gap(seg_nodes) * seg_wts).sum(-1).abs()
    if normalize:
        area = area / upper
    return area.reshape(px.batch_shape).to(px.dtype)
