"""Partition of a layer's output space (token embeddings) through input_layer_view."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from magtorch.errors import MagtorchError
from magtorch.partition import boundary_distance, input_layer_view, partition_summary

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


class TokenNet(nn.Module):
    """Embedding (9 tokens, width 3) of 2 tokens -> concat -> Linear(6, 5) -> ReLU -> Linear."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(9, 3)
        self.body = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
        self.head = nn.Linear(5, 4)

    def forward(self, tokens):
        return self.head(self.body(self.embed(tokens).flatten(1)))


def test_view_reproduces_the_model_and_hyperplane_distances():
    torch.manual_seed(0)
    net = TokenNet().double()
    tokens = torch.randint(0, 9, (40, 2))
    view, e = input_layer_view(net, "embed", tokens)
    assert e.shape == (40, 2, 3) and e.dtype == torch.float64
    torch.testing.assert_close(view(e), net(tokens))
    # the one hidden layer acts on the flattened embeddings: exact hyperplane distances
    w, b = net.body[0].weight.detach(), net.body[0].bias.detach()
    flat = e.reshape(40, 6)
    expected = ((flat @ w.T + b).abs() / w.norm(dim=1)).amin(1)
    torch.testing.assert_close(boundary_distance(view, e), expected)
    summary = partition_summary(view, e, tokens[:, 0] % 2)
    assert summary["num_units"] == 5.0
    # moving an embedding moves the output: the view really uses its argument
    assert not torch.allclose(view(e + 0.1), view(e))


def test_view_errors():
    net = TokenNet()
    with pytest.raises(MagtorchError, match="not a submodule"):
        input_layer_view(net, "nope", torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(MagtorchError, match="float"):
        input_layer_view(
            nn.Sequential(nn.Identity(), nn.Embedding(3, 2)),
            "0",
            torch.zeros(2, 2, dtype=torch.long),
        )
