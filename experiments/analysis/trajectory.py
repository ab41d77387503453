r"""Kendall's tau and the granulated Kendall coefficients of a generalisation measure.

Used by the ``trajectory`` experiment (Andreeva et al., AAAI 2025, §5.2, Table 1): over a grid
of hyperparameters (learning rate x batch size), how well does a complexity measure
:math:`\mu` (trajectory :math:`\mathrm{Mag}_n`, :math:`\mathrm{PMag}_n`) rank the runs by
their generalisation gap :math:`g`?

* **Kendall's tau** (tau-b, ties corrected) over all runs:
  :math:`\tau = (P - Q) / \sqrt{(n_0 - n_1)(n_0 - n_2)}` with :math:`P`/:math:`Q` the
  concordant/discordant pairs, :math:`n_0 = n(n-1)/2` and :math:`n_1`, :math:`n_2` the pairs
  tied in :math:`\mu` and in :math:`g`.
* **Granulated Kendall coefficient** (Jiang et al., ICLR 2020, "Fantastic generalization
  measures and where to find them", eq. 4): for hyperparameter :math:`i` with the others fixed
  to a combination :math:`\theta_{-i}`, take tau over the runs that differ only in
  :math:`\theta_i`, and average over the :math:`m_i` combinations of the other hyperparameters:

  .. math::

      \psi_i = \frac{1}{m_i} \sum_{\theta_{-i}} \tau\big(\{(\mu(\theta), g(\theta)) :
      \theta_i \text{ varies}\}\big),\qquad \Psi = \frac1K \sum_{i=1}^K \psi_i.

  Groups with fewer than two runs, or where tau is undefined (every value tied), are left
  out of the average and counted in ``groups_skipped``.

Example:
    >>> from experiments.analysis.trajectory import granulated_kendall, kendall_tau
    >>> kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
    0.6666666666666666
    >>> res = granulated_kendall(
    ...     {"lr": [1, 1, 2, 2], "bs": [8, 16, 8, 16]}, [1, 2, 3, 4], [1, 2, 4, 3])
    >>> res["psi"], res["Psi"]
    ({'lr': 1.0, 'bs': 0.0}, 0.5)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from magtorch.errors import MagtorchError

__all__ = ["aggregate", "granulated_kendall", "kendall_tau", "prefix_magnitudes", "report"]


def _vector(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise MagtorchError(f"{name} must be 1-d; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise MagtorchError(f"{name} must hold finite numbers; got {arr.tolist()}")
    return arr


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    r"""Kendall's tau-b of two equally long sequences (NaN when either is constant).

    ``O(n^2)`` pair counting: meant for the tens to hundreds of runs of a grid.
    """
    a, b = _vector(x, "x"), _vector(y, "y")
    if len(a) != len(b):
        raise MagtorchError(f"x and y must have the same length; got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise MagtorchError(f"kendall_tau needs at least 2 points; got {len(a)}")
    iu = np.triu_indices(len(a), k=1)
    da = np.sign(a[:, None] - a[None, :])[iu]
    db = np.sign(b[:, None] - b[None, :])[iu]
    n0 = len(da)
    n1 = int(np.sum(da == 0))
    n2 = int(np.sum(db == 0))
    s = float(np.sum(da * db))  # P - Q (pairs tied in either count 0)
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    return s / denom if denom > 0 else math.nan


def granulated_kendall(
    hparams: Mapping[str, Sequence[Any]], measure: Sequence[float], gap: Sequence[float]
) -> dict[str, Any]:
    r"""Granulated Kendall coefficients :math:`\psi_i`, their mean :math:`\Psi` and tau.

    Args:
        hparams: one sequence per hyperparameter name, giving each run's value (length ``n``).
        measure: the complexity measure of each run ``(n,)``.
        gap: the generalisation gap of each run ``(n,)``.

    Returns:
        ``{"psi": {name: psi_i}, "Psi": mean of the finite psi_i, "tau": kendall_tau(measure,
        gap), "groups": {name: number of groups averaged}, "groups_skipped": {name: ...}}``.
    """
    mu, g = _vector(measure, "measure"), _vector(gap, "gap")
    n = len(mu)
    if len(g) != n:
        raise MagtorchError(f"measure and gap must have the same length; got {n} and {len(g)}")
    if not hparams:
        raise MagtorchError("hparams must name at least one hyperparameter")
    columns = {}
    for name, values in hparams.items():
        values = list(values)
        if len(values) != n:
            raise MagtorchError(
                f"hparams[{name!r}] must have one value per run ({n}); got {len(values)}"
            )
        columns[name] = values
    psi: dict[str, float] = {}
    used: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for name in columns:
        others = [k for k in columns if k != name]
        groups: dict[tuple, list[int]] = {}
        for r in range(n):
            groups.setdefault(tuple(columns[k][r] for k in others), []).append(r)
        taus = []
        for members in groups.values():
            tau = kendall_tau(mu[members], g[members]) if len(members) >= 2 else math.nan
            if math.isfinite(tau):
                taus.append(tau)
        used[name] = len(taus)
        skipped[name] = len(groups) - len(taus)
        psi[name] = float(np.mean(taus)) if taus else math.nan
    finite = [v for v in psi.values() if math.isfinite(v)]
    return {
        "psi": psi,
        "Psi": float(np.mean(finite)) if finite else math.nan,
        "tau": kendall_tau(mu, g),
        "groups": used,
        "groups_skipped": skipped,
    }


def prefix_magnitudes(
    distances: Tensor, lengths: Sequence[int], t: Sequence[float]
) -> dict[int, dict[str, list[float]]]:
    r"""Mag and PMag of the first ``n`` points of a trajectory, for each ``n`` in ``lengths``.

    ``distances`` ``(N, N)`` are the trajectory's pairwise distances (the callback's
    ``distances`` with ``keep_trajectory=True``); each prefix is one dense solve with
    ``metric="precomputed"`` at all scales ``t``. Returns ``{n: {"magnitude": [...],
    "positive_magnitude": [...]}}`` (one value per scale).
    """
    from magtorch import solve

    out = {}
    scales = torch.tensor([float(v) for v in t], dtype=torch.float64)
    for n in lengths:
        if not 2 <= int(n) <= distances.shape[0]:
            raise MagtorchError(
                f"lengths must lie in [2, {distances.shape[0]}] (the trajectory); got {n}"
            )
        d = distances[: int(n), : int(n)].to(torch.float64)
        res = solve(d, scales, metric="precomputed")
        w = res.weights.reshape(len(scales), -1)
        out[int(n)] = {
            "magnitude": [float(v) for v in res.magnitude.reshape(-1)],
            "positive_magnitude": [float(v) for v in w.clamp_min(0).sum(-1)],
        }
    return out


def report(
    out_dir: str | Path,
    *,
    cfg: Any,
    trainer: Any,
    module: Any,
    datamodule: Any,
    metrics: dict[str, Any],
    **_: Any,
) -> dict[str, Any]:
    """One grid point: train/test accuracy and loss (eval mode, whole sets), the gaps, and the
    trajectory Mag/PMag for each length in ``cfg.params.lengths``; ``trajectory.json``."""
    from experiments.analysis.weight_reg import evaluate
    from magtorch.callbacks import TrajectoryMagnitudeCallback

    out_dir = Path(out_dir)
    cb = next((c for c in trainer.callbacks if isinstance(c, TrajectoryMagnitudeCallback)), None)
    if cb is None or cb.results is None or cb.distances is None:
        raise MagtorchError(
            "the trajectory report needs a TrajectoryMagnitudeCallback with keep_trajectory=True"
        )
    params = cfg.get("params") or {}
    lengths = [int(n) for n in params.get("lengths", [cb.n_points])]
    mags = prefix_magnitudes(cb.distances, lengths, cb.t)
    train_loss, train_acc = evaluate(module.model, datamodule.score_dataloader())
    test_loss, test_acc = evaluate(module.model, datamodule.val_dataloader())
    row = {
        "lr": float(cfg.module.lr),
        "batch_size": int(cfg.data.batch_size),
        "train_acc": train_acc,
        "test_acc": test_acc,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "gap_acc": train_acc - test_acc,
        "gap_loss": test_loss - train_loss,
        "t": list(cb.t),
        "mags": {str(k): v for k, v in mags.items()},
    }
    (out_dir / "trajectory.json").write_text(json.dumps(row, indent=1))
    lines = [
        f"# Trajectory magnitude: lr = {row['lr']:g}, batch size = {row['batch_size']}",
        "",
        f"Train / test accuracy {train_acc:.4f} / {test_acc:.4f} (gap {row['gap_acc']:.4f}); "
        f"loss {train_loss:.4f} / {test_loss:.4f} (gap {row['gap_loss']:.4f}).",
        "",
        "| length | t | Mag | PMag |",
        "|---|---|---|---|",
    ]
    for n, v in mags.items():
        for i, t in enumerate(cb.t):
            lines.append(
                f"| {n} | {t:g} | {v['magnitude'][i]:.4f} | {v['positive_magnitude'][i]:.4f} |"
            )
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    first = mags[lengths[-1]]
    return {
        "trajectory/gap_acc": row["gap_acc"],
        "trajectory/gap_loss": row["gap_loss"],
        f"trajectory/mag{lengths[-1]}_t{cb.t[0]:g}": first["magnitude"][0],
    }


def aggregate(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Kendall tau and granulated Kendall (lr, batch size) of Mag_n / PMag_n against the gap,
    for every length and scale, over every ``*/trajectory.json`` under ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir
    rows = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/trajectory.json"))]
    if len(rows) < 3:
        raise MagtorchError(f"need at least 3 */trajectory.json under {sweep_dir}; got {len(rows)}")
    hp = {"lr": [r["lr"] for r in rows], "bs": [r["batch_size"] for r in rows]}
    results = []
    for gap_key in ("gap_acc", "gap_loss"):
        gap = [r[gap_key] for r in rows]
        for n in rows[0]["mags"]:
            for i, t in enumerate(rows[0]["t"]):
                for measure, label in (("magnitude", "Mag"), ("positive_magnitude", "PMag")):
                    values = [r["mags"][n][measure][i] for r in rows]
                    g = granulated_kendall(hp, values, gap)
                    results.append(
                        {
                            "gap": gap_key,
                            "measure": f"{label}{n}",
                            "t": t,
                            "psi_lr": g["psi"]["lr"],
                            "psi_bs": g["psi"]["bs"],
                            "Psi": g["Psi"],
                            "tau": g["tau"],
                        }
                    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "trajectory.json").write_text(json.dumps({"runs": rows, "results": results}, indent=1))
    lines = [
        "# Trajectory magnitude vs generalisation gap",
        "",
        "| lr | batch size | train acc | test acc | gap (acc) | gap (loss) |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["lr"], r["batch_size"])):
        lines.append(
            f"| {r['lr']:g} | {r['batch_size']} | {r['train_acc']:.4f} | {r['test_acc']:.4f} | "
            f"{r['gap_acc']:.4f} | {r['gap_loss']:.4f} |"
        )
    lines += [
        "",
        "| gap | measure | t | ψ_lr | ψ_bs | Ψ | τ |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['gap']} | {r['measure']} | {r['t']:g} | {r['psi_lr']:.3f} | "
            f"{r['psi_bs']:.3f} | {r['Psi']:.3f} | {r['tau']:.3f} |"
        )
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
