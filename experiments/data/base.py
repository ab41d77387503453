"""The data-module contract of the experiments, and a data module over in-memory arrays.

Every data module used by ``experiments/train.py`` is a :class:`lightning.LightningDataModule`
built from plain keyword arguments (so Hydra can instantiate it) with

* ``num_classes: int`` and ``input_shape: tuple[int, ...]`` (``input_dim`` too, for vectors),
  valid after ``setup()``;
* datasets whose items are ``(x, y, index)``, ``index`` the position in that dataset (what
  :class:`magtorch.callbacks.MagnitudePotentialCallback` keys its scores by);
* ``train_dataloader()`` (shuffled, seeded), ``val_dataloader()`` (the held-out split, in
  order) and ``score_dataloader()`` (the training set in order, no augmentation: the set the
  potential callback scores);
* an idempotent ``setup()`` and seeded default splits.

:class:`ArrayDataModule` implements it for a feature matrix ``x (n, d)`` and labels ``y (n,)``
(the scikit-learn sets, the 2-D toy generators): a stratified seeded train/validation split,
standardisation with the training mean and standard deviation, and optionally a fraction of
flipped training labels (``flip_fraction``; ``flipped`` marks them), the planted "known
memorised points" of the memorisation experiment.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from magtorch.errors import MagtorchError

__all__ = ["ArrayDataModule", "IndexedTensorDataset", "flip_labels", "stratified_split"]


class IndexedTensorDataset(Dataset):
    """``(x[i], y[i], i)`` over two tensors of equal length.

    Example:
        >>> ds = IndexedTensorDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
        >>> len(ds), ds[2][1].item(), ds[2][2]
        (3, 0, 2)
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise MagtorchError(f"x and y differ in length: {len(x)} and {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        return self.x[i], self.y[i], i


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: sorted train and validation index arrays.

    Each class contributes ``round(val_fraction * n_c)`` points to validation (at least one
    point stays in training).

    Example:
        >>> tr, va = stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
        >>> len(tr), len(va), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[va].tolist())
        (6, 2, [0, 1])
    """
    if not 0.0 <= val_fraction < 1.0:
        raise MagtorchError(f"val_fraction must be in [0, 1); got val_fraction={val_fraction!r}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = min(int(round(val_fraction * len(members))), len(members) - 1)
        val.append(rng.permutation(members)[:k])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


def flip_labels(
    y: np.ndarray, fraction: float, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Give ``round(fraction * n)`` random points a different, uniformly drawn label.

    Returns the new labels and the boolean mask of the flipped points. Every flipped label
    differs from the original one.

    Example:
        >>> y = np.arange(100) % 10
        >>> y2, mask = flip_labels(y, 0.05, 10, seed=0)
        >>> int(mask.sum()), bool((y2[mask] != y[mask]).all()), bool((y2[~mask] == y[~mask]).all())
        (5, True, True)
    """
    if not 0.0 <= fraction < 1.0:
        raise MagtorchError(f"flip_fraction must be in [0, 1); got flip_fraction={fraction!r}")
    if num_classes < 2 and fraction > 0:
        raise MagtorchError("flip_fraction > 0 needs at least two classes")
    rng = np.random.default_rng(seed)
    n = len(y)
    k = int(round(fraction * n))
    chosen = rng.choice(n, size=k, replace=False) if k else np.zeros(0, dtype=np.int64)
    y = y.copy()
    # A shift in 1..C-1 (mod C) moves the label to a different class, uniformly.
    y[chosen] = (y[chosen] + rng.integers(1, num_classes, size=k)) % num_classes
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return y, mask


