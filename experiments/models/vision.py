"""torchvision models for the image data modules (torchvision is imported when a model is
built, not when this module is imported)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from magtorch.errors import MagtorchError

__all__ = ["resnet18"]


def resnet18(input_shape: Sequence[int], num_classes: int, small_images: bool = True) -> nn.Module:
    """torchvision's ResNet-18 (random initialisation) for ``input_shape = (C, H, W)``.

    Args:
        input_shape: ``(C, H, W)``; the first convolution takes ``C`` channels.
        num_classes: outputs of the final fully connected layer (``fc``).
        small_images: the usual CIFAR stem — a 3x3 stride-1 first convolution and no max-pool
            — instead of ImageNet's 7x7 stride-2 convolution and max-pool (which shrink a 32x32
            image to 8x8 before the first block).

    Returns:
        The ``torchvision.models.ResNet``; its logits come from ``fc``.
    """
    try:
        from torchvision.models import resnet18 as tv_resnet18
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MagtorchError("resnet18 needs torchvision: pip install 'magtorch[vision]'") from err
    shape = list(input_shape)
    if len(shape) != 3:
        raise MagtorchError(f"input_shape must be (C, H, W); got input_shape={input_shape!r}")
    net = tv_resnet18(weights=None, num_classes=int(num_classes))
    if small_images:
        net.conv1 = nn.Conv2d(int(shape[0]), 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif shape[0] != 3:
        net.conv1 = nn.Conv2d(int(shape[0]), 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net
