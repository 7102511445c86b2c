"""scripts/ship_restore.py: the shipped ``restore`` model's recipe end to end at toy size: the base
fine-tuned from a given network, seven tuner stages (quality 90 -> 50 -> 30 -> 10, sigma 0 -> 15 -> 30 ->
50, the corner), legs that pause and resume, installation with a card and a MANIFEST line, and the
comparison models. CPU only, a 4-channel ResUNet, 2 steps a stage."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import ftn
from ftn.io import read_metadata
from ftn.methods.axes import AxesModel

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"size": "mini", "channels": 4, "blocks": 1, "scales": 2, "image_skip": True}


def _load_script():
    spec = importlib.util.spec_from_file_location("ship_restore", ROOT / "scripts" / "ship_restore.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ship_restore"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


ship_restore = _load_script()
TINY = ["--data", "train", "--iters", "2", "--batch-size", "2", "--patch-size", "16", "--groups", "2",
        "--device", "cpu", "--set", "device=cpu", "--threads", "1"]


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    """Training images, a tiny 'dejpeg base' to start from, the real base config made tiny, a models folder."""
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    yy, xx = np.mgrid[0:40, 0:40] / 40
    for i in range(8):
        img = rng.random(3) * xx[..., None] + rng.random(3) * (1 - yy[..., None])
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(tmp_path / "train" / f"{i:02d}.png")
    ftn.save(ftn.build_arch("resunet", **ARCH), tmp_path / "dejpeg-base.safetensors", task="dejpeg",
             levels=[{"quality": 40}])
    config = yaml.safe_load((ROOT / "configs/ship/restore-base.yaml").read_text())
    config.update(arch_options=ARCH, init="dejpeg-base.safetensors", train_data="train", val_data=None,
                  iterations=40, patch_size=16, batch_size=2, checkpoint_every=1, log_every=1, channels_last=False)
    (tmp_path / "configs/ship").mkdir(parents=True)
    (tmp_path / "configs/ship/restore-base.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "src/ftn/models").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_recipe_runs_in_legs_and_installs_a_two_axis_model(workdir: Path, capsys, monkeypatch) -> None:
    # A leg whose time runs out during the base stage, on any machine: the trainer is told that no
    # time is left, so it pauses at its first checkpoint (a wall-clock budget would race a fast CPU).
    real_train = ship_restore.ship_models.train
    with monkeypatch.context() as patch:
        patch.setattr(ship_restore.ship_models, "train", lambda config, **kw: real_train(config, **{**kw, "stop_after_s": 0.0}))
        assert ship_restore.main([*TINY, "--stop-after", "60"]) == 0
    assert "paused in the base stage" in capsys.readouterr().out
    assert (workdir / "reproduce/runs/ship/restore/base/checkpoint.safetensors").is_file()

    assert ship_restore.main([*TINY, "--dedicated"]) == 0
    out = capsys.readouterr().out
    assert "restore: shipped src/ftn/models/restore.safetensors" in out
    target = workdir / "src/ftn/models/restore.safetensors"
    model = ftn.load(target)
    assert isinstance(model, AxesModel)
    assert [(a.name, a.levels, a.chained) for a in model.axes] == [
        ("quality", (90.0, 50.0, 30.0, 10.0), True), ("sigma", (0.0, 15.0, 30.0, 50.0), True)]
    # a joint correction at every anchor pair off the axes, (sigma 50, quality 10) first
    assert dict(model.corners[0]) == {"quality": 3, "sigma": 3}
    assert sorted((dict(c)["quality"], dict(c)["sigma"]) for c in model.corners) == [(q, s) for q in (1, 2, 3) for s in (1, 2, 3)]
    calibrated = {axis.name: axis.calibration for axis in model.levels.axes}
    assert {90, 50, 30, 10} <= set(calibrated["quality"].levels) and {0, 15, 30, 50} <= set(calibrated["sigma"].levels)
    meta = read_metadata(target)
    steps = meta["budget"]["steps"]
    assert steps["stage 1 (base)"] == 40 and len(steps) == 1 + len(ship_restore.TUNERS) + len(ship_restore.CORNERS) and all(v == 2 for k, v in steps.items() if k.startswith("tuner"))
    assert meta["training_data"] == ["train"] and meta.get("license") and meta["task"] == "restore"
    manifest = (workdir / "src/ftn/models/MANIFEST.tsv").read_text()
    assert "restore.safetensors\t" in manifest
    # the comparison models: the base fine-tuned whole at one setting each
    for setting in ship_restore.DEDICATED:
        folder = workdir / f"reproduce/runs/ship/restore/dedicated-s{setting['sigma']}-q{setting['quality']}"
        dedicated = read_metadata(folder / "model.safetensors")
        assert dedicated["task"] == "restore" and dedicated["levels"] == [{"setting": setting}]
        assert dedicated["recipe"]["init"].endswith("base/model.safetensors")
    # a finished run is not trained again
    assert ship_restore.main([*TINY, "--no-install"]) == 0
    assert capsys.readouterr().out.count("done already") == 1 + len(ship_restore.TUNERS) + len(ship_restore.CORNERS)

    # corners in two lanes (two processes on two cores): the same model, joined when the last lane ends
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = [model(x, alpha={"quality": q, "sigma": s}) for q, s in ((2, 2), (1, 1), (2.5, 1.5))]
    for stage in ship_restore.CORNERS[:3]:
        shutil.rmtree(workdir / "reproduce/runs/ship/restore" / stage.name)
    assert ship_restore.main([*TINY, "--lane", "2/2"]) == 0
    assert "waiting for the other lanes" in capsys.readouterr().out
    assert ship_restore.main([*TINY, "--lane", "1/2"]) == 0
    assert "restore: shipped" in capsys.readouterr().out
    again = ftn.load(target)
    with torch.inference_mode():
        for (q, s), want in zip(((2, 2), (1, 1), (2.5, 1.5)), before):
            torch.testing.assert_close(again(x, alpha={"quality": q, "sigma": s}), want)


def test_lanes_wait_for_the_tuner_stages(workdir: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        ship_restore.main([*TINY, "--lane", "3/2"])
    assert ship_restore.main([*TINY, "--lane", "2/2"]) == 2
    assert "run them in one process" in capsys.readouterr().err


def test_the_comparison_models_train_alone_once_the_base_is_done(workdir: Path, capsys) -> None:
    # before the base exists: refused in one line, nothing trained
    assert ship_restore.main([*TINY, "--only-dedicated"]) == 2
    assert "the base is not trained yet" in capsys.readouterr().err
    assert not (workdir / "reproduce/runs/ship/restore").exists()
    assert ship_restore.main([*TINY, "--stop-after", "60", "--no-install"]) == 0  # base and tuners
    assert ship_restore.main([*TINY, "--only-dedicated"]) == 0
    for setting in ship_restore.DEDICATED:
        folder = workdir / f"reproduce/runs/ship/restore/dedicated-s{setting['sigma']}-q{setting['quality']}"
        assert (folder / "model.safetensors").is_file()
    assert not (workdir / "src/ftn/models/restore.safetensors").exists()
