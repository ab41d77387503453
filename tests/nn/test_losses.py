"""MagnitudeDistanceLoss: reductions against closed forms on the line and the independent dense
reference, argument validation, gradients to the generator only, device/dtype handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import magtorch
from magtorch.nn.losses import MagnitudeDistanceLoss
from tests._reference import assert_close, line_magnitude, ref_magnitude

F64 = torch.float64

X_LINE = [0.0, 1.0, 3.0]
Y_LINE = [0.5, 3.0, 6.0]


def _col(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64).unsqueeze(-1)


def line_distance(x: list[float], y: list[float], t: float, normalized: bool = False) -> float:
    """2 Mag(X u Y) - Mag(X) - Mag(Y) from the closed form 1 + sum tanh(t g / 2) on the line."""

    def mag(points: list[float]) -> float:
        return line_magnitude(np.diff(np.unique(points)), t)

    d = 2 * mag(x + y) - mag(x) - mag(y)
    return d / mag(x + y) if normalized else d


@pytest.fixture
def line_batch() -> tuple[torch.Tensor, torch.Tensor, list[list[float]], list[list[float]]]:
    """Two sets per side, on the real line: ``(2, 3, 1)`` tensors and their coordinates."""
    xs = [X_LINE, [0.0, 2.0, 2.5]]
    ys = [Y_LINE, [1.0, 2.0, 7.0]]
    return torch.tensor(xs, dtype=F64)[..., None], torch.tensor(ys, dtype=F64)[..., None], xs, ys


@pytest.mark.parametrize("normalized", [False, True])
def test_reductions_over_batch_and_scales(line_batch, normalized):
    x, y, xs, ys = line_batch
    ts = [0.5, 2.0, 4.0]
    expected = torch.tensor(
        [[line_distance(a, b, t, normalized) for t in ts] for a, b in zip(xs, ys, strict=True)],
        dtype=F64,
    )  # (2 sets, 3 scales)
    none = MagnitudeDistanceLoss(ts, normalized=normalized, reduction="none")(x, y)
    assert_close(none, expected, rtol=1e-12)
    total = MagnitudeDistanceLoss(ts, normalized=normalized, reduction="sum")(x, y)
    assert_close(total, expected.sum(), rtol=1e-12)
    mean = MagnitudeDistanceLoss(ts, normalized=normalized)(x, y)  # default "mean"
    assert_close(mean, expected.sum() / 6, rtol=1e-12)


def test_scalar_scale_has_no_scale_axis(line_batch):
    x, y, xs, ys = line_batch
    out = MagnitudeDistanceLoss(1.5, reduction="none")(x, y)
    assert_close(out, [line_distance(a, b, 1.5) for a, b in zip(xs, ys, strict=True)], 1e-12)


def test_masks_are_passed_through(rng):
    x = torch.tensor(rng.normal(size=(5, 2)), dtype=F64)
    y = torch.tensor(rng.normal(size=(4, 2)), dtype=F64)
    x_mask = torch.tensor([True, True, False, True, False])
    y_mask = torch.tensor([False, True, True, True])
    loss = MagnitudeDistanceLoss(0.8)(x, y, x_mask=x_mask, y_mask=y_mask)
    xr, yr = x[x_mask], y[y_mask]
    expected = 2 * ref_magnitude(torch.cat([xr, yr]), 0.8) - ref_magnitude(xr, 0.8)
    assert_close(loss, expected - ref_magnitude(yr, 0.8), rtol=1e-10)


def test_trains_the_generator_and_leaves_the_data_alone(rng):
    torch.manual_seed(0)
    generator = nn.Linear(2, 2).double()
    noise = torch.randn(16, 2, dtype=F64)
    data = torch.tensor(rng.normal(size=(16, 2)) + 3.0, dtype=F64)
    loss_fn = MagnitudeDistanceLoss(1.0)
    x = generator(noise)
    loss = loss_fn(x, data)
    before = loss.item()
    expected = 2 * ref_magnitude(torch.cat([x, data]), 1.0) - ref_magnitude(x, 1.0)
    assert_close(loss, expected - ref_magnitude(data, 1.0), rtol=1e-10)
    loss.backward()
    assert data.grad is None
    assert generator.weight.grad is not None and torch.isfinite(generator.weight.grad).all()
    # one gradient step moves the generated batch towards the data
    with torch.no_grad():
        for p in generator.parameters():
            p -= 0.5 * p.grad
    assert loss_fn(generator(noise), data).item() < before


def test_learnable_scale_is_a_parameter():
    t = nn.Parameter(torch.tensor(0.7, dtype=F64))
    loss_fn = MagnitudeDistanceLoss(t)
    assert [p is t for p in loss_fn.parameters()] == [True]
    loss_fn(_col(X_LINE), _col(Y_LINE)).backward()

    def dmag(points: list[float]) -> float:
        g = np.diff(np.unique(points))
        return float((g / 2 / np.cosh(0.7 * g / 2) ** 2).sum())

    expected = 2 * dmag(X_LINE + Y_LINE) - dmag(X_LINE) - dmag(Y_LINE)
    assert_close(t.grad, expected, rtol=1e-12)


def test_scales_are_a_buffer_and_float32_stays_float32():
    loss_fn = MagnitudeDistanceLoss([0.5, 2.0], reduction="none")
    assert dict(loss_fn.named_buffers())["t"].tolist() == [0.5, 2.0]
    assert list(loss_fn.parameters()) == []
    out = loss_fn(_col(X_LINE).float(), _col(Y_LINE).float())
    assert out.dtype == torch.float32
    expected = [line_distance(X_LINE, Y_LINE, t) for t in (0.5, 2.0)]
    assert_close(out, expected, rtol=1e-7)
    assert "t=[0.5, 2.0]" in repr(loss_fn) and "reduction='none'" in repr(loss_fn)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t": -1.0}, "t must be finite and > 0"),
        ({"t": [1.0, float("nan")]}, "t must be finite and > 0"),
        ({"t": "large"}, "t must be"),
        ({"reduction": "max"}, "reduction must be one of"),
        ({"normalized": 1}, "normalized must be a bool"),
        ({"metric": "hamming"}, "unknown metric"),
        ({"metric": "precomputed"}, "precomputed"),
        ({"solver": "magic"}, "unknown solver"),
        ({"rtol": 2.0}, "rtol must be"),
        ({"max_iter": 0}, "max_iter must be"),
        ({"on_nonconvergence": "ignore"}, "on_nonconvergence must be"),
    ],
)
def test_bad_arguments_raise_in_init(kwargs, match):
    with pytest.raises(magtorch.MagtorchError, match=match):
        MagnitudeDistanceLoss(**{"t": 1.0, **kwargs})


def test_bad_input_raises_in_forward():
    loss_fn = MagnitudeDistanceLoss(1.0)
    with pytest.raises(magtorch.MagtorchError, match="same number of features"):
        loss_fn(torch.zeros(3, 2), torch.zeros(3, 4))
