"""Subset approximations and iterative solvers against the exact magnitude (Andreeva et al.,
"Approximating Metric Magnitude of Point Sets", AAAI 2025, Figures 3 and 4).

Part 1, subset selection (the paper's Figure 3): for iris, wine, breast cancer and digits
(scikit-learn's copies, every feature standardised to mean 0 and variance 1; the paper does not
say how it scaled the data) at scale ``t = 1`` (the paper's ``zeta = exp(-d)``), the curve
``Mag(S)`` against ``|S|`` for

* greedy maximisation (``magtorch.subset.greedy_subset``, started at point 0, run to ``|S| = n``
  with ``tol = 0``),
* discrete centres (``magtorch.subset.DiscreteCenterHierarchy`` with the paper's radii
  ``2^(i-1)``, traversed top-down),
* random orders (``RANDOM_SEEDS`` permutations, ``numpy.random.default_rng(seed)``),
* and the exact ``Mag(X)`` (``magtorch.magnitude``, dense Cholesky).

The table gives the subset size each method needs to reach 90 / 95 / 99 % of ``Mag(X)`` and the
wall time of each method. The hierarchy's order does not depend on ``t``, so a second table
evaluates it at four scales at once.

Part 2, iterative algorithms (the paper's Figure 4): ``N_ITER`` points from ``N(0, I)`` in
``R^2`` (``default_rng(0)``), ``t = 1``: iterative normalisation (``solver=
"iterative_normalization"``) and gradient descent (``solver="gradient_descent"``, exact line
search, and the paper's ``lr = 0.005, momentum = 0.9``) against the dense Cholesky value. The
per-iteration error curves are traced by running the two update rules on one similarity
matrix (one product ``Z w`` per step, as the registered solvers do) and checked against
``magtorch.solve(..., solver=..., max_iter=k)`` at ``k = CHECK_ITER`` (the same magnitude to
1e-9 relative). Iterations to converge are those reported by ``magtorch.solve`` at its default
tolerance (relative residual ``1e-6``) and the first iteration of the trace whose relative error
in the magnitude is below 1e-2 / 1e-3 / 1e-4.

Usage::

    python -m experiments.subset_approximation [--out DIR] [--quick]

Writes ``report.md``, ``results.json``, ``subset_curves.png`` and ``iterative.png`` to
``outputs/subset_approximation`` (or ``DIR``). ``--quick`` subsamples every dataset to at most
``QUICK_MAX_POINTS`` points, uses ``N_ITER_QUICK`` Gaussian points and shorter traces.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import _markdown
from experiments.magnitude_report import _loader, standardise

DEFAULT_OUT = Path("outputs") / "subset_approximation"
DATASETS = ("iris", "wine", "breast_cancer", "digits")
T = 1.0
MULTI_T = (0.25, 0.5, 1.0, 2.0)
RADIUS = 1.0
SENS_RADII = (1.0, 0.25, 0.05)
RANDOM_SEEDS = (0, 1, 2, 3, 4)
LEVELS = (0.90, 0.95, 0.99)
QUICK_MAX_POINTS = 80
N_ITER = 10_000
N_ITER_QUICK = 400
IN_STEPS, IN_STEPS_QUICK = 100, 30
GD_STEPS, GD_STEPS_QUICK = 300, 30
PAPER_GD_STEPS = 50
CHECK_ITER = 20
PAPER_LR, PAPER_MOMENTUM = 0.005, 0.9
SEED = 0

TABLE_HEADER = (
    "| dataset | n | d | Mag(X) | greedy k90/k95/k99 | centres k90/k95/k99 "
    "| random k90/k95/k99 | greedy [s] | centres [s] | exact [s] |"
)
MULTI_HEADER = "| dataset | " + " | ".join(f"t = {t:g}" for t in MULTI_T) + " |"
RADIUS_HEADER = "| dataset | greedy | " + " | ".join(f"radius {r:g}" for r in SENS_RADII) + " |"
ITER_HEADER = (
    "| method | iterations (solve, rtol 1e-6) | converged | rel. error at end "
    "| it. to 1e-2 | it. to 1e-3 | it. to 1e-4 | time [s] |"
)


@dataclass
class Curves:
    """Curves ``Mag(S)`` (length ``n``) of one dataset and the times of the methods."""

    name: str
    x: np.ndarray
    exact: float
    greedy: np.ndarray
    centres: np.ndarray
    random: np.ndarray  # (seeds, n)
    seconds: dict[str, float] = field(default_factory=dict)
    multi: dict[float, dict[str, float]] = field(default_factory=dict)
    radius_k95: dict[float, int] = field(default_factory=dict)


def load(name: str, *, quick: bool = False) -> np.ndarray:
    """A dataset of :data:`DATASETS`, standardised; ``quick``: at most
    :data:`QUICK_MAX_POINTS` points (``default_rng(0)`` subsample).

    Example:
        >>> load("iris").shape
        (150, 4)
    """
    x = standardise(_loader(name)().data)
    if quick and len(x) > QUICK_MAX_POINTS:
        keep = np.sort(np.random.default_rng(SEED).choice(len(x), QUICK_MAX_POINTS, replace=False))
        x = x[keep]
    return x


def size_to_reach(curve: np.ndarray, target: float) -> int:
    """Smallest ``k`` with ``curve[k - 1] >= target`` (``len(curve)`` if never reached).

    Example:
        >>> size_to_reach(np.array([1.0, 1.5, 1.9, 2.0]), 1.8)
        3
    """
    hit = np.nonzero(curve >= target)[0]
    return int(hit[0]) + 1 if hit.size else len(curve)


def subset_curves(name: str, *, quick: bool = False) -> Curves:
    """The four curves of one dataset at ``t = T`` (float64, CPU)."""
    import magtorch
    from magtorch.subset import DiscreteCenterHierarchy, greedy_subset, prefix_magnitudes

    x = load(name, quick=quick)
    xt = torch.from_numpy(x)
    n = len(x)
    start = time.perf_counter()
    exact = float(magtorch.magnitude(xt, T, solver="cholesky"))
    t_exact = time.perf_counter() - start
    start = time.perf_counter()
    greedy = greedy_subset(xt, T, tol=0.0)
    t_greedy = time.perf_counter() - start
    # duplicates are never selected: the curve is flat after the last distinct point
    g = np.full(n, float(greedy.magnitude[-1]))
    g[: greedy.size] = greedy.magnitude.numpy()
    start = time.perf_counter()
    hier = DiscreteCenterHierarchy(xt, radius=RADIUS)
    centres = hier.curve(T).numpy()
    t_centres = time.perf_counter() - start
    rand = np.stack(
        [
            prefix_magnitudes(
                xt, torch.from_numpy(np.random.default_rng(s).permutation(n)), T
            ).numpy()
            for s in RANDOM_SEEDS
        ]
    )
    out = Curves(
        name,
        x,
        exact,
        g,
        centres,
        rand,
        seconds={"exact": t_exact, "greedy": t_greedy, "centres": t_centres},
    )
    # one order, every scale: sizes to reach 95 % along the hierarchy's order (all scales from
    # one order) and along a greedy run made separately at each scale
    multi_curves = hier.curve(torch.tensor(MULTI_T)).numpy()
    exact_t = magtorch.magnitude(xt, torch.tensor(MULTI_T), solver="cholesky").numpy()
    for i, t in enumerate(MULTI_T):
        greedy_t = greedy_subset(xt, t, tol=0.0).magnitude.numpy()
        out.multi[t] = {
            "exact": float(exact_t[i]),
            "centres_k95": size_to_reach(multi_curves[i], 0.95 * exact_t[i]),
            "greedy_k95": size_to_reach(greedy_t, 0.95 * exact_t[i]),
        }
    for r in SENS_RADII:
        curve = DiscreteCenterHierarchy(xt, radius=r).curve(T).numpy()
        out.radius_k95[r] = size_to_reach(curve, 0.95 * exact)
    return out


# ---------------------------------------------------------------------------- iterative


def gaussian_points(n: int, seed: int = SEED) -> np.ndarray:
    """``n`` points from ``N(0, I)`` in ``R^2``.

    Example:
        >>> gaussian_points(5).shape
        (5, 2)
    """
    return np.random.default_rng(seed).standard_normal((n, 2))


def trace_iterative_normalization(z: torch.Tensor, steps: int) -> np.ndarray:
    """``sum(w_k)`` for ``k = 0..steps`` of ``w <- w / (Z w)`` from ``w = 1`` (Algorithm 1)."""
    w = torch.ones(z.shape[0], dtype=z.dtype)
    mags = [float(w.sum())]
    for _ in range(steps):
        w = w / (z @ w)
        mags.append(float(w.sum()))
    return np.array(mags)


def trace_gradient_descent(
    z: torch.Tensor, steps: int, lr: float | None = None, momentum: float = 0.0
) -> np.ndarray:
    """``sum(w_k)`` of gradient descent on ``|Z w - 1|^2 / 2`` from ``w = 1``: exact line search
    (``lr=None``) or fixed ``lr`` with heavy-ball ``momentum``, as the registered solver."""
    b = torch.ones(z.shape[0], dtype=z.dtype)
    w = b.clone()
    prev = w.clone()
    r = z @ w - b
    mags = [float(w.sum())]
    for _ in range(steps):
        g = z @ r
        if lr is None:
            zg = z @ g
            alpha = float(g @ g) / max(float(zg @ zg), 1e-300)
            w, prev = w - alpha * g, w
            r = r - alpha * zg
        else:
            w, prev = w - lr * g + momentum * (w - prev), w
            r = z @ w - b
        mags.append(float(w.sum()))
        if not math.isfinite(mags[-1]):
            mags += [math.nan] * (steps + 1 - len(mags))
            break
    return np.array(mags)


def first_below(errors: np.ndarray, level: float) -> int | None:
    """First iteration whose relative error is below ``level`` and stays below (None: never).

    Example:
        >>> first_below(np.array([1.0, 0.1, 0.001, 0.02, 0.001, 0.0001]), 0.01)
        4
    """
    ok = np.nan_to_num(errors, nan=np.inf) < level
    if not ok[-1]:
        return None
    bad = np.nonzero(~ok)[0]
    return int(bad[-1]) + 1 if bad.size else 0


def iterative_comparison(*, quick: bool = False) -> dict[str, Any]:
    """Part 2: iterative normalisation and gradient descent against dense Cholesky."""
    import magtorch
    from magtorch.solvers.gradient_descent import GradientDescentSolver

    n = N_ITER_QUICK if quick else N_ITER
    in_steps = IN_STEPS_QUICK if quick else IN_STEPS
    gd_steps = GD_STEPS_QUICK if quick else GD_STEPS
    x = torch.from_numpy(gaussian_points(n))
    start = time.perf_counter()
    exact = float(magtorch.magnitude(x, T, solver="cholesky"))
    t_exact = time.perf_counter() - start
    z = torch.exp(-T * magtorch.pairwise_distances(x))
    traces = {
        "iterative normalisation": trace_iterative_normalization(z, in_steps),
        "gradient descent (line search)": trace_gradient_descent(z, gd_steps),
        f"gradient descent (lr {PAPER_LR:g}, momentum {PAPER_MOMENTUM:g})": trace_gradient_descent(
            z, min(gd_steps, PAPER_GD_STEPS), lr=PAPER_LR, momentum=PAPER_MOMENTUM
        ),
    }
    del z
    solvers: dict[str, Any] = {
        "iterative normalisation": "iterative_normalization",
        "gradient descent (line search)": "gradient_descent",
        f"gradient descent (lr {PAPER_LR:g}, momentum {PAPER_MOMENTUM:g})": GradientDescentSolver(
            lr=PAPER_LR, momentum=PAPER_MOMENTUM
        ),
    }
    rows: dict[str, dict[str, Any]] = {}
    for name, solver in solvers.items():
        trace = traces[name]
        err = np.abs(trace - exact) / exact
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check = float(magtorch.magnitude(x, T, solver=solver, max_iter=CHECK_ITER))
            start = time.perf_counter()
            cap = (300 if quick else 2000) if name == "iterative normalisation" else len(trace) - 1
            res = magtorch.solve(x, T, solver=solver, max_iter=cap)
            seconds = time.perf_counter() - start
        traced = float(trace[CHECK_ITER]) if len(trace) > CHECK_ITER else math.nan
        same = (
            abs(check - traced) <= 1e-9 * abs(traced)
            if math.isfinite(traced)
            else not math.isfinite(check) or abs(check) > 1e30
        )
        if len(trace) > CHECK_ITER and not same:
            raise RuntimeError(
                f"{name}: traced magnitude {traced!r} at iteration {CHECK_ITER} differs from "
                f"magtorch.solve(max_iter={CHECK_ITER}) = {check!r}"
            )
        rows[name] = {
            "trace": trace.tolist(),
            "rel_error": err.tolist(),
            "check_iter": CHECK_ITER,
            "check_solve": check,
            "check_trace": traced,
            "solve_iterations": int(res.info.iterations),
            "solve_max_iter": cap,
            "solve_converged": bool(res.info.converged),
            "solve_residual": float(res.info.residual),
            "solve_magnitude": float(res.magnitude),
            "solve_rel_error": abs(float(res.magnitude) - exact) / exact,
            "solve_seconds": seconds,
            "notes": list(res.info.notes),
            "to_1e-2": first_below(err, 1e-2),
            "to_1e-3": first_below(err, 1e-3),
            "to_1e-4": first_below(err, 1e-4),
        }
    return {"n": n, "t": T, "exact": exact, "exact_seconds": t_exact, "methods": rows}


# ---------------------------------------------------------------------------- figures, report


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_subset_figure(curves: Sequence[Curves], path: Path) -> Path:
    """Mag(S) vs |S| for every dataset (Figure 3 of the paper)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6))
    for ax, c in zip(np.atleast_1d(axes), curves, strict=True):
        k = np.arange(1, len(c.x) + 1)
        ax.plot(k, c.greedy, color="tab:blue", lw=1.6, label="greedy maximisation")
        ax.plot(k, c.centres, color="tab:orange", lw=1.6, label="discrete centres")
        ax.plot(k, c.random.mean(0), color="tab:green", lw=1.2, label="random (mean)")
        ax.fill_between(k, c.random.min(0), c.random.max(0), color="tab:green", alpha=0.2)
        ax.axhline(c.exact, color="k", ls="--", lw=1, label="exact Mag(X)")
        ax.set_title(f"{c.name} (n={len(c.x)}, d={c.x.shape[1]}), t = {T:g}", fontsize=10)
        ax.set_xlabel("|S|")
        ax.set_ylabel("Mag(S)")
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_iterative_figure(result: dict[str, Any], path: Path) -> Path:
    """Relative error and magnitude estimate per iteration (Figure 4 b/c of the paper)."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, row in result["methods"].items():
        err = np.array(row["rel_error"], dtype=float)
        ax1.semilogy(np.arange(len(err)), err, lw=1.4, label=name)
        trace = np.array(row["trace"], dtype=float)
        # diverging or far-off iterates (gradient descent starts at sum(w) = n) leave the panel
        trace[~(np.abs(trace) < 10 * result["exact"])] = np.nan
        ax2.plot(np.arange(len(trace)), trace, lw=1.4, label=name)
    ax1.set_ylim(1e-6, 1e3)
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("|Mag_k - Mag| / Mag")
    ax1.set_title(f"relative error, n = {result['n']} from N(0, I) in R^2, t = {T:g}", fontsize=10)
    ax1.legend(fontsize=8)
    ax2.axhline(result["exact"], color="k", ls="--", lw=1, label="exact (Cholesky)")
    ax2.set_ylim(0, 3 * result["exact"])
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("sum of weights (shown where < 10 Mag)")
    ax2.set_title("magnitude estimate per iteration", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ks(curve: np.ndarray, exact: float) -> str:
    return "/".join(str(size_to_reach(curve, q * exact)) for q in LEVELS)


def _random_ks(c: Curves) -> str:
    return "/".join(
        f"{np.mean([size_to_reach(r, q * c.exact) for r in c.random]):.0f}" for q in LEVELS
    )


def _it(value: int | None) -> str:
    return "never" if value is None else str(value)


def write_report(
    out: Path,
    curves: Sequence[Curves],
    iterative: dict[str, Any],
    figures: tuple[Path, Path],
    quick: bool,
) -> Path:
    """Write ``report.md``."""
    lines = [
        "# Subset approximations and iterative solvers (Andreeva et al., AAAI 2025)",
        "",
        f"{'[quick run] ' if quick else ''}Features standardised, t = {T:g}, float64 CPU. "
        "kq = the smallest |S| with Mag(S) >= q Mag(X) along each method's order (random: mean "
        f"over {len(RANDOM_SEEDS)} permutations). Greedy runs to |S| = n; discrete centres "
        f"use radii {RADIUS:g} * 2^(i-1); times include building the order and its curve.",
        "",
        TABLE_HEADER,
        "|" + "---|" * 10,
    ]
    for c in curves:
        lines.append(
            f"| {c.name} | {len(c.x)} | {c.x.shape[1]} | {c.exact:.4f} | "
            f"{_ks(c.greedy, c.exact)} | {_ks(c.centres, c.exact)} | {_random_ks(c)} | "
            f"{c.seconds['greedy']:.3f} | {c.seconds['centres']:.3f} | {c.seconds['exact']:.3f} |"
        )
    lines += [
        "",
        f"![subset curves]({figures[0].name})",
        "",
        "## One hierarchy order, several scales",
        "",
        "k95 (smallest |S| with Mag(S) >= 0.95 Mag(X)) at each scale: discrete centres use one "
        "order for all scales (one Cholesky factorisation per scale gives all curves); greedy "
        "is run again at every scale.",
        "",
        MULTI_HEADER,
        "|---|" + "---|" * len(MULTI_T),
    ]
    for c in curves:
        cells = [
            f"centres {c.multi[t]['centres_k95']}, greedy {c.multi[t]['greedy_k95']}"
            for t in MULTI_T
        ]
        lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Discrete centres: the first radius (t = {T:g}, k95)",
        "",
        "The paper's radii are 2^(i-1) (first radius 1); smaller first radii add levels below, "
        "which order the points that the coarser hierarchy leaves in id order.",
        "",
        RADIUS_HEADER,
        "|---|---|" + "---|" * len(SENS_RADII),
    ]
    for c in curves:
        g = size_to_reach(c.greedy, 0.95 * c.exact)
        cells = [str(c.radius_k95[r]) for r in SENS_RADII]
        lines.append(f"| {c.name} | {g} | " + " | ".join(cells) + " |")
    it = iterative
    lines += [
        "",
        f"## Iterative algorithms, n = {it['n']} points from N(0, I) in R^2, t = {T:g}",
        "",
        f"Exact magnitude (dense Cholesky): {it['exact']:.6f} in {it['exact_seconds']:.2f} s.",
        "",
        ITER_HEADER,
        "|" + "---|" * 8,
    ]
    for name, row in it["methods"].items():
        lines.append(
            f"| {name} | {row['solve_iterations']} (cap {row['solve_max_iter']}) | "
            f"{row['solve_converged']} | {row['solve_rel_error']:.2e} | {_it(row['to_1e-2'])} | "
            f"{_it(row['to_1e-3'])} | {_it(row['to_1e-4'])} | {row['solve_seconds']:.2f} |"
        )
    lines += [
        "",
        "'it. to 1e-2' etc.: the first iteration after which the relative error of the "
        "magnitude stays below that level, read off traces of "
        + ", ".join(f"{len(r['trace']) - 1}" for r in it["methods"].values())
        + " iterations (in the table's order); 'never' = not within the trace. Each trace "
        f"equals magtorch.solve(..., max_iter={CHECK_ITER}) at iteration {CHECK_ITER} "
        "(checked). The iteration count, convergence flag, final error and time are those of "
        "magtorch.solve with the iteration cap shown.",
        "",
    ]
    for name, row in it["methods"].items():
        for note in row["notes"]:
            lines.append(f"- {name}: {note}")
    lines += ["", f"![iterative algorithms]({figures[1].name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def parse_table(report_md: str) -> list[dict[str, str]]:
    """Rows of the main subset table of ``report.md``."""
    return _markdown.parse_table(report_md, TABLE_HEADER)


def parse_iterative_table(report_md: str) -> list[dict[str, str]]:
    """Rows of the iterative-algorithm table of ``report.md``."""
    return _markdown.parse_table(report_md, ITER_HEADER)


def run(out: Path = DEFAULT_OUT, *, quick: bool = False) -> dict[str, Any]:
    """Run both parts, write the report and figures, return the results (JSON-friendly)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out.mkdir(parents=True, exist_ok=True)
    curves = [subset_curves(name, quick=quick) for name in DATASETS]
    iterative = iterative_comparison(quick=quick)
    figures = (
        make_subset_figure(curves, out / "subset_curves.png"),
        make_iterative_figure(iterative, out / "iterative.png"),
    )
    report = write_report(out, curves, iterative, figures, quick)
    payload: dict[str, Any] = {
        "quick": quick,
        "t": T,
        "radius": RADIUS,
        "random_seeds": list(RANDOM_SEEDS),
        "datasets": {
            c.name: {
                "n": len(c.x),
                "d": int(c.x.shape[1]),
                "exact": c.exact,
                "greedy": c.greedy.tolist(),
                "centres": c.centres.tolist(),
                "random": c.random.tolist(),
                "seconds": c.seconds,
                "multi_scale": {str(t): v for t, v in c.multi.items()},
                "radius_k95": {str(r): k for r, k in c.radius_k95.items()},
            }
            for c in curves
        },
        "iterative": iterative,
    }
    text = json.dumps(_finite(payload), indent=1, allow_nan=False)
    (out / "results.json").write_text(text + "\n")
    payload["report"] = str(report)
    return payload


def _finite(value: Any) -> Any:
    """NaN/inf (diverged traces) as ``None`` so the JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Subset approximations and iterative solvers.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--quick", action="store_true", help="small data (smoke test)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    res = run(args.out, quick=args.quick)
    print(Path(res["report"]).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
