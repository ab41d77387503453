"""Helpers of the experiment smoke tests: independent float64 NumPy references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def load_model(model: nn.Module, out: Path) -> nn.Module:
    """Load ``out/last.ckpt`` (a LitClassifier checkpoint) into ``model`` and return it."""
    state = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return model.eval()


def loo_ratio_reference(z: np.ndarray, labels: np.ndarray, t: float) -> np.ndarray:
    """Leave-one-out potential ratio by explicit inverses (DESIGN.md §1), float64 NumPy."""
    z = np.asarray(z, dtype=np.float64)

    def loo(points: np.ndarray) -> np.ndarray:
        d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
        p = np.linalg.inv(np.exp(-t * d))
        w = p.sum(axis=1)
        return 1.0 - w / np.diag(p)

    all_pot = loo(z)
    cls_pot = np.empty(len(z))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        cls_pot[idx] = loo(z[idx]) if len(idx) > 1 else 0.0
    return cls_pot / all_pot


def nc1_reference(h: np.ndarray, y: np.ndarray) -> float:
    """NC1 = Tr(Sigma_W pinv(Sigma_B)) / C with explicit loops (Papyan et al. 2020)."""
    h = np.asarray(h, dtype=np.float64)
    classes = sorted(set(y.tolist()))
    means = {c: h[y == c].mean(axis=0) for c in classes}
    mu_g = np.mean([means[c] for c in classes], axis=0)
    sw = sum(np.outer(h[i] - means[y[i]], h[i] - means[y[i]]) for i in range(len(h))) / len(h)
    sb = sum(np.outer(means[c] - mu_g, means[c] - mu_g) for c in classes) / len(classes)
    return float(np.trace(sw @ np.linalg.pinv(sb)) / len(classes))
