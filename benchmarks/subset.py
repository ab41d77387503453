"""Benchmark: subset approximations of magnitude against the exact dense solve, n in {2000, 10000}.

What is measured (float64, CPU, same process), on ``n`` points from ``N(0, I)`` in ``R^2``
(``numpy.random.default_rng(0)``; the setting of Andreeva et al.'s Figure 5) at ``t = 1``:

* **exact** (the peer): ``magtorch.magnitude(x, 1.0, solver="cholesky")`` — distances, the
  ``n x n`` similarity matrix and a dense Cholesky solve;
* **greedy**: ``magtorch.subset.greedy_subset(x, 1.0, tol=tol)`` for ``tol`` in
  :data:`GREEDY_TOLS` (stop when the best gain is below ``tol * Mag(S)``); ``O(n k)`` per step;
* **discrete centres**: ``DiscreteCenterHierarchy(x, radius=r)`` then ``curve(1.0,
  max_size=k)`` for the paper's first radius ``r = 1`` and a finer ``r = 0.05``, at the subset
  sizes ``k`` greedy chose (time = build + curve; the build is shared by every scale and size);
* **centres, 30 scales** (``n <= SCALES_MAX_N`` only): the same hierarchy's curves for 30
  log-spaced scales at once (``t`` in [0.1, 10]), at ``k = CURVE_K``, against 30 exact dense
  solves (one batched call).

Reported: best-of-k wall time, ``|S|``, relative error ``|Mag(S) - Mag(X)| / Mag(X)``, and the
speed-up ``time(exact) / time(method)``. Subset magnitudes are lower bounds (magnitude is
monotone under inclusion here), so the error is ``1 - Mag(S) / Mag(X)``.

Run it with ``python -m benchmarks.subset`` (``--quick`` for a smoke run); results are printed
and written to ``outputs/benchmarks/subset.json``. On a shared machine, run it under
``flock /tmp/magtorch-bench.lock``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    Timing,
    best_of,
    cli,
    format_table,
    machine_info,
    wait_for_quiet,
    write_json,
)

NAME = "subset"
TITLE = "Subset approximations vs exact magnitude, N(0, I) in R^2, t = 1 (float64 CPU)"

SEED = 0
T = 1.0
FULL_SIZES = (2000, 10000)
QUICK_SIZES = (300,)
GREEDY_TOLS = (1e-2, 1e-3, 1e-4)
RADII = (1.0, 0.05)
N_SCALES = 30
CURVE_K = 500
SCALES_MAX_N = 2000


def make_points(n: int, seed: int = SEED) -> np.ndarray:
    """``n`` points from ``N(0, I)`` in ``R^2``.

    Example:
        >>> make_points(4).shape
        (4, 2)
    """
    return np.random.default_rng(seed).standard_normal((n, 2))


def _timed(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> tuple[Timing, Any]:
    """Best-of-``repeats`` timing of ``fn()`` and the value of its last call."""
    box: list[Any] = []
    timing = best_of(lambda: box.append(fn()), repeats, warmup)
    return timing, box[-1]


def measure(n: int, repeats: int) -> dict[str, Any]:
    """Time the exact solve, greedy at each tolerance and the hierarchy at each radius."""
    import magtorch
    from magtorch.subset import DiscreteCenterHierarchy, greedy_subset

    x = torch.from_numpy(make_points(n))
    exact_rep = 1 if n > 5000 else repeats
    t_exact, exact_t = _timed(lambda: magtorch.magnitude(x, T, solver="cholesky"), exact_rep)
    exact = float(exact_t)
    rows: list[dict[str, Any]] = []
    sizes = []
    for tol in GREEDY_TOLS:
        timing, res = _timed(lambda tol=tol: greedy_subset(x, T, tol=tol), repeats, warmup=1)
        mag = float(res.magnitude[-1])
        sizes.append(res.size)
        rows.append(
            {
                "method": "greedy",
                "param": f"tol {tol:g}",
                "size": res.size,
                "seconds": timing.best,
                "timing": timing.as_dict(),
                "magnitude": mag,
                "rel_error": abs(mag - exact) / exact,
            }
        )
    for r in RADII:
        build, hier = _timed(lambda r=r: DiscreteCenterHierarchy(x, radius=r), repeats)
        for k in sizes:
            curve_t, curve = _timed(lambda k=k, h=hier: h.curve(T, max_size=k), repeats, 1)
            mag = float(curve[-1])
            rows.append(
                {
                    "method": "centres",
                    "param": f"radius {r:g}",
                    "size": k,
                    "seconds": build.best + curve_t.best,
                    "build_s": build.best,
                    "curve_s": curve_t.best,
                    "height": hier.height,
                    "magnitude": mag,
                    "rel_error": abs(mag - exact) / exact,
                }
            )
    for row in rows:
        row["speedup"] = t_exact.best / row["seconds"]
    # 30 scales from one order against 30 exact solves (at n <= SCALES_MAX_N: 30 dense
    # factorisations of n = 10^4 would take ~20 minutes here and 24 GB batched)
    scales_row: dict[str, Any] | None = None
    if n <= SCALES_MAX_N:
        scales = torch.logspace(-1, 1, N_SCALES, dtype=torch.float64)
        k = min(CURVE_K, n)
        t_exact30, exact30 = _timed(
            lambda: magtorch.magnitude(x, scales, solver="cholesky"), repeats
        )
        t_curve30, approx30 = _timed(
            lambda: DiscreteCenterHierarchy(x, radius=RADII[0]).curve(scales, max_size=k)[:, -1],
            repeats,
        )
        err30 = ((approx30 - exact30).abs() / exact30).numpy()
        scales_row = {
            "n_scales": N_SCALES,
            "k": k,
            "exact_s": t_exact30.best,
            "centres_s": t_curve30.best,
            "speedup": t_exact30.best / t_curve30.best,
            "rel_error_min": float(err30.min()),
            "rel_error_max": float(err30.max()),
            "rel_error_at_t1": float(err30[np.argmin(np.abs(scales.numpy() - 1.0))]),
        }
    return {
        "n": n,
        "exact": exact,
        "exact_s": t_exact.best,
        "exact_timing": t_exact.as_dict(),
        "rows": rows,
        "scales": scales_row,
        "background_cpu_at_best": t_exact.background_at_best,
    }


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``subset.json`` to ``out_dir``.

    Args:
        quick: small size and one repetition (a smoke run; the numbers mean little).
        out_dir: directory of the JSON file (default ``outputs/benchmarks``).
    """
    per_size = []
    for n in QUICK_SIZES if quick else FULL_SIZES:
        busy = None if quick else wait_for_quiet(max_wait=60.0)
        row = measure(n, repeats=1 if quick else 3)
        row["background_cpu_before"] = busy
        per_size.append(row)
    results: dict[str, Any] = {
        "name": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "sizes": per_size,
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def summary(results: dict[str, Any]) -> str:
    """Plain-text tables of ``results`` from :func:`run`."""
    m = results["machine"]
    lines = [
        f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
        f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']}, "
        f"magtorch @ {m['magtorch_git']}",
    ]
    for s in results["sizes"]:
        lines += [
            "",
            f"n = {s['n']}: exact Mag(X) = {s['exact']:.6f} in {s['exact_s']:.3f} s "
            "(dense Cholesky, the peer)",
            format_table(
                ["method", "parameter", "|S|", "time [s]", "speed-up", "rel. error"],
                [
                    [
                        r["method"],
                        r["param"],
                        str(r["size"]),
                        f"{r['seconds']:.3f}",
                        f"{r['speedup']:.1f}x",
                        f"{r['rel_error']:.2e}",
                    ]
                    for r in s["rows"]
                ],
            ),
        ]
        sc = s["scales"]
        if sc is not None:
            lines.append(
                f"{sc['n_scales']} scales at once, centres (radius {RADII[0]:g}) to |S| = "
                f"{sc['k']}: {sc['centres_s']:.3f} s vs {sc['exact_s']:.3f} s exact "
                f"({sc['speedup']:.1f}x), rel. error {sc['rel_error_min']:.2e}.."
                f"{sc['rel_error_max']:.2e} ({sc['rel_error_at_t1']:.2e} at t = 1)"
            )
    lines.append("(speed-up = exact time / method time; centres time = build + curve)")
    lines.append(f"results written to {results.get('json_path', '?')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: run, print the summary, return an exit status."""
    return cli(__doc__, run, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
