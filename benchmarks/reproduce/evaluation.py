"""The cached evaluations of the restoration report: PSNR along alpha per level (``eval.json``), colour
drift and smoothness (``smooth.json``, ``strip.png``), filter analysis (``filters.json``), the model's
training metadata and parameter counts (``info.json``), complexity (``<runs_dir>/complexity.json``).

Each cache is keyed by the model's sha256 (from the manifest when the weight is absent) and the
settings; a miss needs the weight, and without it the evaluation refuses with the retrain command.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ftn
from benchmarks.reproduce.cache import cached, write_json
from benchmarks.reproduce.figures import centre_crop, hstack, save_png
from benchmarks.reproduce.manifest import model_sha256, require_weight
from benchmarks.reproduce.recipe import Recipe, Run
from ftn.data.datasets import EvalSet
from ftn.eval.analysis import alpha_path, filter_analysis, linear_alpha
from ftn.eval.metrics import psnr, to_uint8
from ftn.io import read_metadata
from ftn.tasks import get_task

EVAL_VERSION = 1  # bump when the evaluation protocol changes: every cached evaluation is redone


class EvalData:
    """Degraded/clean test images per (task, level), loaded once and centre-cropped."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._items: dict[tuple[str, float, int | None], list[tuple[str, torch.Tensor, torch.Tensor]]] = {}

    def items(self, task_name: str, level: float, limit: int | None = None) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        limit = self.recipe.eval["limit"] if limit is None else limit
        key = (task_name, float(level), limit)
        if key not in self._items:
            spec = self.recipe.tasks[task_name]
            task = get_task(str(spec.get("task") or task_name), **(spec.get("task_options") or {}))
            data = EvalSet(spec["test_data"], task, level, seed=0, limit=limit)
            crop = self.recipe.eval.get("crop")
            self._items[key] = [(n, centre_crop(d, crop), centre_crop(c, crop)) for n, d, c in data]
        return self._items[key]

    def signature(self, task_name: str) -> dict[str, Any]:
        spec = self.recipe.tasks[task_name]
        return {"data": str(spec["test_data"]), "limit": self.recipe.eval["limit"], "crop": self.recipe.eval.get("crop"),
                "task_options": spec.get("task_options") or {}, "seed": 0, "version": EVAL_VERSION}


def eval_device(recipe: Recipe) -> torch.device:
    """``eval.device``: auto (CUDA when torch sees one), cpu or cuda."""
    choice = str(recipe.eval.get("device") or "auto")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def load_for_eval(recipe: Recipe, path: Path) -> torch.nn.Module:
    """The model at ``path``, in eval mode on the recipe's evaluation device."""
    return ftn.load(path).eval().to(eval_device(recipe))


@torch.inference_mode()
def _mean_psnr(model: torch.nn.Module, items: list, alpha: float | None) -> float:
    device = next(model.parameters()).device
    scores = []
    for _, degraded, clean in items:
        x = degraded.unsqueeze(0).to(device)
        y = model(x) if alpha is None else model(x, alpha=float(alpha))
        scores.append(psnr(y[0].clamp(0, 1).float().cpu(), clean))
    return float(np.mean(scores))


def _input_psnr(items: list) -> float:
    return float(np.mean([psnr(d.clamp(0, 1), c) for _, d, c in items]))


def alpha_grid(steps: int) -> list[float]:
    """0, 1/steps, ..., 1."""
    return [round(i / steps, 6) for i in range(steps + 1)]


def _eval_levels(recipe: Recipe, run: Run) -> list[float]:
    """Levels a run is tested at: its own (from scratch), all of the task's (base), l1, unseen, l2 (tuner)."""
    spec = recipe.tasks[run.task]
    if run.stage == "tuner":
        assert run.levels is not None
        return [run.levels[0], *run.unseen, run.levels[1]]
    if run.name == "base":
        levels = {spec["levels"][0], spec["levels"][1], *spec["unseen"]}
        for other in recipe.runs:
            if other.task == run.task and other.stage == "tuner":
                levels.update([other.levels[1], *other.unseen])  # type: ignore[index]
        l1, l2 = spec["levels"]
        return sorted(levels, key=lambda v: (v - l1) / (l2 - l1))
    return [run.level]


