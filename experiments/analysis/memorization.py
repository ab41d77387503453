r"""Experiment 1, ``memorization``: does the magnitude potential ratio find memorised points?

Ground truth: the memorisation estimate of Feldman & Zhang (2020). ``K`` models of the same
recipe (architecture, optimiser, learning rate, epochs, batch size as the main run) are trained
on uniformly random subsets :math:`S_1..S_K` of the training set, each of
``round(subset_fraction * n)`` points; for a training point :math:`i` with (possibly flipped)
label :math:`y_i`,

.. math::

    \mathrm{mem}(i) = \Pr_k[f_k(x_i) = y_i \mid i \in S_k]
                   - \Pr_k[f_k(x_i) = y_i \mid i \notin S_k],

each probability the fraction of the models in (out of) whose subset :math:`i` was. A point
the models fit only when they see it scores near 1; a point fitted from its neighbours near 0.
The ``K`` MLPs train together as one :class:`experiments.models.BatchedMLP` (each model's loss
averaged over the members of its subset in every shared batch).

Scores of the main model (trained on the whole training set), each oriented so that *higher
means more memorised*:

* ``ratio``: minus the magnitude potential ratio :math:`r(x_i)` of the final logits, from
  :class:`magtorch.callbacks.MagnitudePotentialCallback` (its scale ``t``; ``ratio@t*k``:
  recomputed with :func:`magtorch.potential_ratio` at ``k`` times that scale);
* ``final_loss``: the cross-entropy of :math:`x_i` under the final model (eval mode);
* ``neg_margin``: :math:`-(z_{y_i} - \max_{c \ne y_i} z_c)` of the final logits;
* ``learning_speed``: the mean training-step loss of :math:`x_i` over the first
  ``early_fraction`` of the epochs (a point learned late scores high).

Reported: Spearman's :math:`\rho` of each score with :math:`\mathrm{mem}` (all training points,
and the clean points only), the AUROC of each score for the planted flipped labels, with
bootstrap 95% intervals, plots, and where the ratio does worse than a baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from experiments.analysis.common import config_block, markdown_table, plot_history
from magtorch.errors import MagtorchError

__all__ = [
    "auroc",
    "bootstrap_ci",
    "feldman_memorization",
    "final_scores",
    "learning_speed",
    "rankdata",
    "roc_curve",
    "spearman",
    "subset_masks",
    "train_subset_models",
    "write_report",
]

BASELINES = ("final_loss", "neg_margin", "learning_speed")


# ---------------------------------------------------------------------- statistics


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks ``1..n`` of ``a``, ties given their average rank (``scipy.stats.rankdata``).

    Example:
        >>> rankdata(np.array([10.0, 20.0, 10.0, 5.0])).tolist()
        [2.5, 4.0, 2.5, 1.0]
    """
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start and end of each run of equal values; every member of a run gets the run's mean rank.
    change = np.flatnonzero(np.diff(sorted_a) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(a)]])
    mean_rank = (starts + ends + 1) / 2.0  # ranks start..end-1 (0-based) -> mean + 1
    ranks = np.empty(len(a))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    r"""Spearman's :math:`\rho`: the Pearson correlation of the (average) ranks.

    NaN when fewer than 2 points or a constant input.

    Example:
        >>> spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 4.0, 9.0, 16.0]))
        1.0
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise MagtorchError(f"a and b must be 1-d of equal length; got {a.shape} and {b.shape}")
    if len(a) < 2:
        return math.nan
    ra, rb = rankdata(a) - (len(a) + 1) / 2.0, rankdata(b) - (len(b) + 1) / 2.0
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else math.nan


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    r"""Area under the ROC curve: :math:`\Pr[s_+ > s_-] + \tfrac12 \Pr[s_+ = s_-]` over
    positive/negative pairs (the Mann-Whitney statistic, ties counted half).

    Example:
        >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
        0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    if s.shape != pos.shape or s.ndim != 1:
        raise MagtorchError(f"scores and positives must be 1-d of equal length; got {s.shape}")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold (descending scores), from (0, 0)."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    last = np.concatenate([np.flatnonzero(np.diff(s) != 0), [len(s) - 1]])
    tp = np.cumsum(pos)[last]
    fp = np.cumsum(~pos)[last]
    tpr = np.concatenate([[0.0], tp / max(pos.sum(), 1)])
    fpr = np.concatenate([[0.0], fp / max((~pos).sum(), 1)])
    return fpr, tpr


