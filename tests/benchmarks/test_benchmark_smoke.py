"""Smoke tests for benchmarks/: the code runs on tiny inputs and agrees with magnipy.

No timing is asserted here; speed is measured by ``make bench`` and recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

pytest.importorskip("magnipy")

from benchmarks import magnitude_function as bench  # noqa: E402
from benchmarks import run_all  # noqa: E402


def _dense_reference(x: np.ndarray, t: float) -> tuple[float, np.ndarray]:
    """float64 magnitude and weighting of ``x`` at scale ``t`` by a plain LAPACK solve."""
    z = np.exp(-t * cdist(x, x))
    w = np.linalg.solve(z, np.ones(len(x)))
    return float(w.sum()), w


def test_scales_follow_magnipy_default_grid() -> None:
    x = bench.make_points(80)
    ts = bench.benchmark_scales(x)
    assert ts.shape == (bench.N_SCALES,)
    np.testing.assert_allclose(ts, np.linspace(ts[-1] / 30, ts[-1], 30), rtol=1e-15)
    # t_conv is the 0.95 convergence scale: an independent dense solve gives 0.95 n there
    mag, _ = _dense_reference(x, ts[-1])
    assert mag == pytest.approx(0.95 * len(x), rel=1e-6)


@pytest.mark.parametrize("n", [50, 150])
def test_magtorch_agrees_with_magnipy(n: int) -> None:
    x = bench.make_points(n)
    ts = bench.benchmark_scales(x)
    ours = bench.magtorch_magnitude_function(x, ts)
    theirs = bench.magnipy_magnitude_function(x, ts)
    reference = bench.reference_magnitude_function(x, ts)
    assert ours.shape == theirs.shape == (30,)
    assert bench.relative_disagreement(ours, theirs) <= 1e-9
    assert bench.relative_disagreement(ours, reference) <= 1e-9
    # the magnitude function increases from near 1 to 0.95 n
    assert np.all(np.diff(ours) > 0)
    assert ours[-1] == pytest.approx(0.95 * n, rel=1e-6)


def test_compare_function_row() -> None:
    row = bench.compare_function(60, repeats=1)
    assert row["n"] == 60
    assert row["magnipy_s"] > 0 and row["magtorch_s"] > 0
    assert row["speedup"] == pytest.approx(row["magnipy_s"] / row["magtorch_s"])
    assert row["max_rel_disagreement"] <= 1e-9


def test_forward_backward_gradient_is_the_implicit_gradient() -> None:
    x = bench.make_points(40)
    ts = bench.benchmark_scales(x)[[4, 29]]
    row = bench.time_forward_backward(x, ts, repeats=1)
    assert row["n_scales"] == 2 and row["grad_finite"]
    assert row["forward_s"] > 0 and row["backward_s"] > 0

    # the gradient that benchmark times, against the closed form
    # dMag/dx_i = 2 t sum_j w_i w_j Z_ij (x_i - x_j) / d_ij   (summed over the scales)
    import magtorch

    xt = torch.from_numpy(x).clone().requires_grad_()
    magtorch.magnitude(xt, torch.tensor(ts)).sum().backward()
    d = cdist(x, x)
    np.fill_diagonal(d, 1.0)
    expected = np.zeros_like(x)
    for t in ts:
        _, w = _dense_reference(x, t)
        k = 2 * t * np.outer(w, w) * np.exp(-t * d) / d
        np.fill_diagonal(k, 0.0)
        expected += k.sum(1, keepdims=True) * x - k @ x
    assert xt.grad is not None
    np.testing.assert_allclose(xt.grad.numpy(), expected, rtol=1e-7, atol=1e-9)


def test_relative_disagreement_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        bench.relative_disagreement(np.ones(3), np.ones(4))


def test_run_all_quick_writes_json_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "QUICK_SIZES", (60, 120))
    assert run_all.main(["--quick", "--out", str(tmp_path), "--only", "magnitude_function"]) == 0
    printed = capsys.readouterr().out
    assert "BENCHMARK SUMMARY" in printed and "speed-up" in printed
    results = json.loads((tmp_path / "magnitude_function_quick.json").read_text())
    assert [r["n"] for r in results["function"]] == [60, 120]
    assert all(r["max_rel_disagreement"] <= 1e-9 for r in results["function"])
    assert {g["label"] for g in results["gradient"]} == {"30 scales", "1 scale (t_conv)"}
    assert results["machine"]["logical_cores"] >= 1
    assert results["goals"]["agreement"]["met"]


def test_run_all_discovers_benchmark_modules() -> None:
    names = [m.__name__ for m in run_all.discover()]
    assert "benchmarks.magnitude_function" in names
    assert "benchmarks.run_all" not in names and "benchmarks._common" not in names
