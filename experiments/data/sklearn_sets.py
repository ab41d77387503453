"""scikit-learn's bundled classification sets as data modules (offline: the files ship with
scikit-learn).

``SklearnDataModule(name="digits")`` (1797 8x8 images, 10 classes, 64 features),
``"iris"`` (150, 3 classes, 4 features), ``"wine"`` (178, 3, 13) and ``"breast_cancer"``
(569, 2, 30); split, standardised and served by :class:`~experiments.data.base.ArrayDataModule`.

Example:
    >>> dm = SklearnDataModule("iris", val_fraction=0.2, seed=0)
    >>> dm.setup()
    >>> dm.num_classes, dm.input_shape, len(dm.train_set), len(dm.val_set)
    (3, (4,), 120, 30)
    >>> x, y, i = dm.train_set[5]
    >>> x.shape, i
    (torch.Size([4]), 5)
"""

from __future__ import annotations

import numpy as np

from experiments.data.base import ArrayDataModule
from magtorch.errors import MagtorchError

__all__ = ["DATASETS", "SklearnDataModule"]

#: Names accepted by :class:`SklearnDataModule` and the scikit-learn loaders behind them.
DATASETS = ("digits", "iris", "wine", "breast_cancer")


class SklearnDataModule(ArrayDataModule):
    """One of scikit-learn's bundled classification sets (see the module docstring).

    Args:
        name: ``"digits"``, ``"iris"``, ``"wine"`` or ``"breast_cancer"``.
        **kwargs: the :class:`~experiments.data.base.ArrayDataModule` arguments
            (``val_fraction``, ``batch_size``, ``flip_fraction``, ``seed``, ...).
    """

    def __init__(self, name: str = "digits", **kwargs) -> None:
        if name not in DATASETS:
            raise MagtorchError(f"name must be one of {DATASETS}; got name={name!r}")
        super().__init__(**kwargs)
        self.name = name

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{self.name}")()
        return bunch.data, bunch.target
