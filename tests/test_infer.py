"""Tests for ftn.infer (apply_model, level <-> alpha), ftn.models and the ``ftn run`` command."""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.data.images import load_image, save_image
from ftn.infer import apply_model
from ftn.infer.cli import add_parser, run_command
from ftn.levels import alpha_to_level, describe_levels, level_to_alpha

TOL = 1 / 255 + 1e-6
CALIBRATION = {"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.4, 1.0]}
META = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}], "calibration": CALIBRATION}


def tiny_model(seed: int = 0) -> ftn.TunableModel:
    torch.manual_seed(seed)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = ftn.attach(net, "ftn", groups=4)
    with torch.no_grad():  # move the tuner away from identity so that alpha matters
        for p in model.tuner_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    model = tiny_model()
    paths = {
        "denoise": folder / "denoise.safetensors",
        "uncalibrated": folder / "uncalibrated.safetensors",
        "dejpeg": folder / "dejpeg.safetensors",
    }
    ftn.save(model, paths["denoise"], **META)
    ftn.save(model, paths["uncalibrated"], task="denoise", levels=[{"sigma": 20}, {"sigma": 80}])
    ftn.save(
        model, paths["dejpeg"], task="dejpeg", levels=[{"quality": 40}, {"quality": 10}],
        calibration={"level_name": "quality", "levels": [10, 20, 30, 40], "alphas": [1.0, 0.6, 0.3, 0.0]},
    )
    return paths


