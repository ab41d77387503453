"""Magnitude clustering against KMeans, DBSCAN and Agglomerative clustering (adjusted Rand index).

Datasets (scikit-learn generators, fixed seeds):

* ``blobs+outliers``: ``make_blobs(500, centers=4, cluster_std=0.8, random_state=0)`` plus 25
  points uniform on the blobs' bounding box widened by 2 (``default_rng(0)``);
* ``moons``: ``make_moons(500, noise=0.06, random_state=0)``;
* ``circles``: ``make_circles(500, noise=0.04, factor=0.5, random_state=0)``;
* ``iris``: the 150 flowers, standardised feature-wise (4-d).

Methods, none tuned on the labels:

* magnitude clustering, automatic threshold (most persistent count of the default 40-point
  sweep), ``t = 1`` after scaling to mean pairwise distance 1 (the paper's setting);
* **oracle** (not a method): the best ARI over the same sweep's thresholds, i.e. what the best
  threshold *chosen with the labels* would give;
* KMeans and Agglomerative (Ward) with ``k`` = the true number of clusters (KMeans
  ``n_init=10, random_state=0``);
* DBSCAN with ``min_samples = 2 d`` (Sander et al.'s rule) and ``eps`` the knee of the sorted
  ``min_samples``-distance curve (the point farthest below the chord, both axes scaled to
  [0, 1]).

ARI is computed on the points that have a true cluster (the 25 outliers are clustered by every
method but not scored: no method is rewarded or penalised for its outlier convention; DBSCAN
labels noise -1, magnitude clustering makes outliers singletons). A second table shows the
magnitude clustering at ``t = 3`` and ``t = 10`` (sensitivity, again not tuned on labels).

Usage::

    python -m experiments.clustering_comparison [--out DIR] [--quick]

Writes ``report.md``, ``results.json`` and ``clusterings.png`` to ``outputs/clustering`` (or
``DIR``). ``--quick`` uses 150 points per generated dataset and a 12-point sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments import _markdown

DEFAULT_OUT = Path("outputs") / "clustering"
DATASETS = ("blobs+outliers", "moons", "circles", "iris")
METHODS = ("magnitude (auto)", "magnitude (oracle)", "KMeans", "DBSCAN", "Agglomerative")
SENSITIVITY_T = (3.0, 10.0)
N_OUTLIERS = 25
SEED = 0


@dataclass
class Dataset:
    """Points, true labels (``-1``: outlier, not scored) and the true cluster count."""

    name: str
    x: np.ndarray
    y: np.ndarray

    @property
    def k(self) -> int:
        return len(set(self.y[self.y >= 0].tolist()))


@dataclass
class MethodResult:
    """Labels, ARI on the scored points, cluster count and wall time of one method."""

    labels: np.ndarray
    ari: float
    n_clusters: int
    seconds: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_dataset(name: str, *, quick: bool = False) -> Dataset:
    """Build one of :data:`DATASETS` (fixed seeds).

    Example:
        >>> d = make_dataset("moons", quick=True)
        >>> d.x.shape, d.k
        ((150, 2), 2)
    """
    from sklearn import datasets as skd
    from sklearn.preprocessing import StandardScaler

    n = 150 if quick else 500
    if name == "blobs+outliers":
        x, y = skd.make_blobs(n, centers=4, cluster_std=0.8, random_state=SEED)
        rng = np.random.default_rng(SEED)
        m = N_OUTLIERS * n // 500
        out = rng.uniform(x.min(0) - 2.0, x.max(0) + 2.0, size=(m, 2))
        return Dataset(name, np.vstack([x, out]), np.concatenate([y, -np.ones(m, dtype=int)]))
    if name == "moons":
        x, y = skd.make_moons(n, noise=0.06, random_state=SEED)
        return Dataset(name, x, y)
    if name == "circles":
        x, y = skd.make_circles(n, noise=0.04, factor=0.5, random_state=SEED)
        return Dataset(name, x, y)
    if name == "iris":
        iris = skd.load_iris()
        return Dataset(name, StandardScaler().fit_transform(iris.data), iris.target)
    raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")


def score(d: Dataset, labels: np.ndarray) -> float:
    """Adjusted Rand index on the points with a true cluster (``y >= 0``)."""
    from sklearn.metrics import adjusted_rand_score

    keep = d.y >= 0
    return float(adjusted_rand_score(d.y[keep], np.asarray(labels)[keep]))


def dbscan_eps(x: np.ndarray, min_samples: int) -> float:
    """Knee of the sorted ``min_samples``-distance curve (farthest point below the chord).

    Example:
        >>> x = np.concatenate([np.zeros((20, 2)) + np.arange(20)[:, None] * 0.01, [[5.0, 5.0]]])
        >>> round(dbscan_eps(x, 2), 3)
        0.014
    """
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=min_samples).fit(x).kneighbors(x)
    kd = np.sort(dist[:, -1])  # distance to the (min_samples - 1)-th other point
    u = np.linspace(0.0, 1.0, len(kd))
    v = (kd - kd[0]) / max(kd[-1] - kd[0], 1e-300)
    return float(kd[int(np.argmax(u - v))])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_magnitude(d: Dataset, t: float, n_thresholds: int) -> tuple[MethodResult, MethodResult]:
    """Automatic magnitude clustering and the oracle over its own sweep."""
    from magtorch.cluster import MagnitudeClustering

    model, secs = _timed(lambda: MagnitudeClustering(t=t, n_thresholds=n_thresholds).fit(d.x))
    sweep = model.sweep_
    aris = [score(d, lab.numpy()) for lab in sweep.labels]
    best = int(np.argmax(aris))
    sizes = np.bincount(model.labels_)
    auto = MethodResult(
        model.labels_,
        score(d, model.labels_),
        model.n_clusters_,
        secs,
        note=f"threshold {model.threshold_:.3g}, {int((sizes == 1).sum())} singletons",
        extra={
            "sweep_thresholds": sweep.thresholds.tolist(),
            "sweep_n_clusters": sweep.n_clusters.tolist(),
            "sweep_ari": aris,
            "threshold": model.threshold_,
            "sweep_runs": sweep.n_runs,
        },
    )
    oracle = MethodResult(
        sweep.labels[best].numpy(),
        aris[best],
        int(sweep.n_clusters[best]),
        secs,
        note=f"threshold {float(sweep.thresholds[best]):.3g} (chosen with the labels)",
    )
    return auto, oracle


def run_all_methods(d: Dataset, *, n_thresholds: int) -> dict[str, MethodResult]:
    """Every method of :data:`METHODS` on ``d``."""
    from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans

    auto, oracle = run_magnitude(d, 1.0, n_thresholds)
    out = {"magnitude (auto)": auto, "magnitude (oracle)": oracle}
    km, s = _timed(lambda: KMeans(d.k, n_init=10, random_state=SEED).fit_predict(d.x))
    out["KMeans"] = MethodResult(km, score(d, km), d.k, s, note=f"k = {d.k} (true)")
    min_samples = 2 * d.x.shape[1]
    eps = dbscan_eps(d.x, min_samples)
    db, s = _timed(lambda: DBSCAN(eps=eps, min_samples=min_samples).fit_predict(d.x))
    n_db = len(set(db.tolist()) - {-1})
    out["DBSCAN"] = MethodResult(
        db,
        score(d, db),
        n_db,
        s,
        note=f"eps {eps:.3g}, min_samples {min_samples}, {int((db == -1).sum())} noise",
    )
    ag, s = _timed(lambda: AgglomerativeClustering(d.k).fit_predict(d.x))
    out["Agglomerative"] = MethodResult(ag, score(d, ag), d.k, s, note=f"Ward, k = {d.k} (true)")
    return out


def make_figure(
    datasets: Sequence[Dataset], results: dict[str, dict[str, MethodResult]], path: Path
) -> Path:
    """Scatter plots: rows = datasets, columns = truth and methods, plus the sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ("truth", "magnitude (auto)", "KMeans", "DBSCAN", "Agglomerative")
    fig, axes = plt.subplots(len(datasets), len(cols) + 1, figsize=(3.1 * 6, 3.0 * len(datasets)))
    cmap = plt.get_cmap("tab10")
    for r, d in enumerate(datasets):
        xy = d.x if d.x.shape[1] == 2 else _pca2(d.x)
        for c, name in enumerate(cols):
            ax = axes[r, c]
            labels = d.y if name == "truth" else results[d.name][name].labels
            _scatter(ax, xy, np.asarray(labels), cmap)
            if name == "truth":
                title = f"{d.name}: truth (k={d.k})"
            else:
                res = results[d.name][name]
                title = f"{name}\nARI {res.ari:.2f}, {res.n_clusters} clusters"
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        ax = axes[r, -1]
        ex = results[d.name]["magnitude (auto)"].extra
        ax.step(ex["sweep_thresholds"], ex["sweep_n_clusters"], where="mid", color="k", lw=1.2)
        ax.axvline(ex["threshold"], color="tab:red", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("threshold", fontsize=8)
        ax.set_ylabel("clusters", fontsize=8)
        ax.set_title("magnitude sweep (red: chosen)", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        "Clusterings (black x: singleton clusters of magnitude clustering / DBSCAN noise; "
        "iris shown on its first 2 principal components)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pca2(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:2].T


def _scatter(ax: Any, xy: np.ndarray, labels: np.ndarray, cmap: Any) -> None:
    """Clusters coloured by size rank; DBSCAN noise (-1) and singletons as black crosses."""
    values, counts = np.unique(labels, return_counts=True)
    lone = set(values[counts == 1].tolist()) | {-1}
    rank = {v: i for i, v in enumerate(values[np.argsort(-counts, kind="stable")])}
    is_lone = np.array([v in lone for v in labels.tolist()])
    colours = [cmap(rank[v] % 10) for v in labels[~is_lone].tolist()]
    ax.scatter(xy[~is_lone, 0], xy[~is_lone, 1], c=colours, s=6, linewidths=0)
    ax.scatter(xy[is_lone, 0], xy[is_lone, 1], c="k", marker="x", s=14, linewidths=0.8)


TABLE_HEADER = "| dataset | n | k | " + " | ".join(METHODS) + " |"


def write_report(
    out: Path,
    datasets: Sequence[Dataset],
    results: dict[str, dict[str, MethodResult]],
    sensitivity: dict[str, dict[float, tuple[MethodResult, MethodResult]]],
    figure: Path,
    quick: bool,
) -> Path:
    """Write ``report.md`` (table, notes, sensitivity table, figure)."""
    lines = [
        "# Magnitude clustering vs KMeans, DBSCAN, Agglomerative",
        "",
        f"Adjusted Rand index (ARI, 1 = the true partition){' [quick run]' if quick else ''}. "
        "Magnitude clustering: Algorithm 4 of Andreeva et al. (AAAI 2025), data scaled to mean "
        "pairwise distance 1, t = 1, threshold chosen automatically (most persistent count). "
        "**oracle** = best ARI over that sweep's thresholds, chosen *with the labels*: an upper "
        "bound, not a method. KMeans/Agglomerative get the true k; DBSCAN gets min_samples = 2d "
        "and eps from the k-distance knee. Outliers (blobs) are clustered but not scored.",
        "",
        TABLE_HEADER,
        "|" + "---|" * (3 + len(METHODS)),
    ]
    for d in datasets:
        row = results[d.name]
        cells = [f"{row[m].ari:.3f} ({row[m].n_clusters})" for m in METHODS]
        lines.append(f"| {d.name} | {len(d.x)} | {d.k} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: ARI (number of clusters found, singletons included).", ""]
    lines += ["## Where magnitude clustering wins and loses", ""]
    for d in datasets:
        row = results[d.name]
        ours = row["magnitude (auto)"].ari
        rivals = {m: row[m].ari for m in ("KMeans", "DBSCAN", "Agglomerative")}
        best = max(rivals, key=rivals.__getitem__)
        verdict = (
            "wins" if ours > rivals[best] + 1e-9 else "ties" if ours >= rivals[best] else "loses"
        )
        lines.append(
            f"- {d.name}: magnitude (auto) {verdict} — ARI {ours:.3f} against the best "
            f"baseline {best} {rivals[best]:.3f} (oracle threshold: "
            f"{row['magnitude (oracle)'].ari:.3f})."
        )
    lines += [
        "",
        "What the figure shows about the mechanism: a cluster grows by whichever free point "
        "raises some cluster's magnitude least, and on the line that increase is exactly "
        "tanh(t gap / 2) for a point beyond a cluster's end, so the rule behaves much like "
        "single linkage on magnitude increases. It separates shapes split by a clear gap "
        "(circles) and it chains through bridges and touching blobs (blobs+outliers, moons at "
        "t = 1) where KMeans/Ward — given the true k — do better. The automatic count also "
        "counts singleton clusters (outliers, sparse fringe points), so a persistent count can "
        "be 'one big cluster plus a few singletons'. The result depends on the scale t "
        "(sensitivity table below), which the paper fixes at 1 after scaling the data to mean "
        "distance 1.",
        "",
    ]
    lines += ["## Details", "", "| dataset | method | note | time [s] |", "|---|---|---|---|"]
    for d in datasets:
        for m in METHODS:
            r = results[d.name][m]
            lines.append(f"| {d.name} | {m} | {r.note} | {r.seconds:.2f} |")
    lines += [
        "",
        "## Sensitivity to the scale t (magnitude clustering only, not tuned on labels)",
        "",
        "| dataset | "
        + " | ".join(f"t = {t:g}: auto | t = {t:g}: oracle" for t in (1.0,))
        + " | "
        + " | ".join(f"t = {t:g}: auto | t = {t:g}: oracle" for t in SENSITIVITY_T)
        + " |",
        "|---|" + "---|" * (2 * (1 + len(SENSITIVITY_T))),
    ]
    for d in datasets:
        cells = [
            f"{results[d.name]['magnitude (auto)'].ari:.3f} "
            f"({results[d.name]['magnitude (auto)'].n_clusters})",
            f"{results[d.name]['magnitude (oracle)'].ari:.3f}",
        ]
        for t in SENSITIVITY_T:
            auto, oracle = sensitivity[d.name][t]
            cells += [f"{auto.ari:.3f} ({auto.n_clusters})", f"{oracle.ari:.3f}"]
        lines.append(f"| {d.name} | " + " | ".join(cells) + " |")
    lines += ["", f"![clusterings]({figure.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def parse_table(report_md: str) -> list[dict[str, str]]:
    """Rows of the main table of ``report.md`` as dicts keyed by the header."""
    return _markdown.parse_table(report_md, TABLE_HEADER)


def run(out: Path = DEFAULT_OUT, *, quick: bool = False) -> dict[str, Any]:
    """Run the comparison, write the report, return the results (JSON-friendly)."""
    out.mkdir(parents=True, exist_ok=True)
    n_thresholds = 12 if quick else 40
    datasets = [make_dataset(name, quick=quick) for name in DATASETS]
    results = {d.name: run_all_methods(d, n_thresholds=n_thresholds) for d in datasets}
    sensitivity = {
        d.name: {t: run_magnitude(d, t, n_thresholds) for t in SENSITIVITY_T} for d in datasets
    }
    figure = make_figure(datasets, results, out / "clusterings.png")
    report = write_report(out, datasets, results, sensitivity, figure, quick)
    payload = {
        "quick": quick,
        "datasets": {
            d.name: {
                "n": len(d.x),
                "k": d.k,
                "methods": {
                    m: {
                        "ari": r.ari,
                        "n_clusters": r.n_clusters,
                        "seconds": r.seconds,
                        "note": r.note,
                        **r.extra,
                    }
                    for m, r in results[d.name].items()
                },
                "sensitivity": {
                    str(t): {"auto_ari": a.ari, "auto_k": a.n_clusters, "oracle_ari": o.ari}
                    for t, (a, o) in sensitivity[d.name].items()
                },
            }
            for d in datasets
        },
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    payload["report"] = str(report)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Magnitude clustering vs sklearn clusterers.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--quick", action="store_true", help="small data (smoke test)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    res = run(args.out, quick=args.quick)
    print(Path(res["report"]).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