def evaluate_run(recipe: Recipe, run: Run, data: EvalData) -> tuple[dict[str, Any], bool]:
    """PSNR of one run: per level, at a grid of alphas for unseen levels (tuner runs). Cached."""
    levels = _eval_levels(recipe, run)
    grid = alpha_grid(int(recipe.eval["alpha_steps"]))
    signature = {**data.signature(run.task), "model_sha256": model_sha256(run), "levels": levels,
                 "alphas": grid, "refine": bool(recipe.eval["refine"])}
    cache = run.dir / "eval.json"
    hit = cached(cache, signature)
    if hit is not None:
        return hit, True
    require_weight(run, "eval.json (PSNR along alpha)")
    t0 = time.perf_counter()
    model = load_for_eval(recipe, run.model_path)
    result: dict[str, Any] = {"signature": signature, "run": run.key, "stage": run.stage, "levels": {}}
    for level in levels:
        items = data.items(run.task, level)
        entry: dict[str, Any] = {"input_psnr": _input_psnr(items), "images": len(items)}
        if run.stage == "base":
            entry.update(alphas=[None], psnr=[_mean_psnr(model, items, None)])
        else:
            l1, l2 = run.levels  # type: ignore[misc]
            lin = linear_alpha(level, l1, l2)
            seen = level in (l1, l2)
            alphas = [lin] if seen else list(grid)
            if not seen and not any(abs(a - lin) < 1e-9 for a in alphas):
                alphas.append(lin)
            table = {a: _mean_psnr(model, items, a) for a in alphas}
            if recipe.eval["refine"] and not seen:
                step = 1.0 / int(recipe.eval["alpha_steps"])
                best = max(table, key=table.__getitem__)
                for a in (best - step / 2, best + step / 2):
                    if 0.0 <= a <= 1.0 and not any(abs(a - b) < 1e-9 for b in table):
                        table[round(a, 6)] = _mean_psnr(model, items, a)
            alphas = sorted(table)
            entry.update(alphas=alphas, psnr=[table[a] for a in alphas], linear_alpha=lin, seen=seen)
            entry["linear_psnr"] = table[min(alphas, key=lambda a: abs(a - lin))]
        j = int(np.argmax(entry["psnr"]))
        entry["best_alpha"], entry["best_psnr"] = entry["alphas"][j], entry["psnr"][j]
        result["levels"][f"{level:g}"] = entry
    if run.stage == "tuner":  # sanity: alpha 0 must be the stage-1 network
        result["alpha0_level1_psnr"] = result["levels"][f"{run.levels[0]:g}"]["psnr"][0]  # type: ignore[index]
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(cache, result)
    return result, False


