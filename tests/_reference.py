"""Independent float64 dense references and closed forms used by the test suite.

Nothing here imports magtorch: every number the tests compare against comes from these
hand-built formulas (``torch.linalg.solve`` on ``exp(-t * D)`` in float64) or from closed
forms of the magnitude of special spaces (see DESIGN.md section 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch

F64 = torch.float64


def as64(x) -> torch.Tensor:
    """A float64 CPU copy of ``x`` (tensor, array or nested list)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=F64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def ref_distances(x, y=None, metric: str = "euclidean") -> torch.Tensor:
    """Pairwise distances built by hand from coordinate differences, in float64."""
    x = as64(x)
    y = x if y is None else as64(y)
    if metric == "precomputed":
        return x.clone()
    if metric == "cosine":
        # angle = 2 atan2(|a - b|, |a + b|) for unit vectors a, b: accurate for all angles
        # (arccos of the cosine loses half the digits near 0 and pi) and exactly 0 for a == b
        xn = x / x.norm(dim=-1, keepdim=True)
        yn = y / y.norm(dim=-1, keepdim=True)
        a, b = xn[..., :, None, :], yn[..., None, :, :]
        return 2.0 * torch.atan2((a - b).norm(dim=-1), (a + b).norm(dim=-1))
    diff = x[..., :, None, :] - y[..., None, :, :]
    if metric == "euclidean":
        return diff.norm(dim=-1)
    if metric == "l1":
        return diff.abs().sum(dim=-1)
    raise ValueError(metric)


def ref_similarity(D, t: float) -> torch.Tensor:
    return torch.exp(-float(t) * as64(D))


def ref_weights_from_distances(D, t: float) -> torch.Tensor:
    Z = ref_similarity(D, t)
    ones = torch.ones(Z.shape[:-1] + (1,), dtype=F64)
    return torch.linalg.solve(Z, ones)[..., 0]


def ref_weights(x, t: float, metric: str = "euclidean") -> torch.Tensor:
    return ref_weights_from_distances(ref_distances(x, metric=metric), t)


def ref_magnitude(x, t: float, metric: str = "euclidean") -> float | torch.Tensor:
    w = ref_weights(x, t, metric=metric)
    return w.sum(-1)


def ref_magnitude_many(x, ts, metric: str = "euclidean") -> np.ndarray:
    D = ref_distances(x, metric=metric)
    return np.array([float(ref_weights_from_distances(D, float(t)).sum()) for t in ts])


def ref_potential(z, x, t: float, metric: str = "euclidean") -> torch.Tensor:
    """h_X(z) = sum_j w_j exp(-t d(z, x_j)) with w the float64 reference weighting of X."""
    w = ref_weights(x, t, metric=metric)
    K = torch.exp(-float(t) * ref_distances(z, x, metric=metric))
    return K @ w


def ref_cond(x, t: float, metric: str = "euclidean") -> float:
    Z = ref_similarity(ref_distances(x, metric=metric), t)
    return float(torch.linalg.cond(Z))


def min_pairwise_distance(x) -> float:
    D = ref_distances(x)
    n = D.shape[-1]
    if n < 2:
        return math.inf
    D = D + torch.diag(torch.full((n,), math.inf, dtype=F64))
    return float(D.min())


# ----------------------------------------------------------------------------- closed forms


def line_points(gaps, start: float = 0.0) -> np.ndarray:
    """Points on the real line (as an (n, 1) array) with the given consecutive gaps."""
    return (start + np.concatenate([[0.0], np.cumsum(np.asarray(gaps, dtype=np.float64))]))[:, None]


def line_magnitude(gaps, t: float) -> float:
    """Mag = 1 + sum_k tanh(t g_k / 2) for points on a line."""
    g = np.asarray(gaps, dtype=np.float64)
    return float(1.0 + np.tanh(t * g / 2.0).sum())


def line_weights(gaps, t: float) -> np.ndarray:
    """End weights (1 + tanh(t g/2))/2, interior (tanh(t g_l/2) + tanh(t g_r/2))/2."""
    th = np.tanh(t * np.asarray(gaps, dtype=np.float64) / 2.0)
    left = np.concatenate([[1.0], th])
    right = np.concatenate([th, [1.0]])
    return (left + right) / 2.0


