"""Smoke test for benchmarks/potential_callback.py: the quick run works end to end through
``run_all`` and its numbers are consistent. No timing is asserted (see BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("lightning")

from benchmarks import potential_callback as bench  # noqa: E402
from benchmarks import run_all  # noqa: E402


def test_digits_are_standardised() -> None:
    x, y = bench.load_digits_data()
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert sorted(torch.unique(y).tolist()) == list(range(10))
    varying = x.std(0) > 0
    assert torch.allclose(x.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(x.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-5)


def test_epoch_timer_times_every_epoch(tmp_path: Path) -> None:
    x, y = bench.load_digits_data(40)
    out = bench.fit_epochs(bench.make_loader(x, y), 3, lambda: [], str(tmp_path))
    assert len(out["epoch_times"]) == 3 and all(s > 0 for s in out["epoch_times"])


def test_quick_run_writes_json_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_all.main(["--quick", "--out", str(tmp_path), "--only", "potential_callback"]) == 0
    printed = capsys.readouterr().out
    assert "overhead" in printed and "convergence_scale" in printed
    results = json.loads((tmp_path / "potential_callback_quick.json").read_text())
    row = results["rows"][0]
    assert row["n"] == bench.QUICK["n"]
    for name in ("none", "fixed", "convergence"):
        assert row[f"{name}_epoch_s"] > 0
        assert len(row[f"{name}_epoch_times_s"]) == bench.QUICK["repeats"]
    for name in ("fixed", "convergence"):
        expected = (row[f"{name}_epoch_s"] - row["none_epoch_s"]) / row["none_epoch_s"]
        assert row[f"{name}_overhead"] == pytest.approx(expected)
    assert row["convergence_scored_epochs"] == list(range(bench.QUICK["epochs"]))
    assert row["fixed_t"] > 0 and row["convergence_t_last"] > 0
    assert results["breakdown"]["n"] == bench.QUICK["n"]
    assert all(v > 0 for v in results["breakdown"]["parts_s"].values())
    assert results["goals"]["overhead"]["met"] is None  # not judged when quick
