r"""Magnitude of an optimisation trajectory after convergence (Andreeva et al., AAAI 2025, §5.2).

After training (``on_train_end``, or at the end of training epoch ``at_epoch``) the callback
takes ``n_steps`` further optimizer steps itself, records the flattened parameter vector
:math:`\theta_k \in \mathbb{R}^P` after every ``every_k_steps``-th step, and computes the
magnitude and the positive magnitude of the point set :math:`\{\theta_k\}` (``n = n_steps //
every_k_steps`` points, the paper's :math:`\mathrm{Mag}_n` and :math:`\mathrm{PMag}_n`, with
``n`` up to :math:`10^4` there) at each scale ``t``, with Euclidean distances:

.. math::

    D_{ij} = \lVert \theta_i - \theta_j \rVert_2,\qquad
    \mathrm{Mag}(tX) = 1^\top e^{-tD}{}^{-1} 1,\qquad
    \mathrm{PMag}(tX) = \textstyle\sum_i \max(w_i, 0).

**What the extra steps are.** In train mode with gradients, for each step: the next batch of
the trainer's train dataloader (or ``dataloader``; restarted when exhausted), moved with
``trainer.strategy.batch_to_device``; ``optimizer.zero_grad()``; ``loss =
trainer.strategy.training_step(batch, step)`` (the module's ``training_step`` through the
strategy: under DDP through the wrapped model, so that ``loss.backward()`` all-reduces the
gradients; a tensor or a dict with ``"loss"``); ``loss.backward()``;
gradient clipping as ``trainer.gradient_clip_val``/``gradient_clip_algorithm`` say; then
``trainer.optimizers[0].step(closure)``. ``pl_module.log``/``log_dict`` calls inside
``training_step`` are dropped during these steps (Lightning forbids logging from
``on_train_end``). Not done: learning-rate schedulers are not stepped (the rate stays at its
current value), ``accumulate_grad_batches`` is ignored (one batch per step), only the first
optimizer is used, no gradient scaling is applied (the precision plugin's autocast context
is), and ``global_step`` and the loop counters do not move. Not supported (the callback raises
at ``on_fit_start``): manual optimisation (``automatic_optimization = False``).

**Distributed (DDP).** Every rank takes the same steps on its shard of the training data (the
trainer's loader carries the ``DistributedSampler``; a ``dataloader`` given to the callback is
iterated as given on every rank) and the gradients are averaged by DDP, so the parameters are
identical on all ranks. Only global rank zero records the trajectory and solves; the results
are then broadcast, so ``callback.results`` is the same on every rank. Every rank's
``training_step`` must return a loss for every batch (a ``None`` on one rank only would leave
the others waiting in the all-reduce).

With ``restore=True`` (default) the module's parameters and buffers, the optimizer state and
the global RNG states are saved before and put back after the steps, so training (or the final
checkpoint) is as if the callback had not run; this costs one copy of the model and optimizer
state. With ``restore=False`` the model ends at the last trajectory point.

**Memory and cost** (``P`` parameters, ``n`` points, ``s`` bytes per parameter):

* the Gram matrix :math:`G = U U^\top` of the centred vectors :math:`u_k = \theta_k -
  \theta_0` (:math:`\theta_0` the parameters before the first step) is accumulated in float64
  block by block as steps arrive, on the CPU: :math:`8 n^2` bytes and :math:`n^2 P` flops in all
  (:math:`10^4` points of a :math:`10^6`-parameter model: 0.8 GB and :math:`10^{14}` flops).
  Distances are :math:`D_{ij}^2 = G_{ii} + G_{jj} - 2G_{ij}`; centring at :math:`\theta_0`
  (subtracted exactly in float64) keeps the cancellation small: the relative error of
  :math:`D_{ij}^2` is about :math:`10^{-16} \max_k \lVert u_k\rVert^2 / D_{ij}^2`;
* the exact Gram needs the inner products of each new vector with all earlier ones, so the
  earlier vectors must be kept somewhere: ``storage="memory"`` keeps them in RAM
  (:math:`n P s` bytes), ``storage="disk"`` in a temporary memmap file (:math:`n P s` bytes of
  disk under ``scratch_dir``, read back once per block of ``block_rows`` new vectors, deleted
  afterwards), ``storage="auto"`` picks memory when :math:`n P s` fits ``max_memory_bytes`` and
  disk otherwise. ``storage="sketch"`` keeps instead a count sketch (sparse random projection)
  of each :math:`u_k` in :math:`\mathbb{R}^{k}` (``sketch_dim``): :math:`8 n k + 5P` bytes,
  :math:`O(P)` per step, and *approximate* distances: :math:`\lVert S u\rVert^2` is unbiased for
  :math:`\lVert u\rVert^2` with relative standard deviation at most :math:`\sqrt{2/k}` (about
  2% for ``k = 4096``), so magnitudes are approximate too;
* the solve is dense (:func:`magtorch.solve` with ``metric="precomputed"``, one for all
  scales): about :math:`32 n^2` bytes and :math:`n^3/3` flops per scale — at :math:`n = 10^4`
  some 3.2 GB and seconds to minutes; subsample with ``every_k_steps`` (e.g. ``n_steps=10000,
  every_k_steps=2`` for 5000 points) or pass an iterative ``solver``.

Results are in ``callback.results`` (a dict, see :meth:`TrajectoryMagnitudeCallback.measure`),
logged to the trainer's loggers (``<log_prefix>/magnitude``, ``<log_prefix>/positive_magnitude``,
with a ``/t=<t>`` suffix for several scales) and written as JSON to
``<trainer.log_dir>/<filename>`` (rank zero, atomically: a temporary file then ``os.replace``).

Example:
    >>> from magtorch.callbacks.trajectory import TrajectoryMagnitudeCallback
    >>> cb = TrajectoryMagnitudeCallback(t=[1.0, 10.0], n_steps=1000, every_k_steps=2)
    >>> cb.n_points
    500
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from magtorch.errors import MagtorchError
from magtorch.magnitude import solve
from magtorch.network import check_include, select_parameters

__all__ = ["STORAGES", "TrajectoryMagnitudeCallback"]

STORAGES = ("auto", "memory", "disk", "sketch")


def _check_scales(t: Any, name: str = "t") -> list[float]:
    """``t`` (a positive number or a non-empty sequence of them) as a list of Python floats."""
    if isinstance(t, Tensor):
        if t.dim() > 1:
            raise MagtorchError(f"{name} must be a number or a 1-d sequence; got shape {t.shape}")
        t = t.reshape(-1).tolist()
    values = list(t) if isinstance(t, Sequence) and not isinstance(t, str) else [t]
    if not values:
        raise MagtorchError(f"{name} is an empty sequence; give at least one positive scale")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise MagtorchError(f"{name} must hold positive finite numbers; got {v!r}")
    return [float(v) for v in values]


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MagtorchError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


class _GramAccumulator:
    """Accumulate the float64 Gram matrix of centred vectors block by block as they arrive.

    ``append(v)`` takes one vector ``(dim,)``; every ``block_rows`` vectors the block's inner
    products with itself and with all earlier blocks (read back from RAM or a memmap) are added.
    ``center`` (float64, or None) is subtracted from every stored vector before products.
    """

    def __init__(
        self,
        n: int,
        dim: int,
        dtype: torch.dtype,
        on_disk: bool,
        block_rows: int,
        center: Tensor | None,
        scratch_dir: str | None = None,
    ) -> None:
        self.n, self.dim, self.block_rows = n, dim, max(1, min(block_rows, n))
        self.center = center
        self.gram = torch.zeros(n, n, dtype=torch.float64)
        self.count = 0
        self._buffer: list[Tensor] = []
        self._tmpdir: str | None = None
        if on_disk:
            self._tmpdir = tempfile.mkdtemp(prefix="magtorch-trajectory-", dir=scratch_dir)
            np_dtype = torch.empty((), dtype=dtype).numpy().dtype
            path = os.path.join(self._tmpdir, "trajectory.dat")
            self._data: Any = np.memmap(path, dtype=np_dtype, mode="w+", shape=(n, dim))
        else:
            self._data = torch.empty(n, dim, dtype=dtype)

    def _rows(self, start: int, stop: int) -> Tensor:
        if isinstance(self._data, np.memmap):
            return torch.from_numpy(np.asarray(self._data[start:stop]))
        return self._data[start:stop]

    def _centred(self, rows: Tensor) -> Tensor:
        rows = rows.to(torch.float64)
        return rows if self.center is None else rows - self.center

    def append(self, vector: Tensor) -> None:
        if self.count + len(self._buffer) >= self.n:
            raise MagtorchError(f"the trajectory already holds its {self.n} points")
        self._buffer.append(vector.detach().to("cpu"))
        if len(self._buffer) == self.block_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        block = torch.stack(self._buffer)
        start, k = self.count, block.shape[0]
        b = self._centred(block)
        self.gram[start : start + k, start : start + k] = b @ b.T
        for lo in range(0, start, self.block_rows):
            hi = min(lo + self.block_rows, start)
            g = self._centred(self._rows(lo, hi)) @ b.T
            self.gram[lo:hi, start : start + k] = g
            self.gram[start : start + k, lo:hi] = g.T
        if isinstance(self._data, np.memmap):
            self._data[start : start + k] = block.numpy()
        else:
            self._data[start : start + k] = block
        self.count += k
        self._buffer = []

    def distances(self) -> Tensor:
        """Euclidean distances ``(count, count)`` float64 from the Gram matrix."""
        self.flush()
        g = self.gram[: self.count, : self.count]
        diag = g.diagonal()
        d2 = (diag[:, None] + diag[None, :] - 2.0 * g).clamp_min(0.0)
        d = d2.sqrt()
        d = (d + d.T) / 2
        d.fill_diagonal_(0.0)
        return d

    def vectors(self) -> Tensor | None:
        """The stored vectors ``(count, dim)`` (in RAM only; None for the memmap)."""
        self.flush()
        if isinstance(self._data, np.memmap):
            return None
        return self._data[: self.count]

    def close(self) -> None:
        self._buffer = []
        if self._tmpdir is not None:
            del self._data
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


class _CountSketch:
    """A fixed count sketch ``R^P -> R^k``: coordinate j goes to bucket h(j) with sign s(j)."""

    def __init__(self, dim: int, k: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.k = k
        self.bucket = torch.randint(k, (dim,), generator=g, dtype=torch.int64).to(torch.int32)
        self.sign = (torch.randint(2, (dim,), generator=g) * 2 - 1).to(torch.int8)

    def __call__(self, u: Tensor) -> Tensor:
        u = u.detach().to("cpu", torch.float64)
        out = torch.zeros(self.k, dtype=torch.float64)
        return out.index_add_(0, self.bucket.long(), u * self.sign)


class TrajectoryMagnitudeCallback(Callback):
    """Magnitude and positive magnitude of ``n`` optimizer steps taken after convergence.

    See the module docstring for exactly what the extra steps do, their limits and the cost.

    Args:
        t: a positive scale or a sequence of scales (required: trajectory distances are about
            learning rate x gradient norm per step, so the useful scales depend on the run).
        n_steps: optimizer steps to take (default 1000).
        every_k_steps: keep the parameters after every k-th step (default 1): ``n_steps //
            every_k_steps`` points.
        at_epoch: ``None`` (default): run at ``on_train_end``; an int ``e``: run once at the end
            of training epoch ``e`` (0-based) and let training continue.
        include: which parameters form the vector (default ``None``: all trainable
            parameters); a glob pattern, a sequence of them or a predicate ``(name, param) ->
            bool`` as in :func:`magtorch.network.select_parameters`.
        storage: ``"auto"`` (default), ``"memory"``, ``"disk"`` or ``"sketch"`` (see the
            module docstring).
        max_memory_bytes: ``"auto"`` keeps the vectors in RAM when ``n * P * itemsize`` is at
            most this (default 1 GiB), else on disk.
        block_rows: vectors per Gram block (default ``None``: as many as fit 64 MiB in float64).
        sketch_dim: ``storage="sketch"``: dimension of the sketch (default 4096).
        seed: ``storage="sketch"``: seed of the hash (default 0).
        scratch_dir: ``storage="disk"``: directory of the temporary memmap (default: the
            system's temporary directory).
        dataloader: batches to use instead of the trainer's train dataloader.
        restore: put parameters, buffers, optimizer state and RNG states back afterwards
            (default True).
        solver: solver for :func:`magtorch.solve` (default ``"auto"``).
        keep_trajectory: keep ``callback.distances`` (``(n, n)`` float64) and, for in-RAM
            storage, ``callback.trajectory`` (``(n, P)``, the recorded parameter vectors, in
            the parameters' dtype) after the run (default False).
        log_prefix: prefix of the logged keys (default ``"trajectory"``).
        filename: JSON file name under ``trainer.log_dir`` (``None``: do not write).

    Attributes:
        results: the latest results (``None`` before a run); see :meth:`measure`.

    Raises:
        MagtorchError: at construction, naming the bad argument.
    """

    def __init__(
        self,
        t: float | Sequence[float],
        n_steps: int = 1000,
        every_k_steps: int = 1,
        at_epoch: int | None = None,
        include: Any = None,
        storage: str = "auto",
        max_memory_bytes: int = 1 << 30,
        block_rows: int | None = None,
        sketch_dim: int = 4096,
        seed: int = 0,
        scratch_dir: str | None = None,
        dataloader: Any = None,
        restore: bool = True,
        solver: Any = "auto",
        keep_trajectory: bool = False,
        log_prefix: str = "trajectory",
        filename: str | None = "trajectory_magnitude.json",
    ) -> None:
        super().__init__()
        self.t = _check_scales(t)
        self.n_steps = _check_int(n_steps, "n_steps", 1)
        self.every_k_steps = _check_int(every_k_steps, "every_k_steps", 1)
        if self.every_k_steps > self.n_steps:
            raise MagtorchError(
                f"every_k_steps={every_k_steps} is larger than n_steps={n_steps}: no point kept"
            )
        self.at_epoch = None if at_epoch is None else _check_int(at_epoch, "at_epoch", 0)
        self.include = check_include(include)
        if storage not in STORAGES:
            raise MagtorchError(f"storage must be one of {STORAGES}; got {storage!r}")
        self.storage = storage
        self.max_memory_bytes = _check_int(max_memory_bytes, "max_memory_bytes", 1)
        self.block_rows = None if block_rows is None else _check_int(block_rows, "block_rows", 1)
        self.sketch_dim = _check_int(sketch_dim, "sketch_dim", 1)
        self.seed = _check_int(seed, "seed", 0)
        if scratch_dir is not None and not os.path.isdir(scratch_dir):
            raise MagtorchError(f"scratch_dir must be an existing directory; got {scratch_dir!r}")
        self.scratch_dir = scratch_dir
        if dataloader is not None and not hasattr(dataloader, "__iter__"):
            raise MagtorchError(f"dataloader must be iterable; got {type(dataloader).__name__}")
        self.dataloader = dataloader
        for name, flag in (("restore", restore), ("keep_trajectory", keep_trajectory)):
            if not isinstance(flag, bool):
                raise MagtorchError(f"{name} must be True or False; got {flag!r}")
        self.restore = restore
        self.solver = solver
        self.keep_trajectory = keep_trajectory
        if not isinstance(log_prefix, str) or not log_prefix:
            raise MagtorchError(f"log_prefix must be a non-empty string; got {log_prefix!r}")
        self.log_prefix = log_prefix.rstrip("/")
        if filename is not None and (not isinstance(filename, str) or not filename):
            raise MagtorchError(f"filename must be None or a non-empty string; got {filename!r}")
        self.filename = filename
        self.results: dict[str, Any] | None = None
        self.distances: Tensor | None = None
        self.trajectory: Tensor | None = None
        self._done = False

    @property
    def n_points(self) -> int:
        """The number of trajectory points, ``n_steps // every_k_steps``."""
        return self.n_steps // self.every_k_steps

    # ------------------------------------------------------------------ state

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            t=self.t,
            n_steps=self.n_steps,
            every_k_steps=self.every_k_steps,
            at_epoch=self.at_epoch,
            storage=self.storage,
            sketch_dim=self.sketch_dim if self.storage == "sketch" else None,
            log_prefix=self.log_prefix,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"results": self.results, "done": self._done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.results = state_dict.get("results")
        self._done = bool(state_dict.get("done", False))

    # ------------------------------------------------------------------ hooks

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise MagtorchError(
                "TrajectoryMagnitudeCallback needs automatic optimisation: it steps "
                "trainer.optimizers[0] itself; manual optimisation is not supported"
            )

    def _skip(self, trainer: pl.Trainer) -> bool:
        if self._done or trainer.sanity_checking:
            return True
        if trainer.fast_dev_run:
            rank_zero_info("TrajectoryMagnitudeCallback: skipped under fast_dev_run")
            return True
        return False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        at = self.at_epoch
        if at is not None and trainer.current_epoch == at and not self._skip(trainer):
            self.measure(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_epoch is None and not self._skip(trainer):
            self.measure(trainer, pl_module)

    # ------------------------------------------------------------------ the work

    def _loader(self, trainer: pl.Trainer) -> Any:
        loader = self.dataloader if self.dataloader is not None else trainer.train_dataloader
        if loader is None or isinstance(loader, (dict, list, tuple)):
            raise MagtorchError(
                "TrajectoryMagnitudeCallback needs one train dataloader (got "
                f"{type(loader).__name__}); pass dataloader= to the callback"
            )
        return loader

    def _batches(self, trainer: pl.Trainer):
        loader = self._loader(trainer)
        while True:
            empty = True
            for batch in loader:
                empty = False
                yield trainer.strategy.batch_to_device(batch, dataloader_idx=0)
            if empty:
                raise MagtorchError("the train dataloader yielded no batch")

    def _resolve_storage(self, n: int, dim: int, itemsize: int) -> str:
        if self.storage != "auto":
            return self.storage
        return "memory" if n * dim * itemsize <= self.max_memory_bytes else "disk"

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Take the steps, compute, log and save; returns (and stores) ``callback.results``.

        The dict holds ``t``, ``magnitude`` and ``positive_magnitude`` (lists, one per
        scale), ``n_points``, ``n_steps``, ``every_k_steps``, ``n_parameters``, ``storage``,
        ``sketch_dim`` (or None), ``epoch``, ``global_step``, ``restored``, ``step_distance_mean``
        (mean distance between consecutive points), ``distance_max``, ``solver``,
        ``converged``, ``seconds_steps`` and ``seconds_solve``.
        """
        optimizers = trainer.optimizers
        if not optimizers:
            raise MagtorchError("TrajectoryMagnitudeCallback needs an optimizer; trainer has none")
        optimizer = optimizers[0]
        named = select_parameters(pl_module, "*" if self.include is None else self.include)
        params = [p for _, p in named]
        dtype = params[0].dtype
        for p in params[1:]:
            dtype = torch.promote_types(dtype, p.dtype)

        def flat() -> Tensor:
            return torch.cat([p.detach().reshape(-1).to(dtype) for p in params]).to("cpu")

        n = self.n_points
        theta0 = flat()
        theta0_64 = theta0.to(torch.float64)
        dim = theta0.numel()
        itemsize = theta0.element_size()
        storage = self._resolve_storage(n, dim, itemsize)
        sketch = None
        if storage == "sketch":
            sketch = _CountSketch(dim, self.sketch_dim, self.seed)
            store_dim, store_dtype, center = self.sketch_dim, torch.float64, None
        else:
            store_dim, store_dtype, center = dim, dtype, theta0_64
        record = trainer.is_global_zero  # parameters are the same on every rank
        if storage == "disk":
            rank_zero_info(
                f"TrajectoryMagnitudeCallback: {n} x {dim} parameters "
                f"({n * dim * itemsize / 2**30:.2f} GiB) go to a temporary file on disk"
            )
        row_bytes = store_dim * 8
        block_rows = self.block_rows or max(1, (64 << 20) // row_bytes)
        acc = (
            _GramAccumulator(
                n, store_dim, store_dtype, storage == "disk", block_rows, center, self.scratch_dir
            )
            if record
            else None
        )

        saved = None
        if self.restore:
            saved = (
                copy.deepcopy(pl_module.state_dict()),
                copy.deepcopy(optimizer.state_dict()),
            )
        was_training = pl_module.training
        clip_val = trainer.gradient_clip_val
        clip_algo = trainer.gradient_clip_algorithm
        start = time.perf_counter()
        rng = torch.random.fork_rng(devices=[], enabled=self.restore)
        try:
            rng.__enter__()
            pl_module.train()
            # Lightning forbids self.log outside its loop hooks: drop those calls meanwhile
            pl_module.log = _no_log  # type: ignore[method-assign]
            pl_module.log_dict = _no_log  # type: ignore[method-assign]
            batches = self._batches(trainer)
            taken = skipped = 0
            with torch.enable_grad():
                while taken < self.n_steps:
                    batch = next(batches)
                    loss_box: list[Tensor | None] = [None]

                    def closure(batch: Any = batch, box: list = loss_box, idx: int = taken) -> Any:
                        optimizer.zero_grad()
                        out = trainer.strategy.training_step(batch, idx)
                        loss = out["loss"] if isinstance(out, dict) else out
                        if loss is None:
                            box[0] = None
                            return None
                        loss.backward()
                        if clip_val:
                            grads = [p for p in pl_module.parameters() if p.grad is not None]
                            if str(clip_algo) in ("value", "GradClipAlgorithmType.VALUE"):
                                torch.nn.utils.clip_grad_value_(grads, clip_val)
                            else:
                                torch.nn.utils.clip_grad_norm_(grads, clip_val)
                        box[0] = loss.detach()
                        return loss

                    optimizer.step(closure)
                    if loss_box[0] is None:  # training_step skipped the batch: grads are None
                        skipped += 1
                        if skipped > 10 * self.n_steps:
                            raise MagtorchError("training_step returned None for every batch")
                        continue
                    taken += 1
                    if acc is not None and taken % self.every_k_steps == 0:
                        v = flat()
                        acc.append(sketch(v.to(torch.float64) - theta0_64) if sketch else v)
            seconds_steps = time.perf_counter() - start
            distances = acc.distances() if acc is not None else None
            if acc is not None and self.keep_trajectory:
                vectors = acc.vectors()
                self.trajectory = None if vectors is None or sketch else vectors.clone()
        finally:
            for attr in ("log", "log_dict"):
                pl_module.__dict__.pop(attr, None)
            rng.__exit__(None, None, None)
            if saved is not None:
                pl_module.load_state_dict(saved[0])
                optimizer.load_state_dict(saved[1])
            optimizer.zero_grad()
            pl_module.train(was_training)
            if acc is not None:
                acc.close()

        if record:
            self.results = self._solve(trainer, distances, storage, sketch is not None, dim)
            self.results["seconds_steps"] = seconds_steps
        if trainer.world_size > 1:
            self.results = trainer.strategy.broadcast(self.results, src=0)
        self.distances = distances if self.keep_trajectory else None
        self._done = True
        self._log(trainer)
        self._save(trainer)
        return self.results

    def _solve(
        self, trainer: pl.Trainer, distances: Tensor, storage: str, sketched: bool, dim: int
    ) -> dict[str, Any]:
        """Magnitude and positive magnitude of the recorded trajectory at every scale."""
        n = self.n_points
        start = time.perf_counter()
        scales = torch.tensor(self.t, dtype=torch.float64)
        res = solve(distances, scales, metric="precomputed", solver=self.solver)
        seconds_solve = time.perf_counter() - start
        mag = res.magnitude.reshape(-1)
        pmag = res.weights.reshape(len(self.t), -1).clamp_min(0).sum(-1)
        steps = distances.diagonal(1)
        return {
            "t": list(self.t),
            "magnitude": [float(v) for v in mag],
            "positive_magnitude": [float(v) for v in pmag],
            "n_points": n,
            "n_steps": self.n_steps,
            "every_k_steps": self.every_k_steps,
            "n_parameters": dim,
            "storage": storage,
            "sketch_dim": self.sketch_dim if sketched else None,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "restored": self.restore,
            "step_distance_mean": float(steps.mean()) if steps.numel() else 0.0,
            "distance_max": float(distances.max()),
            "solver": res.info.method,
            "converged": bool(res.info.converged.all()),
            "seconds_solve": seconds_solve,
        }

    def _log(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero or self.results is None:
            return
        metrics = {}
        for key in ("magnitude", "positive_magnitude"):
            for i, value in enumerate(self.results[key]):
                suffix = "" if len(self.t) == 1 else f"/t={self.t[i]:g}"
                metrics[f"{self.log_prefix}/{key}{suffix}"] = value
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            logger.save()

    def _save(self, trainer: pl.Trainer) -> None:
        if self.filename is None or self.results is None:
            return
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        directory = log_dir or trainer.default_root_dir
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, self.filename)
        fd, tmp = tempfile.mkstemp(prefix=".trajectory-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.results, fh, indent=2)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def _no_log(*args: Any, **kwargs: Any) -> None:
    """Stand-in for ``LightningModule.log`` during the trajectory steps."""
