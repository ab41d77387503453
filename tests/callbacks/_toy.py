"""A tiny labelled dataset and MLP classifier shared by the callback tests.

``ToyDataset`` yields ``(x, y, index)`` (the contract of the magtorch callbacks);
``PairDataset`` yields ``(x, y)`` only, to test the positional-index fallback.
``ToyClassifier`` is a two-layer MLP LightningModule whose ``training_step`` accepts both.
Everything is seeded and CPU-sized: 48 points in 4 dimensions, 3 classes, 12 hidden units.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def toy_tensors(n: int = 48, d: int = 4, classes: int = 3, seed: int = 0):
    """Gaussian blobs: ``x`` float32 ``(n, d)``, ``y`` int64 ``(n,)`` with every class present."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = 2.0 * torch.randn(classes, d, generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    return x.float(), y.long()


class ToyDataset(Dataset):
    """``(x, y, index)`` triples over fixed tensors."""

    def __init__(self, n: int = 48, d: int = 4, classes: int = 3, seed: int = 0):
        self.x, self.y = toy_tensors(n, d, classes, seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


class PairDataset(ToyDataset):
    """The same data as ``(x, y)`` pairs (no index)."""

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class ToyClassifier(pl.LightningModule):
    """MLP ``d -> hidden -> classes``; submodules ``body`` (Linear+ReLU) and ``head`` (Linear)."""

    def __init__(self, d: int = 4, hidden: int = 12, classes: int = 3, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)
        self.lr = lr

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def toy_loader(dataset=None, batch_size: int = 16, shuffle: bool = True, **kwargs) -> DataLoader:
    """A DataLoader over ``dataset`` (default ``ToyDataset()``), shuffled with a fixed seed."""
    dataset = ToyDataset() if dataset is None else dataset
    g = torch.Generator().manual_seed(0)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, **kwargs)


def make_trainer(tmp_path, **kwargs) -> pl.Trainer:
    """A quiet CPU Trainer (no logger, checkpoints, progress bar), 2 epochs unless overridden."""
    opts = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        max_epochs=2,
    )
    opts.update(kwargs)
    return pl.Trainer(**opts)
