"""torchvision image sets (MNIST, CIFAR-10, and ``FakeData`` for tests) as data modules.

torchvision is imported inside :meth:`VisionDataModule.setup`, never at module import, so the
configs compose (and this module imports) without the ``vision`` extra.

* ``name="mnist"``: 60000 training / 10000 test 28x28 grey images (``input_shape (1, 28,
  28)``), normalised with mean 0.1307 and std 0.3081;
* ``name="cifar10"``: 50000 / 10000 32x32 colour images (``(3, 32, 32)``), normalised with the
  training-set channel means and standard deviations; training batches are augmented with a
  4-pixel padded random crop and a horizontal flip (the validation and scoring loaders are
  not);
* ``name="fake"``: :class:`torchvision.datasets.FakeData` (random images, random labels) of
  ``image_size`` and ``num_classes``; ``fake_train_size`` / ``fake_val_size`` images. No files,
  no network: the test-suite stand-in for the two above.

The validation set is the official test split. ``download=True`` fetches MNIST/CIFAR-10 into
``root`` on first use (a network is needed once). Items are ``(image, label, index)``.

Example:
    >>> dm = VisionDataModule(name="fake", fake_train_size=8, fake_val_size=4)
    >>> dm.num_classes, dm.input_shape
    (10, (3, 32, 32))
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from magtorch.errors import MagtorchError

__all__ = ["Indexed", "VisionDataModule"]

_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
_NORMALIZE = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


class Indexed(Dataset):
    """``(x, y, i)`` from a dataset of ``(x, y)``, optionally restricted to ``indices``
    (``i`` is then the position in ``indices``)."""

    def __init__(self, base: Any, indices: list[int] | None = None) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[self.indices[i] if self.indices is not None else i]
        return x, torch.as_tensor(y, dtype=torch.long), i


class VisionDataModule(pl.LightningDataModule):
    """MNIST, CIFAR-10 or FakeData (see the module docstring).

    Args:
        name: ``"mnist"``, ``"cifar10"`` or ``"fake"``.
        root: dataset directory (default ``$MAGTORCH_DATA`` or ``~/.cache/magtorch``).
        download: download MNIST/CIFAR-10 when missing.
        batch_size, eval_batch_size: training and evaluation batch sizes.
        augment: CIFAR-10 training augmentation (crop + flip).
        max_train_samples: train on a seeded random subset of this many images (``None``: all).
        image_size: ``FakeData`` image shape ``(C, H, W)``.
        num_classes: ``FakeData`` classes.
        fake_train_size, fake_val_size: ``FakeData`` sizes.
        seed: seed of the subset and the shuffle.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        name: str = "mnist",
        root: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        augment: bool = True,
        max_train_samples: int | None = None,
        image_size: tuple[int, int, int] | list[int] = (3, 32, 32),
        num_classes: int = 10,
        fake_train_size: int = 256,
        fake_val_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if name not in ("mnist", "cifar10", "fake"):
            raise MagtorchError(f"name must be 'mnist', 'cifar10' or 'fake'; got name={name!r}")
        image_size = tuple(int(s) for s in image_size)
        if len(image_size) != 3 or min(image_size) < 1:
            raise MagtorchError(f"image_size must be (C, H, W); got image_size={image_size!r}")
        self.name = name
        self.root = root or os.environ.get(
            "MAGTORCH_DATA", os.path.join(os.path.expanduser("~"), ".cache", "magtorch")
        )
        self.download = bool(download)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.augment = bool(augment)
        self.max_train_samples = max_train_samples
        self.image_size = image_size
        self.num_classes = 10 if name != "fake" else int(num_classes)
        self.input_shape = _SHAPES.get(name, image_size)
        self.fake_train_size, self.fake_val_size = int(fake_train_size), int(fake_val_size)
        self.seed, self.num_workers = int(seed), int(num_workers)
        self.train_set = self.val_set = self.score_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        try:
            import torchvision
            from torchvision import transforms as T
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise MagtorchError(
                "VisionDataModule needs torchvision: pip install 'magtorch[vision]'"
            ) from err
        if self.name == "fake":
            plain = T.ToTensor()
            make = torchvision.datasets.FakeData
            train = make(self.fake_train_size, self.image_size, self.num_classes, plain)
            score = train
            val = make(
                self.fake_val_size,
                self.image_size,
                self.num_classes,
                plain,
                random_offset=self.fake_train_size,
            )
        else:
            mean, std = _NORMALIZE[self.name]
            plain = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
            train_tf = plain
            if self.name == "cifar10" and self.augment:
                train_tf = T.Compose(
                    [
                        T.RandomCrop(32, padding=4),
                        T.RandomHorizontalFlip(),
                        T.ToTensor(),
                        T.Normalize(mean, std),
                    ]
                )
            cls = (
                torchvision.datasets.MNIST if self.name == "mnist" else torchvision.datasets.CIFAR10
            )
            kw = {"root": self.root, "download": self.download}
            train = cls(train=True, transform=train_tf, **kw)
            score = cls(train=True, transform=plain, **kw)
            val = cls(train=False, transform=plain, **kw)
        indices = None
        if self.max_train_samples is not None and self.max_train_samples < len(train):
            g = torch.Generator().manual_seed(self.seed)
            indices = torch.randperm(len(train), generator=g)[: self.max_train_samples]
            indices = sorted(indices.tolist())
        self.train_set = Indexed(train, indices)
        self.score_set = Indexed(score, indices)
        self.val_set = Indexed(val)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set,
            self.batch_size,
            shuffle=True,
            generator=g,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.val_set, self.eval_batch_size, num_workers=self.num_workers)

    def score_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.score_set, self.eval_batch_size, num_workers=self.num_workers)

    def describe(self) -> dict[str, Any]:
        """Sizes for reports."""
        self.setup()
        return {
            "n_train": len(self.train_set),
            "n_val": len(self.val_set),
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
        }
