"""Per-sample potential scores behind ``MagnitudePotentialCallback`` (no Lightning here).

Pure torch functions (no Lightning here), so that the callback is a thin shell over code that
can be called and tested on its own:

* :func:`potential_scores` — class potential, all-data potential and their ratio for every
  point, leave-one-out within the set or against a reference set;
* :func:`dedup_by_index` — sort gathered rows by dataset index and drop the copies that a
  padding ``DistributedSampler`` adds;
* :func:`subsample` — the fixed, seeded subset of positions kept by ``max_samples``;
* :func:`summarize` — the aggregates the callback logs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from magtorch.errors import MagtorchError
from magtorch.magnitude import class_potentials

__all__ = ["dedup_by_index", "potential_scores", "subsample", "summarize"]

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def potential_scores(
    z: Tensor,
    labels: Tensor,
    t: Tensor,
    *,
    reference: Tensor | None = None,
    reference_labels: Tensor | None = None,
    metric: str = "euclidean",
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Class potential, all-data potential and ratio of every row of ``z`` (float64).

    Without ``reference``, leave-one-out within ``z``:
    :math:`h_{Z_c \setminus \{i\}}(z_i)`, :math:`h_{Z \setminus \{i\}}(z_i)` (each
    :math:`1 - w_i / P_{ii}` on its own set; a class of one point has class potential 0).
    With ``reference`` (``(n_ref, d)``, labels ``(n_ref,)``): :math:`h_{R_c}(z_i)` and
    :math:`h_R(z_i)`, nothing left out (a class absent from the reference has potential 0).

    Args:
        z: ``(n, d)`` points.
        labels: ``(n,)`` integer classes.
        t: 0-d or 1-d float64 tensor of scales.
        reference, reference_labels: optional reference set and its classes.
        metric: ``"euclidean"``, ``"l1"`` or ``"cosine"``.

    Returns:
        ``(class_potential, all_potential, ratio)``, each ``(n,)`` for a 0-d ``t`` or
        ``(T, n)`` for ``T`` scales. The ratio is ``inf``/``nan`` where the all-data potential
        is 0.

    Example:
        >>> import torch
        >>> z = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
        >>> cls, every, ratio = potential_scores(z, torch.tensor([0, 0, 1, 1]), torch.tensor(1.0))
        >>> bool(torch.allclose(cls, every, atol=1e-2)), bool((ratio > 0.99).all())
        (True, True)
    """
    z = z.detach().to(torch.float64)
    labels = labels.to(device=z.device, dtype=torch.long)
    if reference is not None:
        reference = reference.detach().to(device=z.device, dtype=torch.float64)
        reference_labels = reference_labels.to(device=z.device, dtype=torch.long)
    return tuple(
        class_potentials(
            z,
            labels,
            t,
            reference=reference,
            reference_labels=reference_labels,
            metric=metric,
        )
    )


def dedup_by_index(index: Tensor, *rows: Tensor) -> tuple[Tensor, ...]:
    """Sort by ``index`` and keep the first row of each index (padding copies are identical).

    Returns ``(index, *rows)`` sorted by index with the duplicates removed.
    """
    order = torch.argsort(index, stable=True)
    index = index[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    return (index[keep], *(r[order][keep] for r in rows))


def subsample(n: int, k: int, seed: int = 0) -> Tensor:
    """Sorted positions of a fixed random ``k``-subset of ``range(n)`` (all of them if k >= n)."""
    if k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(n, generator=g)[:k]).values


def summarize(ratio: Tensor, labels: Tensor) -> dict[str, float]:
    """Mean, quantiles, fraction below 1 and per-class mean of a ``(n,)`` ratio (finite values).

    Example:
        >>> s = summarize(torch.tensor([0.5, 1.0, 1.5, 2.0]), torch.tensor([0, 0, 1, 1]))
        >>> s["ratio_mean"], s["frac_ratio_below_1"], s["ratio_mean_class_1"]
        (1.25, 0.25, 1.75)
    """
    if ratio.dim() != 1:
        raise MagtorchError(f"ratio must be 1-d; got shape {tuple(ratio.shape)}")
    finite = torch.isfinite(ratio)
    r = ratio[finite].to(torch.float64)
    out: dict[str, float] = {"frac_ratio_nonfinite": float((~finite).double().mean())}
    if r.numel() == 0:
        return out
    out["ratio_mean"] = float(r.mean())
    qs = torch.quantile(r, torch.tensor(QUANTILES, dtype=torch.float64, device=r.device))
    for q, v in zip(QUANTILES, qs.tolist(), strict=True):
        out[f"ratio_q{round(100 * q):02d}"] = v
    out["frac_ratio_below_1"] = float((r < 1).double().mean())
    lab = labels.to(ratio.device)[finite]
    for c in torch.unique(lab).tolist():
        out[f"ratio_mean_class_{c}"] = float(r[lab == c].mean())
    return out
