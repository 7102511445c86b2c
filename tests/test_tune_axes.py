"""``ftn tune --add-anchor`` / ``--new-axis``: a tunable model grows by one tuner, the rest frozen.

Tiny on purpose: AdaFM-Net minis (8 channels, 1 block) whose tuners are moved away from the identity
(so every old tuner matters), 7 ramp images of 40 px (2 held out for the calibration), 16 px patches,
2 steps. Each case checks: the old settings give the old outputs bit for bit (numbers; maps too where
the base is multi-axis), only the new tuner's tensors are new, the new part trained, ``ftn info`` names
it and ``ftn run --level`` reaches it. Refusals: one line, exit 2, nothing written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.axes_io import load_axes
from ftn.cli import main as cli_main
from ftn.data.images import load_image
from ftn.io import read_metadata, read_state_dict
from ftn.levels import parse_setting
from ftn.methods.axes import AxesModel, AxisSpec, attach_axes
from ftn.models import MODELS_DIR
from ftn.tuning import checkpoint_path
from ftn.tuning import data as data_module
from ftn.tuning.grow import as_axes, old_settings
from ftn.tuning.loop import tune

FAST = {"iters": 2, "batch_size": 2, "patch_size": 16, "progress": False, "device": "cpu"}
SMALL = ["--iters", "2", "--batch-size", "2", "--patch-size", "16", "--no-progress", "--device", "cpu"]


def _net() -> torch.nn.Module:
    return ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # tuners away from the identity: every old tuner matters
        for p in model.tuner_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("grow")
    (root / "clean").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40] / 40
    for i in range(7):
        img = rng.random(3) * xx[..., None] + rng.random(3) * (1 - yy[..., None])
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / "clean" / f"{i:02d}.png")
    Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(root / "in.png")
    paths = {name: root / f"{name}.safetensors" for name in ("ftn1", "dni1", "axes2", "adafm1", "plain", "teacher1")}
    torch.manual_seed(0)
    ftn.save(_perturb(ftn.attach(_net(), "ftn", groups=4), 1), paths["ftn1"], task="denoise", task_options={},
             levels=[{"sigma": 25}, {"sigma": 50}],
             calibration={"level_name": "sigma", "levels": [25, 40, 50], "alphas": [0.0, 0.6, 1.0]})
    torch.manual_seed(1)
    ftn.save(_perturb(ftn.attach(_net(), "dni"), 2), paths["dni1"], task="dejpeg", levels=[{"quality": 40}, {"quality": 10}])
    torch.manual_seed(2)
    axes2 = attach_axes(_net(), "ftn", [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", 2, levels=(90, 10))],
                        corners=[{"sigma": 1, "quality": 1}], groups=4)
    axes2.metadata = axes2.levels.replace_in({"task": "restore"})
    ftn.save(_perturb(axes2, 3), paths["axes2"])
    ftn.save(ftn.attach(_net(), "adafm"), paths["adafm1"], task="denoise", levels=[{"sigma": 25}, {"sigma": 50}])
    ftn.save(_net(), paths["plain"], task="denoise", levels=[{"sigma": 25}])
    ftn.save(_perturb(ftn.attach(_net(), "ftn"), 4), paths["teacher1"], levels=[{"base": "as trained"}, {"teacher": "t"}])
    paths["clean"], paths["in"], paths["root"] = root / "clean", root / "in.png", root
    return paths


# case: (base, tune arguments, calibrate, the axis trained, its anchors after, anchor levels after)
CASES = {
    "ftn anchor": ("ftn1", {"axis": "sigma", "add_anchor": "noise:75,unclipped"}, True, "sigma", 3, (25, 50, 75)),
    "ftn anchor from base": ("ftn1", {"add_anchor": "noise:75,unclipped", "chain": False}, False, "sigma", 3, (25, 50, 75)),
    "ftn new axis": ("ftn1", {"new_axis": "quality", "to": "jpeg:40"}, True, "quality", 2, (100, 40)),
    "dni anchor, falling axis": ("dni1", {"axis": "quality", "add_anchor": "jpeg:5"}, False, "quality", 3, (40, 10, 5)),
    "multi-axis anchor, corner": ("axes2", {"axis": "sigma", "add_anchor": "noise:75"}, False, "sigma", 4, (5, 25, 50, 75)),
    "multi-axis new axis": ("axes2", {"new_axis": "chroma", "to": "noise:30", "from_": "noise:5"}, False, "chroma", 2, (5, 30)),
}


def _settings_with_maps(model: AxesModel, size: tuple[int, int]) -> list[dict]:
    gen = torch.Generator().manual_seed(5)
    return [{a.name: a.segments * torch.rand(1, 1, *size, generator=gen) for a in model.axes}]


@pytest.mark.parametrize("case", list(CASES))
def test_growing_keeps_every_old_setting_and_trains_the_new_tuner(files, tmp_path, capsys, case) -> None:
    base, kwargs, calibrate, axis, anchors, levels = CASES[case]
    out = tune(files[base], data=files["clean"], out=tmp_path / "grown.safetensors", calibrate=calibrate, **kwargs, **FAST)
    old = ftn.load(files[base]).eval()
    grown = ftn.load(out).eval()
    assert isinstance(grown, AxesModel) and grown.axis(axis).anchors == anchors
    assert grown.axis(axis).levels == tuple(float(v) for v in levels)
    before = as_axes(ftn.load(files[base]), chained=kwargs.get("chain"))
    assert grown.method == before.method and grown.corners == before.corners
    # Only the new tuner is new: every tensor the base had is in the file unchanged.
    theirs, ours = before.model.state_dict(), read_state_dict(out)
    new_keys = sorted(set(ours) - set(theirs))
    assert set(theirs) <= set(ours) and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert new_keys and all(f"tuners.{axis}.{anchors - 1}." in k for k in new_keys)
    # Every setting the base had gives its output bit for bit; maps too (against the same code path).
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for setting in old_settings(before.axes):
            want = old(x, alpha=setting) if isinstance(old, AxesModel) else old(x, alpha=next(iter(setting.values()), 0.0))
            assert torch.equal(grown(x, alpha=setting), want), setting
        for setting in _settings_with_maps(before, (20, 24)):
            assert torch.equal(grown(x, alpha=setting), before(x, alpha=setting))
        # The new anchor (or axis) trained: it no longer gives its starting point's output.
        point = {axis: float(anchors - 1)}
        start = {axis: float(anchors - 2)} if anchors > 2 else {}
        assert not torch.equal(grown(x, alpha=point), grown(x, alpha=start))
    meta = read_metadata(out)
    assert meta["tuned"]["grow"] and meta["tuned"]["axes"][axis]["kind"] in ("noise", "jpeg")
    calibration = grown.levels.axis(axis).calibration
    if calibrate:
        assert calibration is not None and max(calibration.alphas) <= anchors - 1
        if case == "ftn anchor":  # the old calibration keeps every level it covered
            kept = dict(zip(calibration.levels, calibration.alphas, strict=True))
            assert {25.0: 0.0, 40.0: 0.6, 50.0: 1.0}.items() <= kept.items()
            assert all(a >= 1.0 for v, a in kept.items() if v > 50)
            assert calibration.source.startswith("sigma 25 ... 50: the calibration the base had; sigma 50 ... 75: ")
            # grown once more, the source reads segment after segment, not nested in the new span
            again = tune(out, data=files["clean"], out=tmp_path / "again.safetensors", calibrate=True, axis="sigma",
                         add_anchor="noise:100,unclipped", **FAST)
            source = ftn.load(again).levels.axis("sigma").calibration.source
            assert source.startswith(calibration.source + "; sigma 75 ... 100: "), source
    elif case == "ftn anchor from base":  # not measured: the base's calibration, then linear to the new anchor
        assert dict(zip(calibration.levels, calibration.alphas, strict=True)) == {25.0: 0.0, 40.0: 0.6, 50.0: 1.0, 75.0: 2.0}
    # ftn info names the new anchor or axis; ftn run --level reaches it.
    assert cli_main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert re.search(rf"{axis}: {anchors} anchors \(alpha 0 = {axis} {levels[0]:g}.* = {axis} {levels[-1]:g}\)", info), info
    words = ",".join(f"{a.name}={a.levels[-1] if a.name == axis else a.levels[0]:g}" for a in grown.axes)
    png = tmp_path / "out.png"
    assert cli_main(["run", "-i", str(files["in"]), "-o", str(png), "--model", str(out), "--level", words]) == 0
    capsys.readouterr()
    asked = parse_setting([(a.name, a.segments) for a in grown.axes], grown.levels, level=words)
    assert asked[axis].alpha > anchors - 2  # the level reaches the new segment
    with torch.no_grad():
        want = grown(load_image(files["in"]).image[None], alpha={n: v.alpha for n, v in asked.items()})[0].clamp(0, 1)
    assert (load_image(png).image - want).abs().max() <= 1 / 255 + 1e-6


def test_new_axis_at_0_is_the_old_model_and_anchor_0_means_none(files, tmp_path) -> None:
    out = tune(files["ftn1"], new_axis="quality", to="jpeg:40", data=files["clean"], out=tmp_path / "q.safetensors",
               calibrate=False, **FAST)
    old, grown = ftn.load(files["ftn1"]).eval(), ftn.load(out).eval()
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a in (0.0, 0.3, 1.0):
            assert torch.equal(grown(x, alpha={"sigma": a, "quality": 0.0}), old(x, alpha=a))
    meta = read_metadata(out)
    assert "task" not in meta  # noise x JPEG is no longer one task
    assert meta["tuned"]["context"] == [{"kind": "noise", "sigma": 25, "clip": False, "name": "sigma 25"}]


def test_training_patches_carry_the_other_axes_anchor_0(files) -> None:
    """At (sigma 0, quality 1) of a sigma 25 denoiser the input is noisy at sigma 25 and then a JPEG at 40."""
    from ftn.tuning.specs import JpegSpec, NoiseSpec

    plain = data_module.SpecSource(JpegSpec(40), files["clean"], patch_size=16, grey=False, seed=0)
    both = data_module.SpecSource(JpegSpec(40), files["clean"], patch_size=16, grey=False, seed=0,
                                  context=[NoiseSpec(25.0, clip=True)])
    skip = data_module.SpecSource(JpegSpec(40), files["clean"], patch_size=16, grey=False, seed=0,
                                  context=[NoiseSpec(0.0)])
    (xa, ya), (xb, yb), (xs, _) = plain.batch(3, 2, torch.device("cpu")), both.batch(3, 2, torch.device("cpu")), \
        skip.batch(3, 2, torch.device("cpu"))
    assert torch.equal(ya, yb) and not torch.equal(xa, xb)
    assert torch.equal(xa, xs)  # sigma 0 adds nothing, and draws nothing
    assert torch.equal(both.batch(3, 2, torch.device("cpu"))[0], xb)  # still a pure function of the step
    assert "with sigma 25" in both.description


def test_a_grown_run_resumes_exactly(files, tmp_path, monkeypatch) -> None:
    run = dict(FAST, iters=4, add_anchor="noise:75,unclipped", data=files["clean"], calibrate=False)
    straight = tune(files["ftn1"], out=tmp_path / "straight.safetensors", checkpoint_every=2, **run)
    original = data_module.SpecSource.batch

    def ctrl_c_at_step_3(self, step, batch_size, device):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, step, batch_size, device)

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(data_module.SpecSource, "batch", ctrl_c_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        tune(files["ftn1"], out=out, checkpoint_every=2, **run)
    monkeypatch.setattr(data_module.SpecSource, "batch", original)
    with pytest.raises(ValueError, match="another grow"):
        tune(files["ftn1"], out=out, resume=True, checkpoint_every=2, **dict(run, add_anchor="noise:80,unclipped"))
    resumed = tune(files["ftn1"], out=out, resume=True, checkpoint_every=2, **run)
    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metadata(resumed)["tuned"]["iterations"] == 4 and checkpoint_path(out).is_file()


def _refusals(files: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    data = ["--data", str(files["clean"])]
    f1, ax = ["--base", str(files["ftn1"])], ["--base", str(files["axes2"])]
    return {
        "unknown axis": (f1 + ["--axis", "noise", "--add-anchor", "noise:75,unclipped", *data], "has no axis 'noise'; its axes are sigma"),
        "anchor not beyond the last": (f1 + ["--add-anchor", "noise:40,unclipped", *data],
                                       r"sigma 40 is not beyond the last anchor \(sigma 50\)"),
        "falling axis, anchor not beyond": (["--base", str(files["dni1"]), "--add-anchor", "jpeg:20", *data],
                                            r"quality 20 is not beyond the last anchor \(quality 10\).*quality < 10"),
        "anchor of another kind": (f1 + ["--add-anchor", "jpeg:30", *data], "axis sigma holds noise levels"),
        "clipping differs": (f1 + ["--add-anchor", "noise:75", *data], "unclipped noise; write --add-anchor noise:75,unclipped"),
        "adafm cannot": (["--base", str(files["adafm1"]), "--add-anchor", "noise:75", *data],
                         "adafm, which cannot have several axes or anchors"),
        "plain network": (["--base", str(files["plain"]), "--new-axis", "quality", "--to", "jpeg:40", *data], "plain network"),
        "levels not named": (["--base", str(files["teacher1"]), "--add-anchor", "noise:75", *data],
                             "does not name its axis and anchor levels"),
        "axis exists": (f1 + ["--new-axis", "sigma", "--to", "noise:75", *data], "already has an axis 'sigma'"),
        "new axis without level": (f1 + ["--new-axis", "quality", *data], "needs its level as --to"),
        "both growths": (f1 + ["--new-axis", "quality", "--to", "jpeg:40", "--add-anchor", "noise:75", *data], "give one of"),
        "--axis with --new-axis": (f1 + ["--axis", "sigma", "--new-axis", "quality", "--to", "jpeg:40", *data],
                                   "with --new-axis leave it out"),
        "--to with --add-anchor": (f1 + ["--add-anchor", "noise:75", "--to", "noise:80", *data], "leave out --to"),
        "several axes, none named": (ax + ["--add-anchor", "noise:75", *data], "say which gains the anchor with --axis"),
        "another method": (f1 + ["--add-anchor", "noise:75,unclipped", "--method", "dni", *data], "keeps its method"),
        "chain on a multi-axis base": (ax + ["--axis", "sigma", "--add-anchor", "noise:75", "--no-chain", *data],
                                       "chaining is fixed per axis"),
        "teacher": (f1 + ["--add-anchor", "noise:75", "--teacher", str(files["ftn1"]), *data], "not --teacher"),
        "axis without growth": (f1 + ["--axis", "sigma", "--to", "noise:75", *data], "go with --add-anchor"),
        "bad spec": (f1 + ["--add-anchor", "noise:loud", *data], "sigma must be a number"),
        "no data": (f1 + ["--add-anchor", "noise:75,unclipped"], "needs --data"),
        "base twice": ([str(files["ftn1"]), *f1, "--add-anchor", "noise:75,unclipped", *data], "give the base once"),
        "no base": (["--add-anchor", "noise:75,unclipped", *data], "give the base"),
        "bad axis name": (f1 + ["--new-axis", "a.b", "--to", "jpeg:40", *data], "axis name"),
    }


def test_refusals_are_one_line_and_write_nothing(files, tmp_path, capsys) -> None:
    for name, (argv, match) in _refusals(files).items():
        out = tmp_path / "out" / f"{name.replace(' ', '-')}.safetensors"
        out.parent.mkdir(exist_ok=True)
        code = cli_main(["tune", *argv, *SMALL, "-o", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2, (name, err)
        assert err.count("\n") == 0 and err.startswith("ftn tune: error: "), (name, err)
        assert re.search(match, err), (name, err)
        assert list(out.parent.iterdir()) == [], (name, list(out.parent.iterdir()))


def test_the_output_never_lands_among_the_shipped_models(files, capsys) -> None:
    out = MODELS_DIR / "grown-by-a-test.safetensors"
    code = cli_main(["tune", "--base", str(files["ftn1"]), "--add-anchor", "noise:75,unclipped", "--data",
                     str(files["clean"]), *SMALL, "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "shipped with ftn" in err and err.count("\n") == 0 and not out.exists()


def test_a_grown_file_loads_with_load_axes_and_grows_again(files, tmp_path) -> None:
    once = tune(files["ftn1"], add_anchor="noise:75,unclipped", data=files["clean"], out=tmp_path / "once.safetensors",
                calibrate=False, **FAST)
    twice = tune(once, new_axis="quality", to="jpeg:40", data=files["clean"], out=tmp_path / "twice.safetensors",
                 calibrate=False, **FAST)
    model = load_axes(twice)
    assert model.axis_names == ("sigma", "quality") and model.axis("sigma").anchors == 3
    meta = read_metadata(twice)
    assert meta["tuned"]["axes"]["sigma"] == {"kind": "noise", "clip": False}  # recorded by the first growth
    assert [h["grow"] for h in meta["tuned"]["history"]] == [read_metadata(once)["tuned"]["grow"]]


# -- corners: a joint correction where two axes meet at anchors (--corner) ---------------------------

def test_a_corner_changes_only_the_settings_near_it(files, tmp_path, capsys) -> None:
    """``--corner sigma=50,quality=10`` on a two-axis model (sigma anchors 5, 25, 50; quality 90, 10):
    the correction at (sigma anchor 2, quality anchor 1) trains on patches with both degradations;
    every setting with a corner axis a segment or more away keeps its output bit for bit."""
    out = tmp_path / "corner.safetensors"
    code = cli_main(["tune", str(files["axes2"]), "--corner", "sigma=50,quality=10", "--data", str(files["clean"]),
                     *SMALL, "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    old, new = ftn.load(files["axes2"]).eval(), ftn.load(out).eval()
    assert isinstance(new, AxesModel) and {"sigma": 2, "quality": 1} in [dict(c) for c in new.corners]
    before, after = read_state_dict(files["axes2"]), read_state_dict(out)
    added = sorted(set(after) - set(before))
    assert added and all("sigma=2,quality=1" in k for k in added), added[:3]
    assert all(torch.equal(before[k], after[k]) for k in before)
    x = load_image(files["in"]).image[None]
    with torch.no_grad():
        for setting in ({}, {"sigma": 2.0}, {"quality": 1.0}, {"sigma": 1.0, "quality": 1.0}, {"sigma": 0.9, "quality": 1.0},
                        {"sigma": 2.0, "quality": 0.0}):
            assert torch.equal(old(x, alpha=setting), new(x, alpha=setting)), setting
        for setting in ({"sigma": 2.0, "quality": 1.0}, {"sigma": 1.5, "quality": 0.5}):  # within reach: trained
            assert not torch.equal(old(x, alpha=setting), new(x, alpha=setting)), setting
    tuned = read_metadata(out)["tuned"]
    assert tuned["grow"]["corner"] == {"anchors": {"sigma": 2, "quality": 1}, "levels": {"sigma": 50.0, "quality": 10.0}}
    assert tuned["to"]["sigma"] == 50 and [c.get("quality") for c in tuned["context"]] == [10]
    assert old.levels.axes == new.levels.axes  # no calibration changes
    assert cli_main(["info", str(out)]) == 0
    assert "sigma=2,quality=1" in capsys.readouterr().out


CORNER_REFUSALS = {
    "not an anchor": ("axes2", ["--corner", "sigma=40,quality=10"], r"sigma=40 is not an anchor of axis sigma \(its anchors beyond the base: 25, 50\)"),
    "one axis only": ("axes2", ["--corner", "sigma=50"], "two or more axes"),
    "a one-axis model": ("ftn1", ["--corner", "sigma=50,quality=10"], "has no axis 'quality'"),
    "the base's anchor": ("axes2", ["--corner", "sigma=5,quality=10"], "not an anchor of axis sigma"),
    "already there": ("axes2", ["--corner", "sigma=25,quality=10"], "already has corner sigma=1,quality=1"),
    "with --to": ("axes2", ["--corner", "sigma=50,quality=10", "--to", "noise:30"], "leave out --to"),
    "with --axis": ("axes2", ["--corner", "sigma=50,quality=10", "--axis", "sigma"], "leave out --axis"),
    "with --add-anchor": ("axes2", ["--corner", "sigma=50,quality=10", "--add-anchor", "noise:75"], "give one of"),
    "not a number": ("axes2", ["--corner", "sigma=loud,quality=10"], "is not a number"),
    "stop-after with minutes": ("axes2", ["--corner", "sigma=50,quality=10", "--stop-after", "1", "--minutes", "1"],
                                "--iters"),
}


@pytest.mark.parametrize("case", sorted(CORNER_REFUSALS))
def test_corner_refusals_are_one_line_and_write_nothing(files, tmp_path, capsys, case) -> None:
    base, argv, match = CORNER_REFUSALS[case]
    small = SMALL[2:] if "--minutes" in argv else SMALL  # SMALL starts with --iters 2
    out = tmp_path / "out.safetensors"
    code = cli_main(["tune", str(files[base]), *argv, "--data", str(files["clean"]), *small, "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("ftn tune: error: "), err
    assert re.search(match, err), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("grow", [{"add_anchor": "noise:75,unclipped"}, {"corner": "sigma=50,quality=10"}, {}],
                         ids=["anchor", "corner", "one-axis tune"])
def test_a_run_paused_by_stop_after_continues_to_the_same_model(files, tmp_path, capsys, grow) -> None:
    """A long run in legs: ``stop_after_s`` pauses at a checkpoint (nothing else written, TrainingPaused,
    the CLI exits 3); ``resume=True`` continues, and the result equals the run that never paused."""
    from ftn.tuning.loop import TrainingPaused

    base = files["axes2"] if "corner" in grow else files["ftn1"] if grow else files["plain"]
    run = dict(FAST, iters=3, data=files["clean"], calibrate=False, **grow)
    if not grow:
        run.update(from_="noise:25", to="noise:50")
    straight = tune(base, out=tmp_path / "straight.safetensors", checkpoint_every=100, **run)
    out = tmp_path / "legs.safetensors"
    with pytest.raises(TrainingPaused, match="paused after step 1 of 3"):
        tune(base, out=out, checkpoint_every=100, stop_after_s=1e-9, **run)
    assert not out.exists() and checkpoint_path(out).is_file()
    argv = ["tune", str(base), "--data", str(files["clean"]), "--iters", "3", "--batch-size", "2", "--patch-size", "16",
            "--no-progress", "--device", "cpu", "--no-calibrate", "--resume", "--stop-after", "1e-9", "-o", str(out)]
    argv += {"add_anchor": ["--add-anchor", "noise:75,unclipped"], "corner": ["--corner", "sigma=50,quality=10"]}.get(
        next(iter(grow), ""), ["--from", "noise:25", "--to", "noise:50"])
    assert cli_main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn tune: paused after step 2 of 3") and "--resume" in err and not out.exists()
    resumed = tune(base, out=out, resume=True, checkpoint_every=100, **run)
    a, b = read_state_dict(straight), read_state_dict(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
