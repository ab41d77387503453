"""experiment=neural_collapse at tiny size: NC1 in the report equals a loop reference computed
from the checkpoint's penultimate features, and the collapse-suppression penalty is active."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("lightning")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from hydra.utils import instantiate  # noqa: E402

from experiments.analysis.neural_collapse import aggregate, within_class_spread  # noqa: E402
from experiments.train import train  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402
from tests.experiments._experiments import load_model, nc1_reference  # noqa: E402

TINY = [
    "experiment=neural_collapse",
    "data.max_train_samples=200",
    "model.hidden=[16,16]",
    "trainer.max_epochs=4",
    "callbacks.potential.every_n_epochs=2",
    "logger=none",
    "save_checkpoint=true",
]


def test_neural_collapse_config_composes() -> None:
    cfg = compose_train(["experiment=neural_collapse"])
    assert cfg.data.flip_fraction > 0 and cfg.regularizer is None
    sup = compose_train(["experiment=neural_collapse", "regularizer=collapse_suppression"])
    assert sup.regularizer._target_.endswith("CollapseSuppression")
    assert sup.module.regularizer_weight > 0


def test_neural_collapse_tiny_run(tmp_path) -> None:
    out = tmp_path / "suppressed"
    cfg = compose_train([*TINY, "regularizer=collapse_suppression", f"output_dir={out}"])
    metrics = train(cfg)
    saved = json.loads((out / "neural_collapse.json").read_text())
    assert [r["epoch"] for r in saved["rows"]] == [1, 3]
    assert saved["label"].startswith("collapse suppressed")
    assert metrics["train/regularizer"] > 0  # the floor (0.5) is above the spread here

    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model, input_shape=tuple(dm.input_shape), num_classes=dm.num_classes)
    model = load_model(model, out)
    with torch.no_grad():
        h = model.body(dm.train_set.x).double()
    y = dm.train_set.y
    last = saved["rows"][-1]
    assert last["nc1"] == pytest.approx(nc1_reference(h.numpy(), y.numpy()), rel=1e-6)
    assert last["spread"] == pytest.approx(float(within_class_spread(h, y)), rel=1e-6)
    assert 0.0 <= last["auroc_flip"] <= 1.0
    report = aggregate(tmp_path)
    assert "collapse suppressed" in report.read_text()
