r"""Neural collapse metric NC1 and a collapse-suppression penalty.

**NC1** (Papyan, Han & Donoho, PNAS 2020, "Prevalence of neural collapse during the terminal
phase of deep learning training"). For penultimate features :math:`h_i \in \mathbb{R}^d` with
labels :math:`y_i \in \{1..C\}`, class means :math:`\mu_c`, global mean :math:`\mu_G` (the mean
of the class means, as in the paper's balanced setting) and :math:`N` points,

.. math::

    \Sigma_W = \frac1N \sum_i (h_i - \mu_{y_i})(h_i - \mu_{y_i})^\top,\qquad
    \Sigma_B = \frac1C \sum_c (\mu_c - \mu_G)(\mu_c - \mu_G)^\top,\qquad
    \mathrm{NC1} = \frac1C \operatorname{Tr}\!\left(\Sigma_W \Sigma_B^{\dagger}\right),

with :math:`\dagger` the Moore-Penrose pseudo-inverse. NC1 -> 0 as the features of each class
collapse to their mean (relative to the spread of the means).

**Within-class spread floor** (the collapse-suppression penalty used by the
``neural_collapse`` experiment; our choice, not from the paper). The *within-class spread*
is the share of the feature variance that lies inside the classes,

.. math::

    s = \frac{\operatorname{Tr}\Sigma_W}{\operatorname{Tr}\Sigma_T} \in [0, 1],\qquad
    \Sigma_T = \frac1N \sum_i (h_i - \bar h)(h_i - \bar h)^\top,

(:math:`\bar h` the mean of all features, so :math:`\Sigma_T = \Sigma_W + \Sigma_{B,N}` with the
class-size-weighted between-class covariance), and the penalty is
:math:`\operatorname{relu}(s_0 - s)^2` for a floor :math:`s_0`: zero while at least a fraction
:math:`s_0` of the variance is within classes, growing quadratically as features collapse
below it. It is differentiable in the features and computed per batch.

Example:
    >>> import torch
    >>> from experiments.analysis.neural_collapse import nc1, within_class_spread
    >>> h = torch.tensor([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -0.1]])
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> round(float(nc1(h, y)), 6)  # Sigma_W = diag(0, 0.01) is orthogonal to Sigma_B
    0.0
    >>> round(float(within_class_spread(h, y)), 6)  # 0.01 / (1 + 0.01)
    0.009901
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from magtorch.errors import MagtorchError

__all__ = [
    "NC1_NAME",
    "CollapseSuppression",
    "NeuralCollapseHistory",
    "WithinClassSpreadFloor",
    "aggregate",
    "class_means",
    "nc1",
    "report",
    "within_class_spread",
]

NC1_NAME = "NC1 = Tr(Sigma_W Sigma_B^+)/C (Papyan et al. 2020)"


def _check(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(features, Tensor) or features.dim() != 2:
        raise MagtorchError(
            f"features must be a 2-d tensor (N, d); got {getattr(features, 'shape', features)!r}"
        )
    if not isinstance(labels, Tensor) or labels.shape != (features.shape[0],):
        raise MagtorchError(
            f"labels must be a 1-d tensor of length N={features.shape[0]}; "
            f"got {getattr(labels, 'shape', labels)!r}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise MagtorchError(f"labels must hold integer classes; got dtype {labels.dtype}")
    classes, inverse = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise MagtorchError(f"labels must contain at least 2 classes; got {classes.tolist()}")
    return features, classes, inverse


def class_means(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Class means ``(C, d)`` (classes in increasing label order) and class sizes ``(C,)``."""
    features, classes, inverse = _check(features, labels)
    counts = torch.bincount(inverse, minlength=len(classes)).to(features.dtype)
    sums = torch.zeros(
        len(classes), features.shape[1], dtype=features.dtype, device=features.device
    )
    sums.index_add_(0, inverse, features)
    return sums / counts[:, None], counts


