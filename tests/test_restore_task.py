"""The restore task (issue [4/6]): noise, 8 bits, then JPEG, at a two-axis setting."""

from __future__ import annotations

import pytest
import torch

from ftn.tasks import get_task
from ftn.tasks.dejpeg import DeJPEG
from ftn.tasks.denoise import Denoise


def _clean() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 40, generator=g)


def test_no_noise_no_jpeg_is_the_8_bit_image() -> None:
    x = _clean()
    y = get_task("restore").degrade(x, {"sigma": 0})
    assert torch.equal(y, x.mul(255).round().div(255))


def test_gaussian_noise_equals_the_photo_true_denoise_task() -> None:
    x = _clean()
    a = get_task("restore").degrade(x, {"sigma": 25}, torch.Generator().manual_seed(3))
    b = Denoise(clip=True, quantize=True).degrade(x, 25, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_noise_then_jpeg_is_the_two_in_order() -> None:
    x = _clean()
    a = get_task("restore").degrade(x, {"sigma": 15, "quality": 30}, torch.Generator().manual_seed(4))
    b = DeJPEG().degrade(Denoise(clip=True, quantize=True).degrade(x, 15, torch.Generator().manual_seed(4)), 30)
    assert torch.equal(a, b)


def test_poisson_gaussian_noise_grows_with_the_signal() -> None:
    task = get_task("restore", poisson=1.0)
    g = torch.Generator().manual_seed(5)
    dark, bright = torch.full((1, 1, 128, 128), 0.2), torch.full((1, 1, 128, 128), 0.7)
    std_dark = (task.degrade(dark, {"sigma": 20}, g) - dark).std()
    std_bright = (task.degrade(bright, {"sigma": 20}, g) - bright).std()
    expected = 20 / 255 * torch.tensor([0.4, 1.4]).sqrt()  # (1 - p) + 2 p x with p = 1
    assert abs(std_dark - expected[0]) < 0.1 * expected[0]
    assert abs(std_bright - expected[1]) < 0.1 * expected[1]


@pytest.mark.parametrize("level, words", [
    (25, "a setting"),
    ({"sigma": -1}, "sigma must be"),
    ({"sigma": 10, "quality": 0}, "quality must be in"),
    ({"sigma": 10, "quality": 101}, "quality must be in"),
    ({"noise": 10}, "axes are sigma and quality"),
    ({"sigma": "x"}, "must be numbers"),
    ({"sigma": float("nan")}, "finite"),
])
def test_bad_settings_are_refused_in_one_line(level, words: str) -> None:
    with pytest.raises(ValueError, match=words) as err:
        get_task("restore").check_level(level)
    assert "\n" not in str(err.value)


def test_labels_and_options() -> None:
    assert get_task("restore").label({"sigma": 15, "quality": 60}) == "sigma 15, quality 60"
    assert get_task("restore").label({"sigma": 5}) == "sigma 5, no JPEG"
    assert get_task("restore", poisson=0.5).options == {"poisson": 0.5}
    with pytest.raises(ValueError, match="poisson"):
        get_task("restore", poisson=2)
