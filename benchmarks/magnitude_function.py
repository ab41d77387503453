"""Benchmark: the 30-scale magnitude function, magtorch against magnipy.

What is measured (everything in float64, same process, same data, same scales):

* data: ``n`` points drawn from N(0, I) in R^10 with a fixed seed, n in {1000, 2000, 4000};
* scales: ``linspace(t_conv / 30, t_conv, 30)`` where ``t_conv`` is the 0.95 convergence scale
  (``magtorch.convergence_scale``, computed once, outside the timed region). This is
  magnipy's own default grid (``magnipy.magnitude.scales.get_scales`` without the t=0 point);
* peer (end to end from points): ``scipy.spatial.distance.cdist`` then
  ``magnipy.magnitude.compute.compute_magnitude_from_distances(D, ts=ts, method="cholesky")``;
* ours (end to end from points): ``magtorch.magnitude(torch.from_numpy(x), torch.tensor(ts))``;
* agreement: ``max_t |Mag_magtorch(t) - Mag_magnipy(t)| / |Mag_magnipy(t)|``, and each
  library against an independent float64 LAPACK solve with ``Z_t = exp(-t D)`` (untimed);
* gradients at the largest n: forward and backward time of
  ``magtorch.magnitude(x.requires_grad_(), t).sum().backward()`` for the 30 scales and for the
  single scale ``t_conv``, and the backward/forward ratio.

Timing is best-of-k wall clock after one warm-up call, with torch's default thread count.

Goals: at least 2x faster than magnipy at n = 2000 with relative disagreement <= 1e-9, and
a backward pass costing at most 0.5x the forward pass at n = 4000.

Run it with ``python -m benchmarks.magnitude_function`` (``--quick`` for a fast smoke run);
results are printed as a table and written to ``outputs/benchmarks/magnitude_function.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import cdist

from benchmarks._common import (
    Timing,
    cli,
    format_table,
    goal_lines,
    interleaved,
    machine_info,
    timed_call,
    wait_for_quiet,
    write_json,
)

NAME = "magnitude_function"
TITLE = "30-scale magnitude function vs magnipy (N(0, I) in R^10, float64)"

DIM = 10
N_SCALES = 30
Q = 0.95
SEED = 0
FULL_SIZES = (1000, 2000, 4000)
QUICK_SIZES = (200, 400)
SPEEDUP_GOAL = 2.0  # at n = 2000
SPEEDUP_GOAL_N = 2000
AGREEMENT_GOAL = 1e-9
BACKWARD_GOAL = 0.5  # backward time / forward time at the largest n


def make_points(n: int, dim: int = DIM, seed: int = SEED) -> np.ndarray:
    """Draw ``n`` points from the standard normal distribution in R^dim (float64).

    Example:
        >>> make_points(5, dim=3).shape
        (5, 3)
    """
    rng = np.random.default_rng(seed + n)
    return rng.standard_normal((n, dim))


def benchmark_scales(x: np.ndarray, n_scales: int = N_SCALES, q: float = Q) -> np.ndarray:
    """magnipy's default grid ``linspace(t_conv / n_scales, t_conv, n_scales)``.

    ``t_conv`` is magtorch's ``q`` convergence scale of ``x``: ``Mag(t_conv X) = q n``.
    """
    import magtorch

    t_conv = float(magtorch.convergence_scale(torch.from_numpy(x), q=q))
    return np.linspace(t_conv / n_scales, t_conv, n_scales)


def magnipy_magnitude_function(x: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The peer: scipy ``cdist`` distances, then magnipy's Cholesky magnitude function."""
    from magnipy.magnitude.compute import compute_magnitude_from_distances

    distances = cdist(x, x)
    return np.asarray(compute_magnitude_from_distances(distances, ts=ts, method="cholesky"))


