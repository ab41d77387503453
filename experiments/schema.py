"""Structured-config schema of the top-level training config (``configs/train.yaml``).

:class:`TrainConfig` is registered in Hydra's ConfigStore as ``train_schema`` and is the
first entry of ``train.yaml``'s defaults list, so the composed config is typed and closed:

* a misspelt top-level key — on the command line (``python experiments/train.py seeed=1``) or
  in a YAML file of any group packaged ``_global_`` (experiment, debug, ...) — fails at
  composition with ``Key 'seeed' not in 'TrainConfig'``;
* a value of the wrong type (``seed=abc``, ``fast=maybe``) fails the same way.

The group nodes (``data``, ``model``, ...) are ``_target_`` configs whose keys belong to their
classes; they are typed ``Any`` here and checked when Hydra instantiates them (an unknown
keyword is a ``TypeError`` naming the key).

Example:
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.structured(TrainConfig)
    >>> cfg.seed, cfg.optimized_metric
    (0, 'val/acc')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

__all__ = ["ModuleConfig", "TrainConfig", "register"]


@dataclass
class ModuleConfig:
    """Arguments of :class:`experiments.lit_module.LitClassifier` besides model, loss and
    regulariser."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Any = None
    regularizer_weight: float = 0.0
    record_sample_losses: bool = False


@dataclass
class TrainConfig:
    """The top-level config (see ``experiments/train.py`` for what each key does)."""

    data: Any = None
    model: Any = None
    loss: Any = None
    regularizer: Any = None
    callbacks: Any = field(default_factory=dict)
    logger: Any = field(default_factory=dict)
    trainer: Any = None
    module: ModuleConfig = field(default_factory=ModuleConfig)
    #: ``None``: the default report (metrics and learning curves); else a ``_target_`` config
    #: of a function ``f(out_dir, *, cfg, trainer, module, datamodule, metrics, **kw) -> dict``.
    report: Any = None
    #: ``None``: the Lightning classification job; else a ``_target_`` config of a function
    #: ``f(cfg, out_dir) -> dict`` that runs a whole experiment itself (metrics returned).
    runner: Any = None
    #: Free-form parameters of an experiment (read by its runner or report).
    params: Any = field(default_factory=dict)
    #: Name of the run (the output folder under ``outputs/``).
    task_name: str = "train"
    #: Seed of ``lightning.seed_everything(seed, workers=True)``.
    seed: int = 0
    #: The metric ``main`` returns (what a sweeper optimises); a key of ``metrics.json``.
    optimized_metric: str = "val/acc"
    #: Output folder; ``None``: Hydra's run directory (the current directory without Hydra).
    output_dir: Any = None
    #: Save the final checkpoint ``last.ckpt`` in the output folder.
    save_checkpoint: bool = False
    #: ``torch.set_num_threads`` for the job (``None``: leave torch's default). Small models
    #: on a busy machine run fastest on one thread.
    num_threads: Any = None
    #: Set by ``debug=fast``: experiments shrink to smoke-test size.
    fast: bool = False


def register() -> None:
    """Store :class:`TrainConfig` as ``train_schema`` in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


register()
