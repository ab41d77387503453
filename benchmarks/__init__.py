"""Benchmarks of magtorch against peer libraries.

Every benchmark module in this package exposes::

    NAME: str                                      # a short title
    run(*, quick: bool = False, out_dir: Path | None = None) -> dict   # measure, write JSON
    summary(results: dict) -> str                  # a plain-text table with ratios

``python -m benchmarks.run_all`` imports every such module, runs it and prints the summaries.
Timings are recorded in ``BENCHMARKS.md``; they are never asserted by tests.
"""

from __future__ import annotations

__all__: list[str] = []
