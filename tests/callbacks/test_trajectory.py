"""TrajectoryMagnitudeCallback: magnitude of the recorded trajectory vs an independent solve."""

from __future__ import annotations

import copy
import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from magtorch import MagtorchError
from magtorch.callbacks.trajectory import TrajectoryMagnitudeCallback
from tests.callbacks._toy import ToyClassifier, toy_loader

TS = [1.0, 20.0]


def oracle(vectors: np.ndarray, t: float) -> tuple[float, float]:
    """Mag and PMag of the rows of ``vectors``: float64 distances from differences, dense solve."""
    x = np.asarray(vectors, dtype=np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    w = np.linalg.solve(np.exp(-t * d), np.ones(len(x)))
    return float(w.sum()), float(np.clip(w, 0, None).sum())


class Snapshot(Callback):
    """Copies the module's state at on_train_end (runs before the trajectory callback)."""

    def on_train_end(self, trainer, pl_module):
        self.state = copy.deepcopy(pl_module.state_dict())


def fit(callbacks, tmp_path, max_epochs=1, logger=False):
    pl.seed_everything(0)
    model = ToyClassifier()
    trainer = pl.Trainer(
        max_epochs=max_epochs, callbacks=callbacks, logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, toy_loader())
    return trainer, model


def test_magnitude_equals_direct_computation_and_steps_are_sgd(tmp_path):
    snap = Snapshot()
    loader = toy_loader(shuffle=False)
    cb = TrajectoryMagnitudeCallback(
        t=TS, n_steps=15, storage="memory", keep_trajectory=True, dataloader=loader
    )
    trainer, model = fit([snap, cb], tmp_path)
    vectors = cb.trajectory.numpy()
    assert vectors.shape == (15, sum(p.numel() for p in model.parameters()))
    for i, t in enumerate(TS):
        mag, pmag = oracle(vectors, t)
        assert cb.results["magnitude"][i] == pytest.approx(mag, rel=1e-7)
        assert cb.results["positive_magnitude"][i] == pytest.approx(pmag, rel=1e-7)
    assert 1.0 < cb.results["magnitude"][0] < cb.results["magnitude"][1] <= 15.0 + 1e-9

    # restore=True: the module is back at its converged state
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap.state[k]), k
    # the first point is one plain SGD step from the converged state on the first batch
    ref = ToyClassifier()
    ref.load_state_dict(snap.state)
    x, y, _ = next(iter(loader))
    torch.nn.functional.cross_entropy(ref(x), y).backward()
    expected = torch.cat([(p - ref.lr * p.grad).detach().reshape(-1) for p in ref.parameters()])
    torch.testing.assert_close(cb.trajectory[0], expected, rtol=1e-6, atol=1e-7)


def test_disk_gram_and_subsampling_equal_memory_path(tmp_path):
    loader = toy_loader(shuffle=False)
    common = {"t": TS, "n_steps": 12, "keep_trajectory": True, "dataloader": loader}
    mem = TrajectoryMagnitudeCallback(storage="memory", filename=None, **common)
    disk = TrajectoryMagnitudeCallback(
        storage="disk", block_rows=5, scratch_dir=str(tmp_path), filename=None, **common
    )
    sub = TrajectoryMagnitudeCallback(
        storage="memory", every_k_steps=3, log_prefix="sub", filename=None, **common
    )
    sketch = TrajectoryMagnitudeCallback(storage="sketch", sketch_dim=8192, filename=None, **common)
    fit([mem, disk, sub, sketch], tmp_path)
    assert disk.results["storage"] == "disk" and disk.trajectory is None
    assert list(tmp_path.glob("magtorch-trajectory-*")) == []  # the memmap is removed
    torch.testing.assert_close(disk.distances, mem.distances, rtol=1e-9, atol=1e-12)
    assert disk.results["magnitude"] == pytest.approx(mem.results["magnitude"], rel=1e-9)
    # every third step of the same deterministic run
    assert sub.results["n_points"] == 4
    torch.testing.assert_close(sub.trajectory, mem.trajectory[2::3])
    for i, t in enumerate(TS):
        assert sub.results["magnitude"][i] == pytest.approx(oracle(mem.trajectory[2::3], t)[0])
    # the sketch is approximate: relative error of distances ~ sqrt(2/k) at worst
    off = ~torch.eye(12, dtype=torch.bool)
    rel = (sketch.distances[off] / mem.distances[off] - 1).abs().max()
    assert rel < 0.1
    assert sketch.results["magnitude"] == pytest.approx(mem.results["magnitude"], rel=0.05)


