"""One intra-op thread for loops of many small CPU kernels (restored afterwards).

The greedy/hierarchy loops of :mod:`magtorch.subset`, the clustering loop of
:mod:`magtorch.cluster` and the block loops of the matrix-free operator issue thousands of
small operations. With several intra-op threads every parallel region ends with worker threads
spinning, which on a busy machine starves the main thread: a matrix-free product at
``n = 2000`` took 5.9 s with 2 threads and 0.04 s with one (2-core machine under load), and the
greedy loops were 10-50x slower. Inside :func:`cpu_single_thread` torch runs on one thread; the
previous count is restored on exit. This is a process-wide setting while the block runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["cpu_single_thread"]


@contextlib.contextmanager
def cpu_single_thread(device: torch.device) -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (CPU only), then restore the count.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with cpu_single_thread(torch.device("cpu")):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
