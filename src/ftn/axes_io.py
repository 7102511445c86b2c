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

import importlib
import json
import os
import tempfile
import warnings
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

__all__ = ["save_axes", "load_axes", "export_axes_onnx", "check_axes_onnx", "check_settings", "STRUCTURE_KEY",
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


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the {module!r} package: pip install -e .[export]") from None


def export_axes_onnx(model: AxesModel, path: str | os.PathLike, *, opset: int = 17,
                     trace_size: tuple[int, int] = (35, 37)) -> dict[str, Any]:
    """Write an ONNX graph with inputs ``image`` (N, C, H, W) and ``alpha`` (D,); returns its metadata
    (JSON under the ONNX metadata property ``ftn``: axes, anchors, levels, structure).

    ``trace_size``: the example image's size. Odd sides (the default) record the padding ftn's
    architectures do for any size; a network without it needs a size it accepts.

    Raises:
        ImportError: onnx is not installed (the message says how to install it).
    """
    if not isinstance(model, AxesModel):
        raise TypeError(f"export_axes_onnx writes AxesModel objects, not {type(model).__name__}")
    onnx = _require("onnx")
    graph = _AxesWeightSpace(model).eval()
    # odd sides: the traced graph pads as the architecture does for any size (see ftn.export)
    example = (torch.rand(1, image_channels(graph.net), *trace_size), torch.full((len(model.axes),), 0.5))
    dynamic = {"image": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "out_height", 3: "out_width"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen knowingly
        torch.onnx.export(graph, example, str(path), input_names=["image", "alpha"], output_names=["output"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    levels = model.levels
    written: dict[str, Any] = {
        "format": ONNX_AXES_FORMAT,
        "inputs": {"image": "float32 (N, C, H, W), RGB in [0, 1]",
                   "alpha": f"float32 ({len(model.axes)},): " + ", ".join(
                       f"{a.name} in [0, {a.segments}]" for a in model.axes)},
        "arch": getattr(model.base_network, "arch_name", None),
        "arch_options": getattr(model.base_network, "arch_options", None),
        "method": model.method,
        "method_options": model.options,
        STRUCTURE_KEY: _structure(model),
        **(levels.to_metadata() if levels is not None else {}),
    }
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"ftn": json.dumps(written)})
    onnx.save(proto, str(path))
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
    """The largest ``|ONNX - PyTorch|`` of a graph from :func:`export_axes_onnx` over ``settings``
    (default :func:`check_settings`), run with onnxruntime on a random image of another size than
    the traced one (a graph that froze the size fails)."""
    import numpy as np

    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = torch.rand(batch, image_channels(model.base_network), *size, generator=torch.Generator().manual_seed(0))
    worst = 0.0
    with torch.no_grad():
        for setting in settings or check_settings(model):
            expected = model(image, alpha=list(setting)).numpy()
            got = session.run(None, {"image": image.numpy(), "alpha": np.asarray(setting, dtype=np.float32)})[0]
            if got.shape != expected.shape:
                raise ValueError(f"{path}: the ONNX graph gives shape {got.shape} at {setting}, PyTorch {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst
