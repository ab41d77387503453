"""Data modules of the experiments (see :mod:`experiments.data.base` for the contract).

* :class:`~experiments.data.sklearn_sets.SklearnDataModule`: digits, iris, wine,
  breast_cancer (bundled with scikit-learn, offline);
* :class:`~experiments.data.toy.ToyDataModule`: 2-D moons, circles, blobs, Gaussian mixture;
* :class:`~experiments.data.vision.VisionDataModule`: MNIST, CIFAR-10, FakeData (torchvision,
  imported lazily).
"""

from experiments.data.base import ArrayDataModule, IndexedTensorDataset
from experiments.data.sklearn_sets import SklearnDataModule
from experiments.data.toy import ToyDataModule
from experiments.data.vision import VisionDataModule

__all__ = [
    "ArrayDataModule",
    "IndexedTensorDataset",
    "SklearnDataModule",
    "ToyDataModule",
    "VisionDataModule",
]
