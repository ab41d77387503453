"""experiments/analysis/partition.py on constructed cases: per-sample scores against closed forms
(axis-aligned hyperplanes: quadrant cells, distance min(|x|, |y|), crossings = sign changes),
the disagreement against a brute-force loop, the statistics against scipy/scikit-learn, the
change-point table against hand-computed epochs, and the memorisation hook's bookkeeping."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

pytest.importorskip("hydra")
pytest.importorskip("lightning")
pytest.importorskip("matplotlib")
stats = pytest.importorskip("scipy.stats")
skm = pytest.importorskip("sklearn.metrics")

from experiments.analysis.partition import (  # noqa: E402
    aggregate,
    cell_disagreement,
    memorization_partition,
    partition_scores,
    plot_cells_2d,
    score_rows,
    series_changes,
    series_markdown,
)
from magtorch.errors import MagtorchError  # noqa: E402


def _quadrant_net(scale: tuple[float, float] = (1.0, 1.0)) -> nn.Module:
    """2 -> 2 (identity up to positive row scales, zero bias) -> ReLU -> 3 logits: the cells are
    the four quadrants, the boundary distance of x is min(|x_1|, |x_2|) for any scales."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.diag(torch.tensor(scale)))
        net[0].bias.zero_()
    return net.double()


def test_cell_disagreement_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=60)
    labels = rng.integers(0, 3, size=60)
    ours = cell_disagreement(torch.tensor(ids), torch.tensor(labels)).numpy()
    for i in range(60):
        others = [j for j in range(60) if j != i and ids[j] == ids[i]]
        expected = np.mean([labels[j] != labels[i] for j in others]) if others else 0.0
        assert ours[i] == pytest.approx(expected, abs=1e-15)
    with pytest.raises(MagtorchError, match="cell_id and labels"):
        cell_disagreement(torch.tensor([0, 1]), torch.tensor([0.5, 1.0]))


def test_partition_scores_on_quadrant_cells() -> None:
    net = _quadrant_net((2.0, 0.5))
    x = torch.tensor(
        [[1.0, 2.0], [1.5, 2.5], [0.3, 3.0], [-1.0, 0.2], [-2.0, -0.7], [3.0, -0.1]],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 0, 1, 2, 1, 2])
    stats_, scores, summary = partition_scores(net, x, y)
    # Cells: quadrant I holds 3 points, II, III, IV one each.
    assert stats_["num_cells"] == 4.0 and stats_["frac_singleton"] == pytest.approx(3 / 6)
    np.testing.assert_allclose(scores["boundary_near"], -np.abs(x.numpy()).min(1), rtol=1e-12)
    # Nearest neighbours by hand; crossings = coordinates whose sign differs.
    xn = x.numpy()
    d = np.linalg.norm(xn[:, None] - xn[None], axis=-1) + np.diag(np.full(6, np.inf))
    nn_idx = d.argmin(1)
    expected = (np.sign(xn) != np.sign(xn[nn_idx])).sum(1)
    np.testing.assert_array_equal(scores["cells_crossed"], expected)
    # Quadrant I: labels 0, 0, 1 -> 1/2, 1/2, 1; singletons 0.
    np.testing.assert_allclose(scores["cell_disagreement"], [0.5, 0.5, 1.0, 0.0, 0.0, 0.0])
    assert stats_["mean_purity"] == pytest.approx((3 * (2 / 3) + 3 * 1.0) / 6)
    assert summary["cell_id"].shape == (6,)


def test_partition_scores_through_an_input_layer() -> None:
    class Tok(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(4, 1)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3))

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.body(self.embed(t))

    net = Tok().double()
    with torch.no_grad():
        net.embed.weight.copy_(torch.tensor([[-2.0], [-0.5], [0.25], [1.0]]))
        net.body[1].weight.copy_(torch.eye(2))
        net.body[1].bias.zero_()
    tokens = torch.tensor([[0, 3], [2, 3], [1, 1], [3, 0]])
    _, scores, _ = partition_scores(net, tokens, input_layer="embed")
    e = net.embed.weight[tokens][..., 0].detach().numpy()
    np.testing.assert_allclose(scores["boundary_near"], -np.abs(e).min(1), rtol=1e-12)


