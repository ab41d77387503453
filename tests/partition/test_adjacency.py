"""Adjacency of cells: one bit apart, the LP facet test and the segment walk."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from magtorch.errors import MagtorchError
from magtorch.partition import (
    activation_codes,
    assign_cells,
    code_adjacency,
    facet_adjacency,
    segment_walk,
)
from tests.partition._nets import deep_net, grid, grid_pairs, line_net, three_lines

pytest.importorskip("scipy")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def _grid_edges(codes: torch.Tensor, ids: torch.Tensor, pairs: torch.Tensor) -> set:
    """Cell pairs met by grid neighbours whose codes differ in exactly one bit."""
    one = (codes[pairs[:, 0]] != codes[pairs[:, 1]]).sum(1) == 1
    a, b = ids[pairs[one, 0]], ids[pairs[one, 1]]
    return {(min(i, j), max(i, j)) for i, j in zip(a.tolist(), b.tolist(), strict=True)}


def test_three_lines_nine_facets_by_every_method():
    net, m = three_lines(), 121
    x = grid(-2, 3, m)
    cells = assign_cells(activation_codes(net, x))
    assert cells.num_cells == 7
    code_edges, units = code_adjacency(cells.codes)
    lp_edges, radius = facet_adjacency(net, x, cells)
    walk = segment_walk(net, x, cells, pairs=grid_pairs(m))
    assert len(code_edges) == len(lp_edges) == len(walk.edges) == 9
    assert torch.equal(code_edges, lp_edges) and torch.equal(code_edges, walk.edges)
    # each line carries three facets
    assert sorted(units.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # in the box (0.6, 2)^2 (x, y > 0 and x + y > 1: one cell) no facet is left
    assert len(facet_adjacency(net, x, cells, bounds=(0.6, 2.0))[0]) == 0
    # in the box (-1, 0.9)^2: x = 0 and y = 0 keep two pieces each (the pieces beyond 1 are
    # outside), x + y = 1 keeps its middle piece only
    assert len(facet_adjacency(net, x, cells, bounds=(-1.0, 0.9))[0]) == 5
    assert (radius > 0).all()


def test_one_bit_apart_is_facet_adjacency_for_one_hidden_layer():
    g = torch.Generator().manual_seed(3)
    net = line_net(torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, generator=g))
    x = 3 * torch.randn(400, 3, generator=g, dtype=torch.float64)
    cells = assign_cells(activation_codes(net, x))
    code_edges, _ = code_adjacency(cells.codes)
    lp_edges, _ = facet_adjacency(net, x, cells)
    assert len(code_edges) > 10
    assert torch.equal(code_edges, lp_edges)


def test_lp_facets_match_a_fine_grid_for_a_deep_net():
    net, m = deep_net(widths=(6, 6), seed=11), 400
    x = grid(-2, 2, m)
    cells = assign_cells(activation_codes(net, x))
    truth = _grid_edges(activation_codes(net, x), cells.ids, grid_pairs(m))
    edges, radius = facet_adjacency(net, x, cells, bounds=(-2.0, 2.0))
    lp = {tuple(e) for e in edges.tolist()}
    code = {tuple(e) for e in code_adjacency(cells.codes)[0].tolist()}
    assert truth <= lp
    # the grid misses only facets too short for its spacing (the LP radius is half the
    # largest facet disc)
    step = 4 / (m - 1)
    missed = [
        r for e, r in zip(edges.tolist(), radius.tolist(), strict=True) if tuple(e) not in truth
    ]
    assert all(r < step for r in missed) and len(missed) <= 0.05 * len(lp)
    assert lp <= code
    assert len(code - lp) > 0  # bent hyperplanes: cells one bit apart that do not meet


def test_walk_counts_crossings_of_known_kinks():
    net = line_net([[1.0], [1.0], [1.0]], [0.0, -1.0, -2.0])  # kinks at 0, 1, 2
    x = torch.tensor([[-0.5], [0.5], [1.5], [2.5]], dtype=torch.float64)
    walk = segment_walk(net, x, pairs=torch.tensor([[0, 3], [1, 2], [2, 1], [0, 1], [1, 1]]))
    assert walk.crossings.tolist() == [3, 1, 1, 1, 0]
    # nearest neighbours: 0 -> 1, 1 -> 0 (tie with 2: the first), 2 -> 1, 3 -> 2
    default = segment_walk(net, x)
    assert default.pairs[:, 1].tolist() == [1, 0, 1, 2]
    assert default.crossings.tolist() == [1, 1, 1, 1]
    assert default.edges.tolist() == [[0, 1], [1, 2], [2, 3]]


def test_walk_matches_dense_sampling_on_a_deep_net():
    net = deep_net(widths=(8, 8), seed=12)
    g = torch.Generator().manual_seed(13)
    x = 2 * torch.randn(30, 2, generator=g, dtype=torch.float64)
    pairs = torch.stack([torch.arange(30), torch.randperm(30, generator=g)], dim=1)
    walk = segment_walk(net, x, pairs=pairs)
    s = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]
    for p, (i, j) in enumerate(pairs.tolist()):
        codes = activation_codes(net, x[i] + s * (x[j] - x[i]))
        changes = int((codes[1:] != codes[:-1]).any(1).sum())
        assert walk.crossings[p].item() == changes
    assert walk.crossings.sum() > 30


def test_walk_in_float32_and_lower_bound_warning():
    net = deep_net(widths=(8, 8), seed=12, dtype=torch.float32)
    x = 2 * torch.randn(20, 2, generator=torch.Generator().manual_seed(13))
    x64 = x.double()
    walk32 = segment_walk(net, x)
    walk64 = segment_walk(net.double(), x64)
    assert torch.equal(walk32.crossings, walk64.crossings)
    from magtorch.errors import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="max_steps"):
        short = segment_walk(net, x64, max_steps=1)
    assert (short.crossings <= walk64.crossings).all()


def test_code_adjacency_by_hand_and_errors():
    codes = torch.tensor([[0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    edges, units = code_adjacency(codes, chunk=1)
    assert edges.tolist() == [[0, 2], [1, 2]]
    assert units.tolist() == [0, 1]
    with pytest.raises(MagtorchError, match="codes"):
        code_adjacency(torch.zeros(3, 2))
    net = three_lines()
    x = grid(-1, 1, 5)
    cells = assign_cells(activation_codes(net, x))
    with pytest.raises(MagtorchError, match="cells"):
        facet_adjacency(net, x[:3], cells)
    with pytest.raises(MagtorchError, match="bounds"):
        facet_adjacency(net, x, cells, bounds=(1.0, 0.0))
    with pytest.raises(MagtorchError, match="pairs"):
        segment_walk(net, x, pairs=torch.tensor([[0, 99]]))
    with pytest.raises(MagtorchError, match="eps"):
        segment_walk(net, x, eps=0.0)
    assert isinstance(net[1], nn.ReLU)
