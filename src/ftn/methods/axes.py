r"""Several knobs, more than two levels: a base network with named **axes**, each with **anchors**.

Today's tunable model (:class:`~ftn.methods.base.TunableModel`) has one knob alpha in [0, 1] between
two levels. A multi-axis model has D named axes (``sigma``, ``quality``); axis d has anchors
0 .. K_d, anchor 0 being the base network, and its control a_d runs over [0, K_d]. Per target layer
there is one *anchor* tuner per anchor k >= 1 of every axis, and its kernel W_{d,k}; the base kernel
is f = W_{d,0}. With the anchor deltas Delta_{d,k} = W_{d,k} - f and the hat weights
w_k(a) = max(0, 1 - |a - k|) (piecewise linear: at a = k the axis sits exactly on anchor k)::

    kernel(a_1 .. a_D) = f + sum_d sum_{k=1..K_d} w_k(a_d) Delta_{d,k}
                           + sum_c (prod_{d in c} w_{c_d}(a_d)) J_c                      (A1)

For one axis with two anchors this is the paper's Eq. 1, (1 - a) f + a FTN(f). On one axis only,
between anchors k and k + 1, it is (1 - t) W_{d,k} + t W_{d,k+1} (t = a - k): the kernels of the
anchors, interpolated, continuous across every anchor.

**Anchor kernels.** Each axis chooses how anchor k is reached (both are here, because which is better
is to be measured, issue [4/6]):

* ``chained=False`` ("from base"): W_{d,k} = FTN_{d,k}(f), every anchor's FTN starts from the base;
* ``chained=True``: W_{d,k} = FTN_{d,k}(W_{d,k-1}), each anchor's FTN starts from the previous one.

With DNI an anchor's tuner is a full copy of the layer's tensors at that level, W_{d,k} itself
(every float tensor: weights, biases, norm parameters, running statistics), so chaining changes
nothing at run time (only which copy a trainer starts from).

**Corners** (joint corrections, optional): a corner c fixes two or more axes at anchors, e.g.
``{"sigma": 1, "quality": 1}``; where the sum of independent deltas is not good enough there, a
correction J_c trains at that corner with everything else frozen (as CResMD trains combinations).
Its weight is the product of the corner axes' hat weights, so it is 1 at the corner and 0 wherever
an axis of the corner is at 0. For FTN, J_c = FTN_c(K_c) - K_c with K_c = f + sum_{d in c}
Delta_{d,c_d} the kernel the corner has without it; for DNI, J_c is a set of tensors, zero at start.
Every tuner starts as the identity (FTN(f) == f, DNI copies of the base, zero corrections), so a new
anchor or corner changes nothing until it is trained. At a = 0 the model is the base, bit for bit.

**Control.** A setting is a dict ``{axis: value}`` (axes left out are at 0), a vector (D,), a
per-sample (B, D) tensor, or per-pixel: a (B, 1, H, W) map per axis in the dict (numbers for the
other axes), or a (B, D, H, W) tensor. Values must lie in [0, K_d].

**Cost.** A fixed setting (numbers only) computes ONE blended kernel per layer, cached until the
setting or a tensor changes (:class:`~ftn.methods.base.KernelCache`): the plain network's cost. Every
anchor's tensors are kept too, until a tensor changes, so a new setting (a slider moved, an alpha
search) costs only the blend, not the chain of FTNs again. With
maps or per-sample values, the axes given as numbers are folded into that one blended kernel and each
layer runs (Eq. 3 generalised)::

    Y = X * kernel(numbers) + b  +  sum_{(d,k) active} w_k(A_d) . (X * Delta_{d,k})
                                 +  sum_{c active} (prod_d w_{c_d}(A_d)) . (X * J_c)

where a term is active when its weight is not identically zero over the map (decided from the
map's range, once per setting). Per-pixel cost in convolutions per layer: 1 + (active anchor deltas)
+ (active corners). Two-anchor axes without corners: at most 1 + D. An axis with K + 1 anchors
whose map spans several segments costs one convolution per anchor k >= 1 it touches (at most K; a
pixel uses at most two, but a convolution covers the whole map); each corner whose weight is not
identically zero adds one. DNI layers that are not convolutions (norms, PReLU) run once per active
term instead (exact for layers affine in their tensors; a BatchNorm's running variance is not).

Methods: FTN (any of its options, :mod:`ftn.methods.ftn`) and DNI (:mod:`ftn.methods.dni`); AdaFM,
CFSNet and Dynamic-Net are refused (they modulate features, not kernels or tensors per anchor).
Shipped one-axis, two-anchor models become anchor 1 of an axis with :meth:`AxesModel.import_tunable`
or :func:`merge_axes` (denoise and dejpeg on the same base -> one model with ``sigma`` and
``quality``). Files: :mod:`ftn.axes_io`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.func import functional_call

from ..control import Control, check_alpha
from ..levels import Axis, Calibration, Levels
from . import dni as dni_method
from . import ftn as ftn_method
from ._kernels import CHANNELS_LAST_LAYERS, KERNEL_LAYERS, from_out_in, out_channels, run, to_out_in
from .base import _NORM_LAYERS, Capabilities, KernelCache, TunableLayer, TunableModel, _replace, select_targets

__all__ = [
    "AXES_METHODS",
    "AxesControl",
    "AxesLayer",
    "AxesModel",
    "AxisSpec",
    "attach_axes",
    "corner_key",
    "hat",
    "merge_axes",
]

#: The methods with a multi-axis form: name -> the method's spec (options, default targets).
AXES_METHODS = {"ftn": ftn_method.SPEC, "dni": dni_method.SPEC}

Setting = Mapping[str, Any] | Tensor | Sequence[float] | float | int
Corner = tuple[tuple[str, int], ...]  # ((axis, anchor), ...) in the model's axis order


@dataclass(frozen=True)
class AxisSpec:
    """One axis of a multi-axis model: its name, how many anchors (K + 1 >= 2) and how they chain.

    ``levels`` optionally names the real level of each anchor (``(5, 15, 30, 50)``), for
    :class:`ftn.levels.Levels`; the network does not need it.
    """

    name: str
    anchors: int = 2
    chained: bool = False
    levels: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "." in self.name:
            raise ValueError(f"an axis name must be a non-empty string without '.', got {self.name!r}")
        if hasattr(nn.ModuleDict(), self.name):  # the tuners live in a ModuleDict keyed by axis
            raise ValueError(f"{self.name!r} cannot name an axis (a reserved attribute name); choose another")
        if isinstance(self.anchors, bool) or not isinstance(self.anchors, int) or self.anchors < 2:
            raise ValueError(f"axis {self.name!r}: anchors is the number of anchor levels, 2 or more, got {self.anchors!r}")
        if self.levels is not None:
            if len(self.levels) != self.anchors:
                raise ValueError(f"axis {self.name!r} has {self.anchors} anchors but {len(self.levels)} levels")
            # ftn.levels checks them (finite, strictly monotone) as a file would be checked
            object.__setattr__(self, "levels", Axis(self.name, tuple(self.levels)).anchors)

    @property
    def segments(self) -> int:
        """K: the axis's control runs over [0, K]."""
        return self.anchors - 1


