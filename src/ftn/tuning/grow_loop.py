"""``ftn tune --base M --axis A --add-anchor SPEC`` and ``ftn tune --base M --new-axis NAME --to SPEC``.

A tunable model grows by one tuner, trained with everything else frozen (:mod:`ftn.tuning.grow`):

* **a new anchor** after an axis's last (``--axis sigma --add-anchor noise:100``): the tuner of the
  new segment trains at the new anchor (a_sigma = K + 1, the other axes at 0), on ``--data``
  patches degraded at the new level (and at the other axes' anchor-0 levels);
* **a new axis** (``--new-axis quality --to jpeg:40 [--from jpeg:90]``): the new axis's anchor-1 tuner
  trains at (0, ..., 0, 1) on patches degraded at ``--to`` (and at the other axes' anchor-0 levels);
  its anchor 0 is ``--from``, else "none" (sigma 0, or quality 100). Setting it to 0 gives the old
  model exactly.

* **a corner** (``--corner sigma=50,quality=10``, anchor levels of two or more axes): a joint
  correction that trains at that point (the corner's axes at those anchors, the others at 0) on
  patches with all of those degradations, where the sum of the axes' own tuners is not good enough
  there (as CResMD trains combinations of degradations). It changes only the settings within one
  segment of the corner on every one of its axes; no calibration changes.

Outputs at every setting the model had are checked bit for bit on a probe image before training and
before writing. The calibration of the new segment (or axis) is measured on images held out of
``--data``, as ``ftn tune`` does (:mod:`ftn.tuning.calibrate`), and stored in the file's levels: the
old calibration keeps every level it covered; on an axis without one, the old anchors keep the
uncalibrated rule (anchor k -> alpha k, linear between). Checkpoints and ``--resume`` as ``ftn tune``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from ..axes_io import save_axes
from ..levels import Calibration
from ..methods.axes import AxesModel, AxisSpec
from ..methods.base import image_channels
from ..train.checkpoint import read_checkpoint_info
from .calibrate import hold_out, measure_calibration
from .data import SpecSource, WithContext, data_files, smallest_side
from .defaults import DEFAULT_HOLD_OUT, DEFAULT_LR
from .grow import (
    as_axes,
    axis_kinds,
    check_unchanged,
    corner_at,
    kind_of,
    old_settings,
    spec_at,
    with_anchor,
    with_axis,
    with_corner,
)
from .specs import JpegSpec, NoiseSpec, parse_spec, resolve_levels

__all__ = ["grow"]


def _load_base(base: nn.Module | str | os.PathLike) -> tuple[nn.Module, dict[str, Any], str]:
    """(the tunable model, a record of where it came from, its name in messages)."""
    if isinstance(base, nn.Module):
        return copy.deepcopy(base), {"kind": "module", "class": type(base).__name__}, f"the base ({type(base).__name__})"
    from ..io import load
    from ..models import resolve

    path = resolve(base)
    try:
        model = load(path)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # a reader's own error on a damaged file: one line
        raise ValueError(f"cannot read the base {path}: {' '.join(str(err).split())[:200]}") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return model, {"kind": "file", "file": path.name, "sha256": digest}, path.name


def _new_anchor_spec(model: AxesModel, kinds: dict[str, Any], axis: str | None,
                     add_anchor: str | NoiseSpec | JpegSpec) -> tuple[str, NoiseSpec | JpegSpec, NoiseSpec | JpegSpec]:
    """(axis, its last anchor's spec, the new anchor's spec), checked against the axis's kind."""
    if axis is None:
        if len(model.axes) != 1:
            raise ValueError(f"this model has axes {', '.join(model.axis_names)}: say which gains the anchor with --axis")
        axis = model.axes[0].name
    spec = model.axis(axis)  # an unknown axis: one line naming the model's axes
    new = parse_spec(add_anchor) if isinstance(add_anchor, str) else add_anchor
    kind = kinds.get(axis)
    if kind is None or spec.levels is None:
        raise ValueError(f"axis {axis!r} is not a noise or JPEG level this model records, so ftn tune cannot make "
                         "its training data")
    words = {"noise": "noise levels (noise:SIGMA)", "jpeg": "JPEG qualities (jpeg:QUALITY)"}
    if kind_of(new)["kind"] != kind["kind"]:
        raise ValueError(f"--add-anchor {new.name}: axis {axis} holds {words[kind['kind']]}")
    if isinstance(new, NoiseSpec) and not kind.get("assumed") and bool(kind.get("clip")) != new.clip:
        flag = "clip" if kind.get("clip") else "unclipped"
        raise ValueError(f"axis {axis} holds {'clipped, 8-bit' if kind.get('clip') else 'unclipped'} noise; "
                         f"write --add-anchor noise:{new.sigma:g},{flag}")
    return axis, spec_at(kind_of(new), spec.levels[-1]), new


