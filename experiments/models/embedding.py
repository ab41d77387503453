r"""Learned token embeddings followed by an MLP: the usual grokking model.

Each of the ``n_tokens`` input tokens (ints in ``0..vocab_size-1``) is looked up in one shared
embedding table :math:`E \in \mathbb{R}^{V \times e}`, the embeddings are concatenated
(:math:`\mathbb{R}^{n e}`) and passed through ``depth`` hidden layers of width ``hidden``
(ReLU) to ``num_classes`` logits. Submodules: ``embed``, ``body`` (the hidden layers: its
output is the penultimate feature used for neural-collapse metrics) and ``head`` (the last
linear layer).

Example:
    >>> import torch
    >>> from experiments.models.embedding import EmbeddingMLP
    >>> net = EmbeddingMLP(num_classes=7, input_shape=(2,), embed_dim=4, hidden=8)
    >>> net(torch.tensor([[1, 2], [3, 4]])).shape
    torch.Size([2, 7])
    >>> net.features(torch.tensor([[1, 2]])).shape
    torch.Size([1, 8])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from magtorch.errors import MagtorchError

__all__ = ["EmbeddingMLP"]


def _positive(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MagtorchError(f"{name} must be an int >= {minimum}; got {name}={value!r}")
    return value


class EmbeddingMLP(nn.Module):
    """Shared token embedding -> concatenation -> ``depth`` x (Linear, ReLU) -> Linear.

    Args:
        num_classes: number of logits.
        input_shape: ``(n_tokens,)``, tokens per input (2 for ``a o b``); what
            ``experiments/train.py`` passes from the data module.
        vocab_size: number of distinct tokens (default ``num_classes``: ``p`` for arithmetic
            mod ``p``).
        embed_dim: embedding width ``e``.
        hidden: width of the hidden layers.
        depth: number of hidden layers (>= 1).

    Shape:
        input ``(B, n_tokens)`` int64; output ``(B, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: int | Sequence[int] = (2,),
        vocab_size: int | None = None,
        embed_dim: int = 128,
        hidden: int = 256,
        depth: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes = _positive(num_classes, "num_classes", 2)
        shape = [input_shape] if isinstance(input_shape, int) else list(input_shape)
        if len(shape) != 1:
            raise MagtorchError(
                f"input_shape must be (n_tokens,) for token inputs; got input_shape={input_shape!r}"
            )
        self.n_tokens = n_tokens = _positive(int(shape[0]), "input_shape[0]")
        self.vocab_size = _positive(num_classes if vocab_size is None else vocab_size, "vocab_size")
        embed_dim = _positive(embed_dim, "embed_dim")
        hidden = _positive(hidden, "hidden")
        depth = _positive(depth, "depth")
        self.embed = nn.Embedding(self.vocab_size, embed_dim)
        layers: list[nn.Module] = []
        width = n_tokens * embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, hidden)`` (the input of ``head``)."""
        if x.dim() != 2 or x.shape[1] != self.n_tokens:
            raise MagtorchError(
                f"x must have shape (B, {self.n_tokens}) of token ids; got {tuple(x.shape)}"
            )
        if x.dtype not in (torch.int64, torch.int32):
            raise MagtorchError(f"x must hold integer token ids; got dtype {x.dtype}")
        return self.body(self.embed(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.features(x))
