"""PartitionCallback: logged numbers equal a direct partition_summary; Lightning rules."""

from __future__ import annotations

import os

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("scipy")

from torch.utils.data import DataLoader  # noqa: E402

from magtorch.callbacks import PartitionCallback  # noqa: E402
from magtorch.errors import MagtorchError  # noqa: E402
from magtorch.partition import partition_summary, summary_scalars  # noqa: E402
from tests.callbacks._toy import (  # noqa: E402
    PairDataset,
    ToyClassifier,
    ToyDataset,
    make_trainer,
    toy_loader,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
]


def fit(tmp_path, callback, loader=None, **kwargs):
    torch.manual_seed(0)
    model = ToyClassifier(hidden=6)
    trainer = make_trainer(tmp_path, callbacks=[callback], **kwargs)
    trainer.fit(model, toy_loader() if loader is None else loader)
    return trainer, model


def test_logged_scores_equal_a_direct_computation(tmp_path):
    cb = PartitionCallback(every_n_epochs=1, alpha=0.5)
    trainer, model = fit(tmp_path, cb)
    assert cb.scored_epochs == [0, 1] and len(cb.history) == 2
    data = ToyDataset()
    model.train()
    direct = partition_summary(model, data.x, data.y, alpha=0.5)
    assert model.training
    scalars = summary_scalars(direct)
    for key, value in scalars.items():
        logged = trainer.callback_metrics[f"partition/{key}"]
        assert float(logged) == pytest.approx(value, rel=1e-6, nan_ok=True), key
        assert cb.history[-1][key] == pytest.approx(value, rel=1e-12, nan_ok=True)
    assert torch.equal(cb.summary["cell_id"], direct["cell_id"])
    torch.testing.assert_close(cb.summary["boundary_distance"], direct["boundary_distance"])
    torch.testing.assert_close(cb.summary["ollivier"], direct["ollivier"])
    assert cb.summary["index"].tolist() == list(range(48))
    saved = torch.load(
        os.path.join(tmp_path, "partition", "partition_epoch0001.pt"), weights_only=False
    )
    assert saved["num_cells"] == direct["num_cells"] and saved["epoch"] == 1
    assert os.path.exists(os.path.join(tmp_path, "partition", "partition_epoch0000.pt"))
    assert scalars["num_cells"] > 1 and scalars["num_edges"] > 0  # not a degenerate case


def test_max_samples_user_loader_and_every_n(tmp_path):
    loader = DataLoader(PairDataset(), batch_size=10, shuffle=False)
    cb = PartitionCallback(every_n_epochs=2, scoring=loader, max_samples=25, save=False)
    trainer, model = fit(tmp_path, cb, max_epochs=2)
    assert cb.scored_epochs == [1]
    data = PairDataset()
    direct = partition_summary(model, data.x[:25], data.y[:25])  # the first 25 samples
    assert cb.summary["num_samples"] == 25.0 and cb.summary["index"].tolist() == list(range(25))
    for key, value in summary_scalars(direct).items():
        assert cb.summary[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    cb2 = PartitionCallback(max_samples=20, save=False, curvature=False, walk=False)
    fit(tmp_path, cb2, max_epochs=1)
    assert cb2.summary["num_samples"] == 20.0 and "ollivier" not in cb2.summary
    assert len(set(cb2.summary["index"].tolist())) == 20


def test_sanity_and_fast_dev_run_do_not_score(tmp_path):
    cb = PartitionCallback(save=False)
    fit(tmp_path, cb, fast_dev_run=True)
    assert cb.scored_epochs == [] and cb.summary is None


def test_state_dict_round_trip():
    cb = PartitionCallback()
    cb.scored_epochs, cb.history = [0, 1], [{"epoch": 0.0, "num_cells": 3.0}]
    other = PartitionCallback()
    other.load_state_dict(cb.state_dict())
    assert other.scored_epochs == [0, 1] and other.history == cb.history
    assert "PartitionCallback" in cb.state_key


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"layers": "body"}, "layers"),
        ({"scoring": "val"}, "scoring"),
        ({"max_samples": 1}, "max_samples"),
        ({"adjacency": "bits"}, "adjacency"),
        ({"adjacency": "walk", "walk": False}, "walk"),
        ({"alpha": 1.0}, "alpha"),
        ({"save": 1}, "save"),
        ({"prefix": ""}, "prefix"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(MagtorchError, match=match):
        PartitionCallback(**kwargs)


def test_named_layers_and_missing_layer(tmp_path):
    cb = PartitionCallback(layers=["body.1"], save=False, curvature=False)
    fit(tmp_path, cb, max_epochs=1)
    assert cb.summary["num_units"] == 6.0
    bad = PartitionCallback(layers=["nope"], save=False)
    with pytest.raises(MagtorchError, match="nope"):
        fit(tmp_path, bad, max_epochs=1)


class TokenClassifier(pl.LightningModule):
    """Tokens -> embedding -> Linear+ReLU -> logits (discrete inputs: a grokking-style model)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(7, 2)
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU())
        self.head = torch.nn.Linear(5, 7)

    def forward(self, tokens):
        return self.head(self.body(self.embed(tokens).flatten(1)))

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_input_layer_for_token_inputs(tmp_path):
    a, b = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    tokens = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
    labels = (tokens[:, 0] + tokens[:, 1]) % 7
    loader = DataLoader(torch.utils.data.TensorDataset(tokens, labels), batch_size=49)
    torch.manual_seed(0)
    model = TokenClassifier()
    cb = PartitionCallback(input_layer="embed", layers=["body.1"], save=False)
    make_trainer(tmp_path, callbacks=[cb], max_epochs=1).fit(model, loader)
    from magtorch.partition import input_layer_view

    view, e = input_layer_view(model, "embed", tokens)
    direct = partition_summary(view, e, labels)
    assert cb.summary["num_units"] == 5.0
    for key, value in summary_scalars(direct).items():
        assert cb.summary[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    with pytest.raises(MagtorchError, match="input_layer"):
        PartitionCallback(input_layer="")


def test_scoring_restores_train_modes_and_leaves_weights_alone(tmp_path):
    seen = {}

    class Before(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            pl_module.head.eval()  # a mixed state must come back as it was
            seen["weight"] = pl_module.body[0].weight.detach().clone()

    class After(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen["modes"] = (pl_module.training, pl_module.body.training, pl_module.head.training)
            seen["same"] = torch.equal(pl_module.body[0].weight, seen["weight"])

    cb = PartitionCallback(save=False)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, callbacks=[Before(), cb, After()], max_epochs=1)
    trainer.fit(ToyClassifier(hidden=6), toy_loader())
    assert cb.scored_epochs == [0]
    assert seen["modes"] == (True, True, False) and seen["same"]
    assert not cb.summary["boundary_distance"].requires_grad
