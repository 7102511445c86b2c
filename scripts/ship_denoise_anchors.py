"""A three-anchor ``denoise`` candidate (issue [2/6]): sigma 20 -> 50 -> 80 on the shipped base.

    ftn train configs/ship/denoise-ftn16-s50.yaml --set threads=1 --stop-after 60   # the sigma-50 tuner, in legs (--resume)
    python scripts/ship_denoise_anchors.py          # assemble, calibrate on Set14, write the candidate (not installed)
    python scripts/ship_denoise_anchors.py --install    # ... and ship it as src/ftn/models/denoise.safetensors

The two-anchor ``denoise`` shipped first (sigma 20 -> 80) reached sigma 50 only by interpolating between its ends
(alpha 0.7), and that is where it trailed FFDNet most (docs/quality.md of 2026-12-02). Here the sigma-80 tuner of that model (its run's file,
``reproduce/runs/ship/denoise/ftn16/model.safetensors``; sha256 in ``reproduce/runs/ship/MANIFEST.tsv``) and a
sigma-50 tuner trained on the same frozen base become anchors 2 and 1 of one axis, both from the base
(not chained: ``W_k = FTN_k(f)``), so no tuner is retrained (:meth:`ftn.methods.axes.AxesModel.import_tunable`).
Alpha runs 0 ... 2; the level -> alpha calibration is measured per segment as ``scripts/ship_models.py``
measures it (best alpha on 256 px centre crops of Set14, a grid of 0.05, made monotone), and the file goes to
``reproduce/runs/ship/denoise/anchors3/model.safetensors``, for ``benchmarks.quality.peers`` to set beside CBM3D and FFDNet.
``--install`` also copies it into src/ftn/models with its card fields (licence, date, data, the budget of the base
and both tuners, the calibration sweep's PSNR per level), its MANIFEST line and its card in docs/cards.
Run from the repository root, with ../shared beside it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import torch

import ftn
from ftn.axes_io import save_axes
from ftn.eval.sweep import calibrate, parse_alpha_grid, sweep
from ftn.levels import Calibration, Levels
from ftn.methods.axes import AxesModel
from ftn.tasks import get_task
from ftn.tuning.grow import as_axes, with_anchor

RUNS = Path("reproduce/runs/ship/denoise")
CALIBRATION_DATA = Path("../shared/data/test/Set14")
TARGET = Path("src/ftn/models/denoise.safetensors")


def _load_ship_models() -> Any:
    """scripts/ship_models.py, the one-axis models' script: the same card and manifest machinery."""
    spec = importlib.util.spec_from_file_location("ship_models", Path(__file__).with_name("ship_models.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ship_models = _load_ship_models()


def assemble(inner: ftn.TunableModel, outer: ftn.TunableModel) -> AxesModel:
    """One ``sigma`` axis with anchors (base level, inner level, outer level) from two two-anchor models on
    the same base: ``inner``'s tuner becomes anchor 1 and ``outer``'s anchor 2, both from the base.

    Raises:
        ValueError: the two do not share the base, method and options bit for bit, or do not name their levels.
    """
    name = Levels.from_metadata(inner.metadata).axis().name
    outer_level = float(outer.metadata["levels"][1][name])
    model = with_anchor(as_axes(inner, chained=False, name="the inner model"), name, outer_level)
    return model.import_tunable(outer, name, anchor=2)


class _Offset(torch.nn.Module):
    """``model`` with alpha shifted by ``offset``, so a sweep over [0, 1] covers one segment."""

    def __init__(self, model: AxesModel, offset: float) -> None:
        super().__init__()
        self.model, self.offset = model, offset

    def forward(self, x: torch.Tensor, alpha: float) -> torch.Tensor:
        return self.model(x, alpha=self.offset + float(alpha))


def calibrate_segments(model: AxesModel, data: Path, crop: int | None = 256, limit: int | None = None,
                       grid: str = "0:1:0.05") -> tuple[Calibration, list[dict[str, Any]]]:
    """Best alpha per test level, each level swept in the segment that holds it, made monotone; and the
    card's quality entries (the sweep's PSNR at each level's calibrated alpha, :func:`ship_models.quality_record`)."""
    task = get_task(model.metadata["task"], **model.metadata.get("task_options", {}))
    anchors = model.axis(task.level_name).levels
    assert anchors is not None
    options = model.metadata.get("task_options") or {}
    degradation = ", ".join(f"{k} {v}" for k, v in options.items()) or "the task's defaults"
    levels, alphas, notes, quality = [], [], [], []
    for k in range(len(anchors) - 1):
        lo, hi = anchors[k], anchors[k + 1]
        inside = [v for v in task.test_levels if lo <= v <= hi and (k == 0 or v > lo)]
        if not inside:
            continue
        result = sweep(_Offset(model, k).eval(), data, task, inside, parse_alpha_grid(grid), train_levels=[lo, hi],
                       crop=crop, limit=limit)
        entry = calibrate(result)
        levels += entry["levels"]
        alphas += [k + a for a in entry["alphas"]]
        notes.append(entry["source"])
        records = ship_models.quality_record(result, entry, degradation) if len(entry["levels"]) >= 2 else []
        quality += [{**r, "alpha": round(k + r["alpha"], 4)} for r in records]  # the segment's alpha -> the axis's
    order = sorted(range(len(levels)), key=lambda i: levels[i])
    best = [alphas[i] for i in order]
    monotone = [max(best[: i + 1]) for i in range(len(best))]  # calibrate() orders each segment; this joins them
    source = notes[0] if len(set(notes)) == 1 else "; ".join(notes)
    return Calibration(tuple(levels[i] for i in order), tuple(monotone), f"{source}, per segment"), quality


def card(inner: ftn.TunableModel, outer: ftn.TunableModel, quality: list[dict[str, Any]]) -> dict[str, Any]:
    """The installed file's card fields: the shipped two-anchor file's (licence, data, base and sigma-80 tuner)
    with the sigma-50 tuner's steps and minutes added, today's date, and the calibration sweep's quality."""
    known = outer.metadata.get("budget") or {}
    training = inner.metadata.get("training") or {}
    cpu, gpu, devices = ship_models._stage_minutes(training)
    inner_axis, outer_axis = Levels.from_metadata(inner.metadata).axis(), Levels.from_metadata(outer.metadata).axis()
    steps = {(f"stage 2 (tuner {outer_axis.name} {outer_axis.anchors[-1]:g})" if k == "stage 2 (tuner)" else k): v
             for k, v in (known.get("steps") or {}).items()}
    steps[f"stage 2 (tuner {inner_axis.name} {inner_axis.anchors[-1]:g})"] = training.get("iterations")
    out = {
        "date": datetime.date.today().isoformat(),
        "training_data": outer.metadata.get("training_data") or [],
        "budget": {**known, "steps": steps, "cpuMinutes": round(float(known.get("cpuMinutes") or 0) + cpu, 1),
                   "gpuMinutes": round(float(known.get("gpuMinutes") or 0) + gpu, 1),
                   "devices": sorted(set(known.get("devices") or []) | set(devices))},
        "quality": quality,
    }
    if outer.metadata.get("license"):
        out["license"] = outer.metadata["license"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", default=str(RUNS / "ftn16-s50" / "model.safetensors"))
    # The two-anchor file shipped in session 10 is this run's model (one sha256 in both MANIFESTs).
    parser.add_argument("--outer", default=str(RUNS / "ftn16" / "model.safetensors"))
    parser.add_argument("--out", default=str(RUNS / "anchors3" / "model.safetensors"))
    parser.add_argument("--data", default=str(CALIBRATION_DATA))
    parser.add_argument("--limit", type=int, default=None, help="first N calibration images only (a quick look)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--install", action="store_true", help=f"also ship the result as {TARGET}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (args.inner, args.outer):
        if not Path(path).is_file():
            raise SystemExit(f"ship_denoise_anchors: no model at {path} (train it first: see --help)")
    inner, outer = ftn.load(args.inner).eval(), ftn.load(args.outer).eval()
    model = assemble(inner, outer).eval()
    calibration, quality = calibrate_segments(model, Path(args.data), limit=args.limit)
    meta = {k: v for k, v in inner.metadata.items() if k not in ("calibration", "quality")}
    meta["training"] = {"inner": inner.metadata.get("training"), "outer": outer.metadata.get("training")}
    model.metadata = meta
    model.metadata = model.levels.with_calibration(calibration, model.axis_names[0]).replace_in(meta)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_axes(model, out, **card(inner, outer, quality))
    pairs = ", ".join(f"{v:g} -> {a:.2f}" for v, a in zip(calibration.levels, calibration.alphas))
    print(f"ship_denoise_anchors: wrote {out} (anchors {model.axis(model.axis_names[0]).levels}; calibration {pairs})")
    if args.install:
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, TARGET)
        ship_models.record_shipped(TARGET)
        ship_models.write_card(TARGET)
        print(f"ship_denoise_anchors: shipped {TARGET} ({TARGET.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
