"""Smoke test of ``experiments.subset_approximation --quick`` into a temporary folder.

Reported numbers are checked against recomputations here: exact magnitudes by numpy dense
solves, curve endpoints against them, the table against the JSON curves, and the traced
iterative normalisation against a numpy re-run of Algorithm 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from scipy.spatial.distance import cdist  # noqa: E402

from experiments import subset_approximation as exp  # noqa: E402


def dense_mag(x: np.ndarray, t: float) -> float:
    return float(np.linalg.solve(np.exp(-t * cdist(x, x)), np.ones(len(x))).sum())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("subset")
    assert exp.main(["--out", str(out), "--quick"]) == 0
    return out


def test_outputs_exist_and_table_matches_json(quick_run: Path) -> None:
    report = (quick_run / "report.md").read_text()
    for name in ("subset_curves.png", "iterative.png"):
        png = (quick_run / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        assert f"]({name})" in report
    res = json.loads((quick_run / "results.json").read_text())
    rows = exp.parse_table(report)
    assert [r["dataset"] for r in rows] == list(exp.DATASETS)
    for row in rows:
        d = res["datasets"][row["dataset"]]
        assert float(row["Mag(X)"]) == pytest.approx(d["exact"], abs=6e-5)
        for key, col in (("greedy", "greedy k90/k95/k99"), ("centres", "centres k90/k95/k99")):
            ks = [exp.size_to_reach(np.array(d[key]), q * d["exact"]) for q in exp.LEVELS]
            assert row[col] == "/".join(map(str, ks))
    it_rows = exp.parse_iterative_table(report)
    assert len(it_rows) == 3
    for row in it_rows:
        m = res["iterative"]["methods"][row["method"]]
        assert row["iterations (solve, rtol 1e-6)"].split()[0] == str(m["solve_iterations"])


@pytest.mark.parametrize("name", exp.DATASETS)
def test_curves_end_at_the_exact_magnitude(quick_run: Path, name: str) -> None:
    d = json.loads((quick_run / "results.json").read_text())["datasets"][name]
    x = exp.load(name, quick=True)
    exact = dense_mag(np.unique(x, axis=0), exp.T)
    assert d["exact"] == pytest.approx(exact, rel=1e-9)
    for key in ("greedy", "centres"):
        curve = np.array(d[key])
        assert len(curve) == len(x) and curve[0] == pytest.approx(1.0)
        assert curve[-1] == pytest.approx(exact, rel=1e-9)
        assert (np.diff(curve) > -1e-9).all()
    for curve in d["random"]:
        assert curve[-1] == pytest.approx(exact, rel=1e-9)
    # greedy starts at point 0 and adds the point farthest from it: 2 / (1 + exp(-t d_max))
    far = cdist(x[:1], x).max()
    assert d["greedy"][1] == pytest.approx(2 / (1 + np.exp(-exp.T * far)), rel=1e-12)


def test_iterative_trace_matches_numpy_rerun(quick_run: Path) -> None:
    res = json.loads((quick_run / "results.json").read_text())["iterative"]
    x = exp.gaussian_points(res["n"])
    z = np.exp(-exp.T * cdist(x, x))
    assert res["exact"] == pytest.approx(np.linalg.solve(z, np.ones(len(x))).sum(), rel=1e-9)
    w = np.ones(len(x))
    trace = res["methods"]["iterative normalisation"]["trace"]
    for k in range(1, 11):
        w = w / (z @ w)
        assert trace[k] == pytest.approx(w.sum(), rel=1e-10)
    checked = [m for m in res["methods"].values() if m["check_trace"] is not None]
    assert len(checked) >= 2  # iterative normalisation and line-search descent stay finite
    for m in checked:
        assert m["check_solve"] == pytest.approx(m["check_trace"], rel=1e-9)
