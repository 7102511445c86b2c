"""The shipped models run offline and their calibration picks a near-best alpha (needs ../shared)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import ftn
from ftn.cli import main
from ftn.data.images import load_image, save_image
from ftn.eval.metrics import psnr
from ftn.levels import Levels
from ftn.models import MODELS_DIR, available, read_manifest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REPO = Path(__file__).resolve().parents[1]

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"test images not found: {SHARED} (the shared/ folder beside the project)")


@pytest.mark.parametrize("name,task,axis,anchors", [
    ("denoise", "denoise", "sigma", (20, 50, 80)),  # three anchors: alpha 0 ... 2
    ("dejpeg", "dejpeg", "quality", (40, 10)),
])
def test_shipped_model_is_complete(name: str, task: str, axis: str, anchors: tuple) -> None:
    assert name in available(), f"shipped model {name!r} is missing from src/ftn/models"
    model = ftn.load(available()[name])
    assert model.method == "ftn" and model.options["groups"] == 16
    meta = model.metadata
    levels = Levels.from_metadata(meta).axis(axis)
    assert meta["task"] == task and levels.anchors == anchors
    cal = levels.calibration
    assert cal is not None and list(cal.alphas) == sorted(cal.alphas, reverse=task == "dejpeg")
    assert min(cal.alphas) >= 0 and max(cal.alphas) <= len(anchors) - 1
    assert "training" in meta and "recipe" in meta and meta["budget"]["cpuMinutes"] > 0
    assert available()[name].stat().st_size < 5_000_000


def test_shipped_files_match_the_manifest() -> None:
    manifest = read_manifest()
    # every file of the folder but the code and the manifest itself: no model ships unlisted
    shipped = {p.name: p for p in MODELS_DIR.iterdir()
               if p.is_file() and p.name not in ("__init__.py", "MANIFEST.tsv")}
    assert sorted(shipped) == sorted(manifest), "src/ftn/models and its MANIFEST.tsv list different files"
    for name, (sha256, size) in manifest.items():
        data = shipped[name].read_bytes()
        assert len(data) == size, f"{name}: {len(data)} bytes, the manifest says {size}"
        assert hashlib.sha256(data).hexdigest() == sha256, f"{name}: sha256 differs from MANIFEST.tsv"


def test_manifest_refuses_a_bad_line(tmp_path) -> None:
    bad = tmp_path / "MANIFEST.tsv"
    bad.write_text("# file\tsha256\tbytes\nmodel.safetensors\tabc\n")
    with pytest.raises(ValueError, match=r"MANIFEST.tsv:2: expected"):
        read_manifest(bad)


def test_readme_main_job_denoises_the_sample(tmp_path, capsys) -> None:
    out = tmp_path / "denoised.png"
    assert main(["run", "-i", str(REPO / "samples" / "amber-noisy-sigma50.png"), "-o", str(out), "--model", "denoise", "--level", "50"]) == 0
    clean = load_image(REPO / "samples" / "amber-clean.png").image
    noisy = load_image(REPO / "samples" / "amber-noisy-sigma50.png").image
    result = load_image(out).image
    assert psnr(result, clean) > psnr(noisy, clean) + 5.0


@needs_shared
def test_level_50_is_within_0_3_db_of_the_best_alpha(tmp_path) -> None:
    clean_path = sorted((SHARED / "data" / "test" / "CBSD68").glob("*.png"))[0]
    clean = load_image(clean_path).image
    gen = torch.Generator().manual_seed(50)
    noisy = clean + (50 / 255) * torch.randn(clean.shape, generator=gen)
    noisy_path = tmp_path / "noisy.png"
    save_image(noisy_path, noisy)  # what a user has: an 8-bit file
    out = tmp_path / "out.png"
    assert main(["run", "-i", str(noisy_path), "-o", str(out), "--model", "denoise", "--level", "50"]) == 0
    by_level = psnr(load_image(out).image, clean)

    model = ftn.load(available()["denoise"]).eval()
    top = len(Levels.from_metadata(model.metadata).axis("sigma").anchors) - 1  # alpha runs over [0, K]
    x = load_image(noisy_path).image[None]
    with torch.inference_mode():
        grid = [psnr(model(x, alpha=float(a)).clamp(0, 1)[0], clean) for a in np.linspace(0, top, 20 * top + 1)]
    assert by_level >= max(grid) - 0.3, (by_level, max(grid))


@pytest.mark.parametrize(
    "name,task,levels,scale",
    [("sr-pd-x4", "sr", [{"perception": 0}, {"perception": 1}], 4), ("style-mosaic-candy", "style", [{"style": 0}, {"style": 1}], 1)],
)
def test_shipped_perceptual_models_run_from_the_cli(tmp_path, name: str, task: str, levels: list, scale: int) -> None:
    assert name in available(), f"shipped model {name!r} is missing from src/ftn/models"
    path = available()[name]
    # the package stays light: a mini RRDBNet (1.3 M parameters, float32) with its FTN is 5.6 MB
    assert path.stat().st_size < 6_000_000
    meta = ftn.io.read_metadata(path)
    assert meta["task"] == task and meta["levels"] == levels and "budget" in meta["training"]
    rng = np.random.default_rng(0)
    save_image(tmp_path / "in.png", torch.from_numpy(rng.random((3, 20, 24), dtype=np.float32)))
    for alpha in ("0", "0.5", "1"):
        out = tmp_path / f"out-{alpha}.png"
        assert main(["run", "-i", str(tmp_path / "in.png"), "-o", str(out), "--model", name, "--alpha", alpha, "--device", "cpu"]) == 0
        assert load_image(out).image.shape == (3, 20 * scale, 24 * scale)
    assert not torch.equal(load_image(tmp_path / "out-0.png").image, load_image(tmp_path / "out-1.png").image)