def test_logged_saved_and_state(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    cb = TrajectoryMagnitudeCallback(t=TS, n_steps=6, every_k_steps=2)
    trainer, _ = fit([cb], tmp_path, logger=logger)
    with open(f"{trainer.log_dir}/trajectory_magnitude.json") as fh:
        saved = json.load(fh)
    assert saved["magnitude"] == cb.results["magnitude"] and saved["n_points"] == 3
    assert saved["storage"] == "memory" and saved["converged"]
    with open(f"{trainer.log_dir}/metrics.csv") as fh:
        header = fh.readline()
    for key in ("trajectory/magnitude/t=1", "trajectory/positive_magnitude/t=20"):
        assert key in header
    cb2 = TrajectoryMagnitudeCallback(t=TS, n_steps=6, every_k_steps=2)
    cb2.load_state_dict(cb.state_dict())
    assert cb2.results == cb.results and cb2._done
    assert cb2.state_key == cb.state_key


def test_at_epoch_runs_once_and_training_continues(tmp_path):
    cb = TrajectoryMagnitudeCallback(t=1.0, n_steps=4, at_epoch=0, filename=None)
    trainer, _ = fit([cb], tmp_path, max_epochs=2)
    assert cb.results["epoch"] == 0 and trainer.current_epoch == 2
    assert trainer.global_step == 2 * 3  # the callback's steps do not move Lightning's counters


def test_fast_dev_run_skips(tmp_path):
    pl.seed_everything(0)
    cb = TrajectoryMagnitudeCallback(t=1.0, n_steps=4)
    trainer = pl.Trainer(fast_dev_run=True, callbacks=[cb], enable_progress_bar=False)
    trainer.fit(ToyClassifier(), toy_loader())
    assert cb.results is None


def test_manual_optimization_is_refused(tmp_path):
    class Manual(ToyClassifier):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    trainer = pl.Trainer(
        max_epochs=1, callbacks=[TrajectoryMagnitudeCallback(t=1.0)], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with pytest.raises(MagtorchError, match="manual"):
        trainer.fit(Manual(), toy_loader())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"t": -1.0}, "t"),
        ({"t": []}, "t"),
        ({"t": 1.0, "n_steps": 0}, "n_steps"),
        ({"t": 1.0, "every_k_steps": 0}, "every_k_steps"),
        ({"t": 1.0, "n_steps": 2, "every_k_steps": 3}, "every_k_steps"),
        ({"t": 1.0, "at_epoch": -1}, "at_epoch"),
        ({"t": 1.0, "storage": "ram"}, "storage"),
        ({"t": 1.0, "max_memory_bytes": 0}, "max_memory_bytes"),
        ({"t": 1.0, "block_rows": 0}, "block_rows"),
        ({"t": 1.0, "sketch_dim": 0}, "sketch_dim"),
        ({"t": 1.0, "scratch_dir": "/no/such/dir"}, "scratch_dir"),
        ({"t": 1.0, "dataloader": 3}, "dataloader"),
        ({"t": 1.0, "restore": 1}, "restore"),
        ({"t": 1.0, "include": 5}, "include"),
        ({"t": 1.0, "filename": ""}, "filename"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(MagtorchError, match=name):
        TrajectoryMagnitudeCallback(**kwargs)


# ----------------------------------------------------------------------------- DDP


class DoubleToy(ToyClassifier):
    """The toy classifier in float64, so that one and two processes agree to rounding."""

    def __init__(self) -> None:
        super().__init__()
        self.double()

    def forward(self, x):
        return super().forward(x.double())


def _trajectory_results(tmp_path, **trainer_kwargs) -> dict:
    """Full-batch SGD (48 points; on 2 ranks 24 each, gradients averaged by DDP: the same
    steps), then the callback's 12 further steps; returns the JSON rank zero wrote."""
    pl.seed_everything(0)
    cb = TrajectoryMagnitudeCallback(t=TS, n_steps=12, every_k_steps=1)
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[cb], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accelerator="cpu", **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(DoubleToy(), toy_loader(batch_size=48, shuffle=False))
    with open(tmp_path / "trajectory_magnitude.json") as fh:
        return json.load(fh)


@pytest.fixture
def file_system_sharing():
    """Share tensors with spawned workers through files (see the potential callback's test)."""
    import torch.multiprocessing as mp

    before = mp.get_sharing_strategy()
    mp.set_sharing_strategy("file_system")
    yield
    mp.set_sharing_strategy(before)


def test_ddp_two_processes_match_one(tmp_path, file_system_sharing):
    one = _trajectory_results(tmp_path / "one")
    two = _trajectory_results(tmp_path / "two", devices=2, strategy="ddp_spawn")
    assert two["n_points"] == one["n_points"] == 12
    assert two["step_distance_mean"] == pytest.approx(one["step_distance_mean"], rel=1e-9)
    for key in ("magnitude", "positive_magnitude"):
        assert two[key] == pytest.approx(one[key], rel=1e-9), key
