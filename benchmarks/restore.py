"""The multi-axis ``restore`` model on its grid of settings, beside what a user would run instead (issue [4/6]).
Writes docs/restore.md, docs/restore.json (every number) and docs/restore.png (heat maps).

    pip install -e ".[bench]"                      # matplotlib and bm3d (CBM3D)
    python -m benchmarks.restore                   # CBSD68 and LIVE1, first 8 images, 128 px centre crops, CBM3D on 4:
                                                   # about 15 min on 2 idle cores, 10 of them CBM3D (cached for reruns)
    python -m benchmarks.restore --images 2 --crop 64 --cbm3d-images 0 --out /tmp/restore.md   # a smoke run

The grid is ``ftn.tasks.restore.Restore.test_levels`` (sigma 0, 15, 30, 50 x JPEG quality 90, 50, 30,
10): photo-true noise (clipped, 8-bit), then JPEG, made by ``Restore().degrade`` on each centre crop.
The noise is seeded by (set, image, crop, sigma, seed) only, so the four cells of one sigma share their
noise and differ by the JPEG alone; every method sees the same degraded inputs. Methods, per cell:

* **restore, calibrated**: the multi-axis model at the alpha vector ``ftn run --level sigma=S,quality=Q``
  uses (:func:`ftn.levels.parse_setting`, through each axis's calibration);
* **restore, best**: the best mean PSNR over the calibrated vector's neighbourhood (offsets -0.25, 0,
  +0.25 per axis, clipped to [0, K]), chosen on the test images themselves (the paper's protocol: an
  upper bound of what a better calibration could give);
* **restore, --auto**: the model at the setting ``ftn run --auto`` chooses from the input's JPEG file
  alone (:func:`ftn.api.choose_setting`: the noise sigma from the file's DCT coefficients, the quality
  from its tables), per image; the file is written again from the same noisy 8-bit crop by the same
  encoder (checked: it decodes to the very input);
* **dedicated**: plain networks fine-tuned at one setting from the same base with the same budget
  (``--runs``: folders ``dedicated-*`` and ``base``, each with ``config.yaml`` and ``model.safetensors``);
* **denoise -> dejpeg**: the two one-axis shipped models one after the other, each at the setting's
  level through its calibration (a level outside a model's range is clamped to its nearest end; sigma
  0 skips the denoiser), the image saved to 8 bits between them, as two ``ftn run`` calls would;
* **CBM3D** (PyPI ``bm3d``, as ``benchmarks.quality`` runs it) told the nominal sigma, on the same input
  and, as a reference, on the same noise without JPEG; n/a at sigma 0. Its PSNRs are cached in
  ``reproduce/runs/restore-bench/cbm3d.json`` (they do not depend on our models).

PSNR in dB on RGB, no border crop, on the output rounded to 8 bits as a file holds it (``ftn.eval.metrics``,
as ``benchmarks.quality``). A missing model's column reads "not run (no model at ...)".
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT.parent / "shared" / "data" / "test"
RUNS = ROOT / "reproduce" / "runs" / "ship" / "restore"
CBM3D_CACHE = ROOT / "reproduce" / "runs" / "restore-bench" / "cbm3d.json"
SETS = ("CBSD68", "LIVE1")
#: The neighbourhood of the calibrated alpha vector searched for the best alpha, per axis.
OFFSETS = (-0.25, 0.0, 0.25)
#: The columns of a set's table: key -> title.
METHODS = {
    "restore": "restore, calibrated",
    "restore_best": "restore, best",
    "restore_auto": "restore, --auto",
    "dedicated": "dedicated",
    "cascade": "denoise → dejpeg",
    "cbm3d": "CBM3D",
    "cbm3d_nojpeg": "CBM3D, no JPEG",
}
#: The methods that see the same input as ``restore``: the candidates for a cell's best other method.
PEERS = ("dedicated", "cascade", "cbm3d")
SHORT = {"dedicated": "ded.", "cascade": "casc.", "cbm3d": "CBM3D"}

Setting = tuple[float, float]  # (sigma, quality)


def cell_key(setting: Setting) -> str:
    """``"sigma=15,quality=50"``: a cell's name in the JSON and the CBM3D cache."""
    return f"sigma={setting[0]:g},quality={setting[1]:g}"


def grid() -> list[Setting]:
    """The restore task's test settings (sigma, quality), in its order."""
    from ftn.tasks.restore import Restore

    return [(float(c["sigma"]), float(c["quality"])) for c in Restore.test_levels]


# -- models --------------------------------------------------------------------------------------


@dataclass
class Model:
    """A model file the benchmark runs, or why it does not (``missing``)."""

    role: str
    path: Path | None = None
    net: Any = None
    sha256: str = ""
    missing: str = ""
    setting: tuple[float, float | None] | None = None  # dedicated runs: the setting they were trained at


