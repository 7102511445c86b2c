"""The ONNX files ``ftn export`` writes: tracing a graph, its variants, and checking it with onnxruntime.

:func:`ftn.export.export_onnx` (one-axis models) and :func:`ftn.axes_io.export_axes_onnx` (several
axes) build a PyTorch module for the variant asked for and hand it to :func:`write_graph`; both
files are then checked by :func:`verify` against the PyTorch model before ``ftn export`` reports
success. The variants (batch, height and width are free in every one):

* **alpha as an input** (the default): ``image`` (N, C, H, W) and ``alpha`` (1,) for one axis, or
  (D,) for D axes; one file serves every setting.
* **per pixel** (``--per-pixel``): ``image`` and ``alpha_map`` (N, 1, H, W), or (N, D, H, W) with a map
  per axis in the model's order, at the image's height and width. The graph is the method's own
  per-pixel path (Eq. 3: the plain convolution plus the map times the convolution with the kernel's
  change), so it costs what ``ftn run --alpha-map`` costs in PyTorch. Maps are clamped to each axis's
  range in the graph.
* **baked** (``--alpha`` / ``--level``): ``image`` alone, one output: the plain network at that
  setting (``model.export``) for the methods with an exact export, else the method's graph with
  alpha a constant. For hosts that load one-input models (chaiNNer and other ONNX image tools).
* **fp16** (``--fp16``, with any of the above): the module is cast to half precision before tracing,
  so weights, computation, inputs and output are all float16 in the file (PyTorch's own half-precision
  graph; no converter package is needed). GPU providers run it in float16. onnxruntime's CPU provider
  runs it too: where it has no float16 kernel (Conv on x86 in onnxruntime 1.32) it inserts Cast nodes
  itself and computes that operator in float32 (its ``InsertCastTransformer``), so the check on the CPU
  is a check of the float16 weights and of every float16 step outside those operators. Per-pixel
  maps are resized in float32 inside the graph (PyTorch has no half-precision antialiased resize).

**Sizes.** The graph is traced at 35 x 37: odd sides make ftn's architectures record the padding
they do for any size. A network that needs its sides to be a multiple of ``size_multiple`` and does
not pad by itself (a plain U-Net, many spandrel networks) gets that padding in the graph (reflection
to the next multiple, the output cropped back), so its graph too takes any size; the network inside
is then traced at a multiple.

**Maps on coarser layers** are resized with antialiasing (:func:`ftn.control.resize_map`), which
torch's TorchScript exporter cannot write (``aten::_upsample_bilinear2d_aa``); :func:`_register_antialias`
writes it as ONNX ``Resize`` (opset 18: ``antialias=1``, ``exclude_outside=1``, which renormalises
the filter at the borders as PyTorch does), so per-pixel graphs use opset 18.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .archs._common import pad_to_multiple

__all__ = ["TRACE_SIZE", "MAP_OPSET", "FP16_MIN_PSNR", "FP32_MAX_ERROR", "OnnxCheck", "MapGraph", "FixedAlpha",
           "require", "write_graph", "verify", "read_metadata"]

TRACE_SIZE = (35, 37)  # odd sides: the traced graph pads as the architecture does for any size
MAP_OPSET = 18  # the first opset whose Resize has antialias
#: A float32 file passes when no output value differs from PyTorch's by more than this.
FP32_MAX_ERROR = 1e-3
#: A float16 file passes when its output's PSNR against PyTorch's float32 one (peak 1, or the output's
#: largest magnitude where that is larger) is at least this:
#: float16 keeps about 3 decimal digits, so a value near 1 moves by up to ~5e-4 per rounding, and
#: the errors of a deep network's layers add up to a few 1e-3 at most: well above 45 dB.
FP16_MIN_PSNR = 45.0

_DYNAMIC = {"batch": 0, "height": 2, "width": 3}


def require(module: str) -> Any:
    """Import an optional dependency of the ONNX path, or fail with the one command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the {module!r} package: pip install -e .[export]") from None


