r"""Partition geometry in the space of an intermediate layer (e.g. token embeddings).

The partition functions treat the model input as the space to cut into cells, so it must be
continuous. For models with discrete inputs (token ids through an ``nn.Embedding``, the usual
grokking model), or to study the partition of a later representation, the space of interest is
the *output of a submodule* ``L``. :func:`input_layer_view` returns that output :math:`e(x)` for
the data and a module :math:`g` with :math:`g(e(x)) = \text{model}(x)`: ``g`` runs the model
with a forward hook that replaces ``L``'s output by its own argument. Every hidden ReLU after
``L`` is then a function of :math:`e` alone, and ``partition_summary(g, e, y)`` describes the
partition of the representation space.

Construction choice and its limit: the model is run on a fixed example input (the first
sample, repeated) whose ``L`` output is discarded, so the model must not use its raw input
except through ``L`` (no skip connection around ``L``). ReLUs *before* ``L`` see only the
example input: their code bits are constant and their gradients zero, so they change no cell,
edge or distance, but they count in ``num_units`` (name the layers after ``L`` with
``layers=[...]`` to leave them out).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from magtorch.errors import MagtorchError

__all__ = ["InputLayerView", "input_layer_view"]


class InputLayerView(nn.Module):
    """``model`` as a function of the output of its submodule ``input_layer``.

    Args:
        model: the network.
        input_layer: the name of the submodule whose output becomes the input.
        example: one input of ``model`` (shape ``(1, ...)``), run with its ``input_layer``
            output replaced.
        output_shape: the per-sample shape of ``input_layer``'s output.

    Example:
        >>> net = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 4), nn.ReLU())
        >>> view, e = input_layer_view(net, "0", torch.tensor([[1, 2], [3, 4]]))
        >>> e.shape, torch.allclose(view(e), net(torch.tensor([[1, 2], [3, 4]])))
        (torch.Size([2, 2, 3]), True)
    """

    def __init__(
        self, model: nn.Module, input_layer: str, example: Tensor, output_shape: tuple[int, ...]
    ):
        super().__init__()
        self.model = model
        self.input_layer = input_layer
        self.register_buffer("example", example[:1].clone(), persistent=False)
        self.output_shape = tuple(output_shape)

    def forward(self, e: Tensor) -> Tensor:
        layer = self.model.get_submodule(self.input_layer)
        b = e.shape[0]

        def replace(module, args, output):
            return e.reshape(b, *self.output_shape)

        handles = [layer.register_forward_hook(replace)]
        try:
            return self.model(self.example.expand(b, *self.example.shape[1:]))
        finally:
            for h in handles:
                h.remove()


def input_layer_view(
    model: nn.Module, input_layer: str, x: Tensor
) -> tuple[InputLayerView, Tensor]:
    """The outputs ``e`` ``(n, ...)`` of ``input_layer`` on ``x`` (detached, float) and the
    :class:`InputLayerView` ``g`` with ``g(e) == model(x)``.

    Raises:
        MagtorchError: ``input_layer`` is not a submodule, is not called by forward, or does
            not return a floating-point tensor.
    """
    if not isinstance(input_layer, str):
        raise MagtorchError(f"input_layer must be a submodule name; got {input_layer!r}")
    try:
        layer = model.get_submodule(input_layer)
    except AttributeError as err:
        raise MagtorchError(
            f"input_layer={input_layer!r} is not a submodule of {type(model).__name__}"
        ) from err
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda m, a, o: captured.append(o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    if not captured:
        raise MagtorchError(f"input_layer={input_layer!r} was not called by forward")
    e = captured[0]
    if not isinstance(e, Tensor) or not e.is_floating_point() or e.shape[0] != x.shape[0]:
        raise MagtorchError(
            f"input_layer={input_layer!r} must return a float tensor (n, ...) for n inputs"
        )
    return InputLayerView(model, input_layer, x, tuple(e.shape[1:])), e.detach()
