"""Reports over a whole Hydra multirun: a Hydra callback that runs an aggregation function.

An experiment config adds (see ``configs/experiment/weight_reg.yaml``)::

    hydra:
      callbacks:
        sweep_report:
          _target_: experiments.analysis.sweep.SweepReport
          aggregate: experiments.analysis.weight_reg.aggregate

and at the end of ``python experiments/train.py -m experiment=...`` the function is called with
the sweep folder (``hydra.sweep.dir``), where every job has left its ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig

__all__ = ["SweepReport"]


class SweepReport(Callback):
    """Call ``aggregate(sweep_dir)`` (a dotted function path) when a multirun ends."""

    def __init__(self, aggregate: str) -> None:
        self.aggregate = aggregate

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        fn = get_method(self.aggregate)
        path = fn(Path(str(config.hydra.sweep.dir)))
        print(f"[sweep report] {path}")
