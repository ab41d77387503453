"""experiment=partition and the partition parts of the grokking report at tiny size: the configs
compose, the runs write their reports, and the reported numbers match float64 NumPy
recomputations from the saved checkpoint (pre-activations and their gradients by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("lightning")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from experiments.data.modular import ModularArithmeticDataModule  # noqa: E402
from experiments.models.embedding import EmbeddingMLP  # noqa: E402
from experiments.train import train  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402


def _mlp_boundary_and_codes(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray):
    """Boundary distance min_k |z_k| / ||grad z_k|| and activation codes of a ReLU MLP, float64,
    with the Jacobians of the pre-activations multiplied out by hand."""
    h, jac = x, np.broadcast_to(np.eye(x.shape[1]), (len(x), x.shape[1], x.shape[1]))
    zs, grads = [], []
    for w, b in layers:
        z = h @ w.T + b
        g = np.einsum("kj,njd->nkd", w, jac)
        zs.append(z)
        grads.append(g)
        mask = (z > 0).astype(np.float64)
        h, jac = z * mask, g * mask[:, :, None]
    z, g = np.concatenate(zs, 1), np.concatenate(grads, 1)
    norm = np.linalg.norm(g, axis=2)
    ratio = np.where(norm > 0, np.abs(z) / np.where(norm > 0, norm, 1.0), np.inf)
    return ratio.min(1), z > 0


def test_partition_config_composes_to_the_two_settings() -> None:
    cfg = compose_train(["experiment=partition"])
    assert cfg.data.name == "gaussian_mixture" and list(cfg.model.hidden) == [16, 16]
    assert cfg.data.flip_fraction > 0 and cfg.report.partition.walk
    assert cfg.report._target_ == "experiments.analysis.memorization.write_report"
    wide = compose_train(["experiment=partition", "data=digits", "model.hidden=[256,256]"])
    assert wide.data.name == "digits" and wide.data.flip_fraction == cfg.data.flip_fraction
    grok = compose_train(["experiment=grokking"])
    assert grok.callbacks.partition.input_layer == "model.embed"


def test_partition_experiment_tiny_run_matches_recomputation(tmp_path) -> None:
    overrides = [
        "experiment=partition",
        "debug=fast",
        "data.n_samples=120",
        "logger=none",
        "save_checkpoint=true",
        "report.n_bootstrap=10",
        f"output_dir={tmp_path}",
    ]
    cfg = compose_train(overrides)
    metrics = train(cfg)
    for key in ("boundary_near", "cells_crossed", "cell_disagreement", "ratio", "final_loss"):
        assert f"memorization/auroc/{key}" in metrics
    report = (tmp_path / "report.md").read_text()
    assert "Partition geometry beside the ratio" in report and "cell_disagreement" in report
    saved = json.loads((tmp_path / "partition.json").read_text())
    assert (tmp_path / "partition_cells.png").stat().st_size > 0

    state = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    sd = {k.removeprefix("model."): v.double().numpy() for k, v in state["state_dict"].items()}
    linear = sorted({k.rsplit(".", 1)[0] for k in sd if k.endswith(".weight")})
    layers = [(sd[f"{n}.weight"], sd[f"{n}.bias"]) for n in linear[:-1]]  # hidden layers
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup()
    x = dm.train_set.x.double().numpy()
    dist, codes = _mlp_boundary_and_codes(layers, x)
    scores = np.load(tmp_path / "memorization_scores.npz")
    np.testing.assert_allclose(-scores["score_boundary_near"], dist, rtol=1e-4, atol=1e-6)
    num_cells = len({row.tobytes() for row in codes})
    assert saved["stats"]["num_cells"] == num_cells
    singles = np.unique(codes, axis=0, return_counts=True)[1]
    assert saved["stats"]["frac_singleton"] == pytest.approx((singles == 1).sum() / len(x))


def test_grokking_report_has_partition_series(tmp_path) -> None:
    overrides = [
        "experiment=grokking",
        "data.p=11",
        "data.train_fraction=0.5",
        "model.embed_dim=4",
        "model.hidden=8",
        "trainer.max_epochs=6",
        "callbacks.potential.every_n_epochs=2",
        "callbacks.partition.every_n_epochs=2",
        "logger=none",
        "save_checkpoint=true",
        f"output_dir={tmp_path}",
    ]
    metrics = train(compose_train(overrides))
    series = json.loads((tmp_path / "grokking.json").read_text())["series"]
    assert series["partition_epochs"] == [1, 3, 5]
    assert "## Partition geometry (issue 7)" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "partition.png").stat().st_size > 0
    assert "grokking/partition/num_cells_T10" in metrics

    # The last scoring: all 60 training points (max_samples 1000 > 60) in embedding space.
    dm = ModularArithmeticDataModule(p=11, train_fraction=0.5, seed=0)
    dm.setup()
    model = EmbeddingMLP(11, (2,), embed_dim=4, hidden=8)
    state = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state["state_dict"].items()})
    e = model.embed.weight.detach().double().numpy()[dm.train_set.x.numpy()].reshape(60, -1)
    lin = model.body[0]
    dist, codes = _mlp_boundary_and_codes(
        [(lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy())], e
    )
    part = series["partition"]
    assert part["num_cells"][-1] == len({row.tobytes() for row in codes})
    assert part["boundary_mean"][-1] == pytest.approx(float(dist.mean()), rel=1e-4)
