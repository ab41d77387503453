"""MagnitudePotentialCallback: scores against float64 references, Lightning rules, DDP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.callbacks import Callback  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import magtorch  # noqa: E402
from magtorch.callbacks import potential as potential_module  # noqa: E402
from magtorch.callbacks.potential import MagnitudePotentialCallback  # noqa: E402
from tests._reference import (  # noqa: E402
    as64,
    assert_close,
    ref_magnitude,
    ref_potential,
)
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
]

RTOL = 1e-8


def fit(tmp_path, callback, model=None, loader=None, **kwargs):
    torch.manual_seed(0)
    model = ToyClassifier() if model is None else model
    trainer = make_trainer(tmp_path, callbacks=[callback], **kwargs)
    trainer.fit(model, toy_loader() if loader is None else loader)
    return trainer, model


def saved(tmp_path, epoch, kind="potential"):
    path = os.path.join(tmp_path, "magnitude_potential", f"{kind}_epoch{epoch:04d}.pt")
    return torch.load(path, weights_only=True)


# ----------------------------------------------------------------------------- references


def ref_loo(z, labels, t):
    """h_{X_c minus i}(x_i) and h_{X minus i}(x_i) by deleting x_i and solving the rest."""
    z, labels = as64(z), torch.as_tensor(labels)
    n = len(z)
    own, every = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        rest = torch.arange(n) != i
        every[i] = ref_potential(z[i : i + 1], z[rest], t)[0]
        same = rest & (labels == labels[i])
        if same.any():
            own[i] = ref_potential(z[i : i + 1], z[same], t)[0]
    return own, every


def ref_against(z, labels, ref, ref_labels, t):
    """h_{R_c}(z) and h_R(z) with nothing left out."""
    z, ref = as64(z), as64(ref)
    every = ref_potential(z, ref, t)
    own = torch.zeros(len(z), dtype=torch.float64)
    for i in range(len(z)):
        members = ref_labels == labels[i]
        own[i] = ref_potential(z[i : i + 1], ref[members], t)[0]
    return own, every


def eval_outputs(module, x):
    with torch.no_grad():
        return module(x)


# ----------------------------------------------------------------------------- numbers


def test_saved_scores_equal_reference_from_saved_logits(tmp_path):
    ts = [0.5, 2.0]
    cb = MagnitudePotentialCallback(t=ts)
    trainer, model = fit(tmp_path, cb)
    data = ToyDataset()
    out = saved(tmp_path, 1)
    assert cb.scored_epochs == [0, 1]
    # the saved logits are the model's outputs on the training set after the last epoch
    model.eval()
    assert_close(out["logits"], eval_outputs(model, data.x), rtol=1e-6, atol=1e-6)
    assert torch.equal(out["index"], torch.arange(len(data)))
    assert torch.equal(out["label"], data.y)
    assert int(out["epoch"]) == 1
    assert_close(out["t"], torch.tensor(ts), rtol=0)
    assert out["ratio"].shape == (2, len(data))
    for k, t in enumerate(ts):
        own, every = ref_loo(out["logits"], data.y, t)
        assert_close(out["class_potential"][k], own, rtol=RTOL, atol=1e-12)
        assert_close(out["all_potential"][k], every, rtol=RTOL, atol=1e-12)
        assert_close(out["ratio"][k], own / every, rtol=1e-7)
    # callback.scores is what was saved, and the logged aggregates come from it
    for key in magtorch.callbacks.potential.SCORE_KEYS:
        assert torch.equal(cb.scores[key], out[key]), key
    logged = trainer.callback_metrics
    r1 = out["ratio"][1]
    assert float(logged["potential/t1/ratio_mean"]) == pytest.approx(float(r1.mean()), rel=1e-6)
    assert float(logged["potential/t1/frac_ratio_below_1"]) == pytest.approx(
        float((r1 < 1).double().mean())
    )
    assert float(logged["potential/t0/ratio_q50"]) == pytest.approx(
        float(torch.quantile(out["ratio"][0], 0.5)), rel=1e-5
    )
    for c in range(3):
        assert float(logged[f"potential/t0/ratio_mean_class_{c}"]) == pytest.approx(
            float(out["ratio"][0][data.y == c].mean()), rel=1e-6
        )


def test_convergence_scale_is_recorded(tmp_path):
    cb = MagnitudePotentialCallback(t="convergence", every_n_epochs=2)
    trainer, _ = fit(tmp_path, cb)
    out = saved(tmp_path, 1)
    t = float(out["t"])
    assert out["t"].dim() == 0 and out["ratio"].shape == (48,)
    assert float(trainer.callback_metrics["potential/t"]) == pytest.approx(t, rel=1e-6)
    # Mag(tX) = 0.95 n at the recorded scale (dense float64 reference on the saved logits)
    assert float(ref_magnitude(out["logits"], t)) == pytest.approx(0.95 * 48, rel=1e-6)
    own, every = ref_loo(out["logits"], out["label"], t)
    assert_close(out["ratio"], own / every, rtol=1e-7)


def test_heldout_scored_against_training_set(tmp_path):
    held = ToyDataset(n=20, seed=1)
    cb = MagnitudePotentialCallback(t=1.0, heldout=DataLoader(held, batch_size=7))
    fit(tmp_path, cb, max_epochs=1)
    train = saved(tmp_path, 0)
    out = saved(tmp_path, 0, "heldout")
    assert torch.equal(out["index"], torch.arange(20))
    own, every = ref_against(out["logits"], held.y, train["logits"], train["label"], 1.0)
    assert_close(out["all_potential"], every, rtol=RTOL, atol=1e-12)
    assert_close(out["class_potential"], own, rtol=RTOL, atol=1e-12)
    for key in ("class_potential", "all_potential", "ratio", "index"):
        assert torch.equal(cb.heldout_scores[key], out[key])


def test_layer_hook_scores_hidden_activations(tmp_path):
    cb = MagnitudePotentialCallback(t=0.7, layer="body")
    _, model = fit(tmp_path, cb, max_epochs=1)
    data = ToyDataset()
    out = saved(tmp_path, 0)
    model.eval()
    hidden = eval_outputs(model.body, data.x)
    assert out["logits"].shape == (48, 12)
    assert_close(out["logits"], hidden, rtol=1e-6, atol=1e-6)  # float32 forward, re-run
    own, every = ref_loo(out["logits"], data.y, 0.7)  # the scores follow from what was saved
    assert_close(out["all_potential"], every, rtol=RTOL, atol=1e-12)
    assert_close(out["class_potential"], own, rtol=RTOL, atol=1e-12)


def test_pairs_without_index_use_loader_positions(tmp_path):
    data = PairDataset()
    cb = MagnitudePotentialCallback(t=1.0, scoring=DataLoader(data, batch_size=10), save=False)
    fit(tmp_path, cb, max_epochs=1)
    assert torch.equal(cb.scores["index"], torch.arange(48))
    assert torch.equal(cb.scores["label"], data.y)
    shuffled = DataLoader(data, batch_size=10, shuffle=True)
    cb = MagnitudePotentialCallback(t=1.0, scoring=shuffled, save=False)
    with pytest.raises(magtorch.MagtorchError, match="shuffle"):
        fit(tmp_path, cb, max_epochs=1)


def test_max_samples_scores_a_fixed_subset(tmp_path, monkeypatch):
    cb = MagnitudePotentialCallback(t=1.0, max_samples=20)
    with pytest.warns(UserWarning, match="max_samples=20"):
        fit(tmp_path, cb, max_epochs=2)
    out = saved(tmp_path, 1)
    index = out["index"]
    assert len(index) == 20 and torch.equal(index, index.sort().values)
    assert torch.equal(index, saved(tmp_path, 0)["index"])  # the same subset every epoch
    assert torch.equal(out["label"], ToyDataset().y[index])
    # the subset is scored on its own: leave-one-out within the 20 points
    own, every = ref_loo(out["logits"], out["label"], 1.0)
    assert_close(out["ratio"], own / every, rtol=1e-7)
    monkeypatch.setattr(potential_module, "DENSE_LIMIT", 30)
    with pytest.raises(magtorch.MagtorchError, match="max_samples"):
        fit(tmp_path, MagnitudePotentialCallback(t=1.0, save=False), max_epochs=1)


# ----------------------------------------------------------------------------- Lightning rules


class ModeProbe(Callback):
    """Freezes ``body`` in eval mode; records the modes seen by the head during scoring and
    the modes after the potential callback ran."""

    def __init__(self):
        self.during = []
        self.after = []

    def on_train_epoch_start(self, trainer, pl_module):
        pl_module.body.eval()

    def setup(self, trainer, pl_module, stage):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled():
                self.during.append((module.training, pl_module.training))

        pl_module.head.register_forward_hook(hook)

    def on_train_epoch_end(self, trainer, pl_module):
        self.after.append((pl_module.training, pl_module.body.training, pl_module.head.training))


def test_eval_no_grad_during_scoring_and_modes_restored(tmp_path):
    probe = ModeProbe()
    torch.manual_seed(0)
    trainer = make_trainer(
        tmp_path, callbacks=[MagnitudePotentialCallback(t=1.0, save=False), probe]
    )
    trainer.fit(ToyClassifier(), toy_loader())
    assert probe.during and all(m == (False, False) for m in probe.during)
    assert probe.after == [(True, False, True)] * 2


def test_resume_continues_schedule(tmp_path):
    full = MagnitudePotentialCallback(t=1.0, every_n_epochs=2, save=False)
    fit(tmp_path / "full", full, max_epochs=6)
    assert full.scored_epochs == [1, 3, 5]

    first = MagnitudePotentialCallback(t=1.0, every_n_epochs=2, save=False)
    trainer, _ = fit(tmp_path / "a", first, max_epochs=3)
    assert first.scored_epochs == [1]
    ckpt = str(tmp_path / "a.ckpt")
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=False)["callbacks"][first.state_key]
    assert state["scored_epochs"] == [1]

    resumed = MagnitudePotentialCallback(t=1.0, every_n_epochs=2, save=False)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path / "b", callbacks=[resumed], max_epochs=6)
    trainer.fit(ToyClassifier(), toy_loader(), ckpt_path=ckpt)
    assert resumed.scored_epochs == [1, 3, 5]
    assert int(resumed.scores["epoch"]) == 5


def test_fast_dev_run_does_not_score(tmp_path):
    cb = MagnitudePotentialCallback(t=1.0)
    torch.manual_seed(0)
    trainer = pl.Trainer(
        accelerator="cpu",
        fast_dev_run=True,
        callbacks=[cb],
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(ToyClassifier(), toy_loader())
    assert cb.scores is None and cb.scored_epochs == []
    assert not os.path.exists(tmp_path / "magnitude_potential")


def test_tensorboard_histogram(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    cb = MagnitudePotentialCallback(t=1.0)
    fit(tmp_path, cb, max_epochs=1, logger=logger)
    assert os.path.exists(os.path.join(logger.log_dir, "magnitude_potential"))
    events = EventAccumulator(logger.log_dir, size_guidance={"histograms": 0})
    events.Reload()
    assert "potential/ratio" in events.Tags()["histograms"]
    assert "potential/ratio_mean" in events.Tags()["scalars"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(every_n_epochs=0), "every_n_epochs"),
        (dict(every_n_epochs=1.5), "every_n_epochs"),
        (dict(t=-1.0), "t"),
        (dict(t=[1.0, 0.0]), "t"),
        (dict(t="median"), "t"),
        (dict(layer=""), "layer"),
        (dict(scoring="val"), "scoring"),
        (dict(heldout=[1, 2]), "heldout"),
        (dict(max_samples=1), "max_samples"),
        (dict(batch_size=0), "batch_size"),
        (dict(metric="cosinus"), "metric"),
        (dict(metric="precomputed"), "precomputed"),
        (dict(save="yes"), "save"),
        (dict(log_histograms=1), "log_histograms"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(magtorch.MagtorchError, match=name):
        MagnitudePotentialCallback(**kwargs)


def test_unknown_layer_raises_at_setup(tmp_path):
    with pytest.raises(magtorch.MagtorchError, match="layer='nope'"):
        fit(tmp_path, MagnitudePotentialCallback(t=1.0, layer="nope"), max_epochs=1)


def test_import_magtorch_does_not_import_lightning():
    code = (
        "import sys, magtorch\n"
        "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') "
        "for m in sys.modules), 'lightning imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())


# ----------------------------------------------------------------------------- DDP


def _scores_of(tmp_path, **trainer_kwargs):
    torch.manual_seed(0)
    cb = MagnitudePotentialCallback(t=[0.5, 1.5], batch_size=8)
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=1, **trainer_kwargs)
    # lr=0: the weights stay at the seeded initialisation, so both runs score one model;
    # 47 points on 2 ranks: the sharding pads one duplicate that must be removed
    trainer.fit(ToyClassifier(lr=0.0), toy_loader(ToyDataset(n=47), batch_size=8))
    return saved(tmp_path, 0)


@pytest.fixture
def file_system_sharing():
    """Share tensors with spawned workers through files: some sandboxes refuse to resize the
    anonymous shared-memory file descriptors of the default strategy ("unable to resize file")."""
    import torch.multiprocessing as mp

    before = mp.get_sharing_strategy()
    mp.set_sharing_strategy("file_system")
    yield
    mp.set_sharing_strategy(before)


def test_ddp_two_processes_match_one(tmp_path, file_system_sharing):
    one = _scores_of(tmp_path / "one")
    two = _scores_of(tmp_path / "two", devices=2, strategy="ddp_spawn")
    assert torch.equal(two["index"], torch.arange(47))
    assert torch.equal(two["label"], one["label"])
    assert_close(two["logits"], one["logits"], rtol=1e-6, atol=1e-6)
    for key in ("class_potential", "all_potential", "ratio"):
        assert_close(two[key], one[key], rtol=1e-6, atol=1e-9, msg=key)


def test_convergence_scale_warm_start_survives_a_checkpoint(tmp_path):
    """The last convergence scale is saved, so a resumed run starts its search there."""
    first = MagnitudePotentialCallback(t="convergence", save=False)
    trainer, _ = fit(tmp_path / "a", first, max_epochs=1)
    state = first.state_dict()
    assert state["last_t"] == pytest.approx(float(first.scores["t"]), rel=1e-15)
    resumed = MagnitudePotentialCallback(t="convergence", save=False)
    resumed.load_state_dict(state)
    assert float(resumed._last_t) == state["last_t"]
