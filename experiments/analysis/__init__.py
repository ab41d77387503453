"""Analyses and reports of the experiments: each takes a run's output folder and what
``experiments/train.py`` built (config, trainer, module, data module, metrics), writes
``report.md`` and PNGs there and returns extra metrics for ``metrics.json``.

* :mod:`experiments.analysis.common`: the default report and shared helpers;
* :mod:`experiments.analysis.memorization`: experiment 1 (potential ratio against
  Feldman memorisation estimates and baselines);
* :mod:`experiments.analysis.grokking`, :mod:`~experiments.analysis.neural_collapse`,
  :mod:`~experiments.analysis.weight_reg`, :mod:`~experiments.analysis.trajectory`:
  experiments 2, 3, 5 and 6 (per-run reports and sweep aggregations);
* :mod:`experiments.analysis.sweep`: the Hydra callback that runs a sweep's aggregation.
"""
