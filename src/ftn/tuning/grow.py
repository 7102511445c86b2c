"""Growing a tunable model: one more anchor on an axis, or one more axis (``ftn tune --add-anchor`` /
``--new-axis``), every tuner it already has left as it is.

* :func:`as_axes`: a one-axis, two-anchor file (FTN or DNI) as a multi-axis model with that one axis
  (:meth:`~ftn.methods.axes.AxesModel.import_tunable`); at numbers it computes what the file did, bit
  for bit.
* :func:`with_anchor`: the axis gains anchor K + 1 after its last; the new tuner starts where the
  last anchor is (chained FTN: the identity on W_K; FTN from the base: a copy of anchor K's FTN;
  DNI: a copy of anchor K's tensors), so training starts from the nearest level trained.
* :func:`with_axis`: a new axis with two anchors, its tuner the identity (the model is unchanged).
* :func:`with_corner`: a joint correction where two or more axes sit at anchors (e.g. sigma 50 with
  quality 10), the identity at first (:mod:`ftn.methods.axes`, "Corners"); :func:`corner_at` reads
  ``"sigma=50,quality=10"`` (anchor levels) as anchors. :func:`with_corners_from` joins corners
  trained in parallel from one file.

All keep every existing tensor; the new tuner's hat weight is 0 wherever an old setting lies (a_d
<= K on the grown axis, 0 on a new one), so outputs at every old setting stay exactly as they were:
:func:`check_unchanged` proves it on a probe image before and after training. A corner is meant to
change the settings where its weight is not 0 (every corner axis within one segment of its anchor);
the check covers the settings outside them (:func:`old_settings` with ``corner``).

**What each axis degrades** (:func:`axis_kinds`): training data for a point of a multi-axis model
needs the degradation of every axis (a noise or a JPEG level). A grown file records it under
``tuned.axes`` (``{"sigma": {"kind": "noise", "clip": false}, "quality": {"kind": "jpeg"}}``); an
older one-axis file says it by its ``task`` and ``task_options``; else an axis called ``sigma`` is
taken as photo-true noise and ``quality`` as JPEG, and the record says it was assumed.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from ..levels import Levels
from ..methods import TunableModel
from ..methods.axes import AXES_METHODS, AxesModel, AxisSpec, attach_axes
from .specs import JpegSpec, NoiseSpec

__all__ = ["MAX_AXES", "MAX_ANCHORS", "as_axes", "axis_kinds", "check_unchanged", "corner_at", "kind_of", "old_settings",
           "spec_at", "with_anchor", "with_axis", "with_corner", "with_corners_from"]

#: The bounds :func:`ftn.axes_io.load_axes` accepts (a grown file must load).
MAX_AXES, MAX_ANCHORS = 8, 16


def _number(value: float) -> str:
    return f"{value:g}"


def as_axes(model: nn.Module, *, chained: bool | None = None, name: str = "the base") -> AxesModel:
    """``model`` as a multi-axis model: an :class:`AxesModel` as it is; a one-axis, two-anchor
    :class:`TunableModel` (FTN or DNI) as one axis with that tuner as anchor 1 (``chained``: how its
    later anchors start, default True: from the anchor before). ``metadata`` is carried over.

    Raises:
        ValueError: a plain network, a method without a multi-axis form (AdaFM, CFSNet, Dynamic-Net),
            or a file that does not name its axis and anchor levels (one line each).
    """
    if isinstance(model, AxesModel):
        if chained is not None:
            raise ValueError(f"{name} already has axes (chaining is fixed per axis); leave out --chain / --no-chain")
        return model
    if not isinstance(model, TunableModel):
        raise ValueError(f"{name} is a plain network with no tuning method: give it its first axis with "
                         "ftn tune BASE --to SPEC; --add-anchor and --new-axis grow a tunable model")
    if model.method not in AXES_METHODS:
        raise ValueError(f"{name} is tuned with {model.method}, which cannot have several axes or anchors "
                         f"(multi-axis models use {' or '.join(sorted(AXES_METHODS))}; AdaFM, CFSNet and Dynamic-Net "
                         "modulate features, not kernels per anchor); tune the base again with --method ftn")
    try:
        levels = Levels.from_metadata(getattr(model, "metadata", None))
        axis = levels.axis()
    except ValueError:
        axis = None
    if axis is None or axis.name is None or axis.anchors is None:
        raise ValueError(f"{name} does not name its axis and anchor levels (e.g. sigma 20 ... sigma 80), so no level "
                         "can be added to it")
    spec = AxisSpec(axis.name, 2, True if chained is None else bool(chained), axis.anchors)
    grown = attach_axes(model.export(0.0), model.method, [spec], targets=list(model.target_names), **model.options)
    grown.import_tunable(model, axis.name)
    grown.metadata = copy.deepcopy(dict(getattr(model, "metadata", {}) or {}))
    return grown


def _rebuild(model: AxesModel, axes: Sequence[AxisSpec]) -> AxesModel:
    """``model`` with ``axes`` in place of its own, every tensor it has copied over (the new ones as built)."""
    grown = attach_axes(model.export({}), model.method, list(axes), corners=[dict(c) for c in model.corners],
                        targets=list(model.target_names), **model.options)
    missing, unexpected = grown.model.load_state_dict(model.model.state_dict(), strict=False)
    if unexpected:  # a structure this module did not foresee: refuse rather than drop a tensor
        raise ValueError(f"cannot grow this model: its tensors {unexpected[:3]} have no place in the grown one")
    grown.metadata = copy.deepcopy(model.metadata)
    grown.to(next(iter(model.parameters()), torch.empty(0)).device)
    return grown


def with_anchor(model: AxesModel, axis: str, level: float) -> AxesModel:
    """A copy of ``model`` whose ``axis`` has one more anchor, at ``level``, after its last.

    Raises:
        ValueError: an unknown axis, an axis without anchor levels, a level not beyond the last
            anchor (in the axis's direction), or more anchors than a file may hold (one line).
    """
    spec = model.axis(axis)
    if spec.levels is None:
        raise ValueError(f"axis {axis!r} does not name its anchor levels, so a level cannot be added to it")
    last, before = spec.levels[-1], spec.levels[-2]
    rising = last > before
    if (level <= last) if rising else (level >= last):
        raise ValueError(f"{axis} {_number(level)} is not beyond the last anchor ({axis} {_number(last)}): a new anchor "
                         f"goes after it, {axis} {'>' if rising else '<'} {_number(last)} (anchors now "
                         f"{', '.join(_number(v) for v in spec.levels)})")
    if spec.anchors >= MAX_ANCHORS:
        raise ValueError(f"axis {axis!r} has {spec.anchors} anchors, the most a model file holds")
    k = spec.segments  # the last anchor; the new one is k + 1
    axes = [dataclasses.replace(a, anchors=a.anchors + 1, levels=(*spec.levels, float(level))) if a.name == axis else a
            for a in model.axes]
    grown = _rebuild(model, axes)
    copy_last = model.method != "ftn" or not spec.chained  # chained FTN: the identity on W_k is W_k already
    if copy_last:
        with torch.no_grad():
            for _, layer in grown.axes_layers():
                layer.tuners[axis][str(k + 1)].load_state_dict(layer.tuners[axis][str(k)].state_dict())
    return grown


def with_axis(model: AxesModel, name: str, levels: tuple[float, float], *, chained: bool = True) -> AxesModel:
    """A copy of ``model`` with a new last axis ``name`` (anchor levels ``levels``), its tuner the identity;
    ``chained``: whether anchors added to it later start from the anchor before (docs/anchors.md).

    Raises:
        ValueError: a name the model has, a bad name or levels, or more axes than a file may hold.
    """
    if name in model.axis_names:
        raise ValueError(f"this model already has an axis {name!r} (its axes: {', '.join(model.axis_names)}); "
                         "add an anchor to it with --axis and --add-anchor, or name the new axis otherwise")
    if len(model.axes) >= MAX_AXES:
        raise ValueError(f"this model has {len(model.axes)} axes, the most a model file holds")
    return _rebuild(model, [*model.axes, AxisSpec(name, 2, bool(chained), tuple(float(v) for v in levels))])


def corner_at(model: AxesModel, text: str | Mapping[str, float]) -> dict[str, int]:
    """``"sigma=50,quality=10"`` (or a mapping): anchor levels of two or more axes, as their anchors
    (``{"sigma": 3, "quality": 3}``).

    Raises:
        ValueError: an unknown axis, fewer than two axes, or a level that is not one of the axis's
            anchors 1 ... K (one line, naming the anchors).
    """
    from ..levels import split_values

    items = split_values(text, model.axis_names, "--corner") if isinstance(text, str) else dict(text)
    if len(items) < 2:
        raise ValueError(f"--corner joins two or more axes at their anchors, e.g. "
                         f"{','.join(f'{a.name}={_number(a.levels[-1]) if a.levels else 1}' for a in model.axes)}")
    corner: dict[str, int] = {}
    for name, value in items.items():
        spec = model.axis(name)  # an unknown axis: one line naming the model's axes
        try:
            level = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"--corner {name}={value!r} is not a number") from None
        if spec.levels is None:
            raise ValueError(f"axis {name!r} does not name its anchor levels, so --corner cannot find its anchors")
        matches = [k for k, v in enumerate(spec.levels) if k >= 1 and abs(v - level) < 1e-6]
        if not matches:
            raise ValueError(f"--corner {name}={_number(level)} is not an anchor of axis {name} (its anchors beyond the "
                             f"base: {', '.join(_number(v) for v in spec.levels[1:])})")
        corner[name] = matches[0]
    return corner


def with_corner(model: AxesModel, corner: Mapping[str, int]) -> AxesModel:
    """A copy of ``model`` with a joint correction at ``corner`` (``{"sigma": 3, "quality": 3}``),
    the identity until trained.

    Raises:
        ValueError: a corner the model has, or not a corner of its axes (one line).
    """
    grown = _rebuild(model, model.axes)
    grown.add_corner(dict(corner))
    return grown


def with_corners_from(model: AxesModel, other: AxesModel) -> AxesModel:
    """A copy of ``model`` with the joint corrections of ``other`` that it lacks, their tuners copied.

    Corners trained in parallel, each from one file (a corner's hat weight is 0 at every other anchor
    pair, so each trains alone), come together this way. The two must share the method, the axes, the
    base and every anchor's tuners bit for bit, and the corners both have.

    Raises:
        ValueError: they differ anywhere but in ``other``'s new corners (one line).
    """
    def structure(m: AxesModel) -> list[tuple[str, int, tuple[float, ...] | None, bool]]:
        return [(a.name, a.anchors, a.levels, a.chained) for a in m.axes]

    if (model.method, model.options, sorted(model.target_names)) != (other.method, other.options, sorted(other.target_names)):
        raise ValueError(f"the models differ in method or layers ({model.method} {model.options}, {other.method} {other.options})")
    if structure(model) != structure(other):
        raise ValueError(f"the models' axes differ: {structure(model)} and {structure(other)}")
    ours, theirs = model.model.state_dict(), other.model.state_dict()
    for key in ours.keys() & theirs.keys():
        if ours[key].shape != theirs[key].shape or not torch.equal(ours[key], theirs[key]):
            raise ValueError(f"the models differ at {key!r}: only corners trained from one file can be joined")
    extra = [k for k in ours.keys() ^ theirs.keys() if ".corners." not in f".{k}"]
    if extra:
        raise ValueError(f"the models differ beyond their corners ({sorted(extra)[:3]})")
    grown = model
    for corner in other.corners:
        if corner not in model.corners:
            grown = with_corner(grown, corner)
    new = {k: v for k, v in theirs.items() if k not in ours}
    missing, unexpected = grown.model.load_state_dict(new, strict=False)
    assert not unexpected, unexpected  # every new key is a corner tensor the grown model now has
    return grown


# -- what each axis degrades -----------------------------------------------------------------------

def kind_of(spec: NoiseSpec | JpegSpec) -> dict[str, Any]:
    """The record of a spec's kind without its level: ``{"kind": "noise", "clip": True}``, ``{"kind": "jpeg"}``."""
    if isinstance(spec, NoiseSpec):
        return {"kind": "noise", "clip": spec.clip}
    return {"kind": "jpeg"}


def spec_at(kind: Mapping[str, Any], level: float) -> NoiseSpec | JpegSpec:
    """The level spec of an axis of ``kind`` at ``level``."""
    if kind["kind"] == "noise":
        return NoiseSpec(float(level), clip=bool(kind.get("clip", True)))
    return JpegSpec(int(round(level)))


def _kind_of_task(task: Any, options: Any) -> dict[str, Any] | None:
    options = options if isinstance(options, Mapping) else {}
    if task == "denoise":
        return {"kind": "noise", "clip": bool(options.get("clip", False))}
    if task == "dejpeg":
        return {"kind": "jpeg"}
    return None


def axis_kinds(metadata: Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """What each axis in ``names`` degrades: a kind record (with ``"assumed": True`` where guessed from
    the name), or None where nothing says (see the module docstring)."""
    meta = metadata or {}
    tuned = meta.get("tuned")
    recorded = tuned.get("axes") if isinstance(tuned, Mapping) else None
    recorded = recorded if isinstance(recorded, Mapping) else {}
    out: dict[str, dict[str, Any] | None] = {}
    for name in names:
        kind = recorded.get(name)
        if isinstance(kind, Mapping) and kind.get("kind") in ("noise", "jpeg"):
            out[name] = {k: v for k, v in kind.items() if k in ("kind", "clip")}
            continue
        by_task = _kind_of_task(meta.get("task"), meta.get("task_options")) if len(names) == 1 else None
        if by_task is not None:  # a one-axis file's task is its axis's degradation
            out[name] = by_task
            continue
        guess = {"sigma": {"kind": "noise", "clip": True}, "quality": {"kind": "jpeg"}}.get(name)
        out[name] = None if guess is None else {**guess, "assumed": True}
    return out


# -- exactness -------------------------------------------------------------------------------------

def old_settings(axes: Sequence[AxisSpec], corner: Mapping[str, int] | None = None) -> list[dict[str, float]]:
    """Settings of a model with ``axes`` that a grown copy must serve exactly as before: 0, every anchor
    of every axis alone, a point between anchors on each axis, and all axes at once between anchors.
    With ``corner`` (a new joint correction), only those where its weight is 0 (some corner axis a
    segment or more from its anchor), plus every other axis at its last anchor with the corner's axes
    beyond reach."""
    settings: list[dict[str, float]] = [{}]
    for axis in axes:
        settings += [{axis.name: float(k)} for k in range(1, axis.anchors)]
        settings.append({axis.name: axis.segments - 0.37})
    if len(axes) > 1:
        settings.append({a.name: min(0.41 + 0.2 * i, a.segments - 0.13) for i, a in enumerate(axes)})
    if corner is None:
        return settings
    first = next(iter(corner))
    # corner axes at their anchors except the first, which sits two segments away (or at 0): weight 0
    away = {name: float(k) for name, k in corner.items()}
    away[first] = float(corner[first] - 2) if corner[first] >= 2 else 0.0
    settings.append(away)
    return [s for s in settings if _corner_weight(s, corner) == 0.0]


def _corner_weight(setting: Mapping[str, float], corner: Mapping[str, int]) -> float:
    """The product of the corner axes' hat weights at ``setting`` (axes left out are at 0)."""
    weight = 1.0
    for name, k in corner.items():
        weight *= max(0.0, 1.0 - abs(float(setting.get(name, 0.0)) - k))
    return weight


@torch.no_grad()
def check_unchanged(old: nn.Module, new: AxesModel, probe: torch.Tensor, settings: Sequence[Mapping[str, float]],
                    what: str) -> None:
    """Refuse (one line) unless ``new`` gives ``old``'s output bit for bit at every setting
    (``old``: the one-axis TunableModel, at the setting's only value, or an AxesModel)."""
    for setting in settings:
        if isinstance(old, AxesModel):
            expected = old(probe, alpha=dict(setting))
        else:
            expected = old(probe, alpha=float(next(iter(setting.values()), 0.0)))
        got = new(probe, alpha=dict(setting))
        if got.shape != expected.shape or not torch.equal(got, expected):
            words = ", ".join(f"{k} {v:g}" for k, v in setting.items()) or "alpha 0"
            raise ValueError(f"{what}: the grown model differs from the base at {words}; refusing to write it "
                             "(please report it with the base's architecture)")
