"""Magnitude report for scikit-learn's bundled datasets.

For iris, wine, breast cancer and digits (standardised feature-wise) this computes

* the magnitude function ``t -> Mag(tX)`` on log-spaced scales up to the convergence scale
  (``magtorch.magnitude_function``),
* the convergence scale ``t_conv``: ``Mag(t_conv X) = 0.95 n_distinct``
  (``magtorch.convergence_scale``),
* the magnitude dimension: the maximum over those scales of ``t Mag'(t) / Mag(t)`` and the
  scale where it is reached (``magtorch.magnitude_dimension``, profile from
  ``magtorch.magnitude_derivative``),
* the magnitude area ``(1 / t_conv) * integral_0^t_conv Mag(tX) dt``
  (``magtorch.magnitude_area``),

plots the four magnitude functions and dimension profiles, and writes a Markdown report
(``report.md``, with the PNGs embedded) plus ``results.json`` with the raw numbers.

Usage::

    python -m experiments.magnitude_report [--out DIR] [--quick]

``--quick`` subsamples every dataset to at most 100 points (a smoke test, a few seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import _markdown

DEFAULT_OUT = Path("outputs") / "magnitude_report"
DATASETS = ("iris", "wine", "breast_cancer", "digits")
Q = 0.95
N_SCALES = 64
QUICK_MAX_POINTS = 100
SEED = 0

TABLE_HEADER = (
    "| dataset | n | distinct | d | convergence scale | magnitude dimension "
    "| scale of max slope | magnitude area | time [s] |"
)


def _loader(name: str) -> Callable[[], Any]:
    from sklearn import datasets

    loaders = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
    }
    if name not in loaders:
        raise ValueError(f"dataset must be one of {sorted(loaders)}, got {name!r}")
    return loaders[name]


def standardise(x: np.ndarray) -> np.ndarray:
    """Centre every feature and scale it to unit variance; constant features stay at 0.

    Example:
        >>> standardise(np.array([[0.0, 1.0], [2.0, 1.0]])).tolist()
        [[-1.0, 0.0], [1.0, 0.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return (x - x.mean(axis=0)) / std


def load_dataset(name: str, *, quick: bool = False, seed: int = SEED) -> np.ndarray:
    """Load a bundled scikit-learn dataset as a standardised float64 ``(n, d)`` array.

    With ``quick``, at most ``QUICK_MAX_POINTS`` rows are kept (a fixed random subset, in
    their original order); standardisation uses the full dataset's statistics.
    """
    x = standardise(_loader(name)().data)
    if quick and len(x) > QUICK_MAX_POINTS:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(x), size=QUICK_MAX_POINTS, replace=False))
        x = x[keep]
    return x


@dataclass
class DatasetReport:
    """Everything the report says about one dataset (JSON-serialisable via ``asdict``)."""

    name: str
    n: int
    n_distinct: int
    d: int
    convergence_scale: float
    magnitude_dimension: float
    dimension_scale: float
    magnitude_area: float
    seconds: float
    t: list[float]
    magnitude: list[float]
    dimension_profile: list[float]


def analyse(name: str, x: np.ndarray, *, q: float = Q, n_scales: int = N_SCALES) -> DatasetReport:
    """Compute the magnitude summaries of one standardised dataset ``x`` of shape ``(n, d)``."""
    import magtorch

    start = time.perf_counter()
    points = torch.from_numpy(x)
    with torch.no_grad():
        t_conv = float(magtorch.convergence_scale(points, q=q))
        # magtorch's default grid for magnitude_function (t=None), without recomputing t_conv
        grid = torch.logspace(-2, 0, n_scales, dtype=torch.float64) * t_conv
        mf = magtorch.magnitude_function(points, grid)
        t, mag = mf.t, mf.magnitude
        slope = t * magtorch.magnitude_derivative(points, t) / mag
        # default: grid search over [1e-3, 2] t_conv refined by golden-section steps
        dim = magtorch.magnitude_dimension(points, q=q)
        area = float(magtorch.magnitude_area(points, t_conv, q=q))
        n_distinct = int(magtorch.solve(points, t_conv).info.n_distinct)
    seconds = time.perf_counter() - start
    return DatasetReport(
        name=name,
        n=int(x.shape[0]),
        n_distinct=n_distinct,
        d=int(x.shape[1]),
        convergence_scale=t_conv,
        magnitude_dimension=float(dim.dimension),
        dimension_scale=float(dim.scale),
        magnitude_area=area,
        seconds=seconds,
        t=t.tolist(),
        magnitude=mag.tolist(),
        dimension_profile=slope.tolist(),
    )


