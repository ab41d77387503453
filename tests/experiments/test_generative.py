"""Smoke test of ``experiments.generative --quick`` and independent checks of its metrics.

The metrics are checked against computations that do not share code with the experiment: W1 in
1-D by matching sorted samples, precision/recall by brute-force loops, mode coverage of samples
drawn here from the 8-Gaussian mixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("geomloss")

from experiments import generative as gen  # noqa: E402


def test_quick_run_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert gen.main(["--quick", "--out", str(out)]) == 0
    for name in ("report.md", "results.json", *(f"{d}.png" for d in gen.DATASETS)):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "results.json").read_text())["results"]
    assert set(res) == set(gen.DATASETS)
    for name, r in res.items():
        assert set(r["losses"]) == set(gen.LOSSES)
        for loss in r["losses"].values():
            assert set(loss["mean"]) >= set(gen.METRICS[name])
            assert all(np.isfinite(v) for v in loss["mean"].values())
    report = (out / "report.md").read_text()
    assert all(f"## {d}" in report for d in gen.DATASETS) and "loses on" in report


def test_wasserstein_matches_sorted_matching_in_1d() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 1)), rng.exponential(size=(50, 1))
    w1, w2 = gen.wasserstein_assignment(x, y)
    diff = np.sort(x[:, 0]) - np.sort(y[:, 0])  # the monotone coupling is optimal on the line
    assert w1 == pytest.approx(np.abs(diff).mean(), rel=1e-12)
    assert w2 == pytest.approx(np.sqrt((diff**2).mean()), rel=1e-12)


def _brute_force_pr(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def covered(ref: np.ndarray, q: np.ndarray) -> float:
        hits = 0
        for p in q:
            for r in ref:
                radius = sorted(np.linalg.norm(ref - r, axis=1))[k]
                if np.linalg.norm(p - r) <= radius:
                    hits += 1
                    break
        return hits / len(q)

    return covered(real, fake), covered(fake, real)


def test_precision_recall_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40, 2))
    fake = rng.normal(loc=0.7, scale=0.5, size=(30, 2))
    assert gen.precision_recall(real, fake, k=3) == pytest.approx(
        _brute_force_pr(real, fake, 3), abs=0
    )


def test_real_vs_real_scores_high() -> None:
    data = gen.make_data("8gaussians")
    real_a = data.train[:1000].astype(np.float64)
    prec, rec = gen.precision_recall(data.test.astype(np.float64), real_a)
    assert prec > 0.9 and rec > 0.9
    modes, hq = gen.mode_metrics(real_a)
    assert modes == 8
    # Gaussian in 2-D: P(|noise| <= 3 std) = 1 - exp(-9/2) = 0.9889
    assert hq == pytest.approx(1 - np.exp(-4.5), abs=0.01)
    far = gen.precision_recall(data.test.astype(np.float64), real_a + 10.0)
    assert far == (0.0, 0.0)


def test_mode_metrics_count_collapse() -> None:
    rng = np.random.default_rng(2)
    means = gen.gaussian_means()
    x = means[[0, 3]][rng.integers(0, 2, 400)] + gen.GAUSS_STD * rng.normal(size=(400, 2))
    modes, hq = gen.mode_metrics(x)
    assert modes == 2 and hq > 0.95
    assert gen.mode_metrics(np.zeros((100, 2))) == (0, 0.0)  # the centre is 2 away from all modes
