"""The perceptual tasks (issue [4/6]): super-resolution whose level is the objective, style transfer,
their objectives inside the one trainer (GAN state resumes exactly), and per-pixel control of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.data.datasets import EvalSet, PatchSampler
from ftn.imageops import imresize
from ftn.io import read_state_dict
from ftn.tasks import PixelObjective, get_task
from ftn.train.checkpoint import load_checkpoint, save_checkpoint
from ftn.train.config import TrainConfig
from ftn.train.loop import train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VGG = SHARED / "weights" / "vgg16_imagenet_features_caffe.safetensors"
needs_vgg = pytest.mark.skipif(not VGG.is_file(), reason=f"needs the VGG16 weights of ../shared ({VGG})")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    out = tmp_path / "images"
    out.mkdir()
    for i, (h, w) in enumerate([(70, 90), (66, 66)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(out / f"img{i}.png")
    return out


# -- the tasks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "levels", "label0", "label1"),
    [
        ("sr", {}, (0.0, 1.0), "L1 (distortion)", "L1+VGG+GAN (perception)"),
        ("style", {"styles": ["mosaic", "candy"]}, (0.0, 1.0), "style mosaic", "style candy"),
        ("style-strength", {"style": "udnie", "levels": [100, 1000]}, (100.0, 1000.0), "udnie x100", "udnie x1000"),
    ],
)
def test_task_levels_and_labels(name, options, levels, label0, label1) -> None:
    task = get_task(name, **options)
    assert tuple(task.default_levels) == levels
    assert (task.label(levels[0]), task.label(levels[1])) == (label0, label1)
    assert get_task(task.name, **task.options) == task


@pytest.mark.parametrize(("name", "level", "match"), [
    ("sr", 1.5, r"perception level must be in \[0, 1\]"),
    ("sr", float("nan"), "finite"),
    ("style", 0.5, "Use alpha for the styles between"),
    ("style-strength", -1, "style weight must be >= 0"),
])
def test_bad_levels(name, level, match) -> None:
    with pytest.raises(ValueError, match=match):
        get_task(name).check_level(level)


def test_sr_degrade_is_matlab_bicubic_of_the_modcropped_image() -> None:
    task = get_task("sr", scale=4)
    clean = torch.rand(3, 35, 42)
    low = task.degrade(clean, 0)
    assert low.shape == (3, 8, 10)
    assert torch.allclose(low, imresize(clean[:, :32, :40], 0.25))
    assert task.prepare(clean).shape == (3, 32, 40)
    assert torch.equal(task.degrade(clean, 0), task.degrade(clean, 1))  # the level is the objective, not the input


def test_sr_sampler_and_eval_set(folder: Path) -> None:
    task = get_task("sr", scale=4)
    sampler = PatchSampler(folder, task, 1, patch_size=32)
    low, high = sampler.batch(0, 3)
    assert low.shape == (3, 3, 8, 8) and high.shape == (3, 3, 32, 32)
    name, low, high = EvalSet(folder, task, 0)[0]
    assert high.shape == (3, 68, 88) and low.shape == (3, 17, 22)


def test_style_input_is_the_content_and_restoration_objective_is_pixel() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(get_task("style").degrade(x, 0), x)
    objective = get_task("denoise").objective(20, pixel_loss="l2")
    assert isinstance(objective, PixelObjective)
    loss, parts = objective(x, torch.zeros_like(x))
    assert torch.isclose(loss, (x**2).mean()) and parts == {}


def test_style_training_refuses_psnr_validation(folder: Path, tmp_path: Path) -> None:
    config = TrainConfig(name="s", out_dir=str(tmp_path / "s"), task="style", level=0, arch="transform_net",
                         arch_options={"size": "mini"}, train_data=str(folder), val_data=str(folder), iterations=1)
    with pytest.raises(ValueError, match="no reference output"):
        train(config, progress=False)


def test_missing_style_image_says_what_to_do(tmp_path, monkeypatch) -> None:
    from ftn.tasks.style import find_style

    monkeypatch.setenv("FTN_STYLES", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="FTN_STYLES"):
        find_style("no-such-style")


# -- objectives ------------------------------------------------------------------------------------


@needs_vgg
def test_sr_gan_objective_trains_only_its_discriminator_in_update() -> None:
    torch.manual_seed(0)
    objective = get_task("sr", discriminator="mini").objective(1, patch_size=32)
    out = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32)
    before = {k: v.detach().clone() for k, v in objective.discriminator.named_parameters()}
    loss, parts = objective(out, target)
    loss.backward()
    assert out.grad is not None and set(parts) == {"pixel", "perceptual", "gan_g"}
    assert all(p.grad is None for p in objective.discriminator.parameters())  # the generator step leaves D alone
    # (its batch-norm statistics move in both steps, as in ESRGAN; its weights only in update)
    assert all(torch.equal(before[k], v) for k, v in objective.discriminator.named_parameters())
    assert set(objective.update(out.detach(), target)) == {"gan_d"}
    assert any(not torch.equal(before[k], v) for k, v in objective.discriminator.named_parameters())
    with pytest.raises(ValueError, match="multiple of 32"):
        get_task("sr").objective(1, patch_size=48)


@needs_vgg
def test_style_objective_is_content_free_on_the_content_itself() -> None:
    objective = get_task("style", style_size=32).objective(0)
    x = torch.rand(1, 3, 32, 32)
    loss, parts = objective(x, x)
    assert parts["content"] == 0.0 and parts["style"] > 0
    assert torch.isclose(loss, torch.tensor(objective.style_weight * parts["style"]), rtol=1e-5)


def test_checkpoint_keeps_nested_objective_state(tmp_path: Path) -> None:
    net = torch.nn.Conv2d(3, 3, 1)
    d = torch.nn.Linear(4, 1)
    d_opt = torch.optim.Adam(d.parameters(), lr=0.1)
    d(torch.rand(2, 4)).sum().backward()
    d_opt.step()
    opt = torch.optim.Adam(net.parameters())
    state = {"discriminator": d.state_dict(), "d_optimizer": d_opt.state_dict()}
    save_checkpoint(tmp_path / "c.safetensors", model=net, optimizer=opt, scheduler=None, step=3, elapsed_s=1.0,
                    config={}, objective_state=state)
    info = load_checkpoint(tmp_path / "c.safetensors", torch.nn.Conv2d(3, 3, 1), restore_rng=False)
    got = info["objective_state"]
    assert all(torch.equal(got["discriminator"][k], v) for k, v in d.state_dict().items())
    d2 = torch.nn.Linear(4, 1)
    opt2 = torch.optim.Adam(d2.parameters(), lr=0.5)
    opt2.load_state_dict(got["d_optimizer"])  # int keys and tensors back in place
    assert opt2.param_groups[0]["lr"] == 0.1
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], d_opt.state_dict()["state"][0]["exp_avg"])


# -- the trainer: one code path, exact resume with a GAN ------------------------------------------------


def _sr_config(folder: Path, out: Path, stage: str, **kw) -> TrainConfig:
    common = dict(train_data=str(folder), val_data=None, batch_size=2, patch_size=32, iterations=4,
                  checkpoint_every=2, log_every=1, device="cpu", threads=1, task="sr",
                  task_options={"discriminator": "mini"}, name=out.name, out_dir=str(out), stage=stage)
    if stage == "base":
        common.update(level=0, arch="rrdbnet", arch_options={"size": "mini", "blocks": 1, "channels": 8, "growth": 8})
    return TrainConfig(**{**common, **kw})


@needs_vgg
def test_gan_stage_resumes_exactly(folder: Path, tmp_path: Path, monkeypatch) -> None:
    from ftn.train import loop as loop_module

    base = train(_sr_config(folder, tmp_path / "base", "base", iterations=2), progress=False)
    tuner = dict(level=1, base=str(base), method="ftn", method_options={"groups": 4})
    straight = train(_sr_config(folder, tmp_path / "straight", "tuner", **tuner), progress=False)

    original = loop_module.next_batch

    def stop_at_step_3(sampler, step, config, procs):
        if step == 2:
            raise KeyboardInterrupt
        return original(sampler, step, config, procs)

    monkeypatch.setattr(loop_module, "next_batch", stop_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(_sr_config(folder, tmp_path / "resumed", "tuner", **tuner), progress=False)
    monkeypatch.setattr(loop_module, "next_batch", original)
    resumed = train(_sr_config(folder, tmp_path / "resumed", "tuner", **tuner), resume=True, progress=False)
    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "resumed" / "log.csv").read_text()
    assert "gan_d=" in log and "perceptual=" in log


# -- per-pixel control ---------------------------------------------------------------------------------


def test_per_pixel_sr_constant_map_equals_global_alpha_through_the_cli(tmp_path: Path) -> None:
    from ftn.cli import main as ftn_main
    from ftn.data.images import load_image

    torch.manual_seed(0)
    net = ftn.build_arch("rrdbnet", size="mini", blocks=1, channels=8, growth=8)
    model = ftn.attach(net, "ftn", groups=4)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "sr.safetensors"
    ftn.save(model, path, task="sr", task_options={}, levels=[{"perception": 0}, {"perception": 1}])
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(np.full((12, 16), 153, dtype=np.uint8)).save(tmp_path / "flat.png")  # 153 / 255 = 0.6
    Image.fromarray(np.tile(np.linspace(0, 255, 16).astype(np.uint8), (12, 1))).save(tmp_path / "ramp.png")
    common = ["run", "-i", str(tmp_path / "in.png"), "--model", str(path), "--device", "cpu"]
    assert ftn_main([*common, "-o", str(tmp_path / "map.png"), "--alpha-map", str(tmp_path / "flat.png")]) == 0
    assert ftn_main([*common, "-o", str(tmp_path / "scalar.png"), "--alpha", "0.6"]) == 0
    assert ftn_main([*common, "-o", str(tmp_path / "ramp-out.png"), "--alpha-map", str(tmp_path / "ramp.png")]) == 0
    by_map, by_scalar = load_image(tmp_path / "map.png").image, load_image(tmp_path / "scalar.png").image
    assert by_map.shape == (3, 48, 64)
    # Eq. 3 with a constant map and Eq. 1 differ only by float rounding: at most one 8-bit step
    assert (by_map - by_scalar).abs().max() <= 1 / 255 + 1e-6
    image = load_image(tmp_path / "in.png").image
    exact_map = ftn.infer.apply.apply_model(model, image, alpha=torch.full((12, 16), 0.6))
    exact_scalar = ftn.infer.apply.apply_model(model, image, alpha=0.6)
    assert torch.allclose(exact_map, exact_scalar, atol=1e-5)
    assert not torch.equal(load_image(tmp_path / "ramp-out.png").image, by_scalar)