class MapGraph(nn.Module):
    """A tunable model (one axis or several) run with its ``alpha_map`` input as per-pixel maps.

    ``limits``: each axis's top (1 for a one-axis model, K_d for axis d); the map is clamped to
    [0, limit] in the graph. None: not clamped (a one-axis model that allows extrapolation).
    """

    def __init__(self, model: nn.Module, limits: Sequence[float] | None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("limits", None if limits is None else torch.tensor([float(v) for v in limits]))

    def forward(self, image: Tensor, alpha_map: Tensor) -> Tensor:
        # Maps are resized to coarser layers in float32 even in a float16 graph: PyTorch has no
        # half-precision antialiased resize on the CPU; each layer casts its view to its own dtype.
        a = alpha_map.float()
        if self.limits is not None:
            a = torch.minimum(a.clamp_min(0.0), self.limits.float().view(1, -1, 1, 1))
        return self.model(image, alpha=a)


class FixedAlpha(nn.Module):
    """A tunable model at one alpha that has no plain equivalent: its tuning blocks, alpha a constant."""

    def __init__(self, model: nn.Module, alpha: float) -> None:
        super().__init__()
        self.model, self.alpha = model, float(alpha)

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image, alpha=self.alpha)


class _Padded(nn.Module):
    """``graph`` on the image (and the per-pixel map) padded to a multiple of ``multiple``, cropped back."""

    def __init__(self, graph: nn.Module, multiple: int, scale: int, map_input: bool) -> None:
        super().__init__()
        self.graph, self.multiple, self.scale, self.map_input = graph, multiple, scale, map_input

    def forward(self, image: Tensor, *inputs: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        if self.map_input:
            inputs = (pad_to_multiple(inputs[0], self.multiple),)
        out = self.graph(pad_to_multiple(image, self.multiple), *inputs)
        return out[..., : h * self.scale, : w * self.scale]


def _ramp(channels: int, limits: Sequence[float], size: tuple[int, int]) -> Tensor:
    """A map running from 0 to each axis's limit over the image: every anchor's term is active in the
    trace (the methods skip the terms a map cannot reach, so the traced map must reach them all)."""
    ramp = torch.linspace(0.0, 1.0, size[0] * size[1]).reshape(1, 1, *size)
    return torch.cat([ramp * limits[d] for d in range(channels)], dim=1)


def map_example(limits: Sequence[float]) -> Tensor:
    """The example ``alpha_map`` a per-pixel graph is traced with (a ramp over each axis's range)."""
    return _ramp(len(limits), limits, TRACE_SIZE)


def _padding(probe: Callable[[Tensor], Tensor], channels: int, multiple: int) -> int | None:
    """The output scale when the network needs padding in the graph (it fails on sides that are not a
    multiple of ``multiple``), else None (it takes any size, padding by itself)."""
    if multiple <= 1:
        return None
    with torch.no_grad():
        odd = 2 * multiple + 1
        try:
            out = probe(torch.rand(1, channels, odd, odd))
            if out.shape[-1] % odd == 0 and out.shape[-2] % odd == 0:
                return None
        except (RuntimeError, ValueError):
            pass
        side = 2 * multiple
        out = probe(torch.rand(1, channels, side, side))
    scale = out.shape[-1] // side
    if scale < 1 or out.shape[-1] != scale * side or out.shape[-2] != scale * side:
        raise ValueError(f"the network turns a {side} x {side} image into {tuple(out.shape[-2:])}, not a whole "
                         "multiple of it; ONNX export needs an integer output scale")
    return scale


_ANTIALIAS_REGISTERED = False


def _register_antialias() -> None:
    """Teach the TorchScript exporter ``aten::_upsample_bilinear2d_aa`` (see the module docstring)."""
    global _ANTIALIAS_REGISTERED
    if _ANTIALIAS_REGISTERED:
        return
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "b", "none")
    def resize_antialiased(g: Any, image: Any, output_size: Any, align_corners: bool, scales: Any) -> Any:
        # sizes = (N, C) of the input, then the traced (H', W'): dynamic, as the map's grid is
        head = g.op("Slice", g.op("Shape", image), g.op("Constant", value_t=torch.tensor([0])),
                    g.op("Constant", value_t=torch.tensor([2])))
        sizes = g.op("Concat", head, g.op("Cast", output_size, to_i=7), axis_i=0)  # 7: INT64
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        return g.op("Resize", image, empty, empty, sizes, mode_s="linear", antialias_i=1, exclude_outside_i=1,
                    coordinate_transformation_mode_s="align_corners" if align_corners else "half_pixel")

    torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", resize_antialiased, MAP_OPSET)
    _ANTIALIAS_REGISTERED = True


_ADDCMUL_REGISTERED = False


