"""scripts/ship_models.py: a long shipped-model run goes on in legs (time-boxed calls that pause at a
checkpoint and resume), a leg may run with another batch and bf16 autocast (what a lent GPU runs), and
--pack brings the checkpoints back under their repository paths. CPU only, tiny networks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ftn.train import read_checkpoint_info

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("ship_models", ROOT / "scripts" / "ship_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ship_models = _load_script()


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    """A folder with training images and the two stage configs of a tiny 'denoise' ship recipe."""
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "train" / f"{i}.png")
    common = {"task": "denoise", "task_options": {"clip": True, "quantize": True}, "train_data": "train",
              "val_data": None, "patch_size": 16, "batch_size": 4, "iterations": 100_000, "checkpoint_every": 1_000_000,
              "log_every": 1, "channels_last": False, "threads": 1}
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "denoise-base.yaml").write_text(yaml.safe_dump({
        **common, "name": "denoise-base", "stage": "base", "level": 20, "arch": "resunet",
        "arch_options": {"size": "mini", "channels": 4, "blocks": 1, "scales": 2}, "out_dir": "runs/ship/denoise/base"}))
    (configs / "denoise-ftn16.yaml").write_text(yaml.safe_dump({
        **common, "name": "denoise-ftn16", "stage": "tuner", "level": 80, "method": "ftn", "method_options": {"groups": 4},
        "base": "runs/ship/denoise/base/model.safetensors", "out_dir": "runs/ship/denoise/ftn16"}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_legs_pause_resume_and_pack(workdir: Path, capsys) -> None:
    checkpoint = workdir / "runs/ship/denoise/base/checkpoint.safetensors"
    leg = ["--tasks", "denoise", "--configs", "configs", "--set", "device=cpu", "--no-install"]
    # leg 1 on the "CPU": float32, batch 4, paused after ~1 s with a checkpoint
    assert ship_models.main([*leg, "--stop-after", "0.02", "--pack", "out1"]) == 0
    assert "paused" in capsys.readouterr().out
    first = read_checkpoint_info(checkpoint)["step"]
    assert first >= 1 and not (workdir / "runs/ship/denoise/base/model.safetensors").exists()
    packed = workdir / "out1/runs/ship/denoise/base/checkpoint.safetensors"
    assert packed.read_bytes() == checkpoint.read_bytes()
    # leg 2 as on a lent GPU: a larger batch and bf16 autocast, resumed from leg 1's checkpoint
    assert ship_models.main([*leg, "--set", "batch_size=8", "--set", "amp=true", "--stop-after", "0.02", "--pack", "out2"]) == 0
    info = read_checkpoint_info(checkpoint)
    assert info["step"] > first and info["config"]["batch_size"] == 8 and info["config"]["amp"] is True
    assert (workdir / "out2/runs/ship/denoise/base/checkpoint.safetensors").is_file()


def test_a_finished_stage_is_not_retrained_and_the_next_one_starts(workdir: Path, capsys) -> None:
    for name in ("denoise-base", "denoise-ftn16"):  # short enough to finish
        path = workdir / "configs" / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "iterations": 3}))
    deadline = ship_models.Deadline(None)
    overrides = ["device=cpu"]
    base = ship_models.run_stage(Path("configs/denoise-base.yaml"), overrides, deadline)
    assert base is not None and base.name == "model.safetensors"
    again = ship_models.run_stage(Path("configs/denoise-base.yaml"), overrides, deadline)
    assert again == base and "done already" in capsys.readouterr().out
    assert ship_models.run_stage(Path("configs/denoise-ftn16.yaml"), overrides, ship_models.Deadline(0)) is None
    tuned = ship_models.run_stage(Path("configs/denoise-ftn16.yaml"), overrides, deadline)
    assert tuned is not None and tuned.is_file()
