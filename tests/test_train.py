"""Training: config parsing, both stages end to end, exact resume, divergence, atomic checkpoints, DDP.

Tiny on purpose: an AdaFM-Net mini with 8 channels and 1 block, 16 px patches, batches of 4, a handful
of steps, images written to a temporary folder.
"""

from __future__ import annotations

import csv
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import ftn
from ftn.io import read_metadata, read_state_dict
from ftn.train import (
    TrainConfig,
    TrainingDiverged,
    load_checkpoint,
    load_config,
    read_checkpoint_info,
    save_checkpoint,
    train,
    validate_config,
)
from ftn.train import checkpoint as checkpoint_module
from ftn.train import loop as loop_module
from ftn.train.cli import main as cli_main

TINY_ARCH = {"size": "mini", "channels": 8, "blocks": 1, "image_skip": True}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Six 40x40 training and two 32x32 validation images: smooth colour ramps with a square."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder, n, size in (("train", 6, 40), ("val", 2, 32)):
        (root / folder).mkdir()
        yy, xx = np.mgrid[0:size, 0:size] / size
        for i in range(n):
            c0, c1 = rng.random(3), rng.random(3)
            img = c0 * xx[..., None] + c1 * (1 - yy[..., None])
            a, b = rng.integers(0, size // 2, 2)
            img[a : a + size // 3, b : b + size // 3] = rng.random(3)
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / folder / f"{i:02d}.png")
    return root


def tiny_config(data: Path, out_dir: Path, **changes) -> TrainConfig:
    values = dict(
        name="tiny", out_dir=str(out_dir), stage="base", task="denoise", level=20, arch="adafm_net",
        arch_options=dict(TINY_ARCH), train_data=str(data / "train"), val_data=str(data / "val"), val_limit=2,
        val_every=3, patch_size=16, batch_size=4, iterations=4, lr=1e-3, threads=1, device="cpu",
        checkpoint_every=2, log_every=1,
    )
    values.update(changes)
    return validate_config(TrainConfig(**values))


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# -- config ----------------------------------------------------------------------------------------


def test_config_file_with_overrides(tmp_path) -> None:
    path = tmp_path / "denoise-small.yaml"
    path.write_text("stage: base\nlevel: 20\nlr: 1e-3\narch_options: {size: mini}\nbetas: [0.9, 0.99]\n"
                    "train_data: photos\n")
    config = load_config(path, ["arch_options.channels=16", "iterations=50", "val_data=null"])
    assert config.name == "denoise-small" and config.out_dir == str(Path("runs") / "denoise-small")
    assert config.lr == 1e-3 and isinstance(config.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert config.arch_options == {"size": "mini", "channels": 16}
    assert config.iterations == 50 and config.val_data is None and config.betas == (0.9, 0.99)
    # the shipped configs all parse
    for shipped in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        assert load_config(shipped).name == shipped.stem


def test_config_errors_name_the_key(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lrr: 0.1\n")
    with pytest.raises(ValueError, match=r"'lrr'.*did you mean 'lr'"):
        load_config(path)
    with pytest.raises(ValueError, match=r"'arch_option'.*'arch_options'"):
        load_config(None, ["arch_option.size=mini"])
    with pytest.raises(ValueError, match="batch_size"):
        load_config(None, ["batch_size=many"])
    with pytest.raises(ValueError, match="stage"):
        load_config(None, ["stage=third"])
    with pytest.raises(ValueError, match="base"):
        load_config(None, ["stage=tuner"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["iterations"])


def test_train_data_is_required(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("stage: base\nlevel: 20\n")
    with pytest.raises(ValueError, match=r"'train_data' is required.*e\.g\. train_data: ") as info:
        load_config(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="'train_data' is required"):
        load_config(path, ["train_data=null"])
    assert load_config(path, ["train_data=photos"]).train_data == "photos"


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("iterations: 3\n")
    assert cli_main([str(path), "--set", "learning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "learning_rate" in err


# -- both stages -----------------------------------------------------------------------------------


def test_base_then_tuner_end_to_end(data, tmp_path) -> None:
    base_path = train(tiny_config(data, tmp_path / "base"), progress=False)
    meta = read_metadata(base_path)
    assert meta["task"] == "denoise" and meta["levels"] == [{"sigma": 20}]
    assert meta["recipe"]["stage"] == "base" and meta["recipe"]["arch_options"]["channels"] == 8
    assert meta["training"]["iterations"] == 4 and math.isfinite(meta["training"]["final_val_psnr"])
    log = read_log(tmp_path / "base" / "log.csv")
    assert [int(r["step"]) for r in log] == [1, 2, 3, 4] and log[2]["val_psnr"] and not log[1]["val_psnr"]
    assert yaml.safe_load((tmp_path / "base" / "config.yaml").read_text())["level"] == 20

    tuner_config = tiny_config(data, tmp_path / "ftn", stage="tuner", base=str(base_path), level=50,
                               method="ftn", method_options={"groups": 4}, arch_options={}, lr=1e-2)
    tuner_path = train(tuner_config, progress=False)
    meta = read_metadata(tuner_path)
    assert meta["method"] == "ftn" and meta["levels"] == [{"sigma": 20}, {"sigma": 50}]
    assert meta["recipe"]["stage"] == "tuner" and meta["recipe"]["arch_options"]["channels"] == 8
    # stage 2 starts from level 1: alpha 0 on sigma 20 is the base network's score
    assert meta["training"]["start_psnr_alpha0_level1"] == pytest.approx(
        read_metadata(base_path)["training"]["final_val_psnr"], abs=1e-3)

    base, tuned = ftn.load(base_path).eval(), ftn.load(tuner_path).eval()
    base_params = list(base.parameters())
    assert len(base_params) == len(tuned.base_parameters())
    assert all(torch.equal(a, b) for a, b in zip(base_params, tuned.base_parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(tuned.tuner_parameters(),
                                                     ftn.attach(ftn.load(base_path), "ftn", groups=4).tuner_parameters()))
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(tuned(x, alpha=0.0), base(x))


# -- resume ----------------------------------------------------------------------------------------


def test_resume_is_bit_exact(data, tmp_path, monkeypatch) -> None:
    changes = dict(iterations=6, checkpoint_every=2, val_every=100, channels_last=True)
    straight = train(tiny_config(data, tmp_path / "straight", **changes), progress=False)

    original = loop_module.next_batch

    def stop_at_step_3(sampler, step, config, procs):
        if step == 3:  # steps 0-2 done, checkpoint at 2 written: a kill during step 4
            raise KeyboardInterrupt
        return original(sampler, step, config, procs)

    config = tiny_config(data, tmp_path / "resumed", **changes)
    monkeypatch.setattr(loop_module, "next_batch", stop_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.setattr(loop_module, "next_batch", original)
    assert read_checkpoint_info(tmp_path / "resumed" / "checkpoint.safetensors")["step"] == 2
    with pytest.raises(ValueError, match="--resume"):
        train(config, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(data, tmp_path / "resumed", **changes, lr=5e-4), resume=True, progress=False)
    resumed = train(config, resume=True, progress=False)

    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [int(r["step"]) for r in read_log(tmp_path / "resumed" / "log.csv")] == [1, 2, 3, 4, 5, 6]


def test_stop_after_pauses_and_two_calls_add_up_to_one_run(data, tmp_path, monkeypatch) -> None:
    # a long run in time-boxed slices (a background CPU job, short calls on a lent GPU): each call
    # stops after its time, leaves a checkpoint, and the slices give the uninterrupted weights
    changes = dict(iterations=6, checkpoint_every=100, val_every=100)
    straight = train(tiny_config(data, tmp_path / "straight", **changes), progress=False)
    clock = iter(range(10_000))
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: float(next(clock)))  # one "second" per call
    config = tiny_config(data, tmp_path / "sliced", **changes)
    first = train(config, progress=False, stop_after_s=2.5)
    assert first.name == "checkpoint.safetensors" and not (tmp_path / "sliced" / "model.safetensors").exists()
    paused_at = read_checkpoint_info(first)["step"]
    assert 1 <= paused_at < 6
    assert train(config, resume=True, progress=False, stop_after_s=10_000).name == "model.safetensors"
    a, b = read_state_dict(straight), read_state_dict(tmp_path / "sliced" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_stop_after_says_how_to_continue(data, tmp_path, capsys) -> None:
    config_path = tmp_path / "run.yaml"
    values = {k: v for k, v in vars(tiny_config(data, tmp_path / "cli", iterations=4000)).items()}
    config_path.write_text(yaml.safe_dump(ftn.train.config_to_dict(TrainConfig(**values))))
    assert cli_main([str(config_path), "--stop-after", "0.0001", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "paused" in out and "--resume" in out
    assert read_checkpoint_info(tmp_path / "cli" / "checkpoint.safetensors")["step"] < 4000
    assert cli_main([str(config_path), "--stop-after", "-1"]) == 2
    assert "--stop-after must be a positive number" in capsys.readouterr().err


def test_a_gpu_leg_may_change_batch_and_amp_on_resume(data, tmp_path) -> None:
    # the CPU slice trains in float32 at batch 4; the "GPU" slice resumes at batch 8 with bf16 autocast
    config = tiny_config(data, tmp_path / "legs", iterations=4, checkpoint_every=2, val_every=100)
    train(replace_config(config, iterations=2), progress=False)
    (tmp_path / "legs" / "model.safetensors").unlink()
    path = train(replace_config(config, batch_size=8, amp=True), resume=True, progress=False)
    state = read_state_dict(path)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values())
    assert [int(r["step"]) for r in read_log(tmp_path / "legs" / "log.csv")][-1] == 4
    legs = read_metadata(path)["training"]["legs"]  # the budget per leg and device, in the model file
    assert [(leg["steps"], leg["batch_size"], leg["amp"]) for leg in legs] == [([0, 2], 4, False), ([2, 4], 8, True)]
    assert all(leg["seconds"] >= 0 and leg["device"].startswith("CPU") for leg in legs)


def replace_config(config: TrainConfig, **changes) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


# -- crash safety: a real SIGKILL -------------------------------------------------------------------

# Runs a training config in a child process that SIGKILLs itself at a chosen moment, so no Python
# clean-up (finally, except) runs: after step 3 (the checkpoint of step 2 on disk), or half-way
# through writing the checkpoint of step 4 (the temporary file truncated to half, then the kill).
KILLED_CHILD = """
import os, signal, sys
from ftn.train import load_config, train
from ftn.train import checkpoint, loop

when, config_path = sys.argv[1], sys.argv[2]
if when == "after-checkpoint":
    next_batch = loop.next_batch
    def killing_next_batch(sampler, step, config, procs):
        if step == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return next_batch(sampler, step, config, procs)
    loop.next_batch = killing_next_batch
else:
    save_file, writes = checkpoint.save_file, []
    def half_save_file(tensors, filename, metadata=None):
        writes.append(filename)
        save_file(tensors, filename, metadata=metadata)
        if len(writes) == 2:
            with open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoint.save_file = half_save_file
train(load_config(config_path), progress=False)
"""


@pytest.mark.parametrize("when", ["after-checkpoint", "while-writing-checkpoint"])
def test_sigkill_then_resume_gives_the_uninterrupted_weights(data, tmp_path, when) -> None:
    changes = dict(iterations=6, checkpoint_every=2, val_every=100)
    straight = train(tiny_config(data, tmp_path / "straight", **changes), progress=False)

    config_path = tmp_path / "killed.yaml"
    config_path.write_text(yaml.safe_dump(loop_module.config_to_dict(tiny_config(data, tmp_path / "killed", **changes))))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, "-c", KILLED_CHILD, when, str(config_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]  # died by SIGKILL, not by an exception
    out = tmp_path / "killed"
    # the checkpoint on disk is the complete one of step 2, never a half-written file
    assert read_checkpoint_info(out / "checkpoint.safetensors")["step"] == 2
    assert not (out / "model.safetensors").exists()
    stale = list(out.glob(".checkpoint.safetensors.*.tmp"))
    assert len(stale) == (1 if when == "while-writing-checkpoint" else 0)

    resumed = subprocess.run([sys.executable, "-m", "ftn.train.cli", str(config_path), "--resume", "--no-progress"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    a, b = read_state_dict(straight), read_state_dict(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [int(r["step"]) for r in read_log(out / "log.csv")] == [1, 2, 3, 4, 5, 6]


# -- divergence ------------------------------------------------------------------------------------


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch) -> None:
    from ftn.tasks import PixelObjective

    original, calls = PixelObjective.forward, []

    def nan_at_step_4(self, output, target):
        calls.append(1)
        loss, parts = original(self, output, target)
        return (loss * float("nan") if len(calls) == 4 else loss), parts

    monkeypatch.setattr(PixelObjective, "forward", nan_at_step_4)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match="step 4"):
        train(tiny_config(data, out, iterations=6, checkpoint_every=2), progress=False)
    assert read_checkpoint_info(out / "checkpoint.safetensors")["step"] == 2
    assert not (out / "model.safetensors").exists()
    model = ftn.build_arch("adafm_net", **TINY_ARCH)
    load_checkpoint(out / "checkpoint.safetensors", model)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    monkeypatch.setattr(PixelObjective, "forward", original)
    with pytest.raises(TrainingDiverged, match="diverged at step"):  # a real blow-up
        train(tiny_config(data, tmp_path / "blowup", lr=1e30, lr_min=0, iterations=5, checkpoint_every=100),
              progress=False)


# -- checkpoints -----------------------------------------------------------------------------------


def _step(model, optimizer, scheduler) -> None:
    loss = model(torch.rand(2, 3, 12, 12)).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def test_checkpoint_round_trip_and_atomic_write(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    model = ftn.build_arch("adafm_net", **TINY_ARCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5**s)
    _step(model, optimizer, scheduler)
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, step=1, elapsed_s=2.5,
                    config={"name": "x"}, extra={"note": 1})
    saved_bytes = path.read_bytes()

    # round trip into fresh objects
    model2 = ftn.build_arch("adafm_net", **TINY_ARCH)
    optimizer2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    scheduler2 = torch.optim.lr_scheduler.LambdaLR(optimizer2, lambda s: 0.5**s)
    info = load_checkpoint(path, model2, optimizer2, scheduler2)
    assert info["step"] == 1 and info["elapsed_s"] == 2.5 and info["config"] == {"name": "x"} and info["extra"] == {"note": 1}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] and scheduler2.last_epoch == 1
    s1, s2 = optimizer.state_dict()["state"], optimizer2.state_dict()["state"]
    assert all(torch.equal(s1[i][k], s2[i][k]) for i in s1 for k in s1[i])

    # a crash half-way through the next write leaves the old checkpoint and no temporary file
    _step(model, optimizer, scheduler)

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, step=2, elapsed_s=5.0, config={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors"]
    assert path.read_bytes() == saved_bytes
    assert load_checkpoint(path, model2, optimizer2, scheduler2)["step"] == 1


# -- two processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(data, tmp_path) -> None:
    """torchrun with 2 gloo processes (2 images each) vs 1 process (4 images): the same training.

    Not bit-identical: DDP all-reduces the gradients in a different summation order than one
    process's batch mean, so the weights agree to float rounding only.
    """
    torch.manual_seed(0)
    base = ftn.build_arch("adafm_net", **TINY_ARCH)
    base_path = tmp_path / "base.safetensors"
    ftn.save(base, base_path, task="denoise", levels=[{"sigma": 20}])
    # the tuner stage: frozen base parameters in DDP with find_unused_parameters=False
    changes = dict(stage="tuner", base=str(base_path), level=50, method="ftn", method_options={"groups": 4},
                   iterations=3, val_data=None)
    one = train(tiny_config(data, tmp_path / "one", **changes), progress=False)

    config_path = tmp_path / "two.yaml"
    two_config = tiny_config(data, tmp_path / "two", **changes)
    config_path.write_text(yaml.safe_dump(loop_module.config_to_dict(two_config)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "ftn.train.cli", str(config_path), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    two = tmp_path / "two" / "model.safetensors"
    assert f"model: {two}" in result.stdout and result.stdout.count("model:") == 1  # rank 0 reports
    assert read_metadata(two)["training"]["machine"]["processes"] == 2

    a, b = read_state_dict(one), read_state_dict(two)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key
    start = ftn.attach(ftn.load(base_path), "ftn", groups=4).model.state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # the tuner moved



def test_init_fine_tunes_a_model_at_a_setting_of_several_axes(data, tmp_path) -> None:
    """``init``: a base stage that starts from a model's weights (the dedicated single-setting models
    of the ``restore`` grid); the ``restore`` task's level is a setting {sigma, quality}."""
    first = train(tiny_config(data, tmp_path / "first", task="dejpeg", level=90), progress=False)
    setting = {"sigma": 30, "quality": 30}
    config = tiny_config(data, tmp_path / "second", task="restore", level=setting, init=str(first), lr=1e-12, lr_min=0.0,
                         iterations=2)
    second = train(config, progress=False)
    a, b = read_state_dict(first), read_state_dict(second)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-8) for k in a)  # lr 1e-12: the weights it started from
    fresh = read_state_dict(train(tiny_config(data, tmp_path / "fresh", task="restore", level=setting, lr=1e-12, lr_min=0.0,
                                              iterations=2), progress=False))
    assert not all(torch.allclose(a[k], fresh[k], atol=1e-4) for k in a)  # without init: a random start
    meta = read_metadata(second)
    assert meta["task"] == "restore" and meta["levels"] == [{"setting": setting}]
    assert read_log(tmp_path / "second" / "log.csv")[-1]["val_psnr"]
    with pytest.raises(ValueError, match="'init'.*for stage 'base'"):
        validate_config(tiny_config(data, tmp_path / "t", stage="tuner", base=str(first), init=str(first)))
    with pytest.raises(ValueError, match="tensors do not fit"):
        train(tiny_config(data, tmp_path / "wide", init=str(first), arch_options={**TINY_ARCH, "channels": 16}),
              progress=False)
