"""Export a tunable model to files that other tools read.

Two formats::

    ftn export --model denoise --alpha 0.5 -o denoise-a0.5.safetensors   # a plain AdaFM-Net at alpha 0.5
    ftn export --model denoise --format onnx -o denoise.onnx              # image + alpha -> image
    ftn export --model denoise --per-pixel -o denoise-map.onnx            # image + alpha_map (N, 1, H, W)
    ftn export --model denoise --level 50 --fp16 -o denoise-s50.onnx      # image -> image, float16
    ftn export --model restore.safetensors --level sigma=12,quality=70 -o r.safetensors   # several axes
    ftn export --model restore.safetensors -o restore.onnx                # image + alpha vector (D,)

**Multi-axis models** (:class:`ftn.methods.axes.AxesModel`, :func:`run_export`): ``--level`` and
``--alpha`` take a value per axis in :mod:`ftn.levels`'s vocabulary (axes not set stay at alpha 0),
and the safetensors file is ``model.export(setting)``, the plain network at that setting; ONNX is
:func:`ftn.axes_io.export_axes_onnx` (inputs ``image`` and ``alpha`` (D,)), checked against PyTorch
with onnxruntime at the anchors, corners and between (:func:`ftn.axes_io.check_axes_onnx`).

**The original checkpoint's key layout** (:func:`export_original`): a model tuned by ``ftn tune`` from
someone else's checkpoint (read by spandrel or :func:`ftn.load_base`) records how that checkpoint
stored its tensors (:mod:`ftn.external`); ``--alpha`` then writes the plain base at that alpha the
same way, so the tool that read the original reads the export: ``-o x.pth`` a ``torch.save``'d dict
of tensors with the original wrapper, prefix and key names (``torch.load(weights_only=True)`` reads
it), ``-o x.safetensors`` the same keys flat. ``--layout ftn`` writes ftn's own safetensors instead.

**safetensors** (:func:`export_safetensors`): the base architecture's own state dict at one alpha
(``model.export(alpha)``), with ftn metadata. An RRDBNet keeps BasicSR's key names, so spandrel (and
chaiNNer and ComfyUI, which load models through it) reads the file as an ESRGAN model. Only methods
with ``capabilities.exact_export`` (FTN, DNI, AdaFM with k = 1); the others raise
:class:`~ftn.methods.ExportNotSupported` with the reason.

**ONNX** (:func:`export_onnx`; the variants, sizes and float16 are described in :mod:`ftn.onnx_graphs`).
By default a graph with two inputs, ``image`` (N, C, H, W) and ``alpha`` (1,), so one file serves
every level. The method's alpha logic runs inside the graph:

* exact-export methods are affine in alpha in weight space (FTN's Eq. 1 ``(1 - a) f + a FTN(f)``, DNI's
  interpolation, AdaFM's folded scale and shift), so the graph computes each tensor that alpha moves
  as ``t(0) + alpha (t(1) - t(0))`` and runs the plain network with it: it costs what the plain network
  costs. The affinity is checked at export, at alpha 0.5;
* the other methods (CFSNet, Dynamic-Net, AdaFM k > 1) are traced as they are, with alpha as a
  per-sample tensor: their feature-space blending is in the graph.

alpha is clamped to [0, 1] inside the graph unless the model allows extrapolation. ``--per-pixel``
takes ``alpha_map`` (N, 1, H, W) instead (every method: its own per-pixel path), ``--alpha`` /
``--level`` bake one level in (``image`` alone: the plain network ``model.export(alpha)``, or for
the methods without one their graph with alpha a constant), ``--fp16`` writes any of them in float16.
Every file is run with onnxruntime against the PyTorch model before ``ftn export`` reports success
(:func:`verify_onnx`: float32 within 1e-3, float16 at a PSNR of 45 dB or more against float32).

The graph is traced with torch's TorchScript-based exporter (``dynamo=False``), which needs nothing
beyond torch (and onnx, to write the metadata). torch 2.13's default, the dynamo exporter, needs the
extra ``onnxscript`` package, took 10-25 s per tiny network here against well under a second, and
cannot trace the validation of a tensor alpha (``bool(...)`` on a graph value) in the feature-space
path. The TorchScript exporter is deprecated; should a later torch drop it, the weight-space path
written with ``torch.func.functional_call`` (which the TorchScript tracer refuses) exported with the
dynamo exporter in a trial. The tracer records the architectures' image-size arithmetic (padding to a
multiple, cropping back), and the example image has odd sides so that the padding branch is the one
recorded: the graph then takes any height and width (and any batch size); a network that does not
pad by itself gets the padding in the graph (:mod:`ftn.onnx_graphs`). The check runs the graph on
other sizes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .control import check_alpha
from .io import base_record, save
from .levels import alpha_to_level, describe_levels, level_name, level_to_alpha
from .methods import ExportNotSupported, TunableModel
from .onnx_graphs import FP16_MIN_PSNR, FixedAlpha, MapGraph, OnnxCheck, map_example, set_metadata, verify, write_graph
from .onnx_graphs import require as _require

__all__ = ["ONNX_FORMAT", "export_safetensors", "export_original", "original_layout", "export_onnx", "check_onnx",
           "verify_onnx", "level_at", "run_export"]

#: ``format`` of the JSON written under the ONNX model's ``ftn`` metadata property.
ONNX_FORMAT = "ftn-onnx/1"
_OPSET = 17
_SOURCE_KEYS = ("task", "task_options", "levels", "calibration", "axes")


def _check_tunable(model: nn.Module) -> TunableModel:
    if not isinstance(model, TunableModel):
        raise TypeError(
            f"export needs a tunable model (a method attached), got a plain {type(model).__name__}; "
            "save a plain network with ftn.save"
        )
    return model


def level_at(metadata: dict[str, Any], alpha: float) -> dict[str, float] | None:
    """The level an alpha serves, e.g. ``{"sigma": 50.0}``, from a model's metadata; None if unknown."""
    name, value = level_name(metadata), alpha_to_level(metadata, alpha)
    return {name: value} if name and value is not None else None


