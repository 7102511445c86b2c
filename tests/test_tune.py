"""``ftn tune`` (first version): level specs, each level form end to end, exact resume, refusals.

Tiny on purpose: an AdaFM-Net mini with 8 channels and 1 block (or a two-conv grey nn.Module), 16 px
patches, batches of 2, a few steps, images written to a temporary folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import ftn
from ftn.cli import main as cli_main
from ftn.io import read_metadata, read_state_dict
from ftn.levels import describe_levels, level_to_alpha
from ftn.models import MODELS_DIR
from ftn.train import read_checkpoint_info
from ftn.tuning import (
    BaseSpec,
    JpegSpec,
    NoiseSpec,
    PairsSpec,
    TeacherSpec,
    checkpoint_path,
    parse_spec,
    resolve_levels,
)
from ftn.tuning import data as data_module
from ftn.tuning.loop import tune

TINY = {"size": "mini", "channels": 8, "blocks": 1, "image_skip": True}
FAST = {"iters": 3, "batch_size": 2, "patch_size": 16, "progress": False, "device": "cpu"}


# -- specs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected", "name"), [
    ("noise:50", NoiseSpec(50.0, clip=True), "sigma 50"),
    ("noise:50,clip", NoiseSpec(50.0, clip=True), "sigma 50"),
    ("noise:25,unclipped", NoiseSpec(25.0, clip=False), "sigma 25"),
    (" NOISE:12.5 ", NoiseSpec(12.5), "sigma 12.5"),
    ("noise:0", NoiseSpec(0.0), "sigma 0"),
    ("jpeg:10", JpegSpec(10), "quality 10"),
    ("jpeg:100", JpegSpec(100), "quality 100"),
])
def test_parse_spec(text, expected, name) -> None:
    spec = parse_spec(text)
    assert spec == expected and spec.name == name


@pytest.mark.parametrize(("text", "match"), [
    ("noise", "expected noise:SIGMA"),
    ("noise:", "expected noise:SIGMA"),
    ("noise:abc", "sigma must be a number"),
    ("noise:nan", "finite"),
    ("noise:-5", ">= 0"),
    ("noise:50,blur", "clip"),
    ("noise:50,clip,unclipped", "clip"),
    ("jpeg:0", r"\[1, 100\]"),
    ("jpeg:101", r"\[1, 100\]"),
    ("jpeg:10.5", "whole number"),
    ("jpeg:10,clip", "no options"),
    ("blur:3", "unknown kind"),
    ("50", "expected noise:SIGMA"),
])
def test_parse_spec_refusals(text, match) -> None:
    with pytest.raises(ValueError, match=match):
        parse_spec(text)


def test_spec_tasks_and_metadata() -> None:
    assert NoiseSpec(50).task.options == {"clip": True, "quantize": True}  # photo-true by default
    assert NoiseSpec(50, clip=False).task.options == {}
    assert JpegSpec(10).task.name == "dejpeg"
    assert NoiseSpec(50).metadata() == {"sigma": 50}
    assert NoiseSpec(50, clip=False).record() == {"kind": "noise", "sigma": 50, "clip": False, "name": "sigma 50"}
    assert TeacherSpec("models/DnCNN-S-50.pth").name == "teacher DnCNN-S-50"
    assert PairsSpec("a/before", "a/after").name == "pairs after"
    assert BaseSpec().name == "base"


@pytest.mark.parametrize(("args", "expected"), [
    (("noise:25", "noise:50", None, None), (NoiseSpec(25.0), NoiseSpec(50.0))),
    ((None, "jpeg:10", None, None), (BaseSpec(), JpegSpec(10))),
    (("noise:25", None, "t.safetensors", None), (NoiseSpec(25.0), TeacherSpec("t.safetensors"))),
    ((None, None, None, ("in", "out")), (BaseSpec(), PairsSpec("in", "out"))),
    (("noise:25,unclipped", "noise:25", None, None), (NoiseSpec(25.0, clip=False), NoiseSpec(25.0))),
])
def test_resolve_levels(args, expected) -> None:
    assert resolve_levels(*args) == expected


@pytest.mark.parametrize(("args", "match"), [
    ((None, None, None, None), "exactly one of"),
    ((None, "noise:50", "t.safetensors", None), "exactly one of.*--to, --teacher"),
    (("jpeg:40", "noise:50", None, None), "different kinds"),
    (("noise:50", "noise:50", None, None), "same level"),
    (("noise:x", "noise:50", None, None), "sigma must be a number"),
])
def test_resolve_levels_refusals(args, match) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_levels(*args)


# -- end to end ------------------------------------------------------------------------------------

def _ramps(folder: Path, n: int, size: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = rng.random(3) * xx[..., None] + rng.random(3) * (1 - yy[..., None])
        a, b = rng.integers(0, size // 2, 2)
        img[a : a + size // 3, b : b + size // 3] = rng.random(3)
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Clean images, pairs (noisy -> clean), a tiny base and a teacher (another tiny net) as files."""
    root = tmp_path_factory.mktemp("tune")
    _ramps(root / "clean", 4, 40, 0)
    (root / "noisy").mkdir()
    rng = np.random.default_rng(1)
    for f in sorted((root / "clean").iterdir()):
        arr = np.asarray(Image.open(f)).astype(np.float64) + rng.normal(0, 20, (40, 40, 3))
        Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8)).save(root / "noisy" / f.name)
    torch.manual_seed(0)
    ftn.save(ftn.build_arch("adafm_net", **TINY), root / "base.safetensors", task="denoise", levels=[{"sigma": 25}])
    torch.manual_seed(1)
    ftn.save(ftn.build_arch("adafm_net", **TINY), root / "teacher.safetensors")
    _ramps(root / "seven", 7, 40, 2)  # enough to hold 2 out for the calibration
    torch.manual_seed(2)
    grey = ftn.build_arch("dncnn", size="mini", in_channels=1, out_channels=1, channels=8, depth=4)
    ftn.save(grey, root / "grey-dncnn.safetensors")
    return {k: root / k for k in ("clean", "noisy", "seven")} | {
        "base": root / "base.safetensors", "teacher": root / "teacher.safetensors", "root": root,
        "grey": root / "grey-dncnn.safetensors"}


