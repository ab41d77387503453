"""Error and warning types raised by magtorch.

Every bad input raises :class:`MagtorchError` (a :class:`ValueError`) where it enters, with a
message that names the argument, the value and what is allowed. Solves that miss their tolerance emit a
:class:`ConvergenceWarning` or raise a :class:`ConvergenceError`, as the caller chose with
``on_nonconvergence``.
"""

from __future__ import annotations

__all__ = ["ConvergenceError", "ConvergenceWarning", "MagtorchError", "MemoryBudgetError"]


class MagtorchError(ValueError):
    """Invalid input to a magtorch function; the message names the argument."""


class MemoryBudgetError(MagtorchError, MemoryError):
    """A dense problem would not fit in the memory budget; the message names the alternatives."""


class ConvergenceError(MagtorchError):
    """An iterative solve missed its tolerance and ``on_nonconvergence="raise"`` was chosen."""


class ConvergenceWarning(UserWarning):
    """An iterative solve missed its tolerance (``on_nonconvergence="warn"``, the default)."""