def _new_axis_specs(name: str, to: Any, from_: Any) -> tuple[NoiseSpec | JpegSpec, NoiseSpec | JpegSpec]:
    """(anchor 0, anchor 1) of a new axis from ``--from`` (default: none) and ``--to``."""
    if to is None:
        raise ValueError(f"--new-axis {name} needs its level as --to noise:SIGMA or jpeg:QUALITY")
    level2 = parse_spec(to) if isinstance(to, str) else to
    if not isinstance(level2, (NoiseSpec, JpegSpec)):
        raise ValueError("--new-axis takes its level as --to noise:SIGMA or jpeg:QUALITY")
    if from_ is None:  # anchor 0 is what the base does: no such degradation
        from_ = NoiseSpec(0.0, clip=level2.clip) if isinstance(level2, NoiseSpec) else JpegSpec(100)
    level1, level2 = resolve_levels(from_, level2)
    assert isinstance(level1, (NoiseSpec, JpegSpec)) and isinstance(level2, (NoiseSpec, JpegSpec))
    if isinstance(level1, NoiseSpec) and isinstance(level2, NoiseSpec) and level1.clip != level2.clip:
        raise ValueError(f"--from {level1.name} and --to {level2.name} differ in clipping; give both the same")
    AxisSpec(name)  # the name's own checks, one line
    return level1, level2