def test_score_rows_match_scipy_and_sklearn() -> None:
    rng = np.random.default_rng(1)
    mem = rng.normal(size=50)
    flipped = rng.random(50) < 0.2
    flipped[:2] = [True, False]
    s = mem + rng.normal(size=50)
    rows = score_rows({"s": s}, mem, flipped, n_boot=20)
    assert rows[0]["rho_all"] == pytest.approx(stats.spearmanr(s, mem).statistic, abs=1e-12)
    clean = ~flipped
    assert rows[0]["rho_clean"] == pytest.approx(
        stats.spearmanr(s[clean], mem[clean]).statistic, abs=1e-12
    )
    assert rows[0]["auroc"] == pytest.approx(skm.roc_auc_score(flipped, s), abs=1e-12)
    lo, hi = rows[0]["rho_all_ci"]
    assert lo <= rows[0]["rho_all"] <= hi
    # All ties (every point alone in its cell: disagreement 0): no information.
    tied = score_rows({"t": np.zeros(50)}, mem, flipped, n_boot=5)[0]
    assert math.isnan(tied["rho_all"]) and tied["auroc"] == 0.5


def test_series_changes_by_hand() -> None:
    epochs = [0, 100, 200, 300, 400, 500]
    series = {
        "rises": [1.0, 1.0, 1.2, 5.0, 9.0, 10.0],  # level 1.9 at q=0.1, 5.5 at q=0.5
        "flat": [4.0, 4.01, 3.99, 4.0, 4.02, 4.01],  # moves 0.01 < 2% of 4.02
        "nan": [0.0, math.nan, 1.0, 1.0, 1.0, 1.0],
        "blip": [5.0, 0.0, 5.0, 5.0, 0.0, 0.0],  # level 4.5 / 2.5: the blip at 100 is alone
    }
    out = series_changes(epochs, series, persist=2)
    assert (out["rises"]["T10"], out["rises"]["T50"]) == (300, 400)
    assert out["flat"]["T10"] is None and out["flat"]["T50"] is None
    assert out["nan"]["undefined"]
    assert (out["blip"]["T10"], out["blip"]["T50"]) == (400, 400)
    post = series_changes(epochs, {"nan": series["nan"]}, start=200)
    assert post["nan"]["T10"] is None and not post["nan"]["undefined"]
    table = series_markdown(out, {"test": 350})
    assert "| rises | 300 | 400 | 1 | 10 | 50 |" in table
    assert "undefined" in table


def test_plot_cells_2d(tmp_path: Path) -> None:
    path = plot_cells_2d(
        _quadrant_net(),
        torch.randn(20, 2).double(),
        torch.arange(20) % 3,
        tmp_path / "c.png",
        flipped=np.arange(20) < 2,
        resolution=30,
    )
    assert path.stat().st_size > 0
    with pytest.raises(MagtorchError, match="2-D inputs"):
        plot_cells_2d(nn.Linear(3, 2), torch.randn(4, 3), torch.zeros(4), tmp_path / "d.png")


class _Data:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def score_dataloader(self) -> list:
        return [
            (self.x[:4], self.y[:4], torch.arange(4)),
            (self.x[4:], self.y[4:], torch.arange(4, len(self.y))),
        ]


def test_memorization_hook_adds_scores_and_writes_json(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _quadrant_net()
    x = torch.randn(12, 2, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    mem = np.linspace(0.0, 1.0, 12)
    flipped = np.zeros(12, dtype=bool)
    flipped[[1, 5]] = True
    res = {"scores": {"ratio": -mem.copy()}, "mem": mem, "flipped": flipped}
    cfg = OmegaConf.create({"model": {"hidden": [2]}, "data": {"name": "quadrants"}})
    lines, metrics = memorization_partition(
        tmp_path,
        res,
        module=SimpleNamespace(model=net),
        datamodule=_Data(x, y),
        cfg=cfg,
        n_bootstrap=10,
    )
    expected = -np.abs(x.numpy()).min(1)
    np.testing.assert_allclose(res["scores"]["boundary_near"], expected, rtol=1e-12)
    assert metrics["memorization/spearman/boundary_near"] == pytest.approx(
        stats.spearmanr(expected, mem).statistic, abs=1e-12
    )
    saved = json.loads((tmp_path / "partition.json").read_text())
    assert saved["stats"]["num_samples"] == 12.0
    assert {r["score"] for r in saved["rows"]} == {
        "ratio",
        "boundary_near",
        "cells_crossed",
        "cell_disagreement",
    }
    assert (tmp_path / "partition_cells.png").exists()
    assert any("Partition geometry" in line for line in lines)
    combined = aggregate(tmp_path.parent, out=tmp_path / "combined")
    assert "boundary_near" in combined.read_text()
