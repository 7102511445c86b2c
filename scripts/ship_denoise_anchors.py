"""A three-anchor ``denoise`` candidate (issue [2/6]): sigma 20 -> 50 -> 80 on the shipped base.

    ftn train configs/ship/denoise-ftn16-s50.yaml --set threads=1 --stop-after 60   # the sigma-50 tuner, in legs (--resume)
    python scripts/ship_denoise_anchors.py          # assemble, calibrate on Set14, write the candidate (not installed)

The shipped two-anchor ``denoise`` reaches sigma 50 only by interpolating between its ends (alpha 0.7), and
that is where it trails FFDNet most (docs/quality.md). Here the sigma-80 tuner of the shipped model (by default
``src/ftn/models/denoise.safetensors`` while it is the two-anchor file) and a
sigma-50 tuner trained on the same frozen base become anchors 2 and 1 of one axis, both from the base
(not chained: ``W_k = FTN_k(f)``), so no tuner is retrained (:meth:`ftn.methods.axes.AxesModel.import_tunable`).
Alpha runs 0 ... 2; the level -> alpha calibration is measured per segment as ``scripts/ship_models.py``
measures it (best alpha on 256 px centre crops of Set14, a grid of 0.05, made monotone), and the file goes to
``reproduce/runs/ship/denoise/anchors3/model.safetensors``, for ``benchmarks.quality.peers`` to set beside CBM3D and FFDNet.
Run from the repository root, with ../shared beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
                       grid: str = "0:1:0.05") -> Calibration:
    """Best alpha per test level, each level swept in the segment that holds it, made monotone."""
    task = get_task(model.metadata["task"], **model.metadata.get("task_options", {}))
    anchors = model.axis(task.level_name).levels
    assert anchors is not None
    levels, alphas, notes = [], [], []
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
    order = sorted(range(len(levels)), key=lambda i: levels[i])
    best = [alphas[i] for i in order]
    monotone = [max(best[: i + 1]) for i in range(len(best))]  # calibrate() orders each segment; this joins them
    return Calibration(tuple(levels[i] for i in order), tuple(monotone), "; ".join(notes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", default=str(RUNS / "ftn16-s50" / "model.safetensors"))
    # The shipped two-anchor file is the ftn16 run's model (one sha256 in both MANIFESTs), and in git.
    parser.add_argument("--outer", default="src/ftn/models/denoise.safetensors")
    parser.add_argument("--out", default=str(RUNS / "anchors3" / "model.safetensors"))
    parser.add_argument("--data", default=str(CALIBRATION_DATA))
    parser.add_argument("--limit", type=int, default=None, help="first N calibration images only (a quick look)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (args.inner, args.outer):
        if not Path(path).is_file():
            raise SystemExit(f"ship_denoise_anchors: no model at {path} (train it first: see --help)")
    inner, outer = ftn.load(args.inner).eval(), ftn.load(args.outer).eval()
    model = assemble(inner, outer).eval()
    calibration = calibrate_segments(model, Path(args.data), limit=args.limit)
    meta = {k: v for k, v in inner.metadata.items() if k not in ("calibration", "quality")}
    meta["training"] = {"inner": inner.metadata.get("training"), "outer": outer.metadata.get("training")}
    model.metadata = meta
    model.metadata = model.levels.with_calibration(calibration, model.axis_names[0]).replace_in(meta)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_axes(model, out)
    pairs = ", ".join(f"{v:g} -> {a:.2f}" for v, a in zip(calibration.levels, calibration.alphas))
    print(f"ship_denoise_anchors: wrote {out} (anchors {model.axis(model.axis_names[0]).levels}; calibration {pairs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
