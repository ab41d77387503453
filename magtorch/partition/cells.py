r"""Cells of the input-space partition of a ReLU network, and each sample's distance to its
cell boundary.

A network whose hidden non-linearities are ReLUs is piecewise affine: every input :math:`x`
has hidden pre-activations :math:`z(x) = (z_1(x), \dots, z_H(x))` (all hidden layers,
concatenated) and an *activation code* :math:`c(x) = (z_k(x) > 0)_k \in \{0,1\}^H`. A *cell*
is the set of inputs sharing one code; on a cell the network and every :math:`z_k` are affine.

Construction choices (ours; the paper gives no formulas to follow line by line):

* **Which units.** By default every ``nn.ReLU`` module of the model; its *input* is the
  pre-activation. ``layers=[names]`` picks submodules instead; their first positional input
  is taken as the pre-activation (so name ReLU-like modules, not the ``Linear`` before them).
  A module called several times in one forward (a shared ``nn.ReLU``) contributes every call,
  in call order. ReLUs applied through ``torch.nn.functional.relu`` are invisible to hooks.
* **Codes.** Strict: :math:`c_k = [z_k > 0]`; a point exactly on a boundary gets 0.
* **Cell ids** are positions in the lexicographically sorted list of distinct codes
  (``torch.unique(dim=0)``), so they are deterministic for a given data set and model.
* **Purity** of a cell is the fraction of its points carrying its most frequent label (ties:
  the smallest label); **entropy** is the Shannon entropy (nats) of its label distribution.
* **Boundary distance** of a sample is

  .. math:: \delta(x) = \min_k \frac{|z_k(x)|}{\lVert \nabla_x z_k(x) \rVert_2},

  over units with :math:`\nabla_x z_k(x) \ne 0` (a unit with zero gradient is constant on
  the cell and bounds nothing; with none left, :math:`\delta = \infty`). On the cell of code
  :math:`c` every pre-activation is affine, :math:`z_k(x) = a_k^{c\top} x + b_k^c` (a layer's
  pre-activations depend only on the codes of the layers before it), so the cell is the
  convex polyhedron :math:`\{x : \pm(a_k^{c\top} x + b_k^c) > 0 \;\forall k\}` and
  :math:`\delta` is the exact Euclidean distance from :math:`x` to the boundary of its cell,
  at any depth (with one hidden layer the :math:`a_k` are the rows of the first weight
  matrix). Beyond one hidden layer, :math:`|z_k| / \lVert \nabla z_k \rVert` for a single unit
  is only the first-order estimate of the distance to that unit's whole zero set, which bends
  at the boundaries of the cell; the minimum over units is exact for the cell boundary.
  The gradients are the rows of the Jacobian of the map :math:`x \mapsto z(x)`, computed
  with ``torch.func`` (``vmap`` of ``jacfwd`` when the input dimension is at most
  :math:`H`, of ``jacrev`` otherwise) in chunks of ``batch_size`` samples; inputs of any shape
  are flattened, so norms are over all input coordinates.
* :math:`\delta` is invariant under rescaling a unit's incoming weights and bias by
  :math:`a > 0` and its outgoing weights by :math:`1/a`: :math:`z_k` and :math:`\nabla z_k`
  both scale by :math:`a`, and every other unit is unchanged.

Everything runs in the model's current train/eval mode and dtype; callers wanting inference
behaviour (dropout off, batch-norm running statistics) put the model in ``eval()`` first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from magtorch.errors import MagtorchError

from ._progress import Progress

__all__ = [
    "Cells",
    "activation_codes",
    "assign_cells",
    "boundary_distance",
    "hidden_layers",
    "preactivation_gradient_norms",
    "preactivation_jacobian",
    "preactivations",
]

Layers = Sequence[str] | None


def hidden_layers(model: nn.Module, layers: Layers = None) -> list[tuple[str, nn.Module]]:
    """The submodules whose inputs are the hidden pre-activations, as ``(name, module)``.

    Args:
        model: any ``nn.Module``.
        layers: ``None`` for every ``nn.ReLU`` (in ``named_modules`` order), or a list of
            submodule names.

    Raises:
        MagtorchError: ``layers`` names a missing submodule, or the model has no ``nn.ReLU``.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> [name for name, _ in hidden_layers(net)]
        ['1']
    """
    if not isinstance(model, nn.Module):
        raise MagtorchError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if layers is None:
        found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
        if not found:
            raise MagtorchError(
                f"{type(model).__name__} has no nn.ReLU module; pass layers=[names of the "
                "modules whose inputs are the hidden pre-activations]"
            )
        return found
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise MagtorchError(f"layers must be None or a non-empty list of names; got {layers!r}")
    out = []
    for name in layers:
        try:
            out.append((name, model.get_submodule(name)))
        except AttributeError as err:
            raise MagtorchError(
                f"layers: {name!r} is not a submodule of {type(model).__name__}"
            ) from err
    return out


def _check_x(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise MagtorchError(f"x must be a torch.Tensor of shape (n, ...); got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise MagtorchError(f"x must have shape (n, ...) with n >= 1; got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise MagtorchError(f"x must be floating point; got dtype {x.dtype}")
    return x


def _preact_fn(model: nn.Module, layers: Layers) -> Callable[[Tensor], Tensor]:
    """``f(x) -> (B, H)``: all captured pre-activations of a batch, flattened per sample."""
    modules = hidden_layers(model, layers)

    def f(x: Tensor) -> Tensor:
        captured: list[Tensor] = []

        def hook(module, args):
            # a copy: an in-place activation (nn.ReLU(inplace=True)) overwrites its input
            captured.append(args[0].clone())

        handles = [m.register_forward_pre_hook(hook) for _, m in modules]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        if not captured:
            names = [n for n, _ in modules]
            raise MagtorchError(f"the hidden layers {names} were not called by forward")
        return torch.cat([c.reshape(c.shape[0], -1) for c in captured], dim=1)

    return f


def preactivations(model: nn.Module, x: Tensor, layers: Layers = None) -> Tensor:
    """Hidden pre-activations :math:`z(x)` of every sample, all layers concatenated: ``(n, H)``.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> preactivations(net, torch.zeros(4, 2)).shape
        torch.Size([4, 3])
    """
    return _preact_fn(model, layers)(_check_x(x))


def activation_codes(model: nn.Module, x: Tensor, layers: Layers = None) -> Tensor:
    """Activation codes :math:`c(x) = (z_k(x) > 0)_k`: a bool tensor ``(n, H)``.

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.fill_(0.0)
        >>> activation_codes(net, torch.tensor([[-1.0], [2.0]])).tolist()
        [[False], [True]]
    """
    with torch.no_grad():
        return preactivations(model, x, layers) > 0


@dataclass
class Cells:
    """Cells of a data set: see :func:`assign_cells`.

    Attributes:
        ids: ``(n,)`` cell id of each sample.
        codes: ``(C, H)`` bool, the activation code of each data-containing cell.
        counts: ``(C,)`` number of samples per cell.
        purity: ``(C,)`` fraction of the cell's samples with its majority label (``None``
            without labels).
        entropy: ``(C,)`` label entropy in nats (``None`` without labels).
        majority: ``(C,)`` the most frequent label (``None`` without labels).
    """

    ids: Tensor
    codes: Tensor
    counts: Tensor
    purity: Tensor | None = None
    entropy: Tensor | None = None
    majority: Tensor | None = None

    @property
    def num_cells(self) -> int:
        """The number of data-containing cells ``C``."""
        return int(self.codes.shape[0])


def assign_cells(codes: Tensor, labels: Tensor | None = None) -> Cells:
    r"""Group samples by activation code; per-cell counts, label purity and entropy.

    Args:
        codes: ``(n, H)`` bool activation codes (:func:`activation_codes`).
        labels: optional ``(n,)`` integer labels.

    Returns:
        :class:`Cells`; entropy is :math:`-\sum_c p_c \log p_c` over the label frequencies
        :math:`p_c` in the cell.

    Example:
        >>> codes = torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.bool)
        >>> cells = assign_cells(codes, torch.tensor([0, 1, 1]))
        >>> cells.ids.tolist(), cells.counts.tolist(), cells.purity.tolist()
        ([1, 1, 0], [1, 2], [1.0, 0.5])
    """
    if not isinstance(codes, Tensor) or codes.dim() != 2 or codes.dtype != torch.bool:
        raise MagtorchError(
            "codes must be a bool tensor of shape (n, H); got "
            + (f"{codes.dtype} {tuple(codes.shape)}" if isinstance(codes, Tensor) else repr(codes))
        )
    h = codes.shape[1]
    if h <= 62:  # one int64 key per code (same order as the rows): a fast 1-d unique
        powers = 2 ** torch.arange(h - 1, -1, -1, device=codes.device, dtype=torch.long)
        keys, ids, counts = torch.unique(
            (codes.long() * powers).sum(1), return_inverse=True, return_counts=True
        )
        unique = (keys[:, None] & powers) > 0
    else:
        unique, ids, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    cells = Cells(ids=ids, codes=unique, counts=counts)
    if labels is None:
        return cells
    labels = torch.as_tensor(labels, device=codes.device).reshape(-1)
    if labels.shape[0] != codes.shape[0] or labels.is_floating_point():
        raise MagtorchError(
            f"labels must be integers of shape ({codes.shape[0]},); got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    _, lab = torch.unique(labels, return_inverse=True)
    table = torch.zeros(len(unique), int(lab.max()) + 1, dtype=torch.float64, device=codes.device)
    table.index_put_((ids, lab), torch.ones_like(ids, dtype=torch.float64), accumulate=True)
    p = table / table.sum(1, keepdim=True)
    top, arg = p.max(1)
    cells.purity = top
    cells.entropy = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(1)
    cells.majority = torch.unique(labels)[arg]
    return cells


#: At most this many Jacobian entries are held per chunk (``batch_size`` is lowered to fit).
JACOBIAN_CHUNK_ENTRIES = 2**24


def _jacobian_chunks(
    model: nn.Module,
    x: Tensor,
    layers: Layers,
    batch_size: int,
    create_graph: bool,
    progress: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(z (b, H), J (b, H, d))`` chunk by chunk."""
    x = _check_x(x)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MagtorchError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    f = _preact_fn(model, layers)
    shape = x.shape[1:]
    d = x[0].numel()

    def one(xi: Tensor) -> tuple[Tensor, Tensor]:
        z = f(xi.reshape(1, *shape))[0]
        return z, z

    with torch.no_grad():  # one sample to learn H (cheap) and to check the hooks
        h = f(x[:1]).shape[1]
    jac = torch.func.jacfwd if d <= h else torch.func.jacrev
    batched = torch.func.vmap(jac(one, has_aux=True), randomness="different")
    chunk = max(1, min(batch_size, JACOBIAN_CHUNK_ENTRIES // max(h * d, 1)))
    bar = Progress(total=x.shape[0], n=x.shape[0], enabled=progress, what="Jacobian rows")
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk].reshape(-1, d)
        if create_graph:
            jb, zb = batched(xb)
        else:
            with torch.no_grad():
                jb, zb = batched(xb.detach())
        bar.update(xb.shape[0])
        yield zb, jb
    bar.close()


def preactivation_jacobian(
    model: nn.Module,
    x: Tensor,
    layers: Layers = None,
    *,
    batch_size: int = 256,
    create_graph: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Pre-activations and their input gradients: :math:`z(x)` ``(n, H)`` and
    :math:`J(x) = \partial z / \partial x` ``(n, H, d)`` with ``d`` the flattened input size.

    Computed per sample with ``torch.func.vmap`` of ``jacfwd`` (``d <= H``) or ``jacrev``,
    ``batch_size`` samples at a time, lowered so that a chunk holds at most
    ``JACOBIAN_CHUNK_ENTRIES`` (:math:`2^{24}`) Jacobian entries. The result holds ``n H d``
    numbers: for large inputs use :func:`boundary_distance`, which keeps only the row norms.
    With ``create_graph=True`` the results stay differentiable with respect to the model's
    parameters (the regulariser uses this); otherwise they are detached.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> z, J = preactivation_jacobian(net, torch.randn(5, 2))
        >>> torch.allclose(J, net[0].weight.expand(5, 3, 2))
        True
    """
    zs, js = [], []
    for zb, jb in _jacobian_chunks(model, x, layers, batch_size, create_graph):
        zs.append(zb)
        js.append(jb)
    return torch.cat(zs), torch.cat(js)


def preactivation_gradient_norms(
    model: nn.Module,
    x: Tensor,
    layers: Layers = None,
    *,
    batch_size: int = 256,
    create_graph: bool = False,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Pre-activations :math:`z(x)` and gradient norms :math:`\lVert \nabla_x z_k(x) \rVert`,
    both ``(n, H)``, without keeping the whole Jacobian (chunks as in
    :func:`preactivation_jacobian`).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> z, norms = preactivation_gradient_norms(net, torch.randn(5, 2))
        >>> torch.allclose(norms, net[0].weight.norm(dim=1).expand(5, 3))
        True
    """
    zs, ns = [], []
    for zb, jb in _jacobian_chunks(model, x, layers, batch_size, create_graph, progress):
        zs.append(zb)
        ns.append(jb.flatten(2).norm(dim=2))
    return torch.cat(zs), torch.cat(ns)


def boundary_distance(
    model: nn.Module,
    x: Tensor,
    layers: Layers = None,
    *,
    batch_size: int = 256,
    return_unit: bool = False,
    progress: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Distance of every sample to the boundary of its cell:
    :math:`\delta(x) = \min_k |z_k(x)| / \lVert \nabla_x z_k(x) \rVert`.

    The exact distance to the boundary of the sample's (convex) cell, at any depth; see the
    module docstring.

    Args:
        model: the network.
        x: ``(n, ...)`` inputs.
        layers: hidden layers (see :func:`hidden_layers`).
        batch_size: samples per Jacobian chunk.
        return_unit: also return the index ``(n,)`` of the minimising unit (``-1`` where
            :math:`\delta = \infty`).
        progress: print progress over the samples (stderr, at most once a second).

    Returns:
        ``(n,)`` distances in the dtype of ``x`` (detached).

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(2.0), net[0].bias.fill_(-1.0)
        >>> boundary_distance(net, torch.tensor([[0.0], [3.0]])).tolist()
        [0.5, 2.5]
    """
    z, norm = preactivation_gradient_norms(
        model, x, layers, batch_size=batch_size, progress=progress
    )
    dist, unit = _distance_from(z, norm)
    return (dist, unit) if return_unit else dist


def _distance_from(z: Tensor, norm: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample min over units of ``|z| / ||grad z||`` (units with zero gradient skipped)."""
    ratio = torch.where(norm > 0, z.abs() / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.inf)
    dist, unit = ratio.min(dim=1)
    unit = torch.where(torch.isfinite(dist), unit, torch.full_like(unit, -1))
    return dist, unit
