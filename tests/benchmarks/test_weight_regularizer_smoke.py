"""Smoke test for benchmarks/weight_regularizer.py: it runs on a small model and its numbers
agree with independent float64 references. No timing is asserted (see BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run_all
from benchmarks import weight_regularizer as bench
from tests._reference import ref_magnitude


def test_model_has_the_advertised_number_of_weights() -> None:
    assert bench.weight_values(bench.make_model(bench.FULL_WIDTHS)).size == 1_000_000


def test_reference_line_magnitude_is_the_dense_solve() -> None:
    values = np.random.default_rng(0).normal(size=30)
    for t in (0.3, 4.0):
        expected = float(ref_magnitude(values[:, None], t))
        assert bench.reference_line_magnitude(values, t) == pytest.approx(expected, rel=1e-10)


def test_quick_run_writes_json_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_all.main(["--quick", "--out", str(tmp_path), "--only", "weight_regularizer"]) == 0
    printed = capsys.readouterr().out
    assert "sampled scheme" in printed and "np.argsort alone" in printed
    results = json.loads((tmp_path / "weight_regularizer_quick.json").read_text())
    assert results["settings"]["n_params"] == 3000
    values = bench.weight_values(bench.make_model(bench.QUICK_WIDTHS))
    reference = bench.reference_line_magnitude(values, bench.T_TIMED)
    assert results["reference_value"] == pytest.approx(reference, rel=1e-12)
    assert results["exact_value"] == pytest.approx(reference, rel=1e-6)  # float32 output
    rows = results["sampling"]
    assert [r["t"] for r in rows] == list(bench.ERROR_SCALES)
    for r in rows:  # a subset's magnitude is a lower bound: errors are >= 0
        assert r["exact"] == pytest.approx(bench.reference_line_magnitude(values, r["t"]), rel=1e-6)
        assert -1e-6 <= r["rel_error_min"] <= r["rel_error_mean"] <= r["rel_error_max"] < 1
    assert rows[-1]["rel_error_mean"] > rows[0]["rel_error_mean"]  # sampling fails at large t
    assert results["timings"]["exact"]["forward_backward_s"] > 0
    assert results["goals"]["exact_forward_backward"]["met"] is None  # not judged when quick
