"""Composing ``configs/train.yaml`` with Hydra's compose API in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import experiments.schema  # noqa: F401  (registers train_schema)
from experiments.train import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
TRAIN_PY = ROOT / "experiments" / "train.py"


def compose_train(overrides: Sequence[str] = (), config_dir: str = CONFIG_DIR) -> DictConfig:
    """The composed training config (``version_base="1.3"``), Hydra's node left out."""
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def run_cli(args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python experiments/train.py ARGS`` in a subprocess (1 torch thread, no window)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(TRAIN_PY), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
