"""Forman and Ollivier-Ricci curvature against closed forms on standard graphs."""

from __future__ import annotations

import itertools

import pytest
import torch

from magtorch.errors import MagtorchError
from magtorch.partition import forman_curvature, node_curvature, ollivier_ricci_curvature

pytest.importorskip("scipy")


def complete(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.combinations(range(n), 2)))


def cycle(n: int) -> torch.Tensor:
    return torch.tensor([[i, (i + 1) % n] for i in range(n)])


def star(m: int) -> torch.Tensor:
    return torch.tensor([[0, i] for i in range(1, m + 1)])


def full(value: float, size: int) -> torch.Tensor:
    return torch.full((size,), float(value), dtype=torch.float64)


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_complete_graph(n):
    e = complete(n)
    torch.testing.assert_close(forman_curvature(e, n), full(6 - 2 * n, len(e)))
    torch.testing.assert_close(ollivier_ricci_curvature(e, n), full((n - 2) / (n - 1), len(e)))


@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.6])
def test_complete_graph_with_idleness(alpha):
    """Distances are all 1, so W1 = total variation and kappa = sum of min(m_u, m_v)."""
    n = 5
    e = complete(n)
    share = (1 - alpha) / (n - 1)
    expected = (n - 2) * share + 2 * min(alpha, share)
    torch.testing.assert_close(ollivier_ricci_curvature(e, n, alpha=alpha), full(expected, len(e)))


def test_complete_graph_with_data_weights():
    """kappa(u, v) = (W - w_u - w_v) / (W - min(w_u, w_v)) for neighbour measures w / sum."""
    n = 5
    w = torch.tensor([1.0, 2.0, 5.0, 3.0, 0.5], dtype=torch.float64)
    e = complete(n)
    total = w.sum()
    expected = torch.stack(
        [(total - w[u] - w[v]) / (total - torch.minimum(w[u], w[v])) for u, v in e.tolist()]
    )
    got = ollivier_ricci_curvature(e, n, node_weights=w)
    torch.testing.assert_close(got, expected)
    assert got.std() > 0.01  # the weights matter


@pytest.mark.parametrize("n", [4, 5, 6, 9])
def test_cycles(n):
    e = cycle(n)
    torch.testing.assert_close(forman_curvature(e, n), full(0, n))
    # uniform neighbour measures without idleness: each of u's two neighbours moves one step
    # to one of v's, W1 = 1 (the triangle, K_3, gives 1/2 instead)
    torch.testing.assert_close(ollivier_ricci_curvature(e, n), full(0, n))
    assert ollivier_ricci_curvature(cycle(3), 3)[0].item() == pytest.approx(0.5)


@pytest.mark.parametrize("m", [2, 3, 6])
def test_star_leaf_edges(m):
    e = star(m)
    # Ollivier-Ricci: m_leaf = delta_centre, m_centre uniform on leaves at distance 1: kappa 0
    torch.testing.assert_close(ollivier_ricci_curvature(e, m + 1), full(0, m))
    # Forman: 4 - deg(leaf) - deg(centre) = 3 - m (zero only for m = 3)
    torch.testing.assert_close(forman_curvature(e, m + 1), full(3 - m, m))


def test_weighted_forman_by_hand():
    # path 0 - 1 - 2 with node weights (2, 3, 5) and edge weights (4, 9)
    e = torch.tensor([[0, 1], [1, 2]])
    wv = torch.tensor([2.0, 3.0, 5.0])
    we = torch.tensor([4.0, 9.0])
    # F(01) = 4 (2/4 + 3/4 - 3/sqrt(4*9)) = 4 (5/4 - 1/2) = 3
    # F(12) = 9 (3/9 + 5/9 - 3/sqrt(9*4)) = 9 (8/9 - 1/2) = 3.5
    got = forman_curvature(e, 3, node_weights=wv, edge_weights=we)
    torch.testing.assert_close(got, torch.tensor([3.0, 3.5], dtype=torch.float64))
    # equal node weights a and equal edge weights: a (4 - deg u - deg v)
    k5 = complete(5)
    got = forman_curvature(k5, 5, node_weights=full(2.5, 5), edge_weights=full(7.0, 10))
    torch.testing.assert_close(got, full(2.5 * (6 - 10), 10))


def test_node_curvature_and_isolated_nodes():
    e = torch.tensor([[0, 1], [1, 2]])
    k = node_curvature(e, torch.tensor([1.0, 3.0]), 4)
    assert k[:3].tolist() == [1.0, 2.0, 3.0] and torch.isnan(k[3])
    assert forman_curvature(torch.zeros(0, 2, dtype=torch.long), 3).numel() == 0
    assert ollivier_ricci_curvature(torch.zeros(0, 2, dtype=torch.long), 3).numel() == 0


def test_bad_graphs_raise():
    with pytest.raises(MagtorchError, match="self-loops"):
        forman_curvature(torch.tensor([[0, 0]]), 2)
    with pytest.raises(MagtorchError, match="repeat"):
        forman_curvature(torch.tensor([[0, 1], [1, 0]]), 2)
    with pytest.raises(MagtorchError, match="node ids"):
        forman_curvature(torch.tensor([[0, 5]]), 2)
    with pytest.raises(MagtorchError, match="node_weights"):
        forman_curvature(torch.tensor([[0, 1]]), 2, node_weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(MagtorchError, match="alpha"):
        ollivier_ricci_curvature(torch.tensor([[0, 1]]), 2, alpha=1.0)
    with pytest.raises(MagtorchError, match="num_nodes"):
        ollivier_ricci_curvature(torch.tensor([[0, 1]]), -1)
