"""Small ReLU networks with known partitions, shared by the partition tests."""

from __future__ import annotations

import torch
from torch import nn


def line_net(weight, bias, dtype=torch.float64) -> nn.Sequential:
    """One hidden ReLU layer whose unit ``k`` has the zero set ``weight[k] . x + bias[k] = 0``."""
    weight = torch.as_tensor(weight, dtype=dtype)
    bias = torch.as_tensor(bias, dtype=dtype)
    net = nn.Sequential(
        nn.Linear(weight.shape[1], weight.shape[0]), nn.ReLU(), nn.Linear(weight.shape[0], 1)
    ).to(dtype)
    with torch.no_grad():
        net[0].weight.copy_(weight)
        net[0].bias.copy_(bias)
    return net


def three_lines() -> nn.Sequential:
    """The lines x = 0, y = 0 and x + y = 1 (unit 3 is 1 - x - y)."""
    return line_net([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], [0.0, 0.0, 1.0])


def deep_net(d: int = 2, widths=(6, 6), seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    """A random MLP ``d -> widths -> 1`` with ReLUs."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    prev = d
    for w in widths:
        lin = nn.Linear(prev, w)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(w, prev, generator=g))
            lin.bias.copy_(0.5 * torch.randn(w, generator=g))
        layers += [lin, nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, 1))
    return nn.Sequential(*layers).to(dtype)


def grid(lo: float, hi: float, m: int, dtype=torch.float64) -> torch.Tensor:
    """An ``m x m`` grid on ``[lo, hi]^2``, shifted off round numbers, as ``(m*m, 2)``."""
    t = torch.linspace(lo, hi, m, dtype=dtype) + 1.234567e-4
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def grid_pairs(m: int) -> torch.Tensor:
    """Indices of horizontally and vertically neighbouring points of :func:`grid`."""
    idx = torch.arange(m * m).reshape(m, m)
    right = torch.stack([idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1)], dim=1)
    down = torch.stack([idx[:-1, :].reshape(-1), idx[1:, :].reshape(-1)], dim=1)
    return torch.cat([right, down])
