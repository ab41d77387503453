"""Two-dimensional toy classification sets from scikit-learn's generators.

``ToyDataModule(name=...)`` with ``"moons"`` (``make_moons``, 2 classes), ``"circles"``
(``make_circles``, 2 classes, ``factor`` the inner radius), ``"blobs"`` (``make_blobs``,
``num_classes`` isotropic blobs) and ``"gaussian_mixture"`` (``num_classes`` Gaussians with
means on a circle of radius 2 and random covariances, each component one class). ``noise`` is
the noise level of moons/circles and the standard deviation of blobs/mixture components.
Generation is seeded by ``seed``; split, standardised and served by
:class:`~experiments.data.base.ArrayDataModule`.

Example:
    >>> dm = ToyDataModule("moons", n_samples=200, noise=0.1, seed=0)
    >>> dm.setup()
    >>> dm.num_classes, dm.input_shape, len(dm.train_set) + len(dm.val_set)
    (2, (2,), 200)
"""

from __future__ import annotations

import numpy as np

from experiments.data.base import ArrayDataModule
from magtorch.errors import MagtorchError

__all__ = ["GENERATORS", "ToyDataModule", "gaussian_mixture"]

GENERATORS = ("moons", "circles", "blobs", "gaussian_mixture")


def gaussian_mixture(
    n_samples: int, num_classes: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``num_classes`` 2-D Gaussians, means ``2 (cos, sin)(2 pi k / C)``, covariance
    ``noise^2 A Aᵀ`` with ``A`` a random matrix of singular values in [0.5, 1.5]; labels are the
    components (equal sizes, up to one point).

    Example:
        >>> x, y = gaussian_mixture(9, 3, 0.1, seed=0)
        >>> x.shape, np.bincount(y).tolist()
        ((9, 2), [3, 3, 3])
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % num_classes
    angles = 2 * np.pi * np.arange(num_classes) / num_classes
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = np.empty((n_samples, 2))
    for c in range(num_classes):
        q, _ = np.linalg.qr(rng.normal(size=(2, 2)))
        a = q @ np.diag(rng.uniform(0.5, 1.5, size=2))
        members = y == c
        x[members] = means[c] + noise * rng.normal(size=(int(members.sum()), 2)) @ a.T
    return x, y


class ToyDataModule(ArrayDataModule):
    """A seeded 2-D toy set (see the module docstring).

    Args:
        name: ``"moons"``, ``"circles"``, ``"blobs"`` or ``"gaussian_mixture"``.
        n_samples: total points before the split.
        noise: noise level (see the module docstring).
        num_classes: classes of ``blobs`` and ``gaussian_mixture`` (moons/circles have 2).
        factor: inner-circle radius of ``circles``.
        **kwargs: the :class:`~experiments.data.base.ArrayDataModule` arguments.
    """

    def __init__(
        self,
        name: str = "moons",
        n_samples: int = 1000,
        noise: float = 0.1,
        num_classes: int = 3,
        factor: float = 0.5,
        **kwargs,
    ) -> None:
        if name not in GENERATORS:
            raise MagtorchError(f"name must be one of {GENERATORS}; got name={name!r}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 4:
            raise MagtorchError(f"n_samples must be an integer >= 4; got {n_samples!r}")
        if not float(noise) >= 0:
            raise MagtorchError(f"noise must be >= 0; got noise={noise!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise MagtorchError(f"num_classes must be an integer >= 2; got {num_classes!r}")
        super().__init__(**kwargs)
        self.name, self.n_samples, self.noise = name, n_samples, float(noise)
        self.n_classes_requested, self.factor = num_classes, float(factor)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets as ds

        n, noise, seed = self.n_samples, self.noise, self.seed
        if self.name == "moons":
            return ds.make_moons(n_samples=n, noise=noise, random_state=seed)
        if self.name == "circles":
            return ds.make_circles(n_samples=n, noise=noise, factor=self.factor, random_state=seed)
        if self.name == "blobs":
            return ds.make_blobs(
                n_samples=n,
                centers=self.n_classes_requested,
                n_features=2,
                cluster_std=max(noise, 1e-12),
                random_state=seed,
            )
        return gaussian_mixture(n, self.n_classes_requested, noise, seed)
