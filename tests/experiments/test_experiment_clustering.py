"""experiment=clustering: experiments/clustering_comparison.py through train.py's runner.

The fast test checks the runner's metric names and values against a payload of known numbers
(the module's own output format); the slow test runs the real --quick comparison and checks
the metrics against its results.json."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("hydra")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from experiments import clustering_comparison as cc  # noqa: E402
from experiments import runners  # noqa: E402
from experiments.train import train  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402


def test_clustering_config_composes() -> None:
    cfg = compose_train(["experiment=clustering"])
    assert cfg.runner._target_ == "experiments.runners.clustering"
    assert cfg.optimized_metric == "clustering/circles/magnitude_auto/ari"


def test_clustering_runner_flattens_the_module_results(monkeypatch, tmp_path) -> None:
    payload = {
        "datasets": {
            "circles": {
                "methods": {
                    "magnitude (auto)": {"ari": 1.0, "n_clusters": 2},
                    "KMeans": {"ari": -0.002, "n_clusters": 2},
                }
            }
        }
    }
    seen = {}

    def fake_run(out, *, quick=False):
        seen.update(out=out, quick=quick)
        return payload

    monkeypatch.setattr(cc, "run", fake_run)
    cfg = compose_train(["experiment=clustering", "debug=fast", f"output_dir={tmp_path}"])
    metrics = runners.clustering(cfg, tmp_path)
    assert seen == {"out": tmp_path, "quick": True}
    assert metrics == {
        "clustering/circles/magnitude_auto/ari": 1.0,
        "clustering/circles/magnitude_auto/n_clusters": 2.0,
        "clustering/circles/kmeans/ari": -0.002,
        "clustering/circles/kmeans/n_clusters": 2.0,
    }


@pytest.mark.slow  # ~15 s idle, ~40 s on a loaded 2-core box
def test_clustering_quick_run(tmp_path) -> None:
    metrics = train(
        compose_train(["experiment=clustering", "debug=fast", f"output_dir={tmp_path}"])
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["quick"] is True
    for name, d in saved["datasets"].items():
        for method, r in d["methods"].items():
            key = runners._slug(method)
            assert metrics[f"clustering/{name}/{key}/ari"] == pytest.approx(r["ari"])
    assert (tmp_path / "clusterings.png").stat().st_size > 0
