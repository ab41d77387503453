"""experiments/train.py: the main job at tiny size (debug=fast), seeding, the returned metric,
a 2-point multirun end to end, and the ddp trainer config on 2 CPU processes."""

from __future__ import annotations

import doctest
import importlib
import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("hydra")
pytest.importorskip("lightning")

from hydra.utils import instantiate  # noqa: E402

from experiments.models import MLP  # noqa: E402
from experiments.train import optimized_value, train  # noqa: E402
from magtorch.errors import MagtorchError  # noqa: E402
from tests.experiments._compose import compose_train, run_cli  # noqa: E402

FAST = ["debug=fast", "data.max_train_samples=300", "callbacks=potential"]


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> tuple[dict, Path, object]:
    out = tmp_path_factory.mktemp("fast")
    cfg = compose_train(
        [*FAST, f"output_dir={out}", "save_checkpoint=true", "callbacks.potential.every_n_epochs=1"]
    )
    return train(cfg), out, cfg


def test_fast_run_writes_metrics_and_report(fast_run) -> None:
    metrics, out, _ = fast_run
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == pytest.approx({k: metrics[k] for k in on_disk})
    assert set(on_disk) >= {"val/acc", "val/loss", "train/loss", "time/fit_s"}
    assert metrics["trainer/epochs"] == 2 and metrics["data/n_train"] == 300
    report = (out / "report.md").read_text()
    assert "| val/acc |" in report and "curves.png" in report
    assert (out / "curves.png").stat().st_size > 0
    # the potential callback ran each epoch and saved its scores under the logger's folder
    saved = sorted(out.rglob("potential_epoch*.pt"))
    assert [p.name for p in saved] == ["potential_epoch0000.pt", "potential_epoch0001.pt"]
    assert "potential/ratio_mean" in metrics


def test_fast_run_metrics_match_the_checkpoint(fast_run) -> None:
    # val/acc and val/loss recomputed from the saved weights, outside Lightning.
    metrics, out, cfg = fast_run
    dm = instantiate(cfg.data)
    dm.setup()
    model = MLP(dm.input_shape, dm.num_classes, hidden=list(cfg.model.hidden))
    state = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    model.eval()
    with torch.no_grad():
        logits = model(dm.val_set.x)
    acc = (logits.argmax(1) == dm.val_set.y).double().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, dm.val_set.y).item()
    assert metrics["val/acc"] == pytest.approx(acc, abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["val/acc"] > 0.5  # 10 classes: far above chance after 2 epochs


def test_seeded_runs_repeat_exactly(fast_run, tmp_path: Path) -> None:
    metrics, _, _ = fast_run
    again = train(
        compose_train([*FAST, f"output_dir={tmp_path}", "callbacks.potential.every_n_epochs=1"])
    )
    for key in ("val/acc", "val/loss", "train/loss", "potential/ratio_mean"):
        assert again[key] == metrics[key], key
    other = train(compose_train([*FAST, "seed=1", f"output_dir={tmp_path / 's1'}"]))
    assert other["val/loss"] != metrics["val/loss"]


def test_optimized_value() -> None:
    cfg = compose_train([])
    assert optimized_value(cfg, {"val/acc": 0.25}) == 0.25
    with pytest.raises(MagtorchError, match="optimized_metric"):
        optimized_value(cfg, {"val/loss": 1.0})
    assert math.isnan(optimized_value(cfg, {"rank": 1}))  # DDP rank > 0 writes no report


def test_multirun_two_point_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            "debug=fast",
            "data=iris",
            "logger=none",
            "callbacks=none",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "multirun.yaml").exists()
    runs = [json.loads((sweep / str(j) / "metrics.json").read_text()) for j in (0, 1)]
    for j, m in enumerate(runs):
        assert (sweep / str(j) / "report.md").exists()
        overrides = (sweep / str(j) / ".hydra" / "overrides.yaml").read_text()
        assert f"seed={j}" in overrides
        assert m["data/n_train"] == 120 and 0.0 <= m["val/acc"] <= 1.0
    assert runs[0]["val/loss"] != runs[1]["val/loss"]


def test_ddp_config_runs_on_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = run_cli(
        [
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "debug=fast",
            "trainer.max_epochs=1",
            "data=iris",
            "logger=none",
            "callbacks=potential",
            "callbacks.potential.every_n_epochs=1",
            f"output_dir={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainer/world_size"] == 2
    # the potential callback gathered both ranks' shards: every training point was scored
    scores = torch.load(next(out.rglob("potential_epoch0000.pt")), weights_only=False)
    assert scores["index"].tolist() == list(range(120))


def test_fake_images_resnet18_runs(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    metrics = train(
        compose_train(
            [
                "debug=fast",
                "trainer.max_epochs=1",
                "data=fake_images",
                "model=resnet18",
                "callbacks=potential",
                "callbacks.potential.every_n_epochs=1",
                "logger=none",
                f"output_dir={tmp_path}",
            ]
        )
    )
    assert metrics["data/n_train"] == 64 and "potential/ratio_mean" in metrics


@pytest.mark.parametrize(
    "name",
    [
        "experiments.schema",
        "experiments.lit_module",
        "experiments.data.base",
        "experiments.data.sklearn_sets",
        "experiments.data.toy",
        "experiments.data.vision",
        "experiments.models.mlp",
        "experiments.analysis.common",
        "experiments.analysis.memorization",
    ],
)
def test_docstring_examples(name: str) -> None:
    # pytest's --doctest-modules covers magtorch/ only; the experiment modules run here.
    result = doctest.testmod(
        importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0


def test_every_callback_and_logger_runs(tmp_path: Path) -> None:
    metrics = train(
        compose_train(
            [
                "debug=fast",
                "trainer.max_epochs=1",
                "data=iris",
                "callbacks=[potential,weights,trajectory]",
                "callbacks.potential.every_n_epochs=1",
                "callbacks.trajectory.n_steps=4",
                "logger=[csv,tensorboard]",
                "regularizer=weight_magnitude",
                f"output_dir={tmp_path}",
            ]
        )
    )
    keys = set(metrics)
    assert "potential/ratio_mean" in keys
    assert any(k.startswith("weight_magnitude/") for k in keys)
    assert any(k.startswith("trajectory/") for k in keys)
    assert "train/regularizer" in keys
    assert (tmp_path / "csv" / "metrics.csv").exists()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