def grow(
    base: nn.Module | str | os.PathLike,
    *,
    axis: str | None = None,
    add_anchor: str | NoiseSpec | JpegSpec | None = None,
    new_axis: str | None = None,
    to: str | NoiseSpec | JpegSpec | None = None,
    from_: str | NoiseSpec | JpegSpec | None = None,
    chain: bool | None = None,
    corner: str | dict[str, float] | None = None,
    method: str | None = None,
    method_options: dict[str, Any] | None = None,
    data: str | os.PathLike | None = None,
    iters: int | None = None,
    minutes: float | None = None,
    batch_size: int | None = None,
    patch_size: int | None = None,
    lr: float = DEFAULT_LR,
    out: str | os.PathLike,
    resume: bool = False,
    device: str | torch.device = "auto",
    progress: bool = True,
    seed: int = 0,
    checkpoint_every: int = 100,
    calibrate: bool = True,
    hold_out_images: int = DEFAULT_HOLD_OUT,
    stop_after_s: float | None = None,
) -> Path:
    """Add an anchor (``axis``, ``add_anchor``), an axis (``new_axis``, ``to``, ``from_``) or a corner
    (``corner``: ``"sigma=50,quality=10"``) to the tunable model ``base`` (a file, a shipped name, a
    TunableModel or an AxesModel), train its tuner with everything else frozen and write the grown
    multi-axis model to ``out`` (``ftn.load(out)``).
    ``chain``: with ``new_axis``, whether the new axis's later anchors will start from the anchor before
    (default) or from the base; else, for a one-axis base, the same for its axis: from the anchor before (default)
    or from the base. ``method`` (optional) must be the base's; the tuner takes the base's options.
    The other arguments are :func:`ftn.tune`'s.

    Raises:
        ValueError / FileNotFoundError: a refused argument (one line, nothing written).
        KeyboardInterrupt: after Ctrl-C, once the checkpoint is saved.
        TrainingPaused: ``stop_after_s`` reached before the last step (the checkpoint is saved).
    """
    from .loop import _calibration_images, _pick_device, _probe, _sizes, check_run

    if sum(x is not None for x in (add_anchor, new_axis, corner)) != 1:
        raise ValueError("give one of --add-anchor SPEC (with --axis), --new-axis NAME (with --to) or --corner "
                         "AXIS=LEVEL,AXIS=LEVEL")
    if (add_anchor is not None or corner is not None) and (to is not None or from_ is not None):
        raise ValueError(f"{'--add-anchor' if corner is None else '--corner'} gives the level itself; leave out --to and --from")
    if corner is not None and (axis is not None or chain is not None):
        raise ValueError("--corner names its axes itself; leave out --axis and --chain")
    if method_options:
        raise ValueError("a grown model keeps its base's method options; leave out --groups")
    if new_axis is not None and axis is not None:
        raise ValueError("--axis names the axis that gains an anchor; with --new-axis leave it out")
    if new_axis is not None:
        level_lo, level_hi = _new_axis_specs(new_axis, to, from_)
    elif isinstance(add_anchor, str):
        parse_spec(add_anchor)  # a malformed spec is refused before any file is read
    resolved = base
    if isinstance(base, (str, os.PathLike)):
        from ..models import resolve

        resolved = resolve(base)  # FileNotFoundError: no such file or shipped name
    out, ckpt, iters = check_run(out, {"base": resolved}, resume=resume, iters=iters, minutes=minutes,
                                 batch_size=batch_size, patch_size=patch_size, lr=lr,
                                 checkpoint_every=checkpoint_every, hold_out_images=hold_out_images,
                                 stop_after_s=stop_after_s)
    saved = read_checkpoint_info(ckpt)["config"] if resume else None
    dev = _pick_device(device)

    old, origin, name = _load_base(resolved)
    old.eval()
    model = as_axes(old, chained=None if new_axis is not None else chain, name=name)  # --chain: the new axis's
    if method is not None and method != model.method:
        raise ValueError(f"{name} is tuned with {model.method}; a grown model keeps its method (leave out --method {method})")
    kinds = axis_kinds(model.metadata, model.axis_names)
    if corner is not None:
        return _grow_corner(model, old, kinds, corner, name=name, origin=origin, data=data, iters=iters,
                            minutes=minutes, batch_size=batch_size, patch_size=patch_size, lr=lr, out=out, ckpt=ckpt,
                            saved=saved, dev=dev, progress=progress, seed=seed, checkpoint_every=checkpoint_every,
                            stop_after_s=stop_after_s)
    if add_anchor is not None:
        axis, level_lo, level_hi = _new_anchor_spec(model, kinds, axis, add_anchor)
        k = model.axis(axis).segments  # the new segment is anchor k ... k + 1
        grown = with_anchor(model, axis, level_hi.level)
        trained, added = axis, {"add_anchor": {"axis": axis, "anchor": k + 1, "level": level_hi.record()}}
    else:
        assert new_axis is not None
        k = 0
        grown = with_axis(model, new_axis, (level_lo.level, level_hi.level), chained=True if chain is None else chain)
        trained, added = new_axis, {"new_axis": {"axis": new_axis, "from": level_lo.record(), "to": level_hi.record()}}
    kinds[trained] = kind_of(level_hi)
    context = []
    for other in grown.axes:
        if other.name == trained:
            continue
        if kinds.get(other.name) is None or other.levels is None:
            raise ValueError(f"axis {other.name!r} of the base is not a noise or JPEG level it records, so ftn tune "
                             "cannot make training data with it at anchor 0")
        context.append(spec_at(kinds[other.name], other.levels[0]))

    train_files = data_files(data, f"--add-anchor {level_hi.name}" if add_anchor is not None else f"--to {level_hi.name}")
    held: list[Path] = []
    if calibrate:
        train_files, held = hold_out(train_files, hold_out_images)
    channels = image_channels(grown.base_network)
    if channels not in (1, 3):
        raise ValueError(f"the base takes {channels} image channels; ftn tune handles grey (1) and RGB (3)")
    probe = _probe(channels, grown.base_network)
    settings = old_settings(model.axes)
    check_unchanged(old, grown, probe, settings, "before training")

    params = grown.trainable(axis=trained, anchor=k + 1)
    point = grown.training_point(axis=trained, anchor=k + 1)
    grown.eval()  # the base is frozen: its norms keep their statistics (as ftn tune)
    batch_size, patch_size, sizes_note = _sizes(grown, probe, dev, batch_size, patch_size, saved,
                                                smallest_side(train_files), alpha=point)
    what = f"--add-anchor {level_hi.name}" if add_anchor is not None else f"--to {level_hi.name}"
    source = SpecSource(level_hi, data, patch_size=patch_size, grey=channels == 1, seed=seed, files=train_files,
                        context=context, what=what)
    grown.to(dev)
    optimizer = torch.optim.Adam(params, lr=lr)
    recipe = {"base": origin, "grow": added, "to": level_hi.record(), "context": [s.record() for s in context],
              "data": Path(data).name if data is not None else None, "method": grown.method,
              "method_options": grown.options, "batch_size": batch_size, "patch_size": patch_size, "lr": lr,
              "seed": seed, "loss": "l1", "held_out": [f.name for f in held]}
    run = {"iters": iters, "minutes": minutes, "device": str(dev), "checkpoint_every": checkpoint_every,
           "sizes": sizes_note}
    where = f"anchor {k + 1} of {trained} ({level_hi.name})" if add_anchor is not None else f"new axis {trained} ({level_lo.name} ... {level_hi.name})"
    done, wall = _train_tuner(grown, optimizer, source, point, dev, ckpt, saved, recipe, run, f"tune {where} on {name}: "
                              f"{sum(p.numel() for p in params):,} parameters train, every other tuner frozen; "
                              f"{source.description}; batch {batch_size} x {patch_size}px on {dev} ({sizes_note})",
                              iters=iters, minutes=minutes, batch_size=batch_size, lr=lr,
                              checkpoint_every=checkpoint_every, progress=progress, stop_after_s=stop_after_s)

    calibration, cal_note = None, "none (--no-calibrate); use --alpha"
    if not calibrate and k > 0:  # a calibration the base had must still reach the new anchor: linear to it
        calibration = _extended(grown, trained, [(level_lo.level, float(k)), (level_hi.level, float(k + 1))],
                                f"{trained} {level_lo.level:g} ... {level_hi.level:g}: linear to the new anchor "
                                "(not measured: --no-calibrate)", keep_anchors=False)
        if calibration is not None:
            cal_note = "the base's calibration, extended linearly to the new anchor (--no-calibrate)"
    if calibrate:
        images = held or train_files
        t_cal = time.perf_counter()
        if progress:
            tqdm.write(f"calibrating {level_lo.name} ... {level_hi.name} on {_calibration_images(held, images)}")
        calibration = _calibrate(grown, trained, k, level_lo, level_hi, context, images, channels == 1, seed,
                                 "held-out files" if held else "training files (too few images to hold out)", dev)
        cal_note = {"images": [f.name for f in images], "held_out": bool(held),
                    "seconds": round(time.perf_counter() - t_cal, 1)}
    grown.cpu()
    check_unchanged(old.cpu(), grown, probe, settings, "after training")
    grown.metadata = _metadata(model, grown, trained, calibration, kinds, old_tuned=model.metadata.get("tuned"),
                               tuned={**recipe, "sizes": sizes_note, "iterations": done, "wall_time_s": round(wall, 1),
                                      "device": str(dev), "image_channels": channels, "calibration": cal_note})
    save_axes(grown, out)
    return out


