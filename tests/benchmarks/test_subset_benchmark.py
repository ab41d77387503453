"""Smoke test of benchmarks/subset.py: it runs on a tiny input; no timing is asserted.

The exact magnitude and the reported subset magnitudes are checked against numpy dense solves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from benchmarks import run_all
from benchmarks import subset as bench


def dense_mag(x: np.ndarray, t: float) -> float:
    return float(np.linalg.solve(np.exp(-t * cdist(x, x)), np.ones(len(x))).sum())


def test_run_all_quick_writes_json_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "QUICK_SIZES", (150,))
    monkeypatch.setattr(bench, "CURVE_K", 60)
    assert run_all.main(["--quick", "--out", str(tmp_path), "--only", "subset"]) == 0
    printed = capsys.readouterr().out
    assert "BENCHMARK SUMMARY" in printed and "Subset approximations" in printed
    results = json.loads((tmp_path / "subset_quick.json").read_text())
    (size,) = results["sizes"]
    x = bench.make_points(150)
    exact = dense_mag(x, bench.T)
    assert size["n"] == 150 and size["exact"] == pytest.approx(exact, rel=1e-10)
    rows = size["rows"]
    assert [r["method"] for r in rows] == ["greedy"] * 3 + ["centres"] * 6
    greedy_sizes = [r["size"] for r in rows[:3]]
    assert greedy_sizes == sorted(greedy_sizes)  # smaller tol, more points
    for r in rows:
        assert 0 < r["magnitude"] <= exact + 1e-9
        assert r["rel_error"] == pytest.approx((exact - r["magnitude"]) / exact, abs=1e-12)
        assert r["seconds"] > 0 and r["speedup"] > 0
    # greedy errors shrink with the tolerance
    assert rows[0]["rel_error"] >= rows[1]["rel_error"] >= rows[2]["rel_error"]
    assert size["scales"]["k"] == 60 and size["scales"]["rel_error_min"] >= 0
    assert "benchmarks.subset" in [m.__name__ for m in run_all.discover()]
