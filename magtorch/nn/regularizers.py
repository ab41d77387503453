r"""Regularisers as :class:`torch.nn.Module` s: thin shells over the functional API.

:class:`WeightMagnitudeRegularizer` penalises the magnitude of a network's weights
(Andreeva et al., AAAI 2025, §4.1); it calls :func:`magtorch.network.weight_magnitude`,
where the modes, the parameter selection and the cost of each are documented.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from magtorch._validation import ScaleLike, as_scales, check_metric, check_positive_int
from magtorch.errors import MagtorchError
from magtorch.network import (
    IncludeLike,
    ParametersLike,
    check_generator,
    check_include,
    check_mode,
    check_reduction,
    weight_magnitude,
)
from magtorch.solvers.base import Solver

__all__ = ["WeightMagnitudeRegularizer"]


class WeightMagnitudeRegularizer(nn.Module):
    r"""The magnitude of a model's weights as a penalty: ``loss = task_loss + lam * reg(model)``.

    ``reg(model)`` returns :func:`~magtorch.network.weight_magnitude` of the selected
    parameters; every argument has the meaning it has there. ``mode="scalar"`` (default) is the
    exact magnitude of all weight values on the real line, :math:`1 + \sum_k \tanh(t g_k / 2)`
    over the sorted values, in :math:`O(n \log n)`; ``"sampled"`` is the paper's estimate (the
    two extreme weights plus ``n_samples`` random ones); ``"neurons"`` treats each row of a
    weight matrix as a point of :math:`\mathbb{R}^{\text{fan\_in}}`, one dense solve per layer.

    At a small scale (:math:`t\,g_k \ll 1` for all gaps) the scalar magnitude is close to
    :math:`1 + t (\max - \min) / 2`, so the penalty's gradient concentrates on the extreme
    weights; larger ``t`` spreads it over all of them.

    Args:
        t: a positive scale, or a 1-d tensor of ``T`` scales (the penalty then has shape
            ``(T,)``; sum it).
        mode: ``"scalar"``, ``"sampled"`` or ``"neurons"``.
        reduction: ``"sum"`` or ``"mean"`` over the sets (layers).
        per_layer: scalar/sampled modes: one set per parameter tensor instead of one set.
        include: parameter selection (default: parameters with >= 2 dimensions, i.e. weights,
            not biases); a predicate ``(name, parameter) -> bool``, a glob pattern on the name or
            a sequence of patterns.
        trainable_only: only parameters with ``requires_grad``.
        n_samples: sampled mode: random weights besides the two extremes (paper: 1000).
        generator: sampled mode: optional :class:`torch.Generator`.
        metric: neurons mode: metric between neurons.
        solver: neurons mode: the solver name.

    Shape:
        ``reg(model)``: ``()`` for a scalar ``t``, ``(T,)`` otherwise.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from magtorch.nn.regularizers import WeightMagnitudeRegularizer
        >>> net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
        >>> reg = WeightMagnitudeRegularizer(t=1.0)
        >>> penalty = reg(net)  # exact, over the 352 weights (biases excluded)
        >>> penalty.backward()
        >>> net[0].weight.grad.shape, net[0].bias.grad is None
        (torch.Size([32, 10]), True)
    """

    def __init__(
        self,
        t: ScaleLike,
        mode: str = "scalar",
        reduction: str = "sum",
        per_layer: bool = False,
        include: IncludeLike = None,
        trainable_only: bool = True,
        n_samples: int = 1000,
        generator: torch.Generator | None = None,
        metric: str = "euclidean",
        solver: str | Solver = "auto",
    ) -> None:
        super().__init__()
        as_scales(t, device=torch.device("cpu"))  # raises naming t
        self.t = t
        self.mode = check_mode(mode)
        self.reduction = check_reduction(reduction)
        for name, value in (("per_layer", per_layer), ("trainable_only", trainable_only)):
            if not isinstance(value, bool):
                raise MagtorchError(f"{name} must be True or False; got {value!r}")
        self.per_layer = per_layer
        self.trainable_only = trainable_only
        self.include = check_include(include)
        self.n_samples = check_positive_int(n_samples, "n_samples")
        self.generator = check_generator(generator)
        self.metric = check_metric(metric)
        if not isinstance(solver, (str, Solver)):
            raise MagtorchError(
                f"solver must be a solver name or a magtorch Solver instance; got {solver!r}"
            )
        self.solver = solver

    def forward(self, module_or_parameters: ParametersLike) -> Tensor:
        """The penalty for ``module_or_parameters`` (a module, a tensor, or parameters)."""
        return weight_magnitude(
            module_or_parameters,
            self.t,
            mode=self.mode,
            reduction=self.reduction,
            per_layer=self.per_layer,
            include=self.include,
            trainable_only=self.trainable_only,
            n_samples=self.n_samples,
            generator=self.generator,
            metric=self.metric,
            solver=self.solver,
        )

    def extra_repr(self) -> str:
        text = f"t={self.t}, mode={self.mode!r}, reduction={self.reduction!r}"
        if self.per_layer:
            text += ", per_layer=True"
        if self.mode == "sampled":
            text += f", n_samples={self.n_samples}"
        return text
