r"""Partition geometry (issue 7) beside the magnitude potential ratio: the shared report piece.

A ReLU network cuts its input space into cells (one per activation code); see
:mod:`magtorch.partition`. The reports of the memorisation and grokking experiments add:

* **Scalar statistics** of the data-containing cells (:func:`magtorch.partition.
  partition_summary`): number of cells, fraction of points alone in their cell
  (``frac_singleton``), mean label purity / entropy of a point's cell, boundary distances
  (mean, median, 10% quantile), the code-adjacency graph (edges, mean degree) with Forman and
  Ollivier-Ricci curvature, and the nearest-neighbour *cells crossed*.
* **Per-sample scores**, each oriented "higher = more memorised" like the scores of
  :mod:`experiments.analysis.memorization`:

  - ``boundary_near``: :math:`-\mathrm{dist}(x_i, \partial\,\mathrm{cell}(x_i))`, minus the
    distance to the cell boundary, :math:`\min_k |z_k(x_i)| / \lVert\nabla_x z_k(x_i)\rVert`
    over all hidden pre-activations (exact with one hidden layer, first order beyond);
  - ``cells_crossed``: the number of cell boundaries the segment from :math:`x_i` to its
    Euclidean nearest training neighbour crosses;
  - ``cell_disagreement``: the fraction of the *other* training points in :math:`x_i`'s cell
    whose label differs from :math:`y_i` (0 for a point alone in its cell: no evidence).
    Our construction: a flipped label inside a cell of correctly labelled points scores
    high, but only where cells hold several points.

  These are set beside the ratio and the baselines with the same statistics (Spearman
  :math:`\rho` with the Feldman-Zhang estimate, AUROC for the flipped labels, percentile
  bootstrap intervals: :func:`experiments.analysis.memorization.spearman`, ``auroc``,
  ``bootstrap_ci``).
* **Time series** (grokking): the statistics logged by
  :class:`magtorch.callbacks.PartitionCallback`, with their change points by the rule of
  :func:`experiments.analysis.grokking.change_epoch`.

**Where the statistics carry information.** On 2-D data with narrow layers many training points
share a cell, so purity, disagreement and adjacency mean something. On high-dimensional data
with wide layers nearly every point is alone in its cell (``frac_singleton`` near 1): cell
counts equal the sample size, purity is trivially 1, the code-adjacency graph has no edges,
and only the distances (boundary distance, cells crossed) vary. The report prints
``frac_singleton`` first and says so.

Example:
    >>> import torch
    >>> from experiments.analysis.partition import cell_disagreement
    >>> cell_disagreement(torch.tensor([0, 0, 0, 1]), torch.tensor([1, 1, 2, 1])).tolist()
    [0.5, 0.5, 1.0, 0.0]
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from magtorch.errors import MagtorchError

__all__ = [
    "PARTITION_SCORES",
    "SERIES_KEYS",
    "aggregate",
    "cell_disagreement",
    "memorization_partition",
    "partition_scores",
    "plot_cells_2d",
    "plot_series",
    "score_rows",
    "series_changes",
    "series_markdown",
    "stats_markdown",
]

#: Per-sample partition scores (higher = more memorised).
PARTITION_SCORES = ("boundary_near", "cells_crossed", "cell_disagreement")

#: Logged statistics shown as time series (in this order).
SERIES_KEYS = (
    "num_cells",
    "frac_singleton",
    "mean_purity",
    "boundary_mean",
    "boundary_median",
    "boundary_q10",
    "crossings_mean",
    "num_edges",
    "mean_degree",
    "forman_mean",
    "ollivier_mean",
)

#: Scalar statistics in the report table (in this order).
STATS_KEYS = (
    "num_samples",
    "num_units",
    "num_cells",
    "frac_singleton",
    "mean_cell_size",
    "mean_purity",
    "mean_label_entropy",
    "boundary_mean",
    "boundary_median",
    "boundary_q10",
    "crossings_mean",
    "frac_crossing",
    "num_edges",
    "mean_degree",
    "frac_isolated_cells",
    "forman_mean",
    "forman_weighted_mean",
    "ollivier_mean",
)


# ---------------------------------------------------------------------- per-sample scores


def cell_disagreement(cell_id: Tensor, labels: Tensor) -> Tensor:
    r"""For each sample, the fraction of the other samples of its cell with another label.

    .. math:: \mathrm{dis}(i) = \frac{|\{j \ne i : c_j = c_i,\ y_j \ne y_i\}|}
                                    {|\{j \ne i : c_j = c_i\}|},
              \qquad 0 \text{ for a sample alone in its cell.}

    Args:
        cell_id: ``(n,)`` integer cell ids (``partition_summary(...)["cell_id"]``).
        labels: ``(n,)`` integer labels.

    Returns:
        ``(n,)`` float64 in ``[0, 1]``.

    Example:
        >>> cell_disagreement(torch.tensor([3, 3, 5]), torch.tensor([0, 1, 0])).tolist()
        [1.0, 1.0, 0.0]
    """
    cell_id = torch.as_tensor(cell_id).reshape(-1).long().cpu()
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if cell_id.shape != labels.shape or labels.is_floating_point():
        raise MagtorchError(
            f"cell_id and labels must be integer (n,) of one length; got {tuple(cell_id.shape)} "
            f"and {labels.dtype} {tuple(labels.shape)}"
        )
    if len(labels) == 0:
        return torch.zeros(0, dtype=torch.float64)
    _, cell = torch.unique(cell_id, return_inverse=True)
    _, lab = torch.unique(labels, return_inverse=True)
    table = torch.zeros(int(cell.max()) + 1, int(lab.max()) + 1, dtype=torch.float64)
    table.index_put_((cell, lab), torch.ones(len(lab), dtype=torch.float64), accumulate=True)
    size = table.sum(1)[cell]
    same = table[cell, lab]
    others = size - 1
    return torch.where(others > 0, (size - same) / others.clamp_min(1), torch.zeros_like(size))


def partition_scores(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    *,
    input_layer: str | None = None,
    layers: Sequence[str] | None = None,
    walk: bool = True,
    curvature: bool = True,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, Any]]:
    """Partition statistics and per-sample scores of a trained model on ``(x, y)``.

    Args:
        model: the network (hidden ReLUs visible to forward hooks).
        x: ``(n, ...)`` inputs; token ids with ``input_layer``.
        y: ``(n,)`` integer labels (purity, entropy, ``cell_disagreement``).
        input_layer: measure the partition in the output space of this submodule
            (:func:`magtorch.partition.input_layer_view`; e.g. ``"embed"``).
        layers: hidden layers (default every ``nn.ReLU``).
        walk: nearest-neighbour segment walk (``cells_crossed``).
        curvature: Forman and Ollivier-Ricci curvature of the code-adjacency graph.
        batch_size: Jacobian chunk size.
        progress: progress lines on stderr.

    Returns:
        ``(stats, scores, summary)``: the scalar statistics (:data:`STATS_KEYS` present in the
        summary), the per-sample scores :data:`PARTITION_SCORES` (NumPy float64, higher = more
        memorised; ``cells_crossed`` only with ``walk``, ``cell_disagreement`` only with
        ``y``) and the full :func:`magtorch.partition.partition_summary` dict.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> stats, scores, _ = partition_scores(net, torch.randn(30, 2), torch.arange(30) % 2)
        >>> stats["num_cells"] <= 7, sorted(scores)  # 3 lines cut the plane into <= 7 cells
        (True, ['boundary_near', 'cell_disagreement', 'cells_crossed'])
    """
    from magtorch import partition

    if input_layer is not None:
        model, x = partition.input_layer_view(model, input_layer, x)
        if layers is not None:
            layers = [f"model.{name}" for name in layers]
    x = x.detach().to(torch.float32) if not x.is_floating_point() else x.detach()
    summary = partition.partition_summary(
        model,
        x,
        y,
        None if layers is None else list(layers),
        walk=walk,
        curvature=curvature,
        batch_size=batch_size,
        progress=progress,
    )
    stats = {k: summary[k] for k in STATS_KEYS if k in summary}
    scores: dict[str, np.ndarray] = {
        "boundary_near": -summary["boundary_distance"].double().numpy(),
    }
    if "cells_crossed" in summary:
        scores["cells_crossed"] = summary["cells_crossed"].double().numpy()
    if y is not None:
        scores["cell_disagreement"] = cell_disagreement(summary["cell_id"], y).numpy()
    return stats, scores, summary


# ---------------------------------------------------------------------- statistics and tables


def score_rows(
    scores: dict[str, np.ndarray],
    mem: np.ndarray | None,
    flipped: np.ndarray | None,
    n_boot: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Spearman :math:`\\rho` of each score with ``mem`` (all points, clean points) and AUROC
    for ``flipped``, with bootstrap intervals: the rows of the memorisation table
    (:func:`experiments.analysis.memorization` statistics; NaN where undefined).

    Example:
        >>> mem = np.array([0.0, 0.1, 0.5, 0.9]); flipped = np.array([False, False, True, True])
        >>> rows = score_rows({"s": np.array([1.0, 2.0, 3.0, 4.0])}, mem, flipped, n_boot=10)
        >>> rows[0]["rho_all"], rows[0]["auroc"]
        (1.0, 1.0)
    """
    from experiments.analysis import memorization as mz

    n = len(next(iter(scores.values())))
    mem = np.full(n, np.nan) if mem is None else np.asarray(mem, dtype=np.float64)
    flipped = np.zeros(n, dtype=bool) if flipped is None else np.asarray(flipped, dtype=bool)
    return mz._rows({"mem": mem, "flipped": flipped, "scores": scores}, n_boot, seed)


