"""Benchmark: the magnitude distance loss, forward + backward, against GeomLoss.

What is measured (float32 on the CPU, same process, same data):

* data: a "generated" batch ``x`` of ``n`` points from N(0, I) in R^64 that requires grad, and a
  fixed "data" batch ``y`` of ``m = n`` points from N(0.5, I) (seeded), n in {1024, 4096};
* scale: the median heuristic ``t = 1 / median_{i<j} |u_i - u_j|`` over the union ``u = x u y``
  (computed once, outside the timed region; about 0.086 here, where ``Z_t`` has off-diagonal
  entries near ``e^{-1}``);
* ours: ``MagnitudeDistanceLoss(t)(x, y).backward()`` (the fixed ``y`` costs no gradient work),
  and for reference the same with ``y`` requiring grad too;
* peers: GeomLoss ``SamplesLoss("sinkhorn", blur=0.05)`` and ``SamplesLoss("energy")``, each
  ``loss(x, y).backward()`` with their default (tensorized on CPU) backend;
* agreement (untimed, n <= 1024): our loss against an independent float64 SciPy Cholesky solve of
  the three magnitudes.

Timing: interleaved best-of-k wall clock (contenders run in turn) after one warm-up call, with
torch's default thread count; the share of the CPU used by other processes during the best
samples is recorded. Goal: at most 2x Sinkhorn's time at both sizes.

Run it with ``python -m benchmarks.loss`` (``--quick`` for a fast smoke run); results are printed
as a table and written to ``outputs/benchmarks/loss.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    cli,
    format_table,
    goal_lines,
    interleaved,
    machine_info,
    wait_for_quiet,
    write_json,
)

NAME = "loss"
TITLE = "magnitude distance loss forward+backward vs GeomLoss (R^64, float32 CPU)"

DIM = 64
SHIFT = 0.5
SEED = 0
FULL_SIZES = (1024, 4096)
QUICK_SIZES = (64, 128)
SINKHORN_GOAL = 2.0  # our time / Sinkhorn's time, at every size
REFERENCE_MAX_N = 1024


def make_batches(n: int, dim: int = DIM, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """A generated batch ``x ~ N(0, I)`` and a data batch ``y ~ N(SHIFT, I)``, float32 ``(n, dim)``.

    Example:
        >>> x, y = make_batches(5, dim=3)
        >>> x.shape, y.dtype
        (torch.Size([5, 3]), torch.float32)
    """
    gen = torch.Generator().manual_seed(seed + n)
    x = torch.randn(n, dim, generator=gen)
    y = torch.randn(n, dim, generator=gen) + SHIFT
    return x, y


def median_scale(x: torch.Tensor, y: torch.Tensor) -> float:
    """The median heuristic ``1 / median`` of the union's pairwise distances (i < j).

    Example:
        >>> median_scale(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]]))  # median of 1, 2, 3
        0.5
    """
    u = torch.cat([x, y]).to(torch.float64)
    d = torch.pdist(u)
    return float(1.0 / d.median())


def reference_distance(x: np.ndarray, y: np.ndarray, t: float) -> float:
    """Independent float64 ``2 Mag(X u Y) - Mag(X) - Mag(Y)`` by SciPy Cholesky solves."""
    from scipy.linalg import cho_factor, cho_solve
    from scipy.spatial.distance import cdist

    def mag(p: np.ndarray) -> float:
        p = np.unique(p, axis=0)
        z = np.exp(-t * cdist(p, p))
        return float(cho_solve(cho_factor(z), np.ones(len(p))).sum())

    return 2 * mag(np.concatenate([x, y])) - mag(x) - mag(y)


def _step(loss_fn: Callable, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """A zero-argument callable: forward and backward of ``loss_fn(x, y)``, clearing grads."""

    def run() -> None:
        x.grad = None
        if y.requires_grad:
            y.grad = None
        loss_fn(x, y).backward()

    return run


def compare(n: int, repeats: int) -> dict[str, Any]:
    """Time ours and GeomLoss's losses at ``n = m``; one row of the results."""
    from geomloss import SamplesLoss

    from magtorch.nn.losses import MagnitudeDistanceLoss

    x0, y0 = make_batches(n)
    t = median_scale(x0, y0)
    ours = MagnitudeDistanceLoss(t)
    x = x0.clone().requires_grad_()
    y_grad = y0.clone().requires_grad_()
    fns = {
        "magnitude": _step(ours, x, y0),
        "magnitude_both_grad": _step(ours, x, y_grad),
        "sinkhorn": _step(SamplesLoss("sinkhorn", blur=0.05), x, y0),
        "energy": _step(SamplesLoss("energy"), x, y0),
    }
    timings = interleaved(fns, repeats=repeats, warmup=1)
    with torch.no_grad():
        value = float(ours(x0, y0))
    row: dict[str, Any] = {"n": n, "m": n, "dim": DIM, "t": t, "loss": value}
    if n <= REFERENCE_MAX_N:
        reference = reference_distance(x0.double().numpy(), y0.double().numpy(), t)
        row["reference_loss"] = reference
        row["rel_error_vs_reference"] = abs(value - reference) / abs(reference)
    for name, timing in timings.items():
        row[f"{name}_s"] = timing.best
        row[f"{name}_timing"] = timing.as_dict()
    row["ratio_vs_sinkhorn"] = row["magnitude_s"] / row["sinkhorn_s"]
    row["ratio_vs_energy"] = row["magnitude_s"] / row["energy_s"]
    row["background_cpu_at_best"] = max(t.background_at_best for t in timings.values())
    return row


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``loss.json`` (``loss_quick.json``) to ``out_dir``.

    Args:
        quick: small sizes and one repetition (a smoke run; the numbers mean little).
        out_dir: directory for the JSON file (default ``outputs/benchmarks``).

    Returns:
        A JSON-serialisable dict: machine description, one row per size, and the goal.
    """
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rows = []
    for n in sizes:
        repeats = 1 if quick else (5 if n <= 1024 else 3)
        busy = None if quick else wait_for_quiet(max_wait=60.0)
        print(f"[{NAME}] n = m = {n}: forward+backward, best of {repeats} ...", flush=True)
        rows.append({**compare(n, repeats), "background_busy_before": busy})
    worst = max(r["ratio_vs_sinkhorn"] for r in rows)
    results: dict[str, Any] = {
        "benchmark": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "settings": {"dim": DIM, "shift": SHIFT, "seed": SEED, "scale": "1 / median distance"},
        "rows": rows,
        "goals": {
            "vs_sinkhorn": {
                "goal": f"<= {SINKHORN_GOAL}x Sinkhorn",
                "measured": worst,
                "met": worst <= SINKHORN_GOAL,
            }
        },
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def summary(results: dict[str, Any]) -> str:
    """Plain-text table of times and ratios for ``results`` from :func:`run`."""
    m = results["machine"]
    table = format_table(
        [
            "n = m",
            "t",
            "magnitude [s]",
            "(y grad too) [s]",
            "sinkhorn [s]",
            "energy [s]",
            "vs sinkhorn",
            "vs energy",
            "rel. err",
            "bg CPU",
        ],
        [
            [
                str(r["n"]),
                f"{r['t']:.4g}",
                f"{r['magnitude_s']:.3f}",
                f"{r['magnitude_both_grad_s']:.3f}",
                f"{r['sinkhorn_s']:.3f}",
                f"{r['energy_s']:.3f}",
                f"{r['ratio_vs_sinkhorn']:.2f}x",
                f"{r['ratio_vs_energy']:.1f}x",
                f"{r['rel_error_vs_reference']:.1e}" if "rel_error_vs_reference" in r else "-",
                f"{r['background_cpu_at_best']:.0%}",
            ]
            for r in results["rows"]
        ],
    )
    return "\n".join(
        [
            f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
            f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']} "
            f"({m['torch_blas']}, {m['torch_threads']} threads), magtorch @ {m['magtorch_git']}",
            "",
            table,
            "(times: forward + backward, best of k, interleaved; ratios: magnitude / peer; "
            "bg CPU: share of all cores used by other processes during the best samples)",
            "",
            *goal_lines(results["goals"], "x"),
            f"results written to {results.get('json_path', '?')}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: run, print the summary, return an exit status."""
    return cli(__doc__, run, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
