"""Matplotlib figures for magnitude functions and magnitude dimension profiles.

This module is never imported by ``magtorch/__init__``; it needs matplotlib (an optional
dependency) and imports it lazily. Figures are built with :class:`matplotlib.figure.Figure`
directly, not through ``pyplot``, so no global state or interactive backend is touched and
the helpers are safe in headless scripts and tests.

Every helper takes plain arrays, tensors or the result types of :mod:`magtorch` (anything
with ``.t`` and ``.magnitude``), draws onto the given ``ax`` or onto a new figure, and
returns the :class:`~matplotlib.axes.Axes`; :func:`save_figure` writes a PNG.

Example:
    >>> import numpy as np
    >>> from magtorch.plot import plot_magnitude_functions
    >>> t = np.geomspace(0.1, 10.0, 20)
    >>> curves = {"two points": (t, 2 / (1 + np.exp(-t)))}
    >>> ax = plot_magnitude_functions(curves, n={"two points": 2})
    >>> ax.get_xscale()
    'log'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "as_numpy",
    "new_axes",
    "plot_dimension_profiles",
    "plot_magnitude_functions",
    "save_figure",
]

Curve = Any  # (t, values) pair of array-likes, or an object with .t and .magnitude


def as_numpy(value: Any) -> np.ndarray:
    """Convert a tensor (on any device, with or without grad), list or array to float64 numpy.

    Example:
        >>> as_numpy([1, 2]).dtype
        dtype('float64')
    """
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _curve(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(curve, "t") and hasattr(curve, "magnitude"):
        t, y = curve.t, curve.magnitude
    else:
        t, y = curve
    t_np, y_np = as_numpy(t), as_numpy(y)
    if t_np.ndim != 1 or y_np.shape != t_np.shape:
        raise ValueError(
            f"a curve needs 1-d scales and values of the same length, got t {t_np.shape} "
            f"and values {y_np.shape}"
        )
    return t_np, y_np


def new_axes(figsize: tuple[float, float] = (6.4, 4.4)) -> Axes:
    """A fresh ``Axes`` on a new pyplot-free :class:`~matplotlib.figure.Figure`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _colors(k: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(k)]


def plot_magnitude_functions(
    curves: Mapping[str, Curve],
    *,
    n: Mapping[str, int] | None = None,
    convergence_scales: Mapping[str, float] | None = None,
    q: float | None = None,
    ax: Axes | None = None,
    title: str | None = "Magnitude functions",
) -> Axes:
    """Plot magnitude functions ``t -> Mag(tX)`` on a log-scaled t axis.

    Args:
        curves: label -> ``(t, Mag)`` (array-likes of shape ``(T,)``) or a
            ``magtorch.MagnitudeFunction`` with a single (unbatched) curve.
        n: label -> number of points; when given, the curve is drawn as ``Mag / n``
            (values in ``(0, 1]``) so that sets of different sizes share one axis.
        convergence_scales: label -> convergence scale, marked with a dotted vertical line
            and a dot on the curve.
        q: when given (with ``n``), a horizontal line at ``Mag / n = q``.
        ax: axes to draw on; a new figure is created when ``None``.
        title: axes title (``None`` for none).

    Returns:
        The axes drawn on.
    """
    ax = ax if ax is not None else new_axes()
    normalise = n is not None
    for color, (label, curve) in zip(_colors(len(curves)), curves.items(), strict=True):
        t, mag = _curve(curve)
        y = mag / n[label] if normalise else mag
        text = label if not normalise else f"{label} (n={n[label]})"
        ax.plot(t, y, color=color, lw=2, label=text)
        if convergence_scales is not None and label in convergence_scales:
            t_conv = float(convergence_scales[label])
            ax.axvline(t_conv, color=color, ls=":", lw=1.2)
            y_conv = np.interp(np.log(t_conv), np.log(t), y)
            ax.plot([t_conv], [y_conv], "o", color=color, ms=5)
    if convergence_scales:
        ax.plot([], [], ls=":", marker="o", ms=4, color="0.35", label="convergence scale")
    if normalise and q is not None:
        ax.axhline(q, color="0.4", ls="--", lw=0.8, label=f"Mag/n = {q:g}")
    ax.set_xscale("log")
    ax.set_xlabel("scale t")
    ax.set_ylabel("Mag(tX) / n   (n: distinct points)" if normalise else "Mag(tX)")
    if normalise:
        ax.set_ylim(0.0, 1.02)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    return ax


def plot_dimension_profiles(
    profiles: Mapping[str, Curve],
    *,
    dimensions: Mapping[str, tuple[float, float]] | None = None,
    ax: Axes | None = None,
    title: str | None = "Magnitude dimension profiles",
) -> Axes:
    """Plot ``t -> t Mag'(t) / Mag(t)`` (the slope of log Mag against log t).

    Args:
        profiles: label -> ``(t, t Mag'(t) / Mag(t))``.
        dimensions: label -> ``(dimension, scale)``: the maximum of the profile and where it
            is reached, marked with a star and given in the legend.
        ax: axes to draw on; a new figure is created when ``None``.
        title: axes title (``None`` for none).

    Returns:
        The axes drawn on.
    """
    ax = ax if ax is not None else new_axes()
    for color, (label, curve) in zip(_colors(len(profiles)), profiles.items(), strict=True):
        t, slope = _curve(curve)
        text = label
        if dimensions is not None and label in dimensions:
            dim, scale = (float(v) for v in dimensions[label])
            text = f"{label} (dim {dim:.2f} at t={scale:.3g})"
            ax.plot([scale], [dim], "*", color=color, ms=11, mec="k", mew=0.5, zorder=3)
        ax.plot(t, slope, color=color, lw=2, label=text)
    ax.set_xscale("log")
    ax.set_xlabel("scale t")
    ax.set_ylabel("t Mag'(t) / Mag(t)")
    ax.set_ylim(bottom=0.0)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    return ax


def save_figure(ax_or_fig: Axes | Figure, path: str | Path, *, dpi: int = 130) -> Path:
    """Save the figure owning ``ax_or_fig`` as a PNG (parent directories are created)."""
    fig = ax_or_fig.figure if hasattr(ax_or_fig, "get_xscale") else ax_or_fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
