r"""One call for all partition diagnostics of a model on a data set: :func:`partition_summary`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from magtorch.errors import MagtorchError

from .adjacency import code_adjacency, facet_adjacency, segment_walk
from .cells import Layers, _check_x, _distance_from, assign_cells, preactivation_gradient_norms
from .curvature import forman_curvature, node_curvature, ollivier_ricci_curvature

__all__ = ["ADJACENCY", "partition_summary", "summary_scalars"]

ADJACENCY = ("code", "lp", "walk")


def _quantile(values: Tensor, q: float) -> float:
    finite = values[torch.isfinite(values)]
    return float(torch.quantile(finite.double(), q)) if finite.numel() else math.nan


def _mean(values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.double().mean()) if finite.numel() else math.nan


def partition_summary(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    layers: Layers = None,
    *,
    adjacency: str = "code",
    walk: bool = True,
    curvature: bool = True,
    alpha: float = 0.0,
    bounds: tuple[Any, Any] | None = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    r"""Cells, boundary distances, adjacency graph, curvature and walk complexity, in one dict.

    Steps: pre-activations and their Jacobian (:func:`~magtorch.partition.
    preactivation_gradient_norms`) give the codes and the boundary distances; cells are grouped
    (:func:`~magtorch.partition.assign_cells`); the graph of data-containing cells comes from
    ``adjacency`` (``"code"``: one bit apart; ``"lp"``: the exact facet test; ``"walk"``: the
    nearest-neighbour segment walk); Forman curvature plain and data-weighted (node weights =
    cell counts), Ollivier-Ricci with count-weighted neighbour measures and idleness
    ``alpha``; the walk from each sample to its nearest neighbour gives *cells crossed*.

    For discrete inputs (token ids) or another representation space, pass
    ``*input_layer_view(model, "embed", tokens)`` as ``model, x``
    (:func:`~magtorch.partition.input_layer_view`).

    Args:
        model: the network (hidden ReLUs visible to hooks).
        x: ``(n, ...)`` inputs (floating point).
        y: optional ``(n,)`` integer labels (purity and entropy).
        layers: hidden layers (default every ``nn.ReLU``).
        adjacency: ``"code"``, ``"lp"`` or ``"walk"``.
        walk: run the segment walk (needed for ``adjacency="walk"``).
        curvature: compute the curvatures (Ollivier-Ricci solves one small LP per edge).
        alpha: idleness of the Ollivier-Ricci measures.
        bounds: box domain for ``adjacency="lp"``.
        batch_size: samples per Jacobian chunk.
        eval_mode: run with the model in ``eval()`` (every module's mode is restored after).
        progress: progress lines (stderr) for the Jacobians, the walk and the LPs.

    Returns:
        A flat dict. Scalars (Python floats): ``num_samples``, ``num_units``, ``num_cells``
        (data-containing), ``mean_cell_size``, ``frac_singleton`` (samples alone in their
        cell), ``mean_purity`` and ``mean_label_entropy`` (over samples, of their cell; with
        ``y``), ``boundary_mean``, ``boundary_median``, ``boundary_q10`` (finite distances),
        ``frac_boundary_inf``, ``num_edges``, ``mean_degree``, ``frac_isolated_cells``,
        ``forman_mean``, ``forman_weighted_mean``, ``ollivier_mean`` (with ``curvature``;
        NaN without edges), ``crossings_mean`` and ``frac_crossing`` (with ``walk``).
        Arrays (CPU tensors): per sample ``cell_id``, ``boundary_distance``, ``purity``,
        ``cells_crossed``, ``nearest_neighbour``; per cell ``cell_counts``, ``cell_purity``,
        ``node_ollivier``; per edge ``edges``, ``forman``, ``forman_weighted``, ``ollivier``.
        :func:`summary_scalars` keeps the scalars only.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> x, y = torch.randn(50, 2), torch.arange(50) % 2
        >>> s = partition_summary(net, x, y)
        >>> s["num_cells"] <= 11.0, s["boundary_distance"].shape  # 4 lines: <= 1 + 4 + 6 cells
        (True, torch.Size([50]))
    """
    x = _check_x(x)
    if adjacency not in ADJACENCY:
        raise MagtorchError(f"adjacency must be one of {ADJACENCY}; got {adjacency!r}")
    if adjacency == "walk" and not walk:
        raise MagtorchError("adjacency='walk' needs walk=True")
    modes = {m: m.training for m in model.modules()}
    if eval_mode:
        model.eval()
    try:
        return _summary(
            model, x, y, layers, adjacency, walk, curvature, alpha, bounds, batch_size, progress
        )
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _summary(model, x, y, layers, adjacency, walk, curvature, alpha, bounds, batch_size, progress):
    n = x.shape[0]
    z, norm = preactivation_gradient_norms(
        model, x, layers, batch_size=batch_size, progress=progress
    )
    dist, _ = _distance_from(z, norm)
    cells = assign_cells(z > 0, y)
    out: dict[str, Any] = {
        "num_samples": float(n),
        "num_units": float(z.shape[1]),
        "num_cells": float(cells.num_cells),
        "mean_cell_size": n / cells.num_cells,
        "frac_singleton": float((cells.counts[cells.ids] == 1).double().mean()),
    }
    out["cell_id"] = cells.ids.cpu()
    out["cell_counts"] = cells.counts.cpu()
    if cells.purity is not None:
        out["mean_purity"] = float(cells.purity[cells.ids].mean())
        out["mean_label_entropy"] = float(cells.entropy[cells.ids].mean())
        out["purity"] = cells.purity[cells.ids].cpu()
        out["cell_purity"] = cells.purity.cpu()
    dist = dist.detach().cpu()
    out["boundary_distance"] = dist
    out["boundary_mean"] = _mean(dist)
    out["boundary_median"] = _quantile(dist, 0.5)
    out["boundary_q10"] = _quantile(dist, 0.1)
    out["frac_boundary_inf"] = float((~torch.isfinite(dist)).double().mean())

    result = None
    if walk and n >= 2:
        result = segment_walk(model, x, cells, layers, progress=progress)
        out["cells_crossed"] = result.crossings
        out["nearest_neighbour"] = result.pairs[:, 1]
        out["crossings_mean"] = float(result.crossings.double().mean())
        out["frac_crossing"] = float((result.crossings > 0).double().mean())
    if adjacency == "code":
        edges = code_adjacency(cells.codes)[0].cpu()
    elif adjacency == "lp":
        edges = facet_adjacency(model, x, cells, layers, bounds=bounds, progress=progress)[0]
    else:
        edges = result.edges
    c = cells.num_cells
    deg = torch.zeros(c, dtype=torch.float64)
    if len(edges):
        deg.index_add_(0, edges.reshape(-1), torch.ones(edges.numel(), dtype=torch.float64))
    out["edges"] = edges
    out["num_edges"] = float(len(edges))
    out["mean_degree"] = float(deg.mean())
    out["frac_isolated_cells"] = float((deg == 0).double().mean())
    if curvature:
        counts = cells.counts.cpu().double()
        forman = forman_curvature(edges, c)
        weighted = forman_curvature(edges, c, node_weights=counts)
        ollivier = ollivier_ricci_curvature(
            edges, c, node_weights=counts, alpha=alpha, progress=progress
        )
        out.update(forman=forman, forman_weighted=weighted, ollivier=ollivier)
        out["node_ollivier"] = node_curvature(edges, ollivier, c)
        out["forman_mean"] = _mean(forman)
        out["forman_weighted_mean"] = _mean(weighted)
        out["ollivier_mean"] = _mean(ollivier)
    return out


def summary_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a :func:`partition_summary` (for logging or a report table).

    Example:
        >>> summary_scalars({"num_cells": 3.0, "cell_id": torch.zeros(2)})
        {'num_cells': 3.0}
    """
    return {k: v for k, v in summary.items() if isinstance(v, float)}
