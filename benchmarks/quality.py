"""Quality of the shipped models: PSNR at the calibrated alpha, at the best alpha, and of the input,
next to the paper's Table 2, and the denoiser beside the classic tools (CBM3D measured side by side,
FFDNet's published figures). Writes docs/quality.md and docs/quality-*.png.

    pip install -e ".[bench]"                          # matplotlib and bm3d (CBM3D)
    python -m benchmarks.quality                       # both shipped models, full test sets, 10 images for CBM3D
    python -m benchmarks.quality --limit 5 --peer-images 2 --out -     # a quick look
    python -m benchmarks.quality --models denoise --out - & python -m benchmarks.quality --models dejpeg --out - ; wait
    python -m benchmarks.quality --reuse               # merge the two parallel runs into docs/quality.md

Denoising is measured in two settings, and every table says which: **photo** (the noisy image clipped to
[0, 255] and rounded to 8 bits, as a file holds it: what users meet, and what the shipped models train
on) and **paper** (unclipped float noise, the paper's and FFDNet's benchmark convention).

Denoising: CBSD68 at sigma 20..80; JPEG: LIVE1 at quality 40..10. PSNR on RGB, no border crop, uint8
rounding (BasicSR conventions). The calibrated alpha comes from the model's metadata, measured on a
different image set (see the model's calibration "source"), so it is a fair, blind-to-the-test choice;
the best alpha is the paper's protocol (grid search on the test set itself).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import ftn
from ftn.data.datasets import EvalSet
from ftn.eval.metrics import psnr
from ftn.eval.sweep import sweep
from ftn.levels import Levels
from ftn.models import resolve
from ftn.tasks import get_task

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "test"

# Paper, Table 2, AdaFM-Net (16 blocks), row FTN-gc16, average PSNR (dB) on CBSD68; "From scratch" for reference.
PAPER = {
    "denoise": {"FTN-gc16": {20: 32.44, 40: 28.78, 60: 27.05, 80: 25.98}, "From scratch": {20: 32.44, 40: 28.90, 60: 26.92, 80: 25.60}},
    "dejpeg": {},  # the paper gives deJPEG numbers only in its supplementary material, which we do not have
}
SETTINGS = {
    "denoise": ("CBSD68", (20, 30, 40, 50, 60, 70, 80)),
    "dejpeg": ("LIVE1", (40, 30, 20, 10)),
}
#: How the test noise is made. "photo": what a noisy photo on disk holds (clipped to [0, 255], 8-bit), the
#: setting users meet; "paper": unclipped float noise, the benchmark convention of the paper and FFDNet.
NOISE_SETTINGS = {"photo": {"clip": True, "quantize": True}, "paper": {}}
#: FFDNet (Zhang et al., TIP 2018), colour model, CBSD68, unclipped noise: the authors' published PSNR (dB).
FFDNET_CBSD68_UNCLIPPED = {25: 31.21, 35: 29.58, 50: 27.96, 75: 26.24}
PEER_SIGMAS = (25, 50, 75)
PEER_CACHE = Path(__file__).resolve().parents[1] / "reproduce" / "runs" / "peers"


class LevelSearch:
    """Mean PSNR over the test set at one level as a function of alpha, each alpha measured once."""

    def __init__(self, model, folder: Path, task, level: float, anchors: list[float], limit: int | None,
                 crop: int | None = None) -> None:
        self.args = (model, folder, task, [level])
        self.kw = {"train_levels": anchors, "limit": limit, "crop": crop, "progress": False}
        self.top = float(len(anchors) - 1)  # alpha runs over [0, K] for K + 1 anchors
        self.values: dict[float, float] = {}
        self.input_psnr = float("nan")
        self.images = 0

    def __call__(self, alpha: float) -> float:
        alpha = round(min(self.top, max(0.0, alpha)), 3)
        if alpha not in self.values:
            result = sweep(*self.args, [alpha], **self.kw)
            self.values[alpha] = result.psnr[0][0]
            self.input_psnr, self.images = result.input_psnr[0], result.images
        return self.values[alpha]

    def best(self) -> tuple[float, float]:
        alpha = max(self.values, key=self.values.__getitem__)
        return alpha, self.values[alpha]


def search_best_alpha(f: LevelSearch, start: float, step: float = 0.1) -> tuple[float, float]:
    """The alpha of the highest mean PSNR, by walking from ``start`` in ``step``s then a parabola.

    PSNR against alpha is smooth and single-peaked at a level (docs/quality-*.png show it), so this
    finds the grid search's maximum with about 4-6 full-set evaluations instead of 11. ``f`` measures
    an alpha when called, and has ``values`` (alpha -> PSNR), ``best()`` and ``top`` (alpha runs over [0, top]).
    """
    for a in (start - step, start, start + step):
        f(a)
    while True:  # walk uphill until the best point has evaluated neighbours on both sides (or is at 0 / K)
        best, _ = f.best()
        lower, upper = round(best - step, 3), round(best + step, 3)
        grew = False
        for a in (lower, upper):
            if 0.0 <= a <= f.top and round(a, 3) not in f.values:
                f(a)
                grew = True
        if not grew:
            break
    best, _ = f.best()
    left, right = max(0.0, best - step), min(f.top, best + step)
    if left < best < right:  # vertex of the parabola through the best point and its neighbours
        y0, y1, y2 = f(left), f(best), f(right)
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            f(best + 0.5 * step * (y0 - y2) / denom)
    return f.best()


def test_task(meta: dict, setting: str | None):
    """The test degradation: the model's own task, with the noise made per ``setting`` for denoising."""
    options = dict(meta.get("task_options", {}))
    if meta["task"] == "denoise":
        options = {k: v for k, v in options.items() if k not in ("clip", "quantize")} | NOISE_SETTINGS[setting or "photo"]
    return get_task(meta["task"], **options)


