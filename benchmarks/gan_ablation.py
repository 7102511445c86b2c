"""Which term of PD-SR's GAN-level objective makes the dot-grid artefact? (issue [4/6])

At the mini budget every method's GAN level (alpha 1) of ``configs/reproduce/perceptual.yaml`` is
*less* natural than its L1 level (NIQE rises with alpha). The DNI run is a full fine-tune of the base,
as ESRGAN's GAN stage is, so it is the cleanest place to ask why. ``scripts/device_gan_ablation.sh``
retrains it on one GPU with one change each (no GAN term, no VGG term, a weaker or slower
discriminator, a slower generator, a shallower VGG layer); this script measures them side by side:

    python benchmarks/gan_ablation.py      # reproduce/runs/gan-ablation/* -> docs/gan-ablation.md, .png

Rows: the ground truth and MATLAB-bicubic up-sampling (NIQE references), the base at alpha 0, then
every variant at alpha 1: PSNR / SSIM on Y and NIQE (4-pixel border, Set5 + Set14), and the loss terms
of its last logged step.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import ftn  # noqa: E402
from ftn.imageops import imresize  # noqa: E402
from ftn.eval.metrics import psnr, ssim, to_uint8  # noqa: E402
from ftn.eval.niqe import niqe  # noqa: E402
from reproduce import load_recipe  # noqa: E402
from reproduce_perceptual import SRData  # noqa: E402
from speed import machine  # noqa: E402

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


def crops_figure(rows: list[tuple[str, torch.Tensor]], out: Path, size: int = 96) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    fig, axes = plt.subplots(math.ceil(len(rows) / cols), cols, figsize=(2.2 * cols, 2.3 * math.ceil(len(rows) / cols)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, image) in zip(axes.flat, rows):
        h, w = image.shape[-2:]
        top, left = (h - size) // 2, (w - size) // 2
        ax.imshow(image[:, top:top + size, left:left + size].clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"Set14/baboon, centre {size} px, x4: the GAN level (alpha 1) of each variant", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    variants = sorted(p.parent for p in args.runs.glob("*/model.safetensors"))
    if not variants:
        raise SystemExit(f"no trained variants under {args.runs}: run scripts/device_gan_ablation.sh on a GPU first")

    table = ["| row | what changed | alpha | PSNR-Y | SSIM-Y | NIQE | last step | loss terms at the last step (unweighted) |",
             "|---|---|---|---|---|---|---|---|"]
    figure: list[tuple[str, torch.Tensor]] = [("ground truth", hrs[baboon])]

    def add(name: str, alpha: str, outputs: list[torch.Tensor], step: str = "", parts: str = "", change: str = "") -> None:
        s = scores(outputs, hrs)
        ref = name == "ground truth"  # PSNR / SSIM of the reference against itself say nothing
        p, q = ("-", "-") if ref else (f"{s['psnr_y']:.2f}", f"{s['ssim_y']:.4f}")
        table.append(f"| {name} | {change} | {alpha} | {p} | {q} | {s['niqe']:.2f} | {step} | {parts} |")
        print(f"{name:>14} alpha {alpha:>3}: PSNR-Y {s['psnr_y']:.2f}  NIQE {s['niqe']:.2f}", flush=True)

    add("ground truth", "", hrs)
    bicubic = [imresize(lr, data.task.scale).clamp(0, 1) for lr in lrs]
    add("bicubic", "", bicubic)
    figure.append(("bicubic", bicubic[baboon]))
    for i, run in enumerate(variants):
        model = ftn.load(run / "model.safetensors").eval()
        step, parts = last_log(run)
        with torch.inference_mode():
            if i == 0:  # alpha 0 is the frozen base, the same for every variant
                base = [model(lr[None], alpha=0.0)[0].clamp(0, 1) for lr in lrs]
                add("base (L1)", "0", base)
                figure.append(("base, alpha 0", base[baboon]))
            outputs = [model(lr[None], alpha=1.0)[0].clamp(0, 1) for lr in lrs]
        add(run.name, "1", outputs, str(step), parts, CHANGES.get(run.name, ""))
        figure.append((f"{run.name}, alpha 1", outputs[baboon]))
    recipe_run = next((r for r in recipe.runs if r.key == f"{args.task}/dni"), None)
    if recipe_run is not None and recipe_run.model_path.is_file():  # the run-to-run spread of one config
        model = ftn.load(recipe_run.model_path).eval()
        step, parts = last_log(recipe_run.dir)
        with torch.inference_mode():
            outputs = [model(lr[None], alpha=1.0)[0].clamp(0, 1) for lr in lrs]
        add("recipe run", "1", outputs, str(step), parts, f"none: `{recipe_run.dir}` (trained earlier, in another GPU call)")

    args.out.mkdir(parents=True, exist_ok=True)
    crops_figure(figure, args.out / "gan-ablation.png")
    text = [
        "# What makes the dot grid of PD-SR's GAN level? (benchmarks/gan_ablation.py)",
        "",
        f"Measured {datetime.date.today()} on {machine()}; trained by `scripts/device_gan_ablation.sh` on one GPU.",
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
