"""The tune loop: a tuner on a frozen base, trained at alpha 1 to reach level 2.

:func:`tune` is ``ftn tune`` in Python::

    path = ftn.tune("dncnn-s-25.safetensors", from_="noise:25,unclipped", to="noise:50,unclipped",
                         data="BSD432", iters=2000, out="dncnn-25-50.safetensors")

Steps: load the base (an ``nn.Module``, an ftn model file or shipped name, or a checkpoint
:func:`ftn.load_base` reads), attach the method, freeze the base, and check that alpha 0 reproduces the
base exactly on a probe input (refused otherwise: a tuned file whose left end is not the base would
mislead every user of it); then Adam on ``model.tuner_parameters()`` at alpha 1, L1 loss against the
source's targets (:mod:`ftn.tuning.data`); last, where both ends are numeric levels of one task, the
level -> alpha calibration on the images held out of ``data`` (:mod:`ftn.tuning.calibrate`: every
k-th file by name, at most ``hold_out_images`` and a third; with fewer than 6 images, on the training
images, and the file says so). Batch and patch size not given come from free memory
(:mod:`ftn.tuning.sizes`); a resumed run keeps its checkpoint's.

The whole model stays in eval mode while it trains: the base is frozen, so its normalisation layers
keep their running statistics and dropout stays off; the tuners have neither.

Learning rate: a constant 1e-4 (Adam). Measured once (DnCNN-S-25 tuned to
unclipped sigma 50, 40 steps of 4 x 40 px grey patches from 3 CBSD68 images, PSNR at alpha 1 on 128 px
crops of two of those three images, so not held out): 1e-4 gave 23.96 and 32.09 dB, 5e-4 gave 23.73 and 31.17 dB (the base:
17.65 and 20.97). The tuners start at the identity and act on every kernel of a deep frozen base,
so a small step already moves the output a lot; a higher rate overshoots. Constant, because a
``--minutes`` budget has no known last step to decay towards, and resuming then needs no schedule
state. To be settled with longer runs in benchmarks/tune.py.

Checkpoints (``OUT`` with ``.checkpoint.safetensors`` in place of its suffix) are written every
``checkpoint_every`` steps, on Ctrl-C (then the KeyboardInterrupt goes on) and at the end; the data of
step s depends only on (seed, s), so ``resume=True`` continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from ..data.images import list_images
from ..io import UnknownArchitecture, load, load_base, read_metadata
from ..io import save as save_model
from ..methods import TunableModel, attach
from ..methods.base import image_channels
from ..train.checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from .calibrate import MIN_IMAGES_TO_HOLD_OUT, calibratable, calibrate_tuned, hold_out
from .data import PairsSource, Source, SpecSource, TeacherSource, data_files, smallest_side
from .defaults import DEFAULT_BATCH, DEFAULT_HOLD_OUT, DEFAULT_ITERS, DEFAULT_LR, DEFAULT_PATCH
from .sizes import activation_elements, choose_sizes, free_memory
from .specs import JpegSpec, LevelSpec, NoiseSpec, PairsSpec, TeacherSpec, resolve_levels

__all__ = ["tune", "TrainingPaused", "load_network", "checkpoint_path", "check_run", "run_steps", "DEFAULT_LR", "DEFAULT_BATCH", "DEFAULT_PATCH", "DEFAULT_ITERS"]

#: Settings a resumed run may change: the budget, the device, the bar.
_RESUMABLE = {"iters", "minutes", "device", "checkpoint_every"}


def checkpoint_path(out: str | os.PathLike) -> Path:
    """Where the run writing ``out`` keeps its checkpoint: ``tuned.safetensors`` -> ``tuned.checkpoint.safetensors``."""
    out = Path(out)
    return out.with_name(out.stem + ".checkpoint.safetensors")


def load_network(source: nn.Module | str | os.PathLike, what: str = "base") -> tuple[nn.Module, dict[str, Any]]:
    """A plain network and a JSON record of where it came from.

    ``source``: an ``nn.Module`` (copied, so the caller's stays as it is), an ftn model file or a
    shipped model's name (read with :func:`ftn.load`), a checkpoint :func:`ftn.load_base` reads, or
    one spandrel recognises (:func:`ftn.external.load_spandrel`). A checkpoint's record includes its
    original key layout, for ``ftn export`` (:mod:`ftn.external`).

    Raises:
        FileNotFoundError: no such file or shipped name. ValueError: unreadable, or a model that
            already has a method attached (its alpha 0 is not one network).
    """
    if isinstance(source, nn.Module):
        if isinstance(source, TunableModel):
            raise ValueError(f"the {what} already has a method attached ({source.method}); pass the plain network")
        return copy.deepcopy(source), {"kind": "module", "class": type(source).__name__}
    from ..models import resolve

    path = resolve(source)
    meta: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        try:
            meta = read_metadata(path)
        except ValueError:
            meta = {}
    if meta.get("format"):
        if meta.get("method"):
            raise ValueError(f"{what} {path.name} already has method {meta['method']!r} attached; tune a plain network")
        network = load(path)
        return network, {"kind": "ftn", "file": path.name, "arch": meta.get("arch"),
                         "arch_options": meta.get("arch_options")}
    try:
        network = load_base(path)
    except UnknownArchitecture:
        # Not an architecture ftn has: spandrel's (if installed), recorded by its id and the original
        # key layout, {"kind": "spandrel", ...}; loading looks the id up in spandrel's registry only.
        from ..external import load_spandrel

        return load_spandrel(path)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # safetensors' or torch's own errors on a damaged file: one line
        raise ValueError(f"cannot read {what} {path}: {' '.join(str(err).split())[:200]}") from None
    return network, {"kind": "load_base", "path": os.fspath(source), "arch": getattr(network, "arch_name", None),
                     "arch_options": getattr(network, "arch_options", None),
                     "layout": getattr(network, "checkpoint_layout", None)}


def _pick_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, and torch sees no CUDA device; use --device auto or cpu")
    return device


def _probe(channels: int, network: nn.Module) -> torch.Tensor:
    """A fixed random image the base accepts (its side a multiple of the architecture's ``size_multiple``)."""
    multiple = int(getattr(network, "size_multiple", 1) or 1)
    side = multiple * max(1, math.ceil(32 / multiple))
    return torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(0))


def _check_positive(name: str, value: float | None, integer: bool = True) -> None:
    if value is None:
        return
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else isinstance(value, (int, float))
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive {'whole ' if integer else ''}number, got {value!r}")


def _build_source(level1: LevelSpec, level2: LevelSpec, *, data: Any, teacher: nn.Module | None,
                  patch_size: int, grey: bool, seed: int, files: list[Path] | None) -> Source:
    if isinstance(level2, (NoiseSpec, JpegSpec)):
        return SpecSource(level2, data, patch_size=patch_size, grey=grey, seed=seed, files=files)
    if isinstance(level2, TeacherSpec):
        assert teacher is not None
        return TeacherSource(teacher, level1, data, patch_size=patch_size, grey=grey, seed=seed, files=files)
    assert isinstance(level2, PairsSpec)
    return PairsSource(level2.input_dir, level2.target_dir, patch_size=patch_size, grey=grey, seed=seed)


def resume_from(ckpt: Path, saved: dict[str, Any] | None, recipe: dict[str, Any], model: nn.Module,
                optimizer: torch.optim.Optimizer) -> tuple[int, float]:
    """(first step, seconds trained before): (0, 0) for a new run; for ``--resume``, the checkpoint's
    state loaded into ``model`` and ``optimizer`` once its recipe (``saved``) is this run's (one line
    naming the first difference otherwise: only :data:`_RESUMABLE` settings may change)."""
    if saved is None:
        return 0, 0.0
    differ = sorted(k for k in recipe if saved.get(k) != recipe[k])
    if differ:
        k = differ[0]
        # bounded: a base's recipe (its key layout, paths) can be kilobytes long
        raise ValueError(f"the checkpoint {ckpt.name} was written with another {k} "
                         f"({str(saved.get(k))[:120]!r} -> {str(recipe[k])[:120]!r}); "
                         f"only {sorted(_RESUMABLE)} may change when resuming")
    info = load_checkpoint(ckpt, model, optimizer)
    return int(info["step"]), float(info["elapsed_s"])


class TrainingPaused(Exception):
    """A run of ``iters`` steps paused by ``stop_after_s`` (a long run in legs): the checkpoint holds
    ``step``; the same call with ``resume=True`` continues it. Nothing else was written."""

    def __init__(self, step: int, iters: int, checkpoint: Path) -> None:
        super().__init__(f"paused after step {step} of {iters}: checkpoint {checkpoint} (continue with --resume)")
        self.step, self.iters, self.checkpoint = step, iters, checkpoint


def check_run(out: str | os.PathLike, inputs: dict[str, Any], *, resume: bool, iters: int | None,
              minutes: float | None, batch_size: int | None, patch_size: int | None, lr: float,
              checkpoint_every: int, hold_out_images: int,
              stop_after_s: float | None = None) -> tuple[Path, Path, int | None]:
    """The checks every tune run makes before anything is read: (out, its checkpoint, iters).

    ``inputs``: name -> the files the run reads (the output never replaces one of them).

    Raises:
        ValueError / FileNotFoundError: a refused argument (one line).
    """
    if iters is not None and minutes is not None:
        raise ValueError("give --iters or --minutes, not both")
    _check_positive("iters", iters)
    _check_positive("minutes", minutes, integer=False)
    _check_positive("batch_size", batch_size)
    _check_positive("patch_size", patch_size)
    _check_positive("lr", lr, integer=False)
    _check_positive("checkpoint_every", checkpoint_every)
    _check_positive("stop_after", stop_after_s, integer=False)
    if stop_after_s is not None and minutes is not None:
        raise ValueError("--stop-after pauses a run of --iters steps; a --minutes run already ends on time")
    if not isinstance(hold_out_images, int) or isinstance(hold_out_images, bool) or hold_out_images < 0:
        raise ValueError(f"the number of held-out images must be a whole number >= 0, got {hold_out_images!r}")
    if iters is None and minutes is None:
        iters = DEFAULT_ITERS
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the output must be a .safetensors file, got {out}")
    ckpt = checkpoint_path(out)
    from ..models import MODELS_DIR

    if out.resolve().parent == MODELS_DIR.resolve():  # `--model denoise` must keep working
        raise ValueError(f"the output {out} is in the folder of the models shipped with ftn; write it elsewhere")
    for name, given in inputs.items():  # never overwrite an input
        if isinstance(given, (str, os.PathLike)) and Path(given).is_file():
            if Path(given).resolve() == out.resolve():
                raise ValueError(f"the output {out} is the {name} file itself; write the tuned model to another file")
            if Path(given).resolve() == ckpt.resolve():
                raise ValueError(f"the output's checkpoint {ckpt} would be the {name} file; write the tuned model to another file")
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {ckpt}; run without --resume to start")
    if not resume and ckpt.is_file():
        raise ValueError(f"{ckpt} holds an earlier run: pass --resume to continue it, or delete it to start again")
    return out, ckpt, iters


def tune(
    base: nn.Module | str | os.PathLike,
    *,
    to: str | None = None,
    from_: str | None = None,
    data: str | os.PathLike | None = None,
    teacher: nn.Module | str | os.PathLike | None = None,
    pairs: tuple[str | os.PathLike, str | os.PathLike] | None = None,
    method: str | None = None,
    method_options: dict[str, Any] | None = None,
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
    axis: str | None = None,
    add_anchor: str | None = None,
    new_axis: str | None = None,
    chain: bool | None = None,
    corner: str | None = None,
    stop_after_s: float | None = None,
) -> Path:
    """Tune ``base`` from level 1 (``from_``, or "the base") to level 2 (``to``, ``teacher`` or ``pairs``).

    Or grow a tunable ``base`` (:mod:`ftn.tuning.grow_loop`): ``add_anchor="noise:100"`` (with
    ``axis``) adds an anchor after the axis's last, ``new_axis="quality"`` (with ``to``, optionally
    ``from_``) adds an axis; only the new tuner trains, and every setting the base had gives the same
    output bit for bit. ``chain`` (a one-axis base only): later anchors start from the one before.
    ``method`` defaults to ftn (to the base's when growing).

    Writes the tuned model to ``out`` (``ftn.load(out)``; a base that is not an ftn architecture
    needs ``ftn.load(out, model=...)``) and returns its path. Trains for ``iters`` steps, or for
    ``minutes`` of this call (default: 1000 steps). Nothing is written before every argument has
    been checked (specs, data, pairs, teacher, base, alpha 0 exactness).

    ``batch_size`` and ``patch_size`` not given are chosen from free memory (:mod:`ftn.tuning.sizes`;
    a resumed run keeps its checkpoint's). Where both ends are numeric levels of one task
    (``noise:25`` -> ``noise:50``, ``jpeg:40`` -> ``jpeg:10``) and ``calibrate`` is true,
    ``hold_out_images`` images of ``data`` (at most a third) are kept out of training and, after
    it, the level -> alpha calibration is measured on them and stored in the file, so
    ``ftn run --level 40`` works (:mod:`ftn.tuning.calibrate`). With fewer than 6 images none is
    held out: the calibration is then measured on training images, and the file and the output say so.

    ``stop_after_s``: a long run in legs: this call pauses after that many seconds of training,
    checkpoint written, and raises :class:`TrainingPaused`; the same call with ``resume=True``
    continues it (``corner``: see :func:`ftn.tuning.grow_loop.grow`).

    Raises:
        ValueError / FileNotFoundError: a refused argument (one line, nothing written).
        KeyboardInterrupt: after Ctrl-C, once the checkpoint is saved.
        TrainingPaused: ``stop_after_s`` reached before the last step (the checkpoint is saved).
    """
    if add_anchor is not None or new_axis is not None or corner is not None:
        if teacher is not None or pairs is not None:
            raise ValueError("--add-anchor, --new-axis and --corner take their level as a noise or JPEG spec (or "
                             "anchor levels), not --teacher or --pairs")
        from .grow_loop import grow

        return grow(base, axis=axis, add_anchor=add_anchor, new_axis=new_axis, to=to, from_=from_, chain=chain,
                    corner=corner, method=method, method_options=method_options, data=data, iters=iters,
                    minutes=minutes, batch_size=batch_size, patch_size=patch_size, lr=lr, out=out, resume=resume,
                    device=device, progress=progress, seed=seed, checkpoint_every=checkpoint_every,
                    calibrate=calibrate, hold_out_images=hold_out_images, stop_after_s=stop_after_s)
    if axis is not None or chain is not None:
        raise ValueError("--axis and --chain/--no-chain go with --add-anchor (or --new-axis)")
    method = "ftn" if method is None else method
    level1, level2 = resolve_levels(from_, to, None if teacher is None else _teacher_name(teacher), pairs)
    if isinstance(level2, PairsSpec) and data is not None:
        raise ValueError("--data is not used with --pairs (the pairs are the training data); leave it out")
    out, ckpt, iters = check_run(out, {"base": base, "teacher": teacher}, resume=resume, iters=iters, minutes=minutes,
                                 batch_size=batch_size, patch_size=patch_size, lr=lr, checkpoint_every=checkpoint_every,
                                 hold_out_images=hold_out_images, stop_after_s=stop_after_s)
    saved = read_checkpoint_info(ckpt)["config"] if resume else None
    dev = _pick_device(device)
    # The training files: --data less the images held out for the calibration (none where there is none).
    will_calibrate = calibrate and calibratable(level1, level2)
    train_files: list[Path] | None = None
    held: list[Path] = []
    if isinstance(level2, (NoiseSpec, JpegSpec, TeacherSpec)):
        what = "--teacher" if isinstance(level2, TeacherSpec) else f"--to {level2.name}"
        train_files = data_files(data, what)
        if will_calibrate:
            train_files, held = hold_out(train_files, hold_out_images)

    network, origin = load_network(base, "base")
    channels = image_channels(network)
    if channels not in (1, 3):
        raise ValueError(f"the base takes {channels} image channels; ftn tune handles grey (1) and RGB (3)")
    network.eval()
    probe = _probe(channels, network)
    with torch.no_grad():
        reference = network(probe)
    model = attach(network, method, **(method_options or {}))
    model.freeze_base()
    model.metadata = {}  # the base file's own metadata (levels, calibration) does not describe the tuned model
    model.eval()
    with torch.no_grad():
        at_zero = model(probe, alpha=0.0)
    if at_zero.shape != reference.shape or not torch.equal(at_zero, reference):
        raise ValueError(f"method {method!r} at alpha 0 does not reproduce this base exactly on a probe image; "
                         "refusing to tune (please report it with the base's architecture)")
    teacher_net = None
    if isinstance(level2, TeacherSpec):
        teacher_net, _ = load_network(teacher, "teacher")  # type: ignore[arg-type]
        teacher_net.eval()
        with torch.no_grad():
            taught = teacher_net(probe)
        if taught.shape != reference.shape:
            raise ValueError(f"the teacher gives {tuple(taught.shape)} where the base gives {tuple(reference.shape)} "
                             f"on a {probe.shape[-1]}px probe; level 2 must have the base's output shape")
        teacher_net.to(dev)
    if isinstance(level2, PairsSpec):
        try:  # the inputs' sizes bound the patch; a folder that is not there is the source's to report
            smallest = smallest_side(list_images(level2.input_dir))
        except ValueError:
            smallest = None
    else:
        smallest = smallest_side(train_files or [])
    batch_size, patch_size, sizes_note = _sizes(model, probe, dev, batch_size, patch_size, saved, smallest)
    source = _build_source(level1, level2, data=data, teacher=teacher_net, patch_size=patch_size,
                           grey=channels == 1, seed=seed, files=train_files)

    model.to(dev)
    params = model.tuner_parameters()
    optimizer = torch.optim.Adam(params, lr=lr)
    recipe = {"base": origin, "from": level1.record(), "to": level2.record(), "data": _data_name(data, level2),
              "method": method, "method_options": model.options, "batch_size": batch_size, "patch_size": patch_size,
              "lr": lr, "seed": seed, "loss": "l1", "held_out": [f.name for f in held]}
    run = {"iters": iters, "minutes": minutes, "device": str(dev), "checkpoint_every": checkpoint_every,
           "sizes": sizes_note}
    start, elapsed_before = resume_from(ckpt, saved, recipe, model, optimizer)
    n_train = sum(p.numel() for p in params)
    if progress:
        tqdm.write(f"tune {level1.name} -> {level2.name}: {method} on a frozen base ({origin.get('arch') or origin.get('class') or origin.get('path')}), "
                   f"{n_train:,} parameters train; {source.description}; batch {batch_size} x {patch_size}px on {dev} "
                   f"({sizes_note})")
        if will_calibrate:
            tqdm.write(f"held out for the calibration after training: {_calibration_images(held, train_files)}")

    done, wall = run_steps(model, optimizer, source, alpha=1.0, device=dev, ckpt=ckpt, config={**recipe, **run}, start=start,
                           elapsed_before=elapsed_before, iters=iters, minutes=minutes, batch_size=batch_size, lr=lr,
                           checkpoint_every=checkpoint_every, progress=progress, stop_after_s=stop_after_s)
    metadata: dict[str, Any] = {
        "levels": [level1.metadata(), level2.metadata()],
        "tuned": {**recipe, "sizes": sizes_note, "iterations": done, "wall_time_s": round(wall, 1), "device": str(dev),
                  "image_channels": channels},
    }
    if isinstance(level2, (NoiseSpec, JpegSpec)):
        metadata["task"] = level2.task.name
        metadata["task_options"] = level2.task.options
    model.metadata = metadata
    if will_calibrate:
        assert isinstance(level1, (NoiseSpec, JpegSpec)) and isinstance(level2, (NoiseSpec, JpegSpec))
        images = held or train_files or []
        t_cal = time.perf_counter()
        if progress:
            tqdm.write(f"calibrating {level1.name} ... {level2.name} (6 levels x 11 alphas) on "
                       f"{_calibration_images(held, images)}")
        metadata = calibrate_tuned(model, level1, level2, images, grey=channels == 1, seed=seed,
                                   files_name="held-out files" if held else "training files (too few images to hold out)")
        calibration = metadata["calibration"]
        metadata["tuned"]["calibration"] = {"images": [Path(f).name for f in images], "held_out": bool(held),
                                            "seconds": round(time.perf_counter() - t_cal, 1)}
        if progress:
            pairs = ", ".join(f"{_number(v)} -> {a:.2f}" for v, a in zip(calibration["levels"], calibration["alphas"]))
            tqdm.write(f"calibration ({calibration['level_name']} -> alpha, {time.perf_counter() - t_cal:.0f} s): {pairs}")
    else:
        metadata["tuned"]["calibration"] = _no_calibration(level1, level2, calibrate)
    model.cpu()
    save_model(model, out, **metadata)
    return out


def run_steps(model: nn.Module, optimizer: torch.optim.Optimizer, source: Source, *, alpha: Any,
              device: torch.device, ckpt: Path,
              config: dict[str, Any], start: int, elapsed_before: float, iters: int | None, minutes: float | None,
              batch_size: int, lr: float, checkpoint_every: int, progress: bool,
              stop_after_s: float | None = None) -> tuple[int, float]:
    """Adam steps from ``start`` on ``source``'s batches at ``alpha`` (a number, or a multi-axis
    training point), L1 loss; until ``iters`` or the ``minutes`` budget of this call. The state goes
    to ``ckpt`` every ``checkpoint_every`` steps, on Ctrl-C (then the KeyboardInterrupt goes on) and
    at the end. After ``stop_after_s`` seconds of this call, short of ``iters``, the state is saved
    and :class:`TrainingPaused` raised. Returns (steps done in all, wall seconds in all)."""
    t0 = time.perf_counter()
    done = start

    def save_state() -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=None, step=done,
                        elapsed_s=elapsed_before + time.perf_counter() - t0, config=config)

    deadline = None if minutes is None else 60.0 * minutes
    bar = tqdm(total=iters, initial=start, desc="tune", unit="it", dynamic_ncols=True, disable=not progress)
    try:
        while iters is None or done < iters:
            x, target = source.batch(done, batch_size, device)
            loss = nn.functional.l1_loss(model(x, alpha=alpha), target)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise ValueError(f"the loss became {loss_value} at step {done + 1}; lower lr (now {lr:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            spent = time.perf_counter() - t0
            postfix = {"loss": f"{loss_value:.4f}"}
            if deadline is not None:
                left = int(max(0.0, deadline - spent))
                postfix["left"] = f"{left // 60}:{left % 60:02d}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if done % checkpoint_every == 0:
                save_state()
            if deadline is not None and spent >= deadline:
                break
            if stop_after_s is not None and spent >= stop_after_s and iters is not None and done < iters:
                bar.close()
                save_state()
                raise TrainingPaused(done, iters, ckpt)
    except KeyboardInterrupt:
        bar.close()
        if done > start:
            save_state()
            tqdm.write(f"interrupted after step {done}: checkpoint {ckpt} (continue with --resume)")
        raise
    bar.close()
    save_state()
    return done, elapsed_before + time.perf_counter() - t0


def _sizes(model: TunableModel, probe: torch.Tensor, device: torch.device, batch_size: int | None,
           patch_size: int | None, saved: dict[str, Any] | None, smallest: int | None,
           alpha: Any = 1.0) -> tuple[int, int, str]:
    """(batch, patch, how they were chosen): as given, as the checkpoint's (resume), or from free memory."""
    if saved is not None:  # resume: the free memory has changed since; keep the run's sizes
        if batch_size is None and patch_size is None and saved.get("sizes"):
            return int(saved["batch_size"]), int(saved["patch_size"]), str(saved["sizes"])
        batch_size = batch_size or saved.get("batch_size")
        patch_size = patch_size or saved.get("patch_size")
    if batch_size is not None and patch_size is not None:
        return int(batch_size), int(patch_size), "as given" if saved is None else "as given or as the checkpoint's"
    elements = activation_elements(model, probe, alpha)  # per pixel, the same on any device: measured where the model is (CPU)
    try:
        free, where = free_memory(device)
    except (RuntimeError, OSError) as err:  # a device that does not say: today's CPU defaults
        return (batch_size or DEFAULT_BATCH, patch_size or DEFAULT_PATCH,
                f"defaults (free memory unknown: {' '.join(str(err).split())[:80]})")
    sizes = choose_sizes(elements, free, device.type, where, batch_size=batch_size, patch_size=patch_size,
                         smallest_image=smallest)
    return sizes.batch_size, sizes.patch_size, sizes.note


def _calibration_images(held: list[Path], train_files: list[Path] | None) -> str:
    if held:
        return f"{len(held)} held-out images ({', '.join(f.name for f in held)})"
    n = len(train_files or [])
    return f"{n} training images (fewer than {MIN_IMAGES_TO_HOLD_OUT} in --data, so none held out)"


def _no_calibration(level1: LevelSpec, level2: LevelSpec, asked: bool) -> str:
    if not asked:
        return "none (--no-calibrate); use --alpha"
    return (f"none: {level1.name} -> {level2.name} are not two numeric levels of one task, "
            "so there is no level to ask for; use --alpha")


def _number(value: float) -> str:
    return f"{value:g}"


def _teacher_name(teacher: nn.Module | str | os.PathLike) -> str:
    """The teacher's name in labels: its file name, or its class name for an ``nn.Module``."""
    return type(teacher).__name__ if isinstance(teacher, nn.Module) else os.fspath(teacher)


def _data_name(data: Any, level2: LevelSpec) -> str | None:
    if isinstance(level2, PairsSpec) or data is None:
        return None
    return Path(data).name
