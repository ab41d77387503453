"""Error and warning types raised by magtorch.

Every bad input raises :class:`MagtorchError` (a :class:`ValueError`) where it enters, with a
message that names the argument, the value and what is allowed. Solves that miss their
tolerance emit a :class:`ConvergenceWarning` or raise a :class:`ConvergenceError`, as the caller
chose with ``on_nonconvergence``.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "ConvergenceError",
    "ConvergenceWarning",
    "MagnitudeWarning",
    "MagtorchError",
    "MemoryBudgetError",
]


class MagtorchError(ValueError):
    """Invalid input to a magtorch function; the message names the argument."""


class MemoryBudgetError(MagtorchError, MemoryError):
    """A dense problem would not fit in the memory budget; the message names the alternatives."""


class ConvergenceError(MagtorchError):
    """An iterative solve missed its tolerance and ``on_nonconvergence="raise"`` was chosen."""


class ConvergenceWarning(UserWarning):
    """An iterative solve missed its tolerance (``on_nonconvergence="warn"``, the default)."""


class MagnitudeWarning(UserWarning):
    """A solve succeeded but its result needs attention (e.g. an indefinite ``Z``)."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message: str, category: type[Warning]) -> None:
    """Emit a warning attributed to the first caller outside magtorch (the user's line)."""
    level = 2
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