def _train_tuner(grown: AxesModel, optimizer: torch.optim.Optimizer, source: SpecSource, point: dict[str, float],
                 dev: torch.device, ckpt: Path, saved: dict[str, Any] | None, recipe: dict[str, Any],
                 run: dict[str, Any], words: str, **steps: Any) -> tuple[int, float]:
    """Resume (or start) and train the new tuner at ``point`` (``steps``: :func:`run_steps`'s budget),
    then freeze the whole model; ``words`` is said first when ``steps["progress"]``."""
    from .loop import resume_from, run_steps

    start, elapsed_before = resume_from(ckpt, saved, recipe, grown, optimizer)
    if steps["progress"]:
        tqdm.write(words)
    done, wall = run_steps(grown, optimizer, source, alpha=point, device=dev, ckpt=ckpt, config={**recipe, **run},
                           start=start, elapsed_before=elapsed_before, **steps)
    grown.eval()
    for p in grown.parameters():
        p.requires_grad_(False)
    return done, wall


def _grow_corner(model: AxesModel, old: nn.Module, kinds: dict[str, Any], text: str | dict[str, float], *, name: str,
                 origin: dict[str, Any], data: Any, iters: int | None, minutes: float | None, batch_size: int | None,
                 patch_size: int | None, lr: float, out: Path, ckpt: Path, saved: dict[str, Any] | None,
                 dev: torch.device, progress: bool, seed: int, checkpoint_every: int,
                 stop_after_s: float | None) -> Path:
    """:func:`grow` for ``--corner``: the joint correction trains at the corner; no calibration changes."""
    from .loop import _probe, _sizes

    corner = corner_at(model, text)
    grown = with_corner(model, corner)
    specs = []
    for axis in grown.axes:  # the corner's axes at its anchors, the others at anchor 0
        if kinds.get(axis.name) is None or axis.levels is None:
            raise ValueError(f"axis {axis.name!r} is not a noise or JPEG level this model records, so ftn tune cannot "
                             "make training data for the corner")
        specs.append((axis.name in corner, spec_at(kinds[axis.name], axis.levels[corner.get(axis.name, 0)])))
    main = next(spec for in_corner, spec in specs if in_corner)
    context = [spec for _, spec in specs if spec is not main]
    words = ",".join(f"{n}={_plain(grown.axis(n).levels[k])}" for n, k in corner.items())  # type: ignore[index]

    train_files = data_files(data, f"--corner {words}")
    channels = image_channels(grown.base_network)
    if channels not in (1, 3):
        raise ValueError(f"the base takes {channels} image channels; ftn tune handles grey (1) and RGB (3)")
    probe = _probe(channels, grown.base_network)
    settings = old_settings(model.axes, corner)
    check_unchanged(old, grown, probe, settings, "before training")
    params = grown.trainable(corner=corner)
    point = grown.training_point(corner=corner)
    grown.eval()
    batch_size, patch_size, sizes_note = _sizes(grown, probe, dev, batch_size, patch_size, saved,
                                                smallest_side(train_files), alpha=point)
    source = SpecSource(main, data, patch_size=patch_size, grey=channels == 1, seed=seed, files=train_files,
                        context=context, what=f"--corner {words}")
    grown.to(dev)
    optimizer = torch.optim.Adam(params, lr=lr)
    added = {"corner": {"anchors": dict(corner), "levels": {n: grown.axis(n).levels[k] for n, k in corner.items()}}}  # type: ignore[index]
    recipe = {"base": origin, "grow": added, "to": main.record(), "context": [s.record() for s in context],
              "data": Path(data).name if data is not None else None, "method": grown.method,
              "method_options": grown.options, "batch_size": batch_size, "patch_size": patch_size, "lr": lr,
              "seed": seed, "loss": "l1", "held_out": []}
    run = {"iters": iters, "minutes": minutes, "device": str(dev), "checkpoint_every": checkpoint_every,
           "sizes": sizes_note}
    done, wall = _train_tuner(grown, optimizer, source, point, dev, ckpt, saved, recipe, run, f"tune the corner {words} on {name}: "
                              f"{sum(p.numel() for p in params):,} parameters train, every other tuner frozen; "
                              f"{source.description}; batch {batch_size} x {patch_size}px on {dev} ({sizes_note})",
                              iters=iters, minutes=minutes, batch_size=batch_size, lr=lr,
                              checkpoint_every=checkpoint_every, progress=progress, stop_after_s=stop_after_s)
    grown.cpu()
    check_unchanged(old.cpu(), grown, probe, settings, "after training")
    grown.metadata = _metadata(model, grown, None, None, kinds, old_tuned=model.metadata.get("tuned"),
                               tuned={**recipe, "sizes": sizes_note, "iterations": done, "wall_time_s": round(wall, 1),
                                      "device": str(dev), "image_channels": channels,
                                      "calibration": "unchanged (a corner changes no calibration)"})
    save_axes(grown, out)
    return out


