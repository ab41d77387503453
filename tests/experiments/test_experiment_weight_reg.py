"""experiment=weight_reg: two tiny runs (λ = 0 and 0.5) through the Hydra CLI multirun with the
sweep report; the weight magnitude and losses match recomputations from the checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

pytest.importorskip("hydra")
pytest.importorskip("lightning")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from hydra.utils import instantiate  # noqa: E402

from experiments.analysis.weight_reg import aggregate  # noqa: E402
from experiments.train import train  # noqa: E402
from tests.experiments._compose import compose_train, run_cli  # noqa: E402
from tests.experiments._experiments import load_model  # noqa: E402

TINY = [
    "experiment=weight_reg",
    "data.max_train_samples=200",
    "model.hidden=[16,16]",
    "trainer.max_epochs=2",
    "logger=none",
]


def test_weight_reg_config_composes_with_the_paper_grid() -> None:
    cfg = compose_train(["experiment=weight_reg"])
    assert cfg.regularizer._target_ == "magtorch.nn.WeightMagnitudeRegularizer"
    assert len(cfg.model.hidden) == 2


def test_weight_reg_run_matches_closed_form(tmp_path) -> None:
    cfg = compose_train(
        [*TINY, "module.regularizer_weight=0.5", "save_checkpoint=true", f"output_dir={tmp_path}"]
    )
    train(cfg)
    row = json.loads((tmp_path / "weight_reg.json").read_text())
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model, input_shape=tuple(dm.input_shape), num_classes=dm.num_classes)
    model = load_model(model, tmp_path)
    # Exact magnitude of points on a line: 1 + sum_k tanh(t g_k / 2) over sorted gaps.
    w = np.sort(
        np.concatenate(
            [p.detach().double().numpy().ravel() for p in model.parameters() if p.dim() >= 2]
        )
    )
    expected = 1.0 + np.tanh(1.0 * np.diff(w) / 2).sum()
    assert row["lam"] == 0.5 and row["magnitude"] == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        train_loss = float(F.cross_entropy(model(dm.train_set.x), dm.train_set.y))
        test_loss = float(F.cross_entropy(model(dm.val_set.x), dm.val_set.y))
    assert row["train_loss"] == pytest.approx(train_loss, rel=1e-5)
    assert row["gap"] == pytest.approx(test_loss - train_loss, rel=1e-4, abs=1e-6)


def test_weight_reg_multirun_writes_the_sweep_report(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    res = run_cli(["-m", *TINY, "module.regularizer_weight=0.0,0.5", f"hydra.sweep.dir={sweep}"])
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads((sweep / str(i) / "weight_reg.json").read_text()) for i in (0, 1)]
    assert sorted(r["lam"] for r in rows) == [0.0, 0.5]
    report = (sweep / "report.md").read_text()
    assert "| λ | train loss |" in report and (sweep / "weight_reg.png").stat().st_size > 0
    summary = json.loads((sweep / "weight_reg.json").read_text())
    # two points: tau is +-1 (or undefined on a tie) with the sign of the change
    mags = sorted(rows, key=lambda r: r["lam"])
    sign = np.sign(mags[1]["magnitude"] - mags[0]["magnitude"])
    tau = summary["trend"]["magnitude"]["tau"]
    assert tau == sign or (sign == 0 and math.isnan(tau))
    assert aggregate(sweep).exists()