def _shown(path: Path | str) -> str:
    """A path as the doc shows it: relative to the repository where it lies inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def open_model(role: str, name_or_path: str, loader: Callable[[Path], Any]) -> Model:
    """Load a shipped model by name or a file by path; a missing file gives a model that is not run."""
    from ftn.infer.report import sha256_file
    from ftn.models import MODELS_DIR, resolve

    try:
        path = resolve(name_or_path)
    except FileNotFoundError:
        shipped = os.sep not in name_or_path and not Path(name_or_path).suffix
        where = MODELS_DIR / f"{name_or_path}.safetensors" if shipped else Path(name_or_path)
        return Model(role, missing=f"not run (no model at {_shown(where)})")
    return Model(role, path, loader(path).eval(), sha256_file(path)[:12])


def config_setting(config: dict[str, Any]) -> tuple[float, float | None] | None:
    """The (sigma, quality) a stage-1 run was trained at, from its config; None for other tasks.

    ``restore``: its level is the setting; ``dejpeg`` at quality q is (0, q) (no noise); ``denoise`` at
    sigma s is (s, None) (no JPEG: off the grid)."""
    from ftn.tasks.restore import Restore

    task, level = config.get("task"), config.get("level")
    if task == "restore":
        setting = Restore().check_level(level)
        return setting["sigma"], setting["quality"]
    if task == "dejpeg":
        return 0.0, float(level)
    if task == "denoise":
        return float(level), None
    return None


def find_dedicated(runs: Path) -> list[Model]:
    """The dedicated single-setting runs under ``runs`` (``base`` and ``dedicated-*``), loaded where
    their ``model.safetensors`` exists (else marked not run)."""
    import yaml

    import ftn
    from ftn.infer.report import sha256_file

    folders = [runs / "base"] + sorted(runs.glob("dedicated-*")) if runs.is_dir() else []
    found = []
    for folder in folders:
        config_path = folder / "config.yaml"
        if not config_path.is_file():
            continue
        try:
            setting = config_setting(yaml.safe_load(config_path.read_text()) or {})
        except (ValueError, TypeError, AttributeError) as err:
            print(f"restore: skipping {_shown(config_path)}: {err}", file=sys.stderr)
            continue
        if setting is None:
            continue
        path = folder / "model.safetensors"
        if path.is_file():
            found.append(Model(folder.name, path, ftn.load(path).eval(), sha256_file(path)[:12], setting=setting))
        else:
            found.append(Model(folder.name, missing=f"not run (no model at {_shown(path)})", setting=setting))
    return found


def calibrated_alpha(model: Any, setting: Setting) -> tuple[dict[str, float], list[str]]:
    """The alpha vector ``ftn run --level sigma=S,quality=Q`` uses for the multi-axis model, and its notes
    (levels clamped to a calibrated range)."""
    from ftn.levels import parse_setting

    asked = {"sigma": setting[0], "quality": setting[1]}
    text = ",".join(f"{a.name}={asked[a.name]:g}" for a in model.axes if a.name in asked)
    values = parse_setting([(a.name, a.segments) for a in model.axes], model.levels, level=text)
    return {name: float(v.alpha or 0.0) for name, v in values.items()}, [v.note for v in values.values() if v.note]


def neighbourhood(model: Any, centre: dict[str, float]) -> list[dict[str, float]]:
    """The calibrated vector first, then every combination of ``OFFSETS`` per axis, clipped to [0, K]."""
    per_axis = [[min(float(a.segments), max(0.0, centre[a.name] + d)) for d in OFFSETS] for a in model.axes]
    out, seen = [dict(centre)], {tuple(round(v, 6) for v in centre.values())}
    for combo in itertools.product(*per_axis):
        key = tuple(round(v, 6) for v in combo)
        if key not in seen:
            seen.add(key)
            out.append(dict(zip(model.axis_names, combo, strict=True)))
    return out


def one_axis_alpha(net: Any, level: float) -> tuple[float, str]:
    """The alpha of a one-axis model (two anchors or more) at ``level``, clamped to its range, and the note
    that says so (as ``ftn run --level`` with an estimate)."""
    from ftn.levels import Levels, axis_alpha
    from ftn.methods.axes import AxesModel

    levels = net.levels if isinstance(net, AxesModel) else Levels.from_metadata(net.metadata)
    alpha, note = axis_alpha(levels.axis(), level, clamp=True)
    return float(alpha), note


def _at(net: Any, alpha: float) -> Any:
    """The alpha argument for a one-axis model: a number, or ``{axis: number}`` for a multi-anchor file."""
    from ftn.methods.axes import AxesModel

    return {net.axis_names[0]: alpha} if isinstance(net, AxesModel) else alpha


# -- images --------------------------------------------------------------------------------------


def centre_crop(image: torch.Tensor, crop: int) -> torch.Tensor:
    """The ``crop`` x ``crop`` centre of a (C, H, W) image (all of it where smaller; crop 0: the whole)."""
    if crop <= 0:
        return image
    _, h, w = image.shape
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return image[:, top:top + crop, left:left + crop].contiguous()


def load_crops(folder: Path, images: int, crop: int) -> list[tuple[str, torch.Tensor]]:
    """(file stem, clean centre crop (3, h, w)) of the first ``images`` files of ``folder``."""
    from ftn.data.datasets import EvalSet
    from ftn.tasks.restore import Restore

    ev = EvalSet(folder, Restore(), {"sigma": 0.0}, limit=images)  # its clean(): colour, grey files as RGB
    return [(name, centre_crop(ev.clean(i), crop)) for i, name in enumerate(ev.names)]


def degrade(clean: torch.Tensor, set_name: str, image: str, crop: int, sigma: float, quality: float | None,
            seed: int, poisson: float = 0.0) -> torch.Tensor:
    """Noise at ``sigma`` (seeded by set, image, crop, sigma and seed; Poisson-Gaussian with ``poisson`` > 0),
    8 bits, then JPEG at ``quality`` (None: no JPEG, the same noise)."""
    from ftn.data.datasets import derive_seed
    from ftn.tasks.restore import Restore

    generator = torch.Generator().manual_seed(derive_seed("restore-bench", set_name, image, crop, float(sigma), seed))
    return Restore(poisson=poisson).degrade(clean, {"sigma": sigma, "quality": quality}, generator=generator)


def auto_setting(net: Any, clean: torch.Tensor, set_name: str, image: str, crop: int, setting: Setting, seed: int,
                 decoded: torch.Tensor, poisson: float = 0.0) -> tuple[dict[str, float], float]:
    """The alpha vector ``ftn run --auto`` sets for this input, and the noise sigma it estimated: the JPEG
    file is written again (the noise is seeded without the quality, so the noisy 8-bit crop is the same)
    with the encoder and subsampling of ``Restore().degrade``, and must decode to ``decoded``."""
    import tempfile

    from PIL import Image

    from ftn.api import choose_setting
    from ftn.infer.estimate import estimate_noise_sigma
    from ftn.tasks.dejpeg import DeJPEG

    sigma, quality = setting
    noisy = degrade(clean, set_name, image, crop, sigma, None, seed, poisson)
    pixels = (noisy * 255).round().byte().permute(1, 2, 0).numpy()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{image}.jpg"
        Image.fromarray(pixels).save(path, format="JPEG", quality=int(quality), subsampling=DeJPEG().subsampling)
        with Image.open(path) as im:
            again = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
        if not torch.equal(again, decoded):
            raise ValueError(f"{set_name}/{image}: the JPEG written again does not decode to the benchmark's input")
        alpha, _ = choose_setting(net, decoded, auto=True, jpeg_file=path)
        return {k: float(v) for k, v in alpha.items()}, estimate_noise_sigma(decoded, jpeg_file=path)


@torch.inference_mode()
def run_net(net: Any, images: Sequence[torch.Tensor], **kwargs: Any) -> list[torch.Tensor]:
    """Images (C, H, W) through ``net``, clamped to [0, 1]; the images of one shape go in one batch, so a
    multi-axis model blends its kernels once per setting, not once per image."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(images):
        groups.setdefault(tuple(x.shape), []).append(i)
    for members in groups.values():
        y = net(torch.stack([images[i] for i in members]), **kwargs).clamp(0, 1)
        for k, i in enumerate(members):
            out[i] = y[k]
    return out