def _version() -> str:
    from . import __version__

    return __version__


def export_safetensors(
    model: TunableModel, path: str | os.PathLike, alpha: float, *, source: str | None = None
) -> dict[str, Any]:
    """Write the plain base network at ``alpha`` to a safetensors file; returns the metadata written.

    The tensors carry the architecture's own key names (BasicSR's for RRDBNet); the metadata holds the
    architecture and its options (so :func:`ftn.load` rebuilds it), ``alpha``, the ``level`` it serves
    (when the model's metadata says), the task, the source model and method, and ftn's version.

    Raises:
        ExportNotSupported: the method has no exact plain equivalent (CFSNet, Dynamic-Net, AdaFM k > 1).
        ValueError: alpha outside [0, 1] for a model that does not allow extrapolation.
    """
    model = _check_tunable(model)
    try:
        plain = model.export(alpha)
    except ExportNotSupported as err:
        raise ExportNotSupported(f"no plain safetensors file for this model: {err}; ONNX export keeps the method") from None
    meta: dict[str, Any] = dict(getattr(model, "metadata", None) or {})
    written = {
        "alpha": float(alpha),
        "level": level_at(meta, alpha),
        "task": meta.get("task"),
        "task_options": meta.get("task_options"),
        "source_model": source,
        "source_method": model.method,
        "source_method_options": model.options,
        "source_levels": meta.get("levels"),
        "ftn_version": _version(),
    }
    written = {k: v for k, v in written.items() if v is not None}
    save(plain, path, **written)
    return written


def original_layout(model: nn.Module) -> dict[str, Any] | None:
    """The key layout of the checkpoint a tuned model's base was read from, or None when none is recorded.

    From the tuned file's metadata (``tuned.base.layout``), else from a base network that
    :func:`ftn.load_base` returned (its ``checkpoint_layout``).
    """
    layout = base_record(dict(getattr(model, "metadata", None) or {})).get("layout")
    if layout is None and isinstance(model, TunableModel):
        layout = getattr(model.base_network, "checkpoint_layout", None)
    return layout if isinstance(layout, dict) else None


