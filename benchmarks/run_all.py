"""Run every benchmark module in :mod:`benchmarks` and print a summary of each.

Usage::

    python -m benchmarks.run_all [--quick] [--out DIR] [--only NAME ...]

A benchmark module is any module of this package, not starting with ``_`` and other than
``run_all``, that defines ``run`` and ``summary`` (see :mod:`benchmarks`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import benchmarks


def discover() -> list[ModuleType]:
    """Import and return every benchmark module of the package, sorted by name."""
    modules: list[ModuleType] = []
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "run_all":
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        if callable(getattr(module, "run", None)) and callable(getattr(module, "summary", None)):
            modules.append(module)
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; the exit status is 1 if any of them crashed."""
    parser = argparse.ArgumentParser(description="Run all magtorch benchmarks.")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="directory for JSON results")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    args = parser.parse_args(argv)

    modules = discover()
    if args.only:
        modules = [m for m in modules if m.__name__.rsplit(".", 1)[-1] in args.only]
    summaries: list[str] = []
    failed: list[str] = []
    for module in modules:
        name = module.__name__.rsplit(".", 1)[-1]
        start = time.perf_counter()
        try:
            results = module.run(quick=args.quick, out_dir=args.out)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        elapsed = time.perf_counter() - start
        summaries.append(f"{module.summary(results)}\n({name} took {elapsed:.1f} s)")

    print("\n" + "=" * 78)
    print("BENCHMARK SUMMARY")
    print("=" * 78)
    print("\n\n".join(summaries) if summaries else "(no benchmark completed)")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