def bootstrap_ci(
    fn: Any, arrays: Sequence[np.ndarray], n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(*arrays)`` (rows resampled with replacement).

    Example:
        >>> x = np.arange(50.0)
        >>> lo, hi = bootstrap_ci(lambda a: float(a.mean()), [x], n_boot=100)
        >>> lo < 24.5 < hi
        True
    """
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, n, size=n)
        v = fn(*(a[pick] for a in arrays))
        if math.isfinite(v):
            values.append(v)
    if not values:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))


# ---------------------------------------------------------------------- Feldman estimate


def subset_masks(num_models: int, n: int, fraction: float, seed: int = 0) -> Tensor:
    """``(num_models, n)`` boolean: row ``k`` marks a uniformly random subset of
    ``round(fraction * n)`` points (Feldman & Zhang's sampling without replacement).

    Example:
        >>> m = subset_masks(4, 10, 0.7, seed=0)
        >>> m.shape, m.sum(1).tolist()
        (torch.Size([4, 10]), [7, 7, 7, 7])
    """
    if isinstance(num_models, bool) or not isinstance(num_models, int) or num_models < 2:
        raise MagtorchError(f"num_models must be an integer >= 2; got num_models={num_models!r}")
    if not 0.0 < fraction < 1.0:
        raise MagtorchError(f"subset_fraction must be in (0, 1); got {fraction!r}")
    m = int(round(fraction * n))
    if not 0 < m < n:
        raise MagtorchError(f"subset_fraction={fraction} of n={n} leaves an empty side")
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(num_models, n, generator=g)
    chosen = keys.argsort(dim=1)[:, :m]
    mask = torch.zeros(num_models, n, dtype=torch.bool)
    mask.scatter_(1, chosen, True)
    return mask


def feldman_memorization(correct: Tensor, member: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Feldman-Zhang memorisation estimate from ``K`` subset models.

    Args:
        correct: ``(K, n)`` boolean, model ``k`` classifies point ``i`` as its training label.
        member: ``(K, n)`` boolean, point ``i`` was in model ``k``'s training subset.

    Returns:
        ``mem (n,)`` float64 — :math:`\bar c_{\text{in}} - \bar c_{\text{out}}`, NaN where a
        point was in all or none of the subsets — and the counts ``n_in``, ``n_out``.

    Example:
        >>> correct = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
        >>> member = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
        >>> feldman_memorization(correct, member)[0].tolist()
        [1.0, 1.0]
    """
    if correct.shape != member.shape or correct.dim() != 2:
        raise MagtorchError(
            f"correct and member must be (K, n) of one shape; got {tuple(correct.shape)} and "
            f"{tuple(member.shape)}"
        )
    c, m = correct.to(torch.float64), member.to(torch.float64)
    n_in, n_out = m.sum(0), (1 - m).sum(0)
    p_in = (c * m).sum(0) / n_in
    p_out = (c * (1 - m)).sum(0) / n_out
    mem = torch.where((n_in > 0) & (n_out > 0), p_in - p_out, torch.nan)
    return mem, n_in.long(), n_out.long()


def train_subset_models(
    x: Tensor,
    y: Tensor,
    member: Tensor,
    *,
    num_classes: int,
    hidden: Sequence[int] | int = (256,),
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    momentum: float = 0.9,
    seed: int = 0,
    x_val: Tensor | None = None,
    y_val: Tensor | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    r"""Train ``K = member.shape[0]`` ReLU MLPs at once, model ``k`` on the points ``member[k]``.

    Every step draws one shared batch (a seeded shuffle of all ``n`` points); model ``k``'s loss
    is the mean cross-entropy over the batch points in its subset (zero if none), and the sum
    over models is minimised, so each model receives exactly its own gradient.

    Returns:
        ``correct (K, n)`` (final prediction equals ``y``), ``logits (K, n, C)`` and, with a
        validation set, ``val_acc (K,)``.

    Example:
        >>> x = torch.randn(40, 3); y = (x[:, 0] > 0).long()
        >>> out = train_subset_models(x, y, subset_masks(3, 40, 0.5), num_classes=2, epochs=2)
        >>> out["correct"].shape
        torch.Size([3, 40])
    """
    from experiments.models.mlp import BatchedMLP

    n = len(y)
    if member.shape[1] != n:
        raise MagtorchError(f"member has {member.shape[1]} columns for {n} points")
    k = member.shape[0]
    g = torch.Generator().manual_seed(seed)
    net = BatchedMLP(k, x.shape[1], num_classes, hidden, generator=g)
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise MagtorchError(f"optimizer must be 'adam', 'adamw' or 'sgd'; got {optimizer!r}")
    weights = member.to(x.dtype)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"Feldman estimate: {k} subset models", unit="epoch")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            logits = net(x[idx])  # (K, B, C)
            per = F.cross_entropy(
                logits.reshape(-1, num_classes), y[idx].repeat(k), reduction="none"
            ).reshape(k, -1)
            w = weights[:, idx]
            loss = ((per * w).sum(1) / w.sum(1).clamp_min(1.0)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    with torch.no_grad():
        logits = net(x)
        out = {"correct": logits.argmax(-1) == y, "logits": logits}
        if x_val is not None and y_val is not None:
            out["val_acc"] = (net(x_val).argmax(-1) == y_val).double().mean(1)
    return out


# ---------------------------------------------------------------------- scores


def final_scores(model: torch.nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample cross-entropy and negative margin ``-(z_y - max_{c != y} z_c)`` (eval mode).

    Example:
        >>> lin = torch.nn.Linear(2, 3)
        >>> loss, neg_margin = final_scores(lin, torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1]))
        >>> loss.shape, neg_margin.shape
        (torch.Size([5]), torch.Size([5]))
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            z = model(x).to(torch.float64)
    finally:
        for m, mode in modes.items():
            m.train(mode)
    loss = F.cross_entropy(z, y, reduction="none")
    true = z.gather(1, y[:, None])[:, 0]
    others = z.scatter(1, y[:, None], -math.inf).max(1).values
    return loss, -(true - others)


def learning_speed(sample_losses: Tensor, early_fraction: float = 0.25) -> Tensor:
    """Mean per-sample training loss over the first ``ceil(early_fraction * epochs)`` epochs
    (NaN entries — samples a recorded epoch did not see — are ignored).

    Example:
        >>> learning_speed(torch.tensor([[1.0, 2.0], [3.0, float("nan")], [9.0, 9.0]]), 0.5)
        tensor([2., 2.], dtype=torch.float64)
    """
    if sample_losses.dim() != 2 or sample_losses.shape[0] == 0:
        raise MagtorchError(
            "sample_losses must be (epochs, n) with at least one epoch; run with "
            "module.record_sample_losses=true"
        )
    if not 0.0 < early_fraction <= 1.0:
        raise MagtorchError(f"early_fraction must be in (0, 1]; got {early_fraction!r}")
    e = max(1, math.ceil(early_fraction * sample_losses.shape[0]))
    return torch.nanmean(sample_losses[:e].to(torch.float64), dim=0)


# ---------------------------------------------------------------------- the report


def _collect(loader: Any) -> tuple[Tensor, Tensor, Tensor]:
    xs, ys, ids = [], [], []
    for batch in loader:
        xs.append(batch[0])
        ys.append(torch.as_tensor(batch[1]).long())
        ids.append(torch.as_tensor(batch[2]).long())
    x, y, index = torch.cat(xs), torch.cat(ys), torch.cat(ids)
    order = index.argsort()
    return x[order], y[order], index[order]


def _potential_callback(trainer: Any) -> Any:
    from magtorch.callbacks import MagnitudePotentialCallback

    for cb in trainer.callbacks:
        if isinstance(cb, MagnitudePotentialCallback):
            return cb
    raise MagtorchError(
        "the memorization report needs a MagnitudePotentialCallback (callbacks=potential)"
    )


def _mlp_recipe(cfg: Any) -> dict[str, Any]:
    model = cfg.model
    target = str(model.get("_target_", ""))
    if not target.endswith("MLP") or model.get("activation", "relu") != "relu":
        raise MagtorchError(
            "the Feldman estimate retrains the model as a batch of ReLU MLPs: use model=mlp "
            f"with activation=relu; got {target} ({model.get('activation')})"
        )
    if float(model.get("dropout", 0.0)) != 0.0:
        raise MagtorchError("the Feldman estimate's batched MLPs have no dropout: set dropout=0")
    hidden = model.get("hidden", [256])
    hidden = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
    return {
        "hidden": hidden,
        "epochs": int(cfg.trainer.max_epochs),
        "batch_size": int(cfg.data.batch_size),
        "lr": float(cfg.module.lr),
        "weight_decay": float(cfg.module.weight_decay),
        "optimizer": str(cfg.module.optimizer),
        "momentum": float(cfg.module.get("momentum", 0.9)),
    }


def analyse(
    *,
    cfg: Any,
    trainer: Any,
    module: Any,
    datamodule: Any,
    num_models: int,
    subset_fraction: float,
    early_fraction: float,
    scale_multipliers: Sequence[float],
    progress: bool,
) -> dict[str, Any]:
    """Everything the report shows, as arrays (see the module docstring)."""
    import magtorch

    x, y, index = _collect(datamodule.score_dataloader())
    n = len(y)
    if not torch.equal(index, torch.arange(n)):
        raise MagtorchError("the score loader must yield every training index 0..n-1 once")
    x = x.reshape(n, -1).to(torch.float32)
    flipped = getattr(datamodule, "flipped", torch.zeros(n, dtype=torch.bool)).numpy()

    cb = _potential_callback(trainer)
    if cb.scores is None:
        raise MagtorchError("the potential callback never scored: set its every_n_epochs")
    if not torch.equal(cb.scores["index"], torch.arange(n)):
        raise MagtorchError("the potential callback scored a subset: raise its max_samples")
    ratio = cb.scores["ratio"]
    t = cb.scores["t"].reshape(-1)
    if ratio.dim() == 2:
        ratio, t = ratio[0], t[:1]
    scores: dict[str, np.ndarray] = {"ratio": -ratio.numpy()}
    model = module.model
    loss, neg_margin = final_scores(model, x, y)
    with torch.no_grad():
        modes = {m: m.training for m in model.modules()}
        model.eval()
        logits = model(x).to(torch.float64)
        for m, mode in modes.items():
            m.train(mode)
    for k in scale_multipliers:
        if float(k) == 1.0:
            continue
        r = magtorch.potential_ratio(logits, y, float(t[0]) * float(k))
        scores[f"ratio@t*{k:g}"] = -r.numpy()
    scores["final_loss"] = loss.numpy()
    scores["neg_margin"] = neg_margin.numpy()
    scores["learning_speed"] = learning_speed(module.sample_losses, early_fraction).numpy()

    recipe = _mlp_recipe(cfg)
    member = subset_masks(num_models, n, subset_fraction, seed=int(cfg.seed) + 1)
    xv, yv, _ = _collect(datamodule.val_dataloader())
    sub = train_subset_models(
        x,
        y,
        member,
        num_classes=int(datamodule.num_classes),
        seed=int(cfg.seed) + 2,
        x_val=xv.reshape(len(yv), -1).to(torch.float32),
        y_val=yv,
        progress=progress,
        **recipe,
    )
    mem, n_in, n_out = feldman_memorization(sub["correct"], member)
    return {
        "scores": scores,
        "mem": mem.numpy(),
        "n_in": n_in.numpy(),
        "n_out": n_out.numpy(),
        "flipped": flipped,
        "ratio_raw": ratio.numpy(),
        "t": float(t[0]),
        "subset_val_acc": sub["val_acc"].numpy(),
        "recipe": recipe,
        "n": n,
    }


def _plots(out_dir: Path, res: dict[str, Any], names: Sequence[str]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem, flipped, scores = res["mem"], res["flipped"], res["scores"]
    files = []
    cols = len(names)
    fig, axes = plt.subplots(1, cols, figsize=(3.3 * cols, 3.2), squeeze=False)
    jitter = np.random.default_rng(0).uniform(-0.015, 0.015, size=len(mem))
    for ax, name in zip(axes[0], names, strict=True):
        s = scores[name]
        ax.scatter(s[~flipped], mem[~flipped] + jitter[~flipped], s=4, alpha=0.35, label="clean")
        ax.scatter(s[flipped], mem[flipped] + jitter[flipped], s=8, c="tab:red", label="flipped")
        ax.set_xlabel(f"{name} (higher = memorised)")
        ax.set_title(f"rho = {spearman(s, mem):.3f}", fontsize=9)
    axes[0][0].set_ylabel("Feldman memorisation estimate")
    axes[0][0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(out_dir / "scores_vs_memorization.png", dpi=110)
    plt.close(fig)
    files.append("scores_vs_memorization.png")

    if flipped.any() and (~flipped).any():
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for name in names:
            fpr, tpr = roc_curve(scores[name], flipped)
            axes[0].plot(fpr, tpr, label=f"{name} ({auroc(scores[name], flipped):.3f})")
        axes[0].plot([0, 1], [0, 1], c="grey", lw=0.8, ls=":")
        axes[0].set_xlabel("false-positive rate")
        axes[0].set_ylabel("true-positive rate")
        axes[0].set_title("flipped labels: ROC (AUROC)", fontsize=9)
        axes[0].legend(fontsize=7)
        r = res["ratio_raw"]
        bins = np.linspace(np.nanmin(r), np.nanmax(r), 40)
        axes[1].hist(r[~flipped], bins=bins, alpha=0.6, density=True, label="clean")
        axes[1].hist(r[flipped], bins=bins, alpha=0.6, density=True, label="flipped")
        axes[1].set_xlabel(f"potential ratio r (t = {res['t']:.3g})")
        axes[1].set_ylabel("density")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "flipped_roc.png", dpi=110)
        plt.close(fig)
        files.append("flipped_roc.png")
    return files


def _rows(res: dict[str, Any], n_boot: int, seed: int) -> list[dict[str, Any]]:
    mem, flipped = res["mem"], res["flipped"]
    ok = np.isfinite(mem)
    clean = ok & ~flipped
    rows = []
    for name, s in res["scores"].items():
        finite = ok & np.isfinite(s)
        row = {
            "score": name,
            "rho_all": spearman(s[finite], mem[finite]),
            "rho_all_ci": bootstrap_ci(spearman, [s[finite], mem[finite]], n_boot, seed),
            "rho_clean": spearman(s[clean & finite], mem[clean & finite]),
            "rho_clean_ci": bootstrap_ci(
                spearman, [s[clean & finite], mem[clean & finite]], n_boot, seed
            ),
            "auroc": math.nan,
            "auroc_ci": (math.nan, math.nan),
        }
        if flipped.any():
            fin = np.isfinite(s)
            row["auroc"] = auroc(s[fin], flipped[fin])
            row["auroc_ci"] = bootstrap_ci(auroc, [s[fin], flipped[fin]], n_boot, seed)
        rows.append(row)
    return rows


def _ci(value: float, ci: tuple[float, float]) -> str:
    if not math.isfinite(value):
        return "nan"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _comparison(rows: list[dict[str, Any]]) -> list[str]:
    by = {r["score"]: r for r in rows}
    ratio = by["ratio"]
    lines = []
    for what, key, label in (
        ("Spearman with the memorisation estimate (all points)", "rho_all", "rho"),
        ("Spearman on the clean points only", "rho_clean", "rho"),
        ("AUROC for the flipped labels", "auroc", "AUROC"),
    ):
        if not math.isfinite(ratio[key]):
            continue
        better = [b for b in BASELINES if by[b][key] > ratio[key]]
        if better:
            detail = ", ".join(f"{b} ({label} {by[b][key]:.3f})" for b in better)
            lines.append(
                f"- {what}: the ratio ({label} {ratio[key]:.3f}) does **worse** than {detail}."
            )
        else:
            lines.append(
                f"- {what}: the ratio ({label} {ratio[key]:.3f}) is at least as good as every "
                "baseline."
            )
    return lines


def write_report(
    out_dir: Path | str,
    *,
    cfg: Any,
    trainer: Any,
    module: Any,
    datamodule: Any,
    metrics: dict[str, Any],
    num_models: int = 64,
    subset_fraction: float = 0.7,
    early_fraction: float = 0.25,
    scale_multipliers: Sequence[float] = (0.25, 4.0),
    n_bootstrap: int = 200,
    progress: bool = True,
    partition: dict[str, Any] | bool | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The ``memorization`` report: ``report.md``, ``scores_vs_memorization.png``,
    ``flipped_roc.png`` and ``memorization_scores.npz`` (per-sample scores, estimate, flips).

    Called by ``experiments/train.py`` (``report._target_`` of ``experiment=memorization``)
    after the main fit. With ``cfg.fast`` (``debug=fast``) at most 4 subset models and 20
    bootstrap resamples. Returns ``memorization/...`` metrics for ``metrics.json``.

    ``partition`` (``True`` or a dict of options of
    :func:`experiments.analysis.partition.memorization_partition`) adds the per-sample
    partition scores (issue 7) to the table and a partition section to the report.
    """
    out_dir = Path(out_dir)
    if cfg.get("fast"):
        num_models, n_bootstrap = min(num_models, 4), min(n_bootstrap, 20)
    res = analyse(
        cfg=cfg,
        trainer=trainer,
        module=module,
        datamodule=datamodule,
        num_models=int(num_models),
        subset_fraction=float(subset_fraction),
        early_fraction=float(early_fraction),
        scale_multipliers=list(scale_multipliers),
        progress=bool(progress),
    )
    part_lines: list[str] = []
    part_metrics: dict[str, Any] = {}
    if partition:
        from experiments.analysis.partition import memorization_partition

        options = {} if partition is True else dict(partition)
        part_lines, part_metrics = memorization_partition(
            out_dir,
            res,
            cfg=cfg,
            module=module,
            datamodule=datamodule,
            n_bootstrap=int(n_bootstrap),
            seed=int(cfg.seed),
            **options,
        )
    rows = _rows(res, int(n_bootstrap), int(cfg.seed))
    names = ["ratio", *BASELINES]
    figures = _plots(out_dir, res, names)
    plot_history(getattr(module, "history", []), out_dir / "curves.png")
    np.savez(
        out_dir / "memorization_scores.npz",
        mem=res["mem"],
        flipped=res["flipped"],
        ratio=res["ratio_raw"],
        **{f"score_{k}": v for k, v in res["scores"].items()},
    )

    mem, flipped = res["mem"], res["flipped"]
    recipe = res["recipe"]
    n_flip = int(flipped.sum())
    lines = [
        "# Memorisation: magnitude potential ratio against Feldman estimates",
        "",
        f"Main model: MLP {recipe['hidden']} on {res['n']} training points "
        f"({n_flip} labels flipped, {100 * n_flip / res['n']:.1f}%), {recipe['epochs']} epochs, "
        f"{recipe['optimizer']} lr {recipe['lr']:g}, batch {recipe['batch_size']}; validation "
        f"accuracy {metrics.get('val/acc', math.nan):.3f}, train accuracy "
        f"{metrics.get('train/acc', math.nan):.3f}.",
        "",
        f"Ground truth: Feldman-Zhang memorisation estimates from K = {num_models} models of the "
        f"same recipe, each trained on a uniformly random {subset_fraction:g} of the training set "
        f"(each point was held out of {res['n_out'].mean():.1f} models on average, min "
        f"{res['n_out'].min()}); subset-model validation accuracy "
        f"{res['subset_val_acc'].mean():.3f} ± {res['subset_val_acc'].std():.3f}. Mean estimate: "
        f"flipped {np.nanmean(mem[flipped]) if n_flip else math.nan:.3f}, clean "
        f"{np.nanmean(mem[~flipped]):.3f}.",
        "",
        f"Scores (higher = more memorised): `ratio` = −r at t = {res['t']:.4g} (the callback's "
        f"scale), `ratio@t*k` the same at k times that scale; `final_loss`, `neg_margin` of the "
        f"final model; `learning_speed` = mean training loss over the first "
        f"{early_fraction:g} of the epochs. Intervals: {n_bootstrap}-sample percentile "
        "bootstrap, 95%.",
        "",
        "## Results",
        "",
    ]
    header = ["score", "Spearman rho (all)", "Spearman rho (clean only)", "AUROC flipped"]
    lines.append(
        markdown_table(
            header,
            [
                [
                    r["score"],
                    _ci(r["rho_all"], r["rho_all_ci"]),
                    _ci(r["rho_clean"], r["rho_clean_ci"]),
                    _ci(r["auroc"], r["auroc_ci"]),
                ]
                for r in rows
            ],
        )
    )
    lines += ["", "## Where the ratio does worse than a baseline", "", *_comparison(rows), ""]
    lines += part_lines
    lines += ["## Figures", ""]
    lines += [f"![{f}]({f})" for f in figures]
    if (out_dir / "curves.png").exists():
        lines.append("![learning curves](curves.png)")
    lines += ["", "## Config", "", config_block(cfg), ""]
    (out_dir / "report.md").write_text("\n".join(lines))

    extra: dict[str, Any] = {
        "memorization/num_models": int(num_models),
        "memorization/subset_fraction": float(subset_fraction),
        "memorization/t": res["t"],
        "memorization/mem_mean_flipped": float(np.nanmean(mem[flipped])) if n_flip else math.nan,
        "memorization/mem_mean_clean": float(np.nanmean(mem[~flipped])),
        "memorization/subset_val_acc": float(res["subset_val_acc"].mean()),
        **part_metrics,
    }
    for r in rows:
        extra[f"memorization/spearman/{r['score']}"] = r["rho_all"]
        extra[f"memorization/spearman_clean/{r['score']}"] = r["rho_clean"]
        extra[f"memorization/auroc/{r['score']}"] = r["auroc"]
    return extra
