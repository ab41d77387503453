"""WeightMagnitudeCallback: logged values against closed forms computed here, schedule, resume."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from magtorch import MagtorchError
from magtorch.callbacks.weights import WeightMagnitudeCallback
from tests.callbacks._toy import ToyClassifier, toy_loader


def line_mag(values: np.ndarray, t: float) -> float:
    """1 + sum tanh(t g / 2) over the gaps of the sorted distinct values (independent oracle)."""
    v = np.unique(np.asarray(values, dtype=np.float64).ravel())
    return 1.0 + float(np.tanh(t * np.diff(v) / 2).sum())


def dense_mag(points: np.ndarray, t: float) -> float:
    """1^T Z^{-1} 1 with Z = exp(-t |x_i - x_j|), float64 dense solve (independent oracle)."""
    x = np.asarray(points, dtype=np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return float(np.linalg.solve(np.exp(-t * d), np.ones(len(x))).sum())


def fit(callback, tmp_path, max_epochs=2, **kwargs):
    pl.seed_everything(0)
    model = ToyClassifier()
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )
    trainer.fit(model, toy_loader())
    return trainer, model


def test_scalar_values_match_closed_form_and_are_logged(tmp_path):
    ts = [0.5, 2.0]
    cb = WeightMagnitudeCallback(t=ts)
    trainer, model = fit(cb, tmp_path)
    assert [h["epoch"] for h in cb.history] == [0, 1]
    last = cb.history[-1]["values"]
    w_body = model.body[0].weight.detach().numpy()
    w_head = model.head.weight.detach().numpy()
    for i, t in enumerate(ts):
        assert last["weight_magnitude/body.0.weight"][i] == pytest.approx(line_mag(w_body, t))
        assert last["weight_magnitude/head.weight"][i] == pytest.approx(line_mag(w_head, t))
        union = np.concatenate([w_body.ravel(), w_head.ravel()])
        assert last["weight_magnitude/model"][i] == pytest.approx(line_mag(union, t))
        key = f"weight_magnitude/model/t={t:g}"
        assert float(trainer.callback_metrics[key]) == pytest.approx(line_mag(union, t), rel=1e-6)
    assert "weight_magnitude/body.0.weight/t=0.5" in trainer.callback_metrics
    assert not any("bias" in k for k in trainer.callback_metrics)


def test_neurons_mode_matches_dense_solve(tmp_path):
    cb = WeightMagnitudeCallback(t=1.5, mode="neurons", log_prefix="wm")
    trainer, model = fit(cb, tmp_path, max_epochs=1)
    rows_body = model.body[0].weight.detach().numpy()
    rows_head = model.head.weight.detach().numpy()
    values = cb.history[-1]["values"]
    assert values["wm/body.0.weight"][0] == pytest.approx(dense_mag(rows_body, 1.5), rel=1e-5)
    assert values["wm/head.weight"][0] == pytest.approx(dense_mag(rows_head, 1.5), rel=1e-5)
    total = dense_mag(rows_body, 1.5) + dense_mag(rows_head, 1.5)
    assert float(trainer.callback_metrics["wm/model"]) == pytest.approx(total, rel=1e-5)


def test_every_n_epochs_and_include(tmp_path):
    cb = WeightMagnitudeCallback(t=1.0, every_n_epochs=2, include="head.*")
    fit(cb, tmp_path, max_epochs=5)
    assert [h["epoch"] for h in cb.history] == [1, 3]
    assert set(cb.history[0]["values"]) == {
        "weight_magnitude/head.weight",
        "weight_magnitude/head.bias",
        "weight_magnitude/model",
    }


def test_resume_continues_history(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    cb = WeightMagnitudeCallback(t=1.0)
    pl.seed_everything(0)
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[cb, ckpt], logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(ToyClassifier(), toy_loader())
    assert len(cb.history) == 2

    cb2 = WeightMagnitudeCallback(t=1.0)
    trainer2 = pl.Trainer(
        max_epochs=3, callbacks=[cb2], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer2.fit(ToyClassifier(), toy_loader(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert [h["epoch"] for h in cb2.history] == [0, 1, 2]
    assert cb2.history[:2] == cb.history

    cb3 = WeightMagnitudeCallback(t=1.0)
    cb3.load_state_dict(cb2.state_dict())
    assert cb3.history == cb2.history and cb3.state_key == cb2.state_key
    assert cb3.state_key != WeightMagnitudeCallback(t=2.0).state_key


def test_fast_dev_run_smoke(tmp_path):
    cb = WeightMagnitudeCallback()
    fit(cb, tmp_path, fast_dev_run=True)
    assert len(cb.history) == 1
    assert math.isfinite(cb.history[0]["values"]["weight_magnitude/model"][0])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"t": 0.0}, "t"),
        ({"t": []}, "t"),
        ({"t": [1.0, float("nan")]}, "t"),
        ({"t": "1"}, "t"),
        ({"mode": "sampled"}, "mode"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"every_n_epochs": 1.5}, "every_n_epochs"),
        ({"include": 3}, "include"),
        ({"log_prefix": ""}, "log_prefix"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(MagtorchError, match=name):
        WeightMagnitudeCallback(**kwargs)


def test_compute_without_trainer():
    model = ToyClassifier()
    with torch.no_grad():
        model.head.weight.copy_(torch.arange(36.0).reshape(3, 12) * 0.1)
    values = WeightMagnitudeCallback(t=2.0).compute(model)
    expected = line_mag(model.head.weight.detach().numpy(), 2.0)
    assert values["weight_magnitude/head.weight"][0] == pytest.approx(expected)
