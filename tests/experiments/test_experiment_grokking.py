"""experiment=grokking at tiny size (p = 11): the config composes, trains, and the report's
numbers match recomputations from the checkpoint (float64 NumPy leave-one-out ratios, the
held-out accuracy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("lightning")
pytest.importorskip("matplotlib")

from experiments.analysis.grokking import aggregate  # noqa: E402
from experiments.data.modular import ModularArithmeticDataModule  # noqa: E402
from experiments.models.embedding import EmbeddingMLP  # noqa: E402
from experiments.train import train  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402
from tests.experiments._experiments import load_model, loo_ratio_reference  # noqa: E402

TINY = [
    "experiment=grokking",
    "data.p=11",
    "data.train_fraction=0.5",
    "model.embed_dim=8",
    "model.hidden=16",
    "trainer.max_epochs=6",
    "callbacks.potential.every_n_epochs=2",
    "logger=none",
    "save_checkpoint=true",
]


def test_grokking_config_composes_to_the_issue_setting() -> None:
    cfg = compose_train(["experiment=grokking"])
    assert cfg.data.p == 97 and 0.3 <= cfg.data.train_fraction <= 0.5
    assert cfg.data.batch_size is None  # full batch
    assert (cfg.module.optimizer, cfg.module.lr, cfg.module.weight_decay) == ("adamw", 1e-3, 1.0)
    assert cfg.model._target_ == "experiments.models.embedding.EmbeddingMLP"
    assert cfg.report._target_ == "experiments.analysis.grokking.report"


def test_grokking_tiny_run_matches_recomputation(tmp_path) -> None:
    metrics = train(compose_train([*TINY, f"output_dir={tmp_path}"]))
    saved = json.loads((tmp_path / "grokking.json").read_text())
    series = saved["series"]
    assert series["epochs"] == list(range(6)) and series["ratio_epochs"] == [1, 3, 5]
    assert (tmp_path / "grokking.png").stat().st_size > 0
    assert "sustained q-crossing" in (tmp_path / "report.md").read_text()

    dm = ModularArithmeticDataModule(p=11, train_fraction=0.5, seed=0)
    dm.setup()
    model = load_model(EmbeddingMLP(11, (2,), embed_dim=8, hidden=16), tmp_path)
    with torch.no_grad():
        logits = model(dm.train_set.x).double().numpy()
        val_acc = float((model(dm.val_set.x).argmax(1) == dm.val_set.y).double().mean())
    assert series["test_acc"][-1] == pytest.approx(val_acc, abs=1e-6)
    ref = loo_ratio_reference(logits, dm.train_set.y.numpy(), series["t"][-1])
    assert series["ratio"][-1] == pytest.approx(float(np.mean(ref)), rel=1e-6)
    assert metrics["grokking/lead_onset"] == saved["summary"]["lead_onset"] or (
        saved["summary"]["lead_onset"] is None
    )

    combined = aggregate(tmp_path.parent, out=tmp_path / "combined")
    assert "weight decay 1" in combined.read_text()