def hat(value: float | Tensor, k: int) -> float | Tensor:
    """The hat weight w_k(value) = max(0, 1 - |value - k|) of anchor k."""
    if isinstance(value, Tensor):
        return (1.0 - (value - k).abs()).clamp_min(0.0)
    return max(0.0, 1.0 - abs(value - k))


def _active(low: float, high: float, k: int) -> bool:
    """Whether w_k is not identically zero on values in [low, high]."""
    return low < k + 1 and high > k - 1


# -- the control -------------------------------------------------------------------------------


class AxesControl:
    """The setting shared by every layer of one multi-axis model: per axis a number, a per-sample
    (B,) tensor or a (B, 1, H, W) map, validated against the axis's range [0, K]."""

    def __init__(self, axes: Sequence[AxisSpec]) -> None:
        self.axes = tuple(axes)
        # One Control per axis does the per-layer views (broadcasting, resizing maps per grid).
        self._controls = {a.name: Control(0.0, allow_extrapolation=True) for a in self.axes}
        self._ranges: dict[str, tuple[float, float]] = {a.name: (0.0, 0.0) for a in self.axes}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def parse(self, setting: Setting) -> dict[str, float | Tensor]:
        """Validate a setting and return it per axis (axes not given are 0).

        Raises:
            ValueError: an unknown axis, a value outside [0, K], a vector of the wrong length, a
                single number for a model with several axes.
            TypeError: a value that is not a number or a tensor.
        """
        names = self.names
        d = len(names)
        raw: dict[str, Any]
        if isinstance(setting, Mapping):
            unknown = [k for k in setting if k not in names]
            if unknown:
                raise ValueError(f"this model has no axis {unknown[0]!r}; its axes are {', '.join(names)}")
            raw = dict(setting)
        elif isinstance(setting, Tensor) and setting.dim() >= 1:
            raw = self._split(setting)
        elif isinstance(setting, (list, tuple)):
            if len(setting) != d:
                raise ValueError(f"a setting vector needs {d} values ({', '.join(names)}), got {len(setting)}")
            raw = dict(zip(names, setting, strict=True))
        else:
            if d != 1:
                raise ValueError(
                    f"this model has {d} axes ({', '.join(names)}); give a value per axis, "
                    f"e.g. {{{names[0]!r}: 0.5}}, or a vector of {d}"
                )
            raw = {names[0]: setting}
        values: dict[str, float | Tensor] = {}
        for axis in self.axes:
            value = check_alpha(raw.get(axis.name, 0.0), allow_extrapolation=True)
            low, high = _range(value)
            if low < 0.0 or high > axis.segments:
                given = f"{axis.name} = {low:g} is" if isinstance(value, float) else f"{axis.name} has values in [{low:g}, {high:g}],"
                raise ValueError(f"{given} outside its range [0, {axis.segments}] (anchors 0 ... {axis.segments})")
            values[axis.name] = value
        return values

    def _split(self, setting: Tensor) -> dict[str, Tensor | float]:
        names, d = self.names, len(self.names)
        shape = tuple(setting.shape)
        if setting.dim() == 1 and shape[0] == d:
            return {n: float(v) for n, v in zip(names, setting.tolist(), strict=True)}
        if setting.dim() == 2 and shape[1] == d:
            return {n: setting[:, i] for i, n in enumerate(names)}
        if setting.dim() == 4 and shape[1] == d:
            return {n: setting[:, i : i + 1] for i, n in enumerate(names)}
        raise ValueError(
            f"a setting tensor for axes ({', '.join(names)}) is ({d},), per sample (B, {d}) or per pixel "
            f"(B, {d}, H, W); got shape {shape} (or give a dict {{axis: value or (B, 1, H, W) map}})"
        )

    def set(self, setting: Setting) -> None:
        """Validate and store a setting."""
        values = self.parse(setting)
        for name, value in values.items():
            self._controls[name].set(value)
            self._ranges[name] = _range(value)

    # -- what layers read --------------------------------------------------------------------
    @property
    def values(self) -> dict[str, float | Tensor]:
        return {n: c.value for n, c in self._controls.items()}

    @property
    def is_global(self) -> bool:
        """Every axis is a number: one blended kernel per layer."""
        return all(c.is_global for c in self._controls.values())

    @property
    def is_zero(self) -> bool:
        """Every axis at 0: the base network."""
        return all(c.is_global and c.value == 0.0 for c in self._controls.values())

    def numbers(self) -> tuple[float, ...]:
        """The numeric part of the setting, per axis; axes given as tensors count as 0."""
        return tuple(float(c.value) if c.is_global else 0.0 for c in self._controls.values())

    def varying(self) -> list[str]:
        """The axes given as per-sample tensors or maps."""
        return [n for n, c in self._controls.items() if not c.is_global]

    def range(self, name: str) -> tuple[float, float]:
        return self._ranges[name]

    def for_output(self, name: str, out: Tensor, *, channels_last: bool = False) -> float | Tensor:
        """Axis ``name``'s value as seen by a layer whose output is ``out`` (see :class:`Control`)."""
        return self._controls[name].for_output(out, channels_last=channels_last)


