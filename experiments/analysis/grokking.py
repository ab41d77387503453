r"""When do train accuracy, test accuracy and the potential ratio change during grokking?

**Change-point rule: the sustained q-crossing epoch.** For a series :math:`s(e)` recorded at
epochs :math:`e_0 < e_1 < \dots < e_K`, measured from a reference epoch :math:`e_r` (the first
recorded epoch unless given) to the end,

.. math::

    \ell_q = s(e_r) + q\,\big(s(e_K) - s(e_r)\big),\qquad
    T_q = \min\{e_k \ge e_r : s(e_j) \text{ is on the far side of } \ell_q
    \text{ for } j = k..k+m-1\},

"far side" meaning :math:`\ge \ell_q` when the series ends higher than it starts and
:math:`\le \ell_q` otherwise, and :math:`m` = ``persist`` consecutive recorded values (so one
noisy value does not count). :math:`T_{0.1}` is the *onset* of the change, :math:`T_{0.5}` its
*midpoint*. :math:`T_q` is ``None`` when the series does not move (``|s(e_K) - s(e_r)|`` below
``min_change``).

**Did the ratio move before test accuracy?** Grokking is a second change after memorisation,
so the ratio is judged on the *post-memorisation window*: reference epoch :math:`e_r` = the
train-accuracy midpoint :math:`T_{0.5}^{\text{train}}` (if memorisation is not over by then,
the first recorded epoch after it). The ratio's onset in that window,
:math:`T_{0.1}^{\text{ratio}}`, is compared with the test-accuracy onset
:math:`T_{0.1}^{\text{test}}`; the lead is :math:`T_{0.1}^{\text{test}} - T_{0.1}^{\text{ratio}}`
epochs (positive: the ratio moved first). The same is reported for the midpoints.

Example:
    >>> from experiments.analysis.grokking import change_epoch
    >>> change_epoch([0, 1, 2, 3, 4, 5], [0.0, 0.0, 0.05, 0.6, 1.0, 1.0], q=0.5)
    3
    >>> change_epoch([0, 1, 2, 3], [1.0, 0.2, 0.9, 0.1], q=0.5, persist=2)  # 0.2 is a blip
    3
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback

from magtorch.errors import MagtorchError

__all__ = [
    "RULE_NAME",
    "PotentialHistory",
    "aggregate",
    "change_epoch",
    "grokking_summary",
    "plot_grokking",
    "report",
    "summary_markdown",
]

RULE_NAME = "sustained q-crossing epoch T_q"


def _series(epochs: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(epochs, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if e.ndim != 1 or e.shape != v.shape or len(e) == 0:
        raise MagtorchError(
            f"epochs and values must be 1-d of the same non-zero length; got {e.shape}, {v.shape}"
        )
    if np.any(np.diff(e) <= 0):
        raise MagtorchError("epochs must be strictly increasing")
    if not np.all(np.isfinite(v)):
        raise MagtorchError("values must be finite")
    return e, v


def change_epoch(
    epochs: Sequence[float],
    values: Sequence[float],
    q: float = 0.1,
    *,
    start: float | None = None,
    persist: int = 1,
    min_change: float = 0.0,
) -> int | None:
    """The sustained q-crossing epoch :math:`T_q` (module docstring), or ``None``.

    Args:
        epochs: recorded epochs, strictly increasing.
        values: the series at those epochs.
        q: fraction of the total change, in ``(0, 1]``.
        start: reference epoch :math:`e_r` (the first recorded epoch ``>= start``); default
            the first epoch.
        persist: consecutive recorded values that must lie beyond the level (>= 1; fewer
            remaining values at the end of the series are enough if all of them do).
        min_change: a total change ``|s(e_K) - s(e_r)|`` at or below this means "no change".
    """
    e, v = _series(epochs, values)
    if not 0 < q <= 1:
        raise MagtorchError(f"q must be in (0, 1]; got q={q!r}")
    if isinstance(persist, bool) or not isinstance(persist, int) or persist < 1:
        raise MagtorchError(f"persist must be an int >= 1; got persist={persist!r}")
    first = 0 if start is None else int(np.searchsorted(e, start, side="left"))
    if first >= len(e):
        return None
    e, v = e[first:], v[first:]
    total = v[-1] - v[0]
    if abs(total) <= min_change:
        return None
    level = v[0] + q * total
    beyond = v >= level if total > 0 else v <= level
    for k in range(len(v)):
        if beyond[k : k + persist].all():
            return int(e[k])
    return None  # pragma: no cover - the last value is always beyond the level


def grokking_summary(
    epochs: Sequence[float],
    train_acc: Sequence[float],
    test_acc: Sequence[float],
    ratio_epochs: Sequence[float],
    ratio: Sequence[float],
    *,
    persist: int = 2,
) -> dict[str, Any]:
    """Onsets and midpoints of train/test accuracy and the ratio, and the ratio's lead.

    Returns a JSON-friendly dict: ``train``/``test``/``ratio_full``/``ratio_post`` each with
    ``T10``, ``T50``, ``start`` and ``end`` values; ``window_start`` (the post-memorisation
    reference epoch); ``lead_onset`` and ``lead_mid`` (test minus ratio epochs; ``None`` if
    either is missing); ``ratio_first`` (a bool, or ``None``).
    """
    out: dict[str, Any] = {"rule": RULE_NAME, "persist": persist}

    def describe(ep: Any, val: Any, start: float | None, min_change: float) -> dict[str, Any]:
        e, v = _series(ep, val)
        i = 0 if start is None else int(np.searchsorted(e, start))
        return {
            "T10": change_epoch(e, v, 0.1, start=start, persist=persist, min_change=min_change),
            "T50": change_epoch(e, v, 0.5, start=start, persist=persist, min_change=min_change),
            "start": float(v[min(i, len(v) - 1)]),
            "end": float(v[-1]),
        }

    out["train"] = describe(epochs, train_acc, None, 0.05)
    out["test"] = describe(epochs, test_acc, None, 0.05)
    out["ratio_full"] = describe(ratio_epochs, ratio, None, 1e-9)
    window = out["train"]["T50"]
    out["window_start"] = window
    out["ratio_post"] = (
        describe(ratio_epochs, ratio, window, 1e-9) if window is not None else out["ratio_full"]
    )
    for key, q in (("lead_onset", "T10"), ("lead_mid", "T50")):
        r, t = out["ratio_post"][q], out["test"][q]
        out[key] = None if r is None or t is None else int(t - r)
    lead = out["lead_onset"]
    out["ratio_first"] = None if lead is None else bool(lead > 0)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "nan"
    return str(value)


def summary_markdown(summary: dict[str, Any], title: str = "") -> str:
    """A Markdown table of a :func:`grokking_summary` and a one-line reading."""
    lines = [
        f"| series{(' (' + title + ')') if title else ''} | T10 | T50 | start | end |",
        "|---|---|---|---|---|",
    ]
    names = {
        "train": "train accuracy",
        "test": "test accuracy",
        "ratio_full": "ratio (whole run)",
        "ratio_post": f"ratio (from epoch {_fmt(summary['window_start'])})",
    }
    for key, label in names.items():
        s = summary[key]
        lines.append(
            f"| {label} | {_fmt(s['T10'])} | {_fmt(s['T50'])} | {_fmt(s['start'])} | "
            f"{_fmt(s['end'])} |"
        )
    lead = summary["lead_onset"]
    if lead is None:
        verdict = "not decidable (one of the series does not change)"
    elif lead > 0:
        verdict = f"yes: the ratio's onset precedes test accuracy's by {lead} epochs"
    elif lead == 0:
        verdict = "no: same epoch (within the scoring interval)"
    else:
        verdict = f"no: the ratio's onset comes {-lead} epochs after test accuracy's"
    lines += ["", f"Ratio moves before test accuracy ({RULE_NAME}, onset q=0.1): {verdict}."]
    return "\n".join(lines)


def plot_grokking(
    runs: dict[str, dict[str, Any]], path: str | Path, *, summaries: dict[str, Any] | None = None
) -> Path:
    """Accuracy (left axis) and mean potential ratio (right axis) against epoch, one panel per run.

    ``runs[name]`` holds ``epochs``, ``train_acc``, ``test_acc``, ``ratio_epochs``, ``ratio``.
    Onsets from ``summaries[name]`` are marked with vertical lines.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], runs.items(), strict=True):
        ax.plot(r["epochs"], r["train_acc"], label="train acc", color="tab:blue")
        ax.plot(r["epochs"], r["test_acc"], label="test acc", color="tab:orange")
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlabel("epoch (full-batch step)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax2 = ax.twinx()
        ax2.plot(r["ratio_epochs"], r["ratio"], "o-", ms=2, color="tab:green", label="mean ratio")
        ax2.set_ylabel("mean potential ratio")
        if summaries and name in summaries:
            s = summaries[name]
            for key, color in (("test", "tab:orange"), ("ratio_post", "tab:green")):
                if s[key]["T10"] is not None:
                    ax.axvline(s[key]["T10"], color=color, ls="--", lw=1)
        ax.set_title(name)
        handles = ax.get_legend_handles_labels()
        handles2 = ax2.get_legend_handles_labels()
        ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], loc="center left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class PotentialHistory(Callback):
    """Keep the aggregated potential ratio of every scoring of a
    :class:`~magtorch.callbacks.MagnitudePotentialCallback` on the same trainer.

    After each scoring (checked at the start of the next training epoch and at the end of
    training, so the order of the callbacks does not matter) one row is appended to
    :attr:`rows`: ``epoch``, ``t``, ``ratio_mean``, ``ratio_median``, ``frac_below_1`` (over
    the scored points; the first scale when there are several).
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def _record(self, trainer: pl.Trainer) -> None:
        from magtorch.callbacks import MagnitudePotentialCallback

        for cb in trainer.callbacks:
            if isinstance(cb, MagnitudePotentialCallback) and cb.scores is not None:
                epoch = int(cb.scores["epoch"])
                if self.rows and self.rows[-1]["epoch"] >= epoch:
                    return
                ratio = cb.scores["ratio"].double()
                t = cb.scores["t"].reshape(-1)
                if ratio.dim() == 2:
                    ratio = ratio[0]
                finite = ratio[ratio.isfinite()]
                self.rows.append(
                    {
                        "epoch": epoch,
                        "t": float(t[0]),
                        "ratio_mean": float(finite.mean()),
                        "ratio_median": float(finite.median()),
                        "frac_below_1": float((finite < 1).double().mean()),
                    }
                )
                return

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer)


def _run_series(module: Any, trainer: pl.Trainer) -> dict[str, list[float]]:
    rows = [h for h in module.history if "train/acc" in h and "val/acc" in h]
    hist = next((cb for cb in trainer.callbacks if isinstance(cb, PotentialHistory)), None)
    if not rows:
        raise MagtorchError("the module recorded no epoch with both train/acc and val/acc")
    if hist is None or not hist.rows:
        raise MagtorchError(
            "the grokking report needs a PotentialHistory callback and at least one scoring "
            "of MagnitudePotentialCallback (callbacks=grokking)"
        )
    out = {
        "epochs": [int(h["epoch"]) for h in rows],
        "train_acc": [float(h["train/acc"]) for h in rows],
        "test_acc": [float(h["val/acc"]) for h in rows],
        "train_loss": [float(h["train/loss"]) for h in rows],
        "test_loss": [float(h["val/loss"]) for h in rows],
        "ratio_epochs": [r["epoch"] for r in hist.rows],
        "ratio": [r["ratio_mean"] for r in hist.rows],
        "ratio_median": [r["ratio_median"] for r in hist.rows],
        "frac_below_1": [r["frac_below_1"] for r in hist.rows],
        "t": [r["t"] for r in hist.rows],
    }
    out.update(_partition_series(trainer))
    return out


def _partition_series(trainer: pl.Trainer) -> dict[str, Any]:
    """The :class:`~magtorch.callbacks.PartitionCallback` history (issue 7), if one ran."""
    from magtorch.callbacks import PartitionCallback

    cb = next((c for c in trainer.callbacks if isinstance(c, PartitionCallback)), None)
    if cb is None or not cb.history:
        return {}
    from experiments.analysis.partition import SERIES_KEYS

    keys = [k for k in SERIES_KEYS if k in cb.history[0]]
    return {
        "partition_epochs": [int(h["epoch"]) for h in cb.history],
        "partition": {k: [float(h.get(k, math.nan)) for h in cb.history] for k in keys},
    }


def _partition_section(
    series: dict[str, Any], summary: dict[str, Any], out_dir: Path, persist: int
) -> tuple[list[str], dict[str, Any]]:
    """Report lines and metrics for the partition statistics (empty without them)."""
    if not series.get("partition"):
        return [], {}
    from experiments.analysis.partition import plot_series, series_changes, series_markdown

    epochs = series["partition_epochs"]
    changes = series_changes(epochs, series["partition"], persist=persist)
    post = summary["window_start"]
    changes_post = (
        series_changes(epochs, series["partition"], persist=persist, start=post)
        if post is not None
        else changes
    )
    test_t10, ratio_t10 = summary["test"]["T10"], summary["ratio_post"]["T10"]
    reference = {"test acc T10": test_t10, "ratio T10": ratio_t10}
    plot_series(
        epochs,
        series["partition"],
        out_dir / "partition.png",
        accuracy=series,
        marks={"test acc T10": test_t10, "ratio T10": ratio_t10},
    )
    last = {k: v[-1] for k, v in series["partition"].items()}
    moved = [k for k, r in changes_post.items() if r["T10"] is not None]
    first = [
        k
        for k in moved
        if test_t10 is not None
        and changes_post[k]["T10"] is not None
        and changes_post[k]["T10"] < test_t10
    ]
    single = last.get("frac_singleton", math.nan)
    lines = [
        "## Partition geometry (issue 7)",
        "",
        f"`PartitionCallback` in the space of the concatenated token embeddings, every "
        f"{epochs[1] - epochs[0] if len(epochs) > 1 else '?'} epochs on a fixed subset of the "
        "training points; change points by the same rule (relative threshold: a total move "
        "below 2% of the series' largest value counts as no change).",
        "",
        "Whole run:",
        "",
        series_markdown(changes, reference),
        "",
    ]
    if post is not None:
        lines += [
            f"After memorisation (from epoch {post}):",
            "",
            series_markdown(changes_post, reference),
            "",
        ]
    lines += [
        f"At the last scoring {100 * single:.1f}% of the scored points are alone in their cell"
        + (
            ": cell counts, purity and the adjacency graph carry no information here; the "
            "distances (boundary distance, cells crossed) are what varies."
            if math.isfinite(single) and single >= 0.9
            else "."
        ),
        f"Statistics that move after memorisation: {', '.join(moved) or 'none'}; of these, "
        f"onset before test accuracy's (T10 = {test_t10}): {', '.join(first) or 'none'}.",
        "",
        "![partition statistics over training](partition.png)",
        "",
    ]
    metrics: dict[str, Any] = {}
    for k, r in changes_post.items():
        metrics[f"grokking/partition/{k}_T10"] = -1 if r["T10"] is None else r["T10"]
        metrics[f"grokking/partition/{k}_end"] = r.get("end", math.nan)
    return lines, metrics


def _label(cfg: Any) -> str:
    try:
        return f"weight decay {float(cfg.module.weight_decay):g}"
    except Exception:  # noqa: BLE001 - a label only
        return "run"


def report(
    out_dir: str | Path,
    *,
    cfg: Any,
    trainer: pl.Trainer,
    module: Any,
    metrics: dict[str, Any],
    **_: Any,
) -> dict[str, Any]:
    """The grokking report of one run: ``grokking.json``, ``grokking.png`` and ``report.md``.

    Returns the change points as metrics (``grokking/test_T10`` ...; ``-1`` when undefined).
    """
    out_dir = Path(out_dir)
    hist = next((cb for cb in trainer.callbacks if isinstance(cb, PotentialHistory)), None)
    if hist is not None and not hist.rows:  # e.g. debug=fast: fewer epochs than every_n_epochs
        (out_dir / "report.md").write_text(
            "# Grokking\n\nNo potential scoring happened (fewer epochs than the callback's "
            "every_n_epochs); nothing to report.\n"
        )
        return {}
    series = _run_series(module, trainer)
    persist = int(cfg.get("params", {}).get("persist", 2)) if cfg is not None else 2
    summary = grokking_summary(
        series["epochs"],
        series["train_acc"],
        series["test_acc"],
        series["ratio_epochs"],
        series["ratio"],
        persist=persist,
    )
    label = _label(cfg)
    (out_dir / "grokking.json").write_text(
        json.dumps({"label": label, "series": series, "summary": summary}, indent=1)
    )
    plot_grokking({label: series}, out_dir / "grokking.png", summaries={label: summary})
    lines = [
        f"# Grokking ({label})",
        "",
        summary_markdown(summary, label),
        "",
        "![accuracy and potential ratio](grokking.png)",
        "",
        f"Final train accuracy {series['train_acc'][-1]:.4f}, test accuracy "
        f"{series['test_acc'][-1]:.4f}; mean ratio {series['ratio'][-1]:.4f} "
        f"(scale t = {series['t'][-1]:.4g}).",
        "",
    ]
    part_lines, part_metrics = _partition_section(series, summary, out_dir, persist)
    lines += part_lines
    (out_dir / "report.md").write_text("\n".join(lines))
    out: dict[str, Any] = dict(part_metrics)
    for key in ("train", "test", "ratio_post"):
        for q in ("T10", "T50"):
            v = summary[key][q]
            out[f"grokking/{key}_{q}"] = -1 if v is None else v
    out["grokking/lead_onset"] = summary["lead_onset"] if summary["lead_onset"] is not None else 0
    return out


def aggregate(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Combine the runs of a sweep (every ``*/grokking.json`` under ``sweep_dir``) into one
    ``report.md`` + ``grokking.png`` in ``out`` (default ``sweep_dir``)."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir
    runs, summaries = {}, {}
    for path in sorted(sweep_dir.glob("*/grokking.json")):
        data = json.loads(path.read_text())
        label = data["label"]
        runs[label], summaries[label] = data["series"], data["summary"]
    if not runs:
        raise MagtorchError(f"no */grokking.json under {sweep_dir}")
    out.mkdir(parents=True, exist_ok=True)
    plot_grokking(runs, out / "grokking.png", summaries=summaries)
    lines = ["# Grokking: all runs", ""]
    for label, summary in summaries.items():
        s = runs[label]
        lines += [
            f"## {label}",
            "",
            summary_markdown(summary, label),
            "",
            f"Final train/test accuracy {s['train_acc'][-1]:.4f} / {s['test_acc'][-1]:.4f}.",
            "",
        ]
        if s.get("partition"):
            from experiments.analysis.partition import series_changes, series_markdown

            changes = series_changes(
                s["partition_epochs"],
                s["partition"],
                persist=int(summary.get("persist", 2)),
                start=summary["window_start"],
            )
            ref = {"test acc T10": summary["test"]["T10"]}
            lines += ["Partition statistics after memorisation:", "", series_markdown(changes, ref)]
            lines.append("")
    lines += ["![accuracy and potential ratio](grokking.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
