"""Memory budget for dense problems: estimate before allocating, chunk, or refuse clearly.

The budget is, in order: :func:`set_memory_budget`, the environment variable
``MAGTORCH_MEMORY_BUDGET`` (bytes), or half the memory available now on the device (CUDA:
``torch.cuda.mem_get_info``; CPU: ``MemAvailable`` in ``/proc/meminfo``).
"""

from __future__ import annotations

import os

import torch

from .errors import MagtorchError, MemoryBudgetError

__all__ = [
    "dense_bytes_per_problem",
    "memory_budget",
    "problems_per_chunk",
    "rows_per_chunk",
    "set_memory_budget",
]

#: Bytes per matrix entry a dense solve may hold at once: distances (8), similarity (8), a float32
#: copy and factor (4 + 4), and a float64 factor for fallbacks (8).
BYTES_PER_ENTRY = 32

_override: int | None = None


def set_memory_budget(nbytes: int | None) -> None:
    """Set the bytes dense solves may use at once (``None``: back to the automatic budget)."""
    global _override
    if nbytes is not None and (not isinstance(nbytes, int) or nbytes <= 0):
        raise MagtorchError(f"nbytes must be a positive int or None; got {nbytes!r}")
    _override = nbytes


def _available_cpu_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def memory_budget(device: torch.device) -> int:
    """Bytes that dense solves on ``device`` may use at once."""
    if _override is not None:
        return _override
    env = os.environ.get("MAGTORCH_MEMORY_BUDGET")
    if env:
        try:
            return int(float(env))
        except ValueError as err:
            raise MagtorchError(
                f"MAGTORCH_MEMORY_BUDGET must be a number of bytes; got {env!r}"
            ) from err
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.5 * free)
    return int(0.5 * _available_cpu_bytes())


def dense_bytes_per_problem(n: int) -> int:
    """Peak bytes one dense ``n x n`` solve may hold."""
    return BYTES_PER_ENTRY * n * n


#: On CPU, problems are processed in chunks of about this many matrix bytes: large batched
#: temporaries cost page faults and cache misses, and LAPACK gains nothing from batching there.
CPU_CHUNK_BYTES = 64 * 1024**2


def problems_per_chunk(num_problems: int, n: int, device: torch.device) -> int:
    """How many stacked ``n x n`` problems to process at once (>= 1); raise if one cannot fit.

    CUDA: as many as the memory budget allows (batched kernels pay off). CPU: about
    ``CPU_CHUNK_BYTES`` of matrices per chunk.
    """
    budget = memory_budget(device)
    per = dense_bytes_per_problem(n)
    if per > budget:
        raise MemoryBudgetError(
            f"a dense solve with n={n} points needs about {per / 1e9:.3g} GB "
            f"({BYTES_PER_ENTRY} bytes per entry of the n x n similarity matrix) but the memory "
            f"budget on {device} is {budget / 1e9:.3g} GB. Alternatives: subsample the points "
            f"(e.g. magtorch.subset), use a matrix-free solver when available, or raise the "
            f"budget with magtorch.set_memory_budget(bytes) / MAGTORCH_MEMORY_BUDGET"
        )
    size = budget // per
    if device.type != "cuda":
        size = min(size, max(1, CPU_CHUNK_BYTES // (8 * n * n)))
    return max(1, min(num_problems, size))


def rows_per_chunk(total: int, bytes_per_row: int, device: torch.device) -> int:
    """How many rows of a large temporary (``bytes_per_row`` each) to build at once (>= 1)."""
    limit = memory_budget(device)
    if device.type != "cuda":
        limit = min(limit, CPU_CHUNK_BYTES)
    return max(1, min(total, limit // max(1, bytes_per_row)))
