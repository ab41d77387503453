"""``torch.nn`` modules for training with magnitude: thin shells over magtorch's functions.

* :class:`MagnitudeDistanceLoss` over :func:`magtorch.magnitude_distance`;
* :class:`WeightMagnitudeRegularizer` over :func:`magtorch.weight_magnitude`.
"""

from .losses import MagnitudeDistanceLoss
from .regularizers import WeightMagnitudeRegularizer

__all__ = ["MagnitudeDistanceLoss", "WeightMagnitudeRegularizer"]