def _psnr(y: torch.Tensor, clean: torch.Tensor) -> float:
    from ftn.eval.metrics import psnr

    return psnr(y, clean)  # quantised to 8 bits first, as a file holds the output


def _cbm3d_available() -> bool:
    return importlib.util.find_spec("bm3d") is not None


def cbm3d_psnr(noisy: torch.Tensor, clean: torch.Tensor, sigma: float) -> float:
    """PSNR of CBM3D told the nominal ``sigma`` (benchmarks.quality's ``_cbm3d``)."""
    from benchmarks.quality import _cbm3d

    return _psnr(_cbm3d(noisy, sigma), clean)


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Models:
    restore: Model
    denoise: Model
    dejpeg: Model
    dedicated: list[Model] = field(default_factory=list)

    def cascade_missing(self) -> str:
        return self.denoise.missing or self.dejpeg.missing


def evaluate_set(set_name: str, crops: list[tuple[str, torch.Tensor]], models: Models, args: argparse.Namespace,
                 cache: dict[str, float], seconds: dict[str, float]) -> dict[str, Any]:
    """Every method on every cell of one test set; per-image PSNRs, alphas and notes, as JSON-ready dicts."""
    names, cleans = [n for n, _ in crops], [c for _, c in crops]
    cbm3d_images = len(crops) if args.cbm3d_images is None else min(args.cbm3d_images, len(crops))
    cbm3d_missing = ("not run (--cbm3d-images 0)" if cbm3d_images == 0 else "" if _cbm3d_available() or args.cbm3d_cache_only
                     else "not run (bm3d is not installed: pip install -e '.[bench]')")
    cells: dict[str, Any] = {}
    bar = tqdm(total=len(grid()) * len(crops), desc=set_name, unit="img")

    def scores(outputs: list[torch.Tensor]) -> list[float]:
        return [_psnr(y, clean) for y, clean in zip(outputs, cleans, strict=True)]

    for setting in grid():
        sigma, quality = setting
        bar.set_postfix_str(f"sigma {sigma:g}, quality {quality:g}")
        inputs = [degrade(clean, set_name, name, args.crop, sigma, quality, args.seed, args.poisson) for name, clean in crops]
        cell: dict[str, Any] = {"sigma": sigma, "quality": quality, "input": scores(inputs)}
        start = time.perf_counter()
        if not models.restore.missing:
            alpha, notes = calibrated_alpha(models.restore.net, setting)
            candidates = neighbourhood(models.restore.net, alpha)  # the calibrated vector first
            found = [scores(run_net(models.restore.net, inputs, alpha=a)) for a in candidates]
            means = [statistics.fmean(f) for f in found]
            best = max(range(len(candidates)), key=lambda i: (means[i], -i))  # ties: the calibrated vector
            cell["restore"] = {"alpha": alpha, "notes": notes, "psnr": found[0]}
            cell["restore_best"] = {
                "alpha": candidates[best], "psnr": found[best],
                "offset": {n: round(candidates[best][n] - alpha[n], 6) for n in alpha},
                "neighbourhood": [{"alpha": c, "mean": m} for c, m in zip(candidates, means, strict=True)],
            }
            autos = [auto_setting(models.restore.net, clean, set_name, name, args.crop, setting, args.seed, x, args.poisson)
                     for (name, clean), x in zip(crops, inputs, strict=True)]
            outputs = [run_net(models.restore.net, [x], alpha=a)[0] for (a, _), x in zip(autos, inputs, strict=True)]
            cell["restore_auto"] = {"alpha": [a for a, _ in autos], "sigma_estimate": [s for _, s in autos],
                                    "psnr": scores(outputs)}
        seconds["restore"] += time.perf_counter() - start
        dedicated = next((m for m in models.dedicated if m.setting == setting), None)
        if dedicated is not None:
            start = time.perf_counter()
            cell["dedicated"] = ({"run": dedicated.role, "psnr": [], "missing": dedicated.missing} if dedicated.missing
                                 else {"run": dedicated.role, "psnr": scores(run_net(dedicated.net, inputs))})
            seconds["dedicated"] += time.perf_counter() - start
        if not models.cascade_missing():
            start = time.perf_counter()
            notes, outputs = [], inputs
            a_noise, note = one_axis_alpha(models.denoise.net, sigma) if sigma > 0 else (None, "")
            notes += [note] if note else []
            if a_noise is not None:  # saved to 8 bits between the two runs, as a file between two `ftn run`s
                outputs = [y.mul(255).round().div(255) for y in run_net(models.denoise.net, outputs, alpha=_at(models.denoise.net, a_noise))]
            a_jpeg, note = one_axis_alpha(models.dejpeg.net, quality)
            notes += [note] if note else []
            outputs = run_net(models.dejpeg.net, outputs, alpha=_at(models.dejpeg.net, a_jpeg))
            cell["cascade"] = {"alpha": {"denoise": a_noise, "dejpeg": a_jpeg}, "notes": notes, "psnr": scores(outputs)}
            seconds["cascade"] += time.perf_counter() - start
        if not cbm3d_missing and sigma > 0:
            cell["cbm3d"], cell["cbm3d_nojpeg"] = {"psnr": []}, {"psnr": []}
        for index, (name, clean) in enumerate(crops):
            if "cbm3d" in cell and index < cbm3d_images:
                start = time.perf_counter()
                for method, q in (("cbm3d", quality), ("cbm3d_nojpeg", None)):
                    key = (f"{set_name}|{name}|crop{args.crop}|sigma={sigma:g},quality={'none' if q is None else f'{q:g}'}|seed{args.seed}"
                           + (f"|poisson{args.poisson:g}" if args.poisson else ""))  # Gaussian keys as before
                    if key not in cache:
                        if args.cbm3d_cache_only:
                            raise LookupError(f"CBM3D result {key!r} is not in the cache (--cbm3d-cache-only)")
                        noisy = inputs[index] if q is not None else degrade(clean, set_name, name, args.crop, sigma, None, args.seed,
                                                                            args.poisson)
                        cache[key] = cbm3d_psnr(noisy, clean, sigma)
                        save_cache(args.cbm3d_cache, cache)
                    cell[method]["psnr"].append(cache[key])
                seconds["cbm3d"] += time.perf_counter() - start
            bar.update(1)
        summarise(cell)
        cells[cell_key(setting)] = cell
    bar.close()
    return {"images": names, "cbm3d_images": 0 if cbm3d_missing else cbm3d_images, "cbm3d_missing": cbm3d_missing,
            "cells": cells}


