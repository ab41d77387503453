r"""Subset approximations of magnitude (Andreeva et al., "Approximating Metric Magnitude of
Point Sets", AAAI 2025, §3.3-3.4).

Magnitude is monotone under inclusion for positive definite spaces, so a well chosen subset
``S ⊆ X`` gives a lower bound ``Mag(tS) <= Mag(tX)`` that approaches ``Mag(tX)`` as ``S`` grows.
Two ways to choose ``S``:

* :func:`greedy_subset` (the paper's Algorithm 2): add, one point at a time, the point that
  increases the magnitude most. The increase comes from the one-point extension (Schur
  complement) formula

  .. math::

     \mathrm{Mag}(S \cup \{b\}) - \mathrm{Mag}(S)
       = \frac{(1 - h_S(b))^2}{1 - k_b^\top Z_S^{-1} k_b},
     \qquad k_b = e^{-t\, d(b, S)},\quad h_S(b) = k_b^\top Z_S^{-1} 1,

  evaluated for **every** candidate at once from the whitened similarities
  ``V = L^{-1} K_{S,:}`` (``Z_S = L L^T``): ``k_b^T Z_S^{-1} k_b = |V[:, b]|^2`` and
  ``h_S(b) = V[:, b]^T L^{-1} 1``. Adding a point appends one row to ``V`` (one
  ``(k, n)`` matrix-vector product): a step costs ``O(n k)`` for ``k`` selected points and
  the memory is ``O(n k)``; no ``n x n`` matrix is formed and nothing is re-inverted.
* :class:`DiscreteCenterHierarchy` (Algorithm 3): levels ``X = S_0 ⊇ S_1 ⊇ ... ⊇ S_h`` where
  ``S_i`` is a minimal independent covering set of ``S_{i-1}`` of radius
  ``r_i = radius * 2^(i-1)`` (every point of ``S_{i-1}`` lies within ``r_i`` of a centre of
  ``S_i``; centres of ``S_i`` are more than ``r_i`` apart). Traversed top-down
  (``S_h``, then ``S_{h-1} \ S_h``, ...) it gives an order of the points, independent of the
  scale ``t``, so one order serves a whole magnitude function; :func:`prefix_magnitudes`
  evaluates ``Mag(tS)`` for every prefix and ``T`` scales with one Cholesky factorisation per
  scale. Points can be inserted and deleted without a rebuild.

Prefix magnitudes use one fact: the Cholesky factor of a leading block of ``Z`` is the leading
block of the factor, so with ``a = L^{-1} 1`` the magnitude of the first ``j`` points is
``a_1^2 + ... + a_j^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._progress import Progress
from ._threads import cpu_single_thread
from ._validation import ScaleLike, as_scales, check_finite, check_metric, check_points
from .errors import MagtorchError
from .pairwise import check_distance_matrix, distances

__all__ = [
    "DiscreteCenterHierarchy",
    "GreedySubsetResult",
    "greedy_subset",
    "prefix_magnitudes",
]

#: Schur complements ``1 - k^T Z_S^{-1} k`` at or below this mark a candidate as a (numerical)
#: duplicate of the selected points: by the multiset rule it adds nothing and is never chosen.
DUPLICATE_TOL = 1e-10

#: Metrics the hierarchy accepts (inserting points needs coordinates, so no "precomputed").
HIERARCHY_METRICS = ("euclidean", "l1", "cosine")

#: Candidates decided per block when building a level of the hierarchy.
COVER_BLOCK = 256


# ---------------------------------------------------------------------------- helpers


def _single_set(x: Tensor, metric: str, name: str = "x") -> Tensor:
    """Validate one point set ``(n, d)`` (or an ``(n, n)`` distance matrix); float64."""
    if metric == "precomputed":
        x = check_distance_matrix(x, name)
    else:
        x = check_points(x, name)
        check_finite(x, name)
    if x.dim() != 2:
        raise MagtorchError(
            f"{name} must be a single set of shape (n, d) (or (n, n) with "
            f"metric='precomputed'); got shape {tuple(x.shape)}: batches are not supported here"
        )
    return x.detach().to(torch.float64)


def _scalar_scale(t: ScaleLike) -> float:
    scales = as_scales(t, device=torch.device("cpu"))
    if scales.dim() != 0 and scales.numel() != 1:
        raise MagtorchError(
            f"t must be a single scale for greedy_subset (the greedy order depends on t); got "
            f"{scales.numel()} scales. Run it once per scale, or use DiscreteCenterHierarchy, "
            "whose order serves every scale"
        )
    return float(scales.reshape(()))


def _rows(x: Tensor, idx: Tensor, metric: str) -> Tensor:
    """Distances from the points ``idx`` to every point: ``(len(idx), n)``."""
    if metric == "precomputed":
        return x[idx]
    return distances(x[idx], x, metric)


def _check_size(value: int | None, name: str, n: int) -> int:
    if value is None:
        return n
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise MagtorchError(f"{name} must be an integer >= 1 or None; got {value!r}")
    return min(int(value), n)


def _check_index(value: int, name: str, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
        raise MagtorchError(f"{name} must be an integer in [0, {n}); got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- greedy


@dataclass
class GreedySubsetResult:
    """What :func:`greedy_subset` returns.

    Attributes:
        indices: ``(k,)`` the selected points, in the order they were added.
        magnitude: ``(k,)`` float64; ``magnitude[j] = Mag(t {x_indices[0..j]})``, the curve.
        gains: ``(k,)`` the increase of each step (``gains[0] = 1``, the first point).
        weights: ``(k,)`` the weighting of the final subset (``Z_S w = 1``), in ``indices`` order.
        potential: ``(n,)`` ``h_S(x_i) = sum_j w_j exp(-t d(x_i, s_j))`` for every point
            (1 on the selected points).
        t: the scale.
        stop_reason: ``"tolerance"`` (best gain below ``tol * Mag(S)``), ``"max_size"``, or
            ``"exhausted"`` (every remaining point is a duplicate of a selected one).
    """

    indices: Tensor
    magnitude: Tensor
    gains: Tensor
    weights: Tensor
    potential: Tensor
    t: float
    stop_reason: str

    @property
    def size(self) -> int:
        """Number of selected points ``k``."""
        return int(self.indices.numel())


def greedy_subset(
    x: Tensor,
    t: ScaleLike,
    *,
    metric: str = "euclidean",
    max_size: int | None = None,
    tol: float = 1e-4,
    start: int = 0,
    progress: bool = False,
) -> GreedySubsetResult:
    r"""Greedy magnitude maximisation (Algorithm 2 of Andreeva et al., AAAI 2025).

    Starting from ``S = {x_start}``, repeatedly add the point ``b`` maximising

    .. math::

       \mathrm{Mag}(S \cup \{b\}) - \mathrm{Mag}(S)
         = \frac{(1 - h_S(b))^2}{1 - k_b^\top Z_S^{-1} k_b}

    until the best gain is below ``tol * Mag(S)`` or ``max_size`` points are chosen. All ``n``
    gains come from the whitened similarities ``V = L^{-1} K_{S,:}`` updated by one appended row
    per step: ``O(n k)`` time per step and ``O(n k)`` memory for ``k`` selected points (no
    ``n x n`` matrix, no re-inversion). Candidates whose Schur complement is
    ``<= DUPLICATE_TOL`` duplicate a selected point and are never chosen (a multiset's
    magnitude is that of its distinct points).

    Args:
        x: points ``(n, d)``, or distances ``(n, n)`` with ``metric="precomputed"``.
        t: one positive scale (the greedy order depends on ``t``).
        metric: ``"euclidean"``, ``"l1"``, ``"cosine"`` (angular) or ``"precomputed"``. For a
            space that is not positive definite the gains can be negative or undefined; the
            method assumes ``Z_S`` stays positive definite.
        max_size: the most points to select (``None``: up to ``n``).
        tol: relative stopping tolerance, ``>= 0``: stop when the best gain is below
            ``tol * Mag(S)`` (``0``: run to ``max_size``).
        start: index of the first point (the paper starts from a random one).
        progress: print steps done and time left to stderr.

    Returns:
        :class:`GreedySubsetResult` with ``indices (k,)``, the curve ``magnitude (k,)``,
        ``gains (k,)``, ``weights (k,)``, ``potential (n,)``.

    Example:
        >>> import math, torch
        >>> from magtorch.subset import greedy_subset
        >>> x = torch.tensor([[0.0], [0.1], [3.0]], dtype=torch.float64)
        >>> res = greedy_subset(x, 1.0, tol=0.0)
        >>> res.indices.tolist()  # from 0, the far point first: gain tanh(t d / 2)
        [0, 2, 1]
        >>> round(float(res.magnitude[1]), 10) == round(1 + math.tanh(1.5), 10)
        True
        >>> round(float(res.magnitude[-1]), 10) == round(1 + math.tanh(0.05) + math.tanh(1.45), 10)
        True
    """
    metric = check_metric(metric)
    x = _single_set(x, metric)
    scale = _scalar_scale(t)
    n = x.shape[0]
    max_size = _check_size(max_size, "max_size", n)
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not tol >= 0:
        raise MagtorchError(f"tol must be a number >= 0; got {tol!r}")
    if not math.isfinite(float(tol)):
        raise MagtorchError(f"tol must be finite; got {tol!r}")
    start = _check_index(start, "start", n)
    kw = {"dtype": torch.float64, "device": x.device}

    with cpu_single_thread(x.device):
        cap = min(max_size, 64)
        V = torch.empty(cap, n, **kw)
        first = torch.exp(-scale * _rows(x, torch.tensor([start], device=x.device), metric)[0])
        V[0] = first
        q = first * first  # k_b^T Z_S^{-1} k_b
        h = first.clone()  # h_S(b)
        free = torch.ones(n, dtype=torch.bool, device=x.device)
        free[start] = False
        order, gains, a = [start], [1.0], [1.0]
        mag = 1.0
        stop = "max_size"
        bar = Progress(total=max_size, n=n, enabled=progress)
        bar.update(1)
        while len(order) < max_size:
            s = 1.0 - q
            ok = free & (s > DUPLICATE_TOL)
            gain = torch.where(ok, (1.0 - h).square() / s.clamp_min(DUPLICATE_TOL), -math.inf)
            p = int(torch.argmax(gain))
            best = float(gain[p])
            if best == -math.inf:
                stop = "exhausted"
                break
            if best < tol * mag:
                stop = "tolerance"
                break
            m = len(order)
            col = V[:m, p]
            # Recompute s_p and h_p from the column (the running q, h accumulate rounding).
            s_p = 1.0 - float(col @ col)
            if s_p <= DUPLICATE_TOL:  # the running value was off; p duplicates a selected point
                free[p] = False
                continue
            h_p = float(col @ torch.tensor(a, **kw))
            root = math.sqrt(s_p)
            row = torch.exp(-scale * _rows(x, torch.tensor([p], device=x.device), metric)[0])
            row = (row - col @ V[:m]) / root
            a_p = (1.0 - h_p) / root
            if m == V.shape[0]:
                V = torch.cat([V, torch.empty(min(m, max_size - m), n, **kw)], 0)
            V[m] = row
            q += row * row
            h += a_p * row
            free[p] = False
            order.append(p)
            a.append(a_p)
            gains.append(a_p * a_p)
            mag += a_p * a_p
            bar.update(1)
        bar.close()
    k = len(order)
    idx = torch.tensor(order, dtype=torch.long, device=x.device)
    a_t = torch.tensor(a, **kw)
    upper = V[:k, idx]  # L^{-1} Z_S = L^T
    w = torch.linalg.solve_triangular(upper, a_t[:, None], upper=True)[:, 0]
    gains_t = torch.tensor(gains, **kw)
    return GreedySubsetResult(
        indices=idx,
        magnitude=torch.cumsum(gains_t, 0),
        gains=gains_t,
        weights=w,
        potential=a_t @ V[:k],
        t=scale,
        stop_reason=stop,
    )


# ---------------------------------------------------------------------------- prefix curve


def prefix_magnitudes(
    x: Tensor,
    order: Tensor,
    t: ScaleLike,
    *,
    metric: str = "euclidean",
    max_size: int | None = None,
    progress: bool = False,
) -> Tensor:
    r"""``Mag(t {x_order[0], ..., x_order[j]})`` for every prefix ``j`` of an order.

    With ``Z = L L^T`` the similarity matrix of the ordered points and ``a = L^{-1} 1``, the
    leading ``j x j`` block of ``L`` is the factor of the first ``j`` points, so
    ``Mag(first j) = a_1^2 + ... + a_j^2``: one Cholesky factorisation per scale gives the whole
    curve. A point that coincides with an earlier one (distance 0) adds nothing (multiset rule).

    Args:
        x: points ``(n, d)``, or distances ``(n, n)`` with ``metric="precomputed"``.
        order: ``(k,)`` distinct indices into ``x``.
        t: a positive scale or a 1-d tensor of ``T`` scales.
        metric: see :func:`magtorch.pairwise_distances`.
        max_size: use only the first ``max_size`` entries of ``order``.
        progress: print scales done and time left to stderr.

    Returns:
        ``(k,)`` float64 for a scalar ``t``, ``(T, k)`` for ``T`` scales.

    Raises:
        MagtorchError: if ``Z_t`` of the ordered points is not (numerically) positive
            definite: an indefinite metric, or a scale so small that ``Z_t`` is singular in
            float64.

    Example:
        >>> import math, torch
        >>> from magtorch.subset import prefix_magnitudes
        >>> x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
        >>> curve = prefix_magnitudes(x, torch.tensor([2, 0, 1]), 1.0)
        >>> [round(v, 6) for v in curve.tolist()]
        [1.0, 1.905148, 2.223711]
        >>> round(1 + math.tanh(1.5), 6), round(1 + math.tanh(0.5) + math.tanh(1.0), 6)
        (1.905148, 2.223711)
    """
    metric = check_metric(metric)
    x = _single_set(x, metric)
    n = x.shape[0]
    if not isinstance(order, Tensor):
        order = torch.as_tensor(np.asarray(order))
    if order.dim() != 1 or order.numel() == 0 or order.dtype.is_floating_point:
        raise MagtorchError(
            f"order must be a non-empty 1-d integer tensor of indices; got shape "
            f"{tuple(order.shape)} and dtype {order.dtype}"
        )
    order = order.to(device=x.device, dtype=torch.long)
    if bool(((order < 0) | (order >= n)).any()):
        raise MagtorchError(f"order has indices outside [0, {n})")
    if torch.unique(order).numel() != order.numel():
        raise MagtorchError("order must not repeat an index")
    order = order[: _check_size(max_size, "max_size", order.numel())]
    scales = as_scales(t, device=x.device)
    scalar = scales.dim() == 0
    scales = scales.detach().reshape(-1)
    if metric == "precomputed":
        d = x[order][:, order]
    else:
        d = distances(x[order], x[order], metric)
    k = d.shape[0]
    # Points that coincide with an earlier point of the order add nothing.
    dup = torch.triu(d == 0, diagonal=1).any(0)
    keep = ~dup
    du = d[keep][:, keep]
    position = torch.cumsum(keep.long(), 0) - 1  # index of each prefix's last distinct point
    ones = torch.ones(du.shape[0], 1, dtype=torch.float64, device=x.device)
    out = torch.empty(scales.numel(), k, dtype=torch.float64, device=x.device)
    bar = Progress(total=scales.numel(), n=k, enabled=progress)
    for i, s in enumerate(scales.tolist()):
        L, info = torch.linalg.cholesky_ex(torch.exp(-s * du))
        if int(info) != 0:
            raise MagtorchError(
                f"the similarity matrix of the first {int(info)} distinct points of the order "
                f"is not positive definite at t={s:g} (an indefinite metric, or Z_t singular "
                "in float64 at this small a scale); prefix magnitudes need a positive definite "
                "Z_t: use magtorch.magnitude on the subsets you need instead"
            )
        a = torch.linalg.solve_triangular(L, ones, upper=False)[:, 0]
        out[i] = torch.cumsum(a * a, 0)[position]
        bar.update(1)
    bar.close()
    return out[0] if scalar else out


# ---------------------------------------------------------------------------- hierarchy


class DiscreteCenterHierarchy:
    r"""Discrete centre hierarchy (Algorithm 3 of Andreeva et al., AAAI 2025) with insert and
    delete.

    Levels ``X = S_0 ⊇ S_1 ⊇ ... ⊇ S_h``; ``S_i`` (``i >= 1``) is a minimal independent covering
    set of ``S_{i-1}`` of radius ``r_i = radius * 2^(i-1)``:

    * covering: every point of ``S_{i-1}`` is within ``r_i`` of a centre of ``S_i``;
    * separation: centres of ``S_i`` are more than ``r_i`` apart (which makes the covering
      minimal: a centre is covered by no other centre);
    * nesting: ``S_i ⊆ S_{i-1}``, and the top level ``S_h`` is a single point.

    Each point is stored with its top level (``p ∈ S_i`` iff ``top(p) >= i``), so nesting holds by
    construction. Levels are built greedily (a centre is the first uncovered point in id order).
    :meth:`order` traverses the levels top-down (``S_h``, then ``S_{h-1} \ S_h``, ...; ids
    ascending within a level); the order does not depend on the scale, so :meth:`curve` gives
    ``Mag(tS)`` along it for ``T`` scales at once.

    :meth:`insert` puts a new point ``q`` into ``S_0, ..., S_{i-1}`` where ``i`` is the lowest
    level with a centre within ``r_i`` of ``q`` (or into every level, growing new levels on top,
    if there is none). :meth:`delete` removes a point and, level by level upwards, promotes
    (greedily) the points of ``S_{i-1}`` that only it covered. Both cost ``O(n d)`` distance
    evaluations per point here (no spatial index) and never rebuild.

    Points keep their ids (``0, 1, ...`` in order of insertion); deleted ids are not reused.

    Args:
        x: initial points ``(n, d)``.
        radius: ``r_1 > 0``, the covering radius of ``S_1`` (the paper's ``2^0 = 1``). Pairs
            closer than ``r_1`` are only separated at the bottom level ``S_0``.
        metric: ``"euclidean"``, ``"l1"`` or ``"cosine"`` (angular).

    Example:
        >>> import torch
        >>> from magtorch.subset import DiscreteCenterHierarchy
        >>> x = torch.tensor([[0.0], [0.5], [3.0], [10.0]], dtype=torch.float64)
        >>> hier = DiscreteCenterHierarchy(x, radius=1.0)
        >>> [lvl.tolist() for lvl in hier.levels], hier.radii
        ([[0, 1, 2, 3], [0, 2, 3], [0, 2, 3], [0, 3], [0, 3], [0]], [1.0, 2.0, 4.0, 8.0, 16.0])
        >>> hier.order().tolist()
        [0, 3, 2, 1]
        >>> hier.curve(torch.tensor([1.0, 2.0])).shape
        torch.Size([2, 4])
        >>> hier.insert(torch.tensor([[20.0]], dtype=torch.float64)).tolist()
        [4]
        >>> hier.delete([0]); hier.order().tolist()  # 0.5 promoted to the top
        [1, 4, 3, 2]
    """

    def __init__(self, x: Tensor, *, radius: float = 1.0, metric: str = "euclidean") -> None:
        metric = check_metric(metric)
        if metric not in HIERARCHY_METRICS:
            raise MagtorchError(
                f"metric={metric!r} is not supported by DiscreteCenterHierarchy (inserting "
                f"points needs coordinates); allowed: {', '.join(HIERARCHY_METRICS)}"
            )
        if (
            isinstance(radius, bool)
            or not isinstance(radius, (int, float, np.floating))
            or not math.isfinite(float(radius))
            or not radius > 0
        ):
            raise MagtorchError(f"radius must be a finite number > 0; got {radius!r}")
        self.metric = metric
        self.radius = float(radius)
        x = _single_set(x, metric)
        n = x.shape[0]
        self._x = x.clone()
        self._n = n
        self._alive = torch.ones(n, dtype=torch.bool, device=x.device)
        self._top = torch.zeros(n, dtype=torch.long, device=x.device)
        with cpu_single_thread(x.device):
            self._grow_top()

    # ------------------------------------------------------------ public views

    @property
    def n(self) -> int:
        """Number of (alive) points."""
        return int(self._alive[: self._n].sum())

    @property
    def height(self) -> int:
        """Index ``h`` of the top level (``S_h`` has one point)."""
        return int(self._top[: self._n][self._alive[: self._n]].max())

    @property
    def ids(self) -> Tensor:
        """``(n,)`` ids of the alive points, ascending."""
        return self._alive[: self._n].nonzero().squeeze(1)

    @property
    def points(self) -> Tensor:
        """``(n, d)`` the alive points, in :attr:`ids` order."""
        return self._x[self.ids]

    @property
    def radii(self) -> list[float]:
        """``[r_1, ..., r_h]`` with ``r_i = radius * 2^(i-1)``."""
        return [self.level_radius(i) for i in range(1, self.height + 1)]

    @property
    def levels(self) -> list[Tensor]:
        """``[S_0, ..., S_h]`` as ascending id tensors (``S_0`` = all alive points)."""
        ids = self.ids
        top = self._top[ids]
        return [ids[top >= i] for i in range(self.height + 1)]

    def level_radius(self, i: int) -> float:
        """``r_i = radius * 2^(i-1)`` for ``i >= 1``."""
        return self.radius * 2.0 ** (i - 1)

    def point(self, ids: Tensor) -> Tensor:
        """Coordinates of the points ``ids`` (alive or not): ``(len(ids), d)``."""
        return self._x[torch.as_tensor(ids, dtype=torch.long, device=self._x.device)]

    def order(self) -> Tensor:
        """``(n,)`` ids top-down: ``S_h``, then ``S_{h-1} \\ S_h``, ..., ``S_0 \\ S_1``."""
        ids = self.ids
        top = self._top[ids]
        # stable sort by level, descending; ids ascending within a level
        return ids[torch.sort(-top, stable=True).indices]

    def curve(self, t: ScaleLike, *, max_size: int | None = None, progress: bool = False) -> Tensor:
        """``Mag(tS)`` along :meth:`order`, every prefix: ``(k,)``, or ``(T, k)`` for ``T`` scales.

        See :func:`prefix_magnitudes` (one Cholesky factorisation of a ``k x k`` matrix per
        scale; ``max_size`` bounds ``k``).
        """
        return prefix_magnitudes(
            self._x, self.order(), t, metric=self.metric, max_size=max_size, progress=progress
        )

    # ------------------------------------------------------------ updates

    def insert(self, points: Tensor) -> Tensor:
        """Insert points ``(m, d)``; returns their ids ``(m,)``.

        For each new point ``q``: with ``i`` the lowest level having a centre within ``r_i`` of
        ``q``, ``q`` joins ``S_0 .. S_{i-1}`` (separated there, since no lower level had a
        centre near it, and covered at level ``i``). With no such level it joins every level
        and new levels are grown on top until one point remains.
        """
        points = check_points(points, "points")
        check_finite(points, "points")
        if points.dim() != 2 or points.shape[1] != self._x.shape[1]:
            raise MagtorchError(
                f"points must have shape (m, {self._x.shape[1]}); got {tuple(points.shape)}"
            )
        points = points.detach().to(dtype=torch.float64, device=self._x.device)
        m = points.shape[0]
        self._reserve(self._n + m)
        new = torch.arange(self._n, self._n + m, device=self._x.device)
        with cpu_single_thread(self._x.device):
            for j in range(m):
                self._insert_one(points[j : j + 1])
        return new

    def _insert_one(self, point: Tensor) -> None:
        """Insert one point ``(1, d)`` (see :meth:`insert`)."""
        q = self._n
        ids = self.ids
        d = distances(point, self._x[ids], self.metric)[0]
        self._x[q] = point[0]
        self._alive[q] = True
        need = self._needed_level(d)
        feasible = need <= self._top[ids]
        self._n += 1
        if bool(feasible.any()):
            self._top[q] = int(need[feasible].min()) - 1
        else:
            self._top[q] = self.height
            self._grow_top()

    def delete(self, ids: Tensor | list[int]) -> None:
        """Delete the points ``ids`` (alive ids, no repeats), repairing the levels upwards.

        When ``p`` leaves ``S_i`` the points of ``S_{i-1}`` within ``r_i`` of ``p`` may have lost
        their only covering centre: those that no remaining centre covers are promoted to ``S_i``
        greedily (each promoted point covers the others within ``r_i``), and the promoted points
        need covering one level higher, and so on.
        """
        ids_t = torch.as_tensor(np.asarray(ids), device=self._x.device)
        if ids_t.dim() != 1 or ids_t.dtype.is_floating_point or ids_t.dtype == torch.bool:
            raise MagtorchError(f"ids must be a 1-d sequence of integer ids; got {ids!r}")
        ids_t = ids_t.long()
        if torch.unique(ids_t).numel() != ids_t.numel():
            raise MagtorchError("ids must not repeat an id")
        if bool(((ids_t < 0) | (ids_t >= self._n)).any()) or not bool(
            self._alive[ids_t.clamp(0, max(self._n - 1, 0))].all()
        ):
            raise MagtorchError(f"ids must be ids of alive points (see .ids); got {ids!r}")
        if ids_t.numel() >= self.n:
            raise MagtorchError("cannot delete every point of the hierarchy")
        with cpu_single_thread(self._x.device):
            for p in ids_t.tolist():
                self._delete_one(p)

    # ------------------------------------------------------------ internals

    def _reserve(self, size: int) -> None:
        cap = self._x.shape[0]
        if size <= cap:
            return
        extra = max(size - cap, cap)
        dev = self._x.device
        self._x = torch.cat([self._x, torch.zeros(extra, self._x.shape[1], **_kw(self._x))], 0)
        self._alive = torch.cat([self._alive, torch.zeros(extra, dtype=torch.bool, device=dev)])
        self._top = torch.cat([self._top, torch.zeros(extra, dtype=torch.long, device=dev)])

    def _needed_level(self, d: Tensor) -> Tensor:
        """Smallest level ``i >= 1`` with ``r_i >= d`` (elementwise)."""
        ratio = (d / self.radius).clamp_min(1e-300)
        i = (torch.ceil(torch.log2(ratio)) + 1).clamp_min(1).long()
        radius = self.radius * torch.pow(2.0, (i - 1).to(d.dtype))
        i = torch.where(radius < d, i + 1, i)
        radius = self.radius * torch.pow(2.0, (i - 2).to(d.dtype))
        return torch.where((i > 1) & (radius >= d), i - 1, i)

    def _greedy_cover(self, cand: Tensor, r: float) -> Tensor:
        """Greedy maximal subset of ``cand`` (ids, in order) with pairwise distances > ``r``,
        covering ``cand`` within ``r``: a candidate is a centre iff no earlier centre is within
        ``r``. Blocks of :data:`COVER_BLOCK` candidates are decided from their own distance
        matrix, then the rest is filtered against the block's centres in one product."""
        centres: list[Tensor] = []
        rem = cand
        while rem.numel():
            blk = rem[:COVER_BLOCK]
            far = (distances(self._x[blk], self._x[blk], self.metric) > r).cpu().numpy()
            free = np.ones(blk.numel(), dtype=bool)
            chosen = []
            for i in range(blk.numel()):
                if free[i]:
                    chosen.append(i)
                    free &= far[i]
            new = blk[torch.tensor(chosen, dtype=torch.long, device=blk.device)]
            centres.append(new)
            rem = rem[COVER_BLOCK:]
            if rem.numel():
                d = distances(self._x[rem], self._x[new], self.metric)
                rem = rem[(d > r).all(1)]
        if not centres:
            return cand[:0]
        return torch.cat(centres)

    def _grow_top(self) -> None:
        """Add levels on top until it has one point; drop redundant single-point levels."""
        ids = self.ids
        h = int(self._top[ids].max())
        while True:
            top_ids = ids[self._top[ids] >= h]
            if top_ids.numel() <= 1:
                break
            centres = self._greedy_cover(top_ids, self.level_radius(h + 1))
            self._top[centres] = h + 1
            h += 1
        while h > 0 and int((self._top[ids] >= h - 1).sum()) == 1:
            self._top[ids[self._top[ids] >= h - 1]] = h - 1
            h -= 1

    def _delete_one(self, p: int) -> None:
        m = int(self._top[p])
        self._alive[p] = False
        self._top[p] = 0
        ids = self.ids
        dist_p = distances(self._x[p : p + 1], self._x[ids], self.metric)[0]
        promoted = ids[:0]
        j = 1
        while True:
            top = self._top[ids]
            height = int(top.max())
            if (j > m and promoted.numel() == 0) or j > max(m, height):
                break
            r = self.level_radius(j)
            cand = promoted
            if j <= m:
                near = ids[(top >= j - 1) & (dist_p <= r)]
                cand = torch.unique(torch.cat([cand, near]))
            cand = cand[self._top[cand] < j]  # centres of S_j cover themselves
            centres = ids[top >= j]
            if cand.numel() and centres.numel():
                d = distances(self._x[cand], self._x[centres], self.metric)
                cand = cand[(d > r).all(1)]
            promoted = self._greedy_cover(cand, r)
            self._top[promoted] = j
            j += 1
        self._grow_top()


def _kw(x: Tensor) -> dict:
    return {"dtype": x.dtype, "device": x.device}
