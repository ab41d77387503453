"""The boundary-margin regulariser: value, finite-difference gradients, effect in training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from magtorch.errors import MagtorchError
from magtorch.partition import BoundaryMarginRegularizer, boundary_distance, boundary_penalty
from tests.partition._nets import deep_net, three_lines

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def test_value_from_closed_form_distances():
    net = three_lines()
    x = torch.tensor([[0.1, 2.0], [-0.3, -0.05], [0.4, 0.4]], dtype=torch.float64)
    # distances: min(|x|, |y|, |x + y - 1| / sqrt 2)
    d = torch.tensor([0.1, 0.05, 0.2 / 2**0.5], dtype=torch.float64)
    mu = 0.2
    expected = torch.relu(mu - d).square().mean()
    torch.testing.assert_close(boundary_penalty(net, x, mu), expected)
    # "all": unit by unit; point 0: |x| = 0.1, |y| = 2, |1.1| / sqrt 2 -> only 0.1 counts
    per_unit = torch.stack([x[:, 0].abs(), x[:, 1].abs(), (x.sum(1) - 1).abs() / 2**0.5], dim=1)
    expected_all = torch.relu(mu - per_unit).square().sum(1).mean()
    torch.testing.assert_close(boundary_penalty(net, x, mu, units="all"), expected_all)


def _fd_check(net, x, mu, units, params=8, h=1e-6):
    net.zero_grad()
    boundary_penalty(net, x, mu, units=units).backward()
    g = torch.Generator().manual_seed(0)
    checked = 0
    for p in net.parameters():
        if p.grad is None:
            continue
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in torch.randperm(flat.numel(), generator=g)[:params].tolist():
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + h
                up = boundary_penalty(net, x, mu, units=units).item()
                flat[i] = old - h
                down = boundary_penalty(net, x, mu, units=units).item()
                flat[i] = old
            fd = (up - down) / (2 * h)
            assert grad[i].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)
            checked += abs(fd) > 1e-6
    assert checked >= 4  # the check is not vacuous


@pytest.mark.parametrize("units", ["min", "all"])
@pytest.mark.parametrize("widths", [(7,), (6, 5)])
def test_gradient_matches_finite_differences(units, widths):
    net = deep_net(widths=widths, seed=21)
    x = torch.randn(25, 2, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    mu = 2.0 * float(boundary_distance(net, x).median())
    _fd_check(net, x, mu, units)


def test_gradient_with_respect_to_inputs():
    net = deep_net(widths=(6, 5), seed=23)
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(24), dtype=torch.float64)
    mu = 2.0 * float(boundary_distance(net, x).median())
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(boundary_penalty(net, x, mu), x)
    h = 1e-6
    for i, j in [(0, 0), (3, 1), (7, 0), (9, 1)]:
        e = torch.zeros_like(x)
        e[i, j] = h
        with torch.no_grad():
            fd = (boundary_penalty(net, x + e, mu) - boundary_penalty(net, x - e, mu)) / (2 * h)
        assert grad[i, j].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)


def test_invariant_under_unit_rescaling():
    net = deep_net(widths=(6, 5), seed=25)
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(26), dtype=torch.float64)
    before = boundary_penalty(net, x, 0.3, units="all")
    with torch.no_grad():
        net[0].weight[2] *= 5.0
        net[0].bias[2] *= 5.0
        net[2].weight[:, 2] /= 5.0
    torch.testing.assert_close(boundary_penalty(net, x, 0.3, units="all"), before)


def test_training_with_the_regulariser_increases_boundary_distance():
    """Two runs from the same initialisation on 2-D blobs: cross-entropy alone, and with the
    regulariser. The regularised run ends with a larger mean boundary distance."""
    g = torch.Generator().manual_seed(30)
    y = torch.arange(120) % 2
    x = torch.randn(120, 2, generator=g) * 0.7 + torch.tensor([[-1.0, 0.0], [1.0, 0.0]])[y]

    def run(weight: float) -> tuple[float, float, float]:
        torch.manual_seed(31)
        net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        net.append(nn.Linear(16, 2))
        start = float(boundary_distance(net, x).mean())
        reg = BoundaryMarginRegularizer(margin=0.5, weight=weight)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            if weight:
                loss = loss + reg(net, x)
            loss.backward()
            opt.step()
        acc = float((net(x).argmax(1) == y).float().mean())
        return start, float(boundary_distance(net, x).mean()), acc

    start, plain, plain_acc = run(0.0)
    start_reg, regular, reg_acc = run(10.0)
    assert start == start_reg
    assert regular > 1.5 * plain
    assert regular > start
    assert reg_acc > 0.85 and plain_acc > 0.85  # and the classifier still learns


def test_bad_arguments():
    with pytest.raises(MagtorchError, match="margin"):
        BoundaryMarginRegularizer(margin=0.0)
    with pytest.raises(MagtorchError, match="weight"):
        BoundaryMarginRegularizer(margin=1.0, weight=-1.0)
    with pytest.raises(MagtorchError, match="units"):
        boundary_penalty(three_lines(), torch.zeros(2, 2, dtype=torch.float64), 1.0, units="max")


def test_units_with_zero_gradient_give_finite_gradients():
    """All first-layer units dead: the second layer's gradients vanish; no NaN may appear."""
    net = deep_net(widths=(3, 2), seed=27)
    with torch.no_grad():
        net[0].bias.fill_(-100.0)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(28), dtype=torch.float64)
    penalty = boundary_penalty(net, x, 400.0, units="all")
    penalty.backward()
    assert penalty > 0
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