def export_original(
    model: TunableModel, path: str | os.PathLike, alpha: float, *, source: str | None = None
) -> tuple[dict[str, Any], str]:
    """Write the plain base at ``alpha`` in the original checkpoint's key layout (``.pth`` or ``.safetensors``).

    Returns the metadata (as :func:`export_safetensors`; stored in a ``.safetensors`` file under
    ``ftn_export``, not ``ftn``, so that ftn reads the file as the plain checkpoint it is) and a
    one-line description of the layout written.

    Raises:
        ValueError: the model records no original layout, or ``path`` is neither ``.pth`` nor ``.safetensors``.
        ExportNotSupported: the method has no exact plain equivalent.
    """
    from .external import write_original

    model = _check_tunable(model)
    layout = original_layout(model)
    if layout is None:
        raise ValueError("this model records no original checkpoint layout (its base was not read from another "
                         "checkpoint); export it as ftn's own safetensors")
    try:
        plain = model.export(alpha)
    except ExportNotSupported as err:
        raise ExportNotSupported(f"no plain file for this model: {err}; ONNX export keeps the method") from None
    meta: dict[str, Any] = dict(getattr(model, "metadata", None) or {})
    written = {
        "alpha": float(alpha),
        "level": level_at(meta, alpha),
        "source_model": source,
        "source_method": model.method,
        "source_levels": meta.get("levels"),
        "ftn_version": _version(),
    }
    written = {k: v for k, v in written.items() if v is not None}
    what = write_original(plain.state_dict(), layout, path, metadata={"ftn_export": json.dumps(written)})
    if layout.get("note"):
        what += f"; {layout['note']}"
    return written, what


class _WeightSpace(nn.Module):
    """The plain base network, with every tensor that alpha moves computed from the ``alpha`` input."""

    def __init__(self, model: TunableModel) -> None:
        super().__init__()
        self.net = model.export(0.0)
        start = self.net.state_dict()
        end, middle = model.export(1.0).state_dict(), model.export(0.5).state_dict()
        floating = [k for k, t in start.items() if t.is_floating_point()]
        for key in floating:
            if not torch.allclose(middle[key], torch.lerp(start[key], end[key], 0.5), rtol=1e-4, atol=1e-6):
                raise ExportNotSupported(
                    f"method {model.method!r} moves {key!r} non-linearly with alpha, so the graph cannot interpolate it"
                )
        # Tensors alpha leaves alone (FTN's biases, layers outside the targets) are stored once, as
        # constants. At least one stays an alpha input even if none moves (an untrained tuner):
        # the tracer drops graph inputs nothing reads, and every file should take (image, alpha).
        moving = [k for k in floating if not torch.equal(start[k], end[k])] or floating[:1]
        self._slots: list[tuple[nn.Module, str]] = []
        for key in moving:
            t0 = start[key]
            owner, _, name = key.rpartition(".")
            module = self.net.get_submodule(owner)
            # From now on a plain attribute, assigned from alpha in forward: a hand-made
            # torch.func.functional_call, which the TorchScript tracer refuses to trace.
            delattr(module, name)
            self.register_buffer(f"start{len(self._slots)}", t0.clone())
            self.register_buffer(f"delta{len(self._slots)}", end[key] - t0)
            self._slots.append((module, name))
        self.clamp = not model.control.allow_extrapolation

    def forward(self, image: Tensor, alpha: Tensor) -> Tensor:
        a = alpha.reshape(())  # a 0-d alpha broadcasts without changing any tensor's shape
        if self.clamp:
            a = a.clamp(0.0, 1.0)
        for i, (module, name) in enumerate(self._slots):
            setattr(module, name, getattr(self, f"start{i}") + a * getattr(self, f"delta{i}"))
        return self.net(image)


class _FeatureSpace(nn.Module):
    """The tunable model itself, run with the ``alpha`` input as a per-sample alpha."""

    def __init__(self, model: TunableModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, alpha: Tensor) -> Tensor:
        a = alpha.reshape(1)  # a (1,) tensor takes the methods' tensor path, which the tracer records
        if not self.model.control.allow_extrapolation:
            a = a.clamp(0.0, 1.0)
        with self.model.alpha(a):
            return self.model(image)


