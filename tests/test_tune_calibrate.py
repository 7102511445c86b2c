"""ftn.tuning.calibrate: the level -> alpha calibration of a tuned model whose ends are two levels of one task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ftn.levels import level_to_alpha
from ftn.tuning.calibrate import calibratable, calibrate_tuned
from ftn.tuning.specs import BaseSpec, TeacherSpec, parse_spec


@pytest.mark.parametrize(
    ("level1", "level2", "expected"),
    [
        (parse_spec("noise:25,unclipped"), parse_spec("noise:50,unclipped"), True),
        (parse_spec("noise:50"), parse_spec("noise:15"), True),
        (parse_spec("noise:25"), parse_spec("noise:50,unclipped"), False),  # two different tasks
        (parse_spec("noise:25"), parse_spec("noise:25"), False),
        (parse_spec("jpeg:40"), parse_spec("jpeg:10"), True),
        (parse_spec("noise:25"), parse_spec("jpeg:10"), False),
        (BaseSpec(), parse_spec("noise:50"), False),
        (parse_spec("noise:25"), TeacherSpec("teacher.safetensors"), False),
    ],
)
def test_calibratable(level1, level2, expected: bool) -> None:
    assert calibratable(level1, level2) is expected


class BlurByAlpha(nn.Module):
    """A stand-in tuned denoiser: alpha mixes the input with its 5 x 5 box blur. More noise wants more blur,
    so the best alpha grows with sigma, and the calibration must say so."""

    def __init__(self, metadata: dict) -> None:
        super().__init__()
        self.metadata = metadata

    def forward(self, x: torch.Tensor, alpha: float) -> torch.Tensor:
        blur = nn.functional.avg_pool2d(nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
        return (1 - alpha) * x + alpha * blur


def _images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        y, x = np.mgrid[0:80, 0:80]
        detail = 40 * (((x // 2) + (y // 2) + i) % 2)  # fine texture the blur destroys: no blur at low noise
        smooth = 110 + 50 * np.sin(x / (6 + i)) * np.cos(y / 9) + detail + rng.normal(0, 2, (80, 80))
        rgb = np.stack([smooth, smooth * 0.9, smooth * 0.8], -1).clip(0, 255).astype(np.uint8)
        files.append(folder / f"im{i}.png")
        Image.fromarray(rgb).save(files[-1])
    return files


def test_best_alpha_grows_with_sigma_and_is_stored(tmp_path: Path) -> None:
    files = _images(tmp_path / "held-out")
    model = BlurByAlpha({"task": "denoise", "task_options": {}, "levels": [{"sigma": 5}, {"sigma": 60}]})
    meta = calibrate_tuned(model, parse_spec("noise:5,unclipped"), parse_spec("noise:60,unclipped"), files,
                           grey=True, levels=4, alphas=11, crop=64)
    calibration = meta["calibration"]
    assert calibration["level_name"] == "sigma"
    assert calibration["levels"] == [5.0, 5 + 55 / 3, 5 + 110 / 3, 60.0]
    alphas = calibration["alphas"]
    assert alphas == sorted(alphas) and alphas[0] < 0.5 < alphas[-1], alphas
    assert "3 held-out files" in calibration["source"]
    assert level_to_alpha(meta, 60)[0] == alphas[-1]
    assert "calibration" not in model.metadata  # a copy: the model's own metadata is left as it was
    again = calibrate_tuned(model, parse_spec("noise:5,unclipped"), parse_spec("noise:60,unclipped"), files[0].parent,
                            grey=True, levels=4, alphas=11, crop=64)
    assert again["calibration"]["alphas"] == alphas  # a folder or its files: the same seeded noise


@pytest.mark.parametrize(
    ("level1", "level2", "options", "message"),
    [
        (BaseSpec(), parse_spec("noise:50"), {}, "two numeric levels"),
        (parse_spec("noise:25"), parse_spec("noise:50"), {"levels": 1}, "at least 2 levels"),
        (parse_spec("noise:25"), parse_spec("noise:50"), {"alphas": 1}, "at least 2 levels and 2 alphas"),
    ],
)
def test_refused(tmp_path: Path, level1, level2, options: dict, message: str) -> None:
    files = _images(tmp_path / "images", 1)
    model = BlurByAlpha({"levels": [{"sigma": 25}, {"sigma": 50}]})
    with pytest.raises(ValueError, match=message):
        calibrate_tuned(model, level1, level2, files, grey=True, **options)


def test_no_images_refused() -> None:
    model = BlurByAlpha({"levels": [{"sigma": 25}, {"sigma": 50}]})
    with pytest.raises(ValueError, match="no images"):
        calibrate_tuned(model, parse_spec("noise:25"), parse_spec("noise:50"), [], grey=True)
