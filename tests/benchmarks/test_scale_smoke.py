"""Smoke test for benchmarks/scale.py: the quick run completes, every case agrees with the dense
float64 reference it is compared with, and the JSON is written. No timing is asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import scale as bench


def _dense_magnitude(x: torch.Tensor, t: float) -> float:
    z = torch.exp(-t * torch.cdist(x, x))
    return float(torch.linalg.solve(z, torch.ones(len(x), dtype=torch.float64)).sum())


def test_child_cases_agree_with_dense_reference() -> None:
    x = bench.make_points(300)
    t = bench.median_scale(x)
    ref = _dense_magnitude(x, t)
    cg = bench.child("cg", 300)
    dense = bench.child("dense", 300)
    assert cg["converged"] and cg["residual"] <= 1e-6
    assert cg["magnitude"] == pytest.approx(ref, rel=1e-6)
    assert dense["magnitude"] == pytest.approx(ref, rel=1e-12)
    assert cg["peak_rss_bytes"] > 0


def test_quick_run_writes_json(tmp_path) -> None:
    pytest.importorskip("gpytorch")
    results = bench.run(quick=True, out_dir=tmp_path)
    saved = json.loads((tmp_path / "scale_quick.json").read_text())
    assert saved["benchmark"] == "scale"
    assert results["b"]["max_rel_disagreement"] <= 1e-8
    assert results["a"]["cg"]["rel_error"] <= 1e-6
    assert results["c"]["gpytorch"]["rel_error"] <= 1e-5
    assert np.isfinite(results["d"]["cg"]["magnitude"])
    assert all(g["met"] is None for g in results["goals"].values())  # quick: goals not judged
    assert "goal b_speedup" in bench.summary(results)
