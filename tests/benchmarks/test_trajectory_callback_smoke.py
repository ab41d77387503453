"""Smoke test for benchmarks/trajectory_callback.py: the quick run works end to end through
``run_all`` and the callback's magnitudes agree with the direct computation it makes. No timing
is asserted (see BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("lightning")

from benchmarks import run_all  # noqa: E402


def test_quick_run_writes_json_and_agrees_with_direct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_all.main(["--quick", "--out", str(tmp_path), "--only", "trajectory_callback"]) == 0
    assert "steps+Gram" in capsys.readouterr().out
    row = json.loads((tmp_path / "trajectory_callback_quick.json").read_text())["rows"][0]
    assert row["n_points"] == row["n"] == 60 and row["converged"]
    # the Gram route loses ~1e-16 max|u|^2 / D^2 of D^2 to cancellation (callback docstring):
    # consecutive Adam steps are ~1e-4 of the trajectory's extent, so ~1e-8 here
    assert row["max_rel_diff_vs_direct"] < 1e-6
    assert 1.0 < row["magnitude"][0] < row["magnitude"][1] < 60
