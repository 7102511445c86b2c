"""benchmarks/reproduce.py end to end on the tiny recipe: every run trained, every table and plot written,
and a report-only rerun served from the cache with the same results.md."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCRIPT = ROOT / "benchmarks" / "reproduce.py"
TINY = ROOT / "configs" / "reproduce" / "tiny.yaml"
NEEDED = [SHARED / "data" / "train" / "BSD432", SHARED / "data" / "test" / "CBSD68", SHARED / "data" / "test" / "LIVE1"]

SECTIONS = ["## 1. Table 2", "## 2. Table 1", "## 3. Table 3", "## 4. Figure 5", "## 5. Figure 6", "## 6. Smoothness",
            "## 7. Table 4"]
PNGS = ["reproduce-fig5-groups.png", "reproduce-fig6-denoise.png", "reproduce-fig6-dejpeg.png", "reproduce-smoothness.png",
        "reproduce-crops.png", "reproduce-strip-ftn-gc16.png", "reproduce-strip-dni.png", "reproduce-strip-cfsnet.png"]


def _load_script():
    spec = importlib.util.spec_from_file_location("reproduce_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> str:
    cmd = [sys.executable, str(SCRIPT), "--recipe", str(TINY), "--no-progress", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _summary(stdout: str) -> tuple[int, int, int]:
    m = re.search(r"reproduce: trained (\d+) run\(s\), evaluated (\d+) item\(s\) \(cached (\d+)\)", stdout)
    assert m, stdout[-2000:]
    return int(m[1]), int(m[2]), int(m[3])


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_recipes_load_and_list_every_run() -> None:
    script = _load_script()
    for name in ("tiny", "mini", "full"):
        recipe = script.load_recipe(ROOT / "configs" / "reproduce" / f"{name}.yaml")
        keys = {r.key for r in recipe.runs}
        assert len(recipe.runs) == 23, name
        for task, scratch in (("denoise", [40, 60, 80]), ("dejpeg", [30, 20, 10])):
            for run in ["base", *(f"scratch-{lv}" for lv in scratch), "dni", "adafm", "cfsnet", "ftn-gc16", "ftn-gc4", "ftn"]:
                assert f"{task}/{run}" in keys, (name, task, run)
        for run in ("ftn-to50", "ftn-deeper-to50", "ftn-spatial-to50"):
            assert f"denoise/{run}" in keys
        # stage-1 bases first, then from-scratch, then stage 2 (which needs the base)
        stages = [r.stage for r in recipe.runs if r.task == "denoise"]
        assert recipe.runs[0].name == "base" and stages == sorted(stages)
        tuner = next(r for r in recipe.runs if r.key == "denoise/adafm")
        assert tuner.config.base.endswith("denoise/base/model.safetensors") and tuner.levels == (20, 80)
        assert tuner.config.method_options == {"kernel_size": 5} and tuner.config.targets == r"body\.\d+\..*"


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    script = _load_script()
    with pytest.raises(ValueError, match="unknown recipe key"):
        script.load_recipe(TINY, ["evaluation.limit=3"])
    with pytest.raises(ValueError, match="unknown key"):
        script.load_recipe(TINY, ["tasks.denoise.runs.dni.groups=4"])
    recipe = script.load_recipe(TINY, ["eval.limit=5", f"runs_dir={tmp_path}"])
    assert recipe.eval["limit"] == 5 and recipe.runs[0].dir == tmp_path / "denoise" / "base"


@pytest.mark.skipif(not all(p.is_dir() for p in NEEDED), reason=f"the shared data folder {SHARED / 'data'} is absent")
def test_tiny_reproduce_end_to_end(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    start = time.perf_counter()
    first = _run("--set", f"runs_dir={runs}", "--out", str(out))
    first_s = time.perf_counter() - start
    trained, evaluated, cached = _summary(first)
    assert trained == 23 and evaluated > 23 and cached == 0

    # every run folder: model, log, config; no checkpoint left behind
    run_dirs = sorted(p.parent for p in runs.glob("*/*/model.safetensors"))
    assert len(run_dirs) == 23
    for d in run_dirs:
        assert (d / "log.csv").is_file() and (d / "config.yaml").is_file() and (d / "eval.json").is_file()
        assert not (d / "checkpoint.safetensors").exists()
    assert (runs / "complexity.json").is_file()

    text = (out / "results.md").read_text()
    for heading in SECTIONS:
        body = _section(text, heading)
        assert re.search(r"\d+\.\d{2}", body), heading  # numbers
        assert "paper" in body.lower(), heading  # the paper beside ours
    assert "## Budget" in text and "wall time" in text and "iterations" in text
    # the paper's values, typed from its tables
    for value in ("28.78", "27.05", "30.18", "28.81", "0.9443", "0.0139", "25.11"):
        assert value in text, value
    # every Table 2 method row, both tasks; unseen levels marked
    t2 = _section(text, "## 1. Table 2")
    for row in ("| From scratch", "| DNI |", "| AdaFM |", "| CFSNet |", "| FTN-gc16 |", "| FTN-gc4 |", "| FTN |"):
        assert t2.count(row) == 2, row
    assert "40* best (alpha)" in t2 and "30* at linear alpha" in t2
    assert "FTN-deeper" in _section(text, "## 2. Table 1") and "FTN-spatial" in text
    assert "Fine-tuning (DNI)" in _section(text, "## 3. Table 3")
    assert "abs(best - linear)" in _section(text, "## 5. Figure 6")
    assert "largest step" in _section(text, "## 6. Smoothness")
    assert "+ftn(G=16)" in _section(text, "## 7. Table 4")
    for line in t2.splitlines():  # every measured cell of the method rows holds a number
        if line.startswith(("| DNI |", "| AdaFM |", "| CFSNet |", "| FTN")):
            assert "—" not in line, line
    for name in PNGS:
        assert (out / name).is_file() and (out / name).stat().st_size > 500, name

    # a report-only rerun: nothing trained, nothing evaluated, the same document
    models = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/model.safetensors")}
    evals = {p: p.stat().st_mtime_ns for p in runs.glob("*/*/eval.json")}
    second = _run("--set", f"runs_dir={runs}", "--out", str(out), "--only-report")
    trained, evaluated, cached = _summary(second)
    assert (trained, evaluated) == (0, 0) and cached > 23
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/*/model.safetensors")} == models
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/*/eval.json")} == evals
    assert (out / "results.md").read_text() == text

    # the budget check reads a second study's cached evaluations (here: the same runs under another name)
    twin = tmp_path / "twin.yaml"
    twin.write_text(TINY.read_text().replace("runs_dir:", f"runs_dir: {runs}  #", 1))
    checked = tmp_path / "checked"
    _run("--set", f"runs_dir={runs}", "--out", str(checked), "--only-report", "--set", f"compare_with={twin}")
    budget = _section((checked / "results.md").read_text(), "## 8. Budget check")
    assert "| FTN-gc16 |" in budget and "Interpolation order with" in budget
    assert re.search(r"\| DNI \| \d+\.\d{2} \| \d+\.\d{2} \| \d\.\d{3} \|", budget), budget

    # a missing run is trained again on its own; the others stay cached
    (runs / "denoise" / "ftn-gc4" / "model.safetensors").unlink()
    third = _run("--set", f"runs_dir={runs}", "--only-train")
    assert "trained 1 run(s)" in third and "denoise/ftn-gc4" in third
    print(f"tiny reproduce: {first_s:.1f} s")


def test_bases_from_shares_the_stage1_networks_of_another_study() -> None:
    script = _load_script()
    recipe = script.load_recipe(ROOT / "configs" / "reproduce" / "mini-long.yaml")
    base = recipe.run("denoise", "base")
    tuner = recipe.run("denoise", "ftn-gc16")
    assert base.dir == Path("reproduce/runs/mini/denoise/base")
    assert tuner.dir == Path("reproduce/runs/mini-long/denoise/ftn-gc16") and tuner.config.iterations == 2400
    assert tuner.config.base == "reproduce/runs/mini/denoise/base/model.safetensors"


def test_perceptual_recipe_lists_both_sr_networks_and_the_style_methods() -> None:
    script = _load_script()
    recipe = script.load_recipe(ROOT / "configs" / "reproduce" / "perceptual.yaml")
    keys = {r.key for r in recipe.runs}
    for task in ("sr-rrdb", "sr-cfsnet"):
        assert {f"{task}/{m}" for m in ("base", "dni", "adafm", "cfsnet", "ftn", "ftn-gc16")} <= keys
    assert {f"style/{m}" for m in ("base", "ftn", "adafm", "dynamic_net", "dni")} <= keys
    assert {"style-strength/base", "style-strength/ftn"} <= keys
    sr = recipe.run("sr-cfsnet", "ftn")
    assert (sr.config.task, sr.config.arch, sr.levels) == ("sr", "cfsnet", (0, 1))
    assert sr.config.base == "reproduce/runs/perceptual/sr-cfsnet/base/model.safetensors"


VGG = SHARED / "weights" / "vgg16_imagenet_features_caffe.safetensors"


@pytest.mark.skipif(not (VGG.is_file() and (SHARED / "data" / "test" / "Set14").is_dir() and (SHARED / "data" / "styles").is_dir()),
                    reason=f"needs the VGG16 weights and the Set5/Set14/styles folders of {SHARED}")
def test_perceptual_tiny_reproduce_end_to_end(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    recipe = ROOT / "configs" / "reproduce" / "perceptual-tiny.yaml"
    cmd = [sys.executable, str(SCRIPT), "--recipe", str(recipe), "--no-progress", "--set", f"runs_dir={runs}", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trained, evaluated, cached = _summary(done.stdout)
    assert trained == 6 and evaluated == 4 and cached == 0
    text = (out / "results.md").read_text()
    for heading in ("## 9. PD-controllable x4 super-resolution", "## 10. Continuous style transfer", "## 11. Per-pixel control"):
        assert heading in text, heading
    pd = _section(text, "## 9.")
    assert "NIQE" in pd and "| FTN-gc16 | 1 |" in pd and "| DNI | 0 |" in pd and "Colour drift" in pd
    assert "style loss to style mosaic" in _section(text, "## 10.")
    for name in ("perceptual-pd.png", "perceptual-sr-crops-sr-rrdb.png", "style-grid-style.png", "perpixel-style.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
    # a report-only rerun is served from the caches
    again = subprocess.run([*cmd, "--only-report"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _summary(again.stdout)[:2] == (0, 0)
