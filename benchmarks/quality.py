"""Quality of the shipped models: PSNR at the calibrated alpha, at the best alpha, and of the input,
next to the paper's Table 2. Writes docs/quality.md and docs/quality-*.png.

    python benchmarks/quality.py                       # both shipped models, full test sets
    python benchmarks/quality.py --limit 5 --out -     # a quick look
    python benchmarks/quality.py --models denoise --out - & python benchmarks/quality.py --models dejpeg --out - ; wait
    python benchmarks/quality.py --reuse               # merge the two parallel runs into docs/quality.md

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
from ftn.eval.sweep import sweep
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


class LevelSearch:
    """Mean PSNR over the test set at one level as a function of alpha, each alpha measured once."""

    def __init__(self, model, folder: Path, task, level: float, train_levels: list[float], limit: int | None) -> None:
        self.args = (model, folder, task, [level])
        self.kw = {"train_levels": train_levels, "limit": limit, "progress": False}
        self.values: dict[float, float] = {}
        self.input_psnr = float("nan")
        self.images = 0

    def __call__(self, alpha: float) -> float:
        alpha = round(min(1.0, max(0.0, alpha)), 3)
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
    finds the grid search's maximum with about 4-6 full-set evaluations instead of 11.
    """
    for a in (start - step, start, start + step):
        f(a)
    while True:  # walk uphill until the best point has evaluated neighbours on both sides (or is at 0 / 1)
        best, _ = f.best()
        lower, upper = round(best - step, 3), round(best + step, 3)
        grew = False
        for a in (lower, upper):
            if 0.0 <= a <= 1.0 and round(a, 3) not in f.values:
                f(a)
                grew = True
        if not grew:
            break
    best, _ = f.best()
    left, right = max(0.0, best - step), min(1.0, best + step)
    if left < best < right:  # vertex of the parabola through the best point and its neighbours
        y0, y1, y2 = f(left), f(best), f(right)
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            f(best + 0.5 * step * (y0 - y2) / denom)
    return f.best()


def evaluate(name: str, limit: int | None, cache_dir: Path, reuse: bool) -> tuple[str, dict]:
    """PSNR of one shipped model over its test set at the calibrated and the best alpha (cached as JSON)."""
    model = ftn.load(resolve(name)).eval()
    meta = model.metadata
    task = get_task(meta["task"], **meta.get("task_options", {}))
    folder, levels = SETTINGS[task.name]
    cache = cache_dir / f"{name}-limit{limit or 'all'}.json"
    if reuse and cache.is_file():
        stored = json.loads(cache.read_text())
        return name, {**stored, "task": task, "meta": meta}
    train_levels = [float(level[task.level_name]) for level in meta["levels"]]
    calibration = meta.get("calibration")
    start = time.perf_counter()
    rows, curves, images = [], {}, 0
    for level in tqdm(levels, desc=name, unit="level"):
        f = LevelSearch(model, SHARED / folder, task, level, train_levels, limit)
        calibrated = float(np.interp(level, calibration["levels"], calibration["alphas"])) if calibration else None
        if level in train_levels:  # a trained level is measured at its own end, as the paper does
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
    return name, {**stored, "task": task, "meta": meta}


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


def to_markdown(evaluations: list[tuple[str, dict]], limit: int | None) -> str:
    out = [
        "# Quality of the shipped models",
        "",
        f"Generated by `python benchmarks/quality.py` on {datetime.date.today().isoformat()} "
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
        paper = PAPER.get(task.name, {})
        out += [f"## `{name}`: {task.name}, {' -> '.join(task.label(float(end[task.level_name])) for end in meta['levels'])}", ""]
        out.append(
            f"Network: {meta.get('arch', recipe.get('arch', '?'))} {recipe.get('arch_options', '')}, method "
            f"{recipe.get('method', 'ftn')} {recipe.get('method_options', '')}. Training budget: {training.get('budget', 'see metadata')}."
        )
        cal = meta.get("calibration", {})
        out += ["", f"Calibration source: {cal.get('source', 'none')}.", ""]
        header = f"| {task.level_name} | input | calibrated alpha | PSNR at calibrated alpha | best alpha | PSNR at best alpha |"
        sep = "|---|---|---|---|---|---|"
        for row_name in paper:
            header += f" paper {row_name} |"
            sep += "---|"
        out += [f"{ev['images']} images of {ev['folder']}{' (first ' + str(limit) + ')' if limit else ''}; trained levels at their "
                "own end (alpha 0 or 1), as the paper; unseen levels: best alpha searched from the calibrated one in steps "
                "of 0.1, then the vertex of the parabola through the best three (each alpha a mean over the whole set); "
                f"{ev['evaluations']} full-set evaluations, wall time {ev['wall'] / 60:.0f} min.", "", header, sep]
        l1, l2 = ev["train_levels"]
        for level, inp, ca, cp, ba, bp in ev["rows"]:
            unseen = "" if level in (l1, l2) else "*"
            line = f"| {level:g}{unseen} | {inp:.2f} | {ca:.2f} | {cp:.2f} | {ba:.2f} | {bp:.2f} |" if ca is not None else f"| {level:g}{unseen} | {inp:.2f} | - | - | {ba:.2f} | {bp:.2f} |"
            for values in paper.values():
                line += f" {values[int(level)]:.2f} |" if int(level) in values else " - |"
            out.append(line)
        out += ["", "\\* unseen level (between the two trained levels).", "", f"![PSNR against alpha](quality-{name}.png)", ""]
        if not paper:
            out += ["The paper reports deJPEG results only in its supplementary material, which is not available here, so there is no paper column.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="shipped model names (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--cache", default="runs/quality", help="folder for per-model JSON results")
    parser.add_argument("--reuse", action="store_true", help="reuse cached per-model results (e.g. of parallel runs)")
    parser.add_argument("--out", default="docs/quality.md", help="markdown file, or - for stdout only")
    args = parser.parse_args(argv)
    from ftn.models import available

    if not SHARED.is_dir():
        print(f"the test images are missing: {SHARED} (the shared/ folder beside the project)", file=sys.stderr)
        return 2
    names = args.models or [n for n, path in sorted(available().items())  # the restoration models
                            if ftn.io.read_metadata(path).get("task") in SETTINGS]
    evaluations = [evaluate(name, args.limit, Path(args.cache), args.reuse) for name in names]
    text = to_markdown(evaluations, args.limit)
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for name, ev in evaluations:
            plot_curves(name, ev, out.parent / f"quality-{name}.png")
        out.write_text(text + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