def _probe(channels: int = 3) -> torch.Tensor:
    return torch.rand(1, channels, 24, 24, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("form", ["noise", "jpeg", "teacher", "pairs"])
def test_each_level_form_tunes_and_keeps_the_base_at_alpha_0(files, tmp_path, form) -> None:
    kwargs = {
        "noise": {"from_": "noise:25", "to": "noise:50", "data": files["clean"]},
        "jpeg": {"to": "jpeg:10", "data": files["clean"]},
        "teacher": {"from_": "noise:25", "teacher": files["teacher"], "data": files["clean"]},
        "pairs": {"pairs": (files["noisy"], files["clean"])},
    }[form]
    out = tune(files["base"], out=tmp_path / "tuned.safetensors", **kwargs, **FAST)
    assert out == tmp_path / "tuned.safetensors"
    base, model = ftn.load(files["base"]).eval(), ftn.load(out).eval()
    x = _probe()
    with torch.no_grad():
        assert torch.equal(model(x, alpha=0.0), base(x))
        assert not torch.allclose(model(x, alpha=1.0), base(x), atol=1e-6)
    meta = read_metadata(out)
    first = "base as trained" if form in ("jpeg", "pairs") else "sigma 25"
    second = {"noise": "sigma 50", "jpeg": "quality 10", "teacher": "teacher teacher", "pairs": "pairs clean"}[form]
    assert describe_levels(meta) == f"{first} ... {second}"  # what ftn run, ftn info and the app show
    assert meta["tuned"]["to"]["name"] == second
    assert meta["tuned"]["base"] == {"kind": "ftn", "file": "base.safetensors", "arch": "adafm_net",
                                     "arch_options": ftn.load(files["base"]).arch_options}
    assert meta["tuned"]["iterations"] == 3 and meta["tuned"]["method"] == "ftn"
    if form == "noise":  # two levels of one task: calibrated, on training images (4 < 6: none held out)
        assert meta["calibration"]["level_name"] == "sigma" and meta["calibration"]["levels"][::5] == [25, 50]
        assert meta["tuned"]["calibration"]["held_out"] is False and meta["tuned"]["held_out"] == []
        assert "training files" in meta["calibration"]["source"]
    else:  # the base's metadata (its calibration) is not carried over, and these ends have no numeric level
        assert "calibration" not in meta and meta["tuned"]["calibration"].startswith("none: ")
    assert meta.get("task") == {"noise": "denoise", "jpeg": "dejpeg"}.get(form)


class GreyNet(nn.Module):
    """A user's own grey network: not an ftn architecture."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(torch.relu(self.a(x)))


def test_a_users_grey_module_gets_grey_patches_and_loads_with_model(files, tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    net = GreyNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []
    original = data_module.SpecSource.batch

    def spy(self, step, batch_size, device):
        x, y = original(self, step, batch_size, device)
        seen.append(x.shape)
        return x, y

    monkeypatch.setattr(data_module.SpecSource, "batch", spy)
    out = ftn.tune(net, to="noise:30,unclipped", data=files["clean"], out=tmp_path / "grey.safetensors", **FAST)
    assert seen and all(s[1] == 1 for s in seen)  # colour files -> luma patches for a 1-channel base
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the caller's net is untouched
    model = ftn.load(out, model=GreyNet()).eval()
    x = _probe(1)
    with torch.no_grad():
        assert torch.equal(model(x, alpha=0.0), net(x))
    assert read_metadata(out)["tuned"]["base"] == {"kind": "module", "class": "GreyNet"}


def test_resume_is_bit_exact(files, tmp_path, monkeypatch) -> None:
    run = dict(FAST, iters=6, from_="noise:25", to="noise:50", data=files["clean"])
    straight = tune(files["base"], out=tmp_path / "straight.safetensors", checkpoint_every=2, **run)

    original = data_module.SpecSource.batch

    def ctrl_c_at_step_3(self, step, batch_size, device):
        if step == 3:  # steps 0-2 done: Ctrl-C during step 4 saves the state after step 3
            raise KeyboardInterrupt
        return original(self, step, batch_size, device)

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(data_module.SpecSource, "batch", ctrl_c_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        tune(files["base"], out=out, checkpoint_every=2, **run)
    monkeypatch.setattr(data_module.SpecSource, "batch", original)
    assert read_checkpoint_info(checkpoint_path(out))["step"] == 3 and not out.exists()
    with pytest.raises(ValueError, match="--resume"):
        tune(files["base"], out=out, checkpoint_every=2, **run)
    with pytest.raises(ValueError, match="lr"):
        tune(files["base"], out=out, resume=True, **dict(run, lr=1e-3))
    resumed = tune(files["base"], out=out, resume=True, checkpoint_every=2, **run)
    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metadata(resumed)["tuned"]["iterations"] == 6


def test_resume_keeps_the_sizes_chosen_from_free_memory(files, tmp_path, monkeypatch) -> None:
    from ftn.tuning import loop as loop_module

    run = {"iters": 4, "progress": False, "device": "cpu", "from_": "noise:25", "to": "noise:50", "data": files["clean"]}
    straight = tune(files["base"], out=tmp_path / "straight.safetensors", **run)
    sizes = read_metadata(straight)["tuned"]
    assert (sizes["batch_size"], sizes["patch_size"]) == (8, 32)  # the CPU's batch cap; no image under the patch
    original = data_module.SpecSource.batch

    def ctrl_c_at_step_2(self, step, batch_size, device):
        if step == 2:
            raise KeyboardInterrupt
        return original(self, step, batch_size, device)

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(data_module.SpecSource, "batch", ctrl_c_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        tune(files["base"], out=out, **run)
    monkeypatch.setattr(data_module.SpecSource, "batch", original)
    note = read_checkpoint_info(checkpoint_path(out))["config"]["sizes"]  # the free memory it saw (it varies)
    monkeypatch.setattr(loop_module, "free_memory", lambda device: (1000, "almost nothing"))  # memory has changed
    resumed = tune(files["base"], out=out, resume=True, **run)
    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    tuned = read_metadata(resumed)["tuned"]
    assert (tuned["batch_size"], tuned["patch_size"]) == (8, 32) and tuned["sizes"] == note  # how, too


def test_minutes_budget_stops(files, tmp_path, monkeypatch) -> None:
    from ftn.tuning import loop as loop_module

    clock = iter(range(10_000))
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: 30.0 * next(clock))  # 30 "s" per call
    kwargs = dict(FAST, iters=None, minutes=1.0)
    out = tune(files["base"], to="noise:50", data=files["clean"], out=tmp_path / "m.safetensors", **kwargs)
    assert 1 <= read_metadata(out)["tuned"]["iterations"] <= 3


# -- each level form through the command, then ftn run ---------------------------------------------

SMALL = ["--iters", "2", "--batch-size", "2", "--patch-size", "16", "--no-progress", "--device", "cpu"]

# form: (level arguments, --data?, sizes given?, ftn run's level arguments, (level name, alpha-0 level, alpha-1 level))
FORMS = {
    "noise clip": (["--from", "noise:25", "--to", "noise:50"], True, False, ["--level", "40"], ("sigma", 25, 50)),
    "noise unclipped": (["--from", "noise:15,unclipped", "--to", "noise:50,unclipped"], True, True, ["--level", "30"],
                        ("sigma", 15, 50)),
    "jpeg": (["--from", "jpeg:40", "--to", "jpeg:10"], True, True, ["--level", "20"], ("quality", 40, 10)),
    "teacher": (["--teacher", "TEACHER"], True, True, ["--alpha", "0.5"], None),
    "pairs": (["--pairs", "NOISY", "CLEAN"], False, True, ["--alpha", "0.5"], None),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_cli_each_level_form_makes_a_file_ftn_run_runs(files, tmp_path, capsys, form) -> None:
    levels, with_data, sized, run_args, calibrated = FORMS[form]
    names = {"TEACHER": files["teacher"], "NOISY": files["noisy"], "CLEAN": files["clean"]}
    levels = [str(names.get(a, a)) for a in levels]
    out = tmp_path / "tuned.safetensors"
    argv = ["tune", str(files["base"]), *levels, "-o", str(out), *(["--data", str(files["seven"])] if with_data else []),
            *(SMALL if sized else ["--iters", "2", "--no-progress", "--device", "cpu"])]
    assert cli_main(argv) == 0
    said = capsys.readouterr().out
    meta = read_metadata(out)
    if calibrated is None:
        assert "calibration" not in meta and "--alpha 0.5" in said
    else:
        name, first, last = calibrated
        calibration = meta["calibration"]
        assert calibration["level_name"] == name and "held-out files" in calibration["source"]
        assert sorted(calibration["levels"]) == calibration["levels"] and {first, last} == {calibration["levels"][0],
                                                                                            calibration["levels"][-1]}
        ordered = calibration["alphas"] if first < last else calibration["alphas"][::-1]  # from alpha-0's level on
        assert ordered == sorted(ordered), calibration  # monotone: a level nearer level 2 never gets a smaller alpha
        assert meta["tuned"]["held_out"] == ["01.png", "04.png"] == meta["tuned"]["calibration"]["images"]
        assert meta["tuned"]["calibration"]["held_out"] is True and "--level" in said
    if not sized:  # chosen from free memory: the CPU's caps, the patch no larger than the 40 px images
        assert (meta["tuned"]["batch_size"], meta["tuned"]["patch_size"]) == (8, 32)
        assert meta["tuned"]["sizes"].startswith("chosen from")
    image = files["clean"] / "00.png"
    result = tmp_path / "result.png"
    assert cli_main(["run", "-i", str(image), "-o", str(result), "--model", str(out), *run_args]) == 0
    assert Image.open(result).size == Image.open(image).size
    if calibrated is None:  # no level to ask for: one line that says to use --alpha
        code = cli_main(["run", "-i", str(image), "-o", str(tmp_path / "no.png"), "--model", str(out), "--level", "40"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and "--alpha" in err and not (tmp_path / "no.png").exists()


def test_held_out_images_never_give_training_patches(files, tmp_path, monkeypatch) -> None:
    seen: list[list[str]] = []
    original = data_module._sampler

    def spy(*args, **kwargs):
        sampler = original(*args, **kwargs)
        seen.append(list(sampler.names))
        return sampler

    monkeypatch.setattr(data_module, "_sampler", spy)
    out = tune(files["base"], from_="noise:25", to="noise:50", data=files["seven"], out=tmp_path / "t.safetensors", **FAST)
    assert seen == [["00.png", "02.png", "03.png", "05.png", "06.png"]]
    assert read_metadata(out)["tuned"]["held_out"] == ["01.png", "04.png"]
    seen.clear()
    out = tune(files["base"], from_="noise:25", to="noise:50", data=files["seven"], out=tmp_path / "n.safetensors",
               calibrate=False, **FAST)
    meta = read_metadata(out)
    assert len(seen[0]) == 7 and "calibration" not in meta and meta["tuned"]["calibration"].startswith("none (--no-calibrate)")


# -- a tuned file through the product: ftn run, ftn info, ftn export, the app -----------------------

@pytest.mark.parametrize("base", ["grey", "base"])  # a grey DnCNN (1 channel, BatchNorm) and an RGB AdaFM-Net mini
def test_a_tuned_file_through_run_info_export_and_the_app(files, tmp_path, capsys, base) -> None:
    out = tmp_path / "tuned.safetensors"
    assert cli_main(["tune", str(files[base]), "--from", "noise:25,unclipped", "--to", "noise:50,unclipped", "--data",
                     str(files["seven"]), "-o", str(out), *SMALL]) == 0
    model = ftn.load(out).eval()
    meta = read_metadata(out)
    image = files["clean"] / "00.png"  # RGB: a grey model runs it one channel at a time
    assert cli_main(["run", "-i", str(image), "-o", str(tmp_path / "r.png"), "--model", str(out), "--level", "40"]) == 0
    capsys.readouterr()

    assert cli_main(["info", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {"base", "from", "to", "method", "iterations", "calibration", "held_out", "sizes"} <= set(shown["tuned"])
    assert shown["calibration"]["level_name"] == "sigma" and shown["levels"] == [{"sigma": 25}, {"sigma": 50}]

    x = torch.rand(1, model.image_channels, 24, 24, generator=torch.Generator().manual_seed(3))
    alpha40, _ = level_to_alpha(meta, 40)
    for args, alpha in ((["--alpha", "0.5"], 0.5), (["--level", "40"], alpha40)):
        plain_path = tmp_path / f"plain-{args[0][2:]}.safetensors"
        assert cli_main(["export", "--model", str(out), *args, "-o", str(plain_path)]) == 0
        plain = ftn.load(plain_path).eval()
        with torch.no_grad():
            assert torch.allclose(plain(x), model(x, alpha=alpha), atol=1e-5)
    assert cli_main(["export", "--model", str(out), "-o", str(tmp_path / "t.onnx")]) == 0, capsys.readouterr().err

    pytest.importorskip("gradio")
    from ftn.app.controls import end_labels
    from ftn.app.engine import ModelCache, auto_alpha, run_model

    served = ModelCache().get(str(out))
    assert end_labels(served.metadata) == ("sigma 25", "sigma 50")
    rgb = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(4))
    got = run_model(served, rgb, alpha40)
    assert got.shape == rgb.shape and torch.isfinite(got).all()
    alpha, line = auto_alpha(served.metadata, rgb, None)  # the calibration serves the app's "Auto level"
    assert 0.0 <= alpha <= 1.0 and "sigma" in line


# -- the command and its refusals ------------------------------------------------------------------

def test_cli_tunes(files, tmp_path, capsys) -> None:
    out = tmp_path / "cli.safetensors"
    code = cli_main(["tune", str(files["base"]), "--from", "noise:25", "--to", "noise:50", "--data",
                     str(files["clean"]), "-o", str(out), "--iters", "2", "--batch-size", "2", "--patch-size", "16",
                     "--groups", "2", "--no-progress", "--device", "cpu"])
    assert code == 0 and "tuned model" in capsys.readouterr().out
    assert read_metadata(out)["method_options"]["groups"] == 2


def _hostile_cases(files: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], str]]:
    base = str(files["base"])
    common = ["--iters", "2", "--batch-size", "2", "--patch-size", "16", "--no-progress"]
    (tmp / "in").mkdir()
    (tmp / "tgt").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (32, 32)).save(tmp / "in" / f"{name}.png")
    Image.new("RGB", (32, 32)).save(tmp / "tgt" / "a.png")
    Image.new("RGB", (32, 32)).save(tmp / "tgt" / "c.png")
    (tmp / "in2").mkdir()
    (tmp / "tgt2").mkdir()
    Image.new("RGB", (32, 32)).save(tmp / "in2" / "a.png")
    Image.new("RGB", (48, 32)).save(tmp / "tgt2" / "a.png")
    ftn.save(ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, out_channels=1), tmp / "one.safetensors")
    (tmp / "junk.pth").write_bytes(b"not a checkpoint at all")
    (tmp / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(300))
    (tmp / "empty.pth").write_bytes(b"")
    (tmp / "empty").mkdir()
    data = ["--data", str(files["clean"])]
    return {
        "missing data": ([base, "--to", "noise:50"] + common, "--data"),
        "data folder absent": ([base, "--to", "noise:50", "--data", str(tmp / "nowhere")] + common, "no folder"),
        "pairs unmatched": ([base, "--pairs", str(tmp / "in"), str(tmp / "tgt")] + common, "without a partner in the other folder: b, c"),
        "pairs sizes": ([base, "--pairs", str(tmp / "in2"), str(tmp / "tgt2")] + common, r"differ in size: a \(32x32 vs 48x32\)"),
        "teacher shape": ([base, "--teacher", str(tmp / "one.safetensors"), "--data", str(files["clean"])] + common,
                          "teacher gives"),
        "unreadable base": ([str(tmp / "junk.pth"), "--to", "noise:50", "--data", str(files["clean"])] + common,
                            "refused to load"),
        "no base": ([str(tmp / "absent.pth"), "--to", "noise:50", "--data", str(files["clean"])] + common, "no model file"),
        "bad spec": ([base, "--to", "noise:loud", "--data", str(files["clean"])] + common, "sigma must be a number"),
        "no level 2": ([base, "--data", str(files["clean"])] + common, "exactly one of"),
        "resume nothing": ([base, "--to", "noise:50", "--data", str(files["clean"]), "--resume"] + common, "cannot resume"),
        "tuned base": ([str(files["root"] / "tuned-base.safetensors"), "--to", "noise:50", "--data",
                        str(files["clean"])] + common, "already has method"),
        "data with pairs": ([base, "--pairs", str(files["noisy"]), str(files["clean"]), "--data", str(files["clean"])]
                            + common, "--data is not used with --pairs"),
        "zero iters": ([base, "--to", "noise:50", "--data", str(files["clean"]), "--iters", "0",
                        "--no-progress"], "iters must be a positive"),
        "negative iters": ([base, "--to", "noise:50", *data, "--iters", "-1", "--no-progress"], "iters must be a positive"),
        "nan iters": ([base, "--to", "noise:50", *data, "--iters", "nan", "--no-progress"], "--iters needs a whole number"),
        "nan minutes": ([base, "--to", "noise:50", *data, "--minutes", "nan", "--no-progress"], "minutes must be a positive"),
        "iters and minutes": ([base, "--to", "noise:50", *data, "--iters", "2", "--minutes", "1"], "not both"),
        "zero batch": ([base, "--to", "noise:50", *data, "--batch-size", "0"], "batch_size must be a positive"),
        "negative hold-out": ([base, "--from", "noise:25", "--to", "noise:50", *data, "--hold-out", "-1"] + common,
                              "held-out images must be a whole number >= 0"),
        "empty data folder": ([base, "--to", "noise:50", "--data", str(tmp / "empty")] + common, "--to sigma 50: no images in"),
        "empty pairs folder": ([base, "--pairs", str(tmp / "empty"), str(tmp / "tgt")] + common, "--pairs: no images in"),
        "random bytes base": ([str(tmp / "random.safetensors"), "--to", "noise:50", *data] + common, "not a safetensors file"),
        "empty base file": ([str(tmp / "empty.pth"), "--to", "noise:50", *data] + common, "refused to load"),
        "not safetensors": ([base, "--to", "noise:50", *data, "-o", str(tmp / "out" / "tuned.pth")] + common,
                            "must be a .safetensors file"),
        "no output": ([base, "--to", "noise:50", *data] + common, "-o OUT"),
        "no base given": (["--to", "noise:50", *data] + common, "give the base"),
        "base given twice": ([base, "--base", base, "--to", "noise:50", *data] + common, "give the base once"),
        "output among the shipped models": ([base, "--to", "noise:50", *data, "-o", str(MODELS_DIR / "t.safetensors")]
                                            + common, "shipped with ftn"),
        "zero checkpoint steps": ([base, "--to", "noise:50", *data, "--checkpoint-every", "0"] + common,
                                  "checkpoint_every must be a positive"),
        "patch over every image": ([base, "--to", "noise:50", *data, "--iters", "2", "--patch-size", "64", "--no-progress"],
                                   "no image in .*clean is at least 64x64 pixels"),
    }


def test_hostile_inputs_stop_with_one_line_and_write_nothing(files, tmp_path, capsys) -> None:
    ftn.save(ftn.attach(ftn.load(files["base"]), "ftn"), files["root"] / "tuned-base.safetensors")
    cases = _hostile_cases(files, tmp_path)
    for name, (argv, match) in cases.items():
        out = tmp_path / "out" / f"{name.replace(' ', '-')}.safetensors"
        out.parent.mkdir(exist_ok=True)
        code = cli_main(["tune", *argv, *([] if "-o" in argv or name == "no output" else ["-o", str(out)])])
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert err.count("\n") == 0 and err.startswith("ftn tune: error: "), (name, err)
        assert re.search(match, err), (name, err)
        assert list(out.parent.iterdir()) == [], (name, list(out.parent.iterdir()))


@pytest.mark.parametrize(("which", "base_name", "out_name", "message"), [
    ("base", "b.safetensors", "b.safetensors", "the output {out} is the base file itself"),
    ("teacher", "b.safetensors", "t.safetensors", "the output {out} is the teacher file itself"),
    ("checkpoint", "b.checkpoint.safetensors", "b.safetensors", "the output's checkpoint {ckpt} would be the base file"),
])
def test_the_output_never_overwrites_an_input(files, tmp_path, capsys, which, base_name, out_name, message) -> None:
    base, teacher, out = tmp_path / base_name, tmp_path / "t.safetensors", tmp_path / out_name
    base.write_bytes(files["base"].read_bytes())
    teacher.write_bytes(files["teacher"].read_bytes())
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    code = cli_main(["tune", str(base), "--teacher", str(teacher), "--data", str(files["clean"]), "-o", str(out)] + SMALL)
    err = capsys.readouterr().err.strip()
    expected = message.format(out=out, ckpt=checkpoint_path(out))
    assert code == 2 and err == f"ftn tune: error: {expected}; write the tuned model to another file"
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before


def test_a_base_not_reproduced_at_alpha_0_is_refused(files, tmp_path, monkeypatch) -> None:
    from ftn.tuning import loop as loop_module

    def drifting_attach(network, method, **options):
        model = ftn.attach(network, method, **options)
        with torch.no_grad():
            model.base_parameters()[0].add_(1e-3)  # as a method whose alpha 0 drifts from the base would
        return model

    monkeypatch.setattr(loop_module, "attach", drifting_attach)
    with pytest.raises(ValueError, match="does not reproduce this base exactly"):
        tune(files["base"], to="noise:50", data=files["clean"], out=tmp_path / "x.safetensors", **FAST)
    assert list(tmp_path.iterdir()) == []


def test_import_ftn_stays_light_and_ftn_tune_is_callable() -> None:
    import subprocess
    import sys

    code = ("import sys, ftn; assert 'ftn.tuning' not in sys.modules and 'PIL' not in sys.modules; "
            "assert callable(ftn.tune) and ftn.tune.__module__ == 'ftn.tuning.loop'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ctrl_c_saves_a_checkpoint_and_exits_130(files, tmp_path, monkeypatch, capsys) -> None:
    original = data_module.PairsSource.batch

    def ctrl_c_at_step_2(self, step, batch_size, device):
        if step == 2:
            raise KeyboardInterrupt
        return original(self, step, batch_size, device)

    monkeypatch.setattr(data_module.PairsSource, "batch", ctrl_c_at_step_2)
    out = tmp_path / "p.safetensors"
    argv = ["tune", str(files["base"]), "--pairs", str(files["noisy"]), str(files["clean"]), "-o", str(out),
            "--iters", "5", "--batch-size", "2", "--patch-size", "16", "--no-progress"]
    assert cli_main(argv) == 130
    assert "--resume" in capsys.readouterr().err
    assert read_checkpoint_info(checkpoint_path(out))["step"] == 2 and not out.exists()
    monkeypatch.setattr(data_module.PairsSource, "batch", original)
    assert cli_main([*argv, "--resume"]) == 0 and read_metadata(out)["tuned"]["iterations"] == 5


def test_sizes_for_a_gpu_are_chosen_on_the_cpu_copy_of_the_model(monkeypatch) -> None:
    """The sizes are chosen before the model moves to the device: the activation count runs on the CPU,
    only the free memory is the device's (no GPU needed to check the rule's wiring)."""
    from ftn.tuning import loop as loop_module

    monkeypatch.setattr(loop_module, "free_memory", lambda device: (64 << 30, f"free {device.type} memory"))
    model = ftn.attach(GreyNet(), "ftn")
    probe = torch.rand(1, 1, 32, 32)
    batch, patch, note = loop_module._sizes(model, probe, torch.device("cuda"), None, None, None, None)
    assert (batch, patch) == (16, 96) and "free cuda memory" in note
    assert loop_module._sizes(model, probe, torch.device("cuda"), None, None, None, 50)[:2] == (16, 48)
    assert loop_module._sizes(model, probe, torch.device("cuda"), None, None, {"batch_size": 3, "patch_size": 40},
                              None) == (3, 40, "as given or as the checkpoint's")
