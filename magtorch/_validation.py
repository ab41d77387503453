"""Input checks shared by the public functions.

Each check raises :class:`~magtorch.errors.MagtorchError` naming the argument at the point where
the bad value enters. Checks that need a value from the device (NaN, sign of ``t``) cost one
synchronisation each; they run once per call, never inside solver loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import MagtorchError

ScaleLike = float | int | Sequence[float] | np.ndarray | Tensor

METRICS = ("euclidean", "l1", "cosine", "precomputed")
_METRIC_ALIASES = {"cityblock": "l1", "manhattan": "l1", "angular": "cosine"}
NONCONVERGENCE_MODES = ("warn", "raise")


def check_metric(metric: str) -> str:
    """Return the canonical metric name or raise naming ``metric``."""
    if not isinstance(metric, str):
        raise MagtorchError(f"metric must be a string, one of {METRICS}; got {metric!r}")
    name = _METRIC_ALIASES.get(metric.lower(), metric.lower())
    if name not in METRICS:
        raise MagtorchError(f"unknown metric={metric!r}; allowed: {', '.join(METRICS)}")
    return name


def check_on_nonconvergence(mode: str) -> str:
    """Check the ``on_nonconvergence`` keyword."""
    if mode not in NONCONVERGENCE_MODES:
        raise MagtorchError(
            f"on_nonconvergence must be one of {NONCONVERGENCE_MODES}; got {mode!r}"
        )
    return mode


def check_points(x: Tensor, name: str = "x", *, precomputed: bool = False) -> Tensor:
    """Check a point cloud ``(..., n, d)`` (or a distance matrix ``(..., n, n)``).

    Returns the tensor unchanged (integers are promoted to the default float dtype).
    """
    if not isinstance(x, Tensor):
        raise MagtorchError(
            f"{name} must be a torch.Tensor of shape (..., n, d); got {type(x).__name__}"
        )
    what = "a distance matrix (..., n, n)" if precomputed else "points (..., n, d)"
    if x.dim() < 2:
        raise MagtorchError(f"{name} must be {what}; got shape {tuple(x.shape)}")
    if x.is_complex():
        raise MagtorchError(f"{name} must be real; got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.shape[-2] == 0:
        raise MagtorchError(f"{name} is an empty set: shape {tuple(x.shape)} has n = 0 points")
    if x.shape[-1] == 0:
        raise MagtorchError(f"{name} has zero features: shape {tuple(x.shape)}")
    if precomputed and x.shape[-1] != x.shape[-2]:
        raise MagtorchError(
            f"{name} must be a square distance matrix with metric='precomputed'; "
            f"got shape {tuple(x.shape)}"
        )
    return x


def check_finite(x: Tensor, name: str, mask: Tensor | None = None) -> None:
    """Raise if ``x`` has NaN or Inf among its real (unmasked) entries."""
    bad = ~torch.isfinite(x)
    if mask is not None:
        bad = bad & mask.unsqueeze(-1)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise MagtorchError(f"{name} contains NaN or Inf (first at index {index})")


def check_mask(mask: Tensor | None, shape: torch.Size, name: str = "mask") -> Tensor | None:
    """Check a boolean mask of shape ``shape`` (``x.shape[:-1]``); True marks real points."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise MagtorchError(f"{name} must be a boolean torch.Tensor; got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise MagtorchError(f"{name} must have dtype torch.bool; got {mask.dtype}")
    if mask.shape != shape:
        raise MagtorchError(
            f"{name} must have shape {tuple(shape)} (the points' shape without the feature "
            f"axis); got {tuple(mask.shape)}"
        )
    if bool((mask.sum(-1) == 0).any()):
        raise MagtorchError(f"{name} leaves an empty set: every set needs at least one point")
    return mask


def as_scales(t: ScaleLike, *, device: torch.device, name: str = "t") -> Tensor:
    """Convert ``t`` to a 0-d or 1-d float64 tensor on ``device``; all entries must be > 0.

    A tensor ``t`` keeps its autograd graph (the cast to float64 is differentiable).
    """
    if isinstance(t, Tensor):
        if t.is_complex() or t.dtype == torch.bool:
            raise MagtorchError(f"{name} must be real and positive; got dtype {t.dtype}")
        scales = t.to(device=device, dtype=torch.float64)
    elif isinstance(t, (bool, np.bool_)):
        raise MagtorchError(f"{name} must be a positive number; got {t!r}")
    elif isinstance(t, (int, float, np.integer, np.floating)):
        scales = torch.tensor(float(t), dtype=torch.float64, device=device)
    elif isinstance(t, (Sequence, np.ndarray)):
        try:
            scales = torch.as_tensor(np.asarray(t, dtype=np.float64), device=device)
        except (TypeError, ValueError) as err:
            raise MagtorchError(f"{name} must be a number or a 1-d sequence of numbers") from err
    else:
        raise MagtorchError(
            f"{name} must be a float, a 0-d or 1-d tensor, or a sequence of floats; "
            f"got {type(t).__name__}"
        )
    if scales.dim() > 1:
        raise MagtorchError(f"{name} must be a scalar or 1-d; got shape {tuple(scales.shape)}")
    if scales.numel() == 0:
        raise MagtorchError(f"{name} is empty: give at least one scale")
    detached = scales.detach()
    if not bool(torch.isfinite(detached).all()) or not bool((detached > 0).all()):
        bad = detached[~(torch.isfinite(detached) & (detached > 0))].flatten()[0].item()
        raise MagtorchError(f"{name} must be finite and > 0; got {bad}")
    return scales


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Check an integer option such as ``max_iter`` or ``n_scales``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise MagtorchError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_fraction(value: float, name: str) -> float:
    """Check a number strictly between 0 and 1 (e.g. ``q``)."""
    if not isinstance(value, (int, float, np.floating)) or not 0.0 < float(value) < 1.0:
        raise MagtorchError(f"{name} must be a number in (0, 1); got {value!r}")
    return float(value)


def check_tolerance(value: float | None, name: str = "rtol") -> float | None:
    """Check a relative tolerance (``None`` keeps the solver's default)."""
    if value is None:
        return None
    if not isinstance(value, (int, float, np.floating)) or not 0.0 < float(value) < 1.0:
        raise MagtorchError(f"{name} must be a number in (0, 1) or None; got {value!r}")
    return float(value)
