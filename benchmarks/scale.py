"""Benchmark: magnitude at scale, matrix-free preconditioned CG (``solver="cg"``) vs dense.

What is measured (float64, points from N(0, I) in R^10 with a fixed seed; every case runs in a
fresh child process so that its peak resident memory, ``ru_maxrss``, is its own):

* (a) ``n = 20000``, ``t = 1 / median distance`` (median over the pairs of a 2000-point
  subsample): ``magtorch.solve(x, t, solver="cg", rtol=1e-6)`` (time, iterations, recomputed
  relative residual, peak RSS; goal < 1.5 GB) and the dense float64 Cholesky solve of the same
  system (``exp(-t D)`` built in place, ``torch.linalg.cholesky`` + ``cholesky_solve``; time,
  peak RSS). Goal: CG time <= dense time.
* (b) ``n = 10000``, 30 scales ``linspace(t_c / 30, t_c, 30)`` (``t_c``: the 0.95 convergence
  scale of a 2000-point subsample): ``magtorch.magnitude(x, ts, solver="cg", rtol=1e-8)`` vs
  ``magtorch.magnitude(x, ts, solver="cholesky")`` (30 dense factorisations, the library's
  float32-factor + float64-refinement path). Goals: >= 3x faster, agreement <= 1e-8 relative.
* (c) peers at ``n = 5000`` (same data, ``t = 1 / median``): gpytorch ``MaternKernel(nu=0.5)``
  with lengthscale ``1/t`` (the same kernel ``exp(-t d)``), ``K.solve(1)`` through its CG
  (``max_cholesky_size(0)``, ``cg_tolerance`` = our ``rtol``); pykeops ``KernelSolve`` when
  pykeops is installed (``alpha = 0``). Time ratios and each solution's error in Mag against
  dense float64.
* (e) crossover for ``solver="auto"``: single-scale solve at ``t = 1 / median`` for
  ``n`` in {1000, 2000, 4000, 8000}, ``solver="cg"`` (``rtol=1e-6``) vs ``solver="cholesky"``.
* (d) ``n = 50000`` in R^10 at ``t = 1 / median``: ``solver="cg"``, ``rtol=1e-6``. Goals:
  < 10 minutes, peak RSS < 2 GB.

Every child runs torch on one intra-op thread (``MAGTORCH_BENCH_THREADS``, default 1): on the
shared 2-core machine two threads made both the dense and the CG path 2-4x slower under
background load (worker threads spinning). ``--quick`` shrinks every size (300-600 points)
for a smoke test. Run it with ``python -m benchmarks.scale``; results go to
``outputs/benchmarks/scale.json``.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import cli, format_table, goal_lines, machine_info, write_json

NAME = "scale"
TITLE = "Magnitude at scale: matrix-free CG vs dense Cholesky (N(0, I) in R^10, float64)"
DIM = 10
SEED = 0
FULL = {"a": 20000, "b": 10000, "c": 5000, "d": 50000}
QUICK = {"a": 400, "b": 300, "c": 300, "d": 600}
CROSSOVER_FULL = (1000, 2000, 4000, 8000)
CROSSOVER_QUICK = (200,)
MEMORY_GOAL_A = 1.5e9
MEMORY_GOAL_D = 2.0e9
TIME_GOAL_D = 600.0
SPEEDUP_GOAL_B = 3.0
AGREEMENT_GOAL_B = 1e-8


def make_points(n: int, seed: int = SEED) -> torch.Tensor:
    """``n`` points from N(0, I) in R^10, float64."""
    return torch.randn(n, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def median_scale(x: torch.Tensor) -> float:
    """``1 / median`` of the pairwise distances of the first 2000 points."""
    sub = x[:2000]
    d = torch.cdist(sub, sub)
    iu = torch.triu_indices(len(sub), len(sub), 1)
    return 1.0 / float(d[iu[0], iu[1]].median())


def _peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def _dense_solve(x: torch.Tensor, ts: Sequence[float]) -> list[float]:
    """Float64 dense Cholesky magnitudes, ``Z`` built in place (one ``n x n`` buffer + factor)."""
    out = []
    for t in ts:
        z = torch.cdist(x, x)
        z.mul_(-t).exp_()
        factor = torch.linalg.cholesky(z)
        del z
        w = torch.cholesky_solve(torch.ones(len(x), 1, dtype=torch.float64), factor)
        out.append(float(w.sum()))
        del factor
    return out


def child(case: str, n: int) -> dict[str, Any]:
    """Run one case in this process; returns times, results and peak RSS."""
    import magtorch

    torch.set_num_threads(int(os.environ.get("MAGTORCH_BENCH_THREADS", "1")))
    x = make_points(n)
    t = median_scale(x)
    start = time.perf_counter()
    if case == "cg":
        res = magtorch.solve(x, t, solver="cg", rtol=1e-6)
        out = {
            "magnitude": float(res.magnitude),
            "iterations": int(res.info.iterations),
            "residual": float(res.info.residual),
            "converged": bool(res.info.converged),
        }
    elif case == "dense":
        out = {"magnitude": _dense_solve(x, [t])[0]}
    elif case == "cholesky":  # the library's dense path (float32 factor + float64 refinement)
        out = {"magnitude": float(magtorch.magnitude(x, t, solver="cholesky"))}
    elif case in ("cg30", "dense30"):
        from magtorch.scales import convergence_scale

        t_c = float(convergence_scale(x[:2000], 0.95))
        ts = torch.linspace(t_c / 30, t_c, 30, dtype=torch.float64)
        start = time.perf_counter()
        if case == "cg30":
            res = magtorch.solve(x, ts, solver="cg", rtol=1e-8)
            out = {
                "magnitude": res.magnitude.tolist(),
                "iterations": res.info.iterations.tolist(),
                "converged": bool(res.info.converged.all()),
            }
        else:
            out = {"magnitude": magtorch.magnitude(x, ts, solver="cholesky").tolist()}
        out["t_c"] = t_c
    elif case == "gpytorch":
        import gpytorch

        kernel = gpytorch.kernels.MaternKernel(nu=0.5).double()
        kernel.lengthscale = 1.0 / t
        with (
            torch.no_grad(),
            gpytorch.settings.max_cholesky_size(0),
            gpytorch.settings.cg_tolerance(1e-6),
            gpytorch.settings.max_cg_iterations(5000),
            gpytorch.settings.skip_logdet_forward(True),
        ):
            k = kernel(x)
            w = k.solve(torch.ones(n, 1, dtype=torch.float64))
        out = {"magnitude": float(w.sum())}
    elif case == "keops":
        from pykeops.torch import KernelSolve

        solver = KernelSolve(
            "Exp(-T * Norm2(X - Y)) * B",
            ["X = Vi(10)", "Y = Vj(10)", "B = Vj(1)", "T = Pm(1)"],
            "B",
            axis=1,
        )
        tt = torch.tensor([t], dtype=torch.float64)
        w = solver(x, x, torch.ones(n, 1, dtype=torch.float64), tt, alpha=0.0, eps=1e-6)
        out = {"magnitude": float(w.sum())}
    else:
        raise ValueError(case)
    out["time_s"] = time.perf_counter() - start
    out["t"] = t
    out["peak_rss_bytes"] = _peak_rss()
    out["threads"] = torch.get_num_threads()
    return out


def run_child(case: str, n: int, timeout: float = 3600.0) -> dict[str, Any]:
    """``child(case, n)`` in a fresh interpreter (its own peak RSS); errors are recorded."""
    cmd = [sys.executable, "-m", "benchmarks.scale", "--child", case, str(n)]
    print(f"[{NAME}] {case} n={n} ...", flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    print(f"[{NAME}] {case} n={n}: {lines[-1]}", flush=True)
    return json.loads(lines[-1])


def _reference(n: int, t: float) -> float:
    """Dense float64 magnitude for the accuracy columns (untimed, in this process)."""
    return _dense_solve(make_points(n), [t])[0]


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the four cases and write ``scale.json``."""
    sizes = QUICK if quick else FULL
    a_cg = run_child("cg", sizes["a"])
    a_dense = run_child("dense", sizes["a"])
    b_cg = run_child("cg30", sizes["b"])
    b_dense = run_child("dense30", sizes["b"])
    c_cg = run_child("cg", sizes["c"])
    c_gpy = run_child("gpytorch", sizes["c"])
    c_keops = (
        {"error": "not run with --quick (pykeops compiles its kernel on first use: minutes)"}
        if quick
        else run_child("keops", sizes["c"], timeout=1800.0)
    )
    d_cg = run_child("cg", sizes["d"], timeout=900.0)
    crossover = []
    for n in CROSSOVER_QUICK if quick else CROSSOVER_FULL:
        crossover.append({"n": n, "cg": run_child("cg", n), "cholesky": run_child("cholesky", n)})

    def rel(a: dict[str, Any], ref: float) -> float:
        return abs(a["magnitude"] - ref) / abs(ref) if "magnitude" in a else math.nan

    ref_c = _reference(sizes["c"], c_cg.get("t", median_scale(make_points(sizes["c"]))))
    for row in (c_cg, c_gpy, c_keops):
        row["rel_error"] = rel(row, ref_c)
    if "magnitude" in a_cg and "magnitude" in a_dense:
        a_cg["rel_error"] = rel(a_cg, a_dense["magnitude"])
    agreement = math.nan
    if "magnitude" in b_cg and "magnitude" in b_dense:
        ours, ref = np.array(b_cg["magnitude"]), np.array(b_dense["magnitude"])
        agreement = float(np.max(np.abs(ours - ref) / np.abs(ref)))
    met = None if quick else True

    def goal(value: float, ok: bool, text: str) -> dict[str, Any]:
        return {"goal": text, "measured": value, "met": None if met is None else bool(ok)}

    a_ratio = a_cg.get("time_s", math.nan) / a_dense.get("time_s", math.nan)
    b_speed = b_dense.get("time_s", math.nan) / b_cg.get("time_s", math.nan)
    goals = {
        "a_peak_memory_GB": goal(
            a_cg.get("peak_rss_bytes", math.inf) / 1e9,
            a_cg.get("peak_rss_bytes", math.inf) < MEMORY_GOAL_A,
            "< 1.5",
        ),
        "a_cg_over_dense_time": goal(a_ratio, a_ratio <= 1.0, "<= 1"),
        "b_speedup": goal(b_speed, b_speed >= SPEEDUP_GOAL_B, f">= {SPEEDUP_GOAL_B}x"),
        "b_agreement": goal(agreement, agreement <= AGREEMENT_GOAL_B, "<= 1e-8"),
        "d_time_s": goal(
            d_cg.get("time_s", math.inf), d_cg.get("time_s", math.inf) < TIME_GOAL_D, "< 600"
        ),
        "d_peak_memory_GB": goal(
            d_cg.get("peak_rss_bytes", math.inf) / 1e9,
            d_cg.get("peak_rss_bytes", math.inf) < MEMORY_GOAL_D,
            "< 2",
        ),
    }
    results = {
        "benchmark": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "sizes": sizes,
        "a": {"cg": a_cg, "dense": a_dense},
        "b": {"cg": b_cg, "dense": b_dense, "max_rel_disagreement": agreement},
        "c": {"cg": c_cg, "gpytorch": c_gpy, "keops": c_keops},
        "d": {"cg": d_cg},
        "crossover": crossover,
        "goals": goals,
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def _fmt(row: dict[str, Any], key: str, spec: str) -> str:
    value = row.get(key)
    if value is None:
        return "error" if "error" in row else "-"
    if isinstance(value, list):
        value = sum(value) if key == "iterations" else value
    return format(value, spec)


def summary(results: dict[str, Any]) -> str:
    """Plain-text table of every case and the goals."""
    m = results["machine"]
    rows = []
    for label, row in (
        (f"(a) cg n={results['sizes']['a']}", results["a"]["cg"]),
        (f"(a) dense n={results['sizes']['a']}", results["a"]["dense"]),
        (f"(b) cg 30 scales n={results['sizes']['b']}", results["b"]["cg"]),
        (f"(b) dense 30 scales n={results['sizes']['b']}", results["b"]["dense"]),
        (f"(c) cg n={results['sizes']['c']}", results["c"]["cg"]),
        (f"(c) gpytorch n={results['sizes']['c']}", results["c"]["gpytorch"]),
        (f"(c) keops n={results['sizes']['c']}", results["c"]["keops"]),
        (f"(d) cg n={results['sizes']['d']}", results["d"]["cg"]),
    ):
        rss = row.get("peak_rss_bytes")
        rows.append(
            [
                label,
                _fmt(row, "time_s", ".1f"),
                "-" if rss is None else f"{rss / 1e9:.2f}",
                _fmt(row, "iterations", "d"),
                _fmt(row, "rel_error", ".1e"),
                str(row["error"])[:60] if "error" in row else "",
            ]
        )
    for c in results.get("crossover", []):
        rows.append(
            [
                f"(e) cg / cholesky n={c['n']}",
                f"{_fmt(c['cg'], 'time_s', '.2f')} / {_fmt(c['cholesky'], 'time_s', '.2f')}",
                "-",
                _fmt(c["cg"], "iterations", "d"),
                "-",
                "",
            ]
        )
    lines = [
        f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
        f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), magtorch @ {m['magtorch_git']}",
        "",
        format_table(["case", "time [s]", "peak RSS [GB]", "CG its", "rel. err", "error"], rows),
        f"(b) max relative disagreement over 30 scales: {results['b']['max_rel_disagreement']:.2e}",
        "",
    ]
    lines.extend(goal_lines(results["goals"]))
    lines.append(f"results written to {results.get('json_path', '?')}")
    return "\n".join(lines)


