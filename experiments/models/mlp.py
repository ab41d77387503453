r"""Multilayer perceptrons: one model (:class:`MLP`) and K independent ones at once
(:class:`BatchedMLP`).

:class:`BatchedMLP` holds K MLPs of the same shape as stacked weight tensors and evaluates all
of them with batched matrix products (``torch.baddbmm``): K small models train in about the
time of one wide one. Adam, SGD and weight decay act element-wise, so one optimiser over the
stacked tensors trains the K models exactly as K separate optimisers would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from magtorch.errors import MagtorchError

__all__ = ["MLP", "BatchedMLP"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def _hidden(hidden: int | Sequence[int]) -> list[int]:
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in sizes):
        raise MagtorchError(f"hidden must be positive integers; got hidden={hidden!r}")
    return sizes


def _flat_dim(input_shape: int | Sequence[int]) -> int:
    shape = [input_shape] if isinstance(input_shape, int) else list(input_shape)
    if not shape or any(int(s) < 1 for s in shape):
        raise MagtorchError(f"input_shape must be positive sizes; got {input_shape!r}")
    return math.prod(int(s) for s in shape)


class MLP(nn.Module):
    """``flatten -> [Linear -> activation -> Dropout] x len(hidden) -> Linear``.

    Submodules ``body`` (everything but the last layer; its output is the penultimate
    representation) and ``head`` (the last Linear, the logits).

    Args:
        input_shape: shape of one input (flattened), e.g. ``(64,)`` or ``(1, 28, 28)``.
        num_classes: outputs.
        hidden: width(s) of the hidden layer(s).
        activation: ``"relu"``, ``"gelu"`` or ``"tanh"``.
        dropout: dropout probability after each hidden activation.

    Example:
        >>> net = MLP((1, 4, 4), num_classes=3, hidden=[8, 8])
        >>> net(torch.zeros(5, 1, 4, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        num_classes: int,
        hidden: int | Sequence[int] = (256,),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise MagtorchError(
                f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise MagtorchError(f"num_classes must be a positive integer; got {num_classes!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = _flat_dim(input_shape)
        for h in _hidden(hidden):
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class BatchedMLP(nn.Module):
    r"""``K`` independent ReLU MLPs ``d -> hidden... -> C`` evaluated together.

    Layer ``l`` of model ``k`` computes ``a_k W_{l,k} + b_{l,k}``; parameters are ``(K, in,
    out)`` weights and ``(K, 1, out)`` biases, initialised like ``nn.Linear`` (uniform in
    ``±1/sqrt(in)``) from ``generator``.

    Input ``(B, d)`` (the same batch for every model) or ``(K, B, d)``; output ``(K, B, C)``.

    Example:
        >>> net = BatchedMLP(num_models=3, input_dim=4, num_classes=2, hidden=[5])
        >>> net(torch.zeros(7, 4)).shape
        torch.Size([3, 7, 2])
        >>> one = net.member(1)  # model 1 as a plain nn.Sequential
        >>> x = torch.randn(7, 4)
        >>> torch.allclose(one(x), net(x)[1], atol=1e-6)
        True
    """

    def __init__(
        self,
        num_models: int,
        input_dim: int,
        num_classes: int,
        hidden: int | Sequence[int] = (256,),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_models, bool) or not isinstance(num_models, int) or num_models < 1:
            raise MagtorchError(f"num_models must be a positive integer; got {num_models!r}")
        sizes = [int(input_dim), *_hidden(hidden), int(num_classes)]
        self.num_models = num_models
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(num_models, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(num_models, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if x.dim() == 2:  # a shared batch: one (B, d) x (d, K * out) product
                k, fan_in, fan_out = w.shape
                x = (x @ w.permute(1, 0, 2).reshape(fan_in, k * fan_out)).reshape(-1, k, fan_out)
                x = x.transpose(0, 1) + b
            else:
                x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x

    def member(self, k: int) -> nn.Sequential:
        """Model ``k`` as an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` (a copy)."""
        layers: list[nn.Module] = []
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            lin = nn.Linear(w.shape[1], w.shape[2])
            with torch.no_grad():
                lin.weight.copy_(w[k].T)
                lin.bias.copy_(b[k, 0])
            layers.append(lin)
            if i < last:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
