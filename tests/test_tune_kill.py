"""SIGKILL during ``ftn tune``: ``--resume`` continues from the last checkpoint and ends bit for bit where
an uninterrupted run of the same steps ends (issue [6/6]).

Each run is its own ``ftn tune`` process (the same environment, one thread), so the kill is a real
one: no handler runs, nothing is flushed. The killed run is slowed by a sleep per step (its data is
unchanged) so that the test can kill it between two checkpoints. Tiny: an AdaFM-Net mini with 8
channels and 1 block, 16 px patches, batches of 2, 12 steps, a checkpoint every 3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.io import read_metadata, read_state_dict
from ftn.train import read_checkpoint_info
from ftn.tuning import checkpoint_path

STEPS, EVERY = 12, 3

# Runs `ftn tune ARGS...` with a sleep of SECONDS before every step's batch.
RUNNER = """
import sys, time
from ftn.tuning import data
seconds = float(sys.argv[1])
original = data.SpecSource.batch
def batch(self, step, batch_size, device):
    time.sleep(seconds)
    return original(self, step, batch_size, device)
data.SpecSource.batch = batch
from ftn.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kill")
    (root / "clean").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "clean" / f"{i}.png")
    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    ftn.save(net, root / "base.safetensors", task="denoise", levels=[{"sigma": 25}])
    ftn.save(ftn.attach(ftn.load(root / "base.safetensors"), "ftn"), root / "tuned.safetensors", task="denoise",
             levels=[{"sigma": 25}, {"sigma": 50}])
    (root / "runner.py").write_text(RUNNER)
    return {"root": root, "clean": root / "clean", "base": root / "base.safetensors", "tuned": root / "tuned.safetensors",
            "runner": root / "runner.py"}


def _argv(files: dict[str, Path], form: str, out: Path) -> list[str]:
    common = ["--data", str(files["clean"]), "--iters", str(STEPS), "--checkpoint-every", str(EVERY), "--batch-size", "2",
              "--patch-size", "16", "--no-progress", "--device", "cpu", "--no-calibrate", "-o", str(out)]
    if form == "tune":
        return ["tune", str(files["base"]), "--to", "noise:50", *common]
    return ["tune", "--base", str(files["tuned"]), "--add-anchor", "noise:75,unclipped", *common]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(files: dict[str, Path], argv: list[str], seconds: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(files["runner"]), str(seconds), *argv], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=1200)  # generous: a loaded machine starts torch slowly
    assert process.returncode == 0, err[-2000:]


@pytest.mark.parametrize("form", ["tune", "grow"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(files, tmp_path, form) -> None:
    straight = tmp_path / "straight.safetensors"
    _finish(_run(files, _argv(files, form, straight)))

    out = tmp_path / "killed.safetensors"
    ckpt = checkpoint_path(out)
    victim = _run(files, _argv(files, form, out), seconds=0.4)
    deadline = time.monotonic() + 1200
    step = 0
    while step < EVERY and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
        if ckpt.is_file():  # replaced atomically: a reader sees the old file or the new one
            step = read_checkpoint_info(ckpt)["step"]
    assert victim.poll() is None, "the run ended before it could be killed"
    assert step >= EVERY, "no checkpoint within the time allowed"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not out.exists()  # no tuned file until the run completes
    at_kill = read_checkpoint_info(ckpt)["step"]
    assert EVERY <= at_kill < STEPS and at_kill % EVERY == 0

    _finish(_run(files, [*_argv(files, form, out), "--resume"]))
    a, b = read_state_dict(straight), read_state_dict(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metadata(out)["tuned"]["iterations"] == STEPS
