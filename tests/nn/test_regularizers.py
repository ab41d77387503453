"""Tests for magtorch.nn.regularizers.WeightMagnitudeRegularizer (a shell over the function).

Reference numbers come from independent float64 dense solves (tests._reference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from magtorch.errors import MagtorchError
from magtorch.nn.regularizers import WeightMagnitudeRegularizer
from tests._reference import assert_close, ref_magnitude


def ref_line_magnitude(values, t: float) -> float:
    u = np.unique(np.asarray(values, dtype=np.float64))
    return float(ref_magnitude(u[:, None], t))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def all_weights(net: nn.Module) -> np.ndarray:
    return np.concatenate(
        [net[0].weight.detach().numpy().ravel(), net[2].weight.detach().numpy().ravel()]
    )


def test_scalar_penalty_matches_dense_reference_and_trains_down() -> None:
    net = mlp()
    reg = WeightMagnitudeRegularizer(t=4.0)
    before = ref_line_magnitude(all_weights(net), 4.0)
    penalty = reg(net)
    assert penalty.shape == ()
    assert_close(penalty, before, rtol=1e-10)
    penalty.backward()
    assert net[0].bias.grad is None and net[2].bias.grad is None
    with torch.no_grad():
        for p in (net[0].weight, net[2].weight):
            p -= 0.01 * p.grad
    assert ref_line_magnitude(all_weights(net), 4.0) < before - 1e-3


def test_per_layer_mean_many_scales_and_neurons_mode() -> None:
    net = mlp()
    ts = [0.5, 3.0]
    reg = WeightMagnitudeRegularizer(t=torch.tensor(ts), per_layer=True, reduction="mean")
    w0 = net[0].weight.detach().numpy().ravel()
    w2 = net[2].weight.detach().numpy().ravel()
    expected = [(ref_line_magnitude(w0, t) + ref_line_magnitude(w2, t)) / 2 for t in ts]
    assert_close(reg(net), expected, rtol=1e-10)
    neurons = WeightMagnitudeRegularizer(t=1.5, mode="neurons")
    ref = float(ref_magnitude(net[0].weight, 1.5)) + float(ref_magnitude(net[2].weight, 1.5))
    assert_close(neurons(net), ref, rtol=1e-10)


def test_sampled_mode_is_a_lower_bound_on_a_large_layer() -> None:
    torch.manual_seed(2)
    net = nn.Linear(40, 30, bias=False).double()  # 1200 weights > 1002 sampled
    exact = WeightMagnitudeRegularizer(t=200.0)(net)
    gen = torch.Generator().manual_seed(0)
    sampled = WeightMagnitudeRegularizer(t=200.0, mode="sampled", generator=gen)(net)
    assert_close(exact, ref_line_magnitude(net.weight.detach().numpy().ravel(), 200.0), rtol=1e-9)
    assert sampled.item() < exact.item()


def test_parameters_and_selection_pass_through() -> None:
    net = mlp()
    reg = WeightMagnitudeRegularizer(t=2.0, include="*.bias", trainable_only=False)
    biases = np.concatenate([net[0].bias.detach().numpy(), net[2].bias.detach().numpy()])
    assert_close(reg(net), ref_line_magnitude(biases, 2.0), rtol=1e-10)
    assert_close(
        WeightMagnitudeRegularizer(t=2.0)([net[2].weight]),
        ref_line_magnitude(net[2].weight.detach().numpy().ravel(), 2.0),
        rtol=1e-10,
    )
    assert "mode='scalar'" in repr(reg)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t": 0.0}, "t must be finite and > 0"),
        ({"t": 1.0, "mode": "exact"}, "mode must be one of"),
        ({"t": 1.0, "reduction": "none"}, "reduction must be one of"),
        ({"t": 1.0, "per_layer": "yes"}, "per_layer must be True or False"),
        ({"t": 1.0, "trainable_only": None}, "trainable_only must be True or False"),
        ({"t": 1.0, "include": 5}, "include must be"),
        ({"t": 1.0, "n_samples": -3}, "n_samples must be"),
        ({"t": 1.0, "generator": 0}, "generator must be"),
        ({"t": 1.0, "metric": "hamming"}, "metric"),
        ({"t": 1.0, "solver": 3}, "solver must be"),
    ],
)
def test_arguments_are_validated_at_construction(kwargs, match: str) -> None:
    with pytest.raises(MagtorchError, match=match):
        WeightMagnitudeRegularizer(**kwargs)
