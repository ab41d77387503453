"""partition_summary: every entry against the functions it wraps or a closed form."""

from __future__ import annotations

import math

import pytest
import torch

from magtorch.errors import MagtorchError
from magtorch.partition import (
    activation_codes,
    assign_cells,
    boundary_distance,
    code_adjacency,
    forman_curvature,
    ollivier_ricci_curvature,
    partition_summary,
    segment_walk,
    summary_scalars,
)
from tests.partition._nets import deep_net, grid, three_lines

pytest.importorskip("scipy")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def test_three_lines_summary():
    net = three_lines()
    x = grid(-2, 3, 41)
    y = (x[:, 0] > 0).long()
    s = partition_summary(net, x, y)
    assert s["num_cells"] == 7.0 and s["num_edges"] == 9.0 and s["num_units"] == 3.0
    assert s["mean_degree"] == pytest.approx(18 / 7)
    # cells x > 0 ... are pure for the label x > 0: cells are split by the line x = 0
    assert s["mean_purity"] == 1.0 and s["mean_label_entropy"] == 0.0
    # the graph is the 3-cube minus the vertex (0, 0, 0): its 3 neighbours have degree 2, the
    # other 4 cells degree 3; 6 edges 2-3 (Forman 4 - 2 - 3 = -1), 3 edges 3-3 (-2)
    assert sorted(s["forman"].tolist()) == [-2.0] * 3 + [-1.0] * 6
    expected_dist = torch.stack(
        [x[:, 0].abs(), x[:, 1].abs(), (x.sum(1) - 1).abs() / math.sqrt(2)], dim=1
    ).amin(1)
    torch.testing.assert_close(s["boundary_distance"], expected_dist)
    assert s["boundary_mean"] == pytest.approx(float(expected_dist.mean()))


def test_summary_equals_direct_calls_on_a_deep_net():
    net = deep_net(widths=(5, 4), seed=40)
    g = torch.Generator().manual_seed(41)
    x = torch.randn(80, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (80,), generator=g)
    net.train()
    s = partition_summary(net, x, y, alpha=0.25)
    assert net.training  # mode restored
    cells = assign_cells(activation_codes(net, x), y)
    assert torch.equal(s["cell_id"], cells.ids) and torch.equal(s["cell_counts"], cells.counts)
    assert s["num_cells"] == cells.num_cells
    assert s["frac_singleton"] == pytest.approx(
        float((cells.counts[cells.ids] == 1).float().mean())
    )
    assert s["mean_purity"] == pytest.approx(float(cells.purity[cells.ids].mean()))
    torch.testing.assert_close(s["boundary_distance"], boundary_distance(net, x))
    edges = code_adjacency(cells.codes)[0]
    assert torch.equal(s["edges"], edges)
    counts = cells.counts.double()
    torch.testing.assert_close(s["forman"], forman_curvature(edges, cells.num_cells))
    torch.testing.assert_close(
        s["forman_weighted"], forman_curvature(edges, cells.num_cells, node_weights=counts)
    )
    oll = ollivier_ricci_curvature(edges, cells.num_cells, node_weights=counts, alpha=0.25)
    torch.testing.assert_close(s["ollivier"], oll)
    assert s["ollivier_mean"] == pytest.approx(float(oll.mean()))
    walk = segment_walk(net, x, cells)
    assert torch.equal(s["cells_crossed"], walk.crossings)
    assert s["crossings_mean"] == pytest.approx(float(walk.crossings.double().mean()))
    scalars = summary_scalars(s)
    assert all(isinstance(v, float) for v in scalars.values()) and "cell_id" not in scalars
    walk_s = partition_summary(net, x, y, adjacency="walk", curvature=False)
    assert torch.equal(walk_s["edges"], walk.edges) and "forman" not in walk_s


def test_summary_errors():
    with pytest.raises(MagtorchError, match="adjacency"):
        partition_summary(three_lines(), grid(-1, 1, 4), adjacency="bits")
    with pytest.raises(MagtorchError, match="walk"):
        partition_summary(three_lines(), grid(-1, 1, 4), adjacency="walk", walk=False)
