"""The Hydra entry point of every experiment: ``python experiments/train.py [overrides]``.

Composes ``configs/train.yaml`` (schema: :mod:`experiments.schema`), then :func:`train`:

1. ``lightning.seed_everything(cfg.seed, workers=True)`` (and ``torch.set_num_threads`` when
   ``cfg.num_threads`` is set);
2. if ``cfg.runner`` is set (a ``_target_`` config of ``f(cfg, out_dir) -> dict``), calls it
   and skips 3-5: experiments that are not one Lightning fit (e.g. ``generative``,
   ``clustering``) run this way;
3. builds, with :func:`hydra.utils.instantiate`, the data module ``cfg.data`` (then
   ``setup("fit")``), the model ``cfg.model`` — *train.py passes* ``input_shape=dm.input_shape``
   *and* ``num_classes=dm.num_classes`` *as keyword arguments*, so every model factory must
   accept them —, the loss ``cfg.loss`` and the regulariser ``cfg.regularizer`` (or none), and
   wraps them in :class:`experiments.lit_module.LitClassifier` with the arguments
   ``cfg.module`` (optimiser, learning rate, ``regularizer_weight``,
   ``record_sample_losses``);
4. builds the callbacks ``cfg.callbacks`` (a mapping ``name -> _target_ config``; ``null``
   entries are skipped) — a value ``datamodule`` of a callback's ``scoring`` argument becomes
   ``dm.score_dataloader()``, of ``heldout`` ``dm.val_dataloader()``, of ``dataloader``
   (the trajectory callback's batches) ``dm.train_dataloader()`` — and
   the loggers ``cfg.logger`` (``save_dir`` defaults to the output folder), instantiates the
   ``cfg.trainer`` (``lightning.pytorch.Trainer``) with them and fits;
5. collects ``metrics`` (every scalar the trainer logged, e.g. ``val/acc``, ``train/loss``,
   plus ``time/fit_s`` and the data sizes ``data/...``);
6. on global rank zero: writes ``metrics.json``; runs the report — ``cfg.report`` (a
   ``_target_`` config of ``f(out_dir, *, cfg, trainer, module, datamodule, metrics) ->
   dict``, whose returned metrics are merged into ``metrics.json``) or the default one
   (metrics table and learning curves) — which writes ``report.md`` and PNGs; saves
   ``last.ckpt`` when ``cfg.save_checkpoint``.

The output folder is Hydra's run directory (``outputs/<task_name>/runs/<time>``, in a
multirun ``outputs/<task_name>/multiruns/<time>/<job number>``), or ``cfg.output_dir`` when set
(what tests and :func:`train` callers without Hydra use).

:func:`main` returns ``metrics[cfg.optimized_metric]``: the value sweepers (Optuna) optimise.

Examples::

    python experiments/train.py                                  # MLP on digits
    python experiments/train.py experiment=memorization         # the `make demo` experiment
    python experiments/train.py -m module.lr=1e-3,1e-2 seed=0,1  # a 4-job sweep
    python experiments/train.py -m launcher=submitit_slurm ...   # the same sweep on SLURM
    python experiments/train.py trainer=ddp                      # 2 processes (DDP)
    python experiments/train.py debug=fast                       # smoke test
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `python experiments/train.py` puts experiments/ first
    sys.path.insert(0, str(_ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

import experiments.schema  # noqa: E402, F401  (registers the structured config "train_schema")
from magtorch.errors import MagtorchError  # noqa: E402

__all__ = ["CONFIG_DIR", "main", "output_dir", "train"]

CONFIG_DIR = str(_ROOT / "configs")

_DATAMODULE = "datamodule"


def output_dir(cfg: DictConfig) -> Path:
    """The run's output folder (created): ``cfg.output_dir``, else Hydra's output directory,
    else the current directory."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("output_dir"):
        out = Path(str(cfg.output_dir))
    elif HydraConfig.initialized():
        out = Path(HydraConfig.get().runtime.output_dir)
    else:
        out = Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def build_callbacks(cfg: DictConfig, datamodule: Any) -> list[Any]:
    """Instantiate ``cfg.callbacks`` (see step 4 of the module docstring)."""
    from hydra.utils import instantiate

    loaders = {
        "scoring": datamodule.score_dataloader,
        "heldout": datamodule.val_dataloader,
        "dataloader": datamodule.train_dataloader,
    }
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        if "_target_" not in node:
            raise MagtorchError(f"callbacks.{name} has no _target_; got {_plain(node)!r}")
        kwargs = {}
        node = node.copy()
        with open_dict(node):
            for key, make in loaders.items():
                if node.get(key) == _DATAMODULE:
                    del node[key]
                    kwargs[key] = make()
        callbacks.append(instantiate(node, _convert_="all", **kwargs))
    return callbacks


