r"""Partition geometry of a ReLU network during training, as a Lightning callback.

A thin shell over :func:`magtorch.partition.partition_summary`: every ``every_n_epochs``
training epochs it takes a fixed subset of the scoring set, puts the model in eval mode and
logs the number of data-containing cells, the boundary distances (mean, median, 10 %
quantile), the adjacency graph (edges, mean degree), Forman and Ollivier-Ricci curvature
summaries and the nearest-neighbour *cells crossed*, so that they can be set beside the
magnitude potential (:class:`~magtorch.callbacks.MagnitudePotentialCallback`) in the grokking
and memorisation experiments.

Cost per scoring: one forward pass and a Jacobian per sample (``min(d, H)`` passes), a walk of
``n`` segments (one forward-mode pass per crossing), ``C x C`` code comparisons for ``C``
cells, and one small LP per edge for Ollivier-Ricci (``curvature=True``); ``max_samples``
caps ``n``.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from magtorch.callbacks._scores import subsample
from magtorch.callbacks.potential import _atomic_save, _positive_int, training_dataset
from magtorch.errors import MagtorchError
from magtorch.partition.inputs import input_layer_view
from magtorch.partition.summary import ADJACENCY, partition_summary, summary_scalars

__all__ = ["PartitionCallback"]


class PartitionCallback(Callback):
    r"""Log partition statistics of the model's input-space cells every ``every_n_epochs``.

    At the end of every ``every_n_epochs``-th training epoch (never during the sanity check
    or ``fast_dev_run``) the callback collects the inputs ``x`` and labels ``y`` of the
    scoring set (batches ``(x, y, ...)``, moved with ``trainer.strategy.batch_to_device``),
    and calls :func:`magtorch.partition.partition_summary` on ``pl_module`` with the model in
    eval mode (every module's train/eval mode is restored after).

    **Logged** through ``pl_module.log_dict`` (``on_epoch``) as ``{prefix}/{name}`` for every
    scalar of the summary: ``num_cells``, ``frac_singleton``, ``mean_cell_size``,
    ``mean_purity``, ``mean_label_entropy``, ``boundary_mean``, ``boundary_median``,
    ``boundary_q10``, ``frac_boundary_inf``, ``num_edges``, ``mean_degree``,
    ``frac_isolated_cells``, ``forman_mean``, ``forman_weighted_mean``, ``ollivier_mean``,
    ``crossings_mean``, ``frac_crossing`` (and ``num_samples``, ``num_units``).

    **Saved** (``save=True``, global rank zero only, atomically) with ``torch.save`` to
    ``{trainer.log_dir}/partition/partition_epoch{epoch:04d}.pt``: the whole summary dict
    (scalars and per-sample/per-cell/per-edge tensors) plus ``"index"``, the dataset indices
    of the scored samples.

    **Distributed.** Every rank scores the same subset (the training dataset is re-wrapped in
    a non-sharded loader) and computes the same numbers; nothing is gathered.

    Args:
        every_n_epochs: score after epochs ``every_n_epochs - 1``, ``2 * every_n_epochs - 1``,
            ... (0-based ``trainer.current_epoch``).
        layers: names of the submodules whose inputs are the hidden pre-activations (default:
            every ``nn.ReLU`` of the LightningModule). With ``input_layer`` the names are
            relative to the LightningModule too; the view prefixes them with ``model.``.
        input_layer: ``None`` (the partition of the input space), or the name of a submodule
            whose output space is partitioned instead (e.g. ``"model.embed"`` for token inputs;
            see :func:`magtorch.partition.input_layer_view`).
        scoring: ``"train"`` (the training dataset, in a non-shuffled loader with the training
            loader's ``collate_fn``) or a ``DataLoader`` of ``(x, y, ...)`` batches.
        max_samples: score at most this many points: a fixed random subset (seed 0) of the
            training dataset, the same at every epoch (a user loader: its first
            ``max_samples`` samples). ``None`` scores all.
        batch_size: batch size of the re-wrapped training loader and of the Jacobian chunks.
        adjacency: ``"code"`` (one bit apart), ``"lp"`` (exact facet test) or ``"walk"``.
        walk: walk nearest-neighbour segments (cells crossed).
        curvature: compute Forman and Ollivier-Ricci curvature.
        alpha: idleness of the Ollivier-Ricci neighbour measures.
        save: write the summaries under ``trainer.log_dir``.
        prefix: the logging namespace.

    Attributes:
        summary: the latest :func:`~magtorch.partition.partition_summary` dict (``None``
            before the first scoring), with ``"epoch"`` and ``"index"`` added.
        history: one dict of logged scalars per scored epoch (with ``"epoch"``); kept in
            checkpoints.
        scored_epochs: the epochs scored so far.

    Raises:
        MagtorchError: a bad argument (named in the message) or batches without labels.

    Example:
        >>> import lightning.pytorch as pl, torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from magtorch.callbacks.partition import PartitionCallback
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Sequential(
        ...             torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return torch.nn.functional.cross_entropy(self(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> _ = torch.manual_seed(0)
        >>> data = DataLoader(TensorDataset(torch.randn(20, 2), torch.arange(20) % 2), batch_size=10)
        >>> cb = PartitionCallback(save=False)
        >>> trainer = pl.Trainer(max_epochs=2, callbacks=[cb], logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), data)
        >>> cb.scored_epochs, cb.summary["num_cells"] <= 11  # 4 lines: at most 11 cells
        ([0, 1], True)
    """  # noqa: E501

    def __init__(
        self,
        every_n_epochs: int = 1,
        layers: list[str] | None = None,
        input_layer: str | None = None,
        scoring: str | DataLoader = "train",
        max_samples: int | None = 2000,
        batch_size: int = 256,
        adjacency: str = "code",
        walk: bool = True,
        curvature: bool = True,
        alpha: float = 0.0,
        save: bool = True,
        prefix: str = "partition",
    ):
        super().__init__()
        self.every_n_epochs = _positive_int(every_n_epochs, "every_n_epochs", 1)
        if layers is not None and (
            isinstance(layers, str)
            or not isinstance(layers, (list, tuple))
            or not layers
            or not all(isinstance(n, str) and n for n in layers)
        ):
            raise MagtorchError(f"layers must be None or a list of submodule names; got {layers!r}")
        self.layers = None if layers is None else list(layers)
        if input_layer is not None and (not isinstance(input_layer, str) or not input_layer):
            raise MagtorchError(
                f"input_layer must be None or a submodule name; got input_layer={input_layer!r}"
            )
        self.input_layer = input_layer
        if not (scoring == "train" or isinstance(scoring, DataLoader)):
            raise MagtorchError(
                f"scoring must be 'train' or a torch DataLoader; got scoring={scoring!r}"
            )
        self.scoring = scoring
        if max_samples is not None:
            max_samples = _positive_int(max_samples, "max_samples", 2)
        self.max_samples = max_samples
        self.batch_size = _positive_int(batch_size, "batch_size", 1)
        if adjacency not in ADJACENCY:
            raise MagtorchError(f"adjacency must be one of {ADJACENCY}; got {adjacency!r}")
        self.adjacency = adjacency
        for name, value in (("walk", walk), ("curvature", curvature), ("save", save)):
            if not isinstance(value, bool):
                raise MagtorchError(f"{name} must be True or False; got {name}={value!r}")
        if adjacency == "walk" and not walk:
            raise MagtorchError("adjacency='walk' needs walk=True")
        self.walk, self.curvature, self.save = walk, curvature, save
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < 1:
            raise MagtorchError(f"alpha must be a number in [0, 1); got alpha={alpha!r}")
        self.alpha = float(alpha)
        if not isinstance(prefix, str) or not prefix:
            raise MagtorchError(f"prefix must be a non-empty string; got prefix={prefix!r}")
        self.prefix = prefix

        self.summary: dict[str, Any] | None = None
        self.history: list[dict[str, float]] = []
        self.scored_epochs: list[int] = []

    # ------------------------------------------------------------------ Lightning plumbing

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            every_n_epochs=self.every_n_epochs,
            layers=self.layers,
            input_layer=self.input_layer,
            prefix=self.prefix,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"scored_epochs": list(self.scored_epochs), "history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scored_epochs = list(state_dict.get("scored_epochs", []))
        self.history = list(state_dict.get("history", []))

    def _should_score(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return False
        epoch = trainer.current_epoch
        return (epoch + 1) % self.every_n_epochs == 0 and epoch not in self.scored_epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._should_score(trainer):
            self.score(trainer, pl_module)

    # ------------------------------------------------------------------ scoring

    def score(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Score now (from a training hook: it logs); returns and stores :attr:`summary`."""
        epoch = trainer.current_epoch
        x, y, index = self._collect(trainer, self._scoring_loader(trainer))
        modes = {m: m.training for m in pl_module.modules()}
        model, layers = pl_module, self.layers
        pl_module.eval()
        try:
            with torch.no_grad():  # the Jacobians are torch.func transforms: unaffected
                if self.input_layer is not None:
                    model, x = input_layer_view(pl_module, self.input_layer, x)
                    if layers is not None:
                        layers = [f"model.{name}" for name in layers]
                summary = partition_summary(
                    model,
                    x,
                    y,
                    layers,
                    adjacency=self.adjacency,
                    walk=self.walk,
                    curvature=self.curvature,
                    alpha=self.alpha,
                    batch_size=self.batch_size,
                )
        finally:
            for m, mode in modes.items():
                m.train(mode)
        scalars = summary_scalars(summary)
        summary["epoch"] = epoch
        summary["index"] = index.cpu()
        self.summary = summary
        self.scored_epochs.append(epoch)
        self.history.append({"epoch": float(epoch), **scalars})
        pl_module.log_dict(
            {f"{self.prefix}/{k}": v for k, v in scalars.items()},
            on_step=False,
            on_epoch=True,
            sync_dist=False,  # every rank computes the same numbers
        )
        if self.save:
            log_dir = trainer.log_dir  # a collective under DDP: every rank asks
            if trainer.is_global_zero:
                folder = os.path.join(log_dir or trainer.default_root_dir, "partition")
                _atomic_save(summary, os.path.join(folder, f"partition_epoch{epoch:04d}.pt"))
        return summary

    def _scoring_loader(self, trainer: pl.Trainer) -> DataLoader:
        if isinstance(self.scoring, DataLoader):
            return self.scoring
        source, dataset, n = training_dataset(trainer, "(x, y, ...)")
        keep = subsample(n, self.max_samples) if self.max_samples else torch.arange(n)
        self._keep = keep
        return DataLoader(
            Subset(dataset, keep.tolist()),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=source.collate_fn,
        )

    def _collect(self, trainer: pl.Trainer, loader: DataLoader) -> tuple[Tensor, Tensor, Tensor]:
        xs, ys = [], []
        count = 0
        for batch in loader:
            batch = trainer.strategy.batch_to_device(batch)
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise MagtorchError(
                    "PartitionCallback needs batches (x, y, ...) with labels; got "
                    f"{type(batch).__name__}"
                )
            x, y = batch[0], torch.as_tensor(batch[1]).reshape(-1)
            if not isinstance(x, Tensor) or x.shape[0] != y.shape[0]:
                raise MagtorchError("batches must hold a tensor x (B, ...) and labels y (B,)")
            xs.append(x)
            ys.append(y.long())
            count += len(y)
            if self.scoring != "train" and self.max_samples and count >= self.max_samples:
                break
        if not xs:
            raise MagtorchError("the scoring loader yielded no samples")
        x, y = torch.cat(xs), torch.cat(ys)
        if self.scoring == "train":
            index = self._keep
        else:
            if self.max_samples:
                x, y = x[: self.max_samples], y[: self.max_samples]
            index = torch.arange(len(y))
        return x, y, index
