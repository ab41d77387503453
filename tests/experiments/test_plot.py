"""Tests of the figure helpers in magtorch/plot.py (used by the demo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import magtorch  # noqa: E402
from magtorch.plot import (  # noqa: E402
    plot_dimension_profiles,
    plot_magnitude_functions,
    save_figure,
)


def test_magnitude_functions_accepts_tensors_and_results(tmp_path: Path) -> None:
    x = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None]
    mf = magtorch.magnitude_function(x, n_scales=16)
    t = np.geomspace(0.1, 10, 16)
    two = 2 / (1 + np.exp(-t))  # two points at distance 1
    ax = plot_magnitude_functions(
        {"line": mf, "pair": (torch.from_numpy(t), two)},
        n={"line": 5, "pair": 2},
        convergence_scales={"pair": 2.944},
        q=0.95,
    )
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["pair (n=2)"].get_ydata(), two / 2)
    np.testing.assert_allclose(lines["line (n=5)"].get_xdata(), mf.t.numpy())
    assert ax.get_xscale() == "log" and ax.get_ylim()[1] <= 1.05
    # the convergence scale is marked on the curve: Mag/n there is about 0.95
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and len(ln.get_xdata()) == 1]
    assert dots and dots[0].get_ydata()[0] == pytest.approx(0.95, abs=2e-3)
    path = save_figure(ax, tmp_path / "sub" / "f.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_dimension_profiles_marks_the_maximum() -> None:
    t = np.geomspace(0.1, 10, 32)
    slope = np.exp(-(np.log(t) ** 2))
    ax = plot_dimension_profiles({"bump": (t, slope)}, dimensions={"bump": (1.0, 1.0)})
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(label.startswith("bump (dim 1.00 at t=1") for label in labels)
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert stars and stars[0].get_xdata()[0] == 1.0


def test_curve_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same length"):
        plot_magnitude_functions({"bad": (np.ones(3), np.ones(4))})