def _plain(value: float) -> str:
    return f"{value:g}"


def _calibrate(model: AxesModel, axis: str, k: int, level_lo: NoiseSpec | JpegSpec, level_hi: NoiseSpec | JpegSpec,
               context: list[NoiseSpec | JpegSpec], images: list[Path], grey: bool, seed: int, files_name: str,
               device: torch.device) -> Calibration:
    """The axis's calibration with the new segment (anchor k ... k + 1) measured and the old part kept."""
    def run(x: torch.Tensor, t: float) -> torch.Tensor:
        return model(x.to(device), alpha={axis: k + t}).cpu()

    entry = measure_calibration(run, level_lo, level_hi, images, grey=grey, task=WithContext(level_hi.task, context),
                                seed=seed, files_name=files_name)
    segment = list(zip(entry["levels"], (round(k + a, 4) for a in entry["alphas"]), strict=True))
    note = f"{axis} {level_lo.level:g} ... {level_hi.level:g}: {entry.get('source', 'measured')}"
    if k == 0:
        return Calibration(tuple(v for v, _ in segment), tuple(a for _, a in segment), note)
    return _extended(model, axis, segment, note, keep_anchors=True)  # type: ignore[return-value]


def _extended(model: AxesModel, axis: str, segment: list[tuple[float, float]], note: str, *,
              keep_anchors: bool) -> Calibration | None:
    """The calibration the base had on ``axis`` (its levels keep their alphas) followed by ``segment``'s
    levels beyond it. An axis the base had not calibrated: its anchors (anchor j -> alpha j, the
    uncalibrated rule) where ``keep_anchors``, else None (the rule covers the new anchor too)."""
    spec = model.axis(axis)
    assert spec.levels is not None
    old_anchors = spec.levels[:-1]
    known = {a.name: a for a in (model.levels.axes if model.levels is not None else ())}
    old = known[axis].calibration if axis in known else None
    if old is None:
        if not keep_anchors:
            return None
        kept = [(float(v), float(j)) for j, v in enumerate(old_anchors)]
        said = f"{axis} {old_anchors[0]:g} ... {old_anchors[-1]:g}: the anchors (not measured), linear between"
    else:
        kept = list(zip(old.levels, old.alphas, strict=True))
        said = old.source or "the calibration the base had"
        if not said.startswith(f"{axis} "):  # a source already told segment by segment keeps its words, unnested
            said = f"{axis} {old.levels[0]:g} ... {old.levels[-1]:g}: {said}"
    rising = spec.levels[-1] > spec.levels[-2]
    reach = max(v for v, _ in kept) if rising else min(v for v, _ in kept)
    beyond = [(v, a) for v, a in segment if (v > reach if rising else v < reach)]  # old levels keep their alphas
    pairs = kept + beyond
    return Calibration(tuple(v for v, _ in pairs), tuple(a for _, a in pairs), f"{said}; {note}")