def _ci(value: float, ci: tuple[float, float]) -> str:
    from experiments.analysis.memorization import _ci as ci_text

    return ci_text(value, ci)


def stats_markdown(columns: dict[str, dict[str, float]]) -> str:
    """A Markdown table of partition statistics, one column per run/setting.

    Example:
        >>> print(stats_markdown({"a": {"num_cells": 3.0, "frac_singleton": 0.5}}))
        | statistic | a |
        |---|---|
        | num_cells | 3 |
        | frac_singleton | 0.5 |
    """
    from experiments.analysis.common import markdown_table

    keys = [k for k in STATS_KEYS if any(k in c for c in columns.values())]
    rows = [[k, *(columns[name].get(k, math.nan) for name in columns)] for k in keys]
    return markdown_table(["statistic", *columns], rows)


def _reading(stats: dict[str, float]) -> str:
    single = stats.get("frac_singleton", math.nan)
    if not math.isfinite(single):
        return ""
    if single >= 0.9:
        return (
            f"{100 * single:.1f}% of the points are alone in their cell: cell counts, purity, "
            "disagreement and the code-adjacency graph carry (almost) no information here; only "
            "the distances (boundary distance, cells crossed) vary between points."
        )
    counts = (
        f"{100 * single:.1f}% of the points are alone in their cell ({stats['num_cells']:.0f} "
        f"cells for {stats['num_samples']:.0f} points, {stats['mean_cell_size']:.2f} per cell "
        "on average)"
    )
    if single >= 0.5:
        return (
            f"{counts}: most points are alone, so purity, disagreement and adjacency rest on the "
            "few shared cells and say little."
        )
    return f"{counts}: cells hold several points, so purity, disagreement and adjacency say more."


