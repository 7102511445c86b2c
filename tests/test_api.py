"""``ftn.restore``, the one-line API (tables of cases): the type given is the type returned, the level
vocabulary is ``ftn run``'s (each result equals the model run at the alpha that vocabulary names, and
the CLI's output file), refusals are one line; the README's and the module's doctests run."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
import ftn.api
from ftn.cli import main
from ftn.data.images import load_image
from ftn.infer import apply_model
from ftn.infer.estimate import estimate_jpeg_quality, estimate_noise_sigma
from ftn.levels import level_to_alpha, with_calibration
from ftn.methods.axes import AxisSpec, attach_axes

ROOT = Path(__file__).resolve().parents[1]


def _net() -> torch.nn.Module:
    return ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)


def _perturb(model):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # tuners away from the identity, so that alpha matters
        for p in model.tuner_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny calibrated denoise and dejpeg files, a two-axis file, and a noisy photo as PNG and JPEG."""
    folder = tmp_path_factory.mktemp("api")
    paths = {name: folder / f"{name}.safetensors" for name in ("denoise", "dejpeg", "restore")}
    torch.manual_seed(0)
    ftn.save(_perturb(ftn.attach(_net(), "ftn", groups=4)), paths["denoise"], task="denoise",
             levels=[{"sigma": 5}, {"sigma": 50}],
             calibration={"level_name": "sigma", "levels": [5, 20, 50], "alphas": [0.0, 0.5, 1.0]})
    ftn.save(_perturb(ftn.attach(_net(), "ftn", groups=4)), paths["dejpeg"], task="dejpeg",
             levels=[{"quality": 90}, {"quality": 10}],
             calibration={"level_name": "quality", "levels": [10, 50, 90], "alphas": [1.0, 0.4, 0.0]})
    restore = attach_axes(_net(), "ftn", [AxisSpec("sigma", 3, levels=(5, 20, 50)), AxisSpec("quality", 2, levels=(90, 10))],
                          groups=4)
    restore.metadata = with_calibration(restore.levels.replace_in({"task": "restore"}),
                                        {"levels": [5, 20, 50], "alphas": [0.0, 1.0, 2.0], "source": "test"}, "sigma")
    ftn.save(_perturb(restore), paths["restore"])
    gen = np.random.RandomState(0)
    clean = np.kron(gen.rand(5, 6, 3), np.ones((8, 8, 1)))  # 40 x 48, smooth blocks
    noisy = np.clip(clean + 0.08 * gen.randn(*clean.shape), 0, 1)
    u8 = (noisy * 255).round().astype(np.uint8)
    paths["png"], paths["jpeg"] = folder / "in.png", folder / "in.jpg"
    Image.fromarray(u8).save(paths["png"])
    Image.fromarray(u8).save(paths["jpeg"], quality=60)
    return paths


def _u8() -> np.ndarray:
    """A 40 x 48 colour image of smooth blocks."""
    return (np.kron(np.random.RandomState(3).rand(5, 6, 3), np.ones((8, 8, 1))) * 255).round().astype(np.uint8)


def _at(model_path: Path, image: torch.Tensor, alpha) -> np.ndarray:
    """The model called directly at ``alpha``, as 8-bit HWC."""
    out = apply_model(ftn.api.load_model(model_path), image, alpha=alpha, tile=None)
    return (out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# -- the doctests -------------------------------------------------------------------------------------


def test_module_doctest_runs() -> None:
    result = doctest.testmod(ftn.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_readme_doctest_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "README.md").read_text()
    assert "## Python in one line" in text
    section = text.split("## Python in one line", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))
    test = doctest.DocTestParser().get_doctest(code, {}, "README", "README.md", 0)
    assert len(test.examples) >= 3
    monkeypatch.chdir(ROOT)  # the example reads samples/ from the checkout
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0


# -- types in, types out ----------------------------------------------------------------------------


