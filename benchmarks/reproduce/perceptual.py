"""The perceptual half of the reproduce report (issue [4/6]): PD-controllable SR and style transfer.

Called by ``python -m benchmarks.reproduce`` for a recipe whose tasks are ``sr``, ``style`` or
``style-strength`` (``configs/reproduce/perceptual.yaml``). It evaluates every trained run once
(cached beside the run, keyed by the model file's hash and the settings) and writes its sections and
figures into the report folder:

* **PD-controllable x4 SR**, per network: PSNR and SSIM on Y with a 4-pixel border, NIQE (MATLAB's
  model, ``ftn.eval.niqe``) and RMSE, per alpha and method, on Set5 and Set14 (PIRM, the paper's
  test set, is not obtainable here); the perception-distortion plot (NIQE against RMSE, one curve
  per method over alpha); the colour drift along alpha; crops along alpha.
* **Style transfer**: the grid (rows = methods, columns = alpha) on the same content image, with the
  content and Gram style losses to both styles per alpha; the style-strength variant (one style,
  the level is the style weight).
* **Per-pixel control** (the paper's Figure 9): ``ftn run --alpha-map`` with a left-to-right ramp on
  the PD-SR and the style model, through the command-line tool itself.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ftn
from benchmarks.reproduce.cache import cached
from benchmarks.reproduce.evaluation import model_info
from benchmarks.reproduce.figures import plt as _plt
from benchmarks.reproduce.manifest import model_sha256, require_weight
from benchmarks.reproduce.recipe import retrain_command
from ftn.data.datasets import EvalSet
from ftn.eval.analysis import alpha_path, largest_drift
from ftn.eval.metrics import psnr, ssim, to_uint8
from ftn.tasks import get_task

PERCEPTUAL_TASKS = {"sr", "style", "style-strength"}
EVAL_VERSION = 1
METHOD_LABELS = {"dni": "DNI", "adafm": "AdaFM", "cfsnet": "CFSNet", "ftn": "FTN", "ftn-gc16": "FTN-gc16",
                 "dynamic_net": "Dynamic-Net", "ftn-3000it": "FTN (3000 it)", "dni-3000it": "DNI (3000 it)"}
ARCH_LABELS = {"rrdbnet": "RRDBNet (ESRGAN)", "cfsnet": "CFSNet", "transform_net": "Transform-Net"}


def is_perceptual(recipe: Any) -> bool:
    return any(str(spec.get("task") or name) in PERCEPTUAL_TASKS for name, spec in recipe.tasks.items())


def _task_type(recipe: Any, task_name: str) -> str:
    return str(recipe.tasks[task_name].get("task") or task_name)


def _folders(spec: dict[str, Any]) -> list[str]:
    data = spec["test_data"]
    return [str(d) for d in (data if isinstance(data, (list, tuple)) else [data])]


def _label(run: Any) -> str:
    return METHOD_LABELS.get(run.name, run.name)


def _load(path: Path) -> torch.nn.Module:
    model = ftn.load(path).eval()
    return model.to("cuda") if torch.cuda.is_available() else model


# -- super-resolution --------------------------------------------------------------------------------


class SRData:
    """Low-resolution inputs and high-resolution references of the SR test folders, loaded once."""

    def __init__(self, recipe: Any, task_name: str) -> None:
        spec = recipe.tasks[task_name]
        self.task = get_task(_task_type(recipe, task_name), **(spec.get("task_options") or {}))
        self.folders = _folders(spec)
        limit = recipe.eval.get("limit")
        self.items: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        for folder in self.folders:
            for name, lr, hr in EvalSet(folder, self.task, 0, seed=0, limit=limit):
                self.items.append((f"{Path(folder).name}/{name}", lr, hr))

    def signature(self) -> dict[str, Any]:
        return {"data": self.folders, "images": [n for n, _, _ in self.items], "version": EVAL_VERSION}


def evaluate_sr_run(recipe: Any, run: Any, data: SRData) -> tuple[dict[str, Any], bool]:
    """Per alpha: PSNR/SSIM on Y (border crop), NIQE, RMSE and colour shift, means over the images."""
    from ftn.eval.niqe import niqe

    alphas = [float(a) for a in recipe.eval.get("sr_alphas", [0, 0.25, 0.5, 0.75, 1])]
    crop = int(recipe.eval.get("crop_border", 4))
    signature = {**data.signature(), "model_sha256": model_sha256(run), "alphas": alphas, "crop": crop}
    cache = run.dir / "pd.json"
    hit = cached(cache, signature)
    if hit is not None:
        return hit, True
    require_weight(run, "pd.json (perception-distortion)")
    t0 = time.perf_counter()
    model = _load(run.model_path)
    lrs, hrs = [lr for _, lr, _ in data.items], [hr for _, _, hr in data.items]
    path = alpha_path(model, lrs, hrs, alphas, keep_outputs=True)
    per_alpha = []
    for entry in path:
        ys = [to_uint8(o) for o in entry.pop("outputs")]
        refs = [to_uint8(h) for h in hrs]
        c = crop
        rmse = [math.sqrt(float(np.mean((y[c:-c, c:-c] - r[c:-c, c:-c]) ** 2))) for y, r in zip(ys, refs)]
        per_alpha.append({
            **entry,
            "psnr_y": float(np.mean([psnr(y, r, crop_border=c, y_channel=True) for y, r in zip(ys, refs)])),
            "ssim_y": float(np.mean([ssim(y, r, crop_border=c, y_channel=True) for y, r in zip(ys, refs)])),
            "niqe": float(np.mean([niqe(y, crop_border=c) for y in ys])),
            "rmse_crop": float(np.mean(rmse)),
        })
    result = {"signature": signature, "run": run.key, "path": per_alpha, "wall_s": round(time.perf_counter() - t0, 1)}
    cache.write_text(json.dumps(result, indent=1) + "\n")
    return result, False


def reference_niqe(data: SRData, crop: int) -> dict[str, float]:
    """Mean NIQE of the ground truth and of MATLAB-bicubic up-sampling: where "natural" lies."""
    from ftn.eval.niqe import niqe
    from ftn.imageops import imresize

    hrs = [hr for _, _, hr in data.items]
    bicubic = [imresize(lr, data.task.scale).clamp(0, 1) for _, lr, _ in data.items]
    return {name: float(np.mean([niqe(to_uint8(x), crop_border=crop) for x in images]))
            for name, images in (("ground truth", hrs), ("bicubic", bicubic))}


def sr_crops(recipe: Any, runs: list[Any], data: SRData, image: str, out: Path, size: int = 96) -> None:
    """A grid of crops: rows = methods, columns = alphas, on one test image's centre."""
    plt = _plt()
    alphas = [float(a) for a in recipe.eval.get("sr_alphas", [0, 0.5, 1])]
    name, lr, hr = next(((n, lr, hr) for n, lr, hr in data.items if n.endswith(image)), data.items[0])
    h, w = hr.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    fig, axes = plt.subplots(len(runs) + 1, len(alphas), figsize=(1.6 * len(alphas), 1.6 * (len(runs) + 1)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0][0].imshow(hr[:, top:top + size, left:left + size].permute(1, 2, 0).numpy())
    axes[0][0].set_title("ground truth", fontsize=8)
    up = torch.nn.functional.interpolate(lr[None], scale_factor=data.task.scale, mode="bicubic", align_corners=False)[0]
    axes[0][1].imshow(up.clamp(0, 1)[:, top:top + size, left:left + size].permute(1, 2, 0).numpy())
    axes[0][1].set_title("bicubic", fontsize=8)
    for i, run in enumerate(runs, start=1):
        model = _load(run.model_path)
        for j, a in enumerate(alphas):
            with torch.inference_mode():
                y = model(lr[None].to(next(model.parameters()).device), alpha=a)[0].clamp(0, 1).cpu()
            axes[i][j].imshow(y[:, top:top + size, left:left + size].permute(1, 2, 0).numpy())
            axes[i][j].set_title(f"{_label(run)} a={a:g}", fontsize=7)
    fig.suptitle(f"{name}: centre {size} px, x{data.task.scale}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# -- style transfer ----------------------------------------------------------------------------------


def _content_images(recipe: Any, task_name: str, side: int) -> list[tuple[str, torch.Tensor]]:
    from ftn.data.images import list_images, load_image

    out = []
    for folder in _folders(recipe.tasks[task_name]):
        for path in list_images(folder)[: int(recipe.eval.get("limit") or 1)]:
            img = load_image(path).image[:3]
            h, w = img.shape[-2:]
            k = side / min(h, w)
            size = (max(8, round(h * k) // 4 * 4), max(8, round(w * k) // 4 * 4))
            out.append((path.stem, torch.nn.functional.interpolate(img[None], size=size, mode="area")[0]))
    return out


def evaluate_style_run(recipe: Any, run: Any, content: list[tuple[str, torch.Tensor]]) -> tuple[dict[str, Any], bool]:
    """Outputs along alpha (kept as a PNG strip) and, per alpha, the content loss and the style loss to each level."""
    from PIL import Image

    spec = recipe.tasks[run.task]
    task = get_task(_task_type(recipe, run.task), **(spec.get("task_options") or {}))
    alphas = [float(a) for a in recipe.eval.get("style_alphas", [0, 0.25, 0.5, 0.75, 1])]
    signature = {"model_sha256": model_sha256(run), "alphas": alphas, "content": [n for n, _ in content],
                 "shape": list(content[0][1].shape), "version": EVAL_VERSION}
    cache, strip = run.dir / "style.json", run.dir / "style-strip.png"
    hit = cached(cache, signature)
    if hit is not None and strip.is_file():
        return hit, True
    require_weight(run, "style.json and style-strip.png (style along alpha)")
    model = _load(run.model_path)
    device = next(model.parameters()).device
    objectives = {lv: task.objective(lv).to(device).eval() for lv in run.levels}
    name, x = content[0]
    rows, outputs = [], []
    for a in alphas:
        with torch.inference_mode():
            y = model(x[None].to(device), alpha=a).clamp(0, 1)
        with torch.no_grad():
            entry: dict[str, Any] = {"alpha": a}
            for i, objective in enumerate(objectives.values()):
                _, parts = objective(y, x[None].to(device))
                entry[f"style_loss_level{i + 1}"] = parts["style"]
                entry["content_loss"] = parts["content"]
        rows.append(entry)
        outputs.append(to_uint8(y.cpu()).astype(np.uint8))
    Image.fromarray(np.concatenate(outputs, axis=1)).save(strip)
    result = {"signature": signature, "run": run.key, "image": name, "levels": [task.label(lv) for lv in run.levels],
              "path": rows}
    cache.write_text(json.dumps(result, indent=1) + "\n")
    return result, False


def style_grid(rows: dict[str, tuple[Path, list[str]]], alphas: list[float], content: torch.Tensor, out: Path, title: str) -> None:
    plt = _plt()
    from PIL import Image

    fig, axes = plt.subplots(len(rows), len(alphas) + 1, figsize=(1.9 * (len(alphas) + 1), 1.9 * len(rows) * content.shape[1] / content.shape[2] + 0.4), squeeze=False)
    for i, (label, (strip, levels)) in enumerate(rows.items()):
        img = np.asarray(Image.open(strip))
        w = img.shape[1] // len(alphas)
        axes[i][0].imshow(content.permute(1, 2, 0).numpy())
        axes[i][0].set_ylabel(label, fontsize=8)
        axes[i][0].set_title("content" if i == 0 else "", fontsize=8)
        for j, a in enumerate(alphas):
            axes[i][j + 1].imshow(img[:, j * w:(j + 1) * w])
            if i == 0:
                end = f" ({levels[0]})" if a == 0 else (f" ({levels[1]})" if a == 1 else "")
                axes[i][j + 1].set_title(f"alpha {a:g}{end}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


# -- per-pixel control ---------------------------------------------------------------------------------


def per_pixel_figure(model_path: Path, image: torch.Tensor, out: Path, title: str) -> None:
    """``ftn run --alpha-map`` with a left-to-right ramp (the command-line tool itself), beside alpha 0 and 1."""
    from PIL import Image

    from ftn.cli import main as ftn_main
    from ftn.data.images import load_image, save_image

    plt = _plt()
    h, w = image.shape[-2:]
    with tempfile.TemporaryDirectory() as tmp:
        src, ramp = Path(tmp) / "in.png", Path(tmp) / "ramp.png"
        save_image(src, image)
        Image.fromarray(np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))).save(ramp)
        results = {}
        for label, args in (("alpha 0", ["--alpha", "0"]), ("alpha map: ramp 0 -> 1", ["--alpha-map", str(ramp)]),
                            ("alpha 1", ["--alpha", "1"])):
            dst = Path(tmp) / f"{len(results)}.png"
            code = ftn_main(["run", "-i", str(src), "-o", str(dst), "--model", str(model_path), "--device", "cpu", *args])
            if code != 0:
                raise RuntimeError(f"ftn run {' '.join(args)} failed with exit code {code}")
            results[label] = load_image(dst).image
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2 * h / w + 0.5))
    for ax, (label, img) in zip(axes, results.items()):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


# -- the report ----------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _weights_here(runs: list[Any], figure: Path) -> bool:
    """Whether the weights of ``runs`` are here to draw ``figure`` from the networks; if not, say in one line
    which run is missing and how to retrain it (the figure stays as it is: the report text does not change)."""
    absent = [r for r in runs if not r.model_path.is_file()]
    if absent:
        state = "kept as it is" if figure.is_file() else "not drawn"
        which = f"the weight of {absent[0].key} is" if len(absent) == 1 else \
            f"the weights of {', '.join(r.key for r in absent)} are"
        print(f"reproduce: {figure.name} {state}: {which} absent; retrain with: {retrain_command(absent)}",
              file=sys.stderr, flush=True)
    return not absent


def _budget(run: Any) -> str:
    t = model_info(run)[0]["training"]
    machine = t.get("machine", {})
    where = machine.get("gpu") or machine.get("cpu", "?")
    return f"{t.get('iterations', '?')} it, {t.get('wall_time_s', 0) / 60:.1f} min on {where}"


def build_perceptual_sections(recipe: Any, out: Path, *, progress: bool) -> tuple[str, dict[str, int], list[str]]:
    """The markdown sections, how many evaluations ran / came from the cache, and the figures written."""
    counts = {"evaluated": 0, "cached": 0}
    figures: list[str] = []
    sections: list[str] = []
    ready = {r.key: r for r in recipe.runs if r.trained}
    sr_tasks = [t for t in recipe.tasks if _task_type(recipe, t) == "sr"]
    style_tasks = [t for t in recipe.tasks if _task_type(recipe, t) in ("style", "style-strength")]
    findings: list[str] = []

    if sr_tasks:
        text = ["## 9. PD-controllable x4 super-resolution (perception-distortion)", ""]
        text.append(
            "Stage 1 trains the network with L1 (alpha 0, PSNR-oriented); stage 2 trains each method's tuner with "
            "ESRGAN's objective (L1 + VGG + relativistic GAN, `ftn.tasks.sr`) at alpha 1. Test images: "
            + ", ".join(f"`{Path(f).name}`" for f in _folders(recipe.tasks[sr_tasks[0]]))
            + " (PIRM, the paper's test set, is not obtainable here). PSNR / SSIM on Y with a "
            f"{int(recipe.eval.get('crop_border', 4))}-pixel border crop, NIQE (the MATLAB model, `ftn.eval.niqe`) on Y "
            "with the same crop, RMSE on RGB (0-255) with the same crop; means over the images. Lower NIQE = more natural."
        )
        text.append("")
        pd_curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for task_name in sr_tasks:
            runs = [r for r in recipe.runs if r.task == task_name and r.stage == "tuner" and r.key in ready]
            missing = [r.name for r in recipe.runs if r.task == task_name and r.stage == "tuner" and r.key not in ready]
            if not runs:
                if missing:  # say what is not there rather than leave a silent gap
                    text += [f"### Task `{task_name}`: stage 2 not trained yet", "",
                             f"Missing runs: {', '.join(missing)} (see `docs/investigation.md`).", ""]
                    findings.append(f"PD-SR ({task_name}): stage 2 not trained yet ({', '.join(missing)}).")
                continue
            data = SRData(recipe, task_name)
            arch = runs[0].config.arch
            arch_opts = json.dumps(runs[0].config.arch_options)
            base = recipe.run(task_name, "base")
            text.append(f"### {ARCH_LABELS.get(arch, arch)} `{arch_opts}` (task `{task_name}`)")
            text.append("")
            text.append(f"Budget: stage 1 {_budget(base)}; stage 2 per method below. The networks are the mini "
                        "presets, far smaller than the paper's; compare the shapes of the curves, not absolute values.")
            text.append("")
            rows, curves = [], {}
            for run in runs:
                result, cached = evaluate_sr_run(recipe, run, data)
                counts["cached" if cached else "evaluated"] += 1
                if progress:
                    print(f"evaluated {run.key}{' (cached)' if cached else ''}", flush=True)
                path = result["path"]
                curves[_label(run)] = path
                for e in path:
                    rows.append([_label(run), f"{e['alpha']:g}", f"{e['psnr_y']:.2f}", f"{e['ssim_y']:.4f}",
                                 f"{e['niqe']:.2f}", f"{e['rmse_crop']:.2f}", f"{e['colour_shift_norm']:.2f}"])
            text.append(_table(["method", "alpha", "PSNR-Y", "SSIM-Y", "NIQE", "RMSE", "colour shift norm"], rows))
            text.append("")
            ref = reference_niqe(data, int(recipe.eval.get("crop_border", 4)))
            text.append(f"NIQE references on the same images: ground truth {ref['ground truth']:.2f}, MATLAB-bicubic "
                        f"up-sampling {ref['bicubic']:.2f}.")
            text.append("")
            stage2 = "; ".join(f"{_label(r)} {_budget(r)}" for r in runs)
            text.append(f"Stage 2: {stage2}.")
            text.append("")
            drift = {k: largest_drift([e["colour_shift"] for e in p]) for k, p in curves.items()}
            text.append("Colour drift along alpha (largest distance of the per-channel mean colour shift from its value at "
                        "alpha 0, 0-255): " + ", ".join(f"{k} {v:.2f}" for k, v in drift.items()) + ".")
            text.append("")
            pd_curves[f"{ARCH_LABELS.get(arch, arch)}"] = curves
            crops = out / f"perceptual-sr-crops-{task_name}.png"
            if _weights_here(runs, crops):
                sr_crops(recipe, runs, data, "baboon", crops)
            figures.append(crops.name)
            text += [f"![crops along alpha, {task_name}]({crops.name})", ""]
            end = {k: p[-1] for k, p in curves.items()}
            # the precondition of any comparison: does level 2 look more natural than level 1 at all?
            natural = [k for k, p in curves.items() if p[-1]["niqe"] < p[0]["niqe"]]
            findings.append(
                f"PD-SR ({task_name}): NIQE falls from alpha 0 to alpha 1 (the GAN level is more natural) for "
                + (", ".join(natural) if natural else
                   f"no method: NIQE rises from {curves[next(iter(curves))][0]['niqe']:.2f} at alpha 0 to "
                   f"{min(e['niqe'] for e in end.values()):.2f}-{max(e['niqe'] for e in end.values()):.2f} at alpha 1. "
                   "The GAN stage has not reached a perceptual level at this budget, so the PD curves show where "
                   "its first iterations go (see the crops), not the paper's trade-off; `docs/gan-ablation.md` "
                   "looks into why")
                + "."
            )
            findings.append(
                f"PD-SR ({task_name}): NIQE at alpha 1 (level 2): " + ", ".join(f"{k} {e['niqe']:.2f}" for k, e in end.items())
                + "; lowest: " + min(end, key=lambda k: end[k]["niqe"]) + ". Expected from the paper: AdaFM (linear) "
                "reaches the perceptual level least well; FTN comparable to DNI and CFSNet."
            )
            findings.append(
                f"PD-SR ({task_name}): largest colour drift along alpha: {max(drift, key=drift.get)} ({max(drift.values()):.2f}); "
                "the paper expects DNI's intermediate results to drift in colour more than FTN's."
            )
        if pd_curves:
            plt = _plt()
            fig, axes = plt.subplots(1, len(pd_curves), figsize=(6 * len(pd_curves), 4.5), squeeze=False)
            for ax, (title, curves) in zip(axes[0], pd_curves.items()):
                for label, p in curves.items():
                    ax.plot([e["rmse_crop"] for e in p], [e["niqe"] for e in p], marker="o", ms=3, label=label)
                    ax.annotate("1", (p[-1]["rmse_crop"], p[-1]["niqe"]), fontsize=7)
                ax.annotate("alpha 0", (curves[next(iter(curves))][0]["rmse_crop"], curves[next(iter(curves))][0]["niqe"]), fontsize=7)
                ax.set_xlabel("RMSE (0-255, lower = closer to the ground truth)")
                ax.set_ylabel("NIQE (lower = more natural)")
                ax.set_title(title)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(out / "perceptual-pd.png", dpi=110)
            plt.close(fig)
            figures.append("perceptual-pd.png")
            text += ["Perception-distortion plane, one curve per method over alpha (the paper's Figure 4 analogue):", "",
                     "![perception-distortion](perceptual-pd.png)", ""]
        sections.append("\n".join(text))

    if style_tasks:
        text = ["## 10. Continuous style transfer", ""]
        text.append("Stage 1 trains the Transform-Net on style A (alpha 0); stage 2 trains each method for style B at "
                    "alpha 1 (`ftn.tasks.style`: Johnson et al.'s content + Gram style loss on VGG16). Losses below are "
                    "measured on the content image shown, with the same VGG; style loss to level 1 should rise and to "
                    "level 2 fall as alpha grows.")
        text.append("")
        for task_name in style_tasks:
            runs = [r for r in recipe.runs if r.task == task_name and r.stage == "tuner" and r.key in ready]
            if not runs:
                continue
            content = _content_images(recipe, task_name, side=256)
            alphas = [float(a) for a in recipe.eval.get("style_alphas", [0, 0.25, 0.5, 0.75, 1])]
            grid_rows, rows = {}, []
            for run in runs:
                result, cached = evaluate_style_run(recipe, run, content)
                counts["cached" if cached else "evaluated"] += 1
                grid_rows[_label(run)] = (run.dir / "style-strip.png", result["levels"])
                for e in result["path"]:
                    rows.append([_label(run), f"{e['alpha']:g}", f"{e['content_loss']:.4g}", f"{e['style_loss_level1']:.4g}",
                                 f"{e['style_loss_level2']:.4g}"])
            levels = result["levels"]
            base = recipe.run(task_name, "base")
            kind = "two styles" if _task_type(recipe, task_name) == "style" else "one style, two strengths (the level is the style weight)"
            text.append(f"### `{task_name}`: {levels[0]} -> {levels[1]} ({kind})")
            text.append("")
            text.append(f"Network `{runs[0].config.arch}` {json.dumps(runs[0].config.arch_options)}; stage 1 {_budget(base)}; "
                        "stage 2: " + "; ".join(f"{_label(r)} {_budget(r)}" for r in runs) + ".")
            text.append("")
            name = f"style-grid-{task_name}.png"
            style_grid(grid_rows, alphas, content[0][1], out / name, f"{levels[0]} (alpha 0) -> {levels[1]} (alpha 1)")
            figures.append(name)
            text += [f"![style grid {task_name}]({name})", ""]
            text.append(_table(["method", "alpha", "content loss", f"style loss to {levels[0]}", f"style loss to {levels[1]}"], rows))
            text.append("")
        sections.append("\n".join(text))

    # per-pixel control through the CLI
    pp = ["## 11. Per-pixel control (Figure 9 analogue)", "",
          "`ftn run --alpha-map ramp.png` with a left-to-right ramp (black = alpha 0, white = alpha 1), beside the same "
          "model at alpha 0 and 1 — run through the command-line tool itself. Where the map is constant the output "
          "equals the global-alpha output (tested in `tests/test_perceptual.py`).", ""]
    made = False
    def first_ready(tasks: list[str]) -> list[str]:  # the first task whose FTN run is trained
        return [t for t in tasks if f"{t}/ftn" in ready][:1]

    for task_name, run_name, title in [(t, "ftn", "PD-SR: L1 (left) -> L1+VGG+GAN (right)") for t in first_ready(sr_tasks)] + \
            [(t, "ftn", "style: level 1 (left) -> level 2 (right)") for t in first_ready(style_tasks)]:
        run = recipe.run(task_name, run_name)
        if run is None or run.key not in ready:
            continue
        name = f"perpixel-{task_name}.png"
        if _weights_here([run], out / name):
            if _task_type(recipe, task_name) == "sr":
                data = SRData(recipe, task_name)
                image = next((lr for n, lr, _ in data.items if n.endswith("baboon")), data.items[0][1])
            else:
                image = _content_images(recipe, task_name, side=256)[0][1]
            per_pixel_figure(run.model_path, image, out / name, f"{title} ({run.key})")
        figures.append(name)
        pp += [f"![per-pixel {task_name}]({name})", ""]
        made = True
    if made:
        sections.append("\n".join(pp))
    if findings:
        sections.append("\n".join(["## Perceptual tasks: agreement with the paper", ""] + [f"- {f}" for f in findings]))
    return "\n\n".join(sections), counts, figures
