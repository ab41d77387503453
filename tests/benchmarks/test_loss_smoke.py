"""Smoke tests for benchmarks/loss.py: the code runs on tiny inputs and the loss it times agrees
with an independent reference. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("geomloss")

from benchmarks import loss as bench  # noqa: E402
from benchmarks import run_all  # noqa: E402


def test_median_scale_is_the_inverse_median_distance() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    y = torch.tensor([[0.0, 1.0]])
    # distances 5, 1, sqrt(18): median sqrt(18)
    assert bench.median_scale(x, y) == pytest.approx(1 / np.sqrt(18.0), rel=1e-15)


def test_reference_distance_closed_form() -> None:
    # on the line Mag = 1 + sum tanh(t g / 2); X = {0, 1}, Y = {1, 3}, X u Y = {0, 1, 3}:
    # 2 (1 + tanh(t/2) + tanh(t)) - (1 + tanh(t/2)) - (1 + tanh(t)) = tanh(t/2) + tanh(t)
    t = 0.7
    value = bench.reference_distance(np.array([[0.0], [1.0]]), np.array([[1.0], [3.0]]), t)
    assert value == pytest.approx(np.tanh(t / 2) + np.tanh(t), rel=1e-14)


def test_compare_row_agrees_with_reference() -> None:
    row = bench.compare(48, repeats=1)
    assert row["n"] == row["m"] == 48 and row["dim"] == bench.DIM
    assert row["rel_error_vs_reference"] < 1e-6  # float32 output of a float64 computation
    for name in ("magnitude", "magnitude_both_grad", "sinkhorn", "energy"):
        assert row[f"{name}_s"] > 0
    assert row["ratio_vs_sinkhorn"] == pytest.approx(row["magnitude_s"] / row["sinkhorn_s"])


def test_run_all_quick_writes_json_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "QUICK_SIZES", (32, 40))
    assert run_all.main(["--quick", "--out", str(tmp_path), "--only", "loss"]) == 0
    printed = capsys.readouterr().out
    assert "vs sinkhorn" in printed and "goal vs_sinkhorn" in printed
    results = json.loads((tmp_path / "loss_quick.json").read_text())
    assert [r["n"] for r in results["rows"]] == [32, 40]
    assert "met" in results["goals"]["vs_sinkhorn"]
    assert "benchmarks.loss" in [m.__name__ for m in run_all.discover()]
