"""Alpha sweeps and the level -> alpha calibration."""

from __future__ import annotations

import json

import pytest
import torch

import ftn
from ftn.cli import main
from ftn.data.images import save_image
from ftn.eval.sweep import SweepResult, calibrate, isotonic_increasing, parse_alpha_grid, sweep
from ftn.tasks import get_task


@pytest.mark.parametrize(
    "spec,expected",
    [("0:1:0.25", [0, 0.25, 0.5, 0.75, 1]), ("0,0.5,1", [0, 0.5, 1]), ("0:1:0.05", [round(i * 0.05, 10) for i in range(21)])],
)
def test_parse_alpha_grid(spec: str, expected: list) -> None:
    assert parse_alpha_grid(spec) == pytest.approx(expected)


def test_parse_alpha_grid_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="step > 0"):
        parse_alpha_grid("1:0:0.1")


@pytest.mark.parametrize(
    "values,expected",
    [([0.0, 0.2, 0.1, 0.5], [0.0, 0.15, 0.15, 0.5]), ([1, 2, 3], [1, 2, 3]), ([3, 2, 1], [2, 2, 2]), ([0.4], [0.4])],
)
def test_isotonic_regression(values: list, expected: list) -> None:
    assert isotonic_increasing(values) == pytest.approx(expected)


def _result(levels, best, train_levels) -> SweepResult:
    alphas = [i / 10 for i in range(11)]
    table = [[-abs(a - b) for a in alphas] for b in best]
    return SweepResult("x", "quality", list(train_levels), list(levels), alphas, table, [0.0] * len(levels), 3, "data")


def test_calibration_is_monotone_in_both_directions() -> None:
    # Denoising: sigma 20 -> 80, the best alpha grows with sigma (one violation is pooled).
    cal = calibrate(_result([20, 40, 60, 80], [0.0, 0.4, 0.3, 1.0], (20, 80)))
    assert cal["levels"] == [20, 40, 60, 80] and cal["alphas"] == [0.0, 0.35, 0.35, 1.0]
    # JPEG: quality 40 -> 10, the best alpha grows as the quality falls; levels are stored ascending.
    cal = calibrate(_result([40, 30, 20, 10], [0.0, 0.3, 0.7, 1.0], (40, 10)))
    assert cal["levels"] == [10, 20, 30, 40] and cal["alphas"] == [1.0, 0.7, 0.3, 0.0]


@pytest.fixture()
def tiny_model_and_images(tmp_path):
    torch.manual_seed(0)
    model = ftn.attach(ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True), "ftn", groups=4).eval()
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path / "images"
    folder.mkdir()
    gen = torch.Generator().manual_seed(1)
    for i in range(2):
        save_image(folder / f"img{i}.png", torch.rand(3, 24, 32, generator=gen))
    path = tmp_path / "model.safetensors"
    ftn.save(model, path, task="denoise", levels=[{"sigma": 20}, {"sigma": 80}])
    return model, folder, path


def test_sweep_matches_a_direct_evaluation(tiny_model_and_images) -> None:
    from ftn.data.datasets import EvalSet
    from ftn.eval.metrics import psnr

    model, folder, _ = tiny_model_and_images
    task = get_task("denoise")
    result = sweep(model, folder, task, [30], [0.0, 0.5], train_levels=[20, 80], progress=False)
    data = EvalSet(folder, task, 30)
    expected = sum(psnr(model(d[None], alpha=0.5).clamp(0, 1)[0], c) for _, d, c in data) / len(data)
    assert result.psnr_at(30, 0.5) == pytest.approx(expected, abs=1e-9)
    assert result.images == 2 and result.best_alpha["30"] in (0.0, 0.5)


def test_sweep_command_writes_files_and_calibration(tiny_model_and_images, tmp_path, capsys) -> None:
    _, folder, path = tiny_model_and_images
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", str(path), "--data", str(folder), "--levels", "20", "50", "80",
                 "--alphas", "0:1:0.5", "--out", str(out), "--calibrate"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"sweep.json", "sweep.csv", "sweep.png"}
    data = json.loads((out / "sweep.json").read_text())
    assert data["levels"] == [20, 50, 80] and len(data["psnr"][0]) == 3
    calibration = ftn.load(path).metadata["calibration"]
    assert calibration["levels"] == [20, 50, 80]
    assert calibration["alphas"] == sorted(calibration["alphas"])
    assert "calibration written" in capsys.readouterr().out


def test_sweep_on_centre_crops(tiny_model_and_images) -> None:
    model, folder, _ = tiny_model_and_images
    task = get_task("denoise")
    whole = sweep(model, folder, task, [40], [0.5], train_levels=[20, 80], progress=False)
    cropped = sweep(model, folder, task, [40], [0.5], train_levels=[20, 80], crop=16, progress=False)
    assert cropped.crop == 16 and whole.crop is None
    assert cropped.psnr[0][0] != whole.psnr[0][0]
    assert "16 px centre crops" in calibrate(cropped)["source"]