def evaluate(name: str, limit: int | None, cache_dir: Path, reuse: bool, setting: str | None = None) -> tuple[str, dict]:
    """PSNR of one shipped model over its test set at the calibrated and the best alpha (cached as JSON).

    ``setting`` ("photo" or "paper", denoising only) says how the test noise is made."""
    model = ftn.load(resolve(name)).eval()
    meta = model.metadata
    task = test_task(meta, setting)
    folder, levels = SETTINGS[task.name]
    cache = cache_dir / f"{name}{'-' + setting if setting else ''}-limit{limit or 'all'}.json"
    if reuse and cache.is_file():
        stored = json.loads(cache.read_text())
        return name, {**stored, "task": task, "meta": meta, "setting": setting}
    axis = Levels.from_metadata(meta).axis(task.level_name)
    train_levels = [float(v) for v in axis.anchors]  # anchor k at alpha k; two for the old one-axis form
    calibration = axis.calibration
    start = time.perf_counter()
    rows, curves, images = [], {}, 0
    for level in tqdm(levels, desc=name, unit="level"):
        f = LevelSearch(model, SHARED / folder, task, level, train_levels, limit)
        calibrated = calibration.alpha_at(level) if calibration is not None else None
        if level in train_levels:  # a trained level is measured at its own anchor, as the paper does
            end = float(train_levels.index(level))
            f(end)
            if calibrated is not None:
                f(calibrated)
            best_alpha, best_psnr = f.best()
        else:
            best_alpha, best_psnr = search_best_alpha(f, calibrated if calibrated is not None else 0.5)
        cal_psnr = f(calibrated) if calibrated is not None else None
        rows.append((level, f.input_psnr, calibrated, cal_psnr, best_alpha, best_psnr))
        curves[f"{level:g}"] = sorted(f.values.items())
        images = f.images
    wall = time.perf_counter() - start
    stored = {"folder": folder, "rows": rows, "curves": curves, "images": images, "wall": wall,
              "train_levels": train_levels, "evaluations": sum(len(c) for c in curves.values())}
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(stored))
    return name, {**stored, "task": task, "meta": meta, "setting": setting}


