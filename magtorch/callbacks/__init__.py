"""Lightning callbacks that attach magnitude to training (the only part of magtorch that imports
``lightning``; install the ``lightning`` extra).

* :class:`MagnitudePotentialCallback`: per-sample magnitude potentials of the logits (class vs
  all, leave-one-out) every N epochs — memorisation, grokking, decision-boundary shifts.
* :class:`WeightMagnitudeCallback`: magnitude of each layer's weights every N epochs.
* :class:`TrajectoryMagnitudeCallback`: magnitude and positive magnitude of the trajectory of
  further optimiser steps after training (Andreeva et al., AAAI 2025, §5.2).
* :class:`PartitionCallback`: cells, boundary distances and curvature of a ReLU network's
  input-space partition every N epochs (``magtorch.partition``).

Each is a thin shell over magtorch's functions (``magtorch.loo_potential``,
``magtorch.weight_magnitude``, ``magtorch.solve``).
"""

from .partition import PartitionCallback
from .potential import MagnitudePotentialCallback
from .trajectory import TrajectoryMagnitudeCallback
from .weights import WeightMagnitudeCallback

__all__ = [
    "MagnitudePotentialCallback",
    "PartitionCallback",
    "TrajectoryMagnitudeCallback",
    "WeightMagnitudeCallback",
]