def conditioning_table(ranks: Sequence[int] = (0, 50, 200, 500)) -> list[list[str]]:
    """Condition number of ``Z_t`` and CG iterations to relative residual 1e-8 (plain and
    Nyström-preconditioned with ``k`` pivots) on digits, breast cancer (standardised) and 2000
    points of N(0, I) in R^10, at ``t / t_med`` in {0.1, 1, 10} (``t_med = 1 / median d``)."""
    from sklearn.datasets import load_breast_cancer, load_digits

    import magtorch
    from magtorch.matrix_free import PointsSimilarity
    from magtorch.solvers.cg import NystromPreconditioner, pcg

    cancer = torch.tensor(load_breast_cancer().data, dtype=torch.float64)
    data = {
        "digits": torch.tensor(load_digits().data, dtype=torch.float64),
        "breast cancer": (cancer - cancer.mean(0)) / cancer.std(0),
        "N(0, I) R^10": make_points(2000),
    }
    rows = []
    for name, x in data.items():
        x = torch.unique(x, dim=0)
        n = len(x)
        d = magtorch.pairwise_distances(x)
        iu = torch.triu_indices(n, n, 1)
        t_med = 1.0 / float(d[iu[0], iu[1]].median())
        for factor in (0.1, 1.0, 10.0):
            t = factor * t_med
            ev = torch.linalg.eigvalsh(torch.exp(-t * d))
            op = PointsSimilarity(
                x[None], torch.tensor([[t]], dtype=torch.float64), None, "euclidean"
            )
            b = torch.ones(1, n, dtype=torch.float64)
            row = [name, str(n), f"{factor:g}", f"{float(ev[-1] / ev[0]):.2g}"]
            for k in ranks:
                m = NystromPreconditioner(op, k) if k else None
                out = pcg(
                    op.matvec,
                    b,
                    rtol=1e-8,
                    max_iter=2000,
                    precondition=None if m is None else m.apply,
                )
                row.append(f"{int(out.iterations)}{'' if bool(out.converged) else ' (nc)'}")
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``--child CASE N`` runs one case and prints JSON;
    ``--conditioning`` prints the conditioning / iteration table)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--conditioning"]:
        headers = ["data", "n", "t/t_med", "cond Z", "plain", "k=50", "k=200", "k=500"]
        print(format_table(headers, conditioning_table()))
        return 0
    if argv[:1] == ["--child"]:
        print(json.dumps(child(argv[1], int(argv[2]))))
        return 0
    return cli(__doc__, run, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