def build_loggers(cfg: DictConfig, out: Path) -> list[Any]:
    """Instantiate ``cfg.logger`` (``save_dir`` defaults to ``out``)."""
    from hydra.utils import instantiate

    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        if "_target_" not in node:
            raise MagtorchError(f"logger.{name} has no _target_; got {_plain(node)!r}")
        kwargs = {} if node.get("save_dir") else {"save_dir": str(out)}
        loggers.append(instantiate(node, _convert_="all", **kwargs))
    return loggers


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        out[str(key)] = number
    return out


def _after_fit_results(callbacks: list[Any]) -> dict[str, float]:
    """Values that callbacks compute at ``on_train_end`` and send to the loggers only (not to
    ``trainer.callback_metrics``): the trajectory callback's ``results``."""
    out: dict[str, float] = {}
    for cb in callbacks:
        results = getattr(cb, "results", None)
        if not isinstance(results, dict) or not hasattr(cb, "log_prefix"):
            continue
        scales = list(getattr(cb, "t", []))
        for key in ("magnitude", "positive_magnitude"):
            values = results.get(key)
            if values is None:
                continue
            for i, value in enumerate(values):
                suffix = "" if len(scales) == 1 else f"/t={scales[i]:g}"
                out[f"{cb.log_prefix}/{key}{suffix}"] = float(value)
    return out


def write_metrics(out: Path, metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` (sorted keys; non-finite numbers as strings)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v

    path = out / "metrics.json"
    path.write_text(json.dumps({k: clean(v) for k, v in sorted(metrics.items())}, indent=2))
    return path


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job of the config (see the module docstring); returns its metrics."""
    import lightning
    from hydra.utils import instantiate

    from experiments.lit_module import LitClassifier

    out = output_dir(cfg)
    if cfg.get("num_threads"):
        import torch

        torch.set_num_threads(int(cfg.num_threads))
    lightning.seed_everything(int(cfg.seed), workers=True)
    start = time.perf_counter()

    if cfg.get("runner") is not None:
        runner = instantiate(cfg.runner, _partial_=True)
        metrics = dict(runner(cfg=cfg, out_dir=out))
        metrics["time/total_s"] = time.perf_counter() - start
        write_metrics(out, metrics)
        return metrics

    if cfg.get("data") is None or cfg.get("model") is None or cfg.get("trainer") is None:
        raise MagtorchError("the config needs data, model and trainer (or a runner)")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(
        cfg.model, input_shape=tuple(dm.input_shape), num_classes=int(dm.num_classes)
    )
    loss = instantiate(cfg.loss) if cfg.get("loss") is not None else None
    regularizer = instantiate(cfg.regularizer) if cfg.get("regularizer") is not None else None
    module_args = OmegaConf.to_container(cfg.module, resolve=True)
    num_train = len(dm.train_set) if module_args.get("record_sample_losses") else None
    module = LitClassifier(
        model=model, loss=loss, regularizer=regularizer, num_train=num_train, **module_args
    )
    callbacks = build_callbacks(cfg, dm)
    loggers = build_loggers(cfg, out)
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers if loggers else False,
        default_root_dir=str(out),
        _convert_="all",
    )
    fit_start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    metrics: dict[str, Any] = _scalars(trainer.callback_metrics)
    metrics.update(_after_fit_results(callbacks))
    metrics["time/fit_s"] = time.perf_counter() - fit_start
    metrics["trainer/world_size"] = int(trainer.world_size)
    metrics["trainer/epochs"] = int(trainer.current_epoch)
    if hasattr(dm, "describe"):
        metrics.update(
            {f"data/{k}": v for k, v in dm.describe().items() if not isinstance(v, list)}
        )
    if cfg.get("save_checkpoint"):
        trainer.save_checkpoint(str(out / "last.ckpt"))  # a collective under DDP
    if not trainer.is_global_zero:
        metrics["rank"] = trainer.global_rank
        return metrics

    context = {"cfg": cfg, "trainer": trainer, "module": module, "datamodule": dm}
    if cfg.get("report") is not None:
        report = instantiate(cfg.report, _partial_=True)
        extra = report(out, metrics=dict(metrics), **context)
    else:
        from experiments.analysis.common import write_default_report

        extra = write_default_report(out, metrics=dict(metrics), **context)
    metrics.update(extra or {})
    metrics["time/total_s"] = time.perf_counter() - start
    write_metrics(out, metrics)
    return metrics


def optimized_value(cfg: DictConfig, metrics: dict[str, Any]) -> float:
    """``metrics[cfg.optimized_metric]`` as a float (raises naming the available keys)."""
    key = cfg.optimized_metric
    if metrics.get("rank", 0) != 0:  # DDP ranks other than 0 write no report
        return float(metrics.get(key, math.nan))
    if key not in metrics:
        raise MagtorchError(f"optimized_metric={key!r} is not among the metrics: {sorted(metrics)}")
    return float(metrics[key])


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    """The command-line job: :func:`train`, returning the optimised metric."""
    if os.environ.get("MAGTORCH_PRINT_CONFIG"):
        print(OmegaConf.to_yaml(cfg))
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    main()
