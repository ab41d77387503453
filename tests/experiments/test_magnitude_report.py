"""Smoke test of the demo: ``experiments.magnitude_report --quick`` into a temporary folder.

The numbers in the report's table are checked against an independent float64 recomputation
(data loaded and standardised here with scikit-learn, magnitude by a plain LAPACK solve).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.spatial.distance import cdist

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from sklearn import datasets as skd  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from experiments import magnitude_report as demo  # noqa: E402

LOADERS = {
    "iris": skd.load_iris,
    "wine": skd.load_wine,
    "breast_cancer": skd.load_breast_cancer,
    "digits": skd.load_digits,
}


def _reference_points(name: str) -> np.ndarray:
    """The quick-mode data, rebuilt without the demo's own loader; duplicates removed."""
    x = StandardScaler().fit_transform(LOADERS[name]().data.astype(np.float64))
    if len(x) > demo.QUICK_MAX_POINTS:
        keep = np.random.default_rng(demo.SEED).choice(len(x), demo.QUICK_MAX_POINTS, False)
        x = x[np.sort(keep)]
    return np.unique(x, axis=0)


def _mag_and_derivative(d: np.ndarray, t: float) -> tuple[float, float]:
    z = np.exp(-t * d)
    w = np.linalg.solve(z, np.ones(len(d)))
    return float(w.sum()), float(w @ (d * z) @ w)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("magnitude_report")
    assert demo.main(["--out", str(out), "--quick"]) == 0
    return out


def test_outputs_exist(quick_report: Path) -> None:
    report = (quick_report / "report.md").read_text()
    for png in ("magnitude_functions.png", "dimension_profiles.png"):
        data = (quick_report / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({png})" in report
    rows = demo.parse_table(report)
    assert [r["dataset"] for r in rows] == list(demo.DATASETS)


def test_table_matches_json(quick_report: Path) -> None:
    rows = demo.parse_table((quick_report / "report.md").read_text())
    results = json.loads((quick_report / "results.json").read_text())["datasets"]
    for row, res in zip(rows, results, strict=True):
        assert row["dataset"] == res["name"]
        assert float(row["convergence scale"]) == pytest.approx(res["convergence_scale"], 1e-7)
        assert float(row["magnitude area"]) == pytest.approx(res["magnitude_area"], rel=1e-7)
        assert float(row["magnitude dimension"]) == pytest.approx(
            res["magnitude_dimension"], rel=1e-5
        )


@pytest.mark.parametrize("name", demo.DATASETS)
def test_table_numbers_match_independent_recomputation(quick_report: Path, name: str) -> None:
    row = {r["dataset"]: r for r in demo.parse_table((quick_report / "report.md").read_text())}[
        name
    ]
    x = _reference_points(name)
    n_distinct = len(x)
    d = cdist(x, x)
    assert int(row["distinct"]) == n_distinct
    assert int(row["d"]) == LOADERS[name]().data.shape[1]
    assert int(row["n"]) == min(len(LOADERS[name]().data), demo.QUICK_MAX_POINTS)

    # convergence scale: the dense float64 magnitude there is 0.95 x (distinct points)
    t_conv = float(row["convergence scale"])
    mag, _ = _mag_and_derivative(d, t_conv)
    assert mag == pytest.approx(0.95 * n_distinct, rel=1e-6)

    # magnitude area: (1/t_conv) * integral_0^t_conv Mag(tX) dt by Gauss-Legendre quadrature
    nodes, weights = np.polynomial.legendre.leggauss(40)
    ts = 0.5 * t_conv * (nodes + 1.0)
    area = 0.5 * float(weights @ np.array([_mag_and_derivative(d, t)[0] for t in ts]))
    assert float(row["magnitude area"]) == pytest.approx(area, rel=1e-3)

    # magnitude dimension: the maximum over t of t Mag'(t) / Mag(t), located here by a grid
    # over [t_conv/1000, 2 t_conv] and a bounded scalar search in log t around the best point
    def slope(log_t: float) -> float:
        mag, dmag = _mag_and_derivative(d, float(np.exp(log_t)))
        return float(np.exp(log_t)) * dmag / mag

    grid = np.linspace(np.log(t_conv / 1000), np.log(2 * t_conv), 81)
    k = int(np.argmax([slope(s) for s in grid]))
    best = minimize_scalar(
        lambda s: -slope(s),
        bounds=(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]),
        method="bounded",
        options={"xatol": 1e-9},
    )
    assert float(row["magnitude dimension"]) == pytest.approx(-best.fun, rel=1e-6)
    assert float(row["scale of max slope"]) == pytest.approx(np.exp(best.x), rel=1e-3)


def test_profiles_are_consistent_with_the_table(quick_report: Path) -> None:
    """The plotted profile never exceeds the reported dimension, and its curve ends at t_conv."""
    for res in json.loads((quick_report / "results.json").read_text())["datasets"]:
        t, mag, profile = (np.array(res[k]) for k in ("t", "magnitude", "dimension_profile"))
        assert len(t) == demo.N_SCALES
        assert t[-1] == pytest.approx(res["convergence_scale"], rel=1e-12)
        assert t[0] == pytest.approx(res["convergence_scale"] / 100, rel=1e-12)
        assert mag[-1] == pytest.approx(0.95 * res["n_distinct"], rel=1e-6)
        assert np.all(np.diff(mag) > 0)
        assert profile.max() <= res["magnitude_dimension"] * (1 + 1e-9)
        assert profile.max() >= 0.95 * res["magnitude_dimension"]
