"""Models of the experiments. Every model factory takes ``input_shape`` and ``num_classes`` as
keyword arguments; ``experiments/train.py`` passes them from the data module, the config gives
the rest (see ``configs/model/``)."""

from experiments.models.mlp import MLP, BatchedMLP
from experiments.models.vision import resnet18

__all__ = ["MLP", "BatchedMLP", "resnet18"]
