"""Benchmark: the exact scalar weight-magnitude regulariser over 10^6 parameters, and sampling.

What is measured (CPU, float32 weights as a model holds them, torch's default thread count):

* model: an MLP 784 -> 1000 -> 200 -> 80 (PyTorch's default initialisation, seed 0) whose
  three weight matrices hold exactly 784,000 + 200,000 + 16,000 = 1,000,000 parameters; the
  regulariser selects these weights (biases excluded, the default) as one set on the line;
* exact: ``WeightMagnitudeRegularizer(t, mode="scalar")(model)`` then ``.backward()``
  (forward, backward and the pair, best of k after a warm-up; gradients reset to ``None``
  between calls), at ``t = 1``;
* peer for scale: the L2 weight-decay penalty ``sum(p.pow(2).sum())`` over the same weights,
  forward+backward; and sorting the 10^6 values alone (``np.argsort``, which the CPU path
  uses, and ``torch.sort``);
* agreement: the exact value against an independent numpy float64 computation (``np.sort`` of
  the weights in float64, ``1 + fsum(tanh(t * diff / 2))``);
* sampling (the AAAI 2025 §4.1 scheme, ``mode="sampled"``: the two extreme weights plus 1000
  drawn without replacement): relative error ``(exact - sampled) / exact`` over 10 seeds at
  scales ``t`` from 1 to 10^6 (mean and max; sampling is a lower bound, so errors are >= 0),
  and its forward+backward time at ``t = 1``.

Goal: exact forward+backward under 0.2 s on CPU.

Run it with ``python -m benchmarks.weight_regularizer`` (``--quick`` for a smoke run); on a
shared machine, under ``flock /tmp/magtorch-bench.lock``. Results are printed as tables and
written to ``outputs/benchmarks/weight_regularizer.json``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks._common import (
    best_of,
    cli,
    format_table,
    goal_lines,
    machine_info,
    wait_for_quiet,
    write_json,
)

NAME = "weight_regularizer"
TITLE = "Scalar weight-magnitude regulariser, exact over 10^6 weights, vs the sampled scheme"

FULL_WIDTHS = (784, 1000, 200, 80)  # 1,000,000 weights
QUICK_WIDTHS = (50, 40, 20, 10)  # 3,000 weights
T_TIMED = 1.0
ERROR_SCALES = (1.0, 10.0, 1e2, 1e3, 1e4, 1e5, 1e6)
N_SEEDS = 10
N_SAMPLES = 1000
TIME_GOAL_S = 0.2


def make_model(widths: Sequence[int] = FULL_WIDTHS, seed: int = 0) -> nn.Module:
    """An MLP with the given layer widths (float32, PyTorch's default initialisation).

    Example:
        >>> sum(m.weight.numel() for m in make_model((784, 1000, 200, 80)) if hasattr(m, "weight"))
        1000000
    """
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def weight_values(model: nn.Module) -> np.ndarray:
    """All weight-matrix entries of ``model`` as one float64 array (what the regulariser sees)."""
    return np.concatenate(
        [p.detach().double().numpy().ravel() for p in model.parameters() if p.dim() >= 2]
    )


def reference_line_magnitude(values: np.ndarray, t: float) -> float:
    """Independent float64 value of ``1 + sum tanh(t * gap / 2)`` over the sorted values."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    return 1.0 + math.fsum(np.tanh(t * np.diff(s) / 2.0).tolist())


def time_forward_backward(model: nn.Module, penalty, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` times of ``penalty(model)`` and of its ``.backward()``."""
    params = [p for p in model.parameters() if p.dim() >= 2]

    def reset() -> None:
        for p in params:
            p.grad = None

    def forward() -> torch.Tensor:
        return penalty(model)

    def both() -> None:
        reset()
        penalty(model).backward()

    store: dict[str, torch.Tensor] = {}

    def backward_only() -> None:
        store["out"].backward()

    fwd = best_of(forward, repeats)
    bwd_samples: list[float] = []
    for _ in range(repeats + 1):  # the first is a warm-up
        reset()
        store["out"] = penalty(model)
        bwd_samples.append(best_of(backward_only, 1, warmup=0).best)
    total = best_of(both, repeats)
    reset()
    return {
        "forward_s": fwd.best,
        "backward_s": min(bwd_samples[1:]),
        "forward_backward_s": total.best,
        "background_cpu_at_best": total.background_at_best,
    }


def sampling_errors(
    model: nn.Module, scales: Sequence[float], n_seeds: int, n_samples: int = N_SAMPLES
) -> list[dict[str, Any]]:
    """Relative error ``(exact - sampled) / exact`` of the sampled scheme at each scale."""
    from magtorch.network import weight_magnitude

    ts = torch.tensor(list(scales), dtype=torch.float64)
    with torch.no_grad():
        exact = weight_magnitude(model, ts).double()
        runs = torch.stack(
            [
                weight_magnitude(
                    model,
                    ts,
                    mode="sampled",
                    n_samples=n_samples,
                    generator=torch.Generator().manual_seed(seed),
                ).double()
                for seed in range(n_seeds)
            ]
        )  # (seeds, T)
    rel = (exact - runs) / exact
    return [
        {
            "t": float(t),
            "exact": float(exact[i]),
            "sampled_mean": float(runs[:, i].mean()),
            "rel_error_mean": float(rel[:, i].mean()),
            "rel_error_max": float(rel[:, i].max()),
            "rel_error_min": float(rel[:, i].min()),
        }
        for i, t in enumerate(scales)
    ]


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``weight_regularizer.json`` to ``out_dir``.

    Args:
        quick: a small model, one repetition, three seeds (a smoke run).
        out_dir: directory for the JSON file (default ``outputs/benchmarks``).

    Returns:
        A JSON-serialisable dict: machine, timings, agreement, sampling errors, goals.
    """
    from magtorch.nn.regularizers import WeightMagnitudeRegularizer

    widths = QUICK_WIDTHS if quick else FULL_WIDTHS
    repeats = 1 if quick else 7
    n_seeds = 3 if quick else N_SEEDS
    model = make_model(widths)
    values = weight_values(model)
    n_params = int(values.size)

    busy = None if quick else wait_for_quiet(max_wait=60.0)
    print(f"[{NAME}] {n_params} weights: timing exact / sampled / L2, best of {repeats} ...")
    exact_reg = WeightMagnitudeRegularizer(t=T_TIMED)
    sampled_reg = WeightMagnitudeRegularizer(
        t=T_TIMED, mode="sampled", generator=torch.Generator().manual_seed(0)
    )

    def l2(m: nn.Module) -> torch.Tensor:
        return sum(p.pow(2).sum() for p in m.parameters() if p.dim() >= 2)

    timings = {
        "exact": time_forward_backward(model, exact_reg, repeats),
        "sampled": time_forward_backward(model, sampled_reg, repeats),
        "l2_weight_decay": time_forward_backward(model, l2, repeats),
    }
    flat = torch.from_numpy(values.astype(np.float32))
    timings["torch_sort_only"] = {"forward_s": best_of(lambda: torch.sort(flat), repeats).best}
    array = values.astype(np.float32)
    timings["numpy_argsort_only"] = {"forward_s": best_of(lambda: np.argsort(array), repeats).best}

    with torch.no_grad():
        ours = float(exact_reg(model))
    reference = reference_line_magnitude(values, T_TIMED)
    agreement = abs(ours - reference) / reference

    print(f"[{NAME}] sampling errors over {n_seeds} seeds ...")
    errors = sampling_errors(model, ERROR_SCALES, n_seeds)

    measured = timings["exact"]["forward_backward_s"]
    results: dict[str, Any] = {
        "benchmark": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "settings": {
            "widths": list(widths),
            "n_params": n_params,
            "t_timed": T_TIMED,
            "n_samples": N_SAMPLES,
            "n_seeds": n_seeds,
            "repeats": repeats,
        },
        "background_busy_before": busy,
        "timings": timings,
        "exact_value": ours,
        "reference_value": reference,
        "rel_agreement": agreement,
        "sampling": errors,
        "goals": {
            "exact_forward_backward": {
                "goal": f"< {TIME_GOAL_S} s at 10^6 parameters",
                "measured": measured,
                "met": (measured < TIME_GOAL_S) if not quick else None,
            }
        },
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def summary(results: dict[str, Any]) -> str:
    """Plain-text tables (timings, agreement, sampling errors, goal) for ``results``."""
    m = results["machine"]
    s = results["settings"]
    tm = results["timings"]
    l2 = tm["l2_weight_decay"]["forward_backward_s"]
    lines = [
        f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
        f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), magtorch @ {m['magtorch_git']}",
        f"{s['n_params']:,} float32 weights (MLP {s['widths']}), t = {s['t_timed']}, "
        f"best of {s['repeats']}",
        "",
        format_table(
            ["penalty", "forward [s]", "backward [s]", "fwd+bwd [s]", "vs L2"],
            [
                [
                    name,
                    f"{tm[name]['forward_s']:.4f}",
                    f"{tm[name]['backward_s']:.4f}",
                    f"{tm[name]['forward_backward_s']:.4f}",
                    f"{tm[name]['forward_backward_s'] / l2:.1f}x",
                ]
                for name in ("exact", "sampled", "l2_weight_decay")
            ]
            + [
                [label, f"{tm[key]['forward_s']:.4f}", "-", "-", "-"]
                for label, key in (
                    ("np.argsort alone (used on CPU)", "numpy_argsort_only"),
                    ("torch.sort alone (not used)", "torch_sort_only"),
                )
            ],
        ),
        f"exact value {results['exact_value']:.6f}, numpy float64 reference "
        f"{results['reference_value']:.6f}, relative difference {results['rel_agreement']:.1e}",
        "",
        f"sampled scheme (extremes + {s['n_samples']}), relative error (exact - sampled) / exact "
        f"over {s['n_seeds']} seeds:",
        format_table(
            ["t", "exact Mag", "sampled (mean)", "rel. err mean", "rel. err max"],
            [
                [
                    f"{r['t']:.0e}",
                    f"{r['exact']:.6g}",
                    f"{r['sampled_mean']:.6g}",
                    f"{r['rel_error_mean']:.2e}",
                    f"{r['rel_error_max']:.2e}",
                ]
                for r in results["sampling"]
            ],
        ),
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