def magtorch_magnitude_function(x: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Ours: ``magtorch.magnitude`` on a float64 tensor of points and a 1-d tensor of scales."""
    import magtorch

    with torch.no_grad():
        mag = magtorch.magnitude(torch.from_numpy(x), torch.tensor(ts))
    return mag.numpy()


def reference_magnitude_function(x: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Independent float64 reference: ``1^T Z_t^{-1} 1`` with ``Z_t = exp(-t D)``, via LAPACK.

    Unlike magnipy (which raises ``exp(-D)`` to the power ``t``) this forms ``exp(-t D)``
    directly, so it tells whose rounding a disagreement comes from.
    """
    from scipy.linalg import cho_factor, cho_solve

    distances = cdist(x, x)
    ones = np.ones(len(x))
    out = np.empty(len(ts))
    for i, t in enumerate(ts):
        out[i] = cho_solve(cho_factor(np.exp(-t * distances)), ones).sum()
    return out


def relative_disagreement(ours: np.ndarray, reference: np.ndarray) -> float:
    """``max |ours - reference| / |reference|`` over all scales.

    Example:
        >>> relative_disagreement(np.array([1.0, 3.0]), np.array([1.0, 2.0]))
        0.5
    """
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"shape mismatch: ours {ours.shape} vs reference {reference.shape}")
    return float(np.max(np.abs(ours - reference) / np.abs(reference)))


def compare_function(n: int, repeats: int) -> dict[str, Any]:
    """Time both libraries on ``n`` points and compare their values."""
    x = make_points(n)
    ts = benchmark_scales(x)
    theirs = magnipy_magnitude_function(x, ts)  # also serves as warm-up
    ours = magtorch_magnitude_function(x, ts)
    reference = reference_magnitude_function(x, ts)
    timings = interleaved(
        {
            "magnipy": lambda: magnipy_magnitude_function(x, ts),
            "magtorch": lambda: magtorch_magnitude_function(x, ts),
        },
        repeats=repeats,
        warmup=0,  # the agreement calls above were the warm-up
    )
    t_magnipy, t_magtorch = timings["magnipy"].best, timings["magtorch"].best
    return {
        "n": n,
        "t_conv": float(ts[-1]),
        "magnipy_s": t_magnipy,
        "magtorch_s": t_magtorch,
        "speedup": t_magnipy / t_magtorch,
        "max_rel_disagreement": relative_disagreement(ours, theirs),
        "magtorch_vs_reference": relative_disagreement(ours, reference),
        "magnipy_vs_reference": relative_disagreement(theirs, reference),
        "magnitude_at_t_conv": float(ours[-1]),
        "background_cpu_at_best": max(
            timings["magnipy"].background_at_best, timings["magtorch"].background_at_best
        ),
        "magnipy_timing": timings["magnipy"].as_dict(),
        "magtorch_timing": timings["magtorch"].as_dict(),
    }


