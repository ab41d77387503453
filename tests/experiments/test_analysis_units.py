"""Unit tests of the experiment building blocks: modular data, the embedding model and the
analysis functions (NC1, collapse penalty, Kendall/granulated Kendall, change points, trends).

References are independent: explicit loops in Python/NumPy, scipy.stats.kendalltau, closed
forms of constructed cases, finite differences.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")
scipy_stats = pytest.importorskip("scipy.stats")

from experiments.analysis.grokking import change_epoch, grokking_summary  # noqa: E402
from experiments.analysis.neural_collapse import (  # noqa: E402
    WithinClassSpreadFloor,
    nc1,
    within_class_spread,
)
from experiments.analysis.trajectory import granulated_kendall, kendall_tau  # noqa: E402
from experiments.analysis.weight_reg import PAPER_TABLE2, table_markdown, trend  # noqa: E402
from experiments.data.modular import ModularArithmeticDataModule, modular_table  # noqa: E402
from experiments.models.embedding import EmbeddingMLP  # noqa: E402
from magtorch.errors import MagtorchError  # noqa: E402

# ---------------------------------------------------------------- modular arithmetic data


@pytest.mark.parametrize("operation", ["add", "sub", "mul"])
def test_modular_table_matches_python_arithmetic(operation: str) -> None:
    p = 11
    x, y = modular_table(p, operation)
    ops = {"add": lambda a, b: (a + b) % p, "sub": lambda a, b: (a - b) % p}
    ops["mul"] = lambda a, b: (a * b) % p
    expected = [(a, b, ops[operation](a, b)) for a in range(p) for b in range(p)]
    got = [(int(r[0]), int(r[1]), int(c)) for r, c in zip(x, y, strict=True)]
    assert got == expected and x.dtype == torch.int64


def test_modular_split_is_seeded_disjoint_and_complete() -> None:
    dm = ModularArithmeticDataModule(p=13, train_fraction=0.3, seed=3)
    dm.setup()
    dm.setup()  # idempotent
    assert len(dm.train_set) == round(0.3 * 169) and len(dm.val_set) == 169 - len(dm.train_set)
    pairs_tr = {tuple(r.tolist()) for r in dm.train_set.x}
    pairs_va = {tuple(r.tolist()) for r in dm.val_set.x}
    assert not pairs_tr & pairs_va and len(pairs_tr | pairs_va) == 169
    again = ModularArithmeticDataModule(p=13, train_fraction=0.3, seed=3)
    again.setup()
    assert torch.equal(again.train_set.x, dm.train_set.x)
    other = ModularArithmeticDataModule(p=13, train_fraction=0.3, seed=4)
    other.setup()
    assert not torch.equal(other.train_set.x, dm.train_set.x)
    x, y, idx = next(iter(dm.train_dataloader()))  # full batch by default
    assert len(y) == len(dm.train_set) and sorted(idx.tolist()) == list(range(len(y)))
    assert torch.equal((x[:, 0] + x[:, 1]) % 13, y)
    xs, _, idxs = next(iter(dm.score_dataloader()))
    assert idxs.tolist() == list(range(len(dm.train_set))) and torch.equal(xs, dm.train_set.x)
    batches = list(ModularArithmeticDataModule(p=13, batch_size=10).train_dataloader())
    assert len(batches[0][1]) == 10


@pytest.mark.parametrize(
    "kwargs",
    [{"p": 1}, {"operation": "div"}, {"train_fraction": 1.0}, {"batch_size": 0}, {"p": True}],
)
def test_modular_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(MagtorchError, match=next(iter(kwargs))):
        ModularArithmeticDataModule(**kwargs)


def test_embedding_mlp_matches_manual_forward() -> None:
    torch.manual_seed(0)
    net = EmbeddingMLP(num_classes=5, input_shape=(2,), embed_dim=3, hidden=4, depth=2)
    x = torch.tensor([[0, 4], [3, 1]])
    e = net.embed.weight
    h = torch.cat([e[x[:, 0]], e[x[:, 1]]], dim=1)
    for lin in (net.body[0], net.body[2]):
        h = torch.relu(h @ lin.weight.T + lin.bias)
    expected = h @ net.head.weight.T + net.head.bias
    torch.testing.assert_close(net(x), expected)
    assert net.vocab_size == 5
    with pytest.raises(MagtorchError, match="integer"):
        net(x.float())
    with pytest.raises(MagtorchError, match="input_shape"):
        EmbeddingMLP(num_classes=5, input_shape=(2, 3))


# ---------------------------------------------------------------- neural collapse


def _nc1_reference(h: np.ndarray, y: np.ndarray) -> float:
    classes = sorted(set(y.tolist()))
    means = {c: h[y == c].mean(axis=0) for c in classes}
    mu_g = np.mean([means[c] for c in classes], axis=0)
    d = h.shape[1]
    sw = np.zeros((d, d))
    for i in range(len(h)):
        v = h[i] - means[y[i]]
        sw += np.outer(v, v)
    sw /= len(h)
    sb = sum(np.outer(means[c] - mu_g, means[c] - mu_g) for c in classes) / len(classes)
    return float(np.trace(sw @ np.linalg.pinv(sb)) / len(classes))


def test_nc1_constructed_case_closed_form() -> None:
    # Two classes with means +-e1, each with points mu +- s e1, mu +- s e2:
    # Sigma_W = s^2/2 I, Sigma_B = e1 e1^T, so NC1 = (s^2/2) / 2 = s^2/4.
    s = 0.3
    pts, labels = [], []
    for c, mu in enumerate((np.array([1.0, 0.0]), np.array([-1.0, 0.0]))):
        for v in ([s, 0], [-s, 0], [0, s], [0, -s]):
            pts.append(mu + np.array(v))
            labels.append(c)
    h, y = torch.tensor(np.array(pts)), torch.tensor(labels)
    assert float(nc1(h, y)) == pytest.approx(s**2 / 4, rel=1e-12)


def test_nc1_matches_loop_reference_and_invariances() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(60, 5, generator=g, dtype=torch.float64) + torch.arange(60).remainder(4)[
        :, None
    ].double() * torch.randn(1, 5, generator=g, dtype=torch.float64)
    y = torch.arange(60) % 4
    ref = _nc1_reference(h.numpy(), y.numpy())
    assert float(nc1(h, y)) == pytest.approx(ref, rel=1e-10)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    assert float(nc1(3.0 * h @ q + 7.0, y)) == pytest.approx(ref, rel=1e-8)
    # Shrinking each class towards its mean by a factor a multiplies NC1 by a^2.
    means = torch.stack([h[y == c].mean(0) for c in range(4)])
    shrunk = means[y] + 0.5 * (h - means[y])
    assert float(nc1(shrunk, y)) == pytest.approx(0.25 * ref, rel=1e-8)


def test_within_class_spread_and_penalty() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = torch.arange(30) % 3
    hn, yn = h.numpy(), y.numpy()
    within = sum(((hn[yn == c] - hn[yn == c].mean(0)) ** 2).sum() for c in range(3))
    total = ((hn - hn.mean(0)) ** 2).sum()
    assert float(within_class_spread(h, y)) == pytest.approx(within / total, rel=1e-12)
    pen = WithinClassSpreadFloor(floor=0.99)
    s = within / total
    assert float(pen(h, y)) == pytest.approx((0.99 - s) ** 2, rel=1e-12)
    assert float(WithinClassSpreadFloor(floor=0.01)(h, y)) == 0.0  # spread above the floor
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: pen(z, y), (h,))
    with pytest.raises(MagtorchError, match="floor"):
        WithinClassSpreadFloor(floor=1.5)
    with pytest.raises(MagtorchError, match="labels"):
        nc1(h, torch.zeros(30, dtype=torch.long))


# ---------------------------------------------------------------- Kendall coefficients


def test_kendall_tau_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(3, 25))
        a = rng.integers(0, 5, n).astype(float)  # many ties
        b = rng.normal(size=n).round(1)
        ref = scipy_stats.kendalltau(a, b).statistic  # tau-b
        got = kendall_tau(a, b)
        if math.isnan(ref):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(ref, abs=1e-12)


def test_granulated_kendall_hand_computed_grid() -> None:
    # 3 learning rates x 3 batch sizes. measure = lr + bs/100 ranks by lr first, gap is chosen
    # so that within each batch size the gap increases with lr (psi_lr = 1), and within each
    # learning rate the gap is in the order (bs=8, 32, 16): taus of measure against gap are
    # then tau([1,2,3],[1,3,2]) = 1/3 for every lr, so psi_bs = 1/3 and Psi = 2/3.
    lrs, bss = [0.1, 0.2, 0.3], [8, 16, 32]
    gap_bs = {8: 0.0, 16: 0.2, 32: 0.1}
    rows = [(lr, bs) for lr, bs in itertools.product(lrs, bss)]
    measure = [lr + bs / 100 for lr, bs in rows]
    gap = [10 * lr + gap_bs[bs] for lr, bs in rows]
    res = granulated_kendall({"lr": [r[0] for r in rows], "bs": [r[1] for r in rows]}, measure, gap)
    assert res["psi"]["lr"] == pytest.approx(1.0)
    assert res["psi"]["bs"] == pytest.approx(1 / 3)
    assert res["Psi"] == pytest.approx(2 / 3)
    assert res["groups"] == {"lr": 3, "bs": 3}
    assert res["tau"] == pytest.approx(scipy_stats.kendalltau(measure, gap).statistic)


def test_granulated_kendall_skips_undefined_groups() -> None:
    # psi_a: the b=0 group (runs 0, 2) has a constant measure -> tau undefined -> skipped;
    # the b=1 group (runs 1, 3) has tau = 1. Likewise for psi_b.
    hp = {"a": [0, 0, 1, 1], "b": [0, 1, 0, 1]}
    res = granulated_kendall(hp, [1.0, 1.0, 1.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert res["psi"] == {"a": 1.0, "b": 1.0} and res["groups_skipped"] == {"a": 1, "b": 1}
    with pytest.raises(MagtorchError, match="hparams"):
        granulated_kendall({"a": [0, 1]}, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------- grokking change points


def test_change_epoch_on_a_logistic_curve() -> None:
    # s(e) = 1 / (1 + exp(-(e - 500)/50)): the q-level crossing is at 500 + 50 log(q/(1-q))
    # (up to the tiny offsets s(0) and s(end) from 0 and 1), rounded up to the grid.
    epochs = np.arange(0, 2001, 10)
    s = 1 / (1 + np.exp(-(epochs - 500) / 50))
    for q in (0.1, 0.5, 0.9):
        level = s[0] + q * (s[-1] - s[0])
        exact = 500 + 50 * math.log((level) / (1 - level))
        assert change_epoch(epochs, s, q) == int(math.ceil(exact / 10) * 10)
    # decreasing series: the level is s(0) + (s(end) - s(0))/2 = 0.50002 > s(500) -> 510
    assert change_epoch(epochs, -s, 0.5) == 510
    assert change_epoch(epochs, np.ones_like(s), 0.5, min_change=1e-9) is None


def test_grokking_summary_detects_a_leading_ratio() -> None:
    epochs = np.arange(0, 3001, 10)
    train = 1 / (1 + np.exp(-(epochs - 100) / 10))
    test = 1 / (1 + np.exp(-(epochs - 2000) / 50))
    ratio_epochs = epochs[::5]
    # the ratio rises during memorisation, then rises again from epoch ~1500
    ratio = 1 + 0.3 * train[::5] + 0.5 / (1 + np.exp(-(ratio_epochs - 1500) / 50))
    out = grokking_summary(epochs, train, test, ratio_epochs, ratio, persist=2)
    assert out["window_start"] == 110  # level 0.50002 > train(100) = 0.5
    exact_test = 2000 + 50 * math.log(0.1 / 0.9)
    assert abs(out["test"]["T10"] - exact_test) <= 10
    assert 1300 <= out["ratio_post"]["T10"] <= 1450
    assert out["lead_onset"] == out["test"]["T10"] - out["ratio_post"]["T10"] > 400
    assert out["ratio_first"] is True


# ---------------------------------------------------------------- weight regularisation


def test_weight_reg_trend_on_the_paper_table() -> None:
    t = trend(PAPER_TABLE2)
    lam = [r["lam"] for r in PAPER_TABLE2]
    for col in ("magnitude", "gap", "test_loss", "train_loss"):
        ref = scipy_stats.kendalltau(lam, [r[col] for r in PAPER_TABLE2]).statistic
        assert t[col]["tau"] == pytest.approx(ref)
    assert t["magnitude"]["monotone_decreasing"] and t["gap"]["monotone_decreasing"]
    assert t["train_loss"]["monotone_increasing"]
    assert not t["test_loss"]["monotone_decreasing"]  # the paper's optimum at lambda = 0.5
    text = table_markdown(list(reversed(PAPER_TABLE2)))
    assert text.splitlines()[2] == "| 0 | 0.0021 | 0.0757 | 0.0736 | 1.581 |"
