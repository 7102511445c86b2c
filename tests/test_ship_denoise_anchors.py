"""scripts/ship_denoise_anchors.py: two two-anchor models on one base (sigma 20 -> 50, sigma 20 -> 80)
become one three-anchor axis whose anchors are exactly the two tuners, calibrated per segment. Toy size,
CPU only."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.levels import level_to_alpha
from ftn.methods.axes import AxesModel

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("ship_denoise_anchors", ROOT / "scripts" / "ship_denoise_anchors.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ship_denoise_anchors"] = module
    spec.loader.exec_module(module)
    return module


script = _load_script()


def _tuned(base: torch.nn.Module, level: float, seed: int, path: Path) -> Path:
    """``base`` with an FTN at ``level`` whose weights are random (not the identity), saved as a denoise file."""
    model = ftn.attach(copy.deepcopy(base), "ftn", groups=2)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    ftn.save(model, path, task="denoise", task_options={"clip": True, "quantize": True},
             levels=[{"sigma": 20}, {"sigma": level}])
    return path


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    base = ftn.build_arch("resunet", size="mini", channels=4, blocks=1, scales=2, image_skip=True).eval()
    return _tuned(base, 50, 1, tmp_path / "s50.safetensors"), _tuned(base, 80, 2, tmp_path / "s80.safetensors")


def test_the_anchors_are_the_two_tuners_exactly(pair: tuple[Path, Path]) -> None:
    inner, outer = (ftn.load(p).eval() for p in pair)
    model = script.assemble(inner, outer).eval()
    assert isinstance(model, AxesModel) and model.axis("sigma").levels == (20.0, 50.0, 80.0)
    assert not model.axis("sigma").chained
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for alpha, reference in ((0.0, inner(x, alpha=0.0)), (1.0, inner(x, alpha=1.0)), (2.0, outer(x, alpha=1.0))):
            torch.testing.assert_close(model(x, alpha=alpha), reference, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(model(x, alpha=1.0), model(x, alpha=2.0))  # two different tuners


def test_different_bases_are_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    other = ftn.build_arch("resunet", size="mini", channels=4, blocks=1, scales=2, image_skip=True).eval()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    outer = ftn.load(_tuned(other, 80, 2, tmp_path / "other.safetensors"))
    with pytest.raises(ValueError):
        script.assemble(ftn.load(pair[0]), outer)


def test_main_writes_a_calibrated_three_anchor_file(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    images = tmp_path / "clean"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "anchors3.safetensors"
    code = script.main(["--inner", str(pair[0]), "--outer", str(pair[1]), "--out", str(out), "--data", str(images),
                        "--threads", "1"])
    assert code == 0
    model = ftn.load(out)
    assert isinstance(model, AxesModel) and model.axis("sigma").levels == (20.0, 50.0, 80.0)
    cal = model.levels.axis("sigma").calibration
    assert cal is not None and cal.levels == (20, 30, 40, 50, 60, 70, 80)
    assert list(cal.alphas) == sorted(cal.alphas) and cal.alphas[0] >= 0 and cal.alphas[-1] <= 2
    assert 0 <= cal.alphas[3] <= 1 <= cal.alphas[4]  # sigma 50 in the first segment, 60 in the second
    alpha, _ = level_to_alpha(model.metadata, 80)
    assert alpha == pytest.approx(cal.alphas[-1])


def test_a_missing_tuner_is_one_line(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    with pytest.raises(SystemExit, match="train it first"):
        script.main(["--inner", str(tmp_path / "none.safetensors"), "--outer", str(pair[1])])


def test_install_ships_the_file_with_its_card(tmp_path: Path, pair: tuple[Path, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    images = tmp_path / "clean"
    images.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(images / "0.png")
    target, cards = tmp_path / "models" / "denoise.safetensors", tmp_path / "cards"
    cards.mkdir()
    monkeypatch.setattr(script, "TARGET", target)
    monkeypatch.setattr(script.ship_models, "CARDS", cards)
    out = tmp_path / "anchors3.safetensors"
    assert script.main(["--inner", str(pair[0]), "--outer", str(pair[1]), "--out", str(out), "--data", str(images),
                        "--install"]) == 0
    assert target.read_bytes() == out.read_bytes()
    manifest = (target.parent / "MANIFEST.tsv").read_text().splitlines()
    assert any(line.startswith("denoise.safetensors\t") for line in manifest)
    assert list(cards.iterdir())  # the card was written
    meta = ftn.load(target).metadata
    assert [q["level"] for q in meta["quality"]] == [f"sigma {v}" for v in (20, 30, 40, 50, 60, 70, 80)]
    assert all(0 <= q["alpha"] <= 2 for q in meta["quality"])
    assert "stage 2 (tuner sigma 50)" in meta["budget"]["steps"]
