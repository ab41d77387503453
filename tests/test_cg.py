"""Matrix-free conjugate gradient (``solver="cg"``): values and gradients against the float64
dense reference, with and without the preconditioner, batched, masked, with duplicates; honest
diagnostics; non-convergence reported; ``solver="auto"`` picks each path."""

from __future__ import annotations

import warnings

import pytest
import torch

import magtorch
from magtorch.solvers import ConjugateGradientSolver
from tests._reference import (
    assert_close,
    ref_distances,
    ref_magnitude,
    ref_potential,
    ref_similarity,
    ref_weights,
)

F64 = torch.float64
METRICS = ["euclidean", "l1", "cosine"]


def _points(n: int, d: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _cg(preconditioner: str = "nystrom", rank: int = 40, **kw) -> ConjugateGradientSolver:
    return ConjugateGradientSolver(preconditioner=preconditioner, rank=rank, **kw)


SOLVERS = {
    "nystrom": lambda: _cg("nystrom"),
    "plain": lambda: _cg("none"),
}


def _mag_tolerance(x, t: float, rtol: float, metric: str = "euclidean") -> float:
    """Absolute error allowed between a CG magnitude at relative residual ``rtol`` and the dense
    reference: ``|1^T Z^-1 r| <= |w| |r|`` with ``|r| <= rtol sqrt(n)`` for CG, plus the dense
    solve's own rounding ``sqrt(n) cond(Z) eps |w|`` (a backward-stable solve)."""
    z = ref_similarity(ref_distances(x, metric=metric), t)
    ev = torch.linalg.eigvalsh(z)
    w_norm = float(torch.linalg.solve(z, torch.ones(len(z), dtype=F64)).norm())
    n = len(z)
    eps = torch.finfo(F64).eps
    return w_norm * rtol * n**0.5 + 10 * n**0.5 * float(ev[-1] / ev[0]) * eps * w_norm


def _ref_mag_graph(x: torch.Tensor, t: torch.Tensor, metric: str) -> torch.Tensor:
    """Dense float64 magnitude built by hand with autograd (reference for gradients)."""
    n = x.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    if metric == "cosine":
        u = x / x.norm(dim=-1, keepdim=True)
        a, b = u[:, None], u[None]
        chord = torch.where(eye, 1.0, ((a - b) ** 2).sum(-1)).sqrt()
        anti = ((a + b) ** 2).sum(-1).sqrt()
        d = torch.where(eye, 0.0, 2 * torch.atan2(chord, anti))
    elif metric == "l1":
        d = (x[:, None] - x[None]).abs().sum(-1)
    else:
        sq = ((x[:, None] - x[None]) ** 2).sum(-1)
        d = torch.where(eye, 0.0, torch.where(eye, 1.0, sq).sqrt())
    z = torch.exp(-t * d)
    return torch.linalg.solve(z, torch.ones(n, dtype=F64)).sum()


@pytest.mark.parametrize("kind", list(SOLVERS))
@pytest.mark.parametrize("metric", METRICS)
def test_values_match_dense_reference(kind, metric):
    x = _points(150, seed=1)
    ts = [0.3, 2.0, 8.0] if metric != "cosine" else [1.0, 10.0, 40.0]
    res = magtorch.solve(
        x, torch.tensor(ts, dtype=F64), metric=metric, solver=SOLVERS[kind](), rtol=1e-10
    )
    assert res.info.method == "cg"
    assert bool(res.info.converged.all())
    assert float(res.info.residual.max()) <= 1e-10
    for j, t in enumerate(ts):
        tol = _mag_tolerance(x, t, float(res.info.residual[j]), metric)
        assert_close(res.magnitude[j], ref_magnitude(x, t, metric), rtol=0, atol=tol)
        w_ref = ref_weights(x, t, metric)
        assert float((res.weights[j] - w_ref).abs().max()) <= 1e-7 * float(w_ref.abs().max())
        # The residual in info is the true one of the returned weights.
        z = ref_similarity(ref_distances(x, metric=metric), t)
        true_res = float((z @ res.weights[j] - 1).norm() / (len(x) ** 0.5))
        assert true_res == pytest.approx(float(res.info.residual[j]), rel=1e-3, abs=1e-15)


@pytest.mark.parametrize("kind", ["nystrom", "plain"])
@pytest.mark.parametrize("metric", METRICS)
def test_gradients_match_dense_reference(kind, metric):
    x = _points(60, seed=2).requires_grad_(True)
    t = torch.tensor(1.3 if metric != "cosine" else 6.0, dtype=F64, requires_grad=True)
    mag = magtorch.magnitude(x, t, metric=metric, solver=SOLVERS[kind](), rtol=1e-13)
    gx, gt = torch.autograd.grad(mag, (x, t))
    xr = x.detach().clone().requires_grad_(True)
    tr = t.detach().clone().requires_grad_(True)
    ref = _ref_mag_graph(xr, tr, metric)
    rx, rt = torch.autograd.grad(ref, (xr, tr))
    assert_close(mag, ref, rtol=1e-12)
    assert_close(gx, rx, rtol=1e-8, atol=1e-9 * float(rx.abs().max()))
    assert_close(gt, rt, rtol=1e-8)


def test_weight_gradient_uses_adjoint_solve():
    """d(sum_i c_i w_i)/dx through the adjoint CG solve matches the dense autograd reference."""
    x = _points(50, seed=3).requires_grad_(True)
    c = torch.linspace(-1.0, 2.0, 50, dtype=F64)
    w = magtorch.weights(x, 0.8, solver=_cg(), rtol=1e-13)
    (gx,) = torch.autograd.grad((w * c).sum(), x)
    xr = x.detach().clone().requires_grad_(True)
    sq = ((xr[:, None] - xr[None]) ** 2).sum(-1)
    eye = torch.eye(50, dtype=torch.bool)
    d = torch.where(eye, 0.0, torch.where(eye, 1.0, sq).sqrt())
    wr = torch.linalg.solve(torch.exp(-0.8 * d), torch.ones(50, dtype=F64))
    (rx,) = torch.autograd.grad((wr * c).sum(), xr)
    assert_close(gx, rx, rtol=1e-7, atol=1e-8 * float(rx.abs().max()))


def test_batched_masked_duplicates_match_dense_path():
    """Ragged batch with padding and exact duplicates: values and gradients equal the dense
    Cholesky path's (the multiset rule: a copy splits its point's weight)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 40, 2, dtype=F64, generator=g)
    x[0, 5] = x[0, 1]  # duplicates
    x[2, 7] = x[2, 3]
    x[2, 8] = x[2, 3]
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 30:] = False
    mask[2, 35:] = False
    x[1, 30:] = 1e3  # padding values must not matter
    t = torch.tensor([0.5, 3.0], dtype=F64)
    xa = x.clone().requires_grad_(True)
    res = magtorch.solve(xa, t, mask=mask, solver=_cg(rank=20), rtol=1e-13)
    xb = x.clone().requires_grad_(True)
    ref = magtorch.solve(xb, t, mask=mask, solver="cholesky")
    assert_close(res.magnitude, ref.magnitude, rtol=1e-12)
    assert_close(res.weights, ref.weights, rtol=1e-8, atol=1e-9)
    assert torch.equal(res.info.n_distinct, torch.tensor([39, 30, 33]))
    assert bool((res.weights[1, :, 30:] == 0).all())
    assert_close(res.weights[0, :, 5], res.weights[0, :, 1], rtol=0)
    (ga,) = torch.autograd.grad(res.magnitude.sum(), xa)
    (gb,) = torch.autograd.grad(ref.magnitude.sum(), xb)
    assert_close(ga, gb, rtol=1e-8, atol=1e-9)
    # Independent check of one set: the magnitude of the distinct points.
    distinct = torch.unique(x[2, :35], dim=0)
    for j, tj in enumerate(t.tolist()):
        assert_close(res.magnitude[2, j], ref_magnitude(distinct, tj), rtol=1e-11)


def test_public_functions_with_cg():
    x = _points(120, d=2, seed=5)
    z = _points(7, d=2, seed=6)
    kw = {"solver": "cg", "rtol": 1e-12}
    assert_close(magtorch.potential(z, x, 1.5, **kw), ref_potential(z, x, 1.5), rtol=1e-8)
    ref_w = ref_weights(x, 1.5)
    assert_close(magtorch.positive_magnitude(x, 1.5, **kw), ref_w.clamp_min(0).sum(), rtol=1e-8)
    # magnitude_derivative: closed form vs the dense path, non-differentiable and differentiable
    dense = magtorch.magnitude_derivative(x, 1.5, solver="cholesky")
    assert_close(magtorch.magnitude_derivative(x, 1.5, **kw), dense, rtol=1e-9)
    xg = x.clone().requires_grad_(True)
    der = magtorch.magnitude_derivative(xg, 1.5, **kw)
    (g1,) = torch.autograd.grad(der, xg)
    xh = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(magtorch.magnitude_derivative(xh, 1.5, solver="cholesky"), xh)
    assert_close(der, dense, rtol=1e-9)
    assert_close(g1, g2, rtol=1e-6, atol=1e-8 * float(g2.abs().max()))
    f = magtorch.magnitude_function(x, torch.logspace(-1, 1, 6, dtype=F64), **kw)
    fd = magtorch.magnitude_function(x, torch.logspace(-1, 1, 6, dtype=F64), solver="cholesky")
    assert_close(f.magnitude, fd.magnitude, rtol=1e-10)
    t_cg = magtorch.convergence_scale(x, 0.8, **kw)
    t_dense = magtorch.convergence_scale(x, 0.8, solver="cholesky")
    assert_close(t_cg, t_dense, rtol=1e-7)


def test_dense_inverse_functions_raise_clearly():
    x = _points(30, seed=7)
    with pytest.raises(magtorch.MagtorchError, match="matrix-free"):
        magtorch.loo_potential(x, 1.0, solver="cg")


def test_warm_start_and_batched_scales_agree():
    x = _points(200, seed=8)
    t = torch.logspace(-1, 1, 5, dtype=F64)
    warm = magtorch.solve(x, t, solver=_cg(warm_start=True), rtol=1e-10)
    cold = magtorch.solve(x, t, solver=_cg(warm_start=False), rtol=1e-10)
    for j, tj in enumerate(t.tolist()):
        tol = _mag_tolerance(x, tj, 1e-10)
        assert_close(warm.magnitude[j], ref_magnitude(x, tj), rtol=0, atol=tol)
        assert_close(cold.magnitude[j], ref_magnitude(x, tj), rtol=0, atol=tol)


def test_preconditioner_reduces_iterations():
    """At a small scale Z_t is ill-conditioned: the Nyström preconditioner cuts iterations."""
    x = _points(400, d=2, seed=9)
    plain = magtorch.solve(x, 0.5, solver=_cg("none"), rtol=1e-8, max_iter=2000)
    pre = magtorch.solve(x, 0.5, solver=_cg("nystrom", rank=100), rtol=1e-8)
    assert bool(plain.info.converged) and bool(pre.info.converged)
    assert int(pre.info.iterations) * 3 < int(plain.info.iterations)


def test_nonconvergence_is_reported():
    x = _points(300, seed=10)
    with pytest.warns(magtorch.ConvergenceWarning, match="missed rtol"):
        res = magtorch.solve(x, 0.3, solver=_cg("none"), rtol=1e-12, max_iter=3)
    assert not bool(res.info.converged)
    assert float(res.info.residual) > 1e-12
    assert int(res.info.iterations) <= 3
    with pytest.raises(magtorch.ConvergenceError):
        magtorch.magnitude(
            x, 0.3, solver=_cg("none"), rtol=1e-12, max_iter=3, on_nonconvergence="raise"
        )


def test_cg_on_precomputed_distances():
    x = _points(80, seed=11)
    d = ref_distances(x)
    res = magtorch.solve(d, 2.0, metric="precomputed", solver="cg", rtol=1e-12)
    assert bool(res.info.converged)
    assert_close(res.magnitude, ref_magnitude(x, 2.0), rtol=1e-11)


def test_auto_picks_each_path():
    small = _points(50, seed=12)
    assert magtorch.solve(small, 1.0).info.method == "cholesky"
    from magtorch._problem import resolve_solver

    # n = 10^6: 8 n^2 bytes exceed any budget of this test machine -> matrix-free
    assert resolve_solver("auto", 10**6, precomputed=False).name == "cg"
    assert resolve_solver("auto", 50, precomputed=False).name == "cholesky"
    assert resolve_solver("auto", 10**6, precomputed=True).name == "cholesky"
    try:  # a budget too small for the dense matrices of n=50 -> matrix-free
        magtorch.set_memory_budget(32 * 50 * 50 - 1)
        res = magtorch.solve(small, 1.0, rtol=1e-10)
        assert res.info.method == "cg"
        assert_close(res.magnitude, ref_magnitude(small, 1.0), rtol=1e-11)
    finally:
        magtorch.set_memory_budget(None)


def test_bad_solver_arguments():
    with pytest.raises(magtorch.MagtorchError, match="preconditioner"):
        ConjugateGradientSolver(preconditioner="jacobi")
    with pytest.raises(magtorch.MagtorchError, match="rank"):
        ConjugateGradientSolver(rank=0)
    with pytest.raises(magtorch.MagtorchError, match="lambda_min"):
        ConjugateGradientSolver(lambda_min=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = _points(500, seed=14)
    cpu = magtorch.magnitude(x, 1.0, solver="cg", rtol=1e-10)
    xc = x.cuda().requires_grad_(True)
    gpu = magtorch.magnitude(xc, 1.0, solver="cg", rtol=1e-10)
    assert gpu.device.type == "cuda"
    assert_close(gpu.cpu(), cpu, rtol=1e-10)
    (g,) = torch.autograd.grad(gpu, xc)
    xr = x.clone().requires_grad_(True)
    (gr,) = torch.autograd.grad(magtorch.magnitude(xr, 1.0, solver="cholesky"), xr)
    assert_close(g.cpu(), gr, rtol=1e-6, atol=1e-9)


def test_no_warning_on_success():
    x = _points(100, seed=15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        magtorch.magnitude(x, 1.0, solver="cg")
