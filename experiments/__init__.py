"""Experiments and demos built on magtorch (run as ``python -m experiments.<name>``)."""

from __future__ import annotations

__all__: list[str] = []
