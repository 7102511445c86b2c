"""Multi-axis models through the product: ``ftn run``, ``ftn info`` and ``ftn export`` (tables of cases).

Every output is compared with the model called directly at the setting the command says it used;
every refusal is one line on stderr, exit status 2, and writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.cli import main
from ftn.data.images import load_image
from ftn.infer import apply_model
from ftn.infer.estimate import estimate_jpeg_quality, estimate_noise_map, estimate_noise_sigma
from ftn.infer.tiling import tiled_forward
from ftn.levels import Levels, axis_alpha, with_calibration
from ftn.methods.axes import AxesModel, AxisSpec, attach_axes

TOL = 1 / 255 + 1e-6  # outputs are written as 8-bit PNGs
SIGMA_CAL = {"levels": [5, 10, 25, 50], "alphas": [0.0, 0.4, 1.0, 2.0], "source": "test"}


def _net() -> torch.nn.Module:
    return ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)


def _perturb(model: AxesModel, scale: float = 0.02) -> AxesModel:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # tuners away from the identity, so that every axis and anchor matters
        for p in model.tuner_parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """restore: sigma (3 anchors, chained, calibrated) x quality (2 anchors, uncalibrated), one corner;
    sigma: one axis, 3 anchors, no calibration; images: a JPEG (quality 70), a PNG and a grey mask."""
    folder = tmp_path_factory.mktemp("axes")
    torch.manual_seed(0)
    restore = attach_axes(_net(), "ftn", [AxisSpec("sigma", 3, chained=True, levels=(5, 25, 50)),
                                          AxisSpec("quality", 2, levels=(90, 10))],
                          corners=[{"sigma": 1, "quality": 1}], groups=4)
    restore.metadata = with_calibration(restore.levels.replace_in({"task": "restore"}), SIGMA_CAL, "sigma")
    torch.manual_seed(1)
    sigma = attach_axes(_net(), "ftn", [AxisSpec("sigma", 3, levels=(5, 25, 50))], groups=4)
    torch.manual_seed(2)
    bare = attach_axes(_net(), "ftn", ["sigma", "quality"], groups=4)  # anchor levels not named
    torch.manual_seed(3)
    denoise = ftn.attach(_net(), "ftn", groups=4)  # today's one-axis file, calibrated
    paths = {name: folder / f"{name}.safetensors" for name in ("restore", "sigma", "bare", "denoise")}
    ftn.save(_perturb(restore), paths["restore"])
    ftn.save(_perturb(sigma), paths["sigma"])
    ftn.save(_perturb(bare), paths["bare"])
    ftn.save(_perturb(denoise), paths["denoise"], task="denoise", levels=[{"sigma": 5}, {"sigma": 50}],
             calibration={"level_name": "sigma", "levels": [5, 20, 50], "alphas": [0.0, 0.5, 1.0]})
    gen = np.random.RandomState(0)
    low = torch.from_numpy(gen.rand(1, 3, 5, 6)).float()
    photo = torch.nn.functional.interpolate(low, size=(40, 52), mode="bicubic", align_corners=False)[0]
    noisy = (photo + 0.08 * torch.from_numpy(gen.randn(3, 40, 52)).float()).clamp(0, 1)
    u8 = (noisy.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    paths["jpeg"], paths["png"], paths["mask"] = folder / "in.jpg", folder / "in.png", folder / "mask.png"
    Image.fromarray(u8).save(paths["jpeg"], quality=70)
    Image.fromarray(u8).save(paths["png"])
    ramp = np.tile(np.linspace(0, 255, 26).round().astype(np.uint8), (20, 1))  # half size: resized to fit
    Image.fromarray(ramp).save(paths["mask"])
    return paths


def _image(path: Path) -> torch.Tensor:
    return load_image(path).image


def _mask(files: dict[str, Path], size: tuple[int, int]) -> torch.Tensor:
    """The mask as ftn run fits it: grey in [0, 1], resized bilinearly (up) to the image's size."""
    grey = _image(files["mask"])[None]
    return torch.nn.functional.interpolate(grey, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def _setting_auto(files: dict[str, Path], src: str, per_pixel: bool) -> dict:
    levels = Levels.from_metadata(ftn.load(files["restore"]).metadata)
    image = _image(files[src])
    if per_pixel:
        sigma = torch.from_numpy(axis_alpha(levels.axis("sigma"), estimate_noise_map(image, jpeg_file=files[src]).double().numpy())[0])
        sigma = sigma.float()[None, None]
    else:
        sigma = axis_alpha(levels.axis("sigma"), estimate_noise_sigma(image, jpeg_file=files[src]), clamp=True)[0]
    q = estimate_jpeg_quality(files[src])
    quality = axis_alpha(levels.axis("quality"), q, clamp=True)[0] if q is not None else 0.0
    return {"sigma": sigma, "quality": quality}


# name -> (model, input, extra argv, the setting it must equal (or a function of the files), words printed)
RUN_CASES = {
    "levels by name": ("restore", "jpeg", ["--level", "sigma=12,quality=70"],
                       {"sigma": 0.48, "quality": 0.25}, "sigma 12 -> alpha 0.48 (calibrated)"),
    "alpha vector in axis order": ("restore", "jpeg", ["--alpha", "1.5,0.5"], {"sigma": 1.5, "quality": 0.5},
                                   "quality alpha 0.5 (about quality 50)"),
    "one axis named, the other at 0": ("restore", "png", ["--alpha", "quality=1"], {"sigma": 0.0, "quality": 1.0},
                                       "sigma alpha 0 (sigma 5)"),
    "alpha and level mixed": ("restore", "png", ["--alpha", "sigma=2", "--level", "quality=50"],
                              {"sigma": 2.0, "quality": 0.5}, "quality 50 -> alpha 0.5 (between anchors, uncalibrated)"),
    "a map for one axis, a level for the other": (
        "restore", "png", ["--alpha-map", "sigma={mask}", "--level", "quality=70"],
        lambda f: {"sigma": _mask(f, (40, 52)) * 2, "quality": 0.25}, "sigma alpha map mask.png (0 ... 2)"),
    "auto: noise and JPEG tables": ("restore", "jpeg", ["--auto"], lambda f: _setting_auto(f, "jpeg", False),
                                    "quality: JPEG quality 70 (from the file's tables) -> alpha 0.25"),
    "auto on a PNG: quality left at 0": ("restore", "png", ["--auto"], lambda f: _setting_auto(f, "png", False),
                                         "quality: not a JPEG file, not estimated -> alpha 0"),
    "auto-map: a noise map for sigma": ("restore", "jpeg", ["--auto-map"], lambda f: _setting_auto(f, "jpeg", True),
                                        "sigma: noise map sigma"),
    "auto for sigma, quality given": ("restore", "jpeg", ["--auto", "--level", "quality=30"],
                                      lambda f: {**_setting_auto(f, "jpeg", False), "quality": 0.75}, "quality 30"),
    "one axis, an unnamed level": ("sigma", "png", ["--level", "15"], {"sigma": 0.5},
                                   "sigma 15 -> alpha 0.5 (between anchors, uncalibrated)"),
    "one axis, three anchors, unnamed alpha": ("sigma", "png", ["--alpha", "1.75"], {"sigma": 1.75}, "sigma alpha 1.75"),
    "axes without levels: alphas": ("bare", "png", ["--alpha", "1,0.5"], {"sigma": 1.0, "quality": 0.5},
                                    "sigma alpha 1; quality alpha 0.5"),
    "a one-axis denoise model, auto-map": (
        "denoise", "png", ["--auto-map"],
        lambda f: torch.from_numpy(axis_alpha(Levels.from_metadata(ftn.load(f["denoise"]).metadata).axis(),
                                              estimate_noise_map(_image(f["png"])).double().numpy())[0]).float()[None, None],
        "noise map sigma"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_equals_the_model_at_the_setting(case: str, files: dict[str, Path], tmp_path: Path, capsys) -> None:
    model_name, src, extra, setting, words = RUN_CASES[case]
    out = tmp_path / "out.png"
    argv = [a.format(mask=files["mask"]) for a in extra]
    assert main(["run", "-i", str(files[src]), "-o", str(out), "--model", str(files[model_name]), *argv]) == 0
    printed = capsys.readouterr().out
    assert words in printed, printed
    setting = setting(files) if callable(setting) else setting
    model = ftn.load(files[model_name])
    with torch.no_grad():
        want = model(_image(files[src])[None], alpha=setting)[0].clamp(0, 1)
    assert (_image(out) - want).abs().max() <= TOL


def test_a_folder_run_reports_the_setting_of_each_image(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("jpeg", "png"):
        (folder / files[name].name).write_bytes(files[name].read_bytes())
    out = tmp_path / "out"
    assert main(["run", "-i", str(folder), "-o", str(out), "--model", str(files["restore"]), "--auto",
                 "--report", str(tmp_path / "report.json")]) == 0
    rows = {Path(r["input"]).name: r for r in json.loads((tmp_path / "report.json").read_text())}
    assert rows["in.jpg"]["setting"].endswith("quality=0.25") and rows["in.png"]["setting"].endswith("quality=0")
    assert "JPEG quality 70" in rows["in.jpg"]["label"] and "not a JPEG file" in rows["in.png"]["label"]
    assert sorted(p.name for p in out.iterdir()) == ["in.jpg", "in.png"]


def test_run_in_tiles_cuts_each_axis_map_like_the_image(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.png"
    argv = ["--alpha-map", f"sigma={files['mask']}", "--level", "quality=70", "--tile", "32", "--tile-overlap", "16"]
    assert main(["run", "-i", str(files["png"]), "-o", str(out), "--model", str(files["restore"]), *argv]) == 0
    assert "6 tiles" in capsys.readouterr().out  # 40 x 52 pixels in tiles of 32 sharing 16
    model = ftn.load(files["restore"])
    sigma = _mask(files, (40, 52)) * 2

    def run(piece: torch.Tensor, piece_map: torch.Tensor) -> torch.Tensor:
        return model(piece, alpha={"sigma": piece_map, "quality": 0.25})

    with torch.no_grad():
        want = tiled_forward(run, _image(files["png"])[None], tile=32, overlap=16,
                             align=model.base_network.size_multiple, alpha_map=sigma)[0]
    assert (_image(out) - want.clamp(0, 1)).abs().max() <= TOL


def test_apply_model_takes_dicts_vectors_and_constant_maps(files: dict[str, Path]) -> None:
    model = ftn.load(files["restore"])
    x = _image(files["png"])
    by_name = apply_model(model, x, alpha={"sigma": 1.25, "quality": 0.5})
    assert torch.equal(by_name, apply_model(model, x, alpha=[1.25, 0.5]))
    constant = apply_model(model, x, alpha={"sigma": torch.full((40, 52), 1.25), "quality": 0.5})
    assert (constant - by_name).abs().max() < 1e-5
    assert (by_name - apply_model(model, x, alpha={})).abs().max() > 1e-3  # the setting matters
    with pytest.raises(ValueError, match="no extrapolation"):
        apply_model(model, x, alpha={"sigma": 1.0}, allow_extrapolation=True)


# (model, extra argv, words in the one-line error)
RUN_REFUSALS = {
    "one number for two axes": ("restore", ["--alpha", "0.5"], "has 2 axes (sigma, quality); give --alpha sigma=...,quality=..."),
    "vector too long": ("restore", ["--alpha", "1,0.5,0.2"], "--alpha has 3 values, but this model has 2 axes"),
    "unknown axis": ("restore", ["--level", "noise=12"], "no axis 'noise'; its axes are sigma, quality"),
    "an axis twice in one option": ("restore", ["--alpha", "sigma=1,sigma=2"], "--alpha gives sigma twice"),
    "an axis by two options": ("restore", ["--alpha", "sigma=1", "--level", "sigma=12"], "set by both --alpha and --level"),
    "named and unnamed mixed": ("restore", ["--alpha", "1,quality=0.5"], "mixes named"),
    "alpha past the last anchor": ("restore", ["--alpha", "sigma=2.5"], "outside sigma's range [0, 2]"),
    "level outside uncalibrated anchors": ("restore", ["--level", "quality=95"], "outside the anchors quality 90 ... quality 10"),
    "level not a number": ("restore", ["--level", "sigma=high"], "--level sigma='high' is not a number"),
    "empty value": ("restore", ["--alpha", "sigma="], "has no value"),
    "missing map": ("restore", ["--alpha-map", "sigma=/no/such/map.png"], "alpha map not found"),
    "extrapolation": ("restore", ["--alpha", "1,1", "--allow-extrapolation"], "drop --allow-extrapolation"),
    "auto with nothing left": ("restore", ["--auto", "--alpha", "1,1"], "this model's axes left to it are none"),
    "auto-map without sigma left": ("restore", ["--auto-map", "--alpha", "sigma=1"], "no sigma axis left"),
    "one axis, level outside": ("sigma", ["--level", "60"], "sigma 60 is outside the anchors sigma 5 ... sigma 50"),
    "level without anchor levels": ("bare", ["--level", "sigma=12"], "do not name their anchor levels; give --alpha"),
    "auto without anchor levels": ("bare", ["--auto"], "--auto needs the model's anchor levels"),
    "one-axis model, two options": ("denoise", ["--auto", "--alpha", "0.5"], "exactly one of"),
    "one-axis model, per-axis words": ("denoise", ["--alpha", "sigma=0.5"], "--alpha needs a number"),
}


@pytest.mark.parametrize("case", list(RUN_REFUSALS))
def test_run_refusals_are_one_line(case: str, files: dict[str, Path], tmp_path: Path, capsys) -> None:
    model_name, extra, words = RUN_REFUSALS[case]
    out = tmp_path / "out.png"
    assert main(["run", "-i", str(files["jpeg"]), "-o", str(out), "--model", str(files[model_name]), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn run: error:") and "\n" not in err and words in err, err
    assert not out.exists()


def test_info_says_axes_anchors_calibration_chaining_and_corners(files: dict[str, Path], capsys) -> None:
    assert main(["info", str(files["restore"])]) == 0
    out = capsys.readouterr().out
    head, _, rest = out.partition("metadata:\n")
    assert "multi-axis model: task restore, method ftn" in head and "2 axes" in head
    assert "sigma: 3 anchors (alpha 0 = sigma 5, 1 = sigma 25, 2 = sigma 50), chained" in head
    assert "calibrated on 4 levels sigma 5 ... 50 (test)" in head
    assert "quality: 2 anchors (alpha 0 = quality 90, 1 = quality 10), from the base; no calibration" in head
    assert "corners (joint corrections): sigma=1,quality=1" in head
    assert json.loads(rest)["multi_axis"]["axes"][0]["chained"] is True
    assert main(["info", "--json", str(files["restore"])]) == 0
    assert json.loads(capsys.readouterr().out)["axes"][1]["name"] == "quality"


# (extra argv, the setting the plain network must equal)
EXPORT_CASES = {
    "levels": (["--level", "sigma=12,quality=70"], {"sigma": 0.48, "quality": 0.25}),
    "alpha vector": (["--alpha", "1.5,1"], {"sigma": 1.5, "quality": 1.0}),
    "alpha and level": (["--alpha", "sigma=2", "--level", "quality=50"], {"sigma": 2.0, "quality": 0.5}),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_safetensors_is_the_model_at_the_setting(case: str, files: dict[str, Path], tmp_path: Path, capsys) -> None:
    extra, setting = EXPORT_CASES[case]
    out = tmp_path / "plain.safetensors"
    assert main(["export", "--model", str(files["restore"]), "-o", str(out), *extra]) == 0
    assert "a plain adafm_net at sigma" in capsys.readouterr().out
    plain, model = ftn.load(out), ftn.load(files["restore"])
    assert not isinstance(plain, AxesModel) and plain.metadata["alpha"] == pytest.approx(setting)
    x = torch.rand(1, 3, 18, 22, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (plain(x) - model(x, alpha=setting)).abs().max() < 1e-5


def test_export_onnx_takes_the_alpha_vector(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[export])")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")
    out = tmp_path / "restore.onnx"
    assert main(["export", "--model", str(files["restore"]), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alpha (2,): sigma in [0, 2], quality in [0, 1]" in printed and "checked with onnxruntime" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model, x = ftn.load(files["restore"]), torch.rand(1, 3, 15, 21, generator=torch.Generator().manual_seed(3))
    got = session.run(None, {"image": x.numpy(), "alpha": np.array([1.3, 0.6], dtype=np.float32)})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x, alpha=[1.3, 0.6]).numpy(), atol=1e-4)


EXPORT_REFUSALS = {
    "one number for two axes": (["--alpha", "0.5"], "out.safetensors", "has 2 axes"),
    "no setting": ([], "out.safetensors", "holds one setting"),
    "per-pixel with a setting": (["--alpha", "1,1", "--per-pixel"], "out.onnx", "drop --alpha/--level"),
    "original layout": (["--alpha", "1,1", "--layout", "original"], "out.safetensors", "ftn's own layout only"),
    "alpha past the last anchor": (["--alpha", "3,0"], "out.safetensors", "outside sigma's range [0, 2]"),
}


@pytest.mark.parametrize("case", list(EXPORT_REFUSALS))
def test_export_refusals_are_one_line(case: str, files: dict[str, Path], tmp_path: Path, capsys) -> None:
    extra, name, words = EXPORT_REFUSALS[case]
    out = tmp_path / name
    assert main(["export", "--model", str(files["restore"]), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn export: error:") and "\n" not in err and words in err, err
    assert not out.exists()


def test_auto_reads_a_jpeg_files_noise_from_the_file(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    """ftn run --auto on a noisy photo saved as JPEG: the sigma axis is set from the file's coefficients
    (its pixels alone read almost no noise) and the quality axis from its tables."""
    gen = torch.Generator().manual_seed(8)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 3, 4, generator=gen), size=(128, 160), mode="bicubic",
                                           align_corners=False)[0].clamp(0.2, 0.8)
    noisy = (base + 30 / 255 * torch.randn(base.shape, generator=gen)).clamp(0, 1)
    src, out = tmp_path / "noisy.jpg", tmp_path / "out.png"
    Image.fromarray((noisy * 255).round().byte().permute(1, 2, 0).numpy()).save(src, quality=60)
    assert main(["run", "-i", str(src), "-o", str(out), "--model", str(files["restore"]), "--auto"]) == 0
    printed = capsys.readouterr().out
    read = float(printed.split("sigma: estimated noise sigma ")[1].split()[0])
    assert 24 <= read <= 36 and estimate_noise_sigma(_image(src)) < 6, printed
    levels = Levels.from_metadata(ftn.load(files["restore"]).metadata)
    want = {"sigma": axis_alpha(levels.axis("sigma"), estimate_noise_sigma(_image(src), jpeg_file=src), clamp=True)[0],
            "quality": axis_alpha(levels.axis("quality"), 60.0, clamp=True)[0]}
    model = ftn.load(files["restore"]).eval()
    expected = apply_model(model, _image(src), alpha=want)
    assert torch.equal(_image(out), (expected.clamp(0, 1) * 255).round() / 255)


def test_noise_map_follows_noise_that_differs_by_region() -> None:
    gen = torch.Generator().manual_seed(4)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 8, generator=gen), size=(96, 256), mode="bicubic",
                                           align_corners=False)[0].clamp(0.2, 0.8)
    sigma = torch.full((1, 96, 256), 10 / 255)
    sigma[..., 128:] = 40 / 255  # the right half four times as noisy
    noisy = ((base + sigma * torch.randn(base.shape, generator=gen)).clamp(0, 1) * 255).round() / 255
    noise = estimate_noise_map(noisy)  # blocks of 64, 32 apart
    assert noise.shape == (96, 256)
    left, right = float(noise[:, :64].median()), float(noise[:, 192:].median())
    assert 8 < left < 12 and 34 < right < 45, (left, right)
    flat = estimate_noise_map(noisy[:, :40, :40])  # smaller than a block: one value everywhere, the global one
    assert float(flat.max() - flat.min()) < 1e-3
    assert float(flat[0, 0]) == pytest.approx(estimate_noise_sigma(noisy[:, :40, :40]), rel=1e-5)
    with pytest.raises(ValueError, match="at least 16"):
        estimate_noise_map(noisy, block=8)