@pytest.mark.parametrize("make, check", [
    (lambda a: a, lambda o, a: o.shape == a.shape and o.dtype == np.uint8),
    (lambda a: a[..., 0], lambda o, a: o.shape == a.shape[:2] and o.dtype == np.uint8),
    (lambda a: a[..., :1], lambda o, a: o.shape == (*a.shape[:2], 1) and o.dtype == np.uint8),
    (lambda a: np.concatenate([a, a[..., :1]], axis=2),  # RGBA: transparency passes through
     lambda o, a: o.shape == (*a.shape[:2], 4) and np.array_equal(o[..., 3], a[..., 0])),
    (lambda a: np.concatenate([a[..., :1], a[..., 1:2]], axis=2), lambda o, a: o.shape == (*a.shape[:2], 2)),
    (lambda a: a.astype(np.uint16) * 257, lambda o, a: o.dtype == np.uint16 and o.shape == a.shape),
    (lambda a: a.astype(np.float32) / 255, lambda o, a: o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1),
    (lambda a: a[..., 0].astype(np.float64) / 255, lambda o, a: o.dtype == np.float64 and o.shape == a.shape[:2]),
    (lambda a: Image.fromarray(a), lambda o, a: isinstance(o, Image.Image) and o.mode == "RGB" and o.size == (48, 40)),
    (lambda a: Image.fromarray(a[..., 0]), lambda o, a: isinstance(o, Image.Image) and o.mode == "L"),
    (lambda a: Image.fromarray(np.concatenate([a, a[..., :1]], axis=2)),
     lambda o, a: o.mode == "RGBA" and np.array_equal(np.asarray(o)[..., 3], a[..., 0])),
    (lambda a: Image.fromarray(a).convert("P"), lambda o, a: o.mode == "RGB"),
    (lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257), lambda o, a: o.mode.startswith("I;16")),
], ids=["u8-rgb", "u8-hw", "u8-hw1", "u8-rgba", "u8-la", "u16", "f32", "f64-hw", "pil-rgb", "pil-l", "pil-rgba",
        "pil-p", "pil-i16"])
def test_the_type_given_is_the_type_returned(files: dict[str, Path], make, check) -> None:
    given = make(_u8())
    out = ftn.restore(given, model=files["denoise"], level=20)
    assert type(out) is type(given) or isinstance(out, Image.Image) and isinstance(given, Image.Image)
    assert check(out, given if isinstance(given, np.ndarray) else np.asarray(given))


def test_a_path_gives_a_pil_image_equal_to_ftn_run(files: dict[str, Path], tmp_path: Path) -> None:
    out = ftn.restore(str(files["png"]), model=files["denoise"], level=20)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (48, 40)
    assert main(["run", "-i", str(files["png"]), "-o", str(tmp_path / "cli.png"), "--model", str(files["denoise"]),
                 "--level", "20"]) == 0
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(tmp_path / "cli.png")))
    same = ftn.restore(np.asarray(Image.open(files["png"])), model=files["denoise"], level=20)  # numpy: the same pixels
    assert np.array_equal(np.asarray(out), same)


# -- the level vocabulary ---------------------------------------------------------------------------


def _one_axis_cases(files: dict[str, Path]):
    meta = ftn.io.read_metadata(files["denoise"])
    image = load_image(files["png"]).image
    sigma = estimate_noise_sigma(image)
    return [
        ("denoise", "png", {"level": 20}, level_to_alpha(meta, 20)[0]),
        ("denoise", "png", {"level": "35"}, level_to_alpha(meta, 35)[0]),
        ("denoise", "png", {"alpha": 0.3}, 0.3),
        ("denoise", "png", {"alpha": "0.7"}, 0.7),
        ("denoise", "png", {"auto": True}, level_to_alpha(meta, sigma)[0]),
        ("dejpeg", "jpeg", {"auto": True},
         level_to_alpha(ftn.io.read_metadata(files["dejpeg"]), estimate_jpeg_quality(files["jpeg"]))[0]),
        ("dejpeg", "jpeg", {"level": 30}, level_to_alpha(ftn.io.read_metadata(files["dejpeg"]), 30)[0]),
    ]


def test_one_axis_levels_mean_what_ftn_run_says(files: dict[str, Path]) -> None:
    for model, image, kwargs, alpha in _one_axis_cases(files):
        got = np.asarray(ftn.restore(str(files[image]), model=files[model], **kwargs))
        want = _at(files[model], load_image(files[image]).image, float(alpha))
        assert np.array_equal(got, want), (model, kwargs, alpha)
    # a PIL image opened from the JPEG: the tables are read from its file
    from_pil = ftn.restore(Image.open(files["jpeg"]), model=files["dejpeg"], auto=True)
    assert np.array_equal(np.asarray(from_pil), np.asarray(ftn.restore(str(files["jpeg"]), model=files["dejpeg"], auto=True)))