def time_forward_backward(x: np.ndarray, ts: np.ndarray, repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` forward and backward time of ``magnitude(x, t).sum().backward()``.

    Each repetition runs a fresh forward pass (timed) and then its backward pass (timed
    separately); one untimed warm-up repetition comes first.
    """
    import magtorch

    t = torch.tensor(ts)
    forward, backward, warm = Timing(), Timing(), Timing()
    grad_finite = True
    for rep in range(repeats + 1):  # the first repetition is the warm-up
        xt = torch.from_numpy(x).clone().requires_grad_()
        loss = timed_call(lambda xt=xt: magtorch.magnitude(xt, t).sum(), forward if rep else warm)
        timed_call(loss.backward, backward if rep else warm)
        assert xt.grad is not None
        grad_finite = grad_finite and bool(torch.isfinite(xt.grad).all())
    return {
        "n_scales": int(t.numel()),
        "forward_s": forward.best,
        "backward_s": backward.best,
        "backward_over_forward": backward.best / forward.best,
        "grad_finite": grad_finite,
        "background_cpu_at_best": max(forward.background_at_best, backward.background_at_best),
        "forward_timing": forward.as_dict(),
        "backward_timing": backward.as_dict(),
    }


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``magnitude_function.json`` to ``out_dir``.

    Args:
        quick: small sizes and one repetition (a smoke run; the numbers mean little).
        out_dir: directory for the JSON file (default ``outputs/benchmarks``).

    Returns:
        A JSON-serialisable dict: machine description, per-n comparison rows, gradient rows
        and whether each goal was met.
    """
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rows: list[dict[str, Any]] = []
    for n in sizes:
        repeats = 1 if quick else (3 if n <= 2000 else 2)
        busy = None if quick else wait_for_quiet(max_wait=60.0)
        print(f"[{NAME}] n={n}: magnitude function, best of {repeats} ...", flush=True)
        rows.append({**compare_function(n, repeats), "background_busy_before": busy})

    n_grad = sizes[-1]
    x = make_points(n_grad)
    ts = benchmark_scales(x)
    grad_rows: list[dict[str, Any]] = []
    for label, scales, grad_repeats in (("30 scales", ts, 2), ("1 scale (t_conv)", ts[-1:], 5)):
        grad_repeats = 1 if quick else grad_repeats
        busy = None if quick else wait_for_quiet(max_wait=60.0)
        print(f"[{NAME}] n={n_grad}: forward/backward, {label} ...", flush=True)
        row = time_forward_backward(x, scales, grad_repeats)
        row["background_busy_before"] = busy
        row["label"] = label
        row["n"] = n_grad
        grad_rows.append(row)

    goals: dict[str, Any] = {}
    at_goal_n = [r for r in rows if r["n"] == SPEEDUP_GOAL_N]
    if at_goal_n:
        r = at_goal_n[0]
        goals["speedup_at_2000"] = {
            "goal": f">= {SPEEDUP_GOAL}x",
            "measured": r["speedup"],
            "met": r["speedup"] >= SPEEDUP_GOAL,
        }
    goals["agreement"] = {
        "goal": f"<= {AGREEMENT_GOAL:g}",
        "measured": max(r["max_rel_disagreement"] for r in rows),
        "met": all(r["max_rel_disagreement"] <= AGREEMENT_GOAL for r in rows),
    }
    goals["backward_over_forward"] = {
        "goal": f"<= {BACKWARD_GOAL}",
        "measured": max(g["backward_over_forward"] for g in grad_rows),
        "met": all(g["backward_over_forward"] <= BACKWARD_GOAL for g in grad_rows),
    }
    results: dict[str, Any] = {
        "benchmark": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "settings": {"dim": DIM, "n_scales": N_SCALES, "q": Q, "seed": SEED},
        "function": rows,
        "gradient": grad_rows,
        "goals": goals,
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def summary(results: dict[str, Any]) -> str:
    """Plain-text tables (times, ratios, agreement, goals) for ``results`` from :func:`run`."""
    m = results["machine"]
    lines = [
        f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
        f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']} "
        f"({m['torch_blas']}, {m['torch_threads']} threads), scipy {m['scipy']} "
        f"({m['numpy_scipy_blas']}), magnipy {m['magnipy']}, magtorch @ {m['magtorch_git']}",
        "",
        format_table(
            [
                "n",
                "t_conv",
                "magnipy [s]",
                "magtorch [s]",
                "speed-up",
                "max rel. diff",
                "magtorch vs ref",
                "magnipy vs ref",
                "bg CPU",
            ],
            [
                [
                    str(r["n"]),
                    f"{r['t_conv']:.4g}",
                    f"{r['magnipy_s']:.3f}",
                    f"{r['magtorch_s']:.3f}",
                    f"{r['speedup']:.2f}x",
                    f"{r['max_rel_disagreement']:.1e}",
                    f"{r['magtorch_vs_reference']:.1e}",
                    f"{r['magnipy_vs_reference']:.1e}",
                    f"{r['background_cpu_at_best']:.0%}",
                ]
                for r in results["function"]
            ],
        ),
        "",
        format_table(
            ["n", "scales", "forward [s]", "backward [s]", "backward/forward", "bg CPU"],
            [
                [
                    str(g["n"]),
                    g["label"],
                    f"{g['forward_s']:.3f}",
                    f"{g['backward_s']:.3f}",
                    f"{g['backward_over_forward']:.2f}",
                    f"{g['background_cpu_at_best']:.0%}",
                ]
                for g in results["gradient"]
            ],
        ),
        "(bg CPU: share of all cores used by other processes during the best sample)",
        "",
    ]
    lines.extend(goal_lines(results["goals"]))
    lines.append(f"results written to {results.get('json_path', '?')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: run, print the summary, return an exit status."""
    return cli(__doc__, run, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
