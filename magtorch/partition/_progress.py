"""Progress lines for the partition diagnostics: :class:`magtorch._progress.Progress` with a
word for what is counted (Jacobian rows, segments, LPs) instead of "solves"."""

from __future__ import annotations

import sys
import time

from magtorch._progress import Progress as _Base

__all__ = ["Progress"]


class Progress(_Base):
    """Counts finished items of ``total`` (``what``) and prints elapsed and remaining time.

    Example:
        >>> bar = Progress(total=4, n=100, enabled=False, what="segments")
        >>> bar.update(2); bar.close()
    """

    def __init__(self, total: int, n: int, *, enabled: bool, what: str = "items") -> None:
        super().__init__(total=total, n=n, enabled=enabled)
        self.what = what

    def update(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.interval or self.done >= self.total):
            self.last = now
            elapsed = now - self.start
            left = elapsed / max(self.done, 1) * max(self.total - self.done, 0)
            sys.stderr.write(
                f"\rmagtorch.partition: {self.done}/{self.total} {self.what} (n={self.n}), "
                f"{elapsed:.1f} s elapsed, ~{left:.1f} s left"
            )
            sys.stderr.flush()
