"""Which term of PD-SR's GAN-level objective makes the dot-grid artefact? (issue [4/6])

At the mini budget every method's GAN level (alpha 1) of ``configs/reproduce/perceptual.yaml`` is
*less* natural than its L1 level (NIQE rises with alpha). The DNI run is a full fine-tune of the base,
as ESRGAN's GAN stage is, so it is the cleanest place to ask why. ``scripts/device_gan_ablation.sh``
retrains it on one GPU with one change each (no GAN term, no VGG term, a weaker or slower
discriminator, a slower generator, a shallower VGG layer); this script measures them side by side:

    python -m benchmarks.gan_ablation      # reproduce/runs/gan-ablation/* -> docs/gan-ablation.md, .png

Rows: the ground truth and MATLAB-bicubic up-sampling (NIQE references), the base at alpha 0, then
every variant at alpha 1: PSNR / SSIM on Y and NIQE (4-pixel border, Set5 + Set14), and the loss terms
of its last logged step.

Each row is measured once and cached beside its run (``ablation-alpha<a>.json``: the scores, the date
and the machine of the measurement; ``ablation-alpha<a>.png``: its crop in the figure), keyed by the
model's sha256 (the manifest line's when the weight is absent, ``benchmarks.reproduce.manifest``), so
the page rebuilds without the weights; a row that is not cached needs its weight, and says how to
retrain it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ftn
from benchmarks.reproduce.cache import cached, write_json
from benchmarks.reproduce.manifest import read_manifest, record_weights, weight_sha256
from benchmarks.reproduce.perceptual import SRData
from benchmarks.reproduce.recipe import ROOT, load_recipe
from benchmarks.speed import machine
from ftn.eval.metrics import psnr, ssim, to_uint8
from ftn.eval.niqe import niqe
from ftn.imageops import imresize

CROP = 4  # the SR convention of the report
#: what each variant of scripts/device_gan_ablation.sh changes (the same list as there)
CHANGES = {
    "reference": "nothing: the recipe's run again (same seed, beside the other variants)",
    "no-gan": "gan_weight 0 (L1 + VGG)",
    "no-vgg": "perceptual_weight 0 (L1 + GAN)",
    "d-mini": "discriminator 'mini' (weaker)",
    "d-lr-1e-5": "discriminator lr 1e-5 (was 1e-4)",
    "g-lr-1e-5": "generator lr 1e-5 (was 1e-4)",
    "vgg-conv4_3": "VGG conv4_3 instead of conv5_3, weight 0.0075 (same start magnitude)",
}


def scores(outputs: list[torch.Tensor], references: list[torch.Tensor]) -> dict[str, float]:
    """Mean PSNR-Y, SSIM-Y and NIQE of ``outputs`` (C, H, W in [0, 1]) against ``references``."""
    ys, refs = [to_uint8(o) for o in outputs], [to_uint8(r) for r in references]
    return {
        "psnr_y": float(np.mean([psnr(y, r, crop_border=CROP, y_channel=True) for y, r in zip(ys, refs)])),
        "ssim_y": float(np.mean([ssim(y, r, crop_border=CROP, y_channel=True) for y, r in zip(ys, refs)])),
        "niqe": float(np.mean([niqe(y, crop_border=CROP) for y in ys])),
    }


def last_log(run: Path) -> tuple[int, str]:
    rows = list(csv.DictReader((run / "log.csv").open()))
    return (int(rows[-1]["step"]), rows[-1].get("loss_parts") or "") if rows else (0, "")


FIGURE_CROP = 96  # px at the centre of Set14/baboon, the figure's tiles
VERSION = 1  # bump when the measurement changes: every cached row is measured again


def centre(image: torch.Tensor, size: int = FIGURE_CROP) -> np.ndarray:
    """The centre ``size`` px of a (C, H, W) image in [0, 1], as HWC uint8 (a tile of the figure)."""
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return to_uint8(image[:, top:top + size, left:left + size]).astype(np.uint8)


def crops_figure(rows: list[tuple[str, np.ndarray]], out: Path) -> None:
    """The tiles (HWC uint8), four to a row, each with its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    fig, axes = plt.subplots(math.ceil(len(rows) / cols), cols, figsize=(2.2 * cols, 2.3 * math.ceil(len(rows) / cols)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, tile) in zip(axes.flat, rows):
        ax.imshow(tile)
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"Set14/baboon, centre {FIGURE_CROP} px, x4: the GAN level (alpha 1) of each variant", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def measure(run: Path, alpha: float, data: SRData, baboon: int, retrain: str) -> tuple[dict[str, Any], np.ndarray]:
    """The scores of ``run``'s model at ``alpha`` on the test images and its baboon tile, from the cache
    beside the run when it holds this model and data, else measured (which needs the weight) and cached."""
    weight = run / "model.safetensors"
    sha = weight_sha256(weight)
    if sha is None:
        raise SystemExit(f"gan_ablation: {run} has neither {weight.name} nor a manifest line; retrain with: {retrain}")
    signature = {**data.signature(), "model_sha256": sha, "alpha": alpha, "crop": CROP, "version": VERSION}
    cache, tile_png = run / f"ablation-alpha{alpha:g}.json", run / f"ablation-alpha{alpha:g}.png"
    hit = cached(cache, signature)
    if hit is not None and tile_png.is_file():
        from PIL import Image

        return hit, np.asarray(Image.open(tile_png).convert("RGB"))
    if not weight.is_file():
        raise SystemExit(f"gan_ablation: the row of {run.name} at alpha {alpha:g} is not cached and needs {weight}, "
                         f"which is absent; retrain with: {retrain}")
    from PIL import Image

    model = ftn.load(weight).eval()
    lrs, hrs = [lr for _, lr, _ in data.items], [hr for _, _, hr in data.items]
    with torch.inference_mode():
        outputs = [model(lr[None], alpha=alpha)[0].clamp(0, 1) for lr in lrs]
    result = {"signature": signature, "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
              "scores": scores(outputs, hrs), "measured": datetime.date.today().isoformat(), "machine": machine()}
    tile = centre(outputs[baboon])
    Image.fromarray(tile).save(tile_png)
    write_json(cache, result)
    return result, tile


def variant_dirs(runs: Path) -> list[Path]:
    """The variants under ``runs``: a folder with its weight or a line in ``runs``' manifest."""
    here = {p.parent for p in runs.glob("*/model.safetensors")}
    listed = {runs / e.run for e in read_manifest(runs).values() if e.file == "model.safetensors"}
    return sorted(here | listed)


def retrain_variant(run: Path) -> str:
    """The one command that trains a variant again (its own config, into its own folder)."""
    rel = run.relative_to(ROOT) if run.is_relative_to(ROOT) else run
    return f"python -m ftn.train.cli {rel}/config.yaml --set out_dir={rel}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gan_ablation", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "reproduce/runs/gan-ablation")
    parser.add_argument("--recipe", type=Path, default=ROOT / "configs/reproduce/perceptual.yaml")
    parser.add_argument("--task", default="sr-cfsnet")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    args.recipe, args.runs, args.out = args.recipe.resolve(), args.runs.resolve(), args.out.resolve()
    os.chdir(ROOT)  # the recipe's paths are relative to the repository root
    torch.set_num_threads(2)

    recipe = load_recipe(args.recipe)
    data = SRData(recipe, args.task)
    lrs, hrs = [lr for _, lr, _ in data.items], [hr for _, _, hr in data.items]
    baboon = next(i for i, (n, _, _) in enumerate(data.items) if n.endswith("baboon"))
    if args.runs.is_dir():
        record_weights(args.runs)  # the manifest lines of variants trained since (their weights stay out of git)
    variants = variant_dirs(args.runs)
    if not variants:
        raise SystemExit(f"no trained variants under {args.runs}: run scripts/device_gan_ablation.sh on a GPU first")

    table = ["| row | what changed | alpha | PSNR-Y | SSIM-Y | NIQE | last step | loss terms at the last step (unweighted) |",
             "|---|---|---|---|---|---|---|---|"]
    figure: list[tuple[str, np.ndarray]] = [("ground truth", centre(hrs[baboon]))]
    measured: list[tuple[str, str]] = []  # (date, machine) of every cached row

    def add(name: str, alpha: str, s: dict[str, float], step: str = "", parts: str = "", change: str = "") -> None:
        ref = name == "ground truth"  # PSNR / SSIM of the reference against itself say nothing
        p, q = ("-", "-") if ref else (f"{s['psnr_y']:.2f}", f"{s['ssim_y']:.4f}")
        table.append(f"| {name} | {change} | {alpha} | {p} | {q} | {s['niqe']:.2f} | {step} | {parts} |")
        print(f"{name:>14} alpha {alpha:>3}: PSNR-Y {s['psnr_y']:.2f}  NIQE {s['niqe']:.2f}", flush=True)

    def row(run: Path, alpha: float, retrain: str) -> tuple[dict[str, float], np.ndarray]:
        result, tile = measure(run, alpha, data, baboon, retrain)
        measured.append((result["measured"], result["machine"]))
        return result["scores"], tile

    add("ground truth", "", scores(hrs, hrs))
    bicubic = [imresize(lr, data.task.scale).clamp(0, 1) for lr in lrs]
    add("bicubic", "", scores(bicubic, hrs))
    figure.append(("bicubic", centre(bicubic[baboon])))
    for i, run in enumerate(variants):
        if i == 0:  # alpha 0 is the frozen base, the same for every variant
            s, tile = row(run, 0.0, retrain_variant(run))
            add("base (L1)", "0", s)
            figure.append(("base, alpha 0", tile))
        step, parts = last_log(run)
        s, tile = row(run, 1.0, retrain_variant(run))
        add(run.name, "1", s, str(step), parts, CHANGES.get(run.name, ""))
        figure.append((f"{run.name}, alpha 1", tile))
    recipe_run = next((r for r in recipe.runs if r.key == f"{args.task}/dni"), None)
    if recipe_run is not None and recipe_run.trained:  # the run-to-run spread of one config
        step, parts = last_log(recipe_run.dir)
        s, _ = row(recipe_run.dir.resolve(), 1.0, recipe_run.retrain_command)
        add("recipe run", "1", s, str(step), parts, f"none: `{recipe_run.dir}` (trained earlier, in another GPU call)")

    args.out.mkdir(parents=True, exist_ok=True)
    crops_figure(figure, args.out / "gan-ablation.png")
    date, where = max(measured)  # the latest measurement: the page says when the numbers were made
    text = [
        "# What makes the dot grid of PD-SR's GAN level? (benchmarks/gan_ablation.py)",
        "",
        f"Measured {date} on {where}; trained by `scripts/device_gan_ablation.sh` on one GPU.",
        f"The `{args.task}` DNI run of `{args.recipe.relative_to(ROOT)}` (a full fine-tune of the L1 base at alpha 1, "
        "as ESRGAN's GAN stage) retrained with one change each, same seed and iterations. "
        f"Test images: {', '.join(data.folders)} ({len(data.items)} images); PSNR / SSIM on Y and NIQE with a "
        f"{CROP}-pixel border. Lower NIQE = more natural. The loss terms are logged unweighted, also those a "
        "variant weights by 0.",
        "",
        *table,
        "",
        "![crops](gan-ablation.png)",
        "",
    ]
    (args.out / "gan-ablation.md").write_text("\n".join(text))
    print(f"wrote {args.out / 'gan-ablation.md'} and gan-ablation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
