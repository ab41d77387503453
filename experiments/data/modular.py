r"""Modular arithmetic, the grokking data set (Power et al., 2022).

All :math:`p^2` equations :math:`a \circ b = c` over :math:`\mathbb{Z}_p` (``a, b`` in
``0..p-1``), with :math:`c = (a + b) \bmod p` (``operation="add"``), :math:`(a - b) \bmod p`
(``"sub"``) or :math:`(a b) \bmod p` (``"mul"``). A seeded random fraction ``train_fraction``
of the equations is the training set, the rest the held-out set.

Items are ``(x, y, index)``: ``x`` the two operand tokens ``(2,)`` int64, ``y`` the class
``c`` (int64, ``p`` classes) and ``index`` the position in its split (the contract of
:class:`magtorch.callbacks.MagnitudePotentialCallback`).

Example:
    >>> from experiments.data.modular import ModularArithmeticDataModule
    >>> dm = ModularArithmeticDataModule(p=7, train_fraction=0.5, seed=0)
    >>> dm.setup()
    >>> len(dm.train_set), len(dm.val_set), dm.num_classes, dm.input_shape
    (24, 25, 7, (2,))
    >>> x, y, i = dm.train_set[0]
    >>> int(y) == (int(x[0]) + int(x[1])) % 7, i
    (True, 0)
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from experiments.data.base import IndexedTensorDataset
from magtorch.errors import MagtorchError

__all__ = [
    "OPERATIONS",
    "BatchedIndexedDataset",
    "ModularArithmeticDataModule",
    "keep_batch",
    "modular_table",
]

OPERATIONS = ("add", "sub", "mul")


class BatchedIndexedDataset(IndexedTensorDataset):
    """:class:`IndexedTensorDataset` that also fetches a whole batch at once.

    ``__getitems__(indices)`` (used by ``DataLoader`` since torch 2.x) returns the collated
    batch ``(x[idx], y[idx], idx)`` directly; loaders use :func:`keep_batch` as ``collate_fn``.
    Collating thousands of single items in Python costs ~0.2 s per full batch; this costs a
    tensor index.
    """

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self.x[idx], self.y[idx], idx


def keep_batch(batch: Any) -> Any:
    """``collate_fn`` for :class:`BatchedIndexedDataset`: the batch is already collated."""
    return batch


def modular_table(p: int, operation: str = "add") -> tuple[Tensor, Tensor]:
    r"""All ``p * p`` equations: operands ``(p*p, 2)`` int64 (row-major in ``a``) and results.

    Example:
        >>> x, y = modular_table(3)
        >>> x[:4].tolist(), y[:4].tolist()
        ([[0, 0], [0, 1], [0, 2], [1, 0]], [0, 1, 2, 1])
    """
    if isinstance(p, bool) or not isinstance(p, int) or p < 2:
        raise MagtorchError(f"p must be an int >= 2; got p={p!r}")
    if operation not in OPERATIONS:
        raise MagtorchError(f"operation must be one of {OPERATIONS}; got operation={operation!r}")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    if operation == "add":
        c = (a + b) % p
    elif operation == "sub":
        c = (a - b) % p
    else:
        c = (a * b) % p
    return torch.stack([a, b], dim=1), c


class ModularArithmeticDataModule(pl.LightningDataModule):
    """The ``p * p`` equations of ``a o b mod p``, split at random into train / held-out.

    Args:
        p: the modulus (default 97; 9409 equations).
        operation: ``"add"``, ``"sub"`` or ``"mul"``.
        train_fraction: fraction of equations used for training, in ``(0, 1)``.
        seed: seed of the split (a ``torch.Generator`` permutation).
        batch_size: training batch size; ``None`` = full batch (one step per epoch).
        eval_batch_size: batch size of the validation and scoring loaders (``None``: all).
        num_workers: DataLoader workers.

    Attributes:
        num_classes: ``p``. vocab_size: ``p`` (operand tokens). input_shape: ``(2,)``.
    """

    def __init__(
        self,
        p: int = 97,
        operation: str = "add",
        train_fraction: float = 0.4,
        seed: int = 0,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        modular_table(p, operation)  # validates p and operation
        if isinstance(train_fraction, bool) or not 0.0 < float(train_fraction) < 1.0:
            raise MagtorchError(f"train_fraction must be in (0, 1); got {train_fraction!r}")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise MagtorchError(f"{name} must be None or a positive int; got {value!r}")
        n_train = int(round(train_fraction * p * p))
        if not 1 <= n_train < p * p:
            raise MagtorchError(
                f"train_fraction={train_fraction} leaves an empty split for p={p} ({p * p} items)"
            )
        self.p, self.operation, self.train_fraction, self.seed = p, operation, train_fraction, seed
        self.batch_size, self.eval_batch_size, self.num_workers = (
            batch_size,
            eval_batch_size,
            num_workers,
        )
        self.n_train = n_train
        self.num_classes = p
        self.vocab_size = p
        self.input_shape: tuple[int, ...] = (2,)
        self.train_set: BatchedIndexedDataset | None = None
        self.val_set: BatchedIndexedDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the seeded split (idempotent)."""
        if self.train_set is not None:
            return
        x, y = modular_table(self.p, self.operation)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(self.seed)))
        tr, te = perm[: self.n_train], perm[self.n_train :]
        self.train_set = BatchedIndexedDataset(x[tr], y[tr])
        self.val_set = BatchedIndexedDataset(x[te], y[te])

    def _loader(self, ds: Dataset, batch_size: int | None, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=len(ds) if batch_size is None else int(batch_size),
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=keep_batch,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def score_dataloader(self) -> DataLoader:
        """The training set, not shuffled (for the potential callback)."""
        self.setup()
        return self._loader(self.train_set, self.eval_batch_size, shuffle=False)
