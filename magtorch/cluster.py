r"""Magnitude clustering (Andreeva et al., AAAI 2025, Algorithm 4), scikit-learn style.

The data are first scaled so that the mean pairwise distance (over pairs ``i != j``) is 1, and
magnitude is taken at scale ``t`` (the paper: ``t = 1``) of the scaled data. Then:

1. The first cluster is ``{a}`` for a seed point ``a`` (``init``; see below).
2. Every round takes the unassigned point ``b`` and the cluster ``c`` with the smallest increase
   ``Δ(b, c) = Mag(c ∪ {b}) - Mag(c)``. If ``Δ(b, c) < threshold``, ``b`` joins ``c``;
   otherwise ``b`` opens a new cluster ``{b}``. So, as in the paper, **the seed of every later
   cluster is the unassigned point whose best increase is smallest** (the point nearest, in the
   magnitude sense, to the clusters so far), not a random or densest point.
3. Stop when every point is assigned. Labels are numbered in order of creation.

Increases come from the one-point extension (Schur complement, DESIGN.md §1),
``Δ(b, c) = (1 - h_c(b))^2 / (1 - k_b^T Z_c^{-1} k_b)`` with ``h_c(b) = k_b^T Z_c^{-1} 1``,
both kept for every (point, cluster) pair and updated by one rank-one step per assignment
(:mod:`magtorch._greedy_clusters`): no linear system is ever solved.

Choices the paper leaves open (documented here, tested in tests/test_cluster.py):

* the first seed: the paper picks a random point; ``init="density"`` (default) takes the point
  of largest kernel density ``Σ_j exp(-t d_ij)`` at the clustering scale (lowest index on
  ties), which makes the result deterministic and independent of the order of the points;
  ``init="random"`` is the paper's rule (``random_state``).
* the comparison is strict: a point joins iff ``Δ < threshold`` (Algorithm 4's ``if increase <
  t``, read as the *best* increase of the round).
* ties between (point, cluster) pairs go to the lowest point position, then the lowest label.
* duplicates (Schur complement ``1 - k^T Z^{-1} k <= 1e-10``) have increase 0 and join the
  cluster of their twin: sets are multisets (DESIGN.md).
* outliers: a point far from everything has an increase near ``tanh(t d / 2) -> 1`` and, for
  any threshold below that, becomes a **singleton cluster** of its own (there is no noise
  label as in DBSCAN); singletons count in ``n_clusters_``.

Automatic threshold (``threshold=None``): the paper's "most persistent cluster count". One run
with ``threshold = inf`` (everything in one cluster) gives ``M``, the largest round minimum on
that run; every threshold ``> M`` gives one cluster. The sweep runs the grid
``θ_i = M i / T``, ``i = 1..T`` (``n_thresholds = T``; or the given ``thresholds``), counts the
clusters at each, and picks the **longest run of consecutive grid thresholds with the same
count** (ties: the smaller count), ignoring the trivial count "every distinct point alone"
(unless nothing else occurs). The chosen threshold is the middle grid value of that run.
A run is exactly reproduced by every threshold in ``(max joining Δ, min opening Δ]`` of its
rounds, so grid values inside an earlier run's interval reuse it without re-running
(``sweep_.n_runs`` counts the real runs). With the default grid one cluster is never chosen
(its thresholds ``> M`` lie outside the grid): data without cluster structure still get ``>= 2``
(unless all points coincide).

Cost: distances and ``K = exp(-t D)`` ``O(n^2 d)``; a round that adds a point to a cluster of
``m`` members with ``u`` points unassigned costs ``O(m u)`` (one matrix-vector product with the
whitened factor, columns compacted as points are assigned) plus ``O(u)`` to refresh each
point's best cluster (``O(r C)`` for the ``r`` points whose best cluster got worse). Total
``O(Σ_rounds m u) <= O(n^3 / 6)`` (one cluster; ``k`` balanced clusters about ``k^2`` times
less) and ``O(n^2)`` memory, against ``O(n^5)``-ish for re-solving every candidate pair.
On CPU the loop runs single-threaded (its kernels are small; OpenMP fan-out costs more than it
gains, and far more on a loaded machine), restoring torch's thread count afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._greedy_clusters import GreedyResult, greedy_clustering
from ._threads import cpu_single_thread
from ._validation import check_finite, check_metric, check_points, check_positive_int
from .errors import MagtorchError
from .pairwise import check_distance_matrix, distances

__all__ = ["MagnitudeClustering", "ThresholdSweep"]

INITS = ("density", "random")


@dataclass
class ThresholdSweep:
    """The automatic threshold search of :class:`MagnitudeClustering`.

    Attributes:
        thresholds: ``(T,)`` increasing thresholds that were evaluated.
        n_clusters: ``(T,)`` cluster count at each threshold.
        labels: ``(T, n)`` labels at each threshold (CPU int64).
        run_length: ``(T,)`` length of the maximal run of consecutive thresholds with the same
            count that contains each threshold (the persistence of that count there).
        best_index: index of the chosen threshold (middle of the longest run).
        max_increase: ``M``, the largest round minimum of the one-cluster run (``nan`` when the
            grid was given).
        n_runs: clustering runs actually executed (the others were certified identical).
    """

    thresholds: Tensor
    n_clusters: Tensor
    labels: Tensor
    run_length: Tensor
    best_index: int
    max_increase: float
    n_runs: int


def _check_threshold(value: Any, name: str = "threshold") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise MagtorchError(f"{name} must be a positive number or None; got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise MagtorchError(f"{name} must be finite and > 0 (or None); got {value!r}")
    return value


def _check_thresholds(values: Any) -> Tensor | None:
    if values is None:
        return None
    try:
        grid = torch.as_tensor(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise MagtorchError(
            f"thresholds must be a 1-d sequence of numbers; got {values!r}"
        ) from err
    if grid.dim() != 1 or grid.numel() < 1:
        raise MagtorchError(f"thresholds must be a non-empty 1-d sequence; got shape {grid.shape}")
    if not bool((torch.isfinite(grid) & (grid > 0)).all()):
        raise MagtorchError(f"thresholds must be finite and > 0; got {grid.tolist()}")
    return torch.unique(grid)  # sorted, without repeats


def _as_tensor(X: Any, dtype: torch.dtype) -> Tensor:
    if isinstance(X, Tensor):
        return X.detach().to(dtype)
    try:
        return torch.as_tensor(np.asarray(X, dtype=np.float64)).to(dtype)
    except (TypeError, ValueError) as err:
        raise MagtorchError(
            f"X must be a tensor or array of shape (n, d); got {type(X).__name__}"
        ) from err


class MagnitudeClustering:
    """Magnitude clustering: grow clusters while a point raises a cluster's magnitude little.

    See the module docstring for the algorithm, the choices it makes and its cost.

    Args:
        threshold: join a cluster iff the increase ``Mag(c ∪ {b}) - Mag(c)`` is below it;
            ``None`` chooses it by the persistence sweep. Increases lie in ``[0, 1)`` for two
            points (``tanh(t d / 2)``) and rarely exceed 1 in low dimension.
        t: scale of the magnitude, applied after scaling to mean pairwise distance 1.
        metric: ``"euclidean"``, ``"l1"``, ``"cosine"`` or ``"precomputed"`` (``X`` is then an
            ``(n, n)`` distance matrix; ``Z`` may be indefinite there and the increases are
            then only formal).
        thresholds: explicit sweep grid (``threshold=None`` only); default ``M i / T``.
        n_thresholds: ``T``, size of the default grid.
        init: first seed, ``"density"`` (deterministic) or ``"random"`` (the paper's).
        random_state: seed of ``init="random"``.
        dtype: working precision (float64 recommended: ``Z`` of a tight cluster is ill
            conditioned).

    Attributes:
        labels_: ``(n,)`` cluster labels ``0..n_clusters_-1`` in order of creation (a numpy
            array for array input, else a tensor on ``X``'s device).
        n_clusters_: number of clusters, singletons included.
        threshold_: the threshold used.
        scale_: the mean pairwise distance the data were divided by.
        seed_: index of the first cluster's seed point.
        order_: ``(n,)`` the order in which points were assigned.
        increases_: ``(n - 1,)`` the smallest increase of every round.
        cluster_magnitudes_: ``(n_clusters_,)`` ``Mag(t c)`` of every cluster.
        sweep_: :class:`ThresholdSweep` when the threshold was automatic, else ``None``.

    Example:
        >>> import torch
        >>> from magtorch.cluster import MagnitudeClustering
        >>> g = torch.Generator().manual_seed(0)
        >>> centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
        >>> x = (centres[:, None] + 0.3 * torch.randn(3, 20, 2, generator=g)).reshape(60, 2)
        >>> model = MagnitudeClustering().fit(x)
        >>> model.n_clusters_, model.labels_.bincount().tolist()
        (3, [20, 20, 20])
        >>> MagnitudeClustering(threshold=0.2).fit_predict(x).unique().numel()
        3
    """

    def __init__(
        self,
        threshold: float | None = None,
        t: float = 1.0,
        metric: str = "euclidean",
        thresholds: Sequence[float] | Tensor | np.ndarray | None = None,
        *,
        n_thresholds: int = 40,
        init: str = "density",
        random_state: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.threshold = _check_threshold(threshold)
        self.t = _check_threshold(t, "t")
        self.metric = check_metric(metric)
        self.thresholds = _check_thresholds(thresholds)
        if self.thresholds is not None and self.threshold is not None:
            raise MagtorchError("give threshold or thresholds (a sweep grid), not both")
        self.n_thresholds = check_positive_int(n_thresholds, "n_thresholds", minimum=2)
        if init not in INITS:
            raise MagtorchError(f"init must be one of {INITS}; got {init!r}")
        self.init = init
        self.random_state = random_state
        if dtype not in (torch.float32, torch.float64):
            raise MagtorchError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
        self.dtype = dtype

    def __repr__(self) -> str:
        return (
            f"MagnitudeClustering(threshold={self.threshold}, t={self.t}, "
            f"metric={self.metric!r}, init={self.init!r})"
        )

    # ------------------------------------------------------------------ helpers

    def _similarity(self, X: Tensor) -> Tensor:
        """``exp(-t D / mean(D))`` over the points (``(n, n)``); sets ``scale_``."""
        if X.dim() != 2:
            what = "(n, n) distances" if self.metric == "precomputed" else "(n, d) points"
            raise MagtorchError(f"X must have shape {what}; got shape {tuple(X.shape)}")
        if self.metric == "precomputed":
            D = check_distance_matrix(X, "X")
        else:
            X = check_points(X, "X")
            check_finite(X, "X")
            D = distances(X, X, self.metric)
        D = D.to(self.dtype)
        n = D.shape[0]
        mean = float(D.sum()) / (n * (n - 1)) if n > 1 else 0.0
        self.scale_ = mean
        later_twin = (D == 0).triu(1).any(0)  # j equals some i < j
        self._n_distinct = n - int(later_twin.sum())
        if mean > 0:
            D = D / mean
        return torch.exp(-self.t * D)

    def _seed(self, K: Tensor) -> int:
        if self.init == "random":
            gen = np.random.default_rng(self.random_state)
            return int(gen.integers(K.shape[0]))
        density = K.sum(1)
        return int(torch.nonzero(density == density.max())[0, 0])

    def _sweep(self, K: Tensor, seed: int) -> tuple[ThresholdSweep, GreedyResult]:
        runs: list[GreedyResult] = []
        grid = self.thresholds
        max_increase = math.nan
        if grid is None:
            top = greedy_clustering(K, math.inf, seed)
            runs.append(top)
            # every increase 0 (one point, or all points equal): any grid gives one cluster
            max_increase = top.same_below if top.same_below > 0 else 1.0
            T = self.n_thresholds
            grid = max_increase * torch.arange(1, T + 1, dtype=torch.float64) / T
        chosen: list[GreedyResult] = []
        for theta in grid.tolist():
            hit = next((r for r in runs if r.same_below < theta <= r.same_above), None)
            if hit is None:
                hit = greedy_clustering(K, theta, seed)
                runs.append(hit)
            chosen.append(hit)
        counts = torch.tensor([r.n_clusters for r in chosen])
        run_length, best = _persistence(counts, exclude=self._n_distinct)
        sweep = ThresholdSweep(
            thresholds=grid,
            n_clusters=counts,
            labels=torch.stack([r.labels.cpu() for r in chosen]),
            run_length=run_length,
            best_index=best,
            max_increase=max_increase,
            n_runs=len(runs),
        )
        return sweep, chosen[best]

    # ------------------------------------------------------------------ API

    def fit(self, X: Tensor | np.ndarray, y: Any = None) -> MagnitudeClustering:
        """Cluster ``X`` (``(n, d)`` points, or ``(n, n)`` distances with ``"precomputed"``).

        Args:
            X: the data; a tensor keeps its device, an array is converted.
            y: ignored (scikit-learn signature).

        Returns:
            ``self``, fitted.
        """
        as_numpy = not isinstance(X, Tensor)
        Xt = _as_tensor(X, self.dtype)
        K = self._similarity(Xt)
        seed = self._seed(K)
        with cpu_single_thread(K.device):
            if self.threshold is None:
                self.sweep_, result = self._sweep(K, seed)
                self.threshold_ = float(self.sweep_.thresholds[self.sweep_.best_index])
            else:
                self.sweep_ = None
                result = greedy_clustering(K, self.threshold, seed)
                self.threshold_ = self.threshold
        self.seed_ = seed
        self.n_clusters_ = result.n_clusters
        self.order_ = result.order
        self.increases_ = result.increases
        self.cluster_magnitudes_ = result.cluster_magnitudes
        self.labels_ = result.labels.cpu().numpy() if as_numpy else result.labels
        return self

    def fit_predict(self, X: Tensor | np.ndarray, y: Any = None) -> Tensor | np.ndarray:
        """``fit(X).labels_``."""
        return self.fit(X).labels_


def _persistence(counts: Tensor, exclude: int | None = None) -> tuple[Tensor, int]:
    """Run length of equal consecutive counts at every position, and the chosen index.

    The chosen index is the middle of the longest run; ties go to the smaller count. Runs of
    the count ``exclude`` (every distinct point alone) are skipped unless nothing else is left.

    Example:
        >>> _persistence(torch.tensor([5, 4, 4, 3, 3, 3, 2, 2, 2]))
        (tensor([1, 2, 2, 3, 3, 3, 3, 3, 3]), 7)
        >>> _persistence(torch.tensor([9, 9, 9, 9, 3, 3, 2]), exclude=9)[1]
        4
    """
    T = counts.numel()
    lengths = torch.zeros(T, dtype=torch.long)
    spans: list[tuple[int, int, int]] = []  # (start, stop, count)
    start = 0
    for i in range(1, T + 1):
        if i == T or counts[i] != counts[start]:
            lengths[start:i] = i - start
            spans.append((start, i, int(counts[start])))
            start = i
    kept = [sp for sp in spans if sp[2] != exclude] or spans
    s, e, _ = max(kept, key=lambda sp: (sp[1] - sp[0], -sp[2]))
    return lengths, (s + e - 1) // 2