def test_auto_map_gives_a_per_pixel_alpha(files: dict[str, Path]) -> None:
    setting, _ = ftn.api.choose_setting(ftn.api.load_model(files["denoise"]), load_image(files["png"]).image, auto="map")
    assert isinstance(setting, torch.Tensor) and setting.shape == (1, 1, 40, 48)
    out = ftn.restore(str(files["png"]), model=files["denoise"], auto="map")
    assert np.array_equal(np.asarray(out), _at(files["denoise"], load_image(files["png"]).image, setting))


@pytest.mark.parametrize("kwargs, setting", [
    ({"level": "sigma=20,quality=10"}, {"sigma": 1.0, "quality": 1.0}),
    ({"alpha": "0.3,0.8"}, {"sigma": 0.3, "quality": 0.8}),
    ({"alpha": [0.3, 0.8]}, {"sigma": 0.3, "quality": 0.8}),
    ({"alpha": "sigma=1.5"}, {"sigma": 1.5, "quality": 0.0}),
    ({"alpha": "quality=0.5", "level": "sigma=35"}, {"sigma": 1.5, "quality": 0.5}),
    ({"auto": True}, None),  # sigma estimated from the pixels; a PNG leaves quality at 0
])
def test_multi_axis_vocabulary(files: dict[str, Path], kwargs, setting) -> None:
    image = load_image(files["png"]).image
    if setting is None:
        sigma = estimate_noise_sigma(image)
        setting = {"sigma": float(np.interp(min(max(sigma, 5), 50), [5, 20, 50], [0, 1, 2])), "quality": 0.0}
    got = ftn.restore(str(files["png"]), model=files["restore"], **kwargs)
    assert np.array_equal(np.asarray(got), _at(files["restore"], image, setting))


@pytest.mark.parametrize("model, kwargs, image, pattern", [
    ("denoise", {}, "u8", "exactly one of alpha=, level=, auto="),
    ("denoise", {"alpha": 0.3, "level": 20}, "u8", "exactly one of"),
    ("denoise", {"level": "abc"}, "u8", "needs a number"),
    ("denoise", {"level": float("nan")}, "u8", "finite"),
    ("denoise", {"level": "sigma=20,quality=3"}, "u8", "needs a number"),
    ("denoise", {"alpha": 1.5}, "u8", r"\[0, 1\]"),
    ("denoise", {"alpha": True}, "u8", "must be a number"),
    ("denoise", {"alpha": {"sigma": 1}}, "u8", "must be a number"),
    ("denoise", {"auto": "yes"}, "u8", "auto must be"),
    ("dejpeg", {"auto": True}, "u8", "give the JPEG file's path"),
    ("restore", {"alpha": "0.3"}, "u8", "this model has 2 axes"),
    ("restore", {"level": "sigma=12,foo=3"}, "u8", "no axis 'foo'"),
    ("restore", {"level": "sigma=90"}, "u8", None),  # clamped through the calibration: a warning, not an error
    ("restore", {"alpha": "sigma=3"}, "u8", r"outside sigma's range \[0, 2\]"),
    ("restore", {"alpha": "0.3,0.8", "allow_extrapolation": True}, "u8", "inside their anchors"),
    ("denoise", {"level": 20}, "i32", "uint8, uint16 or float"),
    ("denoise", {"level": 20}, "f-over", r"in \[0, 1\]"),
    ("denoise", {"level": 20}, "chw", "H x W x C with C in 1-4"),
    ("denoise", {"level": 20}, "int", "file path, a PIL.Image or a numpy array"),
    ("nope", {"level": 20}, "u8", "no shipped model of that name"),
])
def test_refusals_are_one_line(files: dict[str, Path], model, kwargs, image, pattern) -> None:
    u8 = _u8()
    given = {"u8": u8, "i32": u8.astype(np.int32), "f-over": u8 / 100.0, "chw": u8.transpose(2, 0, 1), "int": 42}[image]
    target = files.get(model, model)
    if pattern is None:
        with pytest.warns(UserWarning, match="outside the calibrated range"):
            ftn.restore(given, model=target, **kwargs)
        return
    with pytest.raises((ValueError, FileNotFoundError), match=pattern) as info:
        ftn.restore(given, model=target, **kwargs)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_import_ftn_stays_light() -> None:
    """``ftn.restore`` is imported on first use, as ``ftn.tune`` is."""
    import subprocess
    import sys

    code = ("import sys, ftn; assert 'ftn.api' not in sys.modules; restore = ftn.restore; "
            "assert 'ftn.api' in sys.modules and restore.__module__ == 'ftn.api'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