def _register_addcmul() -> None:
    """Write ``addcmul`` (the per-pixel paths' ``y + A * (X * delta)``) in its inputs' own dtype.

    torch's exporter writes it as ``y + (A * Z) * value`` with ``value`` a float32 constant, which
    turns a float16 graph into float32 from the first per-pixel layer on; here ``value`` takes the
    dtype of ``y`` (``CastLike``), and a value of 1 is left out.
    """
    global _ADDCMUL_REGISTERED
    if _ADDCMUL_REGISTERED:
        return
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "v", "f")
    def addcmul(g: Any, y: Any, a: Any, b: Any, value: float) -> Any:
        product = g.op("Mul", a, b)
        if value != 1.0:
            product = g.op("Mul", product, g.op("CastLike", g.op("Constant", value_t=torch.tensor(value)), y))
        return g.op("Add", y, product)

    torch.onnx.register_custom_op_symbolic("aten::addcmul", addcmul, 15)  # CastLike: opset 15
    _ADDCMUL_REGISTERED = True


def write_graph(
    graph: nn.Module, path: str | os.PathLike, inputs: dict[str, Tensor], *, channels: int,
    probe: Callable[[Tensor], Tensor], multiple: int, fp16: bool = False, opset: int = 17,
    trace_size: tuple[int, int] = TRACE_SIZE,
) -> dict[str, Any]:
    """Trace ``graph`` (inputs ``image`` then ``inputs``, in order) to an ONNX file; returns what the
    file's metadata should say about its sizes and precision.

    ``probe`` runs the network (at alpha 0) on an image: it tells whether the network pads to
    ``multiple`` by itself (see the module docstring). An input named ``alpha_map`` is a per-pixel
    map: dynamic like the image, padded with it, and traced at opset 18 (antialiased resizing).
    """
    scale = _padding(probe, channels, multiple)
    map_input = "alpha_map" in inputs
    if scale is not None:
        graph = _Padded(graph, multiple, scale, map_input)
    if map_input:
        _register_antialias()
        opset = max(opset, MAP_OPSET)
    example = (torch.rand(1, channels, *trace_size), *inputs.values())
    if fp16:
        _register_addcmul()
        # The whole module in half precision: weights, buffers and every operation (a copy: the
        # caller's model stays as it is).
        graph, example = copy.deepcopy(graph).half(), tuple(t.half() for t in example)
    names = ["image", *inputs]
    dynamic = {name: dict(zip(_DYNAMIC.values(), _DYNAMIC, strict=True)) for name in names if name in ("image", "alpha_map")}
    dynamic["output"] = {0: "batch", 2: "out_height", 3: "out_width"}
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns wherever Python reads a graph value (alpha validation, padding branches);
        # verify (and the tests) run the graph on other sizes and alphas instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The legacy exporter's deprecation notices: chosen knowingly (see ftn.export's docstring).
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        # Notes about correct behaviour: slices that are not folded into constants, and instance norm
        # using the input's statistics (it keeps no running statistics to use instead).
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        warnings.filterwarnings("ignore", ".*operator 'instance_norm' is set to train=True", UserWarning)
        torch.onnx.export(graph.eval(), example, str(path), input_names=names, output_names=["output"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    written: dict[str, Any] = {"precision": "fp16" if fp16 else "fp32", "opset": opset}
    if scale is not None:
        written.update(pads_to=multiple, scale=scale)
    return written


def set_metadata(path: str | os.PathLike, written: dict[str, Any]) -> None:
    """Store ``written`` as JSON under the ONNX model's metadata property ``ftn``."""
    onnx = require("onnx")
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"ftn": json.dumps(written)})
    onnx.save(proto, str(path))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``ftn`` metadata of an ONNX file ftn wrote ({} if it has none)."""
    onnx = require("onnx")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props["ftn"]) if "ftn" in props else {}


@dataclass(frozen=True)
class OnnxCheck:
    """How an ONNX file's outputs compare with PyTorch's (float32) on the same inputs."""

    max_error: float  # the largest |ONNX - PyTorch| over every case
    psnr: float  # the lowest PSNR of an ONNX output against PyTorch's, in dB (inf: identical); the peak is 1
    # (images in [0, 1]), or the largest |PyTorch output| where that is larger: float16 is relatively precise
    cases: int  # how many (input, setting) pairs were compared
    fp16: bool

    @property
    def passed(self) -> bool:
        """float32: every value within :data:`FP32_MAX_ERROR`; float16: PSNR at least :data:`FP16_MIN_PSNR`."""
        if not math.isfinite(self.max_error):
            return False
        return self.psnr >= FP16_MIN_PSNR if self.fp16 else self.max_error <= FP32_MAX_ERROR

    def words(self) -> str:
        """E.g. ``"max difference 3.1e-07"`` or, for float16, ``"... , PSNR 71.2 dB (needs >= 45 dB)"``."""
        text = f"max difference {self.max_error:.1e}"
        if self.fp16:
            text += f", PSNR {self.psnr:.1f} dB against PyTorch float32 (float16 needs >= {FP16_MIN_PSNR:g} dB)"
        return text


def verify(
    path: str | os.PathLike, model: nn.Module, *, values: Sequence[Any], limits: Sequence[float],
    sizes: Sequence[tuple[int, int]] = ((10, 14),), batch: int = 2,
) -> OnnxCheck:
    """Run the ONNX file with onnxruntime and the model in PyTorch (float32) on the same random images.

    The file says which variant it is (its inputs, its ``ftn`` metadata): with an ``alpha`` input,
    each of ``values`` (a number, or a vector for several axes) is fed; with ``alpha_map``, maps at 0,
    at each axis's top (``limits``) and random ones over the whole range; with ``image`` alone, the
    setting the file records. The sizes differ from the traced one (and include even sides where the
    trace was odd), so a graph that froze the image size or the padding fails.
    """
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the check's images are tiny: threads would only wait on each other
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = read_metadata(path)
    kinds = {i.name: i for i in session.get_inputs()}
    fp16 = kinds["image"].type == "tensor(float16)"
    channels = kinds["image"].shape[1]
    multiple, scale = meta.get("pads_to"), meta.get("scale")
    generator = torch.Generator().manual_seed(0)
    worst, lowest, cases = 0.0, math.inf, 0

    def reference(image: Tensor, alpha: Any) -> np.ndarray:
        # The model as the graph runs it: where the graph pads, the same padding around the model
        # (at sizes that are multiples it is the model itself).
        if multiple:
            h, w = image.shape[-2:]
            padded = pad_to_multiple(alpha, multiple) if isinstance(alpha, Tensor) and alpha.dim() == 4 else alpha
            return model(pad_to_multiple(image, multiple), alpha=padded)[..., : h * scale, : w * scale].numpy()
        return model(image, alpha=alpha).numpy()

    def compare(feeds: dict[str, Tensor], expected: np.ndarray, label: str) -> None:
        nonlocal worst, lowest, cases
        dtype = np.float16 if fp16 else np.float32
        got = session.run(None, {k: v.numpy().astype(dtype) for k, v in feeds.items()})[0].astype(np.float32)
        if got.shape != expected.shape:
            raise ValueError(f"{path}: the ONNX graph gives shape {got.shape} for {label}, PyTorch {expected.shape}")
        error = np.abs(got - expected)
        worst = max(worst, float(error.max()))
        mse = float(np.square(error, dtype=np.float64).mean())
        peak = max(1.0, float(np.abs(expected).max()))  # 1 for images; a network with larger outputs: their size
        lowest = min(lowest, math.inf if mse == 0 else 10 * math.log10(peak**2 / mse))
        cases += 1

    with torch.no_grad():
        for size in sizes:
            image = torch.rand(batch, channels, *size, generator=generator)
            if "alpha" in kinds:
                for value in values:
                    vector = torch.tensor(value, dtype=torch.float32).reshape(-1)
                    compare({"image": image, "alpha": vector}, reference(image, value), f"alpha {value}")
            elif "alpha_map" in kinds:
                top = torch.tensor([float(v) for v in limits]).view(1, -1, 1, 1)
                maps = {"a map of zeros": torch.zeros(batch, len(limits), *size),
                        "a map at the top": top.expand(batch, -1, *size).clone(),
                        "a random map": torch.rand(batch, len(limits), *size, generator=generator) * top,
                        "a ramp": _ramp(len(limits), limits, size).expand(batch, -1, -1, -1).clone()}
                for label, amap in maps.items():
                    compare({"image": image, "alpha_map": amap}, reference(image, amap), label)
            else:
                setting = meta.get("alpha")
                compare({"image": image}, reference(image, setting), f"the baked setting {setting}")
    return OnnxCheck(worst if cases else math.nan, lowest, cases, fp16)