def nc1(features: Tensor, labels: Tensor) -> Tensor:
    r"""NC1 :math:`= \operatorname{Tr}(\Sigma_W \Sigma_B^\dagger)/C` (module docstring), float64.

    Args:
        features: ``(N, d)`` penultimate features.
        labels: ``(N,)`` integer classes (at least two distinct).

    Returns:
        A 0-d float64 tensor.
    """
    features, classes, inverse = _check(features, labels)
    h = features.detach().to(torch.float64)
    means, _ = class_means(h, labels)
    centred = h - means[inverse]
    sigma_w = centred.T @ centred / h.shape[0]
    between = means - means.mean(dim=0)
    sigma_b = between.T @ between / len(classes)
    return torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)) / len(classes)


def within_class_spread(features: Tensor, labels: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Share of the feature variance inside classes, :math:`\operatorname{Tr}\Sigma_W /
    \operatorname{Tr}\Sigma_T` in ``[0, 1]``; differentiable, in the features' dtype.

    Returns 0 when all features coincide (``Tr Sigma_T <= eps``).
    """
    features, _, inverse = _check(features, labels)
    means, _ = class_means(features, labels)
    within = ((features - means[inverse]) ** 2).sum() / features.shape[0]
    total = ((features - features.mean(dim=0)) ** 2).sum() / features.shape[0]
    return within / total.clamp_min(eps)


class WithinClassSpreadFloor(nn.Module):
    r"""Collapse-suppression penalty :math:`\operatorname{relu}(s_0 - s)^2` (module docstring).

    Args:
        floor: the floor :math:`s_0` in ``(0, 1)``.

    Shape:
        ``penalty(features (N, d), labels (N,))`` -> ``()``.

    Example:
        >>> import torch
        >>> pen = WithinClassSpreadFloor(floor=0.5)
        >>> h = torch.tensor([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -0.1]])
        >>> round(float(pen(h, torch.tensor([0, 0, 1, 1]))), 6)  # (0.5 - 0.009901)^2
        0.240197
    """

    def __init__(self, floor: float = 0.2) -> None:
        super().__init__()
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor < 1:
            raise MagtorchError(f"floor must be a number in (0, 1); got floor={floor!r}")
        self.floor = float(floor)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        return torch.relu(self.floor - within_class_spread(features, labels)) ** 2

    def extra_repr(self) -> str:
        return f"floor={self.floor}"


class CollapseSuppression(nn.Module):
    r"""The within-class spread floor as a regulariser of
    :class:`experiments.lit_module.LitClassifier` (``needs_batch = True``: it is called as
    ``reg(model, x, y)``): :math:`\operatorname{relu}(s_0 - s)^2` of the features
    ``model.get_submodule(layer)(x)`` of the training batch (the penultimate features for the
    models of ``experiments.models``, whose ``body`` is everything but the last layer).

    Example:
        >>> import torch
        >>> from experiments.models.mlp import MLP
        >>> reg = CollapseSuppression(floor=0.9)
        >>> net = MLP((4,), num_classes=2, hidden=[8])
        >>> float(reg(net, torch.randn(6, 4), torch.tensor([0, 1] * 3))) >= 0
        True
    """

    needs_batch = True

    def __init__(self, floor: float = 0.2, layer: str = "body") -> None:
        super().__init__()
        self.penalty = WithinClassSpreadFloor(floor)
        if not isinstance(layer, str) or not layer:
            raise MagtorchError(f"layer must be a submodule name; got layer={layer!r}")
        self.layer = layer

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        try:
            body = model.get_submodule(self.layer)
        except AttributeError as err:
            raise MagtorchError(
                f"layer={self.layer!r} is not a submodule of {type(model).__name__}"
            ) from err
        return self.penalty(body(x).flatten(1), y)


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores higher than a random negative (ties 1/2)."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


class NeuralCollapseHistory(Callback):
    """Record NC1 of a layer's features beside each scoring of the potential callback.

    After every scoring of a :class:`~magtorch.callbacks.MagnitudePotentialCallback` on the
    same trainer (checked at the start of the next training epoch and at the end of training,
    with the parameters that were scored), one row is appended to :attr:`rows`: ``epoch``,
    ``nc1`` (features of ``layer`` over the data module's ``score_dataloader()``, all training
    points), ``spread`` (:func:`within_class_spread`), ``ratio_mean``, ``ratio_median``,
    ``t``, and — when the data module has planted flipped labels (``flipped``) — ``auroc_flip``:
    the AUROC of ``-ratio`` for the flipped points among the scored ones (1 = every flipped
    point has a lower ratio than every clean one).

    Args:
        layer: submodule of the LightningModule whose output are the features
            (default ``"model.body"``: the penultimate layer of ``experiments.models``).
    """

    def __init__(self, layer: str = "model.body") -> None:
        super().__init__()
        self.layer = layer
        self.rows: list[dict[str, float]] = []

    @torch.no_grad()
    def _features(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> tuple[Tensor, Tensor]:
        module = pl_module.get_submodule(self.layer)
        captured: list[Tensor] = []
        handle = module.register_forward_hook(
            lambda _m, _i, out: captured.append(out.detach().flatten(1).cpu())
        )
        was_training = pl_module.training
        pl_module.eval()
        labels = []
        try:
            for batch in trainer.datamodule.score_dataloader():
                pl_module(batch[0].to(pl_module.device))
                labels.append(batch[1].cpu())
        finally:
            handle.remove()
            pl_module.train(was_training)
        return torch.cat(captured), torch.cat(labels)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from magtorch.callbacks import MagnitudePotentialCallback

        cb = next((c for c in trainer.callbacks if isinstance(c, MagnitudePotentialCallback)), None)
        if cb is None or cb.scores is None:
            return
        epoch = int(cb.scores["epoch"])
        if self.rows and self.rows[-1]["epoch"] >= epoch:
            return
        h, y = self._features(trainer, pl_module)
        ratio = cb.scores["ratio"].double()
        if ratio.dim() == 2:
            ratio = ratio[0]
        row = {
            "epoch": epoch,
            "nc1": float(nc1(h, y)),
            "spread": float(within_class_spread(h.double(), y)),
            "ratio_mean": float(ratio[ratio.isfinite()].mean()),
            "ratio_median": float(ratio[ratio.isfinite()].median()),
            "t": float(cb.scores["t"].reshape(-1)[0]),
        }
        flipped = getattr(trainer.datamodule, "flipped", None)
        if flipped is not None and bool(flipped.any()):
            mask = flipped[cb.scores["index"].long()].numpy().astype(bool)
            row["auroc_flip"] = _auroc(-ratio.numpy(), mask)
        self.rows.append(row)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module)


def _label(cfg: Any) -> str:
    reg = cfg.get("regularizer") if cfg is not None else None
    if reg is not None and "CollapseSuppression" in str(reg.get("_target_", "")):
        return f"collapse suppressed (floor {reg.floor}, weight {cfg.module.regularizer_weight})"
    return "plain"


def _pearson(a: list[float], b: list[float]) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def plot_runs(runs: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """NC1 (log scale), mean ratio and flipped-label AUROC against epoch, one line per run."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for label, data in runs.items():
        rows = data["rows"]
        ep = [r["epoch"] for r in rows]
        axes[0].semilogy(ep, [r["nc1"] for r in rows], "o-", ms=3, label=label)
        axes[1].plot(ep, [r["ratio_mean"] for r in rows], "o-", ms=3, label=label)
        if rows and "auroc_flip" in rows[0]:
            axes[2].plot(ep, [r["auroc_flip"] for r in rows], "o-", ms=3, label=label)
    for ax, title in zip(
        axes,
        ("NC1 (penultimate)", "mean potential ratio (logits)", "AUROC flipped labels"),
        strict=True,
    ):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: list[dict[str, float]], history: dict[int, dict[str, float]]) -> str:
    lines = [
        "| epoch | train acc | val acc | NC1 | within-class spread | mean ratio | AUROC flipped |",
        "|---|---|---|---|---|---|---|",
    ]
    step = max(1, len(rows) // 10)
    chosen = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    for r in chosen:
        h = history.get(r["epoch"], {})
        tr, va = h.get("train/acc", math.nan), h.get("val/acc", math.nan)
        lines.append(
            f"| {r['epoch']} | {tr:.4f} | {va:.4f}"
            f" | {r['nc1']:.4g} | {r['spread']:.4f} | {r['ratio_mean']:.4f} | "
            f"{r.get('auroc_flip', math.nan):.3f} |"
        )
    return "\n".join(lines)


def _run_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    nc = [r["nc1"] for r in rows]
    ratio = [r["ratio_mean"] for r in rows]
    out = {
        "nc1_first": nc[0],
        "nc1_last": nc[-1],
        "ratio_first": ratio[0],
        "ratio_last": ratio[-1],
        "pearson_log_nc1_ratio": _pearson([math.log(max(v, 1e-300)) for v in nc], ratio),
    }
    if "auroc_flip" in rows[0]:
        au = [r["auroc_flip"] for r in rows]
        out.update(auroc_first=au[0], auroc_max=max(au), auroc_last=au[-1])
    return out


def report(
    out_dir: str | Path,
    *,
    cfg: Any,
    trainer: pl.Trainer,
    module: Any,
    metrics: dict[str, Any],
    **_: Any,
) -> dict[str, Any]:
    """One run's report: ``neural_collapse.json``, ``neural_collapse.png``, ``report.md``."""
    out_dir = Path(out_dir)
    hist = next((c for c in trainer.callbacks if isinstance(c, NeuralCollapseHistory)), None)
    if hist is None or not hist.rows:
        (out_dir / "report.md").write_text(
            "# Neural collapse\n\nNo potential scoring happened (fewer epochs than the "
            "callback's every_n_epochs, or no NeuralCollapseHistory callback).\n"
        )
        return {}
    label = _label(cfg)
    history = {int(h["epoch"]): h for h in module.history}
    summary = _run_summary(hist.rows)
    (out_dir / "neural_collapse.json").write_text(
        json.dumps(
            {"label": label, "rows": hist.rows, "history": module.history, "summary": summary},
            indent=1,
        )
    )
    plot_runs({label: {"rows": hist.rows}}, out_dir / "neural_collapse.png")
    text = [
        f"# Neural collapse ({label})",
        "",
        f"{NC1_NAME} of the penultimate features of all training points; potential ratio of the "
        "training logits (MagnitudePotentialCallback).",
        "",
        _table(hist.rows, history),
        "",
        "Summary: " + ", ".join(f"{k} = {v:.4g}" for k, v in summary.items()),
        "",
        "![NC1, ratio, AUROC](neural_collapse.png)",
        "",
    ]
    (out_dir / "report.md").write_text("\n".join(text))
    return {f"nc/{k}": v for k, v in summary.items()}


def aggregate(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Combine every ``*/neural_collapse.json`` under ``sweep_dir`` into one report."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir
    runs = {}
    for path in sorted(sweep_dir.glob("*/neural_collapse.json")):
        data = json.loads(path.read_text())
        runs[data["label"]] = data
    if not runs:
        raise MagtorchError(f"no */neural_collapse.json under {sweep_dir}")
    out.mkdir(parents=True, exist_ok=True)
    plot_runs(runs, out / "neural_collapse.png")
    lines = ["# Neural collapse: all runs", ""]
    for label, data in runs.items():
        history = {int(h["epoch"]): h for h in data["history"]}
        lines += [f"## {label}", "", _table(data["rows"], history), ""]
        lines += ["Summary: " + ", ".join(f"{k} = {v:.4g}" for k, v in data["summary"].items())]
        lines += [""]
    lines += ["![NC1, ratio, AUROC](neural_collapse.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
