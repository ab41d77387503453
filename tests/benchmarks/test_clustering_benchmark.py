"""Smoke test of benchmarks/clustering.py: it runs on a tiny input; no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from benchmarks import clustering as bench  # noqa: E402
from benchmarks import run_all  # noqa: E402


def test_points_are_four_blobs() -> None:
    x, y = bench.make_points(400)
    assert x.shape == (400, 2) and np.bincount(y).tolist() == [100] * 4
    for k in range(4):
        assert np.linalg.norm(x[y == k].mean(0) - bench.CENTRES[k]) < 0.2


def test_run_all_quick_writes_json_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "QUICK_SIZES", (120,))
    assert run_all.main(["--quick", "--out", str(tmp_path), "--only", "clustering"]) == 0
    printed = capsys.readouterr().out
    assert "BENCHMARK SUMMARY" in printed and "Magnitude clustering" in printed
    results = json.loads((tmp_path / "clustering_quick.json").read_text())
    (row,) = results["rows"]
    assert row["n"] == 120 and row["fixed_s"] > 0 and row["auto_s"] > 0
    assert 1 <= row["auto_runs"] <= row["auto_grid"] + 1
    assert results["goals"]["time"]["met"] is None  # not judged: the goal is about n = 2000 only
    assert "benchmarks.clustering" in [m.__name__ for m in run_all.discover()]
