"""Benchmark: overhead of ``MagnitudePotentialCallback`` per scored epoch on the digits MLP.

What is measured (CPU, torch's default thread count, same process):

* data: scikit-learn digits (1797 points, 64 features standardised per feature, 10 classes)
  as ``TensorDataset(x, y, index)``, a shuffled training ``DataLoader`` with batch size 64
  (29 steps per epoch; seeded);
* model: an MLP 64-128-128-10 with ReLU, cross-entropy, Adam (lr 1e-3), float32; a fresh model
  with the same seed for every fit;
* trainer: Lightning ``Trainer(accelerator="cpu", max_epochs=E, enable_progress_bar=False,
  logger=False, enable_checkpointing=False, enable_model_summary=False)``;
* contenders: no callback; ``MagnitudePotentialCallback(every_n_epochs=1, t=T0)`` with ``T0`` a
  fixed scale (``1 / median`` pairwise logit distance of the untrained model, computed once up
  front); and ``MagnitudePotentialCallback(every_n_epochs=1, t="convergence")``; both with the
  defaults otherwise (scoring the whole training set, 1797 points, ``save=True`` into a
  temporary ``default_root_dir``); and the same two with ``max_samples=256`` (a fixed random
  subset scored every epoch, the cheap configuration for monitoring every epoch). For each,
  the smallest ``every_n_epochs`` that brings the amortised overhead to 15% is printed.

Timing: an epoch timer callback (placed last) measures ``on_train_epoch_start`` to the end of
``on_train_epoch_end``, so a scored epoch includes the scoring. Each fit runs E epochs; the first
is a warm-up and dropped, the per-epoch time of a fit is the median of the others. Fits are
interleaved (none, fixed, convergence, none, ...) and the best fit of k is kept; the share of
the CPU used by other processes is recorded. Overhead = (with - without) / without.
Goal (issue 4): at most 15% overhead per scored epoch.

A breakdown of one scoring on the trained model's logits (best of k each) follows: the forward
pass over the scoring loader, the pairwise distances, the all-data leave-one-out potentials
(one dense ``n x n`` inverse), the class leave-one-out potentials (10 batched inverses of
about 180 points), the convergence scale (bracketing + Newton solves), the aggregates, and the
``torch.save`` of the per-sample file.

Run it with ``python -m benchmarks.potential_callback`` (``--quick`` for a fast smoke run);
results are printed as a table and written to ``outputs/benchmarks/potential_callback.json``.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import (
    Timing,
    best_of,
    cli,
    format_table,
    goal_lines,
    interleaved,
    machine_info,
    wait_for_quiet,
    write_json,
)

NAME = "potential_callback"
TITLE = "MagnitudePotentialCallback overhead per scored epoch (digits MLP, CPU)"

SEED = 0
BATCH_SIZE = 64
WIDTHS = (64, 128, 128, 10)
LR = 1e-3
OVERHEAD_GOAL = 0.15
#: ``max_samples`` of the subset contenders: a fixed random subset scored every epoch.
SUBSET = 256
FULL = {"n": None, "epochs": 6, "repeats": 3, "breakdown_repeats": 3}
QUICK = {"n": 120, "epochs": 2, "repeats": 1, "breakdown_repeats": 1}


def load_digits_data(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised digits features ``(n, 64)`` float32 and labels ``(n,)`` (all 1797 by default).

    Example:
        >>> x, y = load_digits_data(50)
        >>> x.shape, y.shape, x.dtype
        (torch.Size([50, 64]), torch.Size([50]), torch.float32)
    """
    from sklearn.datasets import load_digits

    data, target = load_digits(return_X_y=True)
    x = torch.tensor(data, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-8)  # constant pixels stay 0
    x, y = x.float(), torch.tensor(target, dtype=torch.long)
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y


