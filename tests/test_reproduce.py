"""``python -m benchmarks.reproduce`` end to end on the tiny recipe: every run trained, every table and plot
written, a report-only rerun served from the cache with the same results.md, and the same results.md
again once the run weights are gone (the manifest keys the caches); the weight manifest itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.reproduce.manifest import MANIFEST, find_entry, read_manifest, record_weights, weight_sha256
from benchmarks.reproduce.paper import load_paper
from benchmarks.reproduce.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COMMAND = [sys.executable, "-m", "benchmarks.reproduce"]
TINY = ROOT / "configs" / "reproduce" / "tiny.yaml"
NEEDED = [SHARED / "data" / "train" / "BSD432", SHARED / "data" / "test" / "CBSD68", SHARED / "data" / "test" / "LIVE1"]

SECTIONS = ["## 1. Table 2", "## 2. Table 1", "## 3. Table 3", "## 4. Figure 5", "## 5. Figure 6", "## 6. Smoothness",
            "## 7. Table 4"]
PNGS = ["reproduce-fig5-groups.png", "reproduce-fig6-denoise.png", "reproduce-fig6-dejpeg.png", "reproduce-smoothness.png",
        "reproduce-crops.png", "reproduce-strip-ftn-gc16.png", "reproduce-strip-dni.png", "reproduce-strip-cfsnet.png"]


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    cmd = [*COMMAND, "--recipe", str(TINY), "--no-progress", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if ok:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _move_weights(src: Path, dst: Path) -> list[Path]:
    """Move every model.safetensors under ``src`` to the same place under ``dst``; the moved paths (relative)."""
    moved = []
    for weight in sorted(src.rglob("model.safetensors")):
        rel = weight.relative_to(src)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(weight, dst / rel)
        moved.append(rel)
    return moved


def _summary(stdout: str) -> tuple[int, int, int]:
    m = re.search(r"reproduce: trained (\d+) run\(s\), evaluated (\d+) item\(s\) \(cached (\d+)\)", stdout)
    assert m, stdout[-2000:]
    return int(m[1]), int(m[2]), int(m[3])


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_recipes_load_and_list_every_run() -> None:
    for name in ("tiny", "mini", "full"):
        recipe = load_recipe(ROOT / "configs" / "reproduce" / f"{name}.yaml")
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
    with pytest.raises(ValueError, match="unknown recipe key"):
        load_recipe(TINY, ["evaluation.limit=3"])
    with pytest.raises(ValueError, match="unknown key"):
        load_recipe(TINY, ["tasks.denoise.runs.dni.groups=4"])
    recipe = load_recipe(TINY, ["eval.limit=5", f"runs_dir={tmp_path}"])
    assert recipe.eval["limit"] == 5 and recipe.runs[0].dir == tmp_path / "denoise" / "base"


@pytest.mark.skipif(not all(p.is_dir() for p in NEEDED), reason=f"the shared data folder {SHARED / 'data'} is absent")
def test_tiny_reproduce_end_to_end(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    start = time.perf_counter()
    first = _run("--set", f"runs_dir={runs}", "--out", str(out)).stdout
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
    second = _run("--set", f"runs_dir={runs}", "--out", str(out), "--only-report").stdout
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

    # every finished run has its manifest line, with the weight's hash
    manifest = read_manifest(runs)
    assert len(manifest) == 23 and (runs / MANIFEST).is_file()
    gc4 = runs / "denoise" / "ftn-gc4" / "model.safetensors"
    assert manifest[("denoise/ftn-gc4", "model.safetensors")].sha256 == weight_sha256(gc4)

    # without the weights: the same document from the caches, keyed by the manifest's hashes
    stash = tmp_path / "weights"
    assert len(_move_weights(runs, stash)) == 23
    weightless = _run("--set", f"runs_dir={runs}", "--out", str(tmp_path / "weightless"), "--only-report").stdout
    trained, evaluated, cached = _summary(weightless)
    assert (trained, evaluated) == (0, 0) and cached > 23
    assert (tmp_path / "weightless" / "results.md").read_text() == text
    assert "not trained yet" not in text
    # ... and nothing is retrained: a run in the manifest is done
    assert "trained 0 run(s)" in _run("--set", f"runs_dir={runs}", "--only-train").stdout
    # a cache that misses needs the weight: one line naming the run and the command that retrains it
    (runs / "denoise" / "ftn" / "eval.json").rename(tmp_path / "eval.json")
    refused = _run("--set", f"runs_dir={runs}", "--out", str(tmp_path / "weightless"), "--only-report", ok=False)
    assert refused.returncode != 0
    message = refused.stderr.strip().splitlines()
    assert len(message) == 1, refused.stderr[-2000:]
    assert "denoise/ftn" in message[0] and "is absent" in message[0]
    assert message[0].endswith(f"retrain with: python -m benchmarks.reproduce --recipe {TINY.relative_to(ROOT)} "
                               "--only 'denoise/base' --only 'denoise/ftn'"), message[0]  # its base is absent too
    (tmp_path / "eval.json").rename(runs / "denoise" / "ftn" / "eval.json")
    _move_weights(stash, runs)

    # a run whose weight is absent is trained again when --only names it; the others stay as they are
    gc4.unlink()
    third = _run("--set", f"runs_dir={runs}", "--only-train", "--only", "denoise/ftn-gc4").stdout
    assert "trained 1 run(s)" in third and "denoise/ftn-gc4" in third
    assert read_manifest(runs)[("denoise/ftn-gc4", "model.safetensors")].sha256 == weight_sha256(gc4)
    print(f"tiny reproduce: {first_s:.1f} s")


def test_bases_from_shares_the_stage1_networks_of_another_study() -> None:
    recipe = load_recipe(ROOT / "configs" / "reproduce" / "mini-long.yaml")
    base = recipe.run("denoise", "base")
    tuner = recipe.run("denoise", "ftn-gc16")
    assert base.dir == Path("reproduce/runs/mini/denoise/base")
    assert tuner.dir == Path("reproduce/runs/mini-long/denoise/ftn-gc16") and tuner.config.iterations == 2400
    assert tuner.config.base == "reproduce/runs/mini/denoise/base/model.safetensors"


def test_perceptual_recipe_lists_both_sr_networks_and_the_style_methods() -> None:
    recipe = load_recipe(ROOT / "configs" / "reproduce" / "perceptual.yaml")
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
    cmd = [*COMMAND, "--recipe", str(recipe), "--no-progress", "--set", f"runs_dir={runs}", "--out", str(out)]
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
    # without the weights: the same text; the figures drawn from the networks stay, saying what is missing
    _move_weights(runs, tmp_path / "weights")
    bare = subprocess.run([*cmd, "--only-report"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert (out / "results.md").read_text() == text
    assert "perpixel-style.png kept as it is" in bare.stderr and "retrain with: python -m benchmarks.reproduce" in bare.stderr


def test_manifest_keeps_the_lines_of_absent_weights(tmp_path: Path) -> None:
    run = tmp_path / "denoise" / "ftn"
    run.mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"weights")
    (run / "checkpoint.safetensors").write_bytes(b"unfinished")  # a checkpoint is no evidence: no line
    entries = record_weights(tmp_path)
    assert [(e.run, e.file, e.bytes) for e in entries] == [("denoise/ftn", "model.safetensors", 7)]
    sha = entries[0].sha256
    assert (tmp_path / MANIFEST).read_text().splitlines()[1] == f"denoise/ftn\tmodel.safetensors\t{sha}\t7"
    (run / "model.safetensors").unlink()
    other = tmp_path / "denoise" / "dni"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"other")
    record_weights(tmp_path, [other])  # a run that just finished: the absent weight's line stays
    assert set(read_manifest(tmp_path)) == {("denoise/ftn", "model.safetensors"), ("denoise/dni", "model.safetensors")}
    assert find_entry(run / "model.safetensors").sha256 == sha == weight_sha256(run / "model.safetensors")
    assert weight_sha256(tmp_path / "denoise" / "adafm" / "model.safetensors") is None
    (tmp_path / MANIFEST).write_text("denoise/ftn\tmodel.safetensors\n")
    with pytest.raises(ValueError, match="expected 'run<TAB>file<TAB>sha256<TAB>bytes'"):
        read_manifest(tmp_path)


def test_paper_numbers_load_from_the_data_file() -> None:
    paper = load_paper()
    assert paper["table2"]["AdaFM-Net (16 blocks)"]["FTN-gc16"] == [32.44, 28.78, 27.05, 25.98]
    assert paper["table1"]["rows"]["FTN-deeper"] == [32.44, 30.06, 28.81, 28.03]
    assert paper["table3"]["rows"]["Fine-tuning (DNI)"] == [0.0139, 0.8666]
    assert paper["fig6"].startswith("Figure 6 (a plot")


def test_benchmarks_and_scripts_edit_no_import_path() -> None:
    offenders = [str(p.relative_to(ROOT)) for folder in ("benchmarks", "scripts") for p in sorted((ROOT / folder).rglob("*"))
                 if p.suffix in (".py", ".sh") and "sys.path" in p.read_text()]
    assert offenders == [], f"run them as modules (python -m benchmarks.<name>) instead: {offenders}"
