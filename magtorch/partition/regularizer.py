r"""A differentiable penalty on training points that lie close to a cell boundary.

For samples :math:`x_i` with boundary distances
:math:`\delta_{ik} = |z_k(x_i)| / \lVert \nabla_x z_k(x_i) \rVert` (unit :math:`k`; see
:mod:`magtorch.partition.cells`) and a margin :math:`\mu > 0`:

* ``units="min"`` (default): :math:`P = \frac1n \sum_i \max(0, \mu - \min_k \delta_{ik})^2`,
  the squared shortfall of each sample's distance to its cell boundary;
* ``units="all"``: :math:`P = \frac1n \sum_i \sum_k \max(0, \mu - \delta_{ik})^2`, every unit
  whose zero set passes within :math:`\mu` of the sample.

Construction choices: a squared hinge (zero once every point is :math:`\mu` away, with a
gradient continuous in :math:`\delta`); units with :math:`\nabla_x z_k = 0` are skipped (they
bound nothing); the gradient of :math:`\delta` with respect to the parameters (and to
:math:`x`) goes through the Jacobian :math:`\partial z / \partial x`, computed with
``torch.func`` and kept in the graph (double backward), so each call costs about
``min(d, H)`` extra forward/backward passes over the batch. :math:`P` is differentiable
wherever the minimising unit and the codes do not change (almost everywhere). Like
:math:`\delta`, :math:`P` is invariant under rescaling a unit by :math:`a > 0` and its outgoing
weights by :math:`1/a`, so it cannot be lowered by such rescaling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from magtorch.errors import MagtorchError

from .cells import Layers, preactivation_gradient_norms

__all__ = ["BoundaryMarginRegularizer", "boundary_penalty"]

_UNITS = ("min", "all")


def _check_margin(margin: float) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise MagtorchError(f"margin must be a positive number; got margin={margin!r}")
    return float(margin)


def _check_units(units: str) -> str:
    if units not in _UNITS:
        raise MagtorchError(f"units must be one of {_UNITS}; got units={units!r}")
    return units


def boundary_penalty(
    model: nn.Module,
    x: Tensor,
    margin: float,
    layers: Layers = None,
    *,
    units: str = "min",
    batch_size: int = 256,
) -> Tensor:
    r"""The boundary-margin penalty :math:`P` (module docstring): a differentiable 0-d tensor.

    Args:
        model: the network (its parameters receive gradients).
        x: ``(n, ...)`` training inputs (gradients flow to ``x`` too if it requires them).
        margin: :math:`\mu > 0`, in input units.
        layers: hidden layers (see :func:`magtorch.partition.hidden_layers`).
        units: ``"min"`` or ``"all"``.
        batch_size: samples per Jacobian chunk.

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(2.0), net[0].bias.fill_(-1.0)
        >>> boundary_penalty(net, torch.tensor([[0.0], [3.0]]), margin=1.0)  # (1 - 0.5)^2 / 2
        tensor(0.1250, grad_fn=<MeanBackward0>)
    """
    margin = _check_margin(margin)
    units = _check_units(units)
    z, norm = preactivation_gradient_norms(
        model, x, layers, batch_size=batch_size, create_graph=True
    )
    live = norm > 0
    delta = z.abs() / torch.where(live, norm, torch.ones_like(norm))
    short = torch.where(live, torch.relu(margin - delta), torch.zeros_like(delta))
    if units == "min":
        return short.amax(dim=1).square().mean()
    return short.square().sum(dim=1).mean()


class BoundaryMarginRegularizer(nn.Module):
    r"""``weight * boundary_penalty(model, x, margin)``: add to the training loss to push the
    cell boundaries of a ReLU network away from the training points.

    Args:
        margin: :math:`\mu > 0`, in input units.
        weight: the factor on the penalty (``>= 0``).
        layers: hidden layers (default every ``nn.ReLU``).
        units: ``"min"`` or ``"all"`` (module docstring).
        batch_size: samples per Jacobian chunk.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> reg = BoundaryMarginRegularizer(margin=0.1, weight=0.5)
        >>> loss = reg(net, torch.randn(16, 2))
        >>> loss.backward()
        >>> net[0].weight.grad.shape
        torch.Size([8, 2])
    """

    def __init__(
        self,
        margin: float,
        weight: float = 1.0,
        layers: Layers = None,
        units: str = "min",
        batch_size: int = 256,
    ):
        super().__init__()
        self.margin = _check_margin(margin)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise MagtorchError(f"weight must be a number >= 0; got weight={weight!r}")
        self.weight = float(weight)
        self.layers = layers
        self.units = _check_units(units)
        self.batch_size = batch_size

    def forward(self, model: nn.Module, x: Tensor) -> Tensor:
        """The weighted penalty for ``model`` on the batch ``x``: a 0-d tensor."""
        return self.weight * boundary_penalty(
            model, x, self.margin, self.layers, units=self.units, batch_size=self.batch_size
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, weight={self.weight}, units={self.units!r}"