def make_figures(reports: Sequence[DatasetReport], out: Path, *, q: float = Q) -> list[Path]:
    """Draw the magnitude functions and dimension profiles into two PNGs under ``out``."""
    from magtorch.plot import plot_dimension_profiles, plot_magnitude_functions, save_figure

    functions = {r.name: (r.t, r.magnitude) for r in reports}
    ax = plot_magnitude_functions(
        functions,
        n={r.name: r.n_distinct for r in reports},
        convergence_scales={r.name: r.convergence_scale for r in reports},
        q=q,
        title="Magnitude functions of standardised scikit-learn datasets",
    )
    fig_functions = save_figure(ax, out / "magnitude_functions.png")
    ax = plot_dimension_profiles(
        {r.name: (r.t, r.dimension_profile) for r in reports},
        dimensions={r.name: (r.magnitude_dimension, r.dimension_scale) for r in reports},
        title="Magnitude dimension profiles  t Mag'(t) / Mag(t)",
    )
    fig_profiles = save_figure(ax, out / "dimension_profiles.png")
    return [fig_functions, fig_profiles]


def table_row(r: DatasetReport) -> str:
    """One Markdown table row; numbers carry enough digits to be checked independently."""
    return (
        f"| {r.name} | {r.n} | {r.n_distinct} | {r.d} | {r.convergence_scale:.8g} "
        f"| {r.magnitude_dimension:.8g} | {r.dimension_scale:.8g} | {r.magnitude_area:.8g} "
        f"| {r.seconds:.2f} |"
    )


def write_report(
    reports: Sequence[DatasetReport],
    figures: Sequence[Path],
    out: Path,
    *,
    quick: bool,
    total_seconds: float | None = None,
) -> Path:
    """Write ``report.md`` (table and embedded figures) under ``out``."""
    import magtorch

    lines = [
        "# Magnitude report: scikit-learn datasets",
        "",
        f"Generated by `python -m experiments.magnitude_report{' --quick' if quick else ''}` "
        f"with magtorch {getattr(magtorch, '__version__', '?')}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)."
        + (f" Quick mode: at most {QUICK_MAX_POINTS} points per dataset." if quick else ""),
        "",
        "Each dataset is standardised feature-wise (zero mean, unit variance; constant "
        "features stay 0) and measured with the Euclidean metric in float64.",
        "",
        f"- **convergence scale**: the scale t with Mag(tX) = {Q} x (number of distinct points);",
        "- **magnitude dimension**: the maximum over t of the slope of log Mag against "
        "log t, t Mag'(t) / Mag(t) (`magtorch.magnitude_dimension`: grid search from "
        "t_conv/1000 to 2 t_conv, refined by golden-section steps), reached at the "
        "**scale of max slope**;",
        f"- the figures show Mag(tX)/n and t Mag'(t)/Mag(t) on {N_SCALES} log-spaced scales "
        "from t_conv/100 to t_conv (n: number of distinct points);",
        "- **magnitude area**: (1 / t_conv) x integral from 0 to t_conv of Mag(tX) dt;",
        "- **time**: wall-clock seconds for all of the above for that dataset.",
        "",
        TABLE_HEADER,
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        *(table_row(r) for r in reports),
        "",
    ]
    if total_seconds is not None:
        lines += [
            f"Total wall-clock time (data loading, computation, figures): {total_seconds:.1f} s "
            f"on {os.cpu_count()} CPU core(s).",
            "",
        ]
    for fig in figures:
        lines += [f"![{fig.stem}]({fig.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def parse_table(report_md: str) -> list[dict[str, str]]:
    """Rows of the main table of ``report.md`` as dicts keyed by the header."""
    return _markdown.parse_table(report_md, TABLE_HEADER)


def run(
    out: Path = DEFAULT_OUT,
    *,
    quick: bool = False,
    datasets: Sequence[str] = DATASETS,
    echo: Callable[[str], None] = print,
) -> list[DatasetReport]:
    """Analyse ``datasets``, draw the figures and write the report and JSON into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    reports = []
    for i, name in enumerate(datasets, start=1):
        x = load_dataset(name, quick=quick)
        echo(f"[{i}/{len(datasets)}] {name}: n={x.shape[0]}, d={x.shape[1]} ...")
        r = analyse(name, x)
        reports.append(r)
        echo(
            f"    t_conv={r.convergence_scale:.4g}  dim={r.magnitude_dimension:.3f} "
            f"(t={r.dimension_scale:.3g})  area={r.magnitude_area:.4g}  [{r.seconds:.2f} s]"
        )
    figures = make_figures(reports, out)
    report = write_report(
        reports, figures, out, quick=quick, total_seconds=time.perf_counter() - total
    )
    (out / "results.json").write_text(
        json.dumps({"quick": quick, "datasets": [asdict(r) for r in reports]}, indent=1) + "\n"
    )
    echo(
        f"wrote {report}, {', '.join(f.name for f in figures)} and results.json "
        f"in {time.perf_counter() - total:.1f} s"
    )
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Magnitude report for sklearn datasets.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--quick", action="store_true", help="subsample (smoke test)")
    args = parser.parse_args(argv)
    run(args.out, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
