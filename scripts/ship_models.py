"""Train, calibrate and install the models shipped in src/ftn/models (resumable, step by step).

    python scripts/ship_models.py                 # both tasks, the long photo-true recipes of configs/ship/
    python scripts/ship_models.py --tasks denoise --threads 1 --stop-after 60    # one hour of it, then pause
    python scripts/ship_models.py --set device=cuda --set batch_size=64 --set amp=true --stop-after 8 --pack $OUT
    python scripts/ship_models.py --configs configs --tasks denoise               # the 20-minute recipes
    python scripts/ship_models.py --from-run reproduce/runs/perceptual/sr-rrdb/ftn --name sr-pd-x4
    python scripts/ship_models.py --tag-shipped   # licence and date into shipped models that lack them (cards, MANIFEST)

**A long run in legs.** ``--stop-after MIN`` bounds one call: the stage in progress pauses at a
checkpoint when the time is up, and the same command continues it later (on another day or machine).
``--set`` changes what may differ between legs (``device``, ``batch_size``, ``amp``, ``threads``): a
lent GPU runs the same recipe with a larger batch and bf16 autocast. ``--pack DIR`` copies each
stage's checkpoint (a few MB) into DIR under its repository path, to bring a GPU leg back.

For each task: stage 1 (<configs>/<task>-base.yaml), stage 2 (<configs>/<task>-ftn16.yaml), an alpha sweep
on Set14 (not a test set of the paper) whose best alphas become the model's level -> alpha
calibration, then the model is copied to src/ftn/models/<task>.safetensors with what its card shows
in its metadata (:func:`card_metadata`: the project's licence, the date, the training data's names,
the budget of both stages in steps and CPU / GPU minutes, and the quality measured by the calibration
sweep with its setting), its sha256 and size go into src/ftn/models/MANIFEST.tsv
(``--record src/ftn/models/NAME.safetensors`` rewrites only that line) and its card into docs/cards/. A stage whose model file
exists is skipped; an interrupted stage resumes from its checkpoint. Run from the repository root,
with ../shared beside it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import ftn
from ftn.eval.sweep import calibrate, parse_alpha_grid, plot_sweep, sweep
from ftn.io import move_into_place
from ftn.models import MANIFEST_HEADER, read_manifest
from ftn.tasks import get_task
from ftn.train import load_config, train

CALIBRATION_DATA = "../shared/data/test/Set14"
CARDS = Path("docs/cards")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def project_license(pyproject: Path = PYPROJECT) -> str | None:
    """The project's licence as pyproject.toml states it (``license = { text = "MIT" }``), or None."""
    try:
        value = tomllib.loads(pyproject.read_text())["project"]["license"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    value = value.get("text") if isinstance(value, dict) else value
    return value if isinstance(value, str) and value else None


def _stage_minutes(stage: dict[str, Any]) -> tuple[float, float, list[str]]:
    """CPU and GPU minutes of one stage and its devices: per leg where the trainer kept legs (a long
    run in legs), else the stage's wall time on its one machine."""
    legs = [leg for leg in stage.get("legs") or [] if isinstance(leg, dict) and "seconds" in leg]
    if legs:
        cpu = sum(leg["seconds"] for leg in legs if str(leg.get("device", "")).startswith("CPU")) / 60
        gpu = sum(leg["seconds"] for leg in legs if not str(leg.get("device", "")).startswith("CPU")) / 60
        return cpu, gpu, sorted({str(leg.get("device")) for leg in legs})
    machine = stage.get("machine") or {}
    minutes = float(stage.get("wall_time_s") or 0) / 60
    on_cpu = machine.get("device", "cpu") == "cpu"
    device = f"CPU {machine.get('cpu', '?')} ({machine.get('threads', '?')} threads)" if on_cpu else str(machine.get("gpu") or machine.get("device"))
    return (minutes, 0.0, [device]) if on_cpu else (0.0, minutes, [device])


def card_metadata(stage1: dict[str, Any], stage2: dict[str, Any], recipes: list[dict[str, Any]],
                  quality: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What a shipped model's card shows beyond its recipe: licence, date, training data, budget, quality.

    ``stage1`` / ``stage2``: the stages' ``training`` metadata; ``recipes``: both stages' recipes (their
    ``train_data`` folders name the data); ``quality``: :func:`quality_record`'s entries, if measured.
    """
    cpu1, gpu1, dev1 = _stage_minutes(stage1)
    cpu2, gpu2, dev2 = _stage_minutes(stage2)
    data = []
    for recipe in recipes:
        name = Path(str(recipe.get("train_data") or "")).name
        if name and name not in data:
            data.append(name)
    last = recipes[-1] if recipes else {}
    out: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "training_data": data,
        "budget": {
            "steps": {"stage 1 (base)": stage1.get("iterations"), "stage 2 (tuner)": stage2.get("iterations")},
            "cpuMinutes": round(cpu1 + cpu2, 1), "gpuMinutes": round(gpu1 + gpu2, 1),
            "devices": sorted(set(dev1 + dev2)), "batchSize": last.get("batch_size"), "patchSize": last.get("patch_size"),
        },
    }
    licence = project_license()
    if licence:
        out["license"] = licence
    if quality:
        out["quality"] = quality
    return out


def quality_record(result: Any, calibration: dict[str, Any], degradation: str) -> list[dict[str, Any]]:
    """PSNR at each swept level at the calibrated alpha (the grid alpha nearest it), with its setting.

    Measured on the calibration sweep's own images (Set14, not a test set of the paper), so it says
    what ``--level L`` gives on them, not how the model generalises.
    """
    from ftn.levels import Calibration

    cal = Calibration.from_metadata(calibration)
    name = result.level_name
    crop = f"{result.crop} px centre crops" if result.crop else "whole images"
    entries = []
    for level, inp in zip(result.levels, result.input_psnr):
        alpha = cal.alpha_at(level)
        grid = min(result.alphas, key=lambda a: abs(a - alpha))
        entries.append({
            "metric": "PSNR", "unit": "dB", "value": round(result.psnr_at(level, grid), 2), "input": round(inp, 2),
            "level": f"{name} {level:g}", "alpha": round(grid, 4), "data": Path(result.data).name, "images": result.images,
            "crop": crop, "cropBorder": result.crop_border, "channels": "Y" if result.y_channel else "RGB",
            "degradation": degradation, "when": "calibration sweep after training (its own images, not a held-out test)",
        })
    return entries


def write_card(target: Path) -> None:
    """The shipped model's card into docs/cards (where that folder exists: run from the repository root)."""
    if CARDS.is_dir():
        from ftn.info_cli import write_card as write

        for path in write(str(target), CARDS):
            print(f"card: {path}")


def record_shipped(target: Path) -> None:
    """Add or update ``target``'s line (sha256, bytes) in the manifest beside it; other lines stay."""
    manifest = target.parent / "MANIFEST.tsv"
    entries = read_manifest(manifest) if manifest.is_file() else {}
    digest = hashlib.sha256()
    with target.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    entries[target.name] = (digest.hexdigest(), target.stat().st_size)
    lines = [MANIFEST_HEADER] + [f"{name}\t{sha}\t{size}" for name, (sha, size) in sorted(entries.items())]
    manifest.write_text("\n".join(lines) + "\n")


def shipped_date(path: Path) -> str | None:
    """The day ``path`` was last committed (YYYY-MM-DD), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=PYPROJECT.parent,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out or None


def tag_shipped(path: Path) -> bool:
    """Add the card fields a model shipped before this script recorded them lacks (licence from
    pyproject.toml, the date the file was committed: the day it shipped), tensors copied bit for bit
    (checked) and the file replaced atomically; True when the file changed."""
    with safe_open(str(path), framework="pt") as f:
        raw = dict(f.metadata() or {})
    meta = json.loads(raw.get("ftn", "{}"))
    extra = {"license": project_license(), "date": shipped_date(path)}
    missing = {k: v for k, v in extra.items() if v and k not in meta}
    if not missing:
        return False
    tensors = load_file(str(path))
    meta.update(missing)
    tmp = path.with_name(f".{path.name}.tag.tmp")
    save_file(tensors, str(tmp), metadata={**raw, "ftn": json.dumps(meta, sort_keys=True)})
    again = load_file(str(tmp))
    if set(again) != set(tensors) or not all(torch.equal(again[k], tensors[k]) for k in tensors):
        tmp.unlink()
        raise SystemExit(f"ship_models --tag-shipped: {path.name}: the tensors did not survive the rewrite; left unchanged")
    move_into_place(tmp, path)
    print(f"{path.name}: added {', '.join(f'{k} {v}' for k, v in missing.items())}")
    return True


class Deadline:
    """What is left of this call's ``--stop-after`` budget (None: no limit)."""

    def __init__(self, minutes: float | None) -> None:
        self.end = None if minutes is None else time.monotonic() + 60 * minutes

    def left_s(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())


def run_stage(config_path: Path, overrides: list[str], deadline: Deadline) -> Path | None:
    """Train (or resume) one stage; its model file, or None when the time ran out first (paused)."""
    config = load_config(config_path, overrides)
    model_path = Path(config.out_dir) / "model.safetensors"
    if model_path.is_file():
        print(f"{config.name}: done already ({model_path})")
        return model_path
    left = deadline.left_s()
    if left is not None and left < 1:
        return None
    resume = (Path(config.out_dir) / "checkpoint.safetensors").is_file()
    print(f"{config.name}: {'resuming' if resume else 'starting'}", flush=True)
    result = train(config, resume=resume, progress=sys.stderr.isatty(), stop_after_s=left)
    return result if result.name == "model.safetensors" else None


def pack(config_paths: list[Path], overrides: list[str], dest: Path) -> list[Path]:
    """Copy each stage's checkpoint (and finished model) into ``dest`` under its repository path."""
    copied = []
    for config_path in config_paths:
        out_dir = Path(load_config(config_path, overrides).out_dir)
        for name in ("checkpoint.safetensors", "model.safetensors", "log.csv", "config.yaml"):
            source = out_dir / name
            if source.is_file():
                target = dest / source.resolve().relative_to(Path.cwd().resolve())
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copied.append(target)
    return copied


def ship(task_name: str, configs: Path, overrides: list[str], deadline: Deadline, install: bool = True) -> Path | None:
    """Both stages of ``task_name``, then calibration and installation; None when paused."""
    base_path = run_stage(configs / f"{task_name}-base.yaml", overrides, deadline)
    tuned_path = run_stage(configs / f"{task_name}-ftn16.yaml", overrides, deadline) if base_path else None
    if tuned_path is None:
        print(f"{task_name}: paused (time is up); run the same command to continue")
        return None
    model = ftn.load(tuned_path).eval()
    meta = model.metadata
    task = get_task(meta["task"], **meta.get("task_options", {}))
    train_levels = [float(level[task.level_name]) for level in meta["levels"]]
    # 256 px centre crops of all 14 Set14 images: the best alpha depends on the level, not on the
    # image size, and whole images would make this sweep take most of an hour on 2 cores.
    result = sweep(model, CALIBRATION_DATA, task, list(task.test_levels), parse_alpha_grid("0:1:0.05"),
                   train_levels=train_levels, crop=256)
    out = tuned_path.parent / "sweep-set14"
    result.write(out)
    plot_sweep(result, out / "sweep.png")
    stage1 = ftn.io.read_metadata(base_path).get("training", {})
    stage2 = meta.get("training", {})
    budget = (
        f"stage 1 {stage1.get('iterations')} iterations in {stage1.get('wall_time_s', 0) / 60:.0f} min, "
        f"stage 2 {stage2.get('iterations')} iterations in {stage2.get('wall_time_s', 0) / 60:.0f} min "
        f"(training time over all legs), batch {meta['recipe']['batch_size']} x {meta['recipe']['patch_size']} px "
        f"patches of BSD432, last leg on {stage2.get('machine', {}).get('cpu', '?')} "
        f"({stage2.get('machine', {}).get('threads', '?')} threads)"
    )
    stage1_summary = {k: stage1.get(k) for k in ("iterations", "wall_time_s", "machine", "final_val_psnr", "legs")}
    calibration = calibrate(result)
    options = meta.get("task_options") or {}
    degradation = ", ".join(f"{k} {v}" for k, v in options.items()) or "the task's defaults"
    card = card_metadata(stage1, stage2, [ftn.io.read_metadata(base_path).get("recipe", {}), meta.get("recipe", {})],
                         quality_record(result, calibration, degradation))
    ftn.save(model, tuned_path, calibration=calibration, training={**stage2, "budget": budget, "stage1": stage1_summary},
             **card)
    if not install:
        print(f"{task_name}: calibrated {tuned_path} (not installed); {budget}")
        return tuned_path
    target = Path("src/ftn/models") / f"{task_name}.safetensors"
    shutil.copyfile(tuned_path, target)
    record_shipped(target)
    write_card(target)
    print(f"{task_name}: shipped {target} ({target.stat().st_size / 1e6:.2f} MB); {budget}")
    return target


def ship_run(run_dir: Path, name: str) -> Path:
    """Ship a finished reproduce run (a tuner run and its stage-1 base) as ``src/ftn/models/<name>``.

    The perceptual models have no level -> alpha calibration: their levels are objectives (L1 vs
    L1 + VGG + GAN) or styles, which no test image can measure, so alpha is the control itself.
    """
    model_path = run_dir / "model.safetensors"
    meta = ftn.io.read_metadata(model_path)
    recipe = meta.get("recipe", {})
    base_meta = ftn.io.read_metadata(recipe["base"]).get("training", {}) if recipe.get("base") else {}
    stage2 = meta.get("training", {})
    machine = stage2.get("machine", {})
    where = machine.get("gpu") or machine.get("cpu", "?")
    budget = (
        f"stage 1 {base_meta.get('iterations')} iterations in {base_meta.get('wall_time_s', 0) / 60:.1f} min, "
        f"stage 2 {stage2.get('iterations')} iterations in {stage2.get('wall_time_s', 0) / 60:.1f} min, "
        f"batch {recipe.get('batch_size')} x {recipe.get('patch_size')} px patches of {Path(recipe.get('train_data', '?')).name}, "
        f"on {where}; network {recipe.get('arch')} {recipe.get('arch_options')} (a mini preset)"
    )
    model = ftn.load(model_path)
    target = Path("src/ftn/models") / f"{name}.safetensors"
    stage1_summary = {k: base_meta.get(k) for k in ("iterations", "wall_time_s", "machine", "legs")}
    base_recipe = ftn.io.read_metadata(recipe["base"]).get("recipe", {}) if recipe.get("base") else {}
    card = card_metadata(base_meta, stage2, [base_recipe, recipe])  # no quality: nothing measures these levels
    ftn.save(model, target, training={**stage2, "budget": budget, "stage1": stage1_summary},
             shipped_from=str(run_dir), **card)
    record_shipped(target)
    write_card(target)
    print(f"{name}: shipped {target} ({target.stat().st_size / 1e6:.2f} MB); {budget}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", nargs="+", type=Path, default=None, metavar="MODEL",
                        help="only (re)write these shipped files' lines of src/ftn/models/MANIFEST.tsv")
    parser.add_argument("--tag-shipped", action="store_true",
                        help="add licence and date to shipped models that lack them; rewrite their MANIFEST lines and cards")
    parser.add_argument("--tasks", nargs="+", default=["denoise", "dejpeg"])
    parser.add_argument("--configs", type=Path, default=Path("configs/ship"),
                        help="folder of <task>-base.yaml and <task>-ftn16.yaml (default: configs/ship, the long photo-true recipes)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for both stages (device, batch_size, amp, threads, ...; repeatable)")
    parser.add_argument("--stop-after", type=float, default=None, metavar="MIN",
                        help="pause the stage in progress after MIN minutes of this call (continue with the same command)")
    parser.add_argument("--pack", type=Path, default=None, metavar="DIR",
                        help="afterwards, copy the stages' checkpoints and models into DIR under their repository paths")
    parser.add_argument("--no-install", action="store_true", help="calibrate but do not copy into src/ftn/models")
    parser.add_argument("--from-run", type=Path, default=None, help="ship this finished reproduce run instead")
    parser.add_argument("--name", default=None, help="the shipped name for --from-run")
    args = parser.parse_args(argv)
    if args.record:
        for target in args.record:
            record_shipped(target)
        return 0
    if args.tag_shipped:
        from ftn.models import available

        for target in sorted(available().values()):
            if tag_shipped(target):
                record_shipped(target)
            write_card(target)
        return 0
    if args.from_run is not None:
        if not args.name:
            parser.error("--from-run needs --name")
        ship_run(args.from_run, args.name)
        return 0
    overrides = ([f"threads={args.threads}"] if args.threads else []) + args.overrides
    deadline = Deadline(args.stop_after)
    try:
        for task_name in args.tasks:
            ship(task_name, args.configs, overrides, deadline, install=not args.no_install)
    finally:
        if args.pack is not None:
            stages = [args.configs / f"{t}-{s}.yaml" for t in args.tasks for s in ("base", "ftn16")]
            for path in pack(stages, overrides, args.pack):
                print(f"packed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