def _cbm3d(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """CBM3D (PyPI ``bm3d``, the authors' profile 'np' in the opponent colour space) told the nominal sigma,
    as a user of the tool would run it on a noisy file."""
    try:
        from bm3d import bm3d_rgb
    except ImportError:
        raise SystemExit("quality: CBM3D needs the bm3d package: pip install -e '.[bench]' (or --peer-images 0)") from None
    out = bm3d_rgb(noisy.permute(1, 2, 0).double().numpy(), sigma / 255.0)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float().clamp(0, 1)


def peers(name: str, images: int, reuse_cbm3d: bool = True) -> dict:
    """The shipped denoiser beside the tools a user would pick instead, on the same noisy images.

    * **photo** setting (clipped, 8-bit noisy files; the first ``images`` of CBSD68): ftn at the alpha
      ``ftn run --level SIGMA`` uses (the model's calibration) and CBM3D, side by side in this run.
      CBM3D takes ~13 s an image here, so its PSNRs are cached per (image, sigma, noise seed) in
      ``reproduce/runs/peers/cbm3d.json``: they do not change when the model does.
    * **paper** setting (unclipped float noise, all of CBSD68): ftn beside FFDNet's published figures, also
      with the noisy input clamped to [0, 1] first (a photo-trained model never saw values outside it).
    """
    from ftn.levels import level_to_alpha

    model = ftn.load(resolve(name)).eval()
    meta = model.metadata
    cache_path = PEER_CACHE / "cbm3d.json"
    cbm3d_cache = json.loads(cache_path.read_text()) if (reuse_cbm3d and cache_path.is_file()) else {}
    rows = []
    for sigma in PEER_SIGMAS:
        alpha, _ = level_to_alpha(meta, sigma)
        ours, theirs, inputs = [], [], []
        photo = EvalSet(SHARED / "CBSD68", test_task(meta, "photo"), sigma, limit=images)
        for stem, noisy, clean in tqdm(photo, desc=f"peers sigma {sigma}", unit="img", leave=False):
            with torch.inference_mode():
                ours.append(psnr(model(noisy[None], alpha=alpha).clamp(0, 1)[0], clean))
            inputs.append(psnr(noisy, clean))
            key = f"{stem}|{sigma:g}|seed0|photo"
            if key not in cbm3d_cache:
                cbm3d_cache[key] = psnr(_cbm3d(noisy, sigma), clean)
                PEER_CACHE.mkdir(parents=True, exist_ok=True)
                cache_path.write_text(json.dumps(cbm3d_cache, indent=0, sort_keys=True) + "\n")
            theirs.append(cbm3d_cache[key])
        paper = EvalSet(SHARED / "CBSD68", test_task(meta, "paper"), sigma)
        unclipped, clamped = [], []
        with torch.inference_mode():
            for _, noisy, clean in paper:
                unclipped.append(psnr(model(noisy[None], alpha=alpha).clamp(0, 1)[0], clean))
                # The same noisy image clamped to [0, 1] first: what the model was trained on, less the 8-bit rounding.
                clamped.append(psnr(model(noisy.clamp(0, 1)[None], alpha=alpha).clamp(0, 1)[0], clean))
        rows.append({"sigma": sigma, "alpha": alpha, "input": float(np.mean(inputs)), "ftn_photo": float(np.mean(ours)),
                     "cbm3d_photo": float(np.mean(theirs)), "ftn_paper": float(np.mean(unclipped)),
                     "ftn_paper_clamped": float(np.mean(clamped)),
                     "ffdnet_paper": FFDNET_CBSD68_UNCLIPPED.get(sigma), "images_photo": len(photo), "images_paper": len(paper)})
    return {"name": name, "rows": rows}


def peers_markdown(result: dict) -> list[str]:
    rows = result["rows"]
    n_photo, n_paper = rows[0]["images_photo"], rows[0]["images_paper"]
    out = [f"### `{result['name']}` beside CBM3D and FFDNet", "",
           f"**Photo setting** (the noisy image as a file holds it: clipped to [0, 255], 8-bit), the first {n_photo} CBSD68 "
           "images, the same noisy files for both, measured side by side in one run. ftn at the alpha `ftn run --level SIGMA` "
           "picks (the model's calibration); CBM3D (PyPI `bm3d`, profile 'np', opponent colour space) told the nominal sigma. "
           f"**Paper setting** (unclipped float noise), all {n_paper} CBSD68 images: ftn beside FFDNet's published CBSD68 "
           "figures (Zhang et al. 2018, colour model); \"clamped\" is ftn given the same unclipped noisy image clamped to "
           "[0, 1] first (the clipping its training data had). PSNR in dB on RGB, uint8, no border crop.", "",
           "| sigma | alpha | input (photo) | ftn (photo) | CBM3D (photo) | ftn - CBM3D | ftn (paper) | ftn (paper, clamped) "
           "| FFDNet published (paper) | clamped - FFDNet |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ff = r["ffdnet_paper"]
        out.append(f"| {r['sigma']} | {r['alpha']:.2f} | {r['input']:.2f} | {r['ftn_photo']:.2f} | {r['cbm3d_photo']:.2f} | "
                   f"{r['ftn_photo'] - r['cbm3d_photo']:+.2f} | {r['ftn_paper']:.2f} | {r['ftn_paper_clamped']:.2f} | "
                   f"{ff if ff is not None else '-'} | {(r['ftn_paper_clamped'] - ff) if ff is not None else float('nan'):+.2f} |")
    return out + [""]


def plot_curves(name: str, ev: dict, path: Path) -> None:
    """PSNR against alpha at every level: the alphas the search measured, calibrated and best marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = ev["task"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (level, _inp, ca, cp, ba, bp) in ev["rows"]:
        pts = ev["curves"][f"{level:g}"]
        line, = ax.plot([a for a, _ in pts], [v for _, v in pts], marker=".", label=task.label(level))
        ax.plot([ba], [bp], marker="*", ms=11, color=line.get_color())
        if ca is not None:
            ax.plot([ca], [cp], marker="o", ms=7, mfc="none", color=line.get_color())
    ax.set_xlabel("alpha")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{name}: PSNR against alpha (star: best, circle: calibrated)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _slug(name: str, ev: dict) -> str:
    return f"{name}-{ev['setting']}" if ev.get("setting") else name


SETTING_WORDS = {
    "photo": "**photo setting**: the noisy test images as files hold them (clipped to [0, 255], 8-bit), what `ftn run` meets",
    "paper": "**paper setting**: unclipped float noise, the benchmark convention of the paper (and of FFDNet's figures)",
}


def to_markdown(evaluations: list[tuple[str, dict]], limit: int | None, peer_results: dict[str, dict] | None = None) -> str:
    out = [
        "# Quality of the shipped models",
        "",
        f"Generated by `python -m benchmarks.quality` on {datetime.date.today().isoformat()} "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}). "
        "PSNR in dB on RGB, no border crop, uint8 rounding; test degradations are seeded per image, so the numbers reproduce.",
        "",
    ]
    if limit:
        out += [f"**Subset run (`--limit {limit}`):** only the first {limit} images of each test set; the paper's numbers are "
                "averages over the whole set, so the comparison is indicative only. Run without `--limit` for the full table.", ""]
    for name, ev in evaluations:
        task, meta = ev["task"], ev["meta"]
        training = meta.get("training", {})
        recipe = meta.get("recipe", {})
        setting = ev.get("setting")
        # The paper's figures use unclipped noise: they sit beside the paper-setting table only.
        paper = PAPER.get(task.name, {}) if setting != "photo" else {}
        anchors = ev["train_levels"]  # anchor k at alpha k
        title = f"## `{name}`: {task.name}, {' -> '.join(task.label(float(v)) for v in anchors)}"
        out += [title + (f" ({setting} setting)" if setting else ""), ""]
        if setting:
            out += [f"Test noise: {SETTING_WORDS[setting]}. The model was trained on "
                    f"{'photo-true (clipped, 8-bit)' if meta.get('task_options', {}).get('quantize') else 'unclipped float'} noise.", ""]
        out.append(
            f"Network: {meta.get('arch', recipe.get('arch', '?'))} {recipe.get('arch_options', '')}, method "
            f"{recipe.get('method', 'ftn')} {recipe.get('method_options', '')}. Training budget: {training.get('budget', 'see metadata')}."
        )
        cal = Levels.from_metadata(meta).axis(task.level_name).calibration
        out += ["", f"Calibration source: {cal.source if cal is not None else 'none'}.", ""]
        header = f"| {task.level_name} | input | calibrated alpha | PSNR at calibrated alpha | best alpha | PSNR at best alpha |"
        sep = "|---|---|---|---|---|---|"
        for row_name in paper:
            header += f" paper {row_name} |"
            sep += "---|"
        ends = "alpha 0 or 1" if len(anchors) == 2 else f"alpha 0 ... {len(anchors) - 1}"
        out += [f"{ev['images']} images of {ev['folder']}{' (first ' + str(limit) + ')' if limit else ''}; trained levels at their "
                f"own anchor ({ends}), as the paper; unseen levels: best alpha searched from the calibrated one in steps "
                "of 0.1, then the vertex of the parabola through the best three (each alpha a mean over the whole set); "
                f"{ev['evaluations']} full-set evaluations, wall time {ev['wall'] / 60:.0f} min.", "", header, sep]
        for level, inp, ca, cp, ba, bp in ev["rows"]:
            unseen = "" if level in anchors else "*"
            line = f"| {level:g}{unseen} | {inp:.2f} | {ca:.2f} | {cp:.2f} | {ba:.2f} | {bp:.2f} |" if ca is not None else f"| {level:g}{unseen} | {inp:.2f} | - | - | {ba:.2f} | {bp:.2f} |"
            for values in paper.values():
                line += f" {values[int(level)]:.2f} |" if int(level) in values else " - |"
            out.append(line)
        out += ["", "\\* unseen level (between two trained levels).", "", f"![PSNR against alpha](quality-{_slug(name, ev)}.png)", ""]
        if peer_results and name in peer_results and setting != "paper":
            out += peers_markdown(peer_results[name])
        if setting == "photo":
            out += ["The paper's Table 2 figures (unclipped noise) are beside the paper-setting table below.", ""]
        elif not paper:
            out += ["The paper reports deJPEG results only in its supplementary material, which is not available here, so there is no paper column.", ""]
    return "\n".join(out + provenance_markdown())


def provenance_markdown() -> list[str]:
    """How the shipped networks were chosen (the equal-time architecture study) and what their training cost
    (the legs of the long runs), from the study's results (docs/arch-study.json) and the run folders."""
    from benchmarks import arch_study, training_budget

    out = ["## How the shipped networks were chosen and trained", ""]
    study = Path(__file__).resolve().parents[1] / "docs" / "arch-study.json"
    if study.is_file():
        results = json.loads(study.read_text())
        out += [f"**Base network.** Candidates trained for {results[0]['minutes']:g} min each of this CPU at sigma 50 "
                f"(photo-true), tested on the first {results[0]['test_images']} CBSD68 images "
                "(`python -m benchmarks.arch_study`, details in [arch-study.md](arch-study.md)):", ""]
        out += arch_study.results_table(results) + ["", "![PSNR against training time; PSNR against inference cost](arch-study.png)", ""]
    else:
        out += ["**Base network.** The architecture study has not been run here (`python -m benchmarks.arch_study`).", ""]
    out += ["**Training budget.** The long runs of `configs/ship/`, in legs on the CPU and on lent GPUs "
            "(`python -m benchmarks.training_budget`, the plan in [training.md](training.md)):", ""]
    out += training_budget.budget_tables(training_budget.stage_states())
    return out + ["", "![validation PSNR against training time](training.png)", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="shipped model names (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--cache", default="runs/quality", help="folder for per-model JSON results")
    parser.add_argument("--reuse", action="store_true", help="reuse cached per-model results (e.g. of parallel runs)")
    parser.add_argument("--out", default="docs/quality.md", help="markdown file, or - for stdout only")
    parser.add_argument("--peer-images", type=int, default=10,
                        help="CBSD68 images for the side-by-side CBM3D comparison (0: skip it; ~13 s per image and sigma, cached)")
    args = parser.parse_args(argv)
    from ftn.models import available

    if not SHARED.is_dir():
        print(f"the test images are missing: {SHARED} (the shared/ folder beside the project)", file=sys.stderr)
        return 2
    names = args.models or [n for n, path in sorted(available().items())  # the restoration models
                            if ftn.io.read_metadata(path).get("task") in SETTINGS]
    evaluations = []
    for name in names:
        if ftn.io.read_metadata(resolve(name)).get("task") == "denoise":
            evaluations += [evaluate(name, args.limit, Path(args.cache), args.reuse, setting) for setting in NOISE_SETTINGS]
        else:
            evaluations.append(evaluate(name, args.limit, Path(args.cache), args.reuse))
    peer_results = {name: peers(name, args.peer_images) for name, ev in evaluations
                    if ev["task"].name == "denoise" and ev.get("setting") == "photo" and args.peer_images > 0}
    text = to_markdown(evaluations, args.limit, peer_results)
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for name, ev in evaluations:
            plot_curves(name, ev, out.parent / f"quality-{_slug(name, ev)}.png")
        out.write_text(text + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
