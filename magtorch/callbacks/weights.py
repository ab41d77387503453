r"""Log the magnitude of a network's weights during training: a cheap training-dynamics signal.

A thin Lightning shell over :func:`magtorch.weight_magnitude`. Every ``every_n_epochs`` training
epochs (at ``on_train_epoch_end``, under ``torch.no_grad``) it computes, for each scale ``t``:

* ``mode="scalar"`` (default): every weight value is a point of the real line and the exact
  closed form :math:`\mathrm{Mag}(tX) = 1 + \sum_k \tanh(t g_k / 2)` over the sorted gaps is used
  (:math:`O(n \log n)`, one sort), once per selected parameter tensor (``<prefix>/<name>``) and
  once for all selected values together as one set (``<prefix>/model``: the magnitude of the
  union, not the sum of the layers);
* ``mode="neurons"``: each row of a weight matrix (a neuron's incoming weights; a kernel flattened
  per output channel) is a point of :math:`\mathbb{R}^{\text{fan\_in}}`, one dense solve per
  layer (:math:`O(\text{out}^3)`); ``<prefix>/model`` is then the sum over layers (the value
  :func:`magtorch.weight_magnitude` returns with ``reduction="sum"``).

With several scales the keys get a ``/t=<t>`` suffix. Values go through ``pl_module.log``
(``on_epoch=True``): every rank computes the same number from its identical copy of the weights,
so no collective is needed (``sync_dist=False``) and the loggers, which write on rank zero only,
see one value per epoch. The callback keeps ``callback.history`` (one dict per logged epoch) and
saves it in checkpoints (``state_dict``), so a resumed run continues the history.

Example:
    >>> from magtorch.callbacks.weights import WeightMagnitudeCallback
    >>> cb = WeightMagnitudeCallback(t=[0.5, 2.0], every_n_epochs=5)
    >>> cb.t, cb.mode, cb.every_n_epochs
    ([0.5, 2.0], 'scalar', 5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from magtorch.errors import MagtorchError
from magtorch.network import check_include, weight_magnitude

__all__ = ["WeightMagnitudeCallback"]

_MODES = ("scalar", "neurons")


def _check_scales(t: Any, name: str = "t") -> list[float]:
    """``t`` (a positive number or a non-empty sequence of them) as a list of Python floats."""
    if isinstance(t, torch.Tensor):
        if t.dim() > 1:
            raise MagtorchError(f"{name} must be a number or a 1-d sequence; got shape {t.shape}")
        t = t.reshape(-1).tolist()
    values = list(t) if isinstance(t, Sequence) and not isinstance(t, str) else [t]
    if not values:
        raise MagtorchError(f"{name} is an empty sequence; give at least one positive scale")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise MagtorchError(f"{name} must hold positive finite numbers; got {v!r}")
        if not math.isfinite(v) or v <= 0:
            raise MagtorchError(f"{name} must hold positive finite numbers; got {v!r}")
        out.append(float(v))
    return out


class WeightMagnitudeCallback(Callback):
    """Log the magnitude of each layer's weights and of the whole model every N epochs.

    Args:
        t: a positive scale or a sequence of scales (default 1.0).
        mode: ``"scalar"`` (exact, every value a point of the line; default) or ``"neurons"``
            (rows of each weight matrix as points, a dense solve per layer).
        every_n_epochs: log after every N-th training epoch (epochs ``N-1, 2N-1, ...``,
            0-based); default 1.
        include: which parameters count (default ``None``: those with at least two dimensions,
            i.e. weight matrices and kernels, not biases); a glob pattern, a sequence of patterns
            or a predicate ``(name, parameter) -> bool`` (see
            :func:`magtorch.network.select_parameters`). Only trainable parameters count.
        log_prefix: prefix of the logged keys (default ``"weight_magnitude"``).

    Attributes:
        history: a list with one dict per logged epoch: ``epoch``, ``global_step``, ``t`` and
            ``values`` (key -> list of floats, one per scale).

    Raises:
        MagtorchError: at construction, naming the bad argument.

    Example:
        >>> import lightning.pytorch as pl
        >>> from magtorch.callbacks.weights import WeightMagnitudeCallback
        >>> trainer = pl.Trainer(callbacks=[WeightMagnitudeCallback(t=1.0)], logger=False)
    """

    def __init__(
        self,
        t: float | Sequence[float] = 1.0,
        mode: str = "scalar",
        every_n_epochs: int = 1,
        include: Any = None,
        log_prefix: str = "weight_magnitude",
    ) -> None:
        super().__init__()
        self.t = _check_scales(t)
        if mode not in _MODES:
            raise MagtorchError(f"mode must be one of {_MODES}; got {mode!r}")
        self.mode = mode
        if (
            isinstance(every_n_epochs, bool)
            or not isinstance(every_n_epochs, int)
            or every_n_epochs < 1
        ):
            raise MagtorchError(f"every_n_epochs must be an int >= 1; got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs
        self.include = check_include(include)
        if not isinstance(log_prefix, str) or not log_prefix:
            raise MagtorchError(f"log_prefix must be a non-empty string; got {log_prefix!r}")
        self.log_prefix = log_prefix.rstrip("/")
        self.history: list[dict[str, Any]] = []
        self._last_logged_epoch: int | None = None

    # ------------------------------------------------------------------ state

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            t=self.t, mode=self.mode, include=repr(self.include), log_prefix=self.log_prefix
        )

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "last_logged_epoch": self._last_logged_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self._last_logged_epoch = state_dict.get("last_logged_epoch")

    # ------------------------------------------------------------------ computation

    def compute(self, pl_module: torch.nn.Module) -> dict[str, list[float]]:
        """The values this callback logs, without logging: key -> one float per scale.

        Keys are ``"<prefix>/<parameter name>"`` for each selected parameter tensor and
        ``"<prefix>/model"`` for the whole model (see the module docstring).
        """
        scales = torch.tensor(self.t, dtype=torch.float64)
        with torch.no_grad():
            if self.mode == "scalar":
                _, parts = weight_magnitude(
                    pl_module, scales, mode="scalar", per_layer=True, include=self.include,
                    return_per_layer=True,
                )  # fmt: skip
                total = weight_magnitude(
                    pl_module, scales, mode="scalar", per_layer=False, include=self.include
                )
            else:
                total, parts = weight_magnitude(
                    pl_module, scales, mode="neurons", include=self.include, return_per_layer=True
                )
        values = {
            f"{self.log_prefix}/{name}": [float(v) for v in mag.reshape(-1)]
            for name, mag in parts.items()
        }
        values[f"{self.log_prefix}/model"] = [float(v) for v in total.reshape(-1)]
        return values

    def _key(self, key: str, i: int) -> str:
        return key if len(self.t) == 1 else f"{key}/t={self.t[i]:g}"

    # ------------------------------------------------------------------ hooks

    def _should_run(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs != 0:
            return False
        # a resumed run restarts the epoch that was interrupted; never log one epoch twice
        return self._last_logged_epoch is None or epoch > self._last_logged_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_run(trainer):
            return
        values = self.compute(pl_module)
        for key, per_scale in values.items():
            for i, value in enumerate(per_scale):
                pl_module.log(
                    self._key(key, i),
                    value,
                    on_step=False,
                    on_epoch=True,
                    sync_dist=False,
                    batch_size=1,
                )
        self._last_logged_epoch = trainer.current_epoch
        self.history.append(
            {
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "t": list(self.t),
                "values": values,
            }
        )
