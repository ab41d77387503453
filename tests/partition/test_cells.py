"""Cells and boundary distances against closed forms and brute-force geometry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from magtorch.errors import MagtorchError
from magtorch.partition import (
    activation_codes,
    assign_cells,
    boundary_distance,
    hidden_layers,
    preactivation_jacobian,
    preactivations,
)
from tests.partition._nets import deep_net, grid, line_net, three_lines

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def test_three_lines_seven_cells_and_analytic_distances():
    net = three_lines()
    cells = assign_cells(activation_codes(net, grid(-2, 3, 201)))
    assert cells.num_cells == 7
    # the missing sign vector: x < 0, y < 0 and x + y > 1 is empty
    assert [0, 0, 0] not in cells.codes.int().tolist()
    g = torch.Generator().manual_seed(1)
    x = 4 * torch.rand(200, 2, generator=g, dtype=torch.float64) - 2
    expected = torch.stack(
        [x[:, 0].abs(), x[:, 1].abs(), (x.sum(1) - 1).abs() / math.sqrt(2)], dim=1
    ).amin(1)
    dist, unit = boundary_distance(net, x, return_unit=True)
    torch.testing.assert_close(dist, expected, rtol=1e-12, atol=1e-14)
    assert dist[0] > 0 and unit.min() >= 0 and unit.max() <= 2


@pytest.mark.parametrize("m, seed", [(3, 0), (5, 1), (7, 2)])
def test_random_lines_general_position_cell_count(m, seed):
    g = torch.Generator().manual_seed(seed)
    # spread directions (jittered) so that the vertices stay in a small box
    jitter = torch.rand(m, generator=g, dtype=torch.float64) / 2
    angle = math.pi * (torch.arange(m, dtype=torch.float64) + jitter) / m
    normal = torch.stack([angle.cos(), angle.sin()], dim=1)
    offset = torch.rand(m, generator=g, dtype=torch.float64) - 0.5
    net = line_net(normal, offset)
    # all vertices, to size a box that meets every cell
    verts = []
    for i in range(m):
        for j in range(i + 1, m):
            a = torch.stack([normal[i], normal[j]])
            verts.append(torch.linalg.solve(a, -torch.stack([offset[i], offset[j]])))
    r = float(torch.stack(verts).abs().max()) + 0.5
    cells = assign_cells(activation_codes(net, grid(-r, r, 1000)))
    assert cells.num_cells == 1 + m + m * (m - 1) // 2


def test_one_hidden_layer_distance_is_hyperplane_distance_in_5d():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 3)).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    w, b = net[0].weight.detach(), net[0].bias.detach()
    expected = ((x @ w.T + b).abs() / w.norm(dim=1)).amin(1)
    torch.testing.assert_close(boundary_distance(net, x, batch_size=7), expected)


def test_deep_distance_is_exact_distance_to_the_convex_cell():
    """Ray casting: each cell is convex, so along a ray from x the code changes once; bisect
    the exit radius along 3600 directions and take the minimum."""
    net = deep_net(widths=(5, 5), seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 2, generator=g, dtype=torch.float64)
    theta = torch.linspace(0, 2 * math.pi, 3601, dtype=torch.float64)[:-1]
    dirs = torch.stack([theta.cos(), theta.sin()], dim=1)
    got = boundary_distance(net, x)
    for i in range(len(x)):
        code = activation_codes(net, x[i : i + 1])
        lo = torch.zeros(len(dirs), dtype=torch.float64)
        hi = torch.full((len(dirs),), 20.0, dtype=torch.float64)
        for _ in range(60):
            mid = (lo + hi) / 2
            inside = (activation_codes(net, x[i] + mid[:, None] * dirs) == code).all(1)
            lo, hi = torch.where(inside, mid, lo), torch.where(inside, hi, mid)
        brute = float(lo.min())
        # angular grid error: at most brute * (1 / cos(pi / 3600) - 1) ~ 4e-7 relative
        assert abs(float(got[i]) - brute) <= 1e-6 * brute + 1e-12


def test_network_is_affine_between_two_points_of_one_cell():
    net = deep_net(widths=(8, 8), seed=5)
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(1, 2, generator=g, dtype=torch.float64)
    step = torch.randn(1, 2, generator=g, dtype=torch.float64)
    step = step / step.norm() * 0.9 * float(boundary_distance(net, x0))
    x1 = x0 + step
    assert torch.equal(activation_codes(net, x0), activation_codes(net, x1))
    lam = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    path = x0 + lam * step
    f0, f1 = net(x0), net(x1)
    torch.testing.assert_close(net(path), (1 - lam) * f0 + lam * f1, rtol=0, atol=1e-12)
    # and not affine across a boundary: extend the step past the boundary a lot
    far = x0 + 50 * step
    mid = net((x0 + far) / 2)
    assert (mid - (net(x0) + net(far)) / 2).abs().item() > 1e-3


def test_rescaling_a_unit_changes_nothing():
    net = deep_net(widths=(6, 5), seed=7)
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    codes, dist = activation_codes(net, x), boundary_distance(net, x)
    out, z = net(x), preactivations(net, x)
    a = torch.tensor([3.0, 0.25, 7.0], dtype=torch.float64)
    units = [1, 4, 2]
    with torch.no_grad():
        for layer, nxt, k, s in ((0, 2, units[0], a[0]), (0, 2, units[1], a[1])):
            net[layer].weight[k] *= s
            net[layer].bias[k] *= s
            net[nxt].weight[:, k] /= s
        net[2].weight[units[2]] *= a[2]
        net[2].bias[units[2]] *= a[2]
        net[4].weight[:, units[2]] /= a[2]
    z2 = preactivations(net, x)
    assert not torch.allclose(z, z2)  # the pre-activations did change ...
    torch.testing.assert_close(z2[:, units[0]], a[0] * z[:, units[0]])
    assert torch.equal(activation_codes(net, x), codes)  # ... the partition did not
    torch.testing.assert_close(net(x), out)
    torch.testing.assert_close(boundary_distance(net, x), dist, rtol=1e-12, atol=1e-14)
    c1, c2 = assign_cells(codes), assign_cells(activation_codes(net, x))
    assert torch.equal(c1.ids, c2.ids) and torch.equal(c1.counts, c2.counts)


def test_jacobian_matches_masked_weight_product_and_jacrev_path():
    net = deep_net(d=3, widths=(4, 2), seed=9)  # d=3 <= H=6: jacfwd
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z, J = preactivation_jacobian(net, x)
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    mask = (z[:, :4] > 0).double()
    expected2 = torch.einsum("ij,nj,jk->nik", w2, mask, w1)
    torch.testing.assert_close(J[:, :4], w1.expand(10, 4, 3))
    torch.testing.assert_close(J[:, 4:], expected2)
    wide = deep_net(d=8, widths=(3,), seed=2)  # d=8 > H=3: jacrev
    xw = torch.randn(5, 8, dtype=torch.float64)
    _, Jw = preactivation_jacobian(wide, xw)
    torch.testing.assert_close(Jw, wide[0].weight.detach().expand(5, 3, 8))


def test_purity_entropy_and_ids():
    codes = torch.tensor([[1, 0], [1, 0], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
    cells = assign_cells(codes, torch.tensor([2, 2, 5, 5, 2]))
    assert cells.codes.int().tolist() == [[0, 0], [0, 1], [1, 0]]
    assert cells.ids.tolist() == [2, 2, 2, 1, 0]
    assert cells.counts.tolist() == [1, 1, 3]
    torch.testing.assert_close(cells.purity, torch.tensor([1.0, 1.0, 2 / 3], dtype=torch.float64))
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    torch.testing.assert_close(cells.entropy, torch.tensor([0.0, 0.0, h], dtype=torch.float64))
    assert cells.majority.tolist() == [2, 5, 2]


def test_named_layers_and_shared_relu():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act = nn.Linear(2, 3), nn.Linear(3, 2), nn.ReLU()

        def forward(self, x):
            return self.act(self.b(self.act(self.a(x))))

    net = Shared().double()
    x = torch.randn(6, 2, dtype=torch.float64)
    z = preactivations(net, x)
    assert z.shape == (6, 5)
    torch.testing.assert_close(z[:, :3], net.a(x))
    assert [n for n, _ in hidden_layers(net, ["act"])] == ["act"]


def test_bad_input_raises():
    net = three_lines()
    with pytest.raises(MagtorchError, match="layers"):
        hidden_layers(net, ["nope"])
    with pytest.raises(MagtorchError, match="nn.ReLU"):
        hidden_layers(nn.Linear(2, 2))
    with pytest.raises(MagtorchError, match="x must"):
        boundary_distance(net, [[0.0, 1.0]])
    with pytest.raises(MagtorchError, match="batch_size"):
        boundary_distance(net, torch.zeros(2, 2, dtype=torch.float64), batch_size=0)
    with pytest.raises(MagtorchError, match="codes"):
        assign_cells(torch.zeros(3, 2))
    with pytest.raises(MagtorchError, match="labels"):
        assign_cells(torch.zeros(3, 2, dtype=torch.bool), torch.zeros(4, dtype=torch.long))


def test_inplace_relu_is_read_before_it_overwrites_its_input():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(inplace=True), nn.Linear(4, 1)).double()
    x = torch.randn(20, 2, dtype=torch.float64)
    w, b = net[0].weight.detach(), net[0].bias.detach()
    torch.testing.assert_close(preactivations(net, x), x @ w.T + b)
    expected = ((x @ w.T + b).abs() / w.norm(dim=1)).amin(1)
    torch.testing.assert_close(boundary_distance(net, x), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    net = deep_net(widths=(6, 5), seed=50)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(51), dtype=torch.float64)
    cpu = boundary_distance(net, x)
    gpu = boundary_distance(net.cuda(), x.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu)
    assert torch.equal(activation_codes(net, x.cuda()).cpu(), activation_codes(net.cpu(), x))