# ---------------------------------------------------------------------- figures


def _code_colours(codes: np.ndarray) -> np.ndarray:
    keys = np.packbits(codes.astype(bool), axis=1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    rng = np.random.default_rng(0)
    palette = rng.uniform(0.35, 1.0, size=(int(inverse.max()) + 1, 3))
    return palette[inverse.reshape(-1)]


def plot_cells_2d(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    path: str | Path,
    *,
    flipped: np.ndarray | None = None,
    resolution: int = 300,
    title: str = "",
) -> Path:
    """The cells of a 2-D input space (random colour per activation code) with the data.

    Example:
        >>> import tempfile, os
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = plot_cells_2d(net, torch.randn(20, 2), torch.arange(20) % 2,
        ...                       os.path.join(d, "c.png"), resolution=20)
        ...     p.stat().st_size > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from magtorch.partition import activation_codes

    if x.dim() != 2 or x.shape[1] != 2:
        raise MagtorchError(f"plot_cells_2d needs 2-D inputs (n, 2); got {tuple(x.shape)}")
    xn = x.detach().double().cpu().numpy()
    lo, hi = xn.min(0), xn.max(0)
    pad = 0.1 * (hi - lo)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        codes = activation_codes(model, torch.as_tensor(grid, dtype=dtype)).cpu().numpy()
    finally:
        for m, mode in modes.items():
            m.train(mode)
    image = _code_colours(codes).reshape(resolution, resolution, 3)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(
        image,
        origin="lower",
        extent=(gx[0], gx[-1], gy[0], gy[-1]),
        aspect="auto",
        interpolation="nearest",
    )
    yn = np.asarray(y.cpu())
    flipped = np.zeros(len(yn), dtype=bool) if flipped is None else np.asarray(flipped, bool)
    ax.scatter(
        xn[~flipped, 0],
        xn[~flipped, 1],
        c=yn[~flipped],
        cmap="tab10",
        s=6,
        vmin=0,
        vmax=9,
        edgecolors="none",
    )
    if flipped.any():
        ax.scatter(
            xn[flipped, 0],
            xn[flipped, 1],
            c=yn[flipped],
            cmap="tab10",
            s=28,
            vmin=0,
            vmax=9,
            marker="x",
            linewidths=1.2,
            label="flipped label",
        )
        ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or "cells (colour = activation code) and training data", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _scatter(
    path: Path,
    scores: dict[str, np.ndarray],
    mem: np.ndarray,
    flipped: np.ndarray,
    names: Sequence[str],
) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from experiments.analysis.memorization import spearman

    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.2), squeeze=False)
    jitter = np.random.default_rng(0).uniform(-0.015, 0.015, size=len(mem))
    for ax, name in zip(axes[0], names, strict=True):
        s = scores[name]
        ok = np.isfinite(s) & np.isfinite(mem)
        ax.scatter(s[~flipped], mem[~flipped] + jitter[~flipped], s=4, alpha=0.35, label="clean")
        ax.scatter(s[flipped], mem[flipped] + jitter[flipped], s=8, c="tab:red", label="flipped")
        ax.set_xlabel(f"{name} (higher = memorised)")
        ax.set_title(f"rho = {spearman(s[ok], mem[ok]):.3f}", fontsize=9)
    axes[0][0].set_ylabel("Feldman memorisation estimate")
    axes[0][0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_series(
    epochs: Sequence[float],
    series: dict[str, Sequence[float]],
    path: str | Path,
    *,
    accuracy: dict[str, Any] | None = None,
    marks: dict[str, float | None] | None = None,
) -> Path:
    """One panel per partition statistic against epoch (plus an accuracy/ratio panel).

    ``accuracy`` holds ``epochs``, ``train_acc``, ``test_acc`` and optionally
    ``ratio_epochs``, ``ratio``; ``marks`` are vertical lines (label -> epoch).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = [k for k in series if np.isfinite(np.asarray(series[k], dtype=np.float64)).any()]
    panels = len(keys) + (1 if accuracy else 0)
    cols = min(4, panels)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    flat = list(axes.reshape(-1))
    colours = ["tab:red", "tab:purple", "tab:brown", "tab:gray"]

    def mark(ax: Any) -> None:
        for i, (label, epoch) in enumerate((marks or {}).items()):
            if epoch is not None:
                ax.axvline(epoch, color=colours[i % len(colours)], ls="--", lw=0.9, label=label)

    i = 0
    if accuracy:
        ax = flat[0]
        ax.plot(accuracy["epochs"], accuracy["train_acc"], label="train acc", color="tab:blue")
        ax.plot(accuracy["epochs"], accuracy["test_acc"], label="test acc", color="tab:orange")
        if accuracy.get("ratio") is not None:
            ax.plot(
                accuracy["ratio_epochs"], accuracy["ratio"], label="mean ratio", color="tab:green"
            )
        mark(ax)
        ax.set_title("accuracy and potential ratio", fontsize=9)
        ax.legend(fontsize=6)
        i = 1
    for key in keys:
        ax = flat[i]
        values = np.asarray(series[key], dtype=np.float64)
        ax.plot(epochs, values, ".-", ms=3, color="tab:green")
        if key.startswith("boundary") and np.nanmin(values) > 0:
            ax.set_yscale("log")  # distances shrink by orders of magnitude
        mark(ax)
        ax.set_title(key, fontsize=9)
        i += 1
    for ax in flat[i:]:
        ax.axis("off")
    for ax in flat[:i]:
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- time series


def series_changes(
    epochs: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    persist: int = 2,
    start: float | None = None,
    rel_change: float = 0.02,
) -> dict[str, dict[str, Any]]:
    r"""Onset :math:`T_{0.1}` and midpoint :math:`T_{0.5}` of each statistic by the
    sustained q-crossing rule of :func:`experiments.analysis.grokking.change_epoch`.

    A series "does not change" (``T10 = T50 = None``) when its total change from ``start`` to
    the end is at most ``rel_change`` times its largest absolute value (the statistics have
    different units; a 2% move is below the scoring noise of a fixed subset). Series with
    non-finite values (e.g. curvature without edges) get ``"undefined": True``.

    Example:
        >>> out = series_changes([0, 1, 2, 3], {"a": [0.0, 0.0, 1.0, 1.0], "b": [5, 5, 5, 5]})
        >>> out["a"]["T10"], out["a"]["T50"], out["b"]["T10"]
        (2, 2, None)
    """
    from experiments.analysis.grokking import change_epoch

    e = np.asarray(epochs, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for key, values in series.items():
        v = np.asarray(values, dtype=np.float64)
        first = 0 if start is None else int(np.searchsorted(e, start))
        row: dict[str, Any] = {"T10": None, "T50": None, "undefined": False}
        if len(v) == 0 or first >= len(v) or not np.all(np.isfinite(v[first:])):
            row.update(undefined=True, start=math.nan, end=math.nan)
            out[key] = row
            continue
        row["start"], row["end"] = float(v[first]), float(v[-1])
        scale = float(np.abs(v[first:]).max())
        min_change = rel_change * scale
        for q, name in ((0.1, "T10"), (0.5, "T50")):
            row[name] = change_epoch(
                e[first:], v[first:], q, persist=persist, min_change=min_change
            )
        out[key] = row
    return out


def series_markdown(
    changes: dict[str, dict[str, Any]], reference: dict[str, int | None] | None = None
) -> str:
    """A Markdown table of :func:`series_changes`, with the lead of each onset over the
    ``reference`` onsets (label -> epoch; positive: the statistic moved first)."""
    reference = reference or {}
    header = ["statistic", "T10", "T50", "start", "end", *(f"lead over {k}" for k in reference)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else "nan"
        return str(v)

    for key, row in changes.items():
        if row.get("undefined"):
            cells = [key, "undefined (non-finite values)", "", "", "", *("" for _ in reference)]
        else:
            leads = []
            for ref in reference.values():
                t10 = row["T10"]
                leads.append("-" if ref is None or t10 is None else str(int(ref - t10)))
            cells = [
                key,
                fmt(row["T10"]),
                fmt(row["T50"]),
                fmt(row["start"]),
                fmt(row["end"]),
                *leads,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- memorisation hook


def memorization_partition(
    out_dir: str | Path,
    res: dict[str, Any],
    *,
    module: Any,
    datamodule: Any,
    cfg: Any = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    walk: bool = True,
    curvature: bool = True,
    plot_cells: bool = True,
    **_: Any,
) -> tuple[list[str], dict[str, Any]]:
    """Partition scores for the memorisation report (:mod:`experiments.analysis.memorization`).

    Adds :data:`PARTITION_SCORES` to ``res["scores"]`` (so they join the ratio and baselines
    in the main table), writes ``partition.json`` (statistics and the score rows),
    ``partition_scores.png`` (scores against the estimate) and, for 2-D inputs,
    ``partition_cells.png``; returns the report lines and ``partition/...`` metrics.
    """
    from experiments.analysis.memorization import _collect

    out_dir = Path(out_dir)
    x, y, index = _collect(datamodule.score_dataloader())
    if not torch.equal(index, torch.arange(len(y))):
        raise MagtorchError("the score loader must yield every training index 0..n-1 once")
    model = module.model
    x = x.reshape(len(y), -1).to(next(model.parameters()).dtype)
    stats, scores, summary = partition_scores(model, x, y, walk=walk, curvature=curvature)
    res["scores"].update(scores)
    mem, flipped = res["mem"], res["flipped"]
    rows = score_rows(res["scores"], mem, flipped, n_bootstrap, seed)  # ratio, baselines, ours
    shown = {"ratio", *scores}
    figures = [_scatter(out_dir / "partition_scores.png", scores, mem, flipped, list(scores)).name]
    if x.shape[1] == 2 and plot_cells:
        figures.append(
            plot_cells_2d(model, x, y, out_dir / "partition_cells.png", flipped=flipped).name
        )
    by_flip = {}
    if flipped.any():
        for name, s in scores.items():
            by_flip[name] = (float(np.mean(s[flipped])), float(np.mean(s[~flipped])))
    setting = _setting(cfg, x)
    (out_dir / "partition.json").write_text(
        json.dumps(
            {
                "setting": setting,
                "stats": stats,
                "rows": [_json_row(r) for r in rows],
                "flipped_vs_clean_means": by_flip,
            },
            indent=1,
        )
    )
    lines = [
        "## Partition geometry beside the ratio (issue 7)",
        "",
        f"Setting: {setting}. Cells of the trained network's input space "
        "(`magtorch.partition.partition_summary`, all training points, code adjacency): ",
        "",
        stats_markdown({"value": stats}),
        "",
        _reading(stats),
        "",
        "Per-sample partition scores (higher = more memorised): `boundary_near` = minus the "
        "distance to the cell boundary; `cells_crossed` = boundaries crossed on the segment to "
        "the nearest training neighbour; `cell_disagreement` = fraction of the other points in "
        "the cell with another label (0 when alone). They appear in the main table above; "
        "against the ratio:",
        "",
        "| score | Spearman rho (all) | Spearman rho (clean only) | AUROC flipped |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r["score"] not in shown:
            continue
        lines.append(
            f"| {r['score']} | {_ci(r['rho_all'], r['rho_all_ci'])} | "
            f"{_ci(r['rho_clean'], r['rho_clean_ci'])} | {_ci(r['auroc'], r['auroc_ci'])} |"
        )
    if by_flip:
        lines += [
            "",
            "Mean score, flipped vs clean points: "
            + "; ".join(f"`{k}` {a:.4g} vs {b:.4g}" for k, (a, b) in by_flip.items())
            + ".",
        ]
    lines += ["", *[f"![{f}]({f})" for f in figures], ""]
    metrics: dict[str, Any] = {f"partition/{k}": v for k, v in stats.items()}
    for r in rows:
        if r["score"] in scores:
            metrics[f"memorization/spearman/{r['score']}"] = r["rho_all"]
            metrics[f"memorization/spearman_clean/{r['score']}"] = r["rho_clean"]
            metrics[f"memorization/auroc/{r['score']}"] = r["auroc"]
    return lines, metrics


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def _setting(cfg: Any, x: Tensor) -> str:
    hidden = "?"
    data = "?"
    try:
        hidden = "-".join(str(int(h)) for h in cfg.model.hidden)
        data = str(cfg.data.get("name") or str(cfg.data._target_).rsplit(".", 1)[-1])
    except Exception:  # noqa: BLE001 - a label only
        pass
    return f"{data}, input dim {x.shape[1]}, MLP {x.shape[1]}-{hidden}"


# ---------------------------------------------------------------------- combined report


def _fit_note(folder: Path) -> str:
    """Train/validation accuracy and the mean memorisation estimate of a run, if saved."""
    parts = []
    metrics = folder / "metrics.json"
    if metrics.exists():
        m = json.loads(metrics.read_text())
        if "train/acc" in m and "val/acc" in m:
            parts.append(
                f"train/val accuracy {float(m['train/acc']):.3f}/{float(m['val/acc']):.3f}"
            )
    scores = folder / "memorization_scores.npz"
    if scores.exists():
        z = np.load(scores)
        mem, flipped = z["mem"], z["flipped"].astype(bool)
        if flipped.any():
            parts.append(
                f"mean memorisation estimate flipped {np.nanmean(mem[flipped]):.3f}, clean "
                f"{np.nanmean(mem[~flipped]):.3f}"
            )
    return f" ({'; '.join(parts)})" if parts else ""


def aggregate(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """One report over runs that wrote ``partition.json`` (``sweep_dir/*/partition.json``):
    statistics side by side, and each score's Spearman/AUROC per setting.

    Returns the path of the written ``partition_report.md`` (in ``out``, default
    ``sweep_dir``).
    """
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir
    runs = {}
    for path in sorted(sweep_dir.glob("*/partition.json")):
        data = json.loads(path.read_text())
        data["folder"] = path.parent
        label = data["setting"]
        if label in runs:
            label = f"{label} ({path.parent.name})"
        runs[label] = data
    if not runs:
        raise MagtorchError(f"no */partition.json under {sweep_dir}")
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Partition geometry beside the potential ratio: where it carries information",
        "",
        "## Statistics of the data-containing cells",
        "",
        stats_markdown({label: data["stats"] for label, data in runs.items()}),
        "",
    ]
    for label, data in runs.items():
        lines.append(f"- {label}: {_reading(data['stats'])}{_fit_note(data['folder'])}")
    lines += ["", "## Scores against the memorisation estimate and the flipped labels", ""]
    lines += [
        "| setting | score | Spearman rho (all) | Spearman rho (clean only) | AUROC flipped |",
        "|---|---|---|---|---|",
    ]
    for label, data in runs.items():
        for r in data["rows"]:
            lines.append(
                f"| {label} | {r['score']} | {_ci(r['rho_all'], tuple(r['rho_all_ci']))} | "
                f"{_ci(r['rho_clean'], tuple(r['rho_clean_ci']))} | "
                f"{_ci(r['auroc'], tuple(r['auroc_ci']))} |"
            )
    lines.append("")
    path = out / "partition_report.md"
    path.write_text("\n".join(lines))
    return path
