"""Shared fixtures for the magtorch test suite.

* ``device``: parametrised over "cpu" and "cuda"; the cuda case is skipped when
  ``torch.cuda.is_available()`` is False. Oracle tests use it to check CUDA in -> CUDA out.
* ``@pytest.mark.slow`` (registered in pyproject.toml) is deselected by default;
  ``pytest -m slow`` runs only those, ``pytest -m ""`` runs everything.
* hypothesis profile "magtorch": few examples, no deadline (the first call pays for
  torch's lazy initialisation), so the property tests stay fast.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# The problems here are tiny (n <= a few hundred): one intra-op thread is fastest, and it keeps
# the suite's runtime stable on a loaded machine, where OpenMP threads spinning for a busy core
# made a 225 x 225 solve 400x slower (0.14 s instead of 0.3 ms) on a 2-core box.
# MAGTORCH_TEST_THREADS=<k> overrides.
torch.set_num_threads(int(os.environ.get("MAGTORCH_TEST_THREADS", "1")))

settings.register_profile(
    "magtorch",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "magtorch-thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile("magtorch")


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available"),
        ),
    ]
)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(20240611)
