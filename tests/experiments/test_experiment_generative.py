"""experiment=generative: experiments/generative.py through train.py's runner at --quick size
(one data set, two losses); the returned metrics are the per-seed means of results.json,
recomputed here from its per-seed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("hydra")
pytest.importorskip("sklearn")
pytest.importorskip("geomloss")
pytest.importorskip("matplotlib")

from experiments.train import train  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402


def test_generative_config_composes() -> None:
    cfg = compose_train(["experiment=generative"])
    assert cfg.runner._target_ == "experiments.runners.generative"
    assert cfg.params.datasets is None  # all three data sets by default


def test_generative_quick_run(tmp_path) -> None:
    cfg = compose_train(
        [
            "experiment=generative",
            "debug=fast",
            "params.datasets=[moons]",
            "params.losses=[magnitude,energy]",
            "optimized_metric=generative/moons/magnitude/W1",
            f"output_dir={tmp_path}",
        ]
    )
    metrics = train(cfg)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "--quick" in saved["command"]
    losses = saved["results"]["moons"]["losses"]
    assert set(losses) == {"magnitude", "energy"}
    for loss, r in losses.items():
        for key in r["mean"]:
            mean = float(np.mean([run["metrics"][key] for run in r["runs"]]))
            assert metrics[f"generative/moons/{loss}/{key}"] == pytest.approx(mean)
    assert (tmp_path / "report.md").exists() and (tmp_path / "moons.png").stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["time/total_s"] > 0
