"""Train, and install as ``src/ftn/models/restore.safetensors``, the shipped ``restore`` model (issue [4/6]):
photos as files hold them, noise (clipped, 8-bit) then JPEG, with two knobs, one FTN-gc16 on one base.

    python scripts/ship_restore.py --stop-after 60          # one CPU leg: resumes, pauses after an hour
    python scripts/ship_restore.py --lane 1/2 & python scripts/ship_restore.py --lane 2/2   # corners on two cores
    python scripts/ship_restore.py --dedicated              # also the comparison models of docs/restore.md
    python scripts/ship_restore.py --only-dedicated --stop-after 60   # just those, on a second core beside a leg
    python scripts/ship_restore.py --set device=cuda --device cuda --stop-after 8    # a leg on a lent GPU

**The recipe, stage after stage** (every stage resumes from its checkpoint and is skipped once its model
file exists; ``--stop-after`` pauses the stage in progress, so the run goes on in legs as
``scripts/ship_models.py`` does):

1. ``base``: the network of the shipped models (ResUNet, 16 channels, 3 scales) at (sigma 0, JPEG quality 90),
   fine-tuned from the [2/6] ``dejpeg`` base (``configs/ship/restore-base.yaml``, ``init``): anchor 0 of
   both axes.
2. tuners, FTN-gc16, one after the other, each with everything else frozen (``ftn tune``,
   :mod:`ftn.tuning.grow_loop`): the ``quality`` axis 90 -> 50 -> 30 -> 10 (chained), then the
   ``sigma`` axis 0 -> 15 -> 30 -> 50 (photo-true noise; chained), its patches JPEG'd at quality 90 (the
   quality axis's anchor 0), then a corner (joint correction) at (sigma 50, quality 10) where both are
   strongest, then one at every other anchor pair off the axes (``CORNERS``), each from that file, in one
   process or in parallel lanes (``--lane 1/2`` and ``--lane 2/2``), joined at install. Each anchor's
   calibration (level -> alpha) is measured on BSD432 images held out of training.
3. install: the last tuner stage's file joined with every corner, with its card (licence, date, data, budget), into src/ftn/models.

``--dedicated`` also trains the comparison models of ``benchmarks/restore.py``: the base fine-tuned
whole at one setting (corners and centre of the grid), the same steps as one tuner. They are not shipped.
They need only the base, so once it is done ``--only-dedicated`` trains them in a second process while
the tuners go on in the first (the stages do not share files).
Run from the repository root, with ../shared beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import ftn
from ftn.axes_io import save_axes
from ftn.io import read_metadata
from ftn.train import load_config, train
from ftn.tuning.grow import with_corners_from
from ftn.tuning.loop import TrainingPaused, checkpoint_path


def _load_ship_models() -> Any:
    """scripts/ship_models.py, the one-axis models' script: the same card, manifest and leg machinery."""
    spec = importlib.util.spec_from_file_location("ship_models", Path(__file__).with_name("ship_models.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ship_models = _load_ship_models()

RUNS = Path("reproduce/runs/ship/restore")
BASE_CONFIG = Path("configs/ship/restore-base.yaml")
DATA = "../shared/data/train/BSD432"


@dataclasses.dataclass(frozen=True)
class Tuner:
    """One ``ftn tune`` stage: the folder it writes and its arguments (:func:`ftn.tune`'s)."""

    name: str
    args: dict[str, Any]


TUNERS = (
    Tuner("quality-50", {"from_": "jpeg:90", "to": "jpeg:50"}),
    Tuner("quality-30", {"axis": "quality", "add_anchor": "jpeg:30"}),
    Tuner("quality-10", {"axis": "quality", "add_anchor": "jpeg:10"}),
    Tuner("sigma-15", {"new_axis": "sigma", "from_": "noise:0,clip", "to": "noise:15,clip"}),
    Tuner("sigma-30", {"axis": "sigma", "add_anchor": "noise:30,clip"}),
    Tuner("sigma-50", {"axis": "sigma", "add_anchor": "noise:50,clip"}),
    Tuner("corner-sigma50-quality10", {"corner": "sigma=50,quality=10"}),
)
#: The sum of the two axes' tuners fails where both are on (docs/restore-one-corner.md: 6-19 dB below the
#: other methods off the axes): both learnt "restore more", in kernel directions that overlap (cosine
#: 0.2-0.7 per layer), so the sum overshoots. So a corner at every other anchor pair off the axes, each
#: trained from the last tuner stage's file: a corner's hat weight is 0 at every other anchor pair, so
#: each trains alone (in parallel lanes, ``--lane K/N``) and :func:`ftn.tuning.grow.with_corners_from`
#: joins them; between anchor pairs the corners blend bilinearly.
CORNERS = tuple(Tuner(f"corner-sigma{s}-quality{q}", {"corner": f"sigma={s},quality={q}"})
                for s, q in ((30, 30), (15, 50), (30, 50), (15, 30), (50, 30), (30, 10), (50, 50), (15, 10)))
#: The comparison models: the corners of the grid that the base is not, and its centre.
DEDICATED = ({"sigma": 50, "quality": 90}, {"sigma": 0, "quality": 10}, {"sigma": 50, "quality": 10},
             {"sigma": 30, "quality": 30})


@dataclasses.dataclass
class Budget:
    """Sizes of the tuner and dedicated stages (the base stage's are in its config)."""

    iters: int = 1500
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 1e-4
    groups: int = 16
    device: str = "auto"
    data: str = DATA


def run_base(overrides: list[str], deadline: ship_models.Deadline) -> Path | None:
    """Stage 1 (the trainer, resumable); its model file, or None when paused."""
    return ship_models.run_stage(BASE_CONFIG, overrides, deadline)


def run_tuner(stage: Tuner, base: Path, budget: Budget, deadline: ship_models.Deadline) -> Path | None:
    """One tuner stage on ``base`` (the previous stage's file); its model file, or None when paused."""
    out = RUNS / stage.name / "model.safetensors"
    if out.is_file():
        print(f"restore {stage.name}: done already ({out})")
        return out
    left = deadline.left_s()
    if left is not None and left < 1:
        return None
    resume = checkpoint_path(out).is_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"restore {stage.name}: {'resuming' if resume else 'starting'}", flush=True)
    options = {"groups": budget.groups} if stage is TUNERS[0] else None  # a grown model keeps its method's options
    try:
        ftn.tune(base, **stage.args, method_options=options, data=budget.data, iters=budget.iters,
                 batch_size=budget.batch_size, patch_size=budget.patch_size, lr=budget.lr, out=out, resume=resume,
                 device=budget.device, progress=sys.stderr.isatty(), stop_after_s=left)
    except TrainingPaused as paused:
        print(f"restore {stage.name}: {paused}")
        return None
    return out


def dedicated_config(setting: dict[str, float], base: Path, budget: Budget, overrides: list[str]) -> Any:
    """The trainer config of one comparison model: the base's recipe, fine-tuned whole at ``setting``."""
    name = f"dedicated-s{setting['sigma']:g}-q{setting['quality']:g}"
    changes = [f"name=restore-{name}", f"out_dir={RUNS / name}", "task=restore", "task_options={}",
               f"level={{sigma: {setting['sigma']}, quality: {setting['quality']}}}", f"init={base}",
               f"iterations={budget.iters}", f"batch_size={budget.batch_size}", f"patch_size={budget.patch_size}"]
    return load_config(BASE_CONFIG, changes + overrides)


def run_dedicated(base: Path, budget: Budget, overrides: list[str], deadline: ship_models.Deadline) -> bool:
    """Every comparison model; False when paused."""
    for setting in DEDICATED:
        config = dedicated_config(setting, base, budget, overrides)
        model = Path(config.out_dir) / "model.safetensors"
        if model.is_file():
            continue
        left = deadline.left_s()
        if left is not None and left < 1:
            return False
        resume = (Path(config.out_dir) / "checkpoint.safetensors").is_file()
        print(f"{config.name}: {'resuming' if resume else 'starting'}", flush=True)
        if train(config, resume=resume, progress=sys.stderr.isatty(), stop_after_s=left).name != "model.safetensors":
            return False
    return True


def card(base: Path, stages: list[Path]) -> dict[str, Any]:
    """The installed file's card fields: licence, date, data, and the budget of every stage."""
    base_meta = read_metadata(base)
    training = base_meta.get("training", {})
    cpu, gpu, devices = ship_models._stage_minutes(training)
    steps = {"stage 1 (base)": training.get("iterations")}
    data = [Path(str(base_meta.get("recipe", {}).get("train_data"))).name]
    for path in stages:
        tuned = read_metadata(path).get("tuned", {})
        if tuned.get("data") and tuned["data"] not in data:
            data.append(tuned["data"])
        minutes = float(tuned.get("wall_time_s") or 0) / 60
        on_gpu = str(tuned.get("device", "cpu")).startswith("cuda")
        gpu, cpu = gpu + (minutes if on_gpu else 0.0), cpu + (0.0 if on_gpu else minutes)
        steps[f"tuner {path.parent.name}"] = tuned.get("iterations")
    recipe = read_metadata(stages[-1]).get("tuned", {})
    out: dict[str, Any] = {
        # The task the file serves (noise, clipped and 8-bit, then JPEG): what ftn info and the card show.
        "task": "restore",
        "task_options": {},
        "date": datetime.date.today().isoformat(),
        "training_data": data,
        "budget": {"steps": steps, "cpuMinutes": round(cpu, 1), "gpuMinutes": round(gpu, 1), "devices": devices,
                   "batchSize": recipe.get("batch_size"), "patchSize": recipe.get("patch_size")},
    }
    licence = ship_models.project_license()
    if licence:
        out["license"] = licence
    return out


def joined(start: Path, corners: list[Path]) -> Any:
    """The last tuner stage's model with the corners trained from it in every corner stage."""
    model = ftn.load(start)
    for path in corners:
        model = with_corners_from(model, ftn.load(path))
    return model


def install(base: Path, stages: list[Path], corners: list[Path], target: Path) -> Path:
    """The tuner stages' model with every corner, with its card fields, as ``target``; MANIFEST line and card written."""
    model = joined(stages[-1], corners)
    stages = stages + corners
    tmp = target.with_name(f".{target.name}.tmp")
    save_axes(model, tmp, **card(base, stages))
    shutil.move(tmp, target)
    ship_models.record_shipped(target)
    ship_models.write_card(target)
    print(f"restore: shipped {target} ({target.stat().st_size / 1e6:.2f} MB)")
    return target


def _lane(parser: argparse.ArgumentParser, text: str) -> tuple[int, int]:
    """``--lane K/N`` as (K, N); a malformed value is a usage error."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 1 <= int(parts[0]) <= int(parts[1]):
        parser.error(f"--lane takes K/N with 1 <= K <= N, got {text!r}")
    return int(parts[0]), int(parts[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stop-after", type=float, default=None, metavar="MIN",
                        help="pause the stage in progress after MIN minutes of this call (continue with the same command)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the trainer stages (base, dedicated): device, batch_size, threads, ...")
    parser.add_argument("--dedicated", action="store_true", help="also train the comparison models (after the tuners)")
    parser.add_argument("--only-dedicated", action="store_true",
                        help="train only the comparison models (the base must be done): beside a tuner leg on another core")
    parser.add_argument("--no-install", action="store_true", help="do not copy the result into src/ftn/models")
    parser.add_argument("--lane", default="1/1", metavar="K/N",
                        help="train only every N-th corner stage from the K-th (default 1/1: all): N processes, "
                             "once the tuner stages are done, train the corners in parallel")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every stage")
    for field in dataclasses.fields(Budget):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                            help=f"tuner and dedicated stages (default {field.default})")
    args = parser.parse_args(argv)
    budget = Budget(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Budget)})
    overrides = ([f"threads={args.threads}"] if args.threads else []) + args.overrides
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    deadline = ship_models.Deadline(args.stop_after)
    lane, lanes = _lane(parser, args.lane)
    unfinished = [stage.name for stage in TUNERS if not (RUNS / stage.name / "model.safetensors").is_file()]
    if lanes > 1 and unfinished:  # lanes share the last tuner stage's file: it must exist before they start
        print(f"restore: the tuner stages are not done ({unfinished[0]}); run them in one process (no --lane) first",
              file=sys.stderr)
        return 2
    if args.only_dedicated:
        base = Path(load_config(BASE_CONFIG, overrides).out_dir) / "model.safetensors"
        if not base.is_file():
            print(f"restore: the base is not trained yet ({base}); run a leg without --only-dedicated first",
                  file=sys.stderr)
            return 2
        if not run_dedicated(base, budget, overrides, deadline):
            print("restore: paused in the comparison models (time is up); run the same command to continue")
        return 0
    base = run_base(overrides, deadline)
    if base is None:
        print("restore: paused in the base stage (time is up); run the same command to continue")
        return 0
    stages: list[Path] = []
    previous = base
    for stage in TUNERS:
        done = run_tuner(stage, previous, budget, deadline)
        if done is None:
            print(f"restore: paused in {stage.name} (time is up); run the same command to continue")
            return 0
        stages.append(done)
        previous = done
    for stage in CORNERS[lane - 1::lanes]:  # each from the last tuner stage's file: independent
        if run_tuner(stage, stages[-1], budget, deadline) is None:
            print(f"restore: paused in {stage.name} (time is up); run the same command to continue")
            return 0
    corners = [RUNS / stage.name / "model.safetensors" for stage in CORNERS]
    waiting = [path.parent.name for path in corners if not path.is_file()]
    if waiting:
        print(f"restore: lane {lane}/{lanes} done; waiting for the other lanes ({', '.join(waiting)})")
        return 0
    if not args.no_install:
        install(base, stages, corners, Path("src/ftn/models/restore.safetensors"))
    if args.dedicated and not run_dedicated(base, budget, overrides, deadline):
        print("restore: paused in the comparison models (time is up); run the same command to continue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
