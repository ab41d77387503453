r"""The LightningModule of every classification experiment.

:class:`LitClassifier` wraps a model (``nn.Module``, logits out), a loss ``loss(logits, y)``
(a scalar), an optional regulariser ``regularizer(model)`` (a scalar penalty, e.g.
:class:`magtorch.nn.WeightMagnitudeRegularizer`) and an optimiser; the training objective is

.. math:: \mathcal{L} = \mathrm{loss}(f(x), y) + \lambda \, R(f)

with :math:`\lambda` = ``regularizer_weight``. Batches are ``(x, y, index)`` (or ``(x, y)``).

Logged per epoch (``sync_dist`` across ranks): ``train/loss``, ``train/acc``,
``train/regularizer`` (with a regulariser), ``val/loss``, ``val/acc``. :attr:`history` keeps one
dict per finished training epoch with these keys (sample-weighted means over this rank's
batches; the validation values are those of the last validation run), what the reports plot.

With ``record_sample_losses=True`` it also records the cross-entropy of every training sample
as seen by the training step of each epoch (train mode, the parameters of that step): the
tensor :attr:`sample_losses` ``(epochs, n_train)`` (NaN for a sample a rank never saw, e.g.
with ``limit_train_batches``). Under DDP every rank's record is gathered, so each rank holds
the whole table. The memorisation experiment's "learning speed" baseline is built from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from magtorch.errors import MagtorchError

__all__ = ["LitClassifier"]

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULERS = (None, "none", "cosine")


class LitClassifier(pl.LightningModule):
    """Model + loss + optional regulariser + optimiser (see the module docstring).

    Args:
        model: the network; ``model(x)`` returns logits ``(B, C)``.
        loss: ``loss(logits, y) -> scalar`` (default: cross-entropy).
        regularizer: optional ``regularizer(model) -> scalar`` penalty; one with the attribute
            ``needs_batch = True`` is called as ``regularizer(model, x, y)`` with the batch
            (e.g. :class:`experiments.analysis.neural_collapse.CollapseSuppression`).
        regularizer_weight: its weight :math:`\\lambda`.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: learning rate.
        weight_decay: weight decay of the optimiser.
        momentum: SGD momentum.
        scheduler: ``None`` or ``"cosine"`` (cosine annealing over ``trainer.max_epochs``).
        record_sample_losses: record per-sample training losses (needs ``num_train``).
        num_train: training-set size (for ``record_sample_losses``).

    Example:
        >>> lit = LitClassifier(nn.Linear(2, 3), optimizer="sgd", lr=0.1)
        >>> lit(torch.randn(4, 2)).shape
        torch.Size([4, 3])
        >>> type(lit.configure_optimizers()).__name__
        'SGD'
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        regularizer: Callable[[nn.Module], Tensor] | None = None,
        regularizer_weight: float = 0.0,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: str | None = None,
        record_sample_losses: bool = False,
        num_train: int | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in _OPTIMIZERS:
            raise MagtorchError(f"optimizer must be one of {_OPTIMIZERS}; got {optimizer!r}")
        if scheduler not in _SCHEDULERS:
            raise MagtorchError(f"scheduler must be None or 'cosine'; got {scheduler!r}")
        if not lr > 0:
            raise MagtorchError(f"lr must be positive; got lr={lr!r}")
        if record_sample_losses and (num_train is None or num_train < 1):
            raise MagtorchError("record_sample_losses=True needs num_train (the training size)")
        self.save_hyperparameters(ignore=["model", "loss", "regularizer"])
        self.model = model
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
        self.regularizer = regularizer
        self.regularizer_weight = float(regularizer_weight)
        self.optimizer_name, self.lr = optimizer, float(lr)
        self.weight_decay, self.momentum = float(weight_decay), float(momentum)
        self.scheduler_name = None if scheduler == "none" else scheduler
        self.record_sample_losses = bool(record_sample_losses)
        self.num_train = num_train
        self.history: list[dict[str, float]] = []
        self.sample_losses = torch.zeros(0, num_train or 0)
        self._epoch_losses: Tensor | None = None
        self._sums: dict[str, list] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ steps

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.loss_fn(logits, y)
        total = loss
        if self.regularizer is not None and self.regularizer_weight != 0.0:
            if getattr(self.regularizer, "needs_batch", False):  # penalties on features
                penalty = self.regularizer(self.model, x, y)
            else:
                penalty = self.regularizer(self.model)
            total = loss + self.regularizer_weight * penalty
            self.log("train/regularizer", penalty.detach(), on_step=False, on_epoch=True)
        if self.record_sample_losses and len(batch) > 2 and self._epoch_losses is not None:
            per = F.cross_entropy(logits.detach(), y, reduction="none")
            self._epoch_losses[batch[2].long().cpu()] = per.to("cpu", torch.float32)
        acc = (logits.argmax(-1) == y).float().mean()
        self._accumulate("train", loss, acc, len(y))
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/acc", acc, on_step=False, on_epoch=True, sync_dist=True)
        return total

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(-1) == y).float().mean()
        if not self.trainer.sanity_checking:
            self._accumulate("val", loss, acc, len(y))
        self.log("val/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log("val/acc", acc, on_step=False, on_epoch=True, sync_dist=True, prog_bar=True)

    # ------------------------------------------------------------------ epoch bookkeeping

    def _accumulate(self, split: str, loss: Tensor, acc: Tensor, n: int) -> None:
        sums = self._sums.setdefault(split, [0.0, 0.0, 0])
        sums[0] += float(loss.detach()) * n
        sums[1] += float(acc) * n
        sums[2] += n

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)
        if self.record_sample_losses:
            self._epoch_losses = torch.full((self.num_train,), float("nan"))

    def on_train_epoch_end(self) -> None:
        row_metrics: dict[str, float] = {"epoch": int(self.current_epoch)}
        for split, (loss_sum, acc_sum, count) in self._sums.items():
            if count:
                row_metrics[f"{split}/loss"] = loss_sum / count
                row_metrics[f"{split}/acc"] = acc_sum / count
        self.history.append(row_metrics)
        if self.record_sample_losses and self._epoch_losses is not None:
            row = self._epoch_losses
            if self.trainer.world_size > 1:
                gathered = self.all_gather(row.to(self.device)).reshape(-1, row.numel()).cpu()
                row = gathered[0]
                for other in gathered[1:]:
                    row = torch.fmax(row, other)  # fmax ignores NaN: each rank's seen samples
            self.sample_losses = torch.cat([self.sample_losses, row[None]])
            self._epoch_losses = None

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> Any:
        params = self.parameters()
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        elif self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler_name == "cosine":
            epochs = max(int(self.trainer.max_epochs or 1), 1)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        return opt