def _metadata(model: AxesModel, grown: AxesModel, trained: str | None, calibration: Calibration | None,
              kinds: dict[str, Any], *, old_tuned: Any, tuned: dict[str, Any]) -> dict[str, Any]:
    """The grown file's metadata: the base's, its levels with the new anchor or axis (and calibration),
    ``tuned`` for this run with each axis's degradation and the base's earlier runs under ``history``."""
    meta = {k: v for k, v in model.metadata.items() if k != "tuned"}
    same_kind = len({kinds[a.name]["kind"] for a in grown.axes if kinds.get(a.name)}) == 1
    if not same_kind:  # a noise x JPEG model is no longer one task (merge_axes does the same)
        meta.pop("task", None)
        meta.pop("task_options", None)
    history = []
    if isinstance(old_tuned, dict):
        history = [*old_tuned.get("history", []), {k: v for k, v in old_tuned.items() if k not in ("history", "axes")}]
    grown.metadata = meta
    levels = grown.levels
    if levels is not None and calibration is not None and trained is not None:
        levels = levels.with_calibration(calibration, trained)
    if levels is not None:
        meta = levels.replace_in(meta)
    meta["tuned"] = {**tuned, "axes": {a.name: kinds[a.name] for a in grown.axes if kinds.get(a.name)},
                     **({"history": history} if history else {})}
    return meta
