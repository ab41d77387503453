r"""The incremental engine behind :class:`magtorch.cluster.MagnitudeClustering`.

State, for every cluster ``c`` with members ``c_1..c_m`` (similarity ``Z_c``, Cholesky factor
``Z_c = L_c L_c^T``) and every *free* (unassigned) point ``b``:

* ``V_c = L_c^{-1} K_{c,:}``  ``(m, u)``: the whitened similarities of the free points,
  ``K[i, b] = exp(-t d(x_i, x_b))``;
* ``q_c(b) = k_b^T Z_c^{-1} k_b = |V_c[:, b]|^2`` and
  ``h_c(b) = k_b^T Z_c^{-1} 1 = V_c[:, b]^T a_c`` with ``a_c = L_c^{-1} 1``
  (``|a_c|^2 = Mag(c)``);
* the increase of the one-point extension (Schur complement),
  ``Mag(c ∪ {b}) - Mag(c) = (1 - h_c(b))^2 / (1 - q_c(b))``.

Adding ``p`` to ``c`` appends one row to the factor (``s = 1 - q_c(p)``, the Schur complement):
``v_new = (K[p, :] - V_c[:, p]^T V_c) / sqrt(s)``, ``a_new = (1 - h_c(p)) / sqrt(s)``, then
``q_c += v_new^2`` and ``h_c += a_new v_new``: one ``(m, u)`` matrix-vector product, no solve.
Opening a cluster ``{p}`` sets ``V = K[p, :]``, ``q = K[p, :]^2``, ``h = K[p, :]`` and the increase
``(1 - k)/(1 + k) = tanh(t d / 2)``.

A point with ``s <= DUPLICATE_TOL`` is (numerically) a duplicate of a member: the multiset
semantics of DESIGN.md give it increase 0, and joining it leaves the factor unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

#: Schur complements ``1 - k^T Z^{-1} k`` at or below this are treated as duplicates.
DUPLICATE_TOL = 1e-10


class GreedyClusterState:
    """Clusters grown one point at a time with rank-one (Schur complement) updates.

    Args:
        K: ``(n, n)`` similarity matrix ``exp(-t D)`` (float64 recommended), any device.
        duplicate_tol: see :data:`DUPLICATE_TOL`.

    Columns are kept for the free points only; when half of them have been assigned, every
    per-point array is compacted, so the work of a step is ``O(m u)`` for a cluster of ``m``
    members and ``u`` free points.
    """

    def __init__(self, K: Tensor, duplicate_tol: float = DUPLICATE_TOL) -> None:
        n = K.shape[0]
        self.K = K
        self.tol = duplicate_tol
        self.n = n
        kw = {"dtype": K.dtype, "device": K.device}
        self.cols = torch.arange(n, device=K.device)  # global index of each local column
        self.local = torch.arange(n, device=K.device)  # local column of each global point
        self.free = torch.ones(n, dtype=torch.bool, device=K.device)
        self.n_free = n
        self.K_loc = K
        self.labels = torch.full((n,), -1, dtype=torch.long, device=K.device)
        self.V: list[Tensor] = []  # per cluster, (capacity, u) buffer
        self.rows: list[int] = []  # factor rows used per cluster
        self.sizes: list[int] = []  # members per cluster (duplicates included)
        self.mags: list[float] = []  # Mag(c) = |a_c|^2
        cap = 8
        self.Q = torch.zeros(n, cap, **kw)
        self.H = torch.zeros(n, cap, **kw)
        self.INC = torch.full((n, cap), math.inf, **kw)
        self.best_val = torch.full((n,), math.inf, **kw)
        self.best_c = torch.zeros(n, dtype=torch.long, device=K.device)

    @property
    def n_clusters(self) -> int:
        """Number of clusters opened so far."""
        return len(self.V)

    # ------------------------------------------------------------------ queries

    def best(self) -> tuple[int, float, int]:
        """``(point, increase, cluster)`` minimising the increase over free points and clusters."""
        lp = int(torch.argmin(self.best_val))
        return int(self.cols[lp]), float(self.best_val[lp]), int(self.best_c[lp])

    def increases(self) -> tuple[Tensor, Tensor]:
        """Free points (global indices, ``(u,)``) and their increases ``(u, C)`` per cluster."""
        idx = self.free[self.cols].nonzero().squeeze(1)
        return self.cols[idx], self.INC[idx, : self.n_clusters]

    # ------------------------------------------------------------------ updates

    def _increase(self, q: Tensor, h: Tensor) -> Tensor:
        s = 1.0 - q
        inc = torch.where(s > self.tol, (1.0 - h).square() / s.clamp_min(self.tol), 0.0)
        return inc.masked_fill_(~self.free[self.cols], math.inf)

    def _take(self, p: int) -> int:
        """Mark global point ``p`` assigned; return its local column."""
        lp = int(self.local[p])
        self.free[p] = False
        self.n_free -= 1
        self.best_val[lp] = math.inf
        self.INC[lp] = math.inf
        return lp

    def _grow_columns(self) -> None:
        cap = self.Q.shape[1]
        if self.n_clusters < cap:
            return
        u = self.Q.shape[0]
        kw = {"dtype": self.Q.dtype, "device": self.Q.device}
        self.Q = torch.cat([self.Q, torch.zeros(u, cap, **kw)], 1)
        self.H = torch.cat([self.H, torch.zeros(u, cap, **kw)], 1)
        self.INC = torch.cat([self.INC, torch.full((u, cap), math.inf, **kw)], 1)

    def _set_column(self, c: int, inc: Tensor) -> None:
        """Store cluster ``c``'s increases and update each point's best cluster."""
        self.INC[:, c] = inc
        on_c = self.best_c == c
        stale = on_c & (inc > self.best_val)  # the best got worse: look at all clusters again
        better = inc < self.best_val
        self.best_val = torch.where(better | (on_c & ~stale), inc, self.best_val)
        self.best_c = torch.where(better, c, self.best_c)
        rows = stale.nonzero().squeeze(1)
        if rows.numel():
            val, arg = self.INC[rows, : self.n_clusters].min(1)
            self.best_val[rows] = val
            self.best_c[rows] = arg

    def open(self, p: int) -> int:
        """Open a new cluster ``{p}``; return its label."""
        lp = self._take(p)
        c = self.n_clusters
        self._grow_columns()
        k = self.K_loc[p]
        buf = torch.empty(4, k.shape[0], dtype=k.dtype, device=k.device)
        buf[0] = k
        self.V.append(buf)
        self.rows.append(1)
        self.sizes.append(1)
        self.mags.append(1.0)
        self.Q[:, c] = k * k
        self.H[:, c] = k
        self.labels[p] = c
        s = 1.0 - k * k
        inc = torch.where(s > self.tol, (1.0 - k) / (1.0 + k), 0.0)
        inc = inc.masked_fill_(~self.free[self.cols], math.inf)
        self.best_val[lp] = math.inf
        self._set_column(c, inc)
        self._maybe_compact()
        return c

    def join(self, p: int, c: int) -> None:
        """Add free point ``p`` to cluster ``c`` (one Schur-complement row)."""
        lp = int(self.local[p])
        s = 1.0 - float(self.Q[lp, c])
        h_p = float(self.H[lp, c])
        self._take(p)
        self.labels[p] = c
        self.sizes[c] += 1
        if s > self.tol:
            m = self.rows[c]
            V = self.V[c]
            if m == V.shape[0]:
                V = torch.cat([V, torch.empty_like(V)], 0)
                self.V[c] = V
            root = math.sqrt(s)
            row = (self.K_loc[p] - V[:m, lp] @ V[:m]) / root
            a = (1.0 - h_p) / root
            V[m] = row
            self.rows[c] = m + 1
            self.mags[c] += a * a
            self.Q[:, c] += row * row
            self.H[:, c] += a * row
        self._set_column(c, self._increase(self.Q[:, c], self.H[:, c]))
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        u = self.cols.shape[0]
        if self.n_free == 0 or 2 * self.n_free > u or u < 64:
            return
        keep = self.free[self.cols].nonzero().squeeze(1)
        self.cols = self.cols[keep]
        self.local[self.cols] = torch.arange(keep.shape[0], device=keep.device)
        self.K_loc = self.K_loc[:, keep]
        self.V = [v[:, keep] for v in self.V]
        self.Q, self.H, self.INC = self.Q[keep], self.H[keep], self.INC[keep]
        self.best_val, self.best_c = self.best_val[keep], self.best_c[keep]


@dataclass
class GreedyResult:
    """One run of Algorithm 4 at one threshold.

    Attributes:
        labels: ``(n,)`` cluster of every point, numbered in order of creation.
        n_clusters: number of clusters (singletons included).
        order: ``(n,)`` global indices in the order the points were assigned.
        increases: ``(n - 1,)`` the smallest increase found in each round.
        same_below: the run is identical for every threshold in ``(same_below, same_above]``.
        same_above: see ``same_below``.
        cluster_magnitudes: ``(n_clusters,)`` ``Mag(c)`` of every cluster (from ``|a_c|^2``).
    """

    labels: Tensor
    n_clusters: int
    order: Tensor
    increases: Tensor
    same_below: float
    same_above: float
    cluster_magnitudes: Tensor


def greedy_clustering(K: Tensor, threshold: float, seed: int) -> GreedyResult:
    """Algorithm 4 of Andreeva et al. (AAAI 2025) on the similarity matrix ``K``.

    Every round takes the free point ``b`` and cluster ``c`` with the smallest increase
    ``Mag(c ∪ {b}) - Mag(c)``; ``b`` joins ``c`` if the increase is ``< threshold``, otherwise
    ``b`` opens a new cluster. ``seed`` is the first cluster's point.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [0.1], [5.0], [5.1]], dtype=torch.float64)
        >>> res = greedy_clustering(torch.exp(-torch.cdist(x, x)), 0.2, seed=0)
        >>> res.labels.tolist(), res.n_clusters
        ([0, 0, 1, 1], 2)
    """
    n = K.shape[0]
    state = GreedyClusterState(K)
    state.open(seed)
    order = [seed]
    incs: list[float] = []
    below, above = -math.inf, math.inf
    for _ in range(n - 1):
        p, val, c = state.best()
        incs.append(val)
        order.append(p)
        if val < threshold:
            below = max(below, val)
            state.join(p, c)
        else:
            above = min(above, val)
            state.open(p)
    kw = {"device": K.device}
    return GreedyResult(
        labels=state.labels,
        n_clusters=state.n_clusters,
        order=torch.tensor(order, dtype=torch.long, **kw),
        increases=torch.tensor(incs, dtype=K.dtype, **kw),
        same_below=below,
        same_above=above,
        cluster_magnitudes=torch.tensor(state.mags, dtype=K.dtype, **kw),
    )
