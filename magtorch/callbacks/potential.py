r"""Magnitude potential of every training point at the logit layer, as a Lightning callback.

For a scoring set with logits :math:`X = \{x_1..x_n\}` (or any layer's flattened activations),
classes :math:`X_c`, a scale :math:`t` and :math:`P = Z_t^{-1}`, each point gets

* the all-data potential :math:`h_{X \setminus \{i\}}(x_i) = 1 - w_i / P_{ii}`,
* the class potential :math:`h_{X_c \setminus \{i\}}(x_i)` (the same formula on its class),
* the potential ratio :math:`r(x_i) = h_{X_c \setminus \{i\}}(x_i) / h_{X \setminus \{i\}}(x_i)`,

leave-one-out because :math:`h_X(x_i) = 1` on the points of :math:`X`. Held-out points
:math:`z` are scored against the whole scoring set without leaving anything out:
:math:`h_{X_c}(z) / h_X(z)`. A ratio below 1 means a point is less well explained by its own
class than by the data as a whole (memorised, mislabelled or near a decision boundary).

Cost: one dense ``n x n`` inverse for the whole set and one per class, in float64
(``O(n^3)`` time, ``8 n^2`` bytes); ``max_samples`` caps ``n``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler, Sampler

from magtorch._validation import as_scales, check_metric
from magtorch.callbacks._scores import dedup_by_index, potential_scores, subsample, summarize
from magtorch.errors import MagtorchError
from magtorch.scales import convergence_scale

__all__ = ["MagnitudePotentialCallback"]

#: Above this many points the dense solver is too slow/large to run every few epochs: the
#: callback asks for ``max_samples`` instead of silently taking minutes per scoring.
DENSE_LIMIT = 10_000

#: ``t="convergence"`` solves ``Mag(tX) = 0.95 n`` to this relative accuracy in ``Mag`` (a
#: scale for scoring needs no more; each further digit pair costs a dense solve).
CONVERGENCE_TOL = 1e-8

SCORE_KEYS = ("index", "label", "class_potential", "all_potential", "ratio", "epoch", "t")


class _Shard(Sampler):
    """Deterministic shard ``rank`` of ``indices`` over ``world`` ranks, padded like
    ``DistributedSampler(shuffle=False)`` (the padding copies are removed after the gather)."""

    def __init__(self, indices: Sequence[int], rank: int, world: int):
        indices = list(indices)
        total = -(-len(indices) // world) * world
        padded = (indices * (total // max(len(indices), 1) + 1))[:total]
        self.indices = padded[rank::world]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class MagnitudePotentialCallback(Callback):
    r"""Score every point of a set by its magnitude potential ratio every ``every_n_epochs``.

    At the end of every ``every_n_epochs``-th training epoch the model is put in eval mode and
    run under ``torch.no_grad()`` over the scoring set (batches moved with
    ``trainer.strategy.batch_to_device``; every module's train/eval mode is restored after).
    The per-sample class potential, all-data potential and ratio (see the module docstring)
    are computed in float64, logged, saved and kept on :attr:`scores`.

    **Batch contract.** Batches are ``(x, y, index)``: inputs (the model is called as
    ``pl_module(x)``), integer class labels ``(B,)`` and the dataset indices ``(B,)``. Batches
    ``(x, y)`` are accepted too: the indices are then the positions the loader's sampler
    yields (the scoring loader must not shuffle), or running positions for iterable datasets.

    **Logged** through ``pl_module.log`` (``on_epoch``), under ``potential/`` (held-out:
    ``potential_heldout/``), per scale (``potential/t{k}/...`` for several scales):
    ``ratio_mean``, ``ratio_q10``, ``ratio_q25``, ``ratio_q50``, ``ratio_q75``, ``ratio_q90``,
    ``frac_ratio_below_1``, ``frac_ratio_nonfinite``, ``ratio_mean_class_{c}``, and ``t``. With
    a ``TensorBoardLogger`` the ratios also go to a histogram (skipped for other loggers).

    **Saved** (``save=True``, global rank zero only, atomically: a temporary file then
    ``os.replace``) with ``torch.save`` to
    ``{trainer.log_dir}/magnitude_potential/potential_epoch{epoch:04d}.pt`` (held-out:
    ``heldout_epoch{epoch:04d}.pt``): the :attr:`scores` dict plus ``"logits"`` ``(n, d)``, the
    scored representation.

    **Distributed.** Each rank scores its shard; logits, labels and indices are gathered from
    all ranks (every rank makes the same collectives), the copies a padding
    ``DistributedSampler`` adds are dropped by index, and every rank computes the same scores.
    With ``scoring="train"`` the callback shards the training dataset itself; a user
    ``DataLoader`` is iterated as given on every rank (duplicates across ranks are removed).

    Args:
        every_n_epochs: score after epochs ``every_n_epochs - 1``, ``2 * every_n_epochs - 1``,
            ... (0-based ``trainer.current_epoch``).
        t: the scale: a positive number, a list of numbers (results gain a leading axis of
            length ``T``), ``"convergence"`` (the :func:`magtorch.convergence_scale` of the
            scored logits, ``Mag = 0.95 n`` to relative accuracy 1e-8, recomputed each time
            starting from the previous scale and recorded in ``scores["t"]``), or a callable
            ``logits (n, d) -> scale(s)``.
        layer: ``None`` for the model's output (logits); or the name of a submodule
            (``pl_module.get_submodule(layer)``) whose output, flattened to ``(B, -1)``, is
            captured by a forward hook.
        scoring: ``"train"`` (the training dataset, re-wrapped in a non-shuffled loader with
            the training loader's ``collate_fn``; transforms of the dataset itself still apply)
            or a ``DataLoader`` of ``(x, y, index)`` batches.
        heldout: optional ``DataLoader`` whose points are scored against the scoring set,
            without leave-one-out; results on :attr:`heldout_scores`.
        max_samples: score at most this many points: a fixed random subset (seed 0) of the
            scoring set (and of ``heldout``), the same at every epoch. ``None`` scores all
            points, but raises for sets over 10000 points (dense ``O(n^3)`` solves).
        batch_size: batch size of the re-wrapped training loader.
        metric: ``"euclidean"`` (default), ``"l1"`` or ``"cosine"`` between representations.
        save: write per-sample results under ``trainer.log_dir``.
        log_histograms: send the ratios to TensorBoard when a ``TensorBoardLogger`` is used.

    Attributes:
        scores: the latest results, ``None`` before the first scoring: a dict of CPU tensors
            ``index (n,)``, ``label (n,)``, ``class_potential``, ``all_potential``, ``ratio``
            (``(n,)``, or ``(T, n)`` for ``T`` scales; float64), ``epoch`` (0-d) and ``t``
            (0-d, or ``(T,)``), in increasing dataset-index order.
        heldout_scores: the same for ``heldout`` (class/all potentials against the scoring set).
        scored_epochs: the epochs scored so far (restored from checkpoints).

    Raises:
        MagtorchError: a bad argument (named in the message), a scoring set over the dense
            limit without ``max_samples``, or batches that break the contract.

    Example:
        >>> import lightning.pytorch as pl, torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from magtorch.callbacks.potential import MagnitudePotentialCallback
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(2, 2)
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y, _ = batch
        ...         return torch.nn.functional.cross_entropy(self(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(20, 2), torch.arange(20) % 2
        >>> data = DataLoader(TensorDataset(x, y, torch.arange(20)), batch_size=10)
        >>> cb = MagnitudePotentialCallback(t=1.0, save=False)
        >>> trainer = pl.Trainer(max_epochs=2, callbacks=[cb], logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), data)
        >>> sorted(cb.scores), cb.scores["ratio"].shape, cb.scored_epochs
        (['all_potential', 'class_potential', 'epoch', 'index', 'label', 'ratio', 't'], torch.Size([20]), [0, 1])
    """  # noqa: E501

    def __init__(
        self,
        every_n_epochs: int = 1,
        t: float | Sequence[float] | str | Callable[[Tensor], Any] = "convergence",
        layer: str | None = None,
        scoring: str | DataLoader = "train",
        heldout: DataLoader | None = None,
        max_samples: int | None = None,
        batch_size: int = 256,
        metric: str = "euclidean",
        save: bool = True,
        log_histograms: bool = True,
    ):
        super().__init__()
        self.every_n_epochs = _positive_int(every_n_epochs, "every_n_epochs", 1)
        if isinstance(t, str):
            if t != "convergence":
                raise MagtorchError(
                    f"t must be a positive number, a list of them, 'convergence' or a callable; "
                    f"got t={t!r}"
                )
        elif not callable(t):
            as_scales(t, device=torch.device("cpu"), name="t")  # validates; raises naming t
        self.t = t
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise MagtorchError(f"layer must be None or a submodule name; got layer={layer!r}")
        self.layer = layer
        if not (scoring == "train" or isinstance(scoring, DataLoader)):
            raise MagtorchError(
                f"scoring must be 'train' or a torch DataLoader; got scoring={scoring!r}"
            )
        self.scoring = scoring
        if heldout is not None and not isinstance(heldout, DataLoader):
            raise MagtorchError(f"heldout must be None or a DataLoader; got heldout={heldout!r}")
        self.heldout = heldout
        if max_samples is not None:
            max_samples = _positive_int(max_samples, "max_samples", 2)
        self.max_samples = max_samples
        self.batch_size = _positive_int(batch_size, "batch_size", 1)
        self.metric = check_metric(metric)
        if self.metric == "precomputed":
            raise MagtorchError("metric='precomputed' is not possible for model outputs")
        for name, value in (("save", save), ("log_histograms", log_histograms)):
            if not isinstance(value, bool):
                raise MagtorchError(f"{name} must be True or False; got {name}={value!r}")
        self.save = save
        self.log_histograms = log_histograms

        self.scores: dict[str, Tensor] | None = None
        self.heldout_scores: dict[str, Tensor] | None = None
        self.scored_epochs: list[int] = []
        self._captured: list[Tensor] = []
        self._warned_cap = False
        self._last_t: Tensor | None = None  # warm start of t="convergence"

    # ------------------------------------------------------------------ Lightning plumbing

    @property
    def state_key(self) -> str:
        t = self.t if isinstance(self.t, (str, int, float)) else repr(self.t)
        return self._generate_state_key(
            every_n_epochs=self.every_n_epochs, t=t, layer=self.layer, metric=self.metric
        )

    def state_dict(self) -> dict[str, Any]:
        last_t = None if self._last_t is None else float(self._last_t)
        return {
            "scored_epochs": list(self.scored_epochs),
            "every_n_epochs": self.every_n_epochs,
            "last_t": last_t,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scored_epochs = list(state_dict.get("scored_epochs", []))
        last_t = state_dict.get("last_t")
        self._last_t = None if last_t is None else torch.tensor(last_t, dtype=torch.float64)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.layer is not None:
            try:
                pl_module.get_submodule(self.layer)
            except AttributeError as err:
                raise MagtorchError(
                    f"layer={self.layer!r} is not a submodule of {type(pl_module).__name__}"
                ) from err

    def _should_score(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return False
        epoch = trainer.current_epoch
        return (epoch + 1) % self.every_n_epochs == 0 and epoch not in self.scored_epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_score(trainer):
            return
        self.score(trainer, pl_module)

    # ------------------------------------------------------------------ scoring

    def score(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        """Score now (every rank must call this together); returns and stores :attr:`scores`."""
        epoch = trainer.current_epoch
        modes = {m: m.training for m in pl_module.modules()}
        pl_module.eval()
        try:
            with torch.no_grad():
                z, y, index = self._collect(trainer, pl_module, self._scoring_loader(trainer))
                z, y, index = self._cap(z, y, index, "scoring")
                held = None
                if self.heldout is not None:
                    held = self._cap(*self._collect(trainer, pl_module, self.heldout), "heldout")
        finally:
            for m, mode in modes.items():
                m.train(mode)

        with torch.no_grad():
            t = self._scale(z)
            cls, every, ratio = potential_scores(z, y, t, metric=self.metric)
            self.scores = _pack(index, y, cls, every, ratio, epoch, t)
            if held is not None:
                hz, hy, hindex = held
                hcls, hevery, hratio = potential_scores(
                    hz, hy, t, reference=z, reference_labels=y, metric=self.metric
                )
                self.heldout_scores = _pack(hindex, hy, hcls, hevery, hratio, epoch, t)
        self.scored_epochs.append(epoch)

        self._log(trainer, pl_module, self.scores, "potential")
        if self.heldout_scores is not None and held is not None:
            self._log(trainer, pl_module, self.heldout_scores, "potential_heldout")
        if self.save:
            log_dir = trainer.log_dir  # a collective under DDP: every rank asks
            if trainer.is_global_zero:
                folder = os.path.join(log_dir or trainer.default_root_dir, "magnitude_potential")
                _atomic_save(
                    {**self.scores, "logits": z.cpu()},
                    os.path.join(folder, f"potential_epoch{epoch:04d}.pt"),
                )
                if held is not None:
                    _atomic_save(
                        {**self.heldout_scores, "logits": held[0].cpu()},
                        os.path.join(folder, f"heldout_epoch{epoch:04d}.pt"),
                    )
        return self.scores

    def _scale(self, z: Tensor) -> Tensor:
        if self.t == "convergence":
            # Representations move slowly between scorings: start from the last scale.
            t = convergence_scale(
                z.to(torch.float64), metric=self.metric, t_init=self._last_t, tol=CONVERGENCE_TOL
            )
            if not float(t) > 0:
                raise MagtorchError(
                    "t='convergence': the scored representations are all equal (a single "
                    "distinct point), so no convergence scale exists; give t a number"
                )
            self._last_t = t.detach().to(torch.float64)
            return self._last_t
        if callable(self.t):
            return as_scales(self.t(z), device=z.device, name="t").detach()
        return as_scales(self.t, device=z.device, name="t")

    def _scoring_loader(self, trainer: pl.Trainer) -> DataLoader:
        if isinstance(self.scoring, DataLoader):
            return self.scoring
        source, dataset, n = training_dataset(trainer, "(x, y, index)")
        self._check_size(n, "scoring")
        keep = subsample(n, self.max_samples) if self.max_samples else torch.arange(n)
        if len(keep) < n:
            self._warn_cap(n, "scoring")
        sampler = _Shard(keep.tolist(), trainer.global_rank, trainer.world_size)
        return DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=source.collate_fn
        )

    def _check_size(self, n: int, what: str) -> None:
        if self.max_samples is None and n > DENSE_LIMIT:
            raise MagtorchError(
                f"the {what} set has {n} points: dense potentials cost O(n^3) time and 8 n^2 "
                f"bytes per solve, too much above {DENSE_LIMIT} points; set max_samples "
                f"(e.g. max_samples=5000) to score a fixed random subset"
            )

    def _warn_cap(self, n: int, what: str) -> None:
        if not self._warned_cap:
            rank_zero_warn(
                f"MagnitudePotentialCallback: the {what} set has {n} points; scoring a fixed "
                f"random subset of max_samples={self.max_samples}"
            )
            self._warned_cap = True

    def _cap(self, z: Tensor, y: Tensor, index: Tensor, what: str):
        n = len(index)
        self._check_size(n, what)
        if self.max_samples is not None and n > self.max_samples:
            self._warn_cap(n, what)
            keep = subsample(n, self.max_samples).to(index.device)
            return z[keep], y[keep], index[keep]
        return z, y, index

    def _collect(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loader: DataLoader):
        """Representations, labels and indices of ``loader``, gathered over ranks, sorted."""
        handle = None
        if self.layer is not None:
            handle = pl_module.get_submodule(self.layer).register_forward_hook(self._hook)
        zs, ys, ids = [], [], []
        positions: list[int] | None = None
        seen = 0
        try:
            for batch in loader:
                batch = trainer.strategy.batch_to_device(batch)
                if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                    raise MagtorchError(
                        "MagnitudePotentialCallback needs batches (x, y, index) or (x, y); got "
                        f"{type(batch).__name__}"
                        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                    )
                x, y = batch[0], batch[1]
                self._captured.clear()
                out = pl_module(x)
                if self.layer is not None:
                    if not self._captured:
                        raise MagtorchError(f"layer={self.layer!r} was not called by forward")
                    out = self._captured[-1]
                if isinstance(out, (tuple, list)):
                    out = out[0]
                if not isinstance(out, Tensor):
                    raise MagtorchError(
                        f"the model output must be a tensor of logits; got {type(out).__name__}"
                    )
                out = out.reshape(out.shape[0], -1)
                y = torch.as_tensor(y, device=out.device).reshape(-1)
                if len(batch) == 3:
                    idx = torch.as_tensor(batch[2], device=out.device).reshape(-1)
                else:
                    if positions is None:
                        positions = _sampler_positions(loader)
                    if positions is None:
                        idx = torch.arange(seen, seen + len(y), device=out.device)
                    else:
                        idx = torch.as_tensor(positions[seen : seen + len(y)], device=out.device)
                seen += len(y)
                if not (len(y) == len(idx) == out.shape[0]):
                    raise MagtorchError(
                        f"batch sizes disagree: {out.shape[0]} outputs, {len(y)} labels, "
                        f"{len(idx)} indices"
                    )
                zs.append(out.detach())
                ys.append(y.long())
                ids.append(idx.long())
        finally:
            if handle is not None:
                handle.remove()
            self._captured.clear()
        device = pl_module.device
        if zs:
            z, y, index = torch.cat(zs), torch.cat(ys), torch.cat(ids)
        else:
            z = torch.zeros(0, 0, device=device)
            y = index = torch.zeros(0, dtype=torch.long, device=device)
        if trainer.world_size > 1:
            z, y, index = _gather(trainer, z, y, index)
        index, z, y = dedup_by_index(index, z, y)
        if len(index) < 2:
            raise MagtorchError(f"the scoring loader yielded {len(index)} points; need at least 2")
        return z, y, index

    def _log(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, scores: dict, prefix: str
    ) -> None:
        ratio, ts = scores["ratio"], scores["t"].reshape(-1)
        ratios = ratio.reshape(-1, ratio.shape[-1])
        tensorboards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        for k in range(ts.numel()):
            name = f"{prefix}/t{k}" if ts.numel() > 1 else prefix
            stats = summarize(ratios[k], scores["label"])
            stats["t"] = float(ts[k])
            pl_module.log_dict(
                {f"{name}/{key}": value for key, value in stats.items()},
                on_step=False,
                on_epoch=True,
                sync_dist=trainer.world_size > 1,  # equal on every rank: the mean is a no-op
            )
            if self.log_histograms and trainer.is_global_zero:
                finite = ratios[k][torch.isfinite(ratios[k])]
                for logger in tensorboards:
                    if finite.numel():
                        logger.experiment.add_histogram(
                            f"{name}/ratio", finite, global_step=trainer.global_step
                        )

    def _hook(self, module, inputs, output) -> None:
        if isinstance(output, (tuple, list)):
            output = output[0]
        self._captured.append(output)


# ---------------------------------------------------------------------- helpers


def _positive_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MagtorchError(f"{name} must be an integer >= {minimum}; got {name}={value!r}")
    return value


def _sampler_positions(loader: DataLoader) -> list[int] | None:
    """Dataset indices in the order a non-shuffling loader yields them (None: iterable)."""
    if loader.batch_sampler is None and loader.sampler is None:
        return None
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler) or getattr(sampler, "shuffle", False):
        raise MagtorchError(
            "batches are (x, y) without an index and the scoring loader shuffles: make the "
            "dataset return (x, y, index), or use a loader with shuffle=False"
        )
    if loader.batch_sampler is not None:
        return [int(i) for b in loader.batch_sampler for i in b]
    try:
        return [int(i) for i in sampler]
    except TypeError:
        return None


def _gather(trainer: pl.Trainer, z: Tensor, y: Tensor, index: Tensor):
    """All-gather rows of unequal length from every rank (padded to the longest, then cut)."""
    strategy = trainer.strategy
    shape = torch.tensor([z.shape[0], z.shape[1]], device=z.device)
    shapes = strategy.all_gather(shape).reshape(-1, 2)
    rows, width = int(shapes[:, 0].max()), int(shapes[:, 1].max())
    zp = z.new_zeros(rows, width)
    zp[: z.shape[0], : z.shape[1]] = z
    yp = y.new_zeros(rows)
    yp[: len(y)] = y
    ip = index.new_zeros(rows)
    ip[: len(index)] = index
    zg, yg, ig = (strategy.all_gather(a) for a in (zp, yp, ip))
    counts = shapes[:, 0].tolist()
    cut = [slice(0, int(c)) for c in counts]
    return (
        torch.cat([zg[r, s] for r, s in enumerate(cut)]),
        torch.cat([yg[r, s] for r, s in enumerate(cut)]),
        torch.cat([ig[r, s] for r, s in enumerate(cut)]),
    )


def _pack(index, y, cls, every, ratio, epoch: int, t: Tensor) -> dict[str, Tensor]:
    return {
        "index": index.cpu(),
        "label": y.cpu(),
        "class_potential": cls.cpu(),
        "all_potential": every.cpu(),
        "ratio": ratio.cpu(),
        "epoch": torch.tensor(epoch),
        "t": t.detach().cpu().to(torch.float64),
    }


def training_dataset(trainer: pl.Trainer, contract: str) -> tuple[DataLoader, Any, int]:
    """The trainer's training loader, its map-style dataset and its length (``scoring="train"``).

    Raises :class:`~magtorch.MagtorchError` for several training loaders or an iterable
    dataset, telling the user to pass a scoring loader of ``contract`` batches instead.
    """
    source = trainer.train_dataloader
    if not isinstance(source, DataLoader):
        raise MagtorchError(
            "scoring='train' needs a single training DataLoader; got "
            f"{type(source).__name__}: pass scoring=<DataLoader of {contract}>"
        )
    dataset = source.dataset
    try:
        n = len(dataset)
    except TypeError as err:
        raise MagtorchError(
            "scoring='train' needs a map-style training dataset (with __len__); "
            "pass scoring=<DataLoader> for iterable datasets"
        ) from err
    return source, dataset, n


def _atomic_save(obj: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)