def smooth_run(recipe: Recipe, run: Run, data: EvalData) -> tuple[dict[str, Any], bool]:
    """Colour drift and smoothness of a tuner run on level-1 inputs swept over alpha; keeps a crop strip."""
    cfg = recipe.smooth
    grid = alpha_grid(int(recipe.eval["alpha_steps"]))
    strip_alphas = [float(a) for a in cfg["strip_alphas"]]
    alphas = sorted(set(grid) | set(strip_alphas))
    signature = {**data.signature(run.task), "model_sha256": model_sha256(run), "level": cfg["level"],
                 "images": cfg["images"], "alphas": alphas, "strip_crop": cfg["strip_crop"]}
    cache, strip_png = run.dir / "smooth.json", run.dir / "strip.png"
    hit = cached(cache, signature)
    if hit is not None and strip_png.is_file():
        return hit, True
    require_weight(run, "smooth.json and strip.png (colour drift)")
    t0 = time.perf_counter()
    model = load_for_eval(recipe, run.model_path)
    items = data.items(run.task, cfg["level"], limit=int(cfg["images"]))
    path = alpha_path(model, [d for _, d, _ in items], [c for _, _, c in items], alphas)
    result = {"signature": signature, "run": run.key, "images": [n for n, _, _ in items], "path": path}
    # the crop strip: the first image, its centre, at the strip alphas
    _, degraded, _ = items[0]
    crops = []
    with torch.inference_mode():
        for a in strip_alphas:
            out = model(degraded.unsqueeze(0).to(eval_device(recipe)), alpha=a)[0].clamp(0, 1).float().cpu()
            crops.append(to_uint8(centre_crop(out, int(cfg["strip_crop"]))).astype(np.uint8))
    save_png(hstack(crops), strip_png)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(cache, result)
    return result, False


def filters_run(run: Run) -> tuple[dict[str, Any], bool]:
    """Kernel MAE and filter-wise cosine between the level-1 and level-2 kernels of a tuner run. Cached."""
    signature = {"model_sha256": model_sha256(run), "version": EVAL_VERSION}
    cache = run.dir / "filters.json"
    hit = cached(cache, signature)
    if hit is not None:
        return hit, True
    require_weight(run, "filters.json (filter analysis)")
    result = {"signature": signature, "run": run.key, **filter_analysis(ftn.load(run.model_path).eval())}
    write_json(cache, result)
    return result, False


def complexity(recipe: Recipe) -> tuple[dict[str, Any], bool]:
    """Table 4 for the paper's setting (recipe ``complexity``) and for the network trained here."""
    from ftn.eval.complexity import table4

    spec = recipe.complexity
    trained = dict(recipe.raw.get("train", {}).get("arch_options") or {})
    arch = recipe.raw.get("train", {}).get("arch", "adafm_net")
    signature = {"paper_setting": spec, "trained": {"arch": arch, "arch_options": trained, "size": spec.get("size", 256)},
                 "torch": torch.__version__.split("+")[0], "version": EVAL_VERSION}
    cache = recipe.runs_dir / "complexity.json"
    hit = cached(cache, signature)
    if hit is not None:
        return hit, True
    t0 = time.perf_counter()
    paper_rows = table4(spec.get("arch", "adafm_net"), int(spec.get("size", 256)), spec.get("arch_options"))
    ours_rows = table4(arch, int(spec.get("size", 256)), trained)
    result = {"signature": signature, "paper_setting": [dataclasses.asdict(r) for r in paper_rows],
              "trained": [dataclasses.asdict(r) for r in ours_rows], "wall_s": round(time.perf_counter() - t0, 1)}
    recipe.runs_dir.mkdir(parents=True, exist_ok=True)
    write_json(cache, result)
    return result, False


def model_info(run: Run) -> tuple[dict[str, Any], bool]:
    """The run's ``training`` metadata (iterations, wall time, machine) and parameter counts (the base
    network's, the ones this run trained), read from the model file once. Cached in ``info.json``."""
    signature = {"model_sha256": model_sha256(run), "version": EVAL_VERSION}
    cache = run.dir / "info.json"
    hit = cached(cache, signature)
    if hit is not None:
        return hit, True
    require_weight(run, "info.json (training metadata, parameters)")
    model = ftn.load(run.model_path)
    total = sum(p.numel() for p in model.parameters())
    if isinstance(model, ftn.TunableModel):
        tuned = sum(p.numel() for p in model.tuner_parameters())
        params = {"base": total - tuned, "trained": tuned}
    else:
        params = {"base": total, "trained": total}
    training = read_metadata(run.model_path).get("training") or {}
    result = {"signature": signature, "run": run.key, "training": training, "parameters": params}
    write_json(cache, result)
    return result, False
