r"""Weight-magnitude regularisation sweep: lambda against losses, gap and weight magnitude.

One record per trained network (Andreeva et al., AAAI 2025, §5.2, Table 2): the penalty
strength :math:`\lambda`, the final train loss, test loss, generalisation gap
(test loss - train loss, both the task loss without the penalty) and the magnitude of the
network's weights. :func:`trend` says whether magnitude and gap fall as :math:`\lambda` grows
(Kendall's tau against :math:`\lambda` and whether the sequence is monotone), the paper's
observation.

Example:
    >>> from experiments.analysis.weight_reg import trend
    >>> rows = [dict(lam=l, train_loss=0.1 * l, test_loss=0.5, gap=0.5 - 0.1 * l,
    ...              magnitude=2.0 - l) for l in (0.0, 0.5, 1.0)]
    >>> t = trend(rows)
    >>> t["magnitude"]["tau"], t["magnitude"]["monotone_decreasing"], t["gap"]["tau"]
    (-1.0, True, -1.0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from experiments.analysis.trajectory import kendall_tau
from magtorch.errors import MagtorchError

__all__ = [
    "COLUMNS",
    "PAPER_TABLE2",
    "aggregate",
    "evaluate",
    "plot_weight_reg",
    "report",
    "table_markdown",
    "trend",
]

COLUMNS = ("lam", "train_loss", "test_loss", "gap", "magnitude")

#: Table 2 of the AAAI 2025 paper (MNIST, two hidden layers, 2000 epochs).
PAPER_TABLE2 = [
    {"lam": 0.0, "train_loss": 0.0021, "test_loss": 0.0757, "gap": 0.0736, "magnitude": 1.5810},
    {"lam": 0.1, "train_loss": 0.0041, "test_loss": 0.0641, "gap": 0.0600, "magnitude": 1.1567},
    {"lam": 0.2, "train_loss": 0.0061, "test_loss": 0.0607, "gap": 0.0546, "magnitude": 1.1293},
    {"lam": 0.5, "train_loss": 0.0103, "test_loss": 0.0602, "gap": 0.0499, "magnitude": 1.0842},
    {"lam": 1.0, "train_loss": 0.0167, "test_loss": 0.0631, "gap": 0.0464, "magnitude": 1.0668},
]


def _sorted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(rows) < 2:
        raise MagtorchError(f"need at least 2 runs (values of lambda); got {len(rows)}")
    for r in rows:
        missing = [c for c in COLUMNS if c not in r]
        if missing:
            raise MagtorchError(f"every row needs {COLUMNS}; a row lacks {missing}")
    return sorted(rows, key=lambda r: float(r["lam"]))


def trend(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Kendall's tau of each column against lambda, and monotonicity flags."""
    rows = _sorted(rows)
    lam = [float(r["lam"]) for r in rows]
    out = {}
    for col in COLUMNS[1:]:
        v = np.array([float(r[col]) for r in rows])
        d = np.diff(v)
        out[col] = {
            "tau": kendall_tau(lam, v),
            "monotone_decreasing": bool(np.all(d < 0)),
            "monotone_increasing": bool(np.all(d > 0)),
            "first": float(v[0]),
            "last": float(v[-1]),
        }
    return out


def _fmt(v: Any) -> str:
    v = float(v)
    return f"{v:.4g}" if math.isfinite(v) else "nan"


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The Table-2-style Markdown table, sorted by lambda."""
    lines = ["| λ | train loss | test loss | gap | weight magnitude |", "|---|---|---|---|---|"]
    for r in _sorted(rows):
        lines.append("| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def plot_weight_reg(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Four panels against lambda: train/test loss, gap, weight magnitude (ours vs the paper)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = _sorted(rows)
    lam = [float(r["lam"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(lam, [r["train_loss"] for r in rows], "o-", label="train loss")
    axes[0].plot(lam, [r["test_loss"] for r in rows], "s-", label="test loss")
    axes[1].plot(lam, [r["gap"] for r in rows], "o-", label="gap (ours)")
    axes[2].plot(lam, [r["magnitude"] for r in rows], "o-", label="weight magnitude (ours)")
    paper_lam = [r["lam"] for r in PAPER_TABLE2]
    axes[1].plot(paper_lam, [r["gap"] for r in PAPER_TABLE2], "x--", label="gap (paper, MNIST)")
    axes[2].plot(
        paper_lam, [r["magnitude"] for r in PAPER_TABLE2], "x--", label="magnitude (paper)"
    )
    for ax, title in zip(axes, ("losses", "generalisation gap", "weight magnitude"), strict=True):
        ax.set_xlabel("λ")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) over ``(x, y, ...)`` batches."""
    was = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for batch in loader:
            x, y = batch[0], batch[1]
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            count += len(y)
    finally:
        model.train(was)
    return loss_sum / count, correct / count


