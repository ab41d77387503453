r"""Partition geometry of ReLU networks: cells, boundary distances, adjacency, curvature.

A ReLU network cuts its input space into convex polyhedral *cells* (one per activation
code) on which it is affine. Following the programme of Ravel & Gajer, "The
Geometry of Machine Learning Models" (2025), restricted to the cells that contain data, this
subpackage computes

* :mod:`~magtorch.partition.cells`: activation codes, cell ids, counts, label purity and
  entropy, and each sample's distance to its cell boundary
  :math:`\min_k |z_k(x)| / \lVert \nabla_x z_k(x) \rVert`;
* :mod:`~magtorch.partition.adjacency`: the adjacency graph of data-containing cells (codes one
  bit apart, an exact LP facet test, a walk along nearest-neighbour segments with per-sample
  *cells crossed*);
* :mod:`~magtorch.partition.curvature`: Forman and Ollivier-Ricci curvature of that graph,
  plain and data-weighted;
* :mod:`~magtorch.partition.regularizer`: a differentiable penalty on training points near a
  cell boundary;
* :func:`partition_summary`: everything at once, as a dict of scalars and per-sample arrays;
* :func:`input_layer_view`: the same in the space of a layer's output (token embeddings).

The paper's formulas are not public in a form we can follow line by line: the constructions
here are ours and every choice is named in the docstrings. ``magtorch.partition`` imports
torch and numpy only; the LP-based functions import ``scipy`` when called (the ``partition``
extra). It is a subpackage users import explicitly (``from magtorch import partition``);
``import magtorch`` does not load it. The Lightning callback is
:class:`magtorch.callbacks.PartitionCallback`.

Example:
    >>> import torch
    >>> from magtorch import partition
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> cells = partition.assign_cells(partition.activation_codes(net, torch.randn(10, 2)))
    >>> int(cells.counts.sum())
    10
"""

from .adjacency import SegmentWalk, code_adjacency, facet_adjacency, segment_walk
from .cells import (
    Cells,
    activation_codes,
    assign_cells,
    boundary_distance,
    hidden_layers,
    preactivation_gradient_norms,
    preactivation_jacobian,
    preactivations,
)
from .curvature import forman_curvature, node_curvature, ollivier_ricci_curvature
from .inputs import InputLayerView, input_layer_view
from .regularizer import BoundaryMarginRegularizer, boundary_penalty
from .summary import partition_summary, summary_scalars

__all__ = [
    "BoundaryMarginRegularizer",
    "Cells",
    "InputLayerView",
    "SegmentWalk",
    "activation_codes",
    "assign_cells",
    "boundary_distance",
    "boundary_penalty",
    "code_adjacency",
    "facet_adjacency",
    "forman_curvature",
    "hidden_layers",
    "input_layer_view",
    "node_curvature",
    "ollivier_ricci_curvature",
    "partition_summary",
    "preactivation_gradient_norms",
    "preactivation_jacobian",
    "preactivations",
    "segment_walk",
    "summary_scalars",
]
