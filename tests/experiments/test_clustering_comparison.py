"""Smoke test of ``experiments.clustering_comparison --quick`` into a temporary folder.

The reported numbers are checked against recomputations here: ARIs from the JSON labels by
scikit-learn, the magnitude clustering by a fresh fit, KMeans/Agglomerative by refitting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from sklearn.cluster import AgglomerativeClustering, KMeans  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from experiments import clustering_comparison as exp  # noqa: E402
from magtorch.cluster import MagnitudeClustering  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clustering")
    assert exp.main(["--out", str(out), "--quick"]) == 0
    return out


def test_outputs_exist_and_table_matches_json(quick_run: Path) -> None:
    report = (quick_run / "report.md").read_text()
    png = (quick_run / "clusterings.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "](clusterings.png)" in report and "oracle" in report
    rows = exp.parse_table(report)
    results = json.loads((quick_run / "results.json").read_text())["datasets"]
    assert [r["dataset"] for r in rows] == list(exp.DATASETS)
    for row in rows:
        res = results[row["dataset"]]
        for m in exp.METHODS:
            ari, k = row[m].split()
            assert float(ari) == pytest.approx(res["methods"][m]["ari"], abs=5e-4)
            assert int(k.strip("()")) == res["methods"][m]["n_clusters"]
        auto, oracle = res["methods"]["magnitude (auto)"], res["methods"]["magnitude (oracle)"]
        assert oracle["ari"] >= auto["ari"] - 1e-12
        assert oracle["ari"] == pytest.approx(max(auto["sweep_ari"]), abs=1e-12)


@pytest.mark.parametrize("name", exp.DATASETS)
def test_numbers_match_refits(quick_run: Path, name: str) -> None:
    res = json.loads((quick_run / "results.json").read_text())["datasets"][name]["methods"]
    d = exp.make_dataset(name, quick=True)
    keep = d.y >= 0
    model = MagnitudeClustering(n_thresholds=12).fit(d.x)
    assert model.n_clusters_ == res["magnitude (auto)"]["n_clusters"]
    ari = adjusted_rand_score(d.y[keep], model.labels_[keep])
    assert ari == pytest.approx(res["magnitude (auto)"]["ari"], abs=1e-12)
    km = KMeans(d.k, n_init=10, random_state=exp.SEED).fit_predict(d.x)
    assert adjusted_rand_score(d.y[keep], km[keep]) == pytest.approx(res["KMeans"]["ari"])
    ag = AgglomerativeClustering(d.k).fit_predict(d.x)
    assert adjusted_rand_score(d.y[keep], ag[keep]) == pytest.approx(res["Agglomerative"]["ari"])


def test_dbscan_eps_is_the_knee() -> None:
    # 40 evenly spaced points 0.1 apart and 3 far points: the knee is the spacing
    x = np.concatenate([np.arange(40)[:, None] * 0.1, [[20.0], [35.0], [60.0]]])
    assert exp.dbscan_eps(x, 2) == pytest.approx(0.1)