class ArrayDataModule(pl.LightningDataModule):
    """A classification data module over arrays, following the contract of this package.

    Subclasses implement :meth:`load` (returning ``x (n, d)`` float and ``y (n,)`` integer
    labels ``0..C-1``); this class splits, standardises, flips and serves them.

    Args:
        val_fraction: held-out fraction, stratified by class (default 0.2).
        batch_size: training batch size (validation and scoring use ``eval_batch_size``).
        eval_batch_size: batch size of the validation and scoring loaders.
        standardize: subtract the training mean and divide by the training standard deviation
            (features with zero deviation are only centred).
        flip_fraction: fraction of *training* labels replaced by a different random class.
        max_train_samples: keep at most this many training points (a seeded random subset;
            ``None``: all).
        seed: seed of the split, the flips and the training-loader shuffle.
        num_workers: DataLoader workers.

    Attributes (after :meth:`setup`):
        train_set, val_set: :class:`IndexedTensorDataset`.
        num_classes, input_dim, input_shape: sizes for the model.
        flipped: boolean tensor ``(n_train,)``, True for flipped training labels.
        clean_train_labels: the training labels before flipping.
    """

    def __init__(
        self,
        val_fraction: float = 0.2,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        standardize: bool = True,
        flip_fraction: float = 0.0,
        max_train_samples: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MagtorchError(f"{name} must be a positive integer; got {name}={value!r}")
        if max_train_samples is not None and (
            isinstance(max_train_samples, bool)
            or not isinstance(max_train_samples, int)
            or max_train_samples < 2
        ):
            raise MagtorchError(
                f"max_train_samples must be None or an integer >= 2; got {max_train_samples!r}"
            )
        if not 0.0 <= float(val_fraction) < 1.0:
            raise MagtorchError(f"val_fraction must be in [0, 1); got {val_fraction!r}")
        if not 0.0 <= float(flip_fraction) < 1.0:
            raise MagtorchError(f"flip_fraction must be in [0, 1); got {flip_fraction!r}")
        self.val_fraction = float(val_fraction)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.standardize = bool(standardize)
        self.flip_fraction = float(flip_fraction)
        self.max_train_samples = max_train_samples
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.train_set: IndexedTensorDataset | None = None
        self.val_set: IndexedTensorDataset | None = None

    # ------------------------------------------------------------------ to implement

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """The raw data: ``x (n, d)`` and integer labels ``y (n,)`` in ``0..C-1``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ contract

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x, y = self.load()
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        y = np.asarray(y).astype(np.int64)
        classes = np.unique(y)
        if not np.array_equal(classes, np.arange(len(classes))):
            raise MagtorchError(f"labels must be 0..C-1; got classes {classes.tolist()}")
        train_idx, val_idx = stratified_split(y, self.val_fraction, self.seed)
        if self.max_train_samples is not None and len(train_idx) > self.max_train_samples:
            rng = np.random.default_rng(self.seed + 1)
            keep = rng.permutation(len(train_idx))[: self.max_train_samples]
            train_idx = np.sort(train_idx[keep])
        xtr, ytr, xva, yva = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
        if self.standardize:
            mean, std = xtr.mean(axis=0), xtr.std(axis=0)
            std[std == 0] = 1.0
            xtr, xva = (xtr - mean) / std, (xva - mean) / std
        self.num_classes = int(len(classes))
        self.clean_train_labels = torch.as_tensor(ytr)
        ytr_noisy, mask = flip_labels(ytr, self.flip_fraction, self.num_classes, self.seed + 2)
        self.flipped = torch.as_tensor(mask)
        self.input_dim = int(x.shape[1])
        self.input_shape = (self.input_dim,)
        self.train_set = IndexedTensorDataset(
            torch.as_tensor(xtr, dtype=torch.float32), torch.as_tensor(ytr_noisy)
        )
        self.val_set = IndexedTensorDataset(
            torch.as_tensor(xva, dtype=torch.float32), torch.as_tensor(yva)
        )

    def _require(self) -> None:
        if self.train_set is None:
            self.setup()

    def train_dataloader(self) -> DataLoader:
        self._require()
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            generator=g,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        self._require()
        return DataLoader(
            self.val_set, batch_size=self.eval_batch_size, num_workers=self.num_workers
        )

    def score_dataloader(self) -> DataLoader:
        self._require()
        return DataLoader(
            self.train_set, batch_size=self.eval_batch_size, num_workers=self.num_workers
        )

    def describe(self) -> dict[str, Any]:
        """Sizes for reports: train/val counts, classes, input dimension, flipped count."""
        self._require()
        return {
            "n_train": len(self.train_set),
            "n_val": len(self.val_set),
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "n_flipped": int(self.flipped.sum()),
        }
