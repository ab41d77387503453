"""Benchmark: magnitude clustering of n = 2000 points in R^2 (goal: under 30 s).

What is measured (float64, CPU, same process):

* data: four Gaussian blobs in R^2 (centres (0,0), (4,0), (0,4), (4,4), standard deviation
  0.5, ``n / 4`` points each, ``numpy.random.default_rng(0)``), n in {500, 1000, 2000};
* fixed threshold: ``MagnitudeClustering(threshold=0.05).fit(x)`` (one run of Algorithm 4);
* automatic threshold: ``MagnitudeClustering().fit(x)`` (the one-cluster run, then the
  40-point sweep; grid points certified identical to an earlier run are not re-run);
* the end-to-end time includes distances and the similarity matrix.

Timing is best-of-k wall clock after one warm-up call. The clustering loop runs on one thread
(see :mod:`magtorch.cluster`); distances use torch's default thread count.

Goal: both under 30 s at n = 2000.

Run it with ``python -m benchmarks.clustering`` (``--quick`` for a smoke run); results are
printed and written to ``outputs/benchmarks/clustering.json``. On a shared machine, run it
under ``flock /tmp/magtorch-bench.lock``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    best_of,
    cli,
    format_table,
    goal_lines,
    machine_info,
    wait_for_quiet,
    write_json,
)

NAME = "clustering"
TITLE = "Magnitude clustering, 4 blobs in R^2 (float64 CPU)"

SEED = 0
FIXED_THRESHOLD = 0.05
FULL_SIZES = (500, 1000, 2000)
QUICK_SIZES = (200,)
GOAL_S = 30.0
GOAL_N = 2000
CENTRES = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])


def make_points(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian blobs, ``n // 4`` points each (the last takes the remainder).

    Example:
        >>> x, y = make_points(10)
        >>> x.shape, np.bincount(y).tolist()
        ((10, 2), [2, 2, 2, 4])
    """
    rng = np.random.default_rng(seed)
    sizes = [n // 4] * 3 + [n - 3 * (n // 4)]
    y = np.repeat(np.arange(4), sizes)
    return CENTRES[y] + 0.5 * rng.standard_normal((n, 2)), y


def measure(n: int, repeats: int) -> dict[str, Any]:
    """Time the fixed-threshold and automatic fits at size ``n``."""
    from sklearn.metrics import adjusted_rand_score

    from magtorch.cluster import MagnitudeClustering

    x, y = make_points(n)
    xt = torch.from_numpy(x)
    fixed = MagnitudeClustering(threshold=FIXED_THRESHOLD)
    auto = MagnitudeClustering()
    t_fixed = best_of(lambda: fixed.fit(xt), repeats=repeats, warmup=1)
    t_auto = best_of(lambda: auto.fit(xt), repeats=repeats, warmup=0)
    return {
        "n": n,
        "fixed_s": t_fixed.best,
        "fixed": t_fixed.as_dict(),
        "fixed_clusters": fixed.n_clusters_,
        "fixed_ari": float(adjusted_rand_score(y, fixed.labels_.numpy())),
        "auto_s": t_auto.best,
        "auto": t_auto.as_dict(),
        "auto_clusters": auto.n_clusters_,
        "auto_threshold": auto.threshold_,
        "auto_ari": float(adjusted_rand_score(y, auto.labels_.numpy())),
        "auto_runs": auto.sweep_.n_runs,
        "auto_grid": int(auto.sweep_.thresholds.numel()),
        "background_cpu_at_best": t_auto.background_at_best,
    }


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``clustering.json`` to ``out_dir``.

    Args:
        quick: small size and one repetition (a smoke run; the numbers mean little).
        out_dir: directory of the JSON file (default ``outputs/benchmarks``).
    """
    rows = []
    for n in QUICK_SIZES if quick else FULL_SIZES:
        busy = None if quick else wait_for_quiet(max_wait=60.0)
        row = measure(n, repeats=1 if quick else 3 if n < GOAL_N else 2)
        row["background_cpu_before"] = busy
        rows.append(row)
    goal_row = next((r for r in rows if r["n"] == GOAL_N), rows[-1])
    worst = max(goal_row["fixed_s"], goal_row["auto_s"])
    results: dict[str, Any] = {
        "name": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "rows": rows,
        "goals": {
            "time": {
                "goal": f"fixed and automatic fits under {GOAL_S:g} s at n = {GOAL_N}",
                "measured": worst,
                "n": goal_row["n"],
                # None: the goal's size was not run (--quick), so it is neither met nor missed.
                "met": bool(worst < GOAL_S) if goal_row["n"] == GOAL_N else None,
            }
        },
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def summary(results: dict[str, Any]) -> str:
    """Plain-text table of ``results`` from :func:`run`."""
    m = results["machine"]
    lines = [
        f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
        f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']}, "
        f"magtorch @ {m['magtorch_git']}",
        "",
        format_table(
            [
                "n",
                f"fixed {FIXED_THRESHOLD:g} [s]",
                "clusters",
                "ARI",
                "auto [s]",
                "runs/grid",
                "clusters",
                "threshold",
                "ARI",
                "goal ratio",
                "bg CPU",
            ],
            [
                [
                    str(r["n"]),
                    f"{r['fixed_s']:.2f}",
                    str(r["fixed_clusters"]),
                    f"{r['fixed_ari']:.3f}",
                    f"{r['auto_s']:.2f}",
                    f"{r['auto_runs']}/{r['auto_grid']}",
                    str(r["auto_clusters"]),
                    f"{r['auto_threshold']:.3g}",
                    f"{r['auto_ari']:.3f}",
                    f"{max(r['fixed_s'], r['auto_s']) / GOAL_S:.2f}",
                    f"{r['background_cpu_at_best']:.0%}",
                ]
                for r in results["rows"]
            ],
        ),
        "(goal ratio: slower fit / 30 s; bg CPU: other processes' share during the best sample)",
        "",
    ]
    lines.extend(goal_lines(results["goals"], " s"))
    lines.append(f"results written to {results.get('json_path', '?')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: run, print the summary, return an exit status."""
    return cli(__doc__, run, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
