"""The memorization experiment: its statistics against scipy/scikit-learn, the Feldman
estimate on constructed cases, the batched subset models against separately trained ones, and
the experiment end to end at tiny size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("lightning")
stats = pytest.importorskip("scipy.stats")
metrics_mod = pytest.importorskip("sklearn.metrics")

from torch.nn import functional as F  # noqa: E402

from experiments.analysis.memorization import (  # noqa: E402
    auroc,
    feldman_memorization,
    final_scores,
    learning_speed,
    rankdata,
    roc_curve,
    spearman,
    subset_masks,
    train_subset_models,
)
from experiments.models import BatchedMLP  # noqa: E402
from experiments.train import train  # noqa: E402
from magtorch.errors import MagtorchError  # noqa: E402
from tests.experiments._compose import compose_train  # noqa: E402


@pytest.mark.parametrize("seed", range(4))
def test_rank_statistics_match_scipy_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, size=80).astype(float)  # many ties
    b = a + rng.integers(0, 4, size=80)
    np.testing.assert_allclose(rankdata(a), stats.rankdata(a))
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    c = rng.normal(size=80)
    assert spearman(c, b) == pytest.approx(stats.spearmanr(c, b).statistic, abs=1e-12)
    positives = rng.random(80) < 0.2
    positives[:2] = [True, False]
    assert auroc(a, positives) == pytest.approx(metrics_mod.roc_auc_score(positives, a))
    fpr, tpr, _ = metrics_mod.roc_curve(positives, a, drop_intermediate=False)
    ours = roc_curve(a, positives)
    np.testing.assert_allclose(ours[0], fpr)
    np.testing.assert_allclose(ours[1], tpr)


def test_degenerate_statistics() -> None:
    assert math.isnan(spearman(np.ones(5), np.arange(5.0)))
    assert math.isnan(auroc(np.arange(4.0), np.zeros(4, dtype=bool)))
    assert auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    with pytest.raises(MagtorchError, match="equal length"):
        spearman(np.ones(3), np.ones(4))


def test_feldman_estimate_constructed_case() -> None:
    # 6 models, 3 points. Point 0: correct only when trained on (a memorised point):
    # in-models 0,1,2 all correct, out-models 3,4,5 all wrong -> 1 - 0 = 1.
    # Point 1: always correct -> 0. Point 2: in 0,3 (correct, wrong), out 1,2,4,5 (one of
    # them, model 1, correct) -> 1/2 - 1/4 = 0.25.
    member = torch.tensor(
        [[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool
    )
    correct = torch.tensor(
        [[1, 1, 1], [1, 1, 1], [1, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.bool
    )
    mem, n_in, n_out = feldman_memorization(correct, member)
    assert mem.tolist() == pytest.approx([1.0, 0.0, 0.25])
    assert n_in.tolist() == [3, 3, 2] and n_out.tolist() == [3, 3, 4]
    # a point in every subset has no estimate
    mem, _, _ = feldman_memorization(correct[:, :1], torch.ones(6, 1, dtype=torch.bool))
    assert math.isnan(mem.item())


def test_subset_masks() -> None:
    m = subset_masks(200, 50, 0.7, seed=3)
    assert (m.sum(1) == 35).all()
    assert torch.equal(m, subset_masks(200, 50, 0.7, seed=3))
    # membership frequency of every point is about 0.7 (binomial sd 0.032 over 200 models)
    assert (m.double().mean(0) - 0.7).abs().max() < 0.15
    with pytest.raises(MagtorchError, match="subset_fraction"):
        subset_masks(4, 10, 1.0)
    with pytest.raises(MagtorchError, match="num_models"):
        subset_masks(1, 10, 0.5)


def test_batched_subset_models_equal_separate_training() -> None:
    # The K batched models must train exactly like K separate models with the same init,
    # batches and Adam: compare the final logits with a plain per-model loop.
    torch.manual_seed(0)
    n, d, c, k, seed, epochs, batch = 30, 5, 3, 3, 11, 3, 8
    x, y = torch.randn(n, d), torch.randint(0, c, (n,))
    member = subset_masks(k, n, 0.6, seed=1)
    out = train_subset_models(
        x,
        y,
        member,
        num_classes=c,
        hidden=[7],
        epochs=epochs,
        batch_size=batch,
        lr=0.01,
        seed=seed,
    )
    g = torch.Generator().manual_seed(seed)
    init = BatchedMLP(k, d, c, [7], generator=g)
    models = [init.member(j) for j in range(k)]
    opts = [torch.optim.Adam(m.parameters(), lr=0.01) for m in models]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            for j, (m, opt) in enumerate(zip(models, opts, strict=True)):
                w = member[j, idx].float()
                per = F.cross_entropy(m(x[idx]), y[idx], reduction="none")
                loss = (per * w).sum() / w.sum().clamp_min(1.0)
                opt.zero_grad()
                loss.backward()
                opt.step()
    for j, m in enumerate(models):
        with torch.no_grad():
            torch.testing.assert_close(out["logits"][j], m(x), atol=1e-4, rtol=1e-4)
        assert torch.equal(out["correct"][j], m(x).argmax(1) == y)


def test_final_scores_and_learning_speed() -> None:
    torch.manual_seed(1)
    lin = torch.nn.Linear(4, 5)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    loss, neg_margin = final_scores(lin, x, y)
    z = lin(x).double().detach()
    for i in range(6):
        others = [z[i, j].item() for j in range(5) if j != y[i]]
        assert neg_margin[i].item() == pytest.approx(max(others) - z[i, y[i]].item())
        log_p = z[i, y[i]] - torch.logsumexp(z[i], 0)
        assert loss[i].item() == pytest.approx(-log_p.item())
    losses = torch.tensor([[1.0, 4.0], [3.0, float("nan")], [5.0, 6.0], [7.0, 8.0]])
    assert learning_speed(losses, 0.5).tolist() == [2.0, 4.0]  # first 2 of 4 epochs
    assert learning_speed(losses, 1.0).tolist() == [4.0, 6.0]
    with pytest.raises(MagtorchError, match="record_sample_losses"):
        learning_speed(torch.zeros(0, 3))


def test_memorization_experiment_end_to_end(tmp_path: Path) -> None:
    cfg = compose_train(
        [
            "experiment=memorization",
            "debug=fast",
            "data.max_train_samples=300",
            "report.progress=false",
            f"output_dir={tmp_path}",
        ]
    )
    metrics = train(cfg)
    assert metrics["memorization/num_models"] == 4  # debug=fast shrinks K
    saved = np.load(tmp_path / "memorization_scores.npz")
    mem, flipped = saved["mem"], saved["flipped"]
    assert flipped.sum() == 12  # round(0.04 * 300)
    ok = np.isfinite(mem)
    for name in ("ratio", "final_loss", "neg_margin", "learning_speed"):
        s = saved[f"score_{name}"]
        rho = stats.spearmanr(s[ok], mem[ok]).statistic
        assert metrics[f"memorization/spearman/{name}"] == pytest.approx(rho, abs=1e-12)
        auc = metrics_mod.roc_auc_score(flipped, s)
        assert metrics[f"memorization/auroc/{name}"] == pytest.approx(auc, abs=1e-12)
    assert np.allclose(saved["score_ratio"], -saved["ratio"])
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["memorization/spearman/ratio"] == pytest.approx(
        metrics["memorization/spearman/ratio"]
    )
    report = (tmp_path / "report.md").read_text()
    for row in ("| ratio |", "| final_loss |", "| neg_margin |", "| learning_speed |"):
        assert row in report
    assert "## Where the ratio does worse than a baseline" in report
    assert (tmp_path / "scores_vs_memorization.png").exists()
    assert (tmp_path / "flipped_roc.png").exists()