def line_magnitude_dt(gaps, t: float) -> float:
    g = np.asarray(gaps, dtype=np.float64)
    return float((g / 2.0 / np.cosh(t * g / 2.0) ** 2).sum())


def two_point_magnitude(d: float, t: float) -> float:
    return 2.0 / (1.0 + math.exp(-t * d))


def simplex_points(n: int, d: float) -> np.ndarray:
    """Vertices of a regular simplex with n vertices and side d (in R^n)."""
    return np.eye(n) * (d / math.sqrt(2.0))


def simplex_magnitude(n: int, d: float, t: float) -> float:
    return n / (1.0 + (n - 1) * math.exp(-t * d))


def polygon_points(m: int, radius: float) -> np.ndarray:
    a = 2.0 * np.pi * np.arange(m) / m
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def polygon_magnitude(m: int, radius: float, t: float) -> float:
    k = np.arange(m)
    return float(m / np.exp(-2.0 * t * radius * np.abs(np.sin(np.pi * k / m))).sum())


def l1_grid_points(m: int, k: int) -> np.ndarray:
    axes = [np.arange(m, dtype=np.float64)] * k
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, k)


def l1_grid_magnitude(m: int, k: int, t: float) -> float:
    return float((1.0 + (m - 1) * math.tanh(t / 2.0)) ** k)


def assert_close(actual, expected, rtol: float, atol: float = 0.0, msg: str = "") -> None:
    """Compare in float64 on the CPU with a relative (and optional absolute) tolerance."""
    a = as64(actual)
    e = as64(expected)
    assert a.shape == e.shape, f"shape {tuple(a.shape)} != {tuple(e.shape)} {msg}"
    torch.testing.assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m: f"{m}\n{msg}")


# ----------------------------------------------------------------------------- clustering


def ref_extension_increase(cluster, b, t: float) -> float:
    """Mag(t(C ∪ {b})) - Mag(tC) by two dense float64 solves (no Schur complement)."""
    c = as64(cluster)
    both = torch.cat([c, as64(b).reshape(1, -1)])
    return float(ref_magnitude(both, t) - ref_magnitude(c, t))


def ref_mean_distance_scaled(x) -> torch.Tensor:
    """Distances divided by their mean over pairs i != j (float64)."""
    D = ref_distances(x)
    n = D.shape[0]
    return D / (D.sum() / (n * (n - 1)))


def ref_greedy_clustering(x, threshold: float, t: float = 1.0) -> list[int]:
    """Algorithm 4 (Andreeva et al. 2025) by brute force: every round re-solves Mag(c ∪ {b}).

    Data scaled to mean pairwise distance 1; first seed the point of largest sum of
    exp(-t d) (lowest index on ties); each round the pair (b, c) with the smallest increase
    (lowest b, then lowest c on ties); b joins c iff increase < threshold, else opens {b}.
    Labels in order of creation. O(n^2 C) dense solves: for n <= ~40 only.
    """
    D = ref_mean_distance_scaled(x)
    Z = torch.exp(-float(t) * D)
    n = D.shape[0]

    def mag(idx: list[int]) -> float:
        sub = Z[idx][:, idx]
        return float(torch.linalg.solve(sub, torch.ones(len(idx), dtype=F64)).sum())

    seed = int(torch.argmax(Z.sum(1)))
    clusters = [[seed]]
    labels = [-1] * n
    labels[seed] = 0
    for _ in range(n - 1):
        best = (math.inf, -1, -1)
        base = [mag(c) for c in clusters]
        for b in range(n):
            if labels[b] >= 0:
                continue
            for k, c in enumerate(clusters):
                inc = mag(c + [b]) - base[k]
                if inc < best[0]:
                    best = (inc, b, k)
        inc, b, k = best
        if inc < threshold:
            clusters[k].append(b)
            labels[b] = k
        else:
            clusters.append([b])
            labels[b] = len(clusters) - 1
    return labels
