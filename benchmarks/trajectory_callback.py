"""Benchmark: cost of ``TrajectoryMagnitudeCallback`` at the AAAI 2025 paper's trajectory sizes.

The paper (§5.2) takes up to ``n = 10^4`` optimizer steps after convergence and computes the
magnitude of the trajectory. What is measured here (CPU, torch's default thread count), for
``n`` in {1000, 10000} trajectory points (``every_k_steps=1``):

* model and data: the digits MLP of :mod:`benchmarks.potential_callback` (64-128-128-10, float32,
  26,122 parameters, Adam lr 1e-3, batch 64), trained one epoch first;
* the callback with ``storage="memory"``, two scales ``t`` (``1 / median`` and ``10 / median``
  pairwise distance of a 200-step pilot trajectory, so that magnitudes are neither 1 nor n);
* reported: the time of the ``n`` steps including the Gram accumulation (``seconds_steps``), the
  time of the same ``n`` steps without the callback (a plain loop: the step cost alone), so the
  Gram share is their difference; the dense solve for both scales (``seconds_solve``); the peak
  resident memory of the process (``ru_maxrss``; each ``n`` runs in a fresh subprocess).
* agreement: at ``n = 1000`` the callback's magnitudes against a direct computation (stored
  vectors, float64 ``cdist``, dense solve), relative difference.

Run it with ``python -m benchmarks.trajectory_callback`` (``--quick``: n = 60, a smoke run);
results are printed and written to ``outputs/benchmarks/trajectory_callback.json``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import cli, format_table, machine_info, write_json

NAME = "trajectory_callback"
TITLE = "TrajectoryMagnitudeCallback cost at the paper's trajectory sizes (digits MLP, CPU)"
FULL = {"sizes": [1000, 10000], "pilot": 200, "check_n": 1000}
QUICK = {"sizes": [60], "pilot": 30, "check_n": 60}


def _trained(root: str):
    """The digits MLP after one epoch, its trainer-free optimizer, and the training loader."""
    import lightning.pytorch as pl

    from benchmarks.potential_callback import load_digits_data, make_loader, make_module

    x, y = load_digits_data()
    loader = make_loader(x, y)
    module = make_module()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, enable_progress_bar=False, logger=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=root,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader)
    return module, loader


def _plain_steps(module, loader, n: int, keep: bool) -> tuple[float, torch.Tensor | None]:
    """``n`` Adam steps in a plain loop (a fresh optimizer); optionally the parameter vectors."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    rows = []
    start = time.perf_counter()
    taken = 0
    while taken < n:
        for x, y, _ in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(x), y).backward()
            opt.step()
            if keep:
                rows.append(torch.cat([p.detach().reshape(-1) for p in module.parameters()]))
            taken += 1
            if taken == n:
                break
    return time.perf_counter() - start, torch.stack(rows) if keep else None


def measure_one(n: int, pilot: int, check: bool) -> dict[str, Any]:
    """Everything for one trajectory length ``n`` (run in a fresh process for the peak RSS)."""
    import copy

    import lightning.pytorch as pl

    import magtorch
    from magtorch.callbacks.trajectory import TrajectoryMagnitudeCallback

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        module, loader = _trained(root)
        start_state = copy.deepcopy(module.state_dict())
        _, pilot_vectors = _plain_steps(module, loader, pilot, keep=True)
        median = float(torch.pdist(pilot_vectors.double()).median())
        scales = [1.0 / median, 10.0 / median]
        module.load_state_dict(start_state)
        plain_s, _ = _plain_steps(copy.deepcopy(module), loader, n, keep=False)

        class Once(pl.LightningModule):  # the trained module, 0 further epochs, then the callback
            def __init__(self) -> None:
                super().__init__()
                self.inner = module

            def forward(self, x):
                return self.inner(x)

            def training_step(self, batch, batch_idx):
                x, y, _ = batch
                return torch.nn.functional.cross_entropy(self(x), y)

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-3)

        cb = TrajectoryMagnitudeCallback(
            t=scales, n_steps=n, storage="memory", filename=None, keep_trajectory=check,
            dataloader=loader,
        )  # fmt: skip
        trainer = pl.Trainer(
            accelerator="cpu", max_epochs=1, limit_train_batches=1, callbacks=[cb],
            enable_progress_bar=False, logger=False, enable_checkpointing=False,
            enable_model_summary=False, default_root_dir=root,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Once(), loader)
        out = dict(cb.results)
        out.update(n=n, t=scales, plain_steps_s=plain_s)
        if check:
            v = cb.trajectory.double()
            d = torch.cdist(v, v, compute_mode="donot_use_mm_for_euclid_dist").fill_diagonal_(0.0)
            direct = magtorch.magnitude(d, torch.tensor(scales), metric="precomputed")
            got = torch.tensor(out["magnitude"], dtype=torch.float64)
            out["direct_magnitude"] = direct.tolist()
            out["max_rel_diff_vs_direct"] = float(((got - direct) / direct).abs().max())
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def run(*, quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """Run every size in a subprocess; returns the JSON-serialisable results (also written)."""
    cfg = QUICK if quick else FULL
    rows = []
    for n in cfg["sizes"]:
        print(f"[{NAME}] n = {n} ...", flush=True)
        code = (
            "import json, sys; from benchmarks.trajectory_callback import measure_one; "
            f"print('RESULT', json.dumps(measure_one({n}, {cfg['pilot']}, "
            f"{n == cfg['check_n']})))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        rows.append(json.loads(line[len("RESULT ") :]))
    results = {
        "benchmark": NAME,
        "title": TITLE,
        "quick": quick,
        "machine": machine_info(),
        "rows": rows,
        "goals": {},
    }
    path = write_json(results, out_dir, f"{NAME}{'_quick' if quick else ''}.json")
    results["json_path"] = str(path)
    return results


def summary(results: dict[str, Any]) -> str:
    """A plain-text table of the rows."""
    table = format_table(
        ["n", "params", "steps+Gram [s]", "steps alone [s]", "solve 2 t [s]", "peak RSS [GB]",
         "Mag (t1, t2)", "vs direct"],
        [
            [
                str(r["n"]),
                str(r["n_parameters"]),
                f"{r['seconds_steps']:.1f}",
                f"{r['plain_steps_s']:.1f}",
                f"{r['seconds_solve']:.1f}",
                f"{r['peak_rss_gb']:.2f}",
                ", ".join(f"{m:.4g}" for m in r["magnitude"]),
                f"{r['max_rel_diff_vs_direct']:.1e}" if "max_rel_diff_vs_direct" in r else "-",
            ]
            for r in results["rows"]
        ],
    )  # fmt: skip
    m = results["machine"]
    return "\n".join(
        [
            f"== {results['title']}{' [quick]' if results['quick'] else ''} ==",
            f"machine: {m['cpu']}, {m['logical_cores']} cores, torch {m['torch']}, "
            f"magtorch @ {m['magtorch_git']}",
            table,
            f"results written to {results.get('json_path', '?')}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    return cli(__doc__, run, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