def report(
    out_dir: str | Path,
    *,
    cfg: Any,
    module: Any,
    datamodule: Any,
    metrics: dict[str, Any],
    **_: Any,
) -> dict[str, Any]:
    """One run: final train/test cross-entropy (eval mode, whole sets, without the penalty),
    gap, accuracies and the weight magnitude; writes ``weight_reg.json`` and ``report.md``.

    The weight magnitude is :func:`magtorch.network.weight_magnitude` with the scale
    ``cfg.params.magnitude_t`` (default 1.0; the regulariser's ``t`` in the experiment) in
    exact scalar mode over all weight matrices (biases excluded).
    """
    from magtorch.network import weight_magnitude

    out_dir = Path(out_dir)
    params = cfg.get("params") or {}
    t = float(params.get("magnitude_t", 1.0))
    train_loss, train_acc = evaluate(module.model, datamodule.score_dataloader())
    test_loss, test_acc = evaluate(module.model, datamodule.val_dataloader())
    with torch.no_grad():
        mag = float(weight_magnitude(module.model, t, mode="scalar"))
    row = {
        "lam": float(cfg.module.regularizer_weight) if cfg.get("regularizer") else 0.0,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "gap": test_loss - train_loss,
        "magnitude": mag,
        "train_acc": train_acc,
        "test_acc": test_acc,
        "t": t,
    }
    (out_dir / "weight_reg.json").write_text(json.dumps(row, indent=1))
    lines = [
        f"# Weight-magnitude regularisation, λ = {row['lam']:g}",
        "",
        table_markdown([row, row]).rsplit("\n", 1)[0],
        "",
        f"Train / test accuracy {train_acc:.4f} / {test_acc:.4f}; weight magnitude at t = {t:g}.",
        "",
    ]
    (out_dir / "report.md").write_text("\n".join(lines))
    return {f"weight_reg/{k}": v for k, v in row.items()}


def aggregate(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Table, trend and plot over every ``*/weight_reg.json`` under ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir
    rows = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/weight_reg.json"))]
    if len(rows) < 2:
        raise MagtorchError(f"need at least 2 */weight_reg.json under {sweep_dir}; got {len(rows)}")
    out.mkdir(parents=True, exist_ok=True)
    tr = trend(rows)
    plot_weight_reg(rows, out / "weight_reg.png")
    lines = ["# Weight-magnitude regularisation sweep", "", table_markdown(rows), ""]
    lines += ["| column | Kendall tau vs λ | falls monotonically | rises monotonically |"]
    lines += ["|---|---|---|---|"]
    for col, v in tr.items():
        lines.append(
            f"| {col} | {v['tau']:.3f} | {v['monotone_decreasing']} | {v['monotone_increasing']} |"
        )

    def says(col: str) -> str:
        v = tr[col]
        mono = "falls monotonically" if v["monotone_decreasing"] else "does not fall monotonically"
        return f"{col} {mono} (Kendall tau vs λ {v['tau']:.2f})"

    lines += [
        "",
        "Paper (AAAI 2025, Table 2): magnitude and gap fall monotonically as λ grows. Here: "
        + "; ".join(says(c) for c in ("magnitude", "gap"))
        + ".",
        "",
        "![weight_reg](weight_reg.png)",
        "",
    ]
    (out / "weight_reg.json").write_text(json.dumps({"rows": rows, "trend": tr}, indent=1))
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