def export_onnx(
    model: TunableModel, path: str | os.PathLike, *, source: str | None = None, opset: int = _OPSET,
    per_pixel: bool = False, alpha: float | None = None, fp16: bool = False,
) -> dict[str, Any]:
    """Write an ONNX graph of a one-axis model; returns its metadata (:mod:`ftn.onnx_graphs` has the variants).

    By default the inputs are ``image`` (N, C, H, W) and ``alpha`` (1,); ``per_pixel``: ``image`` and
    ``alpha_map`` (N, 1, H, W); ``alpha``: ``image`` alone, the plain network at that alpha (or, for
    methods without an exact export, the method's graph with alpha a constant). ``fp16``: weights,
    computation, inputs and output in float16. The metadata (JSON under the ONNX metadata property
    ``ftn``) holds the architecture, method, task, the levels and calibration (or the axes:
    :mod:`ftn.levels`), the variant and precision, so a consumer can label alpha with real levels.

    Raises:
        ImportError: onnx is not installed (the message says how to install it).
        ExportNotSupported: ``per_pixel`` for a method that takes no maps.
        ValueError: ``per_pixel`` with ``alpha``; an alpha outside [0, 1]; a network whose layers
            cannot take a per-pixel map (token sequences).
    """
    model = _check_tunable(model)
    _require("onnx")
    clamp = not model.control.allow_extrapolation
    inputs: dict[str, Tensor]
    if per_pixel and alpha is not None:
        raise ValueError("a per-pixel ONNX file takes its alpha map at run time; give either per_pixel or alpha")
    if per_pixel:
        if not model.capabilities.per_pixel:
            raise ExportNotSupported(f"method {model.method!r} does not take per-pixel alpha maps")
        graph: nn.Module = MapGraph(model, [1.0] if clamp else None)
        inputs = {"alpha_map": map_example([1.0])}
        described = {"alpha_map": "(N, 1, H, W) at the image's size: 0 = level 1, 1 = level 2, per pixel"}
    elif alpha is not None:
        check_alpha(float(alpha), allow_extrapolation=not clamp)
        graph = model.export(alpha) if model.capabilities.exact_export else FixedAlpha(model, alpha)
        inputs, described = {}, {}
    else:
        graph = _WeightSpace(model) if model.capabilities.exact_export else _FeatureSpace(model)
        inputs = {"alpha": torch.tensor([0.5])}
        described = {"alpha": "(1,): 0 = level 1, 1 = level 2"}
    try:
        sizes = write_graph(graph, path, inputs, channels=model.image_channels, probe=lambda x: model(x, alpha=0.0),
                            multiple=int(getattr(model.base_network, "size_multiple", 1) or 1), fp16=fp16, opset=opset)
    except ValueError as err:  # a map on a layer with no grid (token sequences), a network's odd output size
        Path(path).unlink(missing_ok=True)
        raise ValueError(f"cannot write this ONNX graph: {err}") from None
    meta: dict[str, Any] = dict(getattr(model, "metadata", None) or {})
    network = model.base_network
    dtype = "float16" if fp16 else "float32"
    written: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "variant": "per_pixel" if per_pixel else "baked" if alpha is not None else "alpha_input",
        "inputs": {"image": f"{dtype} (N, C, H, W), RGB in [0, 1]", **{k: f"{dtype} {v}" for k, v in described.items()}},
        **({"alpha": float(alpha), "level": level_at(meta, float(alpha))} if alpha is not None else {}),
        "alpha_clamped": clamp,
        "arch": getattr(network, "arch_name", None),
        "arch_options": getattr(network, "arch_options", None),
        "method": model.method,
        "method_options": model.options,
        **{k: meta[k] for k in _SOURCE_KEYS if k in meta},
        "source_model": source,
        "ftn_version": _version(),
        **sizes,
    }
    set_metadata(path, written)
    return written


def check_onnx(
    path: str | os.PathLike,
    model: TunableModel,
    alphas: Sequence[float] = (0.0, 0.5, 1.0),
    size: tuple[int, int] = (10, 14),  # small: a full RRDBNet checks in seconds on a CPU
    batch: int = 2,
) -> float:
    """The largest ``|ONNX - PyTorch|`` of a file from :func:`export_onnx`, run with onnxruntime
    (:func:`verify_onnx` for the whole comparison)."""
    return verify_onnx(path, model, alphas, size=size, batch=batch).max_error


