"""benchmarks/restore.py on tiny models and images: every grid cell in the table, identical models give
identical numbers, missing models read "not run", CBM3D's results are cached (no ../shared needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from benchmarks import restore as bench
from ftn.levels import with_calibration
from ftn.methods.axes import AxisSpec, attach_axes

CROP = 24


def _net() -> torch.nn.Module:
    """A tiny conv net: two 3x3 convs (DnCNN of depth 2), so that each of the ~200 settings is cheap."""
    return ftn.build_arch("dncnn", size="mini", in_channels=3, out_channels=3, channels=8, depth=2)


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # tuners away from the identity, so that every axis and anchor changes the output
        for p in model.tuner_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-axis restore model (sigma calibrated, quality by its anchors), the two one-axis models, dedicated
    runs (base and the (50, 10) corner: exports of the restore model; (15, 50): config only), tiny test sets."""
    root = tmp_path_factory.mktemp("bench_restore")
    torch.manual_seed(0)
    model = attach_axes(_net(), "ftn", [AxisSpec("sigma", 4, levels=(0, 15, 30, 50)),
                                        AxisSpec("quality", 4, levels=(90, 50, 30, 10))], groups=4)
    model.metadata = with_calibration(model.levels.replace_in({"task": "restore"}),
                                      {"levels": [0, 20, 50], "alphas": [0.0, 1.5, 3.0], "source": "test"}, "sigma")
    _perturb(model, 1)
    paths = {"restore": root / "restore.safetensors", "denoise": root / "denoise.safetensors",
             "dejpeg": root / "dejpeg.safetensors", "runs": root / "runs", "data": root / "test"}
    ftn.save(model, paths["restore"])
    torch.manual_seed(2)
    ftn.save(_perturb(ftn.attach(_net(), "ftn", groups=4), 3), paths["denoise"], task="denoise",
             levels=[{"sigma": 20}, {"sigma": 80}],
             calibration={"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.6, 1.0]})
    torch.manual_seed(4)
    ftn.save(_perturb(ftn.attach(_net(), "ftn", groups=4), 5), paths["dejpeg"], task="dejpeg",
             levels=[{"quality": 40}, {"quality": 10}],
             calibration={"level_name": "quality", "levels": [10, 40], "alphas": [1.0, 0.0]})
    runs = {"base": ("task: dejpeg\nlevel: 90\n", {"sigma": 0.0, "quality": 0.0}),
            "dedicated-50-10": ("task: restore\nlevel: {sigma: 50.0, quality: 10.0}\n", {"sigma": 3.0, "quality": 3.0}),
            "dedicated-15-50": ("task: restore\nlevel: {sigma: 15.0, quality: 50.0}\n", None)}
    for name, (config, alpha) in runs.items():
        folder = paths["runs"] / name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(config)
        if alpha is not None:
            ftn.save(model.export(alpha), folder / "model.safetensors")
    gen = np.random.RandomState(0)
    for set_name in bench.SETS:
        folder = paths["data"] / set_name
        folder.mkdir(parents=True)
        for i in range(2):
            low = torch.from_numpy(gen.rand(1, 3, 5, 6)).float()
            image = torch.nn.functional.interpolate(low, size=(36, 40), mode="bicubic", align_corners=False)[0]
            u8 = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(u8 if i == 0 else u8[..., 0]).save(folder / f"img{i}.png")  # the second one grey
    return paths


def _run(setup: dict[str, Path], out: Path, *extra: str) -> int:
    return bench.main(["--model", str(setup["restore"]), "--denoise", str(setup["denoise"]), "--dejpeg", str(setup["dejpeg"]),
                       "--runs", str(setup["runs"]), "--data", str(setup["data"]), "--images", "2", "--crop", str(CROP),
                       "--cbm3d-images", "1", "--cbm3d-cache", str(out.parent / "cbm3d.json"), "--out", str(out), *extra])


def _rows(text: str, set_name: str) -> list[list[str]]:
    section = text.split(f"## {set_name}\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if re.match(r"\| \d", line)]


def _fake_cbm3d_cell(sigma: str) -> str:
    return "n/a" if sigma == "0" else f"{20 + float(sigma) / 10:.2f}"


def test_benchmark_writes_every_cell_and_identical_models_agree(setup: dict[str, Path], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    calls = []

    def fake_cbm3d(noisy: torch.Tensor, clean: torch.Tensor, sigma: float) -> float:
        calls.append(sigma)
        return 20.0 + sigma / 10  # CBM3D itself is tested below; here: that it is called once per key

    monkeypatch.setattr(bench, "cbm3d_psnr", fake_cbm3d)
    monkeypatch.setattr(bench, "_cbm3d_available", lambda: True)
    out = tmp_path / "restore.md"
    assert _run(setup, out) == 0
    text, record = out.read_text(), json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    grid = {(f"{s:g}", f"{q:g}") for s, q in bench.grid()}
    assert len(grid) == 16
    for set_name in bench.SETS:
        rows = _rows(text, set_name)
        assert {(r[0], r[1]) for r in rows} == grid and len(rows) == 16
        for row in rows:
            assert row[8] == _fake_cbm3d_cell(row[0])
            assert all(cell for cell in row)
        cells = record["sets"][set_name]["cells"]
        # the dedicated models are exports of the restore model at these cells' calibrated alphas: identical numbers
        for key in ("sigma=0,quality=90", "sigma=50,quality=10"):
            assert cells[key]["restore"]["psnr"] == cells[key]["dedicated"]["psnr"]
            assert cells[key]["difference"]["dedicated"] == 0.0
        assert cells["sigma=50,quality=10"]["restore"]["alpha"] == {"sigma": 3.0, "quality": 3.0}
        assert cells["sigma=15,quality=50"]["dedicated"]["missing"].startswith("not run (no model at")
        assert "dedicated" not in cells["sigma=30,quality=30"]
        # sigma 0 skips the denoiser; sigma 15 is below the denoiser's range, quality 90 above the deJPEG's: clamped
        assert cells["sigma=0,quality=50"]["cascade"]["alpha"]["denoise"] is None
        assert any("sigma 15 is outside" in n for n in cells["sigma=15,quality=90"]["cascade"]["notes"])
        assert any("quality 90 is outside" in n for n in cells["sigma=15,quality=90"]["cascade"]["notes"])
        assert "cbm3d" not in cells["sigma=0,quality=10"] and len(cells["sigma=30,quality=10"]["cbm3d"]["psnr"]) == 1
        for cell in cells.values():  # the best alpha is at least as good as the calibrated one
            assert cell["mean"]["restore_best"] >= cell["mean"]["restore"]
            # --auto reads the quality from each file's tables exactly: the calibrated quality alpha, per image
            auto = cell["restore_auto"]
            assert [a["quality"] for a in auto["alpha"]] == [cell["restore"]["alpha"]["quality"]] * 2
            assert len(auto["sigma_estimate"]) == len(auto["psnr"]) == 2
    assert "not run (no model at" in text and "sigma 15 is outside" in text
    assert "At its calibrated alpha the restore model is ahead" in text
    # per image: 3 noisy sigmas x 4 qualities with JPEG, and 3 without (shared by the qualities); 2 sets, 1 image each
    assert len(calls) == 2 * (12 + 3)
    # again with the models missing and a set absent: CBM3D from the cache alone, every other column "not run"
    calls.clear()
    capsys.readouterr()
    nothing = tmp_path / "none.safetensors"
    code = bench.main(["--model", str(nothing), "--denoise", str(setup["denoise"]), "--dejpeg", str(nothing),
                       "--runs", str(tmp_path / "no-runs"), "--data", str(setup["data"]), "--sets", "CBSD68", "Missing",
                       "--images", "2", "--crop", str(CROP), "--cbm3d-images", "1",
                       "--cbm3d-cache", str(tmp_path / "cbm3d.json"), "--out", "-"])
    assert code == 0 and calls == []
    text = capsys.readouterr().out
    assert f"denoise → dejpeg**: not run (no model at {nothing})" in text
    assert f"dedicated**: not run (no model at {tmp_path / 'no-runs'}/dedicated-*/model.safetensors)" in text
    assert "**Skipped:** Missing: no folder at" in text and "## LIVE1" not in text
    assert "The restore model was not run" in text
    rows = _rows(text, "CBSD68")
    assert len(rows) == 16 and all(r[3] == r[4] == r[5] == r[6] == r[7] == "not run" for r in rows)
    assert [r[8] for r in rows] == [_fake_cbm3d_cell(r[0]) for r in rows]


def test_no_test_set_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--data", str(tmp_path), "--sets", "Missing", "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("restore: error: none of the test sets Missing")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not bench._cbm3d_available(), reason="bm3d is not installed (pip install -e '.[bench]')")
def test_cbm3d_on_one_tiny_crop() -> None:
    gen = np.random.RandomState(1)
    low = torch.from_numpy(gen.rand(1, 3, 4, 4)).float()
    clean = torch.nn.functional.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    noisy = bench.degrade(clean, "CBSD68", "x", 32, 30.0, None, 0)
    assert bench.cbm3d_psnr(noisy, clean, 30.0) > bench._psnr(noisy, clean) + 2


def test_poisson_gaussian_inputs_and_range(tmp_path: Path) -> None:
    """--poisson p degrades with Restore(poisson=p): the same seed, noise growing with the value; p outside [0, 1] is refused."""
    dark_and_bright = torch.cat([torch.full((3, 16, 16), 0.1), torch.full((3, 16, 16), 0.9)], dim=2)
    gauss = bench.degrade(dark_and_bright, "CBSD68", "x", 16, 30.0, None, 0)
    mixed = bench.degrade(dark_and_bright, "CBSD68", "x", 16, 30.0, None, 0, poisson=1.0)
    spread = [float((y - dark_and_bright)[:, :, half].std()) for y in (gauss, mixed) for half in (slice(0, 16), slice(16, 32))]
    assert abs(spread[0] - spread[1]) < 0.02 and spread[3] > 2 * spread[2]  # Gaussian: even; Poisson: more where bright
    with pytest.raises(SystemExit):
        bench.main(["--poisson", "2", "--out", str(tmp_path / "x.md")])
