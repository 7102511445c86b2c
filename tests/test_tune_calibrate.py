"""ftn.tuning.calibrate: the level -> alpha calibration of a tuned model whose ends are two levels of one task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ftn.levels import level_to_alpha
from ftn.methods import attach
from ftn.tuning.calibrate import calibratable, calibrate_tuned, hold_out
from ftn.tuning.sizes import activation_elements, choose_sizes, free_memory
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


# -- held-out images and sizes from free memory -------------------------------------------------------

@pytest.mark.parametrize(
    ("n", "count", "held"),
    [
        (0, 4, []),
        (5, 4, []),  # fewer than 6: none held out, the calibration uses training images
        (6, 4, [1, 4]),  # at most a third
        (7, 4, [1, 4]),
        (12, 4, [1, 4, 7, 10]),
        (13, 4, [1, 4, 7, 10]),
        (432, 4, [54, 162, 270, 378]),  # BSD432: four, spread over the names
        (432, 1, [216]),
        (12, 0, []),
    ],
)
def test_hold_out(n: int, count: int, held: list[int]) -> None:
    files = [Path(f"{i:03d}.png") for i in range(n)]
    train, out = hold_out(list(reversed(files)), count)  # sorted by name whatever the order given
    assert out == [files[i] for i in held]
    assert sorted(train + out) == files and not set(train) & set(out)


def test_hold_out_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        hold_out([Path("a.png")], -1)


GIB = 1 << 30


@pytest.mark.parametrize(
    ("elements", "free", "device", "given", "expected"),
    [
        (100, 64 * GIB, "cpu", {}, (8, 64)),  # plenty: the CPU caps
        (100, 64 * GIB, "cuda", {}, (16, 96)),  # plenty: the GPU caps
        (1000, 640_000_000, "cuda", {}, (4, 64)),  # 20,000 pixels: 4 x 64^2 fits, 4 x 96^2 does not
        (1000, 1000, "cuda", {}, (1, 32)),  # nothing fits: the smallest sizes
        (100, 64 * GIB, "cpu", {"smallest_image": 40}, (8, 32)),  # no patch larger than the smallest image
        (100, 64 * GIB, "cpu", {"smallest_image": 20}, (8, 20)),
        (100, 64 * GIB, "cpu", {"batch_size": 2}, (2, 64)),  # a size given stays as given
        (100, 64 * GIB, "cuda", {"patch_size": 17}, (16, 17)),
        (1000, 640_000_000, "cuda", {"batch_size": 5}, (5, 48)),  # the patch fits the given batch
        (100, 64 * GIB, "mps", {}, (8, 64)),  # another device: the CPU's caps
    ],
)
def test_choose_sizes(elements: float, free: int, device: str, given: dict, expected: tuple[int, int]) -> None:
    sizes = choose_sizes(elements, free, device, **given)
    assert (sizes.batch_size, sizes.patch_size) == expected
    assert f"{free / GIB:.1f} GiB" in sizes.note


def test_free_memory_and_activations_are_measured() -> None:
    free, where = free_memory(torch.device("cpu"))
    assert free > 0 and where
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
    model = attach(net, "ftn")
    # per input pixel: 4 (conv) + 4 (relu) + 3 (conv) outputs; the tuners' own modules act on the
    # kernels (a few hundred elements in all), a fraction of an element per pixel of a 64 px probe
    elements = activation_elements(model, torch.rand(1, 3, 64, 64))
    assert 11 <= elements < 11.5, elements
