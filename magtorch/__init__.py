"""magtorch: differentiable magnitude of metric spaces for deep learning.

The functional API: distances and similarity matrices, the solve ``Z_t w = 1`` (batched over sets
and scales, differentiable with the implicit gradient), magnitude, its derivative, potentials, and
scale summaries. ``import magtorch`` imports torch and numpy only.

Example:
    >>> import torch, magtorch
    >>> x = torch.randn(100, 3, dtype=torch.float64, requires_grad=True)
    >>> mag = magtorch.magnitude(x, torch.tensor([0.5, 1.0, 2.0]))
    >>> mag.sum().backward()
    >>> x.grad.shape
    torch.Size([100, 3])
"""

from . import cluster, nn
from ._memory import memory_budget, set_memory_budget
from .distance import magnitude_distance
from .errors import (
    ConvergenceError,
    ConvergenceWarning,
    MagnitudeWarning,
    MagtorchError,
    MemoryBudgetError,
)
from .magnitude import (
    ClassPotentials,
    MagnitudeFunction,
    MagnitudeResult,
    SolveInfo,
    class_potentials,
    loo_potential,
    magnitude,
    magnitude_derivative,
    magnitude_function,
    positive_magnitude,
    potential,
    potential_ratio,
    solve,
    weights,
)
from .matrix_free import MagnitudeBounds, magnitude_bounds
from .network import line_magnitude, line_weights, sampled_line_magnitude, weight_magnitude
from .pairwise import pairwise_distances, similarity_matrix
from .scales import (
    MagnitudeDimension,
    convergence_scale,
    magnitude_area,
    magnitude_difference,
    magnitude_dimension,
)
from .solvers import available_solvers, register_solver

__version__ = "0.1.0"

__all__ = [
    "ClassPotentials",
    "ConvergenceError",
    "ConvergenceWarning",
    "MagnitudeBounds",
    "MagnitudeDimension",
    "MagnitudeFunction",
    "MagnitudeResult",
    "MagnitudeWarning",
    "MagtorchError",
    "MemoryBudgetError",
    "SolveInfo",
    "available_solvers",
    "class_potentials",
    "cluster",
    "convergence_scale",
    "line_magnitude",
    "line_weights",
    "loo_potential",
    "magnitude",
    "magnitude_area",
    "magnitude_bounds",
    "magnitude_derivative",
    "magnitude_difference",
    "magnitude_distance",
    "magnitude_dimension",
    "magnitude_function",
    "memory_budget",
    "nn",
    "pairwise_distances",
    "positive_magnitude",
    "potential",
    "potential_ratio",
    "register_solver",
    "sampled_line_magnitude",
    "set_memory_budget",
    "similarity_matrix",
    "solve",
    "weight_magnitude",
    "weights",
]
