"""Shared report helpers and the default report of ``experiments/train.py``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = [
    "fmt",
    "markdown_table",
    "plot_history",
    "write_default_report",
]


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a Markdown table: ``digits`` significant digits, ints as ints.

    Example:
        >>> fmt(0.123456), fmt(3), fmt(float("nan")), fmt("x")
        ('0.1235', '3', 'nan', 'x')
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (cells through :func:`fmt`).

    Example:
        >>> print(markdown_table(["a", "b"], [[1, 0.5]]))
        | a | b |
        |---|---|
        | 1 | 0.5 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_history(history: Sequence[dict[str, float]], path: Path) -> Path | None:
    """Loss and accuracy per epoch (train and validation) in one PNG; ``None`` if empty."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = [h["epoch"] for h in history]
    for ax, what in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            key = f"{split}/{what}"
            values = [h.get(key, float("nan")) for h in history]
            ax.plot(epochs, values, marker=".", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def config_block(cfg: DictConfig) -> str:
    """The resolved config as a fenced YAML block."""
    return "```yaml\n" + OmegaConf.to_yaml(cfg, resolve=True) + "```"


def write_default_report(
    out_dir: Path, *, cfg: DictConfig, module: Any, metrics: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """``report.md``: the final metrics, learning curves (``curves.png``) and the config."""
    out_dir = Path(out_dir)
    lines = [f"# {cfg.task_name}", "", "## Metrics", ""]
    lines.append(markdown_table(["metric", "value"], sorted(metrics.items())))
    if plot_history(getattr(module, "history", []), out_dir / "curves.png"):
        lines += ["", "## Learning curves", "", "![learning curves](curves.png)"]
    lines += ["", "## Config", "", config_block(cfg), ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    return {}
