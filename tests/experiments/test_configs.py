"""Every config of configs/ composes with Hydra's compose API; the schema rejects typos.

Options come from the files on disk, so a new config is tested without editing this file.
Launcher and sweeper configs need their Hydra plugins (extras ``cluster`` and ``optuna``) and
are skipped when the plugin is not importable.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

pytest.importorskip("hydra")
pytest.importorskip("lightning")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import ConfigCompositionException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from omegaconf.errors import ValidationError  # noqa: E402

from experiments.train import CONFIG_DIR  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402

CONFIGS = Path(CONFIG_DIR)
GROUPS = (
    "data",
    "model",
    "loss",
    "regularizer",
    "callbacks",
    "logger",
    "trainer",
    "experiment",
    "hparams_search",
    "launcher",
    "debug",
)
#: Hydra plugins the launcher/sweeper configs need (module to import).
PLUGINS = {
    "launcher/submitit_local": "hydra_plugins.hydra_submitit_launcher",
    "launcher/submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
    "launcher/ray": "hydra_plugins.hydra_ray_launcher",
    "hparams_search/optuna": "hydra_plugins.hydra_optuna_sweeper",
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package (hydra_plugins) is missing
        return False


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def all_options() -> list[tuple[str, str]]:
    return [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_of_the_issue_exists() -> None:
    for group in GROUPS:
        assert options(group), f"configs/{group}/ has no options"
    assert {"cpu", "gpu", "ddp"} <= set(options("trainer"))
    assert {"submitit_local", "submitit_slurm", "ray"} <= set(options("launcher"))
    assert "optuna" in options("hparams_search")
    assert "memorization" in options("experiment")


@pytest.mark.parametrize(("group", "option"), all_options())
def test_option_composes(group: str, option: str) -> None:
    plugin = PLUGINS.get(f"{group}/{option}")
    if plugin is not None and not _importable(plugin):
        pytest.skip(f"{plugin} is not installed (optional extra)")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=[f"{group}={option}"], return_hydra_config=True
        )
    resolved = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(resolved["seed"], int)
    for node in ("data", "model", "trainer"):
        if cfg.get("runner") is None:
            assert "_target_" in cfg[node], f"{group}={option}: {node} has no _target_"
    if group == "launcher":
        assert option.split("_")[0] in cfg.hydra.launcher._target_.lower()
    if group == "hparams_search":
        assert "optuna" in cfg.hydra.sweeper._target_.lower()


def test_defaults_and_interpolations() -> None:
    cfg = compose_train(["seed=7"])
    assert cfg.data._target_ == "experiments.data.SklearnDataModule"
    assert cfg.data.name == "digits"
    assert cfg.data.seed == 7  # the split follows the top-level seed
    assert cfg.model._target_ == "experiments.models.MLP"
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert set(cfg.callbacks) == {"potential", "weights"}
    mem = compose_train(["experiment=memorization", "trainer.max_epochs=9"])
    assert mem.callbacks.potential.every_n_epochs == 9  # scores once, after the last epoch
    assert mem.data.flip_fraction == pytest.approx(0.04)
    assert mem.module.record_sample_losses is True


@pytest.mark.parametrize("option", ["digits", "iris", "wine", "breast_cancer", "toy2d"])
def test_array_data_configs_instantiate(option: str) -> None:
    import sklearn.datasets

    cfg = compose_train([f"data={option}"])
    dm = instantiate(cfg.data)
    dm.setup()
    x, y, i = dm.train_set[3]
    assert i == 3 and x.shape == dm.input_shape
    n = len(dm.train_set) + len(dm.val_set)
    if option != "toy2d":  # sizes from scikit-learn itself
        bunch = getattr(sklearn.datasets, f"load_{option}")()
        assert n == len(bunch.target)
        assert dm.num_classes == len(set(bunch.target.tolist()))
        assert dm.input_shape == (bunch.data.shape[1],)
    else:
        assert n == cfg.data.n_samples
    # standardised with the training statistics
    xs = dm.train_set.x.double()
    assert xs.mean(0).abs().max() < 1e-5
    model = instantiate(cfg.model, input_shape=dm.input_shape, num_classes=dm.num_classes)
    assert model(dm.train_set.x[:5]).shape == (5, dm.num_classes)


def test_vision_configs_compose_without_torchvision() -> None:
    # The data module imports torchvision only in setup(): building it needs none.
    for option in ("mnist", "cifar10", "fake_images"):
        dm = instantiate(compose_train([f"data={option}"]).data)
        assert dm.num_classes == 10
    assert instantiate(compose_train(["data=mnist"]).data).input_shape == (1, 28, 28)
    assert instantiate(compose_train(["data=cifar10"]).data).input_shape == (3, 32, 32)


def test_fake_images_and_resnet18() -> None:
    pytest.importorskip("torchvision")
    cfg = compose_train(["data=fake_images", "model=resnet18"])
    dm = instantiate(cfg.data)
    dm.setup()
    x, y, i = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 32, 32) and len(y) == len(i)
    model = instantiate(cfg.model, input_shape=dm.input_shape, num_classes=dm.num_classes)
    assert model(x[:2]).shape == (2, 10)


# ---------------------------------------------------------------------- typos fail fast


def test_unknown_top_level_override_fails() -> None:
    with pytest.raises(ConfigCompositionException, match="seeed"):
        compose_train(["seeed=1"])
    # ... and inside a group node (Hydra composes in struct mode; `+key=` adds on purpose)
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_train(["trainer.max_epoch=3"])
    assert compose_train(["+trainer.max_time=null"]).trainer.max_time is None


def test_wrong_type_fails() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_train(["seed=abc"])
    assert isinstance(err.value.__cause__, ValidationError) or "seed" in str(err.value)


def test_typo_in_an_experiment_file_fails(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    (configs / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nmax_epoch: 3\n"  # meant trainer.max_epochs
    )
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_train(["experiment=typo"], config_dir=str(configs))
    (configs / "experiment" / "fine.yaml").write_text("# @package _global_\nseed: 3\n")
    assert compose_train(["experiment=fine"], config_dir=str(configs)).seed == 3
