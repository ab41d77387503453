"""Progress lines for long solves (``progress=True``), written to stderr at most once a second."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Counts finished problems of ``total`` and prints elapsed and remaining time.

    Example:
        >>> bar = Progress(total=4, n=100, enabled=False)
        >>> bar.update(2); bar.close()
    """

    def __init__(self, total: int, n: int, *, enabled: bool, interval: float = 1.0) -> None:
        self.total, self.n, self.enabled, self.interval = total, n, enabled, interval
        self.done = 0
        self.start = self.last = time.perf_counter()

    def update(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.interval or self.done == self.total):
            self.last = now
            elapsed = now - self.start
            left = elapsed / self.done * (self.total - self.done)
            sys.stderr.write(
                f"\rmagtorch: {self.done}/{self.total} solves of n={self.n} points, "
                f"{elapsed:.1f} s elapsed, ~{left:.1f} s left"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")
            sys.stderr.flush()
