r"""Which data-containing cells of a ReLU network's partition meet: three constructions.

Two cells are *adjacent* when they share a facet, a piece of boundary of dimension
:math:`d - 1` (meeting in a lower-dimensional face does not count).

* :func:`code_adjacency` (fast): codes that differ in exactly one bit. Crossing a facet at a
  generic point flips exactly the units whose zero set holds the facet, one unit for a network
  in general position; so every facet joins cells one bit apart. With one hidden layer the
  converse holds too (the segment between points of two such cells crosses one hyperplane
  only), so this *is* facet adjacency. With more layers, cells one bit apart can fail to
  meet (bent hyperplanes): use the LP test or the walk.
* :func:`facet_adjacency` (exact, small problems): for each pair one bit apart, differing in
  unit :math:`k`, a linear programme decides whether the zero set of :math:`z_k` contains a
  :math:`(d-1)`-dimensional piece of the boundary of both cells. With the cell's affine
  pre-activations :math:`z_j(x) = a_j^\top x + b_j` (taken from the Jacobian at one data point
  of the cell; rows with :math:`a_j = 0` are constant on the cell and dropped) and signs
  :math:`s_j = \pm 1` from its code, it solves

  .. math:: \max_{x, r} r \quad \text{s.t.} \quad a_k^\top x + b_k = 0,\;
            s_j (a_j^\top x + b_j) \ge r \lVert a_j \rVert \;(j \ne k),\; r \le 1

  (plus :math:`lo_i + r \le x_i \le hi_i - r` for an optional box domain). The cells share a
  facet iff the optimum exceeds ``tol``: a :math:`(d-1)`-disc of radius :math:`r` in the
  hyperplane lies in the boundary of both (across :math:`z_k = 0` the other pre-activations
  are continuous, so keep their signs nearby). Needs ``scipy`` (imported when called).
* :func:`segment_walk`: walks the segment from each sample to another (by default its
  Euclidean nearest neighbour in the set) through the cells it crosses. On a cell the
  pre-activations are affine along the segment, :math:`z(x_i + s u) = z + s\,\partial_u z`
  (one forward-mode ``torch.func.jvp`` pass gives both), so the next crossing is the smallest
  positive root :math:`s^\ast = \min_k -z_k / \partial_u z_k`; the walk re-evaluates the code a
  step ``eps`` (a fraction of the segment) past it. Cells thinner than ``eps`` along the
  segment are missed, and crossings closer than ``eps`` merge into one step. Each change of
  code is one *crossing*; a sample's *cells crossed* is the number of crossings on its
  segment (cells visited minus one). Consecutive cells one bit apart that both contain data
  give an adjacency edge (transitions through data-free cells, or through several bits at
  once, are counted as crossings but give no edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from magtorch.errors import ConvergenceWarning, MagtorchError, warn_user

from ._progress import Progress
from .cells import Cells, Layers, _check_x, _preact_fn, preactivation_jacobian

__all__ = ["SegmentWalk", "code_adjacency", "facet_adjacency", "segment_walk"]


def _check_codes(codes: Tensor, name: str = "codes") -> Tensor:
    if not isinstance(codes, Tensor) or codes.dim() != 2 or codes.dtype != torch.bool:
        raise MagtorchError(f"{name} must be a bool tensor of shape (C, H)")
    return codes


def code_adjacency(codes: Tensor, *, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Pairs of codes that differ in exactly one bit.

    Args:
        codes: ``(C, H)`` bool, one row per cell (e.g. ``Cells.codes``).
        chunk: rows compared at a time (memory ``chunk * C`` numbers); default
            ``2**24 // C``.

    Returns:
        ``edges (E, 2)`` with ``edges[:, 0] < edges[:, 1]`` (row indices, sorted) and
        ``units (E,)``, the flipped unit of each edge.

    Example:
        >>> codes = torch.tensor([[0, 0], [0, 1], [1, 1]], dtype=torch.bool)
        >>> edges, units = code_adjacency(codes)
        >>> edges.tolist(), units.tolist()
        ([[0, 1], [1, 2]], [1, 0])
    """
    codes = _check_codes(codes)
    s = codes.to(torch.float64) * 2 - 1
    h = codes.shape[1]
    if chunk is None:
        chunk = max(1, 2**24 // max(codes.shape[0], 1))
    rows, cols = [], []
    for start in range(0, codes.shape[0], chunk):
        ham = (h - s[start : start + chunk] @ s.T) / 2
        i, j = torch.nonzero(ham.round() == 1, as_tuple=True)
        i = i + start
        keep = i < j
        rows.append(i[keep])
        cols.append(j[keep])
    i, j = torch.cat(rows), torch.cat(cols)
    edges = torch.stack([i, j], dim=1)
    units = (codes[i] ^ codes[j]).to(torch.int8).argmax(dim=1) if len(i) else i.clone()
    return edges, units


def _representatives(cells: Cells) -> Tensor:
    """First sample index of each cell."""
    n = cells.ids.shape[0]
    first = torch.full((cells.num_cells,), n, dtype=torch.long, device=cells.ids.device)
    first.scatter_reduce_(0, cells.ids, torch.arange(n, device=cells.ids.device), reduce="amin")
    return first


def facet_adjacency(
    model: nn.Module,
    x: Tensor,
    cells: Cells,
    layers: Layers = None,
    *,
    bounds: tuple[float | Tensor, float | Tensor] | None = None,
    tol: float = 1e-9,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Exact facet test by linear programming between data-containing cells one bit apart.

    Args:
        model: the network.
        x: ``(n, ...)`` the samples the cells were assigned from.
        cells: :func:`~magtorch.partition.assign_cells` of the codes of ``x``.
        layers: hidden layers (as for the codes).
        bounds: optional box domain ``(lo, hi)`` (numbers or ``(d,)`` tensors): only facets
            meeting the open box count.
        tol: the LP optimum (radius of the largest disc in the common facet) must exceed it.
        progress: print progress over the LPs.

    Returns:
        ``edges (E, 2)`` (cell ids, sorted as in :func:`code_adjacency`) and the largest disc
        radius ``radius (E,)`` of each facet (float64; with one hidden layer and no box, 1
        means the radius hit the bound of the LP).

    Example:
        >>> from magtorch.partition import activation_codes, assign_cells
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.eye(2)), net[0].bias.zero_()
        >>> x = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
        >>> cells = assign_cells(activation_codes(net, x))
        >>> facet_adjacency(net, x, cells)[0].tolist()
        [[0, 1], [0, 2], [1, 3], [2, 3]]
    """
    try:
        from scipy.optimize import linprog
    except ImportError as err:  # pragma: no cover - scipy ships with the dev extras
        raise ImportError("facet_adjacency needs scipy: pip install 'magtorch[partition]'") from err
    x = _check_x(x)
    if not isinstance(cells, Cells) or cells.ids.shape[0] != x.shape[0]:
        raise MagtorchError("cells must be the Cells of x (assign_cells(activation_codes(x)))")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise MagtorchError(f"tol must be a number >= 0; got tol={tol!r}")
    candidates, units = code_adjacency(cells.codes)
    reps = _representatives(cells)
    z, J = preactivation_jacobian(model, x[reps], layers)
    z, J = z.double().cpu(), J.double().flatten(2).cpu()
    d = J.shape[2]
    xr = x[reps].reshape(len(reps), -1).double().cpu()
    b = z - torch.einsum("chd,cd->ch", J, xr)  # z = J x + b on each cell
    lo = hi = None
    if bounds is not None:
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise MagtorchError(f"bounds must be None or a pair (lo, hi); got {bounds!r}")
        lo = torch.as_tensor(bounds[0], dtype=torch.float64).expand(d).numpy()
        hi = torch.as_tensor(bounds[1], dtype=torch.float64).expand(d).numpy()
        if not np.all(lo < hi):
            raise MagtorchError("bounds: every lo must be below hi")
    keep, radius = [], []
    bar = Progress(
        total=max(len(candidates), 1), n=cells.num_cells, enabled=progress, what="facet LPs"
    )
    for e in range(len(candidates)):
        c, k = int(candidates[e, 0]), int(units[e])
        a, bc = J[c].numpy(), b[c].numpy()
        sign = np.where(cells.codes[c].cpu().numpy(), 1.0, -1.0)
        norm = np.linalg.norm(a, axis=1)
        if norm[k] == 0:
            keep.append(False)
            radius.append(0.0)
            continue
        others = (norm > 0) & (np.arange(len(norm)) != k)
        an, bn = a[others] / norm[others, None], bc[others] / norm[others]
        sg = sign[others]
        # variables (x, r); constraint -s (a x + b) + r <= 0
        A_ub = np.hstack([-sg[:, None] * an, np.ones((an.shape[0], 1))])
        b_ub = sg * bn
        if lo is not None:
            eye = np.eye(d)
            box = np.vstack([np.hstack([-eye, np.ones((d, 1))]), np.hstack([eye, np.ones((d, 1))])])
            A_ub = np.vstack([A_ub, box])
            b_ub = np.concatenate([b_ub, -lo, hi])
        A_eq = np.concatenate([a[k] / norm[k], [0.0]])[None, :]
        b_eq = np.array([-bc[k] / norm[k]])
        cost = np.zeros(d + 1)
        cost[-1] = -1.0
        res = linprog(
            cost,
            A_ub=A_ub if len(A_ub) else None,
            b_ub=b_ub if len(A_ub) else None,
            A_eq=A_eq,
            b_eq=b_eq,
            bounds=[(None, None)] * d + [(None, 1.0)],
            method="highs",
        )
        if res.status == 2:  # infeasible: the hyperplane misses the box
            r = -np.inf
        elif res.status != 0:
            raise MagtorchError(f"facet LP for cells {c} and unit {k} failed: {res.message}")
        else:
            r = -res.fun
        keep.append(r > tol)
        radius.append(max(r, 0.0))
        bar.update(1)
    bar.close()
    mask = torch.tensor(keep, dtype=torch.bool)
    return candidates.cpu()[mask], torch.tensor(radius, dtype=torch.float64)[mask]


@dataclass
class SegmentWalk:
    """Result of :func:`segment_walk`.

    Attributes:
        pairs: ``(P, 2)`` sample indices ``(i, j)`` of each walked segment.
        crossings: ``(P,)`` number of code changes along segment ``p`` (cells crossed).
        edges: ``(E, 2)`` adjacent data-containing cell ids found (sorted, unique).
        edge_counts: ``(E,)`` how many walked transitions crossed each edge's facet.
        transitions: number of transitions in all (including those giving no edge).
    """

    pairs: Tensor
    crossings: Tensor
    edges: Tensor
    edge_counts: Tensor
    transitions: int


def _nearest_neighbours(x: Tensor, chunk: int = 2048) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    out = []
    for start in range(0, flat.shape[0], chunk):
        dist = torch.cdist(flat[start : start + chunk], flat)
        rows = torch.arange(dist.shape[0], device=x.device)
        dist[rows, rows + start] = torch.inf
        out.append(dist.argmin(dim=1))
    return torch.cat(out)


def _code_keys(codes: Tensor) -> list[bytes]:
    return [row.tobytes() for row in np.packbits(codes.cpu().numpy(), axis=1)]


def segment_walk(
    model: nn.Module,
    x: Tensor,
    cells: Cells | None = None,
    layers: Layers = None,
    *,
    pairs: Tensor | None = None,
    eps: float | None = None,
    max_steps: int = 10_000,
    batch_size: int = 4096,
    progress: bool = False,
) -> SegmentWalk:
    r"""Walk segments between samples through the cells they cross (see the module docstring).

    Args:
        model: the network.
        x: ``(n, ...)`` samples.
        cells: :func:`~magtorch.partition.assign_cells` of the codes of ``x`` (computed when
            ``None``); edges are between its cell ids.
        layers: hidden layers.
        pairs: ``(P, 2)`` sample indices to join; default: each sample to its Euclidean
            nearest neighbour in ``x`` (``P = n``; then ``crossings[i]`` is sample ``i``'s
            *cells crossed*).
        eps: step past each crossing, as a fraction of the segment; default ``1e-9`` for
            float64 models and ``1e-5`` otherwise.
        max_steps: at most this many crossings per segment; a segment that needs more gets a
            :class:`~magtorch.errors.ConvergenceWarning` and a count that is a lower bound.
        batch_size: segments walked together.
        progress: print progress over the segments (stderr).

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 3), nn.ReLU())
        >>> with torch.no_grad():  # kinks at 0, 1, 2
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.copy_(torch.tensor([0.0, -1.0, -2.0]))
        >>> walk = segment_walk(net, torch.tensor([[-0.5], [2.5]]))
        >>> walk.crossings.tolist()
        [3, 3]
    """
    x = _check_x(x)
    n = x.shape[0]
    if cells is None:
        from .cells import activation_codes, assign_cells

        cells = assign_cells(activation_codes(model, x, layers))
    if pairs is None:
        if n < 2:
            raise MagtorchError("segment_walk needs at least 2 samples for nearest neighbours")
        pairs = torch.stack([torch.arange(n, device=x.device), _nearest_neighbours(x)], dim=1)
    pairs = torch.as_tensor(pairs, device=x.device)
    if pairs.dim() != 2 or pairs.shape[1] != 2 or pairs.is_floating_point():
        raise MagtorchError(f"pairs must be integer (P, 2); got {tuple(pairs.shape)}")
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise MagtorchError(f"pairs must index samples 0..{n - 1}")
    if eps is None:
        eps = 1e-9 if x.dtype == torch.float64 else 1e-5
    if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
        raise MagtorchError(f"eps must be a number in (0, 0.5); got eps={eps!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise MagtorchError(f"max_steps must be an integer >= 1; got {max_steps!r}")

    f = _preact_fn(model, layers)
    lookup = {key: c for c, key in enumerate(_code_keys(cells.codes))}
    flat = x.reshape(n, -1)
    crossings = torch.zeros(len(pairs), dtype=torch.long)
    counts: dict[tuple[int, int], int] = {}
    transitions = 0
    unfinished = 0
    bar = Progress(total=max(len(pairs), 1), n=n, enabled=progress, what="segments")
    for start in range(0, len(pairs), batch_size):
        pb = pairs[start : start + batch_size]
        a, u = flat[pb[:, 0]], flat[pb[:, 1]] - flat[pb[:, 0]]
        s = torch.zeros(len(pb), dtype=x.dtype, device=x.device)
        active = torch.arange(len(pb), device=x.device)
        prev = None
        steps = 0
        while len(active):
            pts = (a[active] + s[active, None] * u[active]).reshape(-1, *x.shape[1:])
            with torch.no_grad():
                z, dz = torch.func.jvp(f, (pts,), (u[active].reshape(-1, *x.shape[1:]),))
            code = z > 0
            if prev is not None:
                changed = (code != prev).any(dim=1)
                if changed.any():
                    idx = active[changed]
                    crossings[start + idx.cpu()] += 1
                    transitions += int(changed.sum())
                    ham = (code[changed] != prev[changed]).sum(dim=1).cpu()
                    old, new = _code_keys(prev[changed]), _code_keys(code[changed])
                    for h, ko, kn in zip(ham.tolist(), old, new, strict=True):
                        co, cn = lookup.get(ko), lookup.get(kn)
                        if h == 1 and co is not None and cn is not None:
                            key = (min(co, cn), max(co, cn))
                            counts[key] = counts.get(key, 0) + 1
            root = torch.where(dz != 0, -z / dz, torch.full_like(z, torch.inf))
            root = torch.where(root > 0, root, torch.full_like(root, torch.inf)).amin(dim=1)
            nxt = s[active] + root.to(s.dtype)
            go = nxt < 1
            s[active[go]] = torch.clamp(nxt[go] + eps, max=1.0)
            steps += 1
            if steps > max_steps and go.any():
                unfinished += int(go.sum())
                break
            active, prev = active[go], code[go]
        bar.update(len(pb))
    bar.close()
    if unfinished:
        warn_user(
            f"segment_walk: {unfinished} segments needed more than max_steps={max_steps} "
            "crossings; their counts are lower bounds",
            ConvergenceWarning,
        )
    if counts:
        keys = sorted(counts)
        edges = torch.tensor(keys, dtype=torch.long)
        edge_counts = torch.tensor([counts[k] for k in keys], dtype=torch.long)
    else:
        edges = torch.zeros(0, 2, dtype=torch.long)
        edge_counts = torch.zeros(0, dtype=torch.long)
    return SegmentWalk(pairs.cpu(), crossings, edges, edge_counts, transitions)