def _range(value: float | Tensor) -> tuple[float, float]:
    if isinstance(value, float):
        return value, value
    if value.numel() == 0:
        return 0.0, 0.0
    return float(value.min()), float(value.max())


# -- the layers --------------------------------------------------------------------------------


def corner_key(corner: Corner) -> str:
    """A corner's name in state dicts and metadata, e.g. ``"sigma=1,quality=1"``."""
    return ",".join(f"{name}={k}" for name, k in corner)


class AxesLayer(TunableLayer):
    """A target layer with one tuner per anchor k >= 1 of every axis, and one per corner.

    Tensors are handled as dicts (name -> tensor) so that FTN (``{"weight"}``) and DNI (every direct
    tensor) share the blending of Eq. (A1). Subclasses say what an anchor's and a corner's tensors are.
    """

    control: AxesControl  # type: ignore[assignment]  # shared by all layers, set by AxesModel

    def __init__(self, base: nn.Module, config: Any, axes: Sequence[AxisSpec], corners: Sequence[Corner]) -> None:
        super().__init__(base)
        self.config = config
        self.axes = tuple(axes)
        self.tuners = nn.ModuleDict(
            {a.name: nn.ModuleDict({str(k): self._new_anchor() for k in range(1, a.anchors)}) for a in self.axes}
        )
        self.corners = nn.ModuleDict()
        self._corners: list[Corner] = []
        for corner in corners:
            self.add_corner(corner)
        self._cache = KernelCache()  # the blended tensors at the current numbers
        self._anchor_cache = KernelCache()  # every anchor's tensors and corner correction, for any numbers
        self._delta_cache = KernelCache()  # every anchor delta and corner correction, for maps

    # -- what subclasses define --------------------------------------------------------------
    def _new_anchor(self) -> nn.Module:
        raise NotImplementedError

    def _new_corner(self) -> nn.Module:
        raise NotImplementedError

    def _base_tensors(self) -> dict[str, Tensor]:
        """The base's tensors that the tuners change (f)."""
        raise NotImplementedError

    def _anchor_tensors(self, axis: str, k: int, start: dict[str, Tensor]) -> dict[str, Tensor]:
        """W_{d,k}, given the tensors its tuner starts from (f, or W_{d,k-1} for a chained axis)."""
        raise NotImplementedError

    def _corner_delta(self, corner: Corner, plain: dict[str, Tensor]) -> dict[str, Tensor]:
        """J_c, given the corner's kernel without it (K_c)."""
        raise NotImplementedError

    # -- structure ---------------------------------------------------------------------------
    def add_corner(self, corner: Corner) -> None:
        self.corners[corner_key(corner)] = self._new_corner()
        self._corners.append(corner)
        self.__dict__.pop("_input_cache", None)

    def tuner_modules(self, axis: str | None = None, anchor: int | None = None,
                      corner: Corner | None = None) -> list[nn.Module]:
        """The tuners of one anchor, of one axis, of one corner, or all of them."""
        if corner is not None:
            return [self.corners[corner_key(corner)]]
        if axis is None:
            return [*(m for d in self.tuners.values() for m in d.values()), *self.corners.values()]
        if anchor is None:
            return list(self.tuners[axis].values())
        return [self.tuners[axis][str(anchor)]]

    # -- blending ----------------------------------------------------------------------------
    def _anchor(self, axis: AxisSpec, k: int, memo: dict) -> dict[str, Tensor]:
        key = (axis.name, k)
        if key not in memo:
            if k == 0:
                memo[key] = self._base_tensors()
            else:
                start = self._anchor(axis, k - 1, memo) if axis.chained else self._anchor(axis, 0, memo)
                memo[key] = self._anchor_tensors(axis.name, k, start)
        return memo[key]

    def _corner_plain(self, corner: Corner, memo: dict) -> dict[str, Tensor]:
        """K_c = f + sum_{d in c} Delta_{d,c_d}: the corner's kernel without its correction."""
        base = self._anchor(self.axes[0], 0, memo)
        by_name = {a.name: a for a in self.axes}
        plain = dict(base)
        for name, k in corner:
            plain = _add(plain, _sub(self._anchor(by_name[name], k, memo), base))
        return plain

    def _corner_correction(self, corner: Corner, memo: dict) -> dict[str, Tensor]:
        key = ("corner", corner)
        if key not in memo:
            memo[key] = self._corner_delta(corner, self._corner_plain(corner, memo))
        return memo[key]

    def _all_anchors(self) -> dict:
        """Every W_{d,k} (keyed (axis, k)) and J_c (keyed ("corner", c)), to blend any numbers from."""
        memo: dict = {}
        for axis in self.axes:
            for k in range(axis.anchors):
                self._anchor(axis, k, memo)
        for corner in self._corners:
            self._corner_correction(corner, memo)
        return memo

    def _anchors_memo(self, inputs: tuple[Tensor, ...]) -> dict:
        """The anchors, kept until a tensor changes, so that a new setting (a slider moved, an alpha
        search) costs only the blend; empty while training, where only the needed ones are built."""
        if not KernelCache.reuses(inputs):
            return {}
        return self._anchor_cache.get(("anchors",), inputs, self._all_anchors)

    def tensors_at(self, setting: Mapping[str, float], memo: dict | None = None) -> dict[str, Tensor]:
        """Eq. (A1) at numbers: the blended tensors. One axis on an anchor gives that anchor's own
        tensors, and one axis between anchors k and k + 1 their ``torch.lerp`` (bit for bit what a
        two-anchor model computes); several axes add their deltas to f. ``memo`` holds anchors
        computed already (see :meth:`_anchors_memo`)."""
        memo = {} if memo is None else memo
        base = self._anchor(self.axes[0], 0, memo)
        total: dict[str, Tensor] | None = None
        for axis in self.axes:
            value = float(setting.get(axis.name, 0.0))
            if value == 0.0:
                continue
            low = min(int(math.floor(value)), axis.segments)
            t = value - low
            on_axis = self._anchor(axis, low, memo)
            if t != 0.0:
                on_axis = _lerp(on_axis, self._anchor(axis, low + 1, memo), t)
            total = on_axis if total is None else _add(total, _sub(on_axis, base))
        if total is None:
            return base
        for corner in self._corners:
            weight = math.prod(hat(float(setting.get(name, 0.0)), k) for name, k in corner)
            if weight != 0.0:
                delta = self._corner_correction(corner, memo)
                total = _add(total, {n: weight * v for n, v in delta.items()})
        return total

    def _deltas(self, memo: dict | None = None) -> dict[Any, dict[str, Tensor]]:
        """Every Delta_{d,k} (keyed (axis, k)) and J_c (keyed by the corner)."""
        memo = {} if memo is None else memo
        base = self._anchor(self.axes[0], 0, memo)
        out: dict[Any, dict[str, Tensor]] = {}
        for axis in self.axes:
            for k in range(1, axis.anchors):
                out[(axis.name, k)] = _sub(self._anchor(axis, k, memo), base)
        for corner in self._corners:
            out[corner] = self._corner_correction(corner, memo)
        return out

    # -- running -----------------------------------------------------------------------------
    def _inputs(self) -> tuple[Tensor, ...]:
        """Every tensor the blend reads, for the caches' keys (collected once; see DNILayer._inputs)."""
        cached = self.__dict__.get("_input_cache")
        base = tuple(self._base_tensors().values())
        if cached is None or any(a is not b for a, b in zip(cached, base)):  # a tensor assigned anew
            tuners = [t for m in self.tuner_modules() for t in (*m.parameters(), *m.buffers())]
            cached = base + tuple(tuners)
            self.__dict__["_input_cache"] = cached
        return cached

    def _apply(self, fn, *args, **kwargs):  # device / dtype moves may swap the tensor objects
        self.__dict__.pop("_input_cache", None)
        return super()._apply(fn, *args, **kwargs)

    def _run(self, x: tuple, tensors: Mapping[str, Tensor], kwargs: dict) -> Tensor:
        if isinstance(self.base, KERNEL_LAYERS):
            bias = tensors["bias"] if "bias" in tensors else self.base.bias
            return run(self.base, *x, tensors["weight"], bias, **kwargs)
        return functional_call(self.base, dict(tensors), x, kwargs, strict=False)

    def _run_delta(self, x: tuple, delta: Mapping[str, Tensor], fixed: Mapping[str, Tensor], y: Tensor,
                   kwargs: dict) -> Tensor:
        """The output change a delta makes: X * Delta (+ its bias) for a kernel layer (linear in its
        tensors), else m(x; fixed + delta) - m(x; fixed)."""
        if isinstance(self.base, KERNEL_LAYERS):
            return run(self.base, *x, delta["weight"], delta.get("bias"), **kwargs)
        return self._run(x, _add(dict(fixed), delta), kwargs) - y

    def forward(self, *x: Tensor, **kwargs: Any) -> Tensor:
        control = self.control
        if control.is_zero:
            return self.base(*x, **kwargs)
        numbers = control.numbers()
        setting = dict(zip(control.names, numbers, strict=True))
        inputs = self._inputs()
        if any(numbers):
            fixed = self._cache.get(numbers, inputs, lambda: self.tensors_at(setting, self._anchors_memo(inputs)))
            y = self._run(x, fixed, kwargs)
        else:
            fixed, y = self._base_tensors(), self.base(*x, **kwargs)
        varying = control.varying()
        if not varying:
            return y
        # Per-sample values and maps: Eq. 3 generalised, one convolution per active term.
        deltas = self._delta_cache.get(("deltas",), inputs, lambda: self._deltas(self._anchors_memo(inputs)))
        channels_last = isinstance(self.base, CHANNELS_LAST_LAYERS)
        views = {n: control.for_output(n, y, channels_last=channels_last) for n in varying}
        terms: list[tuple[Any, Tensor]] = []
        for axis in self.axes:
            if axis.name not in views:
                continue
            low, high = control.range(axis.name)
            for k in range(1, axis.anchors):
                if _active(low, high, k):
                    terms.append(((axis.name, k), hat(views[axis.name], k)))
        for corner in self._corners:
            mapped = [(name, k) for name, k in corner if name in views]
            if not mapped:
                continue  # a corner of numbers only is in the fixed kernel already
            scale = math.prod(hat(setting[name], k) for name, k in corner if name not in views)
            if scale == 0.0 or not all(_active(*control.range(name), k) for name, k in mapped):
                continue
            weight = math.prod((hat(views[name], k) for name, k in mapped), start=scale)
            terms.append((corner, weight))
        # A kernel layer's output is updated in place, one term at a time (its backward does not need
        # it, as in FTNLayer); other layers' terms are differences from their output, kept intact.
        in_place, plain = isinstance(self.base, KERNEL_LAYERS), y
        for key, weight in terms:
            change = self._run_delta(x, deltas[key], fixed, plain, kwargs)
            y = y.addcmul_(weight, change) if in_place else torch.addcmul(y, weight, change)
        return y

    def export_module(self, setting: Mapping[str, float]) -> nn.Module:  # type: ignore[override]
        return dni_method.bake_tensors(self.base, self.tensors_at(setting))