def smooth(c: int = 3, h: int = 37, w: int = 50, seed: int = 0) -> np.ndarray:
    """A photo-like HWC float image in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, c, 5, 6, generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0]
    return img.clamp(0, 1).permute(1, 2, 0).numpy()


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    u8 = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8, mode=mode).save(path)
    return path


def read_back(path: Path) -> torch.Tensor:
    return load_image(path).image


def ftn_run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ftn")
    add_parser(parser.add_subparsers(dest="command"))
    return run_command(parser.parse_args(["run", *argv]))


def expected(model_path: Path, image_path: Path, alpha: float | torch.Tensor) -> torch.Tensor:
    return apply_model(ftn.load(model_path), load_image(image_path).image, alpha=alpha)


# -- levels and alpha ------------------------------------------------------------------------------


def test_level_to_alpha_through_the_calibration() -> None:
    assert level_to_alpha(META, 50) == (pytest.approx(0.4), "")
    assert level_to_alpha(META, 35)[0] == pytest.approx(0.2)
    alpha, note = level_to_alpha(META, 100)
    assert alpha == 1.0 and "outside the calibrated range" in note and "sigma 80" in note
    alpha, note = level_to_alpha(META, 5)
    assert alpha == 0.0 and "sigma 20" in note
    with pytest.raises(ValueError, match="finite"):
        level_to_alpha(META, float("nan"))


def test_level_to_alpha_needs_a_calibration() -> None:
    meta = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}]}
    with pytest.raises(ValueError, match=r"no level calibration.*--alpha.*sigma 20"):
        level_to_alpha(meta, 50)
    bad = dict(META, calibration={"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.7, 0.5]})
    with pytest.raises(ValueError, match="monotone"):
        level_to_alpha(bad, 50)


def test_decreasing_levels_dejpeg() -> None:
    meta = {"levels": [{"quality": 40}, {"quality": 10}],
            "calibration": {"level_name": "quality", "levels": [40, 30, 20, 10], "alphas": [0.0, 0.3, 0.6, 1.0]}}
    assert level_to_alpha(meta, 25)[0] == pytest.approx(0.45)
    assert alpha_to_level(meta, 0.45) == pytest.approx(25)
    assert describe_levels(meta) == "quality 40 ... quality 10"


def test_alpha_to_level_and_labels() -> None:
    assert alpha_to_level(META, 0.4) == pytest.approx(50)
    assert alpha_to_level(META, 0.7) == pytest.approx(65)
    no_cal = {"levels": [{"sigma": 20}, {"sigma": 80}]}
    assert alpha_to_level(no_cal, 1.0) == 80 and alpha_to_level(no_cal, 0.5) is None
    assert describe_levels(META) == "sigma 20 ... sigma 80"
    assert "alpha 0" in describe_levels({})


# -- apply_model -----------------------------------------------------------------------------------


def test_apply_model_alpha_matters_and_matches_the_model() -> None:
    model = tiny_model()
    x = torch.from_numpy(smooth()).permute(2, 0, 1).contiguous()
    y0, y1 = apply_model(model, x, alpha=0.0), apply_model(model, x, alpha=1.0)
    assert y0.shape == x.shape and float((y0 - y1).abs().mean()) > 0.01
    with torch.no_grad():
        direct = model(x[None], alpha=0.3)[0].clamp(0, 1)
    assert torch.allclose(apply_model(model, x, alpha=0.3), direct, atol=1e-6)
    assert torch.allclose(apply_model(model, x[None], alpha=0.3)[0], direct, atol=1e-6)
    constant = torch.full((1, 1, *x.shape[-2:]), 0.3)
    assert torch.allclose(apply_model(model, x, alpha=constant), direct, atol=1e-5)
    assert float(apply_model(model, x, alpha=1.0).min()) >= 0 and float(apply_model(model, x, alpha=1.0).max()) <= 1


def test_apply_model_grey_into_rgb_model_and_extrapolation() -> None:
    model = tiny_model()
    grey = torch.from_numpy(smooth(c=1)).permute(2, 0, 1).contiguous()
    out = apply_model(model, grey, alpha=0.5)
    with torch.no_grad():
        ref = model(grey.expand(3, -1, -1)[None], alpha=0.5)[0].mean(0, keepdim=True).clamp(0, 1)
    assert out.shape == grey.shape and torch.allclose(out, ref, atol=1e-6)
    with pytest.raises(ValueError, match="allow_extrapolation"):
        apply_model(model, grey, alpha=1.2)
    apply_model(model, grey, alpha=1.2, allow_extrapolation=True)
    assert model.control.allow_extrapolation is False  # restored


# -- ftn.models ------------------------------------------------------------------------------------


def test_models_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ftn import models

    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    assert models.available() == {}
    (tmp_path / "denoise.safetensors").write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("x")
    assert models.available() == {"denoise": tmp_path / "denoise.safetensors"}
    assert models.resolve("denoise") == tmp_path / "denoise.safetensors"
    assert models.resolve("denoise.safetensors") == tmp_path / "denoise.safetensors"
    other = tmp_path / "elsewhere.safetensors"
    other.write_bytes(b"x")
    assert models.resolve(str(other)) == other
    with pytest.raises(FileNotFoundError, match=r"shipped: denoise, elsewhere"):
        models.resolve("nope")


# -- ftn run ---------------------------------------------------------------------------------------


def test_run_alpha_equals_apply_model(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    src = write_png(tmp_path / "in.png", smooth())
    assert ftn_run("-i", str(src), "-o", str(tmp_path / "out.png"), "--model", str(models["denoise"]), "--alpha", "0.3") == 0
    got = read_back(tmp_path / "out.png")
    assert (got - expected(models["denoise"], src, 0.3)).abs().max() <= TOL
    assert (got - expected(models["denoise"], src, 1.0)).abs().max() > 5 / 255  # alpha mattered
    out = capsys.readouterr().out
    assert "alpha 0.3" in out and "sigma 20 ... sigma 80" in out and re.search(r"\d+\.\d\d s", out)


def test_run_level_uses_the_calibration(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    src = write_png(tmp_path / "in.png", smooth())
    assert ftn_run("-i", str(src), "-o", str(tmp_path / "out.png"), "--model", str(models["denoise"]), "--level", "50") == 0
    assert (read_back(tmp_path / "out.png") - expected(models["denoise"], src, 0.4)).abs().max() <= TOL
    assert "sigma 50 -> alpha 0.4" in capsys.readouterr().out
    assert ftn_run("-i", str(src), "-o", str(tmp_path / "hi.png"), "--model", str(models["denoise"]), "--level", "200") == 0
    assert "outside the calibrated range" in capsys.readouterr().out
    assert (read_back(tmp_path / "hi.png") - expected(models["denoise"], src, 1.0)).abs().max() <= TOL


def test_run_constant_alpha_map_equals_scalar(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    src = write_png(tmp_path / "in.png", smooth())
    mask = tmp_path / "mask.png"
    Image.new("RGB", (20, 15), (128, 128, 128)).save(mask)  # RGB, another size: converted and resized
    assert ftn_run("-i", str(src), "-o", str(tmp_path / "map.png"), "--model", str(models["denoise"]), "--alpha-map", str(mask)) == 0
    assert "resized" in capsys.readouterr().out
    assert ftn_run("-i", str(src), "-o", str(tmp_path / "scalar.png"), "--model", str(models["denoise"]), "--alpha", str(128 / 255)) == 0
    assert (read_back(tmp_path / "map.png") - read_back(tmp_path / "scalar.png")).abs().max() <= TOL


def test_run_grey_rgba_and_16_bit(tmp_path: Path, models: dict[str, Path]) -> None:
    model = str(models["denoise"])
    grey = write_png(tmp_path / "grey.png", smooth(c=1))
    assert ftn_run("-i", str(grey), "-o", str(tmp_path / "grey_out.png"), "--model", model, "--alpha", "0.5") == 0
    with Image.open(tmp_path / "grey_out.png") as im:
        assert im.mode == "L"
    assert (read_back(tmp_path / "grey_out.png") - expected(models["denoise"], grey, 0.5)).abs().max() <= TOL

    rgba = smooth(c=4, seed=3)
    rgba[..., 3] = np.linspace(0, 1, rgba.shape[1])[None, :]  # every alpha value from 0 to 255
    src = write_png(tmp_path / "rgba.png", rgba, mode="RGBA")
    assert ftn_run("-i", str(src), "-o", str(tmp_path / "rgba_out.png"), "--model", model, "--alpha", "0.5") == 0
    with Image.open(src) as a, Image.open(tmp_path / "rgba_out.png") as b:
        assert b.mode == "RGBA"
        assert np.array_equal(np.asarray(a)[..., 3], np.asarray(b)[..., 3])

    values = (smooth(c=1, seed=5)[..., 0] * 65535).round().astype(np.uint16)
    src16 = tmp_path / "deep.png"
    Image.fromarray(values).save(src16)  # I;16 grey PNG
    assert load_image(src16).bit_depth == 16
    assert ftn_run("-i", str(src16), "-o", str(tmp_path / "deep_out.png"), "--model", model, "--alpha", "0.5") == 0
    back = load_image(tmp_path / "deep_out.png")
    assert back.bit_depth == 16
    assert (back.image - expected(models["denoise"], src16, 0.5)).abs().max() <= 1 / 65535 + 1e-6

    rgb16 = tmp_path / "deep_rgb.png"
    save_image(rgb16, torch.from_numpy(smooth(seed=6)).permute(2, 0, 1), bit_depth=16)
    assert ftn_run("-i", str(rgb16), "-o", str(tmp_path / "deep_rgb_out.tif"), "--model", model, "--alpha", "0.5") == 0
    back = load_image(tmp_path / "deep_rgb_out.tif")
    assert back.bit_depth == 16 and back.image.shape[0] == 3
    assert (back.image - expected(models["denoise"], rgb16, 0.5)).abs().max() <= 1 / 65535 + 1e-6


def test_run_folder_goes_on_past_a_bad_file(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_png(folder / "a.png", smooth(seed=1))
    (folder / "b.png").write_bytes(b"not a png at all")
    write_png(folder / "c.png", smooth(c=1, seed=2))
    out = tmp_path / "out" / "nested"
    assert ftn_run("-i", str(folder), "-o", str(out), "--model", str(models["denoise"]), "--level", "50") == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "ftn-report.json"]
    captured = capsys.readouterr()
    assert "b.png" in captured.err and "1 of 3 images failed" in captured.err
    assert (read_back(out / "a.png") - expected(models["denoise"], folder / "a.png", 0.4)).abs().max() <= TOL
    report = {Path(r["input"]).name: r for r in json.loads((out / "ftn-report.json").read_text())}
    assert [report[n]["status"] for n in ("a.png", "b.png", "c.png")] == ["done", "failed", "done"]
    assert "not an image" in report["b.png"]["notes"]


def test_run_folder_report_and_resume(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_png(folder / f"{i}.png", smooth(h=40 + 8 * i, w=48, seed=i))
    out = tmp_path / "out"
    report = tmp_path / "report.csv"
    args = ("-i", str(folder), "-o", str(out), "--model", str(models["denoise"]), "--level", "50", "--report", str(report))
    assert ftn_run(*args) == 0
    rows = list(csv.DictReader(report.open()))
    assert [Path(r["input"]).name for r in rows] == ["0.png", "1.png", "2.png"]
    for i, row in enumerate(rows):
        assert row["status"] == "done" and float(row["level"]) == 50 and row["level_name"] == "sigma"
        assert (int(row["width"]), int(row["height"])) == (48, 40 + 8 * i) == (int(row["output_width"]), int(row["output_height"]))
        assert float(row["seconds"]) > 0 and float(row["alpha"]) == pytest.approx(0.4, abs=0.05)
    # an interrupted run: one output missing, the others kept; --resume redoes only that one
    (out / "1.png").unlink()
    before = {n: (out / n).stat().st_mtime_ns for n in ("0.png", "2.png")}
    capsys.readouterr()
    assert ftn_run(*args, "--resume") == 0
    printed = capsys.readouterr().out
    assert "2 of 3 outputs exist and are skipped" in printed and "1.png ->" in printed and "0.png ->" not in printed
    assert {n: (out / n).stat().st_mtime_ns for n in before} == before
    assert (out / "1.png").is_file()
    assert [r["status"] for r in csv.DictReader(report.open())] == ["done", "done", "done"]


@pytest.mark.parametrize("tile, message", [("12", "too small"), ("abc", "--tile needs a number"), ("64", "larger than --tile-overlap")])
def test_run_refuses_bad_tile_options(tmp_path: Path, models: dict[str, Path], capsys, tile, message) -> None:
    src = write_png(tmp_path / "a.png", smooth(seed=1))
    code = ftn_run("-i", str(src), "-o", str(tmp_path / "b.png"), "--model", str(models["denoise"]), "--alpha", "0.5",
                   "--tile", tile, "--tile-overlap", "64")
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()


def test_run_in_tiles_matches_whole_image(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    src = write_png(tmp_path / "a.png", smooth(h=150, w=170, seed=3))
    base = ("-i", str(src), "--model", str(models["denoise"]), "--alpha", "0.5")
    assert ftn_run(*base, "-o", str(tmp_path / "whole.png"), "--tile", "0") == 0
    assert ftn_run(*base, "-o", str(tmp_path / "tiled.png"), "--tile", "96", "--tile-overlap", "64") == 0
    assert "tiles" in capsys.readouterr().out
    # 8-bit outputs: the tiles may flip a rounding, no more
    assert (read_back(tmp_path / "tiled.png") - read_back(tmp_path / "whole.png")).abs().max() <= 1 / 255 + 1e-6


def test_run_auto_denoise_is_monotone(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    clean = torch.from_numpy(smooth(h=64, w=64, seed=4)).permute(2, 0, 1)
    g = torch.Generator().manual_seed(0)
    alphas = []
    for sigma in (25, 45, 70):
        noisy = (clean + sigma / 255 * torch.randn(clean.shape, generator=g)).permute(1, 2, 0).numpy()
        src = write_png(tmp_path / f"n{sigma}.png", noisy)
        assert ftn_run("-i", str(src), "-o", str(tmp_path / f"o{sigma}.png"), "--model", str(models["denoise"]), "--auto") == 0
        out = capsys.readouterr().out
        match = re.search(r"estimated noise sigma ([\d.]+) -> alpha ([\d.e-]+)", out)
        assert match, out
        assert abs(float(match[1]) - sigma) <= max(0.15 * sigma, 3)
        alphas.append(float(match[2]))
        alpha, _ = level_to_alpha(META, float(match[1]))
        assert (read_back(tmp_path / f"o{sigma}.png") - expected(models["denoise"], src, alpha)).abs().max() <= 2 / 255
    assert alphas == sorted(alphas) and alphas[0] < alphas[-1]


def test_run_auto_dejpeg_reads_the_quality(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    src = tmp_path / "in.jpg"
    Image.fromarray((smooth() * 255).round().astype(np.uint8)).save(src, quality=20)
    assert ftn_run("-i", str(src), "-o", str(tmp_path / "out.png"), "--model", str(models["dejpeg"]), "--auto") == 0
    out = capsys.readouterr().out
    assert "JPEG quality 20" in out and "alpha 0.6" in out
    assert (read_back(tmp_path / "out.png") - expected(models["dejpeg"], src, 0.6)).abs().max() <= TOL


def test_run_extrapolation_is_opt_in(tmp_path: Path, models: dict[str, Path]) -> None:
    src = write_png(tmp_path / "in.png", smooth())
    argv = ["-i", str(src), "-o", str(tmp_path / "out.png"), "--model", str(models["denoise"]), "--alpha", "1.2"]
    assert ftn_run(*argv) == 2 and not (tmp_path / "out.png").exists()
    assert ftn_run(*argv, "--allow-extrapolation") == 0 and (tmp_path / "out.png").exists()


ERROR_CASES = {
    "missing input": (["-i", "{tmp}/nope.png", "--alpha", "0.5"], "input not found"),
    "not an image": (["-i", "{tmp}/text.png", "--alpha", "0.5"], "not an image"),
    "two controls": (["--alpha", "0.5", "--level", "50"], "exactly one"),
    "no control": ([], "exactly one"),
    "alpha nan": (["--alpha", "nan"], "NaN"),
    "alpha out of range": (["--alpha", "1.5"], "--allow-extrapolation"),
    "alpha not a number": (["--alpha", "half"], "needs a number"),
    "bad model path": (["--alpha", "0.5", "--model", "{tmp}/missing.safetensors"], "no model file"),
    "not a model": (["--alpha", "0.5", "--model", "{tmp}/text.png"], "not a safetensors model file"),
    "missing output folder": (["--alpha", "0.5", "-o", "{tmp}/no/such/dir/out.png"], "output folder does not exist"),
    "unknown output format": (["--alpha", "0.5", "-o", "{tmp}/out.xyz"], "output format"),
    "level without calibration": (["--level", "50", "--model", "{uncalibrated}"], "--alpha"),
    "auto dejpeg on a png": (["--auto", "--model", "{dejpeg}"], "not a JPEG"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_run_refuses_bad_input(case: str, tmp_path: Path, models: dict[str, Path], capsys) -> None:
    write_png(tmp_path / "in.png", smooth(h=16, w=16))
    (tmp_path / "text.png").write_text("hello")
    extra, message = ERROR_CASES[case]
    defaults = {"-i": str(tmp_path / "in.png"), "-o": str(tmp_path / "out.png"), "--model": str(models["denoise"])}
    fill = {"tmp": str(tmp_path), "uncalibrated": str(models["uncalibrated"]), "dejpeg": str(models["dejpeg"])}
    argv = [a.format(**fill) for a in extra]
    for option, value in defaults.items():
        if option not in argv:
            argv += [option, value]
    before = set(tmp_path.rglob("*"))
    assert ftn_run(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn run: error:") and "\n" not in err and message in err, err
    assert set(tmp_path.rglob("*")) == before  # no output, no temporary file left
