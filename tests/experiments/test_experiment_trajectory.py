"""experiment=trajectory at tiny size: the per-run trajectory Mag of the full length equals the
callback's own result, the prefix Mag is an independent dense float64 NumPy solve, and the
sweep aggregation agrees with scipy's Kendall tau."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

pytest.importorskip("hydra")
pytest.importorskip("lightning")
pytest.importorskip("sklearn")
stats = pytest.importorskip("scipy.stats")

from experiments.analysis.trajectory import aggregate, prefix_magnitudes  # noqa: E402
from experiments.train import train  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402

TINY = [
    "experiment=trajectory",
    "data.max_train_samples=200",
    "model.hidden=[16]",
    "trainer.max_epochs=2",
    "callbacks.trajectory.n_steps=30",
    "params.lengths=[10,30]",
    "logger=none",
]


def test_trajectory_config_composes_with_a_grid() -> None:
    from omegaconf import OmegaConf

    from experiments.train import CONFIG_DIR

    cfg = compose_train(["experiment=trajectory"])
    assert cfg.callbacks.trajectory.keep_trajectory is True and len(cfg.params.lengths) == 2
    grid = OmegaConf.load(f"{CONFIG_DIR}/experiment/trajectory.yaml").hydra.sweeper.params
    assert len(str(grid["module.lr"]).split(",")) == 3
    assert len(str(grid["data.batch_size"]).split(",")) == 3


def test_trajectory_tiny_run(tmp_path) -> None:
    train(compose_train([*TINY, f"output_dir={tmp_path}"]))
    row = json.loads((tmp_path / "trajectory.json").read_text())
    own = json.loads(next(tmp_path.rglob("trajectory_magnitude.json")).read_text())
    assert row["mags"]["30"]["magnitude"] == pytest.approx(own["magnitude"], rel=1e-9)
    assert row["mags"]["30"]["positive_magnitude"] == pytest.approx(
        own["positive_magnitude"], rel=1e-9
    )
    assert row["gap_acc"] == pytest.approx(row["train_acc"] - row["test_acc"])


def test_prefix_magnitudes_against_numpy() -> None:
    import torch

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(40, 5)), axis=0)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    got = prefix_magnitudes(torch.tensor(d), [10, 40], [0.5, 2.0])
    for n in (10, 40):
        for i, t in enumerate((0.5, 2.0)):
            w = np.linalg.solve(np.exp(-t * d[:n, :n]), np.ones(n))
            assert got[n]["magnitude"][i] == pytest.approx(w.sum(), rel=1e-9)
            assert got[n]["positive_magnitude"][i] == pytest.approx(w.clip(0).sum(), rel=1e-9)


def test_aggregate_matches_scipy(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for k, (lr, bs) in enumerate(itertools.product([1e-3, 1e-2], [16, 64])):
        run = tmp_path / str(k)
        run.mkdir()
        mags = {"5": {"magnitude": [float(rng.random())], "positive_magnitude": [1.0 + k]}}
        run.joinpath("trajectory.json").write_text(
            json.dumps(
                {
                    "lr": lr,
                    "batch_size": bs,
                    "train_acc": 1.0,
                    "test_acc": 0.9,
                    "train_loss": 0.0,
                    "test_loss": 0.1,
                    "gap_acc": float(rng.random()),
                    "gap_loss": 0.1 * k,
                    "t": [1.0],
                    "mags": mags,
                }
            )
        )
    aggregate(tmp_path)
    data = json.loads((tmp_path / "trajectory.json").read_text())
    runs = data["runs"]
    for r in data["results"]:
        key = "magnitude" if r["measure"].startswith("Mag") else "positive_magnitude"
        ref = stats.kendalltau([x["mags"]["5"][key][0] for x in runs], [x[r["gap"]] for x in runs])
        assert r["tau"] == pytest.approx(ref.statistic)
    assert "| gap | measure |" in (tmp_path / "report.md").read_text()