def _lerp(a: Mapping[str, Tensor], b: Mapping[str, Tensor], t: float) -> dict[str, Tensor]:
    return {n: torch.lerp(v, b[n], t) if v.is_floating_point() else v for n, v in a.items()}


def _add(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {n: v + b[n] if n in b and v.is_floating_point() else v for n, v in a.items()}


def _sub(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Integer buffers (BatchNorm's counter) are not interpolated: no delta for them.
    return {n: v - b[n] for n, v in a.items() if v.is_floating_point()}


class FTNAxesLayer(AxesLayer):
    """FTN per anchor and per corner: W_{d,k} = FTN_{d,k}(f or W_{d,k-1}), J_c = FTN_c(K_c) - K_c.
    The bias stays the base's (FTN transforms kernels only)."""

    def __init__(self, base: nn.Module, config: ftn_method.FTNConfig, axes: Sequence[AxisSpec],
                 corners: Sequence[Corner]) -> None:
        if not isinstance(base, KERNEL_LAYERS):
            raise TypeError(f"FTN tunes {[t.__name__ for t in KERNEL_LAYERS]}, not {type(base).__name__}")
        self._channels = out_channels(base)
        super().__init__(base, config, axes, corners)

    def _new_anchor(self) -> nn.Module:
        c = self.config
        return ftn_method.FilterTransition(self._channels, c.groups, c.depth, c.spatial)

    _new_corner = _new_anchor

    def _transition(self, ftn: nn.Module, weight: Tensor) -> Tensor:
        return from_out_in(self.base, ftn(to_out_in(self.base, weight)))

    def _base_tensors(self) -> dict[str, Tensor]:
        return {"weight": self.base.weight}

    def _anchor_tensors(self, axis: str, k: int, start: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"weight": self._transition(self.tuners[axis][str(k)], start["weight"])}

    def _corner_delta(self, corner: Corner, plain: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"weight": self._transition(self.corners[corner_key(corner)], plain["weight"]) - plain["weight"]}


class _TensorSet(nn.Module):
    """A copy of a module's direct float tensors (parameters as parameters, buffers as buffers)."""

    def __init__(self, base: nn.Module, zero: bool) -> None:
        super().__init__()
        for name, param in base.named_parameters(recurse=False):
            value = torch.zeros_like(param) if zero else param.detach().clone()
            self.register_parameter(name, nn.Parameter(value))
        for name, buf in base.named_buffers(recurse=False):
            if buf is not None and buf.is_floating_point():
                self.register_buffer(name, torch.zeros_like(buf) if zero else buf.detach().clone())

    def tensors(self) -> dict[str, Tensor]:
        return {**dict(self.named_parameters(recurse=False)), **dict(self.named_buffers(recurse=False))}


class DNIAxesLayer(AxesLayer):
    """DNI per anchor: a copy of the layer's float tensors at that level (W_{d,k} itself); per corner,
    a correction J_c stored as tensors, zero at the start."""

    def __init__(self, base: nn.Module, config: dni_method.DNIConfig, axes: Sequence[AxisSpec],
                 corners: Sequence[Corner]) -> None:
        self._names = [n for n, _ in base.named_parameters(recurse=False)] + [
            n for n, b in base.named_buffers(recurse=False) if b is not None
        ]
        super().__init__(base, config, axes, corners)

    def _new_anchor(self) -> nn.Module:
        return _TensorSet(self.base, zero=False)

    def _new_corner(self) -> nn.Module:
        return _TensorSet(self.base, zero=True)

    def _base_tensors(self) -> dict[str, Tensor]:
        return {n: getattr(self.base, n) for n in self._names}

    def _anchor_tensors(self, axis: str, k: int, start: dict[str, Tensor]) -> dict[str, Tensor]:
        own = self.tuners[axis][str(k)].tensors()
        return {n: own.get(n, v) for n, v in self._base_tensors().items()}

    def _corner_delta(self, corner: Corner, plain: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.corners[corner_key(corner)].tensors()


_LAYERS: dict[str, type[AxesLayer]] = {"ftn": FTNAxesLayer, "dni": DNIAxesLayer}


# -- the model ---------------------------------------------------------------------------------


def _norm_corner(corner: Mapping[str, int] | Corner, axes: Sequence[AxisSpec]) -> Corner:
    """A corner as ((axis, anchor), ...) in the model's axis order, validated."""
    items = dict(corner.items() if isinstance(corner, Mapping) else corner)
    by_name = {a.name: a for a in axes}
    unknown = [n for n in items if n not in by_name]
    if unknown:
        raise ValueError(f"corner {items}: this model has no axis {unknown[0]!r}; its axes are {', '.join(by_name)}")
    if len(items) < 2:
        raise ValueError(f"a corner joins two or more axes at anchors, e.g. {{'a': 1, 'b': 1}}; got {items}")
    for name, k in items.items():
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= by_name[name].segments:
            raise ValueError(f"corner {items}: {name} must be an anchor 1 ... {by_name[name].segments}, got {k!r}")
    return tuple((a.name, int(items[a.name])) for a in axes if a.name in items)


class AxesModel(nn.Module):
    """A base network with a method attached on several named axes, each with two or more anchors.

    ``model(x)`` runs at the current setting; ``model(x, alpha={...})`` at another one for that
    call. Build it with :func:`attach_axes` or :func:`merge_axes`; see the module docstring.
    """

    def __init__(self, model: nn.Module, method: str, config: Any, axes: Sequence[AxisSpec],
                 target_names: Sequence[str], corners: Sequence[Corner] = ()) -> None:
        super().__init__()
        self.method = method
        self.config = config
        self.axes = tuple(axes)
        self.corners: list[Corner] = list(corners)
        self.target_names = list(target_names)
        self.control = AxesControl(self.axes)
        self.metadata: dict[str, Any] = {}
        self.model = model
        layer_class = _LAYERS[method]
        for name in sorted(self.target_names, key=lambda n: -n.count(".") if n else 1):  # innermost first
            module = self.model.get_submodule(name) if name else self.model
            layer = layer_class(module, config, self.axes, self.corners)
            layer.control = self.control
            if name:
                _replace(self.model, name, layer)
            else:
                self.model = layer

    # -- what it is --------------------------------------------------------------------------
    @property
    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(exact_export=True, per_pixel=True, per_sample=True)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def axis(self, name: str) -> AxisSpec:
        for a in self.axes:
            if a.name == name:
                return a
        raise ValueError(f"this model has no axis {name!r}; its axes are {', '.join(self.axis_names)}")

    @property
    def levels(self) -> Levels | None:
        """What the axes mean for :mod:`ftn.levels` (task, anchor levels, calibrations kept from
        ``metadata``); None unless every axis names its anchor levels."""
        if any(a.levels is None for a in self.axes):
            return None
        try:
            known = Levels.from_metadata(self.metadata)
        except ValueError:
            known = Levels()
        calibrations: dict[str | None, Calibration | None] = {a.name: a.calibration for a in known.axes}
        axes = tuple(Axis(a.name, a.levels, calibrations.get(a.name)) for a in self.axes)
        return Levels(self.metadata.get("task"), axes)

    @property
    def base_network(self) -> nn.Module:
        """The network under the wrapper (its target layers are the method's layers)."""
        return self.model.base if isinstance(self.model, TunableLayer) else self.model

    def axes_layers(self) -> Iterator[tuple[str, AxesLayer]]:
        for name, module in self.model.named_modules():
            if isinstance(module, AxesLayer):
                yield name, module

    # -- the setting -------------------------------------------------------------------------
    @property
    def current_alpha(self) -> dict[str, float | Tensor]:
        return self.control.values

    def set_alpha(self, alpha: Setting) -> AxesModel:
        """Set the setting for the following forwards (see the module docstring for its forms)."""
        self.control.set(alpha)
        return self

    @contextmanager
    def alpha(self, alpha: Setting) -> Iterator[AxesModel]:
        """Run a block at another setting, restoring the previous one afterwards."""
        previous = self.control.values
        self.set_alpha(alpha)
        try:
            yield self
        finally:
            self.control.set(previous)

    def forward(self, *args: Any, alpha: Setting | None = None, **kwargs: Any) -> Any:
        if alpha is None:
            return self.model(*args, **kwargs)
        with self.alpha(alpha):
            return self.model(*args, **kwargs)

    # -- training ----------------------------------------------------------------------------
    def _select(self, axis: str | None, anchor: int | None, corner: Mapping[str, int] | None) -> tuple:
        if corner is not None:
            if axis is not None or anchor is not None:
                raise ValueError("select an anchor (axis=, anchor=) or a corner (corner=), not both")
            normal = _norm_corner(corner, self.axes)
            if normal not in self.corners:
                have = ", ".join(corner_key(c) for c in self.corners) or "none"
                raise ValueError(f"this model has no corner {corner_key(normal)}; its corners: {have} (add_corner first)")
            return None, None, normal
        if axis is None:
            if anchor is not None:
                raise ValueError("anchor= needs axis=")
            return None, None, None
        spec = self.axis(axis)
        if anchor is not None and (isinstance(anchor, bool) or not isinstance(anchor, int)
                                   or not 1 <= anchor <= spec.segments):
            raise ValueError(f"axis {axis!r} has anchors 1 ... {spec.segments} to train, got {anchor!r}")
        return axis, anchor, None

    def tuner_parameters(self, axis: str | None = None, anchor: int | None = None,
                         corner: Mapping[str, int] | None = None) -> list[nn.Parameter]:
        """The tuners' parameters: all, one axis's, one anchor's (``axis=, anchor=``) or one corner's."""
        axis, anchor, normal = self._select(axis, anchor, corner)
        seen: set[int] = set()
        params = []
        for _, layer in self.axes_layers():
            for module in layer.tuner_modules(axis, anchor, normal):
                for p in module.parameters():
                    if id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
        return params

    def training_point(self, axis: str | None = None, anchor: int | None = None,
                       corner: Mapping[str, int] | None = None) -> dict[str, float]:
        """The setting an anchor (or corner) trains at, for every axis: that anchor on its axis (the
        corner's anchors on theirs), the other axes at 0."""
        axis, anchor, normal = self._select(axis, anchor, corner)
        point = dict.fromkeys(self.axis_names, 0.0)
        if normal is not None:
            point.update((name, float(k)) for name, k in normal)
        elif axis is None or anchor is None:
            raise ValueError("a training point needs axis= and anchor=, or corner=")
        else:
            point[axis] = float(anchor)
        return point

    def trainable(self, axis: str | None = None, anchor: int | None = None,
                  corner: Mapping[str, int] | None = None) -> list[nn.Parameter]:
        """Stage-2 set-up for one anchor or corner: its parameters train, every other parameter
        (base and other tuners) is frozen, the base's norms stay in eval mode, and the setting is
        its training point. Returns the parameters to optimise."""
        point = self.training_point(axis, anchor, corner)
        chosen = self.tuner_parameters(axis, anchor, corner)
        ids = {id(p) for p in chosen}
        for p in self.parameters():
            p.requires_grad_(id(p) in ids)
        self._base_frozen = True
        self._freeze_base_norms()
        self.set_alpha(point)
        return chosen

    def train(self, mode: bool = True) -> AxesModel:
        """``nn.Module.train``, except that a frozen base's normalisation layers stay in eval mode."""
        super().train(mode)
        if getattr(self, "_base_frozen", False):
            self._freeze_base_norms()
        return self

    def _freeze_base_norms(self) -> None:
        stack: list[nn.Module] = [self.model]
        while stack:
            module = stack.pop()
            if isinstance(module, _NORM_LAYERS):
                module.eval()
            stack.extend([module.base] if isinstance(module, TunableLayer) else module.children())

    # -- growing -----------------------------------------------------------------------------
    def add_corner(self, corner: Mapping[str, int]) -> AxesModel:
        """Add a joint correction at ``corner`` (e.g. ``{"sigma": 1, "quality": 1}``), identity at first."""
        normal = _norm_corner(corner, self.axes)
        if normal in self.corners:
            raise ValueError(f"this model already has corner {corner_key(normal)}")
        self.corners.append(normal)
        for _, layer in self.axes_layers():
            layer.add_corner(normal)
        return self

    def import_tunable(self, tunable: TunableModel, axis: str, anchor: int = 1) -> AxesModel:
        """Put a two-anchor model's tuner in as anchor ``anchor`` of ``axis``.

        The two must share the method, its options, the targets and the base network bit for bit.
        A two-anchor FTN learnt f -> level, so it fits anchor 1 of any axis, or any anchor of an
        axis that is not chained.

        Raises:
            ValueError: any of these differ (the first difference, in one line).
        """
        spec = self.axis(axis)
        self._select(axis, anchor, None)
        if not isinstance(tunable, TunableModel):
            raise TypeError(f"import_tunable takes a TunableModel, got {type(tunable).__name__}")
        if tunable.method != self.method or tunable.options != self.options:
            raise ValueError(
                f"the tuner is {tunable.method} {tunable.options}, this model is {self.method} {self.options}"
            )
        if spec.chained and anchor > 1 and self.method == "ftn":
            raise ValueError(f"axis {axis!r} is chained: anchor {anchor} starts from anchor {anchor - 1}, "
                             "and a two-anchor FTN starts from the base")
        if sorted(tunable.target_names) != sorted(self.target_names):
            raise ValueError("the tuner's target layers differ from this model's")
        _check_same_base(tunable.export(0.0), self.export({}))
        ours = dict(self.axes_layers())
        with torch.no_grad():
            for name, layer in tunable.tunable_layers():
                target = ours[name].tuners[axis][str(anchor)]
                if self.method == "ftn":
                    target.load_state_dict(layer.ftn.state_dict())
                else:
                    theirs = {**{n: layer.level2[n] for n in layer._param_names},
                              **{n: getattr(layer, f"level2_{n}") for n in layer._buffer_names}}
                    for n, t in target.tensors().items():
                        t.copy_(theirs[n])
        return self

    # -- export ------------------------------------------------------------------------------
    def export(self, alpha: Setting) -> nn.Module:
        """A plain model of the base architecture with the blended tensors of ``alpha`` baked in
        (numbers only; maps and per-sample values cannot be baked into weights)."""
        values = self.control.parse(alpha)
        if not all(isinstance(v, float) for v in values.values()):
            raise TypeError("export takes one setting of numbers; per-pixel maps cannot be baked into weights")
        plain = copy.deepcopy(self.model)
        layers = [(n, m) for n, m in plain.named_modules() if isinstance(m, AxesLayer)]
        for name, layer in sorted(layers, key=lambda item: -item[0].count(".") if item[0] else 1):
            with torch.no_grad():
                baked = layer.export_module(values)  # type: ignore[arg-type]
            if name:
                _replace(plain, name, baked)
            else:
                plain = baked
        return plain

    def extra_repr(self) -> str:
        axes = ", ".join(f"{a.name}: {a.anchors} anchors{' chained' if a.chained else ''}" for a in self.axes)
        corners = f", corners [{'; '.join(corner_key(c) for c in self.corners)}]" if self.corners else ""
        return f"method={self.method!r}, options={self.options}, axes [{axes}]{corners}, layers={len(self.target_names)}"


def _check_same_base(a: nn.Module, b: nn.Module) -> None:
    """Refuse (one line) unless two plain networks are the same architecture with equal tensors."""
    if type(a) is not type(b):
        raise ValueError(f"the bases differ: {type(a).__name__} and {type(b).__name__}")
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError(f"the bases differ: their tensors are named differently ({sorted(sa.keys() ^ sb.keys())[:3]})")
    for key, value in sa.items():
        if value.shape != sb[key].shape or not torch.equal(value, sb[key]):
            raise ValueError(f"the bases differ at {key!r}; tuners can share a model only when trained on the same base")


def _axis_specs(axes: Sequence[AxisSpec | str]) -> tuple[AxisSpec, ...]:
    specs = tuple(a if isinstance(a, AxisSpec) else AxisSpec(a) for a in axes)
    if not specs:
        raise ValueError("a multi-axis model needs at least one axis")
    names = [a.name for a in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"axis {twice[0]!r} is named twice")
    return specs


def attach_axes(
    model: nn.Module,
    method: str,
    axes: Sequence[AxisSpec | str],
    *,
    corners: Sequence[Mapping[str, int]] = (),
    targets: str | Sequence[str] | Sequence[type] | None = None,
    exclude: str | Sequence[str] | None = None,
    **options: Any,
) -> AxesModel:
    """Attach ``method`` ("ftn" or "dni") to ``model`` (modified in place) on several axes.

    Args:
        model: any ``nn.Module``; its target modules are replaced by multi-axis layers.
        method: "ftn" or "dni".
        axes: :class:`AxisSpec` objects, or names (two anchors, not chained).
        corners: joint corrections, e.g. ``[{"sigma": 1, "quality": 1}]`` (more with ``add_corner``).
        targets, exclude: as for :func:`ftn.attach`.
        **options: the method's options (``groups=16`` for ftn).

    Example:
        >>> m = attach_axes(net, "ftn", [AxisSpec("sigma", 4, chained=True), "quality"], groups=16)
        >>> opt = torch.optim.Adam(m.trainable(axis="sigma", anchor=1))  # trains at sigma = 1
    """
    spec = AXES_METHODS.get(method)
    if spec is None:
        raise ValueError(
            f"multi-axis models use the methods {sorted(AXES_METHODS)}, not {method!r} "
            "(AdaFM, CFSNet and Dynamic-Net modulate features, not kernels per anchor)"
        )
    if isinstance(model, (TunableModel, AxesModel)) or any(isinstance(m, TunableLayer) for m in model.modules()):
        raise ValueError("this model already has a tuning method attached; attach to the plain base network")
    specs = _axis_specs(axes)
    config = spec.config(**options)
    names = select_targets(model, targets, exclude, spec.default_targets, method)
    if spec.default_targets == "conv":
        wrong = [n for n in names if not isinstance(model.get_submodule(n) if n else model, KERNEL_LAYERS)]
        if wrong:
            raise ValueError(f"method {method!r} tunes nn.Conv2d, nn.ConvTranspose2d and nn.Linear layers only; "
                             f"these targets are not: {wrong[:5]}")
    normal = [_norm_corner(c, specs) for c in corners]
    return AxesModel(model, method, config, specs, names, normal)


def merge_axes(models: Mapping[str, TunableModel], *, chained: bool = False) -> AxesModel:
    """One multi-axis model from two-anchor models tuned on the same base, one axis each.

    ``merge_axes({"sigma": denoise, "quality": dejpeg})``: each model becomes anchor 1 of its axis;
    at (a, 0) the result is ``denoise`` at a, at (0, b) ``dejpeg`` at b. Anchor levels are read
    from each model's ``metadata`` where it names them.

    Raises:
        ValueError: the models differ in method, options, targets or base tensors (one line).
    """
    if not models:
        raise ValueError("merge_axes needs at least one model")
    first = next(iter(models.values()))
    if not isinstance(first, TunableModel):
        raise TypeError(f"merge_axes takes TunableModels, got {type(first).__name__}")
    if first.method not in AXES_METHODS:
        raise ValueError(f"multi-axis models use the methods {sorted(AXES_METHODS)}, not {first.method!r}")
    known = {name: _known_axis(m) for name, m in models.items()}
    specs = [AxisSpec(name, 2, chained, known[name].anchors) for name in models]
    merged = attach_axes(first.export(0.0), first.method, specs, targets=list(first.target_names), **first.options)
    for name, tunable in models.items():
        merged.import_tunable(tunable, name)
    tasks = {getattr(m, "metadata", {}).get("task") for m in models.values()}
    if len(tasks) == 1 and None not in tasks:
        merged.metadata["task"] = tasks.pop()
    calibrations = {name: axis.calibration for name, axis in known.items() if axis.calibration is not None}
    levels = merged.levels
    if levels is not None and calibrations:
        for name, calibration in calibrations.items():
            levels = levels.with_calibration(calibration, name)
        merged.metadata = levels.replace_in(merged.metadata)
    return merged


def _known_axis(model: TunableModel) -> Axis:
    """What a model's metadata says of its one axis (anchor levels, calibration); an empty axis if nothing."""
    try:
        return Levels.from_metadata(getattr(model, "metadata", None)).axis()
    except ValueError:
        return Axis(None, None)