def _mean(values: Sequence[float] | None) -> float | None:
    return statistics.fmean(values) if values else None


def paired_difference(ours: Sequence[float], theirs: Sequence[float]) -> float | None:
    """Mean of ours - theirs over the images both have (the first ``len(theirs)``: CBM3D may run on fewer)."""
    n = min(len(ours), len(theirs))
    return statistics.fmean(a - b for a, b in zip(ours[:n], theirs[:n], strict=True)) if n else None


def summarise(cell: dict[str, Any]) -> None:
    """Add each method's mean, restore's paired difference to each peer and the best other method."""
    cell["mean"] = {"input": _mean(cell["input"])}
    for method in METHODS:
        if method in cell:
            cell["mean"][method] = _mean(cell[method].get("psnr"))
    ours = cell.get("restore", {}).get("psnr")
    cell["difference"] = {}
    if ours:
        for peer in PEERS:
            theirs = cell.get(peer, {}).get("psnr")
            if theirs:
                cell["difference"][peer] = paired_difference(ours, theirs)
    if cell["difference"]:  # the peer restore is furthest behind (or least ahead) of
        peer = min(cell["difference"], key=cell["difference"].__getitem__)
        cell["best_other"] = {"method": peer, "difference": cell["difference"][peer]}


def save_cache(path: Path, cache: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cache, indent=0, sort_keys=True) + "\n")


