"""Runners: experiments that are not one Lightning fit, as ``cfg.runner`` of ``train.py``.

Each runner is ``f(cfg, out_dir) -> dict`` (see :mod:`experiments.train`): it calls the
existing experiment module's own entry point with the config's ``params`` and returns flat
metrics for ``metrics.json``; the module writes its ``report.md`` and figures into the run's
output folder. ``debug=fast`` (``cfg.fast``) selects each module's ``--quick`` mode.

* :func:`generative`: :mod:`experiments.generative` (push-forward generators trained with
  magnitude distance against GeomLoss peers);
* :func:`clustering`: :mod:`experiments.clustering_comparison` (magnitude clustering against
  scikit-learn clusterers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["clustering", "generative"]


def _params(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    params = cfg.get("params") if cfg is not None else None
    return OmegaConf.to_container(params, resolve=True) if params is not None else {}


def generative(cfg: Any, out_dir: str | Path) -> dict[str, float]:
    """Run :func:`experiments.generative.main` into ``out_dir``.

    ``cfg.params``: ``datasets``, ``losses`` (lists; default all), ``steps`` (int or null),
    ``seeds`` (list or null), ``quick`` (bool; also set by ``cfg.fast``). Returns
    ``generative/<dataset>/<loss>/<metric>`` = the mean over seeds of each evaluation metric.
    """
    from experiments import generative as gen

    os.environ.setdefault("MPLBACKEND", "Agg")
    p = _params(cfg)
    argv = ["--out", str(out_dir)]
    if p.get("quick") or cfg.get("fast"):
        argv.append("--quick")
    if p.get("datasets"):
        argv += ["--datasets", *[str(d) for d in p["datasets"]]]
    if p.get("losses"):
        argv += ["--losses", *[str(v) for v in p["losses"]]]
    if p.get("steps") is not None:
        argv += ["--steps", str(int(p["steps"]))]
    if p.get("seeds"):
        argv += ["--seeds", *[str(int(s)) for s in p["seeds"]]]
    code = gen.main(argv)
    if code != 0:
        raise RuntimeError(f"experiments.generative.main{tuple(argv)} returned {code}")
    saved = json.loads((Path(out_dir) / "results.json").read_text())
    metrics: dict[str, float] = {}
    for name, res in saved["results"].items():
        for loss, r in res["losses"].items():
            for key, value in r["mean"].items():
                metrics[f"generative/{name}/{loss}/{key}"] = float(value)
    return metrics


def _slug(name: str) -> str:
    """``"magnitude (auto)"`` -> ``"magnitude_auto"`` (metric keys without spaces)."""
    return "_".join(name.replace("(", " ").replace(")", " ").split()).lower()


def clustering(cfg: Any, out_dir: str | Path) -> dict[str, float]:
    """Run :func:`experiments.clustering_comparison.run` into ``out_dir``.

    ``cfg.params.quick`` (or ``cfg.fast``) selects the small data sets. Returns
    ``clustering/<dataset>/<method>/ari`` and ``.../n_clusters`` (method names as
    ``magnitude_auto``, ``kmeans``).
    """
    from experiments import clustering_comparison as cc

    os.environ.setdefault("MPLBACKEND", "Agg")
    p = _params(cfg)
    res = cc.run(Path(out_dir), quick=bool(p.get("quick") or cfg.get("fast")))
    metrics: dict[str, float] = {}
    for name, d in res["datasets"].items():
        for method, r in d["methods"].items():
            method = _slug(method)
            metrics[f"clustering/{name}/{method}/ari"] = float(r["ari"])
            metrics[f"clustering/{name}/{method}/n_clusters"] = float(r["n_clusters"])
    return metrics
