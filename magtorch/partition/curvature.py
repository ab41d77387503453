r"""Discrete curvature of the adjacency graph of data-containing cells.

The graph has one node per data-containing cell and one edge per pair of adjacent cells
(:mod:`magtorch.partition.adjacency`). Optional *node weights* :math:`w_v` (in the partition
diagnostics: the number of samples in the cell) and *edge weights* :math:`w_e` make the
curvatures data-weighted.

**Forman curvature** (Forman 2003, for a graph as a 1-complex without 2-cells):

.. math::
    F(e) = w_e \Big( \frac{w_u}{w_e} + \frac{w_v}{w_e}
    - \sum_{e' \ni u,\, e' \ne e} \frac{w_u}{\sqrt{w_e w_{e'}}}
    - \sum_{e' \ni v,\, e' \ne e} \frac{w_v}{\sqrt{w_e w_{e'}}} \Big),
    \qquad e = \{u, v\};

with all weights 1 this is :math:`F(e) = 4 - \deg u - \deg v` (complete graph
:math:`K_n`: :math:`6 - 2n`; cycles: 0; the edge from a leaf to the centre of a star with
:math:`m` leaves: :math:`3 - m`). The *data-weighted* variant takes :math:`w_v` = cell counts
and :math:`w_e = 1` unless edge weights are given.

**Ollivier-Ricci curvature** (Ollivier 2009) with data-weighted neighbour measures: each node
:math:`u` carries the probability measure

.. math:: m_u = \alpha\, \delta_u + (1 - \alpha) \sum_{x \sim u} \frac{w_x}{\sum_{y \sim u} w_y}
          \delta_x,

(idleness :math:`\alpha \in [0, 1)`; :math:`w \equiv 1` gives the usual uniform measure), and
an edge gets :math:`\kappa(u, v) = 1 - W_1(m_u, m_v) / d(u, v)` with :math:`d` the hop
distance of the graph (:math:`d(u, v) = 1` on an edge) and :math:`W_1` the Wasserstein-1
distance, solved exactly as a small transport linear programme over the supports (at most
:math:`\deg u + 1` by :math:`\deg v + 1` variables; between support nodes the hop distance is at
most 3, so it is read off the adjacency). Weighting the neighbour measures by the data in the
cells is **our reading of the "statistical Ricci curvature"** of Ravel & Gajer (2025), whose
formulas are not public in a form we can follow. With :math:`\alpha = 0` and :math:`w \equiv 1`:
:math:`K_n` gives :math:`(n-2)/(n-1)`, star leaf edges 0, cycles of length :math:`\ge 4`
give 0. Needs ``scipy`` (imported when called).

A node's curvature (:func:`node_curvature`) is the mean curvature of its edges.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from magtorch.errors import ConvergenceError, MagtorchError

from ._progress import Progress

__all__ = ["forman_curvature", "node_curvature", "ollivier_ricci_curvature"]


def _check_graph(edges: Tensor, num_nodes: int) -> Tensor:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 0:
        raise MagtorchError(f"num_nodes must be an integer >= 0; got {num_nodes!r}")
    edges = torch.as_tensor(edges)
    if edges.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    if edges.dim() != 2 or edges.shape[1] != 2 or edges.is_floating_point():
        raise MagtorchError(f"edges must be an integer tensor (E, 2); got {tuple(edges.shape)}")
    edges = edges.long().cpu()
    if edges.min() < 0 or edges.max() >= num_nodes:
        raise MagtorchError(f"edges must hold node ids in 0..{num_nodes - 1}")
    if (edges[:, 0] == edges[:, 1]).any():
        raise MagtorchError("edges must not hold self-loops")
    key = torch.sort(edges, dim=1).values
    if len(torch.unique(key, dim=0)) != len(key):
        raise MagtorchError("edges must not repeat an (unordered) pair")
    return edges


def _weights(values: Tensor | None, size: int, name: str) -> Tensor:
    if values is None:
        return torch.ones(size, dtype=torch.float64)
    values = torch.as_tensor(values).detach().cpu().to(torch.float64).reshape(-1)
    if values.shape[0] != size or not bool(torch.all(torch.isfinite(values) & (values > 0))):
        raise MagtorchError(f"{name} must be {size} finite positive numbers")
    return values


def forman_curvature(
    edges: Tensor,
    num_nodes: int,
    *,
    node_weights: Tensor | None = None,
    edge_weights: Tensor | None = None,
) -> Tensor:
    """Forman curvature of every edge (formula in the module docstring): ``(E,)`` float64.

    Args:
        edges: ``(E, 2)`` node ids, each unordered pair once.
        num_nodes: the number of nodes.
        node_weights: ``(num_nodes,)`` positive weights (default 1).
        edge_weights: ``(E,)`` positive weights (default 1).

    Example:
        >>> triangle = torch.tensor([[0, 1], [1, 2], [0, 2]])
        >>> forman_curvature(triangle, 3).tolist()  # 6 - 2n with n = 3
        [0.0, 0.0, 0.0]
    """
    edges = _check_graph(edges, num_nodes)
    wv = _weights(node_weights, num_nodes, "node_weights")
    we = _weights(edge_weights, len(edges), "edge_weights")
    if len(edges) == 0:
        return torch.zeros(0, dtype=torch.float64)
    # S[v] = sum over edges at v of 1/sqrt(w_e')
    inv = we.rsqrt()
    s = torch.zeros(num_nodes, dtype=torch.float64)
    s.index_add_(0, edges[:, 0], inv)
    s.index_add_(0, edges[:, 1], inv)
    u, v = edges[:, 0], edges[:, 1]
    # sum over e' != e at u of w_u / sqrt(w_e w_e') = w_u (S[u] - 1/sqrt(w_e)) / sqrt(w_e)
    return we * ((wv[u] + wv[v]) / we - wv[u] * (s[u] - inv) * inv - wv[v] * (s[v] - inv) * inv)


def _neighbours(edges: Tensor, num_nodes: int) -> list[set[int]]:
    nbrs: list[set[int]] = [set() for _ in range(num_nodes)]
    for a, b in edges.tolist():
        nbrs[a].add(b)
        nbrs[b].add(a)
    return nbrs


def ollivier_ricci_curvature(
    edges: Tensor,
    num_nodes: int,
    *,
    node_weights: Tensor | None = None,
    alpha: float = 0.0,
    progress: bool = False,
) -> Tensor:
    r"""Ollivier-Ricci curvature :math:`1 - W_1(m_u, m_v)` of every edge: ``(E,)`` float64.

    The neighbour measures are weighted by ``node_weights`` (our reading of "statistical
    Ricci curvature"; see the module docstring). One exact transport LP per edge (scipy's
    HiGHS); a failed LP raises :class:`~magtorch.errors.ConvergenceError`.

    Args:
        edges: ``(E, 2)`` node ids, each unordered pair once.
        num_nodes: the number of nodes.
        node_weights: ``(num_nodes,)`` positive weights for the neighbour measures (default 1).
        alpha: idleness, the mass :math:`m_u` keeps on :math:`u`, in ``[0, 1)``.
        progress: print progress over the edges.

    Example:
        >>> k4 = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
        >>> ollivier_ricci_curvature(k4, 4)  # (n - 2) / (n - 1)
        tensor([0.6667, 0.6667, 0.6667, 0.6667, 0.6667, 0.6667], dtype=torch.float64)
    """
    try:
        from scipy.optimize import linprog
    except ImportError as err:  # pragma: no cover - scipy ships with the dev extras
        raise ImportError(
            "ollivier_ricci_curvature needs scipy: pip install 'magtorch[partition]'"
        ) from err
    edges = _check_graph(edges, num_nodes)
    w = _weights(node_weights, num_nodes, "node_weights").numpy()
    if not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) < 1.0:
        raise MagtorchError(f"alpha must be a number in [0, 1); got alpha={alpha!r}")
    nbrs = _neighbours(edges, num_nodes)

    def measure(u: int) -> tuple[list[int], np.ndarray]:
        support = sorted(nbrs[u])
        mass = w[support] / w[support].sum() * (1.0 - alpha)
        if alpha > 0:
            return [u, *support], np.concatenate([[alpha], mass])
        return support, mass

    def hop(a: int, b: int) -> float:
        if a == b:
            return 0.0
        if b in nbrs[a]:
            return 1.0
        return 2.0 if nbrs[a] & nbrs[b] else 3.0

    out = np.zeros(len(edges))
    bar = Progress(total=max(len(edges), 1), n=num_nodes, enabled=progress, what="transport LPs")
    for e, (u, v) in enumerate(edges.tolist()):
        su, mu = measure(u)
        sv, mv = measure(v)
        cost = np.array([[hop(a, b) for b in sv] for a in su]).reshape(-1)
        p, q = len(su), len(sv)
        a_eq = np.zeros((p + q, p * q))
        for i in range(p):
            a_eq[i, i * q : (i + 1) * q] = 1.0
        for j in range(q):
            a_eq[p + j, j::q] = 1.0
        res = linprog(
            cost, A_eq=a_eq, b_eq=np.concatenate([mu, mv]), bounds=(0, None), method="highs"
        )
        if res.status != 0:
            raise ConvergenceError(f"transport LP for edge ({u}, {v}) failed: {res.message}")
        out[e] = 1.0 - res.fun
        bar.update(1)
    bar.close()
    return torch.from_numpy(out)


def node_curvature(edges: Tensor, edge_curvature: Tensor, num_nodes: int) -> Tensor:
    """Mean curvature of the edges at each node: ``(num_nodes,)`` (NaN at isolated nodes).

    Example:
        >>> node_curvature(torch.tensor([[0, 1], [1, 2]]), torch.tensor([1.0, 3.0]), 3).tolist()
        [1.0, 2.0, 3.0]
    """
    edges = _check_graph(edges, num_nodes)
    k = torch.as_tensor(edge_curvature).detach().cpu().to(torch.float64).reshape(-1)
    if k.shape[0] != len(edges):
        raise MagtorchError(f"edge_curvature must have {len(edges)} values; got {k.shape[0]}")
    total = torch.zeros(num_nodes, dtype=torch.float64)
    deg = torch.zeros(num_nodes, dtype=torch.float64)
    if len(edges):
        for col in (0, 1):
            total.index_add_(0, edges[:, col], k)
            deg.index_add_(0, edges[:, col], torch.ones_like(k))
    return torch.where(deg > 0, total / deg.clamp_min(1), torch.full_like(total, math.nan))
