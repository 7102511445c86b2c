"""Files of multi-axis models (:mod:`ftn.methods.axes`): safetensors with JSON metadata, no pickle.

A file written by :func:`save_axes` holds the network's state dict (every anchor's and corner's tuner
included) and, under the safetensors metadata key ``"ftn"``, the fields of :func:`ftn.save` plus the
model's structure and, where its axes name their anchor levels, the ``ftn.levels`` entries::

    {"format": "ftn/1", "arch": "adafm_net", "arch_options": {...}, "method": "ftn",
     "method_options": {"groups": 16, ...}, "targets": [...],
     "multi_axis": {"axes": [{"name": "sigma", "anchors": 4, "chained": true},
                             {"name": "quality", "anchors": 2, "chained": false}],
                    "corners": [{"sigma": 1, "quality": 1}]},
     "axes": [{"name": "sigma", "anchors": [5, 15, 30, 50]}, {"name": "quality", "anchors": [90, 10]}],
     ...user metadata}

so ``ftn.levels.Levels.from_metadata`` describes it. (A one-axis, two-anchor model's levels are written
in the old form, ``"levels": [{"sigma": 20}, {"sigma": 80}]``, as ``Levels`` does.) This module
lives outside :mod:`ftn.methods` because rebuilding the architecture imports ``ftn.archs``, which
methods never do; ``ftn.io.load`` is to dispatch here on the ``"multi_axis"`` key.

**ONNX** (:func:`export_axes_onnx`): inputs ``image`` (N, C, H, W) and ``alpha`` (D,), one value per
axis in the model's order, each clamped to [0, K_d] in the graph. Eq. (A1) is affine in the hat
weights, so the graph holds, for every tensor the setting moves, its base value t_0 and one delta per
term (anchor deltas t({d: k}) - t_0; corner corrections t(corner) - t_0 - their anchors' deltas, all
read from ``model.export``), computes the hat weights from ``alpha`` and runs the plain network with
t_0 + sum_j w_j delta_j: the plain network's cost plus a weighted sum over the moving tensors.
Traced with TorchScript's exporter (``dynamo=False``), as :mod:`ftn.export` does, for the same reasons.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file
from torch import Tensor

from .archs import ARCHS, build_arch
from .io import FORMAT, build_checked, check_structure, move_into_place, read_header, read_metadata, read_state_dict, short
from .levels import Levels
from .methods.axes import AxesModel, AxisSpec, attach_axes
from .methods.base import image_channels
from .onnx_graphs import TRACE_SIZE, MapGraph, OnnxCheck, map_example, require, set_metadata, verify, write_graph

__all__ = ["save_axes", "load_axes", "export_axes_onnx", "check_axes_onnx", "verify_axes_onnx", "check_settings", "STRUCTURE_KEY",
           "ONNX_AXES_FORMAT"]

#: The ``format`` of the metadata in a multi-axis ONNX file.
ONNX_AXES_FORMAT = "ftn-onnx-axes/1"

#: Limits on a file's structure that no real model reaches (checked before building).
MAX_AXES, MAX_ANCHORS, MAX_CORNERS = 8, 16, 64

#: The metadata key holding a multi-axis model's structure.
STRUCTURE_KEY = "multi_axis"
_RESERVED = {"format", "arch", "arch_options", "method", "method_options", "targets", STRUCTURE_KEY}


def save_axes(model: AxesModel, path: str | os.PathLike, **metadata: Any) -> None:
    """Write a multi-axis model to a safetensors file with its metadata, atomically."""
    if not isinstance(model, AxesModel):
        raise TypeError(f"save_axes writes AxesModel objects; for {type(model).__name__} use ftn.save")
    clash = _RESERVED & set(metadata)
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are written by ftn itself")
    meta: dict[str, Any] = dict(model.metadata)
    for key, value in metadata.items():
        try:
            json.dumps(value)
        except TypeError as err:
            raise TypeError(f"metadata {key!r} is not JSON-serialisable: {err}") from None
        meta[key] = value
    levels = model.levels
    if levels is not None:
        meta = levels.replace_in(meta)
    architecture = model.base_network
    meta.update(
        format=FORMAT,
        arch=getattr(architecture, "arch_name", None),
        arch_options=getattr(architecture, "arch_options", None),
        method=model.method,
        method_options=model.options,
        targets=model.target_names,
    )
    meta[STRUCTURE_KEY] = _structure(model)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.model.state_dict().items()}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"ftn": json.dumps(meta)})
        move_into_place(tmp, path)  # the umask's mode, not save_file's 0600
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_axes(path: str | os.PathLike, *, model: nn.Module | None = None) -> AxesModel:
    """Load a file written by :func:`save_axes`; ``model``: an instance of the base architecture
    where it is not one of ``ftn.ARCHS``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a multi-axis model file, or its tensors do not fit (one line).
    """
    path = Path(path)
    meta = read_metadata(path)
    structure = meta.get(STRUCTURE_KEY)
    if meta.get("format") != FORMAT or not isinstance(structure, dict):
        raise ValueError(f"{path}: not a multi-axis ftn model file (no {STRUCTURE_KEY!r} metadata); use ftn.load")
    check_structure(meta, path)
    try:
        levels = Levels.from_metadata(meta)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    anchors = {a.name: a.anchors for a in levels.axes if a.name is not None}
    try:
        specs = [
            AxisSpec(str(a["name"]), int(a["anchors"]), bool(a.get("chained", False)), anchors.get(str(a["name"])))
            for a in structure["axes"]
        ]
        corners = [dict(c) for c in structure.get("corners", [])]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: the {STRUCTURE_KEY!r} metadata is malformed ({short(err)})") from None
    # Bounds no real model reaches, checked before anything is built: a tiny file must not ask for
    # thousands of tuners per layer.
    if len(specs) > MAX_AXES or any(s.anchors > MAX_ANCHORS for s in specs) or len(corners) > MAX_CORNERS:
        raise ValueError(f"{path}: the {STRUCTURE_KEY!r} metadata asks for more than {MAX_AXES} axes, "
                         f"{MAX_ANCHORS} anchors on an axis or {MAX_CORNERS} corners")
    arch = meta.get("arch")
    if model is None and arch not in ARCHS:
        raise ValueError(f"{path}: architecture {short(arch)} is not one of ftn's {sorted(ARCHS)}; "
                         "pass an instance of the network as load_axes(path, model=...)")

    def build(base: nn.Module | None) -> AxesModel:
        network = build_arch(arch, **(meta.get("arch_options") or {})) if base is None else base
        return attach_axes(network, str(meta.get("method")), specs, corners=corners,
                           targets=list(meta.get("targets") or []) or None, **(meta.get("method_options") or {}))

    # On the meta device first: the file's tensors (shapes, dtypes) must fit before memory is spent.
    result = build_checked(build, model, read_header(path), path)
    result.model.load_state_dict(read_state_dict(path), strict=True)
    result.metadata = {k: v for k, v in meta.items() if k not in _RESERVED}
    return result


def _structure(model: AxesModel) -> dict[str, Any]:
    return {
        "axes": [{"name": a.name, "anchors": a.anchors, "chained": a.chained} for a in model.axes],
        "corners": [dict(c) for c in model.corners],
    }


class _AxesWeightSpace(nn.Module):
    """The plain base network, with every tensor the setting moves computed from the ``alpha`` vector."""

    def __init__(self, model: AxesModel) -> None:
        super().__init__()
        self.net = model.export({})
        start = self.net.state_dict()
        floating = [k for k, t in start.items() if t.is_floating_point()]
        # The terms of Eq. (A1): (factors ((axis index, anchor), ...), delta of every float tensor).
        index = {a.name: i for i, a in enumerate(model.axes)}
        terms: list[tuple[tuple[tuple[int, int], ...], dict[str, Tensor]]] = []
        anchor_delta: dict[tuple[str, int], dict[str, Tensor]] = {}
        for axis in model.axes:
            for k in range(1, axis.anchors):
                at = model.export({axis.name: float(k)}).state_dict()
                anchor_delta[(axis.name, k)] = {key: at[key] - start[key] for key in floating}
                terms.append((((index[axis.name], k),), anchor_delta[(axis.name, k)]))
        for corner in model.corners:
            at = model.export({name: float(k) for name, k in corner}).state_dict()
            delta = {key: at[key] - start[key] - sum(anchor_delta[c][key] for c in corner) for key in floating}
            terms.append((tuple((index[name], k) for name, k in corner), delta))
        self._factors = [factors for factors, _ in terms]
        # Tensors no term moves stay constants; one stays an input so the graph keeps its alpha input.
        moving = [k for k in floating if any(bool(d[k].any()) for _, d in terms)] or floating[:1]
        self._slots: list[tuple[nn.Module, str]] = []
        for key in moving:
            owner, _, name = key.rpartition(".")
            module = self.net.get_submodule(owner)
            delattr(module, name)  # a plain attribute from now on, assigned in forward (see ftn.export)
            self.register_buffer(f"start{len(self._slots)}", start[key].clone())
            self.register_buffer(f"deltas{len(self._slots)}", torch.stack([d[key] for _, d in terms]))
            self._slots.append((module, name))
        self.register_buffer("limits", torch.tensor([float(a.segments) for a in model.axes]))

    def forward(self, image: Tensor, alpha: Tensor) -> Tensor:
        a = torch.minimum(alpha.reshape(-1).clamp_min(0.0), self.limits)
        weights = []
        for factors in self._factors:
            w = None
            for i, k in factors:
                hat = (1.0 - (a[i] - k).abs()).clamp_min(0.0)
                w = hat if w is None else w * hat
            weights.append(w)
        w = torch.stack(weights)  # (T,)
        for i, (module, name) in enumerate(self._slots):
            deltas = getattr(self, f"deltas{i}")
            blend = (w.view(-1, *([1] * (deltas.dim() - 1))) * deltas).sum(0)
            setattr(module, name, getattr(self, f"start{i}") + blend)
        return self.net(image)


def export_axes_onnx(model: AxesModel, path: str | os.PathLike, *, opset: int = 17,
                     trace_size: tuple[int, int] = TRACE_SIZE, per_pixel: bool = False,
                     setting: Mapping[str, float] | None = None, fp16: bool = False,
                     source: str | None = None) -> dict[str, Any]:
    """Write an ONNX graph of a multi-axis model; returns its metadata (JSON under the ONNX metadata
    property ``ftn``: axes, anchors, levels, structure, variant, precision).

    By default the inputs are ``image`` (N, C, H, W) and ``alpha`` (D,); ``per_pixel``: ``image`` and
    ``alpha_map`` (N, D, H, W), a map per axis (:class:`ftn.onnx_graphs.MapGraph`); ``setting``
    (e.g. ``{"sigma": 1.5}``, axes not named at 0): ``image`` alone, the plain network
    ``model.export(setting)``. ``fp16``: weights, computation, inputs and output in float16.
    ``trace_size``: the example image's size. Odd sides (the default) record the padding ftn's
    architectures do for any size; a network without it needs a size it accepts (one that declares
    ``size_multiple`` gets the padding in the graph, :mod:`ftn.onnx_graphs`).

    Raises:
        ImportError: onnx is not installed (the message says how to install it).
        ValueError: ``per_pixel`` with ``setting``; a setting outside an axis's range; layers that
            cannot take a per-pixel map (token sequences).
    """
    if not isinstance(model, AxesModel):
        raise TypeError(f"export_axes_onnx writes AxesModel objects, not {type(model).__name__}")
    if per_pixel and setting is not None:
        raise ValueError("a per-pixel ONNX file takes its alpha maps at run time; give either per_pixel or setting")
    require("onnx")
    limits = [float(a.segments) for a in model.axes]
    d = len(model.axes)
    dtype = "float16" if fp16 else "float32"
    ranges = ", ".join(f"{a.name} in [0, {a.segments}]" for a in model.axes)
    inputs: dict[str, Tensor]
    if per_pixel:
        graph: nn.Module = MapGraph(model, limits)
        inputs = {"alpha_map": map_example(limits)}
        described = {"alpha_map": f"{dtype} (N, {d}, H, W) at the image's size, a map per axis: {ranges}"}
    elif setting is not None:
        graph = model.export(dict(setting))  # checks the setting against the axes' ranges
        inputs, described = {}, {}
    else:
        graph = _AxesWeightSpace(model)
        inputs = {"alpha": torch.full((d,), 0.5)}
        described = {"alpha": f"{dtype} ({d},): {ranges}"}
    try:
        sizes = write_graph(graph, path, inputs, channels=image_channels(model.base_network), trace_size=trace_size,
                            probe=lambda x: model(x, alpha={}), multiple=int(getattr(model.base_network, "size_multiple", 1) or 1),
                            fp16=fp16, opset=opset)
    except ValueError as err:  # a map on a layer with no grid (token sequences), a network's odd output size
        Path(path).unlink(missing_ok=True)
        raise ValueError(f"cannot write this ONNX graph: {err}") from None
    levels = model.levels
    written: dict[str, Any] = {
        "format": ONNX_AXES_FORMAT,
        "variant": "per_pixel" if per_pixel else "baked" if setting is not None else "alpha_input",
        "inputs": {"image": f"{dtype} (N, C, H, W), RGB in [0, 1]", **described},
        **({"alpha": {a.name: float(dict(setting).get(a.name, 0.0)) for a in model.axes}} if setting is not None else {}),
        "arch": getattr(model.base_network, "arch_name", None),
        "arch_options": getattr(model.base_network, "arch_options", None),
        "method": model.method,
        "method_options": model.options,
        STRUCTURE_KEY: _structure(model),
        **(levels.to_metadata() if levels is not None else {}),
        **({"source_model": source} if source is not None else {}),
        **sizes,
    }
    set_metadata(path, written)
    return written


def check_settings(model: AxesModel) -> list[list[float]]:
    """Alpha vectors that exercise every term of Eq. (A1): 0, each anchor of each axis alone, each
    corner, a point between anchors on every axis at once, and every axis at its last anchor."""
    d = len(model.axes)
    index = {a.name: i for i, a in enumerate(model.axes)}
    settings = [[0.0] * d]
    for i, axis in enumerate(model.axes):
        for k in range(1, axis.anchors):
            settings.append([float(k) if j == i else 0.0 for j in range(d)])
    for corner in model.corners:
        point = [0.0] * d
        for name, k in corner:
            point[index[name]] = float(k)
        settings.append(point)
    settings.append([min(0.37 + 0.21 * i, a.segments - 0.13) for i, a in enumerate(model.axes)])
    settings.append([float(a.segments) for a in model.axes])
    return settings


def check_axes_onnx(path: str | os.PathLike, model: AxesModel, settings: list[list[float]] | None = None,
                    size: tuple[int, int] = (10, 14), batch: int = 2) -> float:
    """The largest ``|ONNX - PyTorch|`` of a graph from :func:`export_axes_onnx` (:func:`verify_axes_onnx`)."""
    return verify_axes_onnx(path, model, settings, size=size, batch=batch).max_error


def verify_axes_onnx(path: str | os.PathLike, model: AxesModel, settings: list[list[float]] | None = None,
                     size: tuple[int, int] = (10, 14), batch: int = 2) -> OnnxCheck:
    """Compare a graph from :func:`export_axes_onnx` with the model in PyTorch (float32), with onnxruntime:
    over ``settings`` (default :func:`check_settings`) for an ``alpha`` input, per-pixel maps for
    ``alpha_map``, the recorded setting for a baked file; on random images of ``size`` (another than
    the traced one: a graph that froze the size fails) and of a multiple of the network's ``size_multiple``."""
    multiple = int(getattr(model.base_network, "size_multiple", 1) or 1)
    aligned = (2 * multiple, 3 * multiple) if multiple > 1 else (12, 16)
    return verify(path, model, values=settings or check_settings(model), limits=[float(a.segments) for a in model.axes],
                  sizes=[size, aligned], batch=batch)