# -- the doc -------------------------------------------------------------------------------------


def _f(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _alphas(alpha: dict[str, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in alpha.values())


def column_missing(method: str, models: Models, result: dict[str, Any], runs: Path) -> str:
    """Why a whole column was not run ("" where it was)."""
    if method in ("restore", "restore_best", "restore_auto"):
        return models.restore.missing
    if method == "dedicated":
        return "" if models.dedicated else f"not run (no model at {_shown(runs)}/dedicated-*/model.safetensors)"
    if method == "cascade":
        return models.cascade_missing()
    return result["cbm3d_missing"]


def table(result: dict[str, Any], models: Models, axis_names: Sequence[str], runs: Path) -> list[str]:
    """The settings x methods table of one set, means in dB, restore's differences beside them."""
    first = f" (first {result['cbm3d_images']})" if 0 < result["cbm3d_images"] < len(result["images"]) else ""
    missing = {m: column_missing(m, models, result, runs) for m in METHODS}
    titles = {
        "restore": f"restore, calibrated (alpha {', '.join(axis_names) or '-'})",
        "restore_best": "restore, best (offset)",
        "restore_auto": "restore, --auto (mean estimated sigma)",
        "dedicated": "dedicated",
        "cascade": "denoise → dejpeg",
        "cbm3d": f"CBM3D{first}",
        "cbm3d_nojpeg": f"CBM3D, no JPEG{first}",
    }
    head = ["sigma", "quality", "input", *titles.values(), "restore − dedicated", "restore − cascade",
            "restore − CBM3D", "restore − best other"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in result["cells"].values():
        row = [f"{cell['sigma']:g}", f"{cell['quality']:g}", _f(cell["mean"]["input"])]
        for method in METHODS:
            if missing[method]:
                row.append("not run")
            elif method not in cell:
                row.append("n/a" if method.startswith("cbm3d") else "-")
            elif cell[method].get("missing"):
                row.append("not run")
            elif method == "restore":
                row.append(f"{_f(cell['mean'][method])} ({_alphas(cell['restore']['alpha'])})")
            elif method == "restore_best":
                offset = cell["restore_best"]["offset"]
                row.append(f"{_f(cell['mean'][method])} ({', '.join(f'{v:+g}' if v else '0' for v in offset.values())})")
            elif method == "restore_auto":
                row.append(f"{_f(cell['mean'][method])} ({statistics.fmean(cell['restore_auto']['sigma_estimate']):.1f})")
            else:
                row.append(_f(cell["mean"][method]))
        diff = cell["difference"]
        row += [_f(diff.get(p), signed=True) for p in PEERS]
        best = cell.get("best_other")
        row.append(f"{best['difference']:+.2f} ({METHODS[best['method']]})" if best else "-")
        out.append("| " + " | ".join(row) + " |")
    notes = [f"**{METHODS[m]}**: {why}." for m, why in missing.items() if why and m != "restore_best"]
    for cell in result["cells"].values():
        run = cell.get("dedicated", {})
        if run.get("missing"):
            notes.append(f"**dedicated** at {cell_key((cell['sigma'], cell['quality']))}: {run['missing']}.")
    return out + ([""] + notes if notes else [])


def _where(cell: dict[str, Any]) -> str:
    return f"sigma {cell['sigma']:g}, quality {cell['quality']:g}"


def reading(result: dict[str, Any]) -> str:
    """One paragraph read from one set's numbers (no claim written by hand)."""
    cells = list(result["cells"].values())
    if not any(c.get("restore", {}).get("psnr") for c in cells):
        return "The restore model was not run, so there is nothing to read here."
    words = []
    ranked = [c for c in cells if "best_other" in c]
    if ranked:
        diffs = [c["best_other"]["difference"] for c in ranked]
        ahead = sum(d > 0 for d in diffs)
        lo, hi = min(ranked, key=lambda c: c["best_other"]["difference"]), max(ranked, key=lambda c: c["best_other"]["difference"])
        words.append(
            f"At its calibrated alpha the restore model is ahead of the best other method on the same input in {ahead} "
            f"of {len(ranked)} settings (mean difference {statistics.fmean(diffs):+.2f} dB, from "
            f"{lo['best_other']['difference']:+.2f} dB at {_where(lo)} ({METHODS[lo['best_other']['method']]}) to "
            f"{hi['best_other']['difference']:+.2f} dB at {_where(hi)})."
        )
    for peer, phrase in (("dedicated", "the dedicated single-setting models"), ("cascade", "denoise → dejpeg"),
                         ("cbm3d", "CBM3D on the same input")):
        have = [c for c in cells if c["difference"].get(peer) is not None]
        if have:
            values = [c["difference"][peer] for c in have]
            worst = min(have, key=lambda c: c["difference"][peer])
            words.append(
                f"Against {phrase} ({len(have)} settings): mean {statistics.fmean(values):+.2f} dB, ahead in "
                f"{sum(v > 0 for v in values)}, lowest {worst['difference'][peer]:+.2f} dB at {_where(worst)}."
            )
    jpeg = [paired_difference(c["cbm3d_nojpeg"]["psnr"], c["cbm3d"]["psnr"]) for c in cells
            if c.get("cbm3d", {}).get("psnr") and c.get("cbm3d_nojpeg", {}).get("psnr")]
    if jpeg:
        words.append(f"CBM3D itself does {statistics.fmean(jpeg):.2f} dB better on average on the same noise without JPEG.")
    autos = [(paired_difference(c["restore_auto"]["psnr"], c["restore"]["psnr"]), c) for c in cells
             if c.get("restore_auto", {}).get("psnr") and c.get("restore", {}).get("psnr")]
    if autos:
        low, where = min(autos, key=lambda a: a[0])
        words.append(
            f"With the setting `--auto` reads from each JPEG file instead of the true levels, restore is "
            f"{statistics.fmean(d for d, _ in autos):+.2f} dB from its calibrated result on average (lowest "
            f"{low:+.2f} dB, at {_where(where)}; estimated sigma there {statistics.fmean(where['restore_auto']['sigma_estimate']):.1f})."
        )
    gains = [(c["mean"]["restore_best"] - c["mean"]["restore"], c) for c in cells if c.get("restore_best")]
    if gains:
        top, where = max(gains, key=lambda g: g[0])
        same = sum(not any(c["restore_best"]["offset"].values()) for _, c in gains)
        words.append(
            f"The best alpha in the neighbourhood gains {statistics.fmean(g for g, _ in gains):.2f} dB on average over "
            f"the calibrated one (at most {top:.2f} dB, at {_where(where)}); it is the calibrated vector itself in "
            f"{same} of {len(gains)} settings."
        )
    return " ".join(words)


def to_markdown(results: dict[str, Any], models: Models, args: argparse.Namespace, seconds: dict[str, float],
                skipped: list[str], command: str, png: str | None) -> str:
    axis_names = list(models.restore.net.axis_names) if not models.restore.missing else []
    out = [
        "# The `restore` model on its grid: noise x JPEG",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}) in {seconds['total']:.0f} s. The grid: "
        f"photo-true {'Gaussian' if not args.poisson else f'Poisson-Gaussian (signal-dependent share {args.poisson:g})'} "
        "noise (clipped, 8-bit) at sigma, then JPEG at quality, on the first "
        f"{args.images} images of each set, {args.crop} px centre crops"
        f"{' (whole images)' if args.crop <= 0 else ''}; the noise is seeded by (set, image, crop, sigma, seed "
        f"{args.seed}), so the cells of one sigma share it, and every method sees the same inputs. PSNR in dB on RGB, "
        "no border crop, the output rounded to 8 bits. Methods: see `benchmarks/restore.py`'s docstring; "
        "**restore, best** is chosen on the test images themselves (offsets -0.25, 0, +0.25 per axis from the "
        "calibrated vector), an upper bound; **restore − X** is the mean of the per-image differences over the images "
        "both ran on; **best other** is the one of dedicated, denoise → dejpeg and CBM3D (the methods that see the same "
        "input) restore is furthest behind, or least ahead of.",
        "",
        "| model | file | sha256 (first 12) |",
        "|---|---|---|",
    ]
    for m in [models.restore, models.denoise, models.dejpeg, *models.dedicated]:
        setting = ""
        if m.setting is not None:
            setting = f" (sigma {m.setting[0]:g}, {'no JPEG' if m.setting[1] is None else f'quality {m.setting[1]:g}'})"
        out.append(f"| {m.role}{setting} | {'`' + _shown(m.path) + '`' if m.path else m.missing} | {m.sha256 or '-'} |")
    out += ["", "Seconds per method (all sets): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items() if k != "total") + ".", ""]
    for line in skipped:
        out += [f"**Skipped:** {line}", ""]
    for set_name, result in results.items():
        out += [f"## {set_name}", "",
                f"{len(result['images'])} images ({', '.join(result['images'])}); CBM3D on the first {result['cbm3d_images']}.", ""]
        out += table(result, models, axis_names, args.runs) + [""]
        clamps = sorted({n for c in result["cells"].values() for k in ("restore", "cascade") for n in c.get(k, {}).get("notes", [])})
        if clamps:
            out += ["Levels clamped to a model's range (each model run at its nearest end):", ""]
            out += [f"- {n}" for n in clamps] + [""]
        out += [reading(result), ""]
    if png:
        out += [f"![restore PSNR over the grid, and its difference to the best other method]({png})", ""]
    return "\n".join(out)


def plot(results: dict[str, Any], path: Path) -> None:
    """Per set: restore's calibrated PSNR over the grid, and its difference to the best other method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sigmas = sorted({s for s, _ in grid()})
    qualities = sorted({q for _, q in grid()}, reverse=True)
    fig, axes = plt.subplots(len(results), 2, figsize=(10, 4.2 * len(results)), squeeze=False)
    for row, (set_name, result) in enumerate(results.items()):
        psnr_map, diff_map = np.full((len(sigmas), len(qualities)), np.nan), np.full((len(sigmas), len(qualities)), np.nan)
        labels = {}
        for cell in result["cells"].values():
            i, j = sigmas.index(cell["sigma"]), qualities.index(cell["quality"])
            if cell["mean"].get("restore") is not None:
                psnr_map[i, j] = cell["mean"]["restore"]
            if "best_other" in cell:
                diff_map[i, j] = cell["best_other"]["difference"]
                labels[i, j] = SHORT[cell["best_other"]["method"]]
        span = max(0.1, float(np.nanmax(np.abs(diff_map)))) if np.isfinite(diff_map).any() else 1.0
        for col, (data, cmap, title, kw) in enumerate((
                (psnr_map, "viridis", f"{set_name}: restore, calibrated (dB)", {}),
                (diff_map, "RdBu", f"{set_name}: restore − best other (dB)", {"vmin": -span, "vmax": span}))):
            ax = axes[row][col]
            if not np.isfinite(data).any():
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(title)
                ax.set_axis_off()
                continue
            image = ax.imshow(data, cmap=cmap, **kw)
            fig.colorbar(image, ax=ax, shrink=0.8)
            for (i, j), value in np.ndenumerate(data):
                if not np.isfinite(value):
                    ax.text(j, i, "-", ha="center", va="center", fontsize=8)
                    continue
                r, g, b, _ = image.cmap(image.norm(value))
                ax.text(j, i, f"{value:.2f}" if col == 0 else f"{value:+.2f}\n{labels[i, j]}", ha="center", va="center",
                        fontsize=8, color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")  # readable on dark cells
            ax.set_xticks(range(len(qualities)), [f"{q:g}" for q in qualities])
            ax.set_yticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
            ax.set_xlabel("JPEG quality")
            ax.set_ylabel("sigma")
            ax.set_title(title)
    fig.text(0.5, 0.005, "right: restore (calibrated) minus the best other method on the same input; "
             "label: that method (ded. dedicated, casc. denoise → dejpeg)", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="restore", help="the multi-axis model: a shipped name or a file (default restore)")
    parser.add_argument("--denoise", default="denoise", help="the one-axis denoiser of the cascade (default: shipped denoise)")
    parser.add_argument("--dejpeg", default="dejpeg", help="the one-axis deJPEG model of the cascade (default: shipped dejpeg)")
    parser.add_argument("--runs", type=Path, default=RUNS, help="folder of the dedicated runs (base/, dedicated-*/)")
    parser.add_argument("--data", type=Path, default=TEST, help="folder holding the test sets")
    parser.add_argument("--sets", nargs="+", default=list(SETS), help="test sets (default: CBSD68 LIVE1)")
    parser.add_argument("--images", type=int, default=8, help="first N images of each set (default 8)")
    parser.add_argument("--crop", type=int, default=128, help="centre crop size in px (0: whole images; default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--poisson", type=float, default=0.0,
                        help="Poisson-Gaussian noise: the signal-dependent share p in [0, 1] (Restore(poisson=p); default 0, Gaussian)")
    parser.add_argument("--cbm3d-images", type=int, default=4,
                        help="CBM3D on the first N images of each set (default 4; 0: skip). It takes ~10 s a call here, "
                             "two calls per image and noisy setting; results are cached")
    parser.add_argument("--cbm3d-cache", type=Path, default=CBM3D_CACHE, help="the CBM3D results cache (JSON)")
    parser.add_argument("--cbm3d-cache-only", action="store_true", help="use cached CBM3D results only (refuse to compute)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "restore.md"),
                        help="markdown file (the .json and .png are written beside it), or - for stdout only")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    if not 0.0 <= args.poisson <= 1.0:
        parser.error(f"--poisson must be in [0, 1], got {args.poisson:g}")
    import ftn

    start = time.perf_counter()
    skipped = []
    folders = {}
    for name in args.sets:
        folder = args.data / name
        if folder.is_dir():
            folders[name] = folder
        else:
            skipped.append(f"{name}: no folder at {_shown(folder)} (the shared/ data beside the project).")
            print(f"restore: skipping {name}: no folder at {folder}", file=sys.stderr)
    if not folders:
        print(f"restore: error: none of the test sets {', '.join(args.sets)} is under {args.data}", file=sys.stderr)
        return 2
    try:
        models = Models(
            restore=open_model("restore (multi-axis)", args.model, ftn.io.load_tunable),
            denoise=open_model("denoise (cascade, first)", args.denoise, ftn.io.load_tunable),
            dejpeg=open_model("dejpeg (cascade, second)", args.dejpeg, ftn.io.load_tunable),
            dedicated=find_dedicated(args.runs),
        )
        from ftn.methods.axes import AxesModel

        if not models.restore.missing and not (isinstance(models.restore.net, AxesModel)
                                               and {"sigma", "quality"} & set(models.restore.net.axis_names)):
            raise ValueError(f"{models.restore.path} is not a multi-axis model with a sigma or quality axis")
    except (ValueError, FileNotFoundError) as err:
        print(f"restore: error: {' '.join(str(err).split())[:300]}", file=sys.stderr)
        return 2
    cache = json.loads(args.cbm3d_cache.read_text()) if args.cbm3d_cache.is_file() else {}
    seconds = {"restore": 0.0, "dedicated": 0.0, "cascade": 0.0, "cbm3d": 0.0}
    results = {}
    try:
        for name, folder in folders.items():
            results[name] = evaluate_set(name, load_crops(folder, args.images, args.crop), models, args, cache, seconds)
    except (ValueError, LookupError) as err:
        print(f"restore: error: {' '.join(str(err).split())[:300]}", file=sys.stderr)
        return 2
    seconds["total"] = time.perf_counter() - start
    command = " ".join(["python -m benchmarks.restore", *(sys.argv[1:] if argv is None else argv)])
    out = None if args.out == "-" else Path(args.out)
    text = to_markdown(results, models, args, seconds, skipped, command.strip(), out.with_suffix(".png").name if out else None)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        plot(results, out.with_suffix(".png"))
        record = {"generated": datetime.date.today().isoformat(), "args": {k: str(v) for k, v in vars(args).items()},
                  "models": [{"role": m.role, "path": _shown(m.path) if m.path else None, "sha256": m.sha256,
                              "missing": m.missing, "setting": m.setting}
                             for m in [models.restore, models.denoise, models.dejpeg, *models.dedicated]],
                  "seconds": seconds, "skipped": skipped, "sets": results}
        out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
        out.write_text(text + "\n")
        print(f"wrote {out}, {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