def verify_onnx(
    path: str | os.PathLike, model: TunableModel, alphas: Sequence[float] = (0.0, 0.5, 1.0),
    size: tuple[int, int] = (10, 14), batch: int = 2,
) -> OnnxCheck:
    """Compare a file from :func:`export_onnx` with the model in PyTorch (float32), with onnxruntime:
    over ``alphas`` (an ``alpha`` input), per-pixel maps (``alpha_map``) or the baked alpha, on random
    images of ``size`` (odd and even, neither the traced one) and of a multiple of the network's
    ``size_multiple``; float16 files against the float32 model (:class:`ftn.onnx_graphs.OnnxCheck`)."""
    multiple = int(getattr(model.base_network, "size_multiple", 1) or 1)
    aligned = (2 * multiple, 3 * multiple) if multiple > 1 else (12, 16)
    return verify(path, model, values=list(alphas), limits=[1.0], sizes=[size, aligned], batch=batch)


def _as_number(value: float | str | None, option: str) -> float | None:
    """A one-axis model's ``--alpha`` / ``--level``: one number (the text the command line gives, or a float)."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{option} needs a number for this one-axis model, got {value!r}") from None


def _refuse_overwriting(out: Path, source: Path) -> None:
    """An export never replaces its own input nor a model shipped with ftn (``--model denoise`` must keep working)."""
    target = out.resolve()
    if target == source.resolve() or (out.exists() and source.exists() and out.samefile(source)):
        raise ValueError(f"the output {out} is the model being exported; write to another file")
    from .models import MODELS_DIR

    if target.parent == MODELS_DIR:
        raise ValueError(f"the output {out} is in ftn's shipped-model folder; write somewhere else")


def run_export(
    model_name: str, out: str, *, fmt: str | None = None, alpha: float | str | None = None,
    level: float | str | None = None, layout: str | None = None, per_pixel: bool = False, fp16: bool = False,
) -> int:
    """``ftn export``: load a shipped model or a model file, write it as ``fmt``, say what was written.

    ``layout`` (for ``--alpha``/``--level``): ``"original"`` (the default where the model records its
    base checkpoint's layout: :func:`export_original`) or ``"ftn"`` (ftn's own safetensors). ``fmt``
    ``"pth"`` (or ``-o x.pth``) is only for the original layout. ``alpha`` and ``level`` are
    numbers, or for a multi-axis model texts such as ``"sigma=12,quality=70"`` (:mod:`ftn.levels`).
    Refusals are raised as one-line ``ValueError``s (the CLI prints them and exits with status 2).
    """
    from . import models
    from .io import load
    from .methods.axes import AxesModel

    suffixes = {".safetensors": "safetensors", ".onnx": "onnx", ".pth": "pth", ".pt": "pth"}
    fmt = fmt or suffixes.get(Path(out).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format from {out!r}; pass --format safetensors, pth or onnx")
    if layout not in (None, "original", "ftn"):
        raise ValueError(f"--layout is 'original' or 'ftn', got {layout!r}")
    if (per_pixel or fp16) and fmt != "onnx":
        option = "--per-pixel" if per_pixel else "--fp16"
        raise ValueError(f"{option} is an ONNX variant; write -o x.onnx (a {fmt} file holds one plain network in float32)")
    if layout is not None and fmt == "onnx":
        raise ValueError("--layout is for .pth and .safetensors files; an ONNX file has no key layout")
    source = models.resolve(model_name)
    _refuse_overwriting(Path(out), source)
    loaded = load(source)
    if isinstance(loaded, AxesModel):
        return _export_axes(loaded.eval(), model_name, out, fmt, alpha, level, layout, per_pixel, fp16)
    alpha, level = _as_number(alpha, "--alpha"), _as_number(level, "--level")
    model = _check_tunable(loaded).eval()  # frozen norms: running statistics, in ONNX too
    recorded = original_layout(model)
    if layout == "original" and recorded is None:
        raise ValueError(f"{model_name} records no original checkpoint layout (its base is an ftn model or your own "
                         "module); leave out --layout original")
    original = recorded is not None and layout != "ftn" and fmt != "onnx"
    if fmt == "pth" and not original:
        raise ValueError("a .pth export is written only in a tuned model's original checkpoint layout; "
                         f"{'drop --layout ftn' if recorded else 'this model has none'}: write .safetensors")
    if original and Path(out).suffix.lower() not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"the original layout is written to a .pth or .safetensors file, got {out!r}")
    meta, spans = model.metadata, describe_levels(model.metadata)
    try:
        if fmt == "onnx":
            _refuse_map_with_setting(per_pixel, alpha, level)
            _require("onnxruntime")  # for the check below: refuse before writing anything
            if level is not None:
                alpha, note = level_to_alpha(meta, level)
                if note:
                    print(note)
            written = export_onnx(model, out, source=model_name, per_pixel=per_pixel, alpha=alpha, fp16=fp16)
            check = verify_onnx(out, model)
            network = model.base_network
            arch = getattr(network, "spandrel_arch", None) or getattr(network, "arch_name", None) or type(network).__name__
            if alpha is None:
                inputs = "alpha_map (N, 1, H, W), at the image's size" if per_pixel else "alpha (1,)"
                what, where = f"inputs image (N, C, H, W) and {inputs}; alpha 0 ... 1 = {spans}", (
                    "with per-pixel maps (zeros, ones, random, a ramp)" if per_pixel else "at alpha 0, 0.5, 1")
            else:
                serves = ", ".join(f"{k} {v:.3g}" for k, v in (written.get("level") or {}).items())
                body = (f"a plain {arch}" if model.capabilities.exact_export
                        else f"{arch} with its {model.method} tuning blocks (no plain equivalent)")
                what = (f"one input, image (N, C, H, W): {body} at alpha {alpha:g}"
                        f"{', serving ' + serves if serves else ''} (the model spans {spans})")
                where = f"at alpha {alpha:g}"
            return _report_onnx(out, written, check, what, where)
        if (alpha is None) == (level is None):
            raise ValueError("a safetensors file holds one level: give exactly one of --alpha and --level")
        if level is not None:
            alpha, note = level_to_alpha(meta, level)
            if note:
                print(note)
        if original:
            written, what = export_original(model, out, alpha, source=model_name)
        else:
            written = export_safetensors(model, out, alpha, source=model_name)
    except (ExportNotSupported, ImportError) as err:
        raise ValueError(str(err)) from None
    network = model.base_network
    arch = getattr(network, "spandrel_arch", None) or getattr(network, "arch_name", None) or type(network).__name__
    serves = ", ".join(f"{k} {v:.3g}" for k, v in (written.get("level") or {}).items()) or "a level in between (no calibrated level at this alpha)"
    kind = (f"{Path(out).suffix.lstrip('.')} in the original checkpoint's key layout ({what})" if original
            else "safetensors in ftn's layout")
    print(f"wrote {out} ({_file_size(out)}): {kind}; a plain {arch} at alpha {alpha:g}, serving {serves} (the model spans {spans})")
    return 0


def _export_axes(
    model: Any, model_name: str, out: str, fmt: str, alpha: float | str | None, level: float | str | None,
    layout: str | None, per_pixel: bool = False, fp16: bool = False,
) -> int:
    """``ftn export`` of a multi-axis model: plain safetensors at one setting, or ONNX (its variants)."""
    from .axes_io import check_settings, export_axes_onnx, verify_axes_onnx
    from .io import save
    from .levels import parse_setting

    names = ", ".join(f"{a.name} in [0, {a.segments}]" for a in model.axes)
    levels = model.levels
    spans = levels.describe() if levels is not None else "anchor levels not named"
    if layout == "original" or fmt == "pth":
        raise ValueError("a multi-axis model is exported in ftn's own layout only: write .safetensors or .onnx")

    def setting_of() -> tuple[dict[str, float], Any]:
        text = {k: None if v is None else v if isinstance(v, str) else f"{v:g}" for k, v in (("alpha", alpha), ("level", level))}
        values = parse_setting([(a.name, a.segments) for a in model.axes], levels, alpha=text["alpha"], level=text["level"])
        for value in values.values():
            if value.note:
                print(value.note)
        return {name: float(v.alpha) for name, v in values.items()}, values

    if fmt == "onnx":
        _refuse_map_with_setting(per_pixel, alpha, level)
        _require("onnxruntime")  # for the check below: refuse before writing anything
        setting, values = setting_of() if alpha is not None or level is not None else (None, None)
        try:
            written = export_axes_onnx(model, out, per_pixel=per_pixel, setting=setting, fp16=fp16, source=model_name)
        except ImportError as err:
            raise ValueError(str(err)) from None
        check = verify_axes_onnx(out, model)
        d = len(model.axes)
        if per_pixel:
            what = f"inputs image (N, C, H, W) and alpha_map (N, {d}, H, W), at the image's size: {names} ({spans})"
            where = "with per-pixel maps (zeros, every axis's top, random, a ramp)"
        elif setting is None:
            what = f"inputs image (N, C, H, W) and alpha ({d},): {names} ({spans})"
            where = f"at {len(check_settings(model))} settings (0, every anchor and corner, between)"
        else:
            arch = getattr(model.base_network, "arch_name", None) or type(model.base_network).__name__
            what = (f"one input, image (N, C, H, W): a plain {arch} at " + "; ".join(v.words for v in values.values())
                    + f" (the model spans {spans})")
            where = "at that setting"
        return _report_onnx(out, written, check, what, where)
    if alpha is None and level is None:
        raise ValueError("a safetensors file holds one setting: give --level (e.g. sigma=12,quality=70) and/or --alpha")
    setting, values = setting_of()
    plain = model.export(setting)
    meta: dict[str, Any] = dict(model.metadata or {})
    written = {
        "alpha": setting,
        "level": {n: v.level for n, v in values.items() if v.level is not None} or None,
        "task": meta.get("task"),
        "source_model": model_name,
        "source_method": model.method,
        "source_method_options": model.options,
        "source_axes": levels.to_metadata().get("axes") if levels is not None else [a.name for a in model.axes],
        "ftn_version": _version(),
    }
    save(plain, out, **{k: v for k, v in written.items() if v is not None})
    arch = getattr(model.base_network, "arch_name", None) or type(model.base_network).__name__
    print(f"wrote {out} ({_file_size(out)}): safetensors in ftn's layout; a plain {arch} at "
          + "; ".join(v.words for v in values.values()) + f" (the model spans {spans})")
    return 0


def _refuse_map_with_setting(per_pixel: bool, alpha: object, level: object) -> None:
    if per_pixel and (alpha is not None or level is not None):
        raise ValueError("a per-pixel ONNX file takes its alpha map at run time: drop --alpha/--level, or drop "
                         "--per-pixel to bake one setting in")


def _report_onnx(out: str, written: dict[str, Any], check: OnnxCheck, what: str, where: str) -> int:
    """Remove a file that failed its check (one-line refusal), else say what was written and checked."""
    if not check.passed:
        Path(out).unlink()
        if check.fp16 and math.isfinite(check.max_error):
            raise ValueError(f"the float16 graph's PSNR against PyTorch is {check.psnr:.1f} dB, under "
                             f"{FP16_MIN_PSNR:g} dB (max difference {check.max_error:.3g}); nothing written")
        raise ValueError(f"the ONNX graph differs from PyTorch by {check.max_error:.3g}; nothing written")
    precision = ", float16 (weights, computation, inputs and output)" if written.get("precision") == "fp16" else ""
    pads = (f"; pads to a multiple of {written['pads_to']} in the graph" if written.get("pads_to") else "")
    print(f"wrote {out} ({_file_size(out)}): onnx{precision}, {what}{pads}")
    print(f"checked with onnxruntime against PyTorch {where} ({check.cases} comparisons over two image sizes): "
          f"{check.words()}")
    return 0


def _file_size(path: str | os.PathLike) -> str:
    """A file's size in words, e.g. ``"1.2 MB"``."""
    size = Path(path).stat().st_size
    for unit, step in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= step:
            return f"{size / step:.1f} {unit}"
    return f"{size} bytes"