def make_loader(x: torch.Tensor, y: torch.Tensor) -> torch.utils.data.DataLoader:
    """Shuffled (seeded) training loader of ``(x, y, index)`` batches."""
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(x, y, torch.arange(len(y)))
    gen = torch.Generator().manual_seed(SEED)
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, generator=gen)


def make_module():
    """A fresh seeded MLP LightningModule (64-128-128-10, ReLU, Adam)."""
    import lightning.pytorch as pl

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            layers: list[torch.nn.Module] = []
            for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True):
                layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
            self.net = torch.nn.Sequential(*layers[:-1])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y, _ = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR)

    torch.manual_seed(SEED)
    return MLP()


class EpochTimer:
    """Lightning callback: wall time of each training epoch, start to end (place it last)."""

    def __new__(cls):
        from lightning.pytorch.callbacks import Callback

        class _Timer(Callback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self._start = 0.0

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self._start = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                self.times.append(time.perf_counter() - self._start)

        return _Timer()


def fixed_scale(x: torch.Tensor) -> float:
    """``1 / median`` pairwise distance of the untrained model's logits on ``x`` (float64)."""
    module = make_module()
    with torch.no_grad():
        z = module(x).double()
    return float(1.0 / torch.pdist(z).median())


def fit_epochs(
    loader, epochs: int, callback_factory: Callable[[], list], root: str
) -> dict[str, Any]:
    """One fit of ``epochs`` epochs; returns per-epoch times and the callbacks used."""
    import lightning.pytorch as pl

    timer = EpochTimer()
    callbacks = [*callback_factory(), timer]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "few workers" and similar Lightning hints
        trainer.fit(make_module(), loader)
    return {"epoch_times": list(timer.times), "callbacks": callbacks}


def _per_epoch(times: list[float]) -> float:
    """Median epoch time, dropping the first (warm-up) epoch when there are several."""
    kept = times[1:] if len(times) > 1 else times
    return statistics.median(kept)


def compare(x, y, epochs: int, repeats: int, root: str) -> dict[str, Any]:
    """Interleaved fits without and with the callback; per-epoch times and overheads."""
    from magtorch.callbacks.potential import MagnitudePotentialCallback

    t0 = fixed_scale(x)
    loader = make_loader(x, y)
    sub = min(SUBSET, len(y))
    factories: dict[str, Callable[[], list]] = {
        "none": lambda: [],
        "fixed": lambda: [MagnitudePotentialCallback(every_n_epochs=1, t=t0)],
        "convergence": lambda: [MagnitudePotentialCallback(every_n_epochs=1, t="convergence")],
        "fixed_subset": lambda: [
            MagnitudePotentialCallback(every_n_epochs=1, t=t0, max_samples=sub)
        ],
        "convergence_subset": lambda: [
            MagnitudePotentialCallback(every_n_epochs=1, t="convergence", max_samples=sub)
        ],
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in factories}

    def runner(name: str) -> Callable[[], None]:
        def go() -> None:
            runs[name].append(fit_epochs(loader, epochs, factories[name], root))

        return go

    fits = interleaved({k: runner(k) for k in factories}, repeats=repeats, warmup=0)
    row: dict[str, Any] = {"n": len(y), "subset": sub, "epochs_per_fit": epochs, "fixed_t": t0}
    for name in factories:
        per_fit = [_per_epoch(r["epoch_times"]) for r in runs[name]]
        best = min(per_fit)
        row[f"{name}_epoch_s"] = best
        row[f"{name}_per_fit_epoch_s"] = per_fit
        row[f"{name}_epoch_times_s"] = [r["epoch_times"] for r in runs[name]]
        row[f"{name}_fit_timing"] = fits[name].as_dict()
        row[f"{name}_background_cpu_at_best"] = fits[name].background[per_fit.index(best)]
    for name in factories:
        if name == "none":
            continue
        overhead = (row[f"{name}_epoch_s"] - row["none_epoch_s"]) / row["none_epoch_s"]
        row[f"{name}_overhead"] = overhead
        # Scoring every k-th epoch spreads the same cost over k epochs.
        row[f"{name}_every_n_for_goal"] = max(1, math.ceil(overhead / OVERHEAD_GOAL))
    last = runs["convergence"][-1]["callbacks"][0]
    row["convergence_t_last"] = float(last.scores["t"])
    row["convergence_scored_epochs"] = list(last.scored_epochs)
    return row


def breakdown(x, y, t_fixed: float, repeats: int, root: str) -> dict[str, Any]:
    """Best-of-k time of each part of one scoring, on the logits after a short training."""
    import lightning.pytorch as pl

    from magtorch.callbacks._scores import potential_scores, summarize
    from magtorch.callbacks.potential import MagnitudePotentialCallback, _atomic_save
    from magtorch.magnitude import _class_batches, _take, loo_potential
    from magtorch.scales import convergence_scale

    loader = make_loader(x, y)
    cb = MagnitudePotentialCallback(every_n_epochs=1, t=t_fixed, save=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    module = make_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader)
    scoring_loader = cb._scoring_loader(trainer)

    def collect():
        module.eval()
        with torch.no_grad():
            out = cb._collect(trainer, module, scoring_loader)
        module.train()
        return out

    z, labels, index = collect()
    z = z.double()
    t = torch.tensor(t_fixed, dtype=torch.float64)
    tc = convergence_scale(z)
    cls, every, ratio = potential_scores(z, labels, t)
    idx, mask, _ = _class_batches(labels)
    zc = _take(z, idx, "euclidean")
    scores = {"index": index, "label": labels, "ratio": ratio, "all_potential": every}
    path = os.path.join(root, "breakdown", "potential.pt")
    parts: dict[str, Callable[[], Any]] = {
        "forward over scoring loader": collect,
        "pairwise distances (cdist)": lambda: torch.cdist(z, z),
        "all-data LOO potentials (t fixed)": lambda: loo_potential(z, t),
        "class LOO potentials (t fixed)": lambda: loo_potential(zc, t, mask=mask),
        "potential_scores total (t fixed)": lambda: potential_scores(z, labels, t),
        "potential_scores total (t conv.)": lambda: potential_scores(z, labels, tc),
        "convergence_scale": lambda: convergence_scale(z),
        "summarize (aggregates)": lambda: summarize(ratio, labels),
        "torch.save per-sample file": lambda: _atomic_save({**scores, "logits": z}, path),
    }
    timings: dict[str, Timing] = {
        k: best_of(f, repeats=repeats, warmup=1) for k, f in parts.items()
    }
    return {
        "n": len(labels),
        "fixed_t": t_fixed,
        "convergence_t": float(tc),
        "parts_s": {k: v.best for k, v in timings.items()},
        "parts_timing": {k: v.as_dict() for k, v in timings.items()},
    }


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``potential_callback.json`` (``_quick``) to ``out_dir``.

    Args:
        quick: 120 points, 2 epochs, one fit each (a smoke run; the numbers mean little).
        out_dir: directory for the JSON file (default ``outputs/benchmarks``).

    Returns:
        A JSON-serialisable dict: machine description, the timing row, the breakdown, the goal.
    """
    cfg = QUICK if quick else FULL
    x, y = load_digits_data(cfg["n"])
    busy = None if quick else wait_for_quiet(max_wait=60.0)
    with tempfile.TemporaryDirectory() as root:
        print(
            f"[{NAME}] n = {len(y)}: {cfg['epochs']} epochs per fit, best of "
            f"{cfg['repeats']} interleaved fits ...",
            flush=True,
        )
        row = compare(x, y, cfg["epochs"], cfg["repeats"], root)
        row["background_busy_before"] = busy
        print(f"[{NAME}] breakdown of one scoring ...", flush=True)
        parts = breakdown(x, y, row["fixed_t"], cfg["breakdown_repeats"], root)
    worst = max(row["fixed_overhead"], row["convergence_overhead"])
    worst_subset = max(row["fixed_subset_overhead"], row["convergence_subset_overhead"])
    results: dict[str, Any] = {
        "benchmark": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "settings": {
            "data": "sklearn digits, features standardised",
            "n": len(y),
            "model": "MLP " + "-".join(map(str, WIDTHS)) + ", ReLU, float32",
            "optimizer": f"Adam lr={LR}",
            "batch_size": BATCH_SIZE,
            "seed": SEED,
            "epochs_per_fit": cfg["epochs"],
            "repeats": cfg["repeats"],
            "callback": "every_n_epochs=1, scoring='train', save=True, metric='euclidean'",
            "fixed_t": "1 / median pairwise logit distance of the untrained model",
        },
        "rows": [row],
        "breakdown": parts,
        "goals": {
            "overhead": {
                "goal": f"<= {OVERHEAD_GOAL:.0%} per scored epoch (fixed t and convergence)",
                "measured": 100 * worst,
                "met": None if quick else worst <= OVERHEAD_GOAL,
            },
            "overhead_subset": {
                "goal": f"<= {OVERHEAD_GOAL:.0%} per scored epoch with max_samples={row['subset']}"
                " (not the issue's goal: a fixed subset instead of every point)",
                "measured": 100 * worst_subset,
                "met": None if quick else worst_subset <= OVERHEAD_GOAL,
            },
        },
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def summary(results: dict[str, Any]) -> str:
    """Plain-text tables (epoch times and overheads; scoring breakdown) for ``results``."""
    m = results["machine"]
    r = results["rows"][0]
    table = format_table(
        ["callback", "t", "scored", "epoch [s]", "vs none", "overhead", "k for 15%", "bg CPU"],
        [
            [
                label,
                tval,
                scored,
                f"{r[f'{key}_epoch_s']:.4f}",
                f"{r[f'{key}_epoch_s'] / r['none_epoch_s']:.2f}x",
                "-" if key == "none" else f"{100 * r[f'{key}_overhead']:+.0f}%",
                "-" if key == "none" else str(r[f"{key}_every_n_for_goal"]),
                f"{r[f'{key}_background_cpu_at_best']:.0%}",
            ]
            for key, label, tval, scored in (
                ("none", "none", "-", "-"),
                ("fixed", "potential", f"{r['fixed_t']:.4g}", str(r["n"])),
                ("convergence", "potential", "conv.", str(r["n"])),
                ("fixed_subset", "potential", f"{r['fixed_t']:.4g}", str(r["subset"])),
                ("convergence_subset", "potential", "conv.", str(r["subset"])),
            )
        ],
    )
    b = results["breakdown"]
    parts = format_table(
        [f"part of one scoring (n = {b['n']})", "time [s]", "vs epoch w/o"],
        [[k, f"{v:.4f}", f"{100 * v / r['none_epoch_s']:.0f}%"] for k, v in b["parts_s"].items()],
    )
    return "\n".join(
        [
            f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
            f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']} "
            f"({m['torch_blas']}, {m['torch_threads']} threads), magtorch @ {m['magtorch_git']}",
            f"setup: n = {r['n']}, MLP {'-'.join(map(str, WIDTHS))}, Adam, batch {BATCH_SIZE}; "
            f"{r['epochs_per_fit']} epochs per fit (first dropped), median epoch, best fit",
            "",
            table,
            "(epoch: on_train_epoch_start..end incl. scoring; overhead = (with - none) / none; "
            "k for 15%: every_n_epochs that spreads the overhead to <= 15% per epoch; "
            "bg CPU: share of all cores used by other processes during the best fit)",
            "",
            parts,
            "",
            *goal_lines(results["goals"], "%"),
            f"results written to {results.get('json_path', '?')}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: run, print the summary, return an exit status."""
    return cli(__doc__, run, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
