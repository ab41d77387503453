"""Shared helpers for the benchmarks: timing, machine description, JSON output."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch

#: Where benchmark JSON files go unless the caller says otherwise.
DEFAULT_OUT_DIR = Path("outputs") / "benchmarks"

try:
    _CLK_TCK = float(os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
    _CLK_TCK = 100.0


@dataclass
class Timing:
    """Timed samples of one callable.

    Attributes:
        samples: wall-clock seconds of every timed call.
        background: for every call, the fraction of all CPUs used by *other* processes while
            it ran (from /proc/stat minus this process's CPU time; NaN off Linux).
    """

    samples: list[float] = field(default_factory=list)
    background: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        """The minimum time (best-of-k)."""
        return min(self.samples)

    @property
    def background_at_best(self) -> float:
        """Background CPU fraction during the fastest call."""
        return self.background[self.samples.index(self.best)]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "best_s": self.best,
            "samples_s": self.samples,
            "background_cpu": [None if math.isnan(b) else round(b, 3) for b in self.background],
        }


def timed_call(fn: Callable[[], Any], timing: Timing) -> Any:
    """Call ``fn()`` once, append its wall time and background CPU share to ``timing``."""
    gc.collect()
    before = _cpu_times()
    cpu0 = time.process_time()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    after = _cpu_times()
    background = float("nan")
    if before is not None and after is not None and wall > 0:
        busy_all = (after[0] - before[0]) / _CLK_TCK
        background = max(0.0, busy_all - cpu) / (wall * (os.cpu_count() or 1))
    timing.samples.append(wall)
    timing.background.append(background)
    return result


def best_of(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls.

    Args:
        fn: the zero-argument callable to time.
        repeats: number of timed calls (at least 1).
        warmup: number of untimed calls made first (thread pools, allocator, caches).

    Returns:
        A :class:`Timing`; ``.best`` is the best-of-k time in seconds.

    Example:
        >>> timing = best_of(lambda: sum(range(10)), repeats=3, warmup=1)
        >>> len(timing.samples), timing.best <= max(timing.samples)
        (3, True)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    timing = Timing()
    for _ in range(repeats):
        timed_call(fn, timing)
    return timing


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Best-of-``repeats`` timings of several callables, run in turn (A B A B ...).

    Interleaving spreads any background load over all contenders instead of penalising
    whichever happened to run while the machine was busy.

    Example:
        >>> t = interleaved({"a": lambda: 1, "b": lambda: 2}, repeats=2, warmup=0)
        >>> sorted(t), len(t["a"].samples)
        (['a', 'b'], 2)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    timings = {name: Timing() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            timed_call(fn, timings[name])
    return timings


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies summed over all CPUs from /proc/stat, or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over the next ``seconds`` (other processes; NaN off Linux).

    Benchmarks call it while idle themselves, so it measures background load: on a shared
    2-core machine a concurrent job makes OpenMP/BLAS timings meaningless.
    """
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return float("nan")
    return (after[0] - before[0]) / (after[1] - before[1])


def wait_for_quiet(threshold: float = 0.15, max_wait: float = 180.0) -> float:
    """Wait (up to ``max_wait`` seconds) until background CPU use drops below ``threshold``.

    Returns the last measured busy fraction (recorded with the results, so that numbers taken
    on a busy machine can be recognised); prints a note while waiting.
    """
    deadline = time.monotonic() + max_wait
    busy = cpu_busy_fraction()
    while not busy < threshold and time.monotonic() < deadline:
        print(f"  (machine busy: {busy:.0%} CPU in use by other processes; waiting)", flush=True)
        time.sleep(4.0)
        busy = cpu_busy_fraction()
    return busy


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def _torch_blas() -> str:
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    lapack = re.search(r"LAPACK_INFO=(\w+)", config)
    return f"BLAS={blas.group(1) if blas else '?'}, LAPACK={lapack.group(1) if lapack else '?'}"


def _numpy_blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # pragma: no cover - depends on the numpy build
        return "unknown"


def git_revision() -> str:
    """The repository's HEAD commit, with ``+dirty`` when magtorch/ has uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "magtorch"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """Describe the machine and library builds the numbers were measured on."""
    try:
        from importlib.metadata import version

        import magnipy  # noqa: F401

        magnipy_version = version("magnipy")
    except Exception:  # pragma: no cover - magnipy is a benchmark-only dependency
        magnipy_version = "not installed"
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_blas": _torch_blas(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numpy_scipy_blas": _numpy_blas(),
        "magnipy": magnipy_version,
        "magtorch_git": git_revision(),
    }


def _finite(value: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(results: dict[str, Any], out_dir: Path | None, filename: str) -> Path:
    """Write ``results`` as JSON (NaN as null) to ``out_dir / filename``; return the path."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    path.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
    return path


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Format a plain-text table with right-aligned columns.

    Example:
        >>> print(format_table(["a", "b"], [["1", "22"]]))
        a   b
        -  --
        1  22
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(lines)


def goal_lines(goals: dict[str, dict[str, Any]], unit: str = "") -> list[str]:
    """One line per goal: what it is, what was measured, and MET / MISSED (n/a when unmeasured)."""
    lines = []
    for key, goal in goals.items():
        status = {True: "MET", False: "MISSED", None: "n/a (quick)"}[goal["met"]]
        lines.append(
            f"goal {key}: {goal['goal']}, measured {goal['measured']:.3g}{unit} -> {status}"
        )
    return lines


def cli(
    doc: str,
    run: Callable[..., dict[str, Any]],
    summary: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
) -> int:
    """The command line every benchmark module shares: ``--quick`` and ``--out DIR``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--out", type=Path, default=None, help="directory for the JSON file")
    args = parser.parse_args(argv)
    print(summary(run(quick=args.quick, out_dir=args.out)))
    return 0
