"""Levels and alpha: what a model's alpha means in real units, read from and written to its metadata.

A tunable model has one or more named **axes** (``sigma``, ``quality``), each with two or more
**anchor** levels: the levels the network was trained at. On an axis with K + 1 anchors alpha runs
over [0, K], alpha k being anchor k. An axis may carry a **calibration** measured on validation data
(:func:`ftn.eval.sweep.calibrate`): the alpha that restores each level best, so users can ask for
``sigma 50`` instead of guessing an alpha.

Two forms of metadata hold this (both under the model file's ``ftn`` metadata):

* **One axis, two anchors** (every file written so far, and still what :meth:`Levels.to_metadata`
  writes for such a model, so older readers keep working)::

      "levels": [{"sigma": 20}, {"sigma": 80}],          # alpha 0, alpha 1
      "calibration": {"level_name": "sigma", "levels": [20, 30, ..., 80], "alphas": [0.0, ..., 1.0],
                      "source": "best alpha on 14 images of Set14 ..."}

  The axis is named by the calibration's ``level_name``, else by the one number that differs
  between the two ``levels`` entries. A stage-1 base model carries one entry (``[{"sigma": 20}]``)
  and no axis. Files that do not name the quantity still load (the axis is then unnamed and has no
  anchors, and labels fall back to "level 1 ... level 2").

* **Several axes, or more than two anchors** (issue [4/6])::

      "axes": [
        {"name": "sigma", "anchors": [5, 15, 30, 50],                 # alpha 0, 1, 2, 3
         "calibration": {"levels": [5, 10, ..., 50], "alphas": [0.0, ..., 3.0], "source": "..."}},
        {"name": "quality", "anchors": [90, 10]}                       # no calibration: alpha only
      ]

  Names are unique non-empty strings; anchors are finite numbers, strictly increasing or decreasing
  (JPEG quality falls as the degradation grows); the calibration is optional and its ``level_name``,
  if written, is the axis name. A file holds one form or the other, never both.

In either form a calibration has equally long ``levels`` and ``alphas`` lists of at least two
finite numbers, no level twice, and alpha moving one way as the level grows; refusals are one-line
``ValueError``\\ s. :class:`Levels` is the parsed, validated whole; the functions below
(:func:`level_to_alpha`, :func:`alpha_to_level`, :func:`describe_levels`, :func:`level_name`) are what
``ftn run``, ``ftn export`` and the app call with a model's metadata.

**The per-axis vocabulary** (:func:`split_values`, :func:`parse_setting`), for models with several
axes or anchors (:class:`ftn.methods.axes.AxesModel`)::

    --level sigma=12,quality=70      real levels, per axis
    --alpha 0.3,0.8                  alphas in the model's axis order (axis d in [0, K_d])
    --alpha sigma=1.5                alphas by name; the axes not named are set elsewhere or stay at 0
    --alpha-map sigma=map.png        a grey map per axis (black = alpha 0, white = alpha K_d)

The options combine as long as no axis is set twice. A level becomes an alpha through the axis's
calibration (:func:`axis_alpha`); an axis without calibration maps its anchor levels to their alphas
(anchor k -> alpha k) and is piecewise linear between them: exact at the anchors, a reasonable guess
between (the level is refused outside the anchors, where nothing was trained). One-axis models keep
the old forms (a single unnamed number), read by :func:`level_to_alpha` as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "LEVEL_KEYS",
    "Axis",
    "AxisValue",
    "Calibration",
    "Levels",
    "alpha_to_level",
    "axis_alpha",
    "calibration_entry",
    "describe_levels",
    "level_name",
    "level_to_alpha",
    "parse_keyframes",
    "parse_setting",
    "split_values",
    "with_calibration",
]

#: The metadata keys this module reads and writes.
LEVEL_KEYS = ("task", "levels", "calibration", "axes")

_UNNAMED_ENDS = "level 1 (alpha 0) ... level 2 (alpha 1)"
_AXIS_KEYS = {"name", "anchors", "calibration"}


def _format_number(value: float) -> str:
    return f"{value:.4g}" if not float(value).is_integer() else str(int(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: float) -> int | float:
    """A number as JSON should show it: 20, not 20.0."""
    return int(value) if float(value).is_integer() else float(value)


@dataclass(frozen=True)
class Calibration:
    """A measured level -> alpha map: piecewise linear, monotone, levels kept ascending.

    Raises ``ValueError`` (one line) when the lists are malformed, of different lengths or shorter
    than two, hold NaN or infinity, list a level twice, or are not monotone.
    """

    levels: tuple[float, ...]
    alphas: tuple[float, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        try:
            levels = np.asarray(self.levels, dtype=np.float64)
            alphas = np.asarray(self.alphas, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise _malformed(err) from None
        if levels.ndim != 1 or levels.shape != alphas.shape or levels.size < 2:
            raise ValueError("the model's calibration must have equally long 'levels' and 'alphas' lists of at least two numbers")
        if not (np.isfinite(levels).all() and np.isfinite(alphas).all()):
            raise ValueError("the model's calibration holds NaN or infinite numbers")
        order = np.argsort(levels, kind="stable")
        levels, alphas = levels[order], alphas[order]
        if np.any(np.diff(levels) == 0):
            raise ValueError("the model's calibration lists a level twice")
        steps = np.diff(alphas)
        if not (np.all(steps >= 0) or np.all(steps <= 0)):
            raise ValueError("the model's calibration is not monotone (alpha must move one way as the level grows)")
        # Frozen: the normalised (sorted, float) values are set once, here.
        object.__setattr__(self, "levels", tuple(float(v) for v in levels))
        object.__setattr__(self, "alphas", tuple(float(a) for a in alphas))
        object.__setattr__(self, "source", None if self.source is None else str(self.source))

    @classmethod
    def from_metadata(cls, raw: Any) -> Calibration:
        """Parse a ``"calibration"`` metadata entry (``level_name`` is read by the caller)."""
        try:
            levels, alphas = raw["levels"], raw["alphas"]
        except (KeyError, TypeError, ValueError) as err:
            raise _malformed(err) from None
        return cls(levels, alphas, raw.get("source") if isinstance(raw, Mapping) else None)

    def to_metadata(self, name: str | None = None) -> dict[str, Any]:
        """The metadata entry; ``name`` is written as ``level_name`` (the one-axis form needs it)."""
        return calibration_entry(name, self.levels, self.alphas, self.source)

    def alpha_at(self, level: float) -> float:
        """The alpha for ``level``, interpolated; levels outside the range take the nearest end's."""
        return float(np.interp(float(level), self.levels, self.alphas))

    def level_at(self, alpha: float) -> float | None:
        """The level an ``alpha`` serves, where the calibration covers it; else None."""
        a, lv = np.asarray(self.alphas), np.asarray(self.levels)
        order = np.argsort(a, kind="stable")
        a, lv = a[order], lv[order]
        keep = np.concatenate([[True], np.diff(a) > 0])  # a flat stretch maps to its first level
        a, lv = a[keep], lv[keep]
        if a.size >= 2 and a[0] <= alpha <= a[-1]:
            return float(np.interp(alpha, a, lv))
        return None


def calibration_entry(
    name: str | None, levels: Sequence[float], alphas: Sequence[float], source: str | None = None
) -> dict[str, Any]:
    """A calibration's metadata entry, ``{"level_name", "levels", "alphas", "source"}``, as measured.

    Not validated here, so a sweep of one level still reports what it found; :func:`with_calibration`
    validates it before it is stored, and every reader validates it again.
    """
    entry: dict[str, Any] = {"level_name": name} if name else {}
    entry.update(levels=[float(v) for v in levels], alphas=[float(a) for a in alphas])
    if source is not None:
        entry["source"] = str(source)
    return entry


def _malformed(err: Exception) -> ValueError:
    return ValueError(f"the model's calibration is malformed ({type(err).__name__}: {err}); it needs 'levels' and 'alphas' lists")


@dataclass(frozen=True)
class Axis:
    """One control axis: its name, its anchor levels (alpha k = anchor k) and an optional calibration.

    ``name`` and ``anchors`` are None only for a one-axis file of the old form that does not say them.
    """

    name: str | None
    anchors: tuple[float, ...] | None
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        if self.name is not None and not (isinstance(self.name, str) and self.name):
            raise ValueError(f"an axis name must be a non-empty string, got {self.name!r}")
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            raise TypeError(f"axis {self.name!r}: calibration must be a Calibration, got {type(self.calibration).__name__}")
        if self.anchors is None:
            return
        if self.name is None:
            raise ValueError("an axis with anchors needs a name")
        label = f"axis {self.name!r}"
        anchors = list(self.anchors) if isinstance(self.anchors, (list, tuple)) else None
        if anchors is None or len(anchors) < 2 or not all(_is_number(v) and math.isfinite(v) for v in anchors):
            raise ValueError(f"{label}: anchors must be a list of two or more finite numbers, got {self.anchors!r}")
        steps = np.diff(np.asarray(anchors, dtype=np.float64))
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise ValueError(f"{label}: anchors must be strictly increasing or decreasing, got {anchors}")
        object.__setattr__(self, "anchors", tuple(float(v) for v in anchors))

    @property
    def segments(self) -> int | None:
        """K for K + 1 anchors: alpha on this axis runs over [0, K]; None if the anchors are unknown."""
        return None if self.anchors is None else len(self.anchors) - 1

    def describe(self) -> str:
        """The axis's two ends in words, e.g. ``"sigma 5 ... sigma 50"``."""
        if self.anchors is None:
            return _UNNAMED_ENDS
        first, last = self.anchors[0], self.anchors[-1]
        return f"{self.name} {_format_number(first)} ... {self.name} {_format_number(last)}"

    def anchor_at(self, alpha: float) -> float | None:
        """The anchor level at a whole-number ``alpha`` k in [0, K]; None elsewhere."""
        if self.anchors is None or not float(alpha).is_integer() or not 0 <= alpha <= len(self.anchors) - 1:
            return None
        return self.anchors[int(alpha)]

    def to_metadata(self) -> dict[str, Any]:
        """The axis's entry of the ``"axes"`` form."""
        entry: dict[str, Any] = {"name": self.name, "anchors": [_plain(v) for v in self.anchors or ()]}
        if self.calibration is not None:
            entry["calibration"] = self.calibration.to_metadata()
        return entry


@dataclass(frozen=True)
class Levels:
    """What a model's alpha means: its task, its axes, and (old form) the ``levels`` entries as written.

    ``ends`` holds the old form's ``"levels"`` entries unchanged (extra keys and all), for describing
    and writing back; a one-axis, two-anchor model built without them gets them from its anchors.
    """

    task: str | None = None
    axes: tuple[Axis, ...] = ()
    ends: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        axes = tuple(self.axes)
        if not all(isinstance(a, Axis) for a in axes):
            raise TypeError("axes must be Axis objects")
        if len(axes) > 1:
            if any(a.name is None or a.anchors is None for a in axes):
                raise ValueError("a model with several axes must name each and give its anchors")
            names = [a.name for a in axes]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"the model names axis {twice[0]!r} twice")
        ends = tuple(dict(e) for e in self.ends)
        if not ends and len(axes) == 1 and axes[0].anchors is not None and len(axes[0].anchors) == 2:
            ends = tuple({axes[0].name: _plain(v)} for v in axes[0].anchors)
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "ends", ends)

    # -- reading and writing metadata ------------------------------------------------------------
    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> Levels:
        """Parse and validate a model's metadata (either form; see the module docstring).

        Raises:
            ValueError: a malformed ``"axes"`` entry or calibration, or both forms in one file.
        """
        levels, error = _read(metadata)
        if error is not None:
            raise error
        return levels

    def to_metadata(self) -> dict[str, Any]:
        """The metadata entries for this model: the old form where it can say everything (one axis,
        two anchors), else the ``"axes"`` form."""
        out: dict[str, Any] = {} if self.task is None else {"task": self.task}
        if self._old_form():
            if self.ends:
                out["levels"] = [dict(e) for e in self.ends]
            if self.axes and self.axes[0].calibration is not None:
                out["calibration"] = self.axes[0].calibration.to_metadata(self.axes[0].name)
        else:
            out["axes"] = [a.to_metadata() for a in self.axes]
        return out

    def replace_in(self, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        """A copy of ``metadata`` with this model's level entries in place of the old ones."""
        new = self.to_metadata()
        out = {k: v for k, v in (metadata or {}).items() if k not in ("calibration", "axes")}
        if "levels" in new or "axes" in new:
            out.pop("levels", None)
        out.update(new)
        return out

    def _old_form(self) -> bool:
        return not self.axes or (len(self.axes) == 1 and (self.axes[0].anchors is None or len(self.axes[0].anchors) == 2))

    # -- questions -------------------------------------------------------------------------------
    def axis(self, name: str | None = None) -> Axis:
        """The axis called ``name``; without a name, the model's only axis.

        Raises:
            ValueError: no such axis, no axis at all, or several and no name given.
        """
        if name is None:
            if len(self.axes) == 1:
                return self.axes[0]
            if not self.axes:
                raise ValueError("this model's metadata does not say what its alpha varies (no levels)")
            raise ValueError(f"this model has {len(self.axes)} axes ({', '.join(self._names())}); say which one")
        for axis in self.axes:
            if axis.name == name:
                return axis
        have = f"its axes are {', '.join(self._names())}" if self._names() else "it names no axis"
        raise ValueError(f"this model has no axis {name!r}; {have}")

    def _names(self) -> list[str]:
        return [a.name for a in self.axes if a.name is not None]

    def describe(self) -> str:
        """The ends in words: ``"sigma 20 ... sigma 80"``; several axes joined by ``"; "``."""
        if len(self.ends) == 2 and all(self.ends):
            words = [
                ", ".join(f"{k} {_format_number(v) if _is_number(v) else v}" for k, v in end.items())
                for end in self.ends
            ]
            return f"{words[0]} ... {words[1]}"
        if any(a.anchors is not None for a in self.axes):
            return "; ".join(a.describe() for a in self.axes)
        return _UNNAMED_ENDS

    def with_calibration(self, calibration: Calibration, axis: str | None = None) -> Levels:
        """These levels with ``calibration`` stored for ``axis`` (the only axis if None).

        An old-form file that does not name its quantity takes ``axis`` as its name.
        """
        if not isinstance(calibration, Calibration):
            raise TypeError(f"calibration must be a Calibration, got {type(calibration).__name__}")
        names = self._names()
        if axis is not None and axis not in names:
            if names:
                raise ValueError(f"the calibration is in {axis}, but the model's levels are in {', '.join(names)}")
            # An old-form file whose levels do not say the quantity: the calibration names it.
            return replace(self, axes=(Axis(axis, _anchors_from_ends(self.ends, axis), calibration),))
        target = self.axis(axis)
        return replace(self, axes=tuple(replace(a, calibration=calibration) if a is target else a for a in self.axes))


# -- parsing ---------------------------------------------------------------------------------------


def _anchors_from_ends(ends: Sequence[Mapping[str, Any]], name: str) -> tuple[float, float] | None:
    """Old form: the two ``levels`` entries' values of ``name``, where both are distinct finite numbers."""
    if len(ends) != 2:
        return None
    values = [e.get(name) for e in ends]
    if all(_is_number(v) and math.isfinite(v) for v in values) and values[0] != values[1]:
        return float(values[0]), float(values[1])
    return None


def _old_form_name(calibration: Any, ends: Sequence[Mapping[str, Any]]) -> str | None:
    """The old form's axis name: the calibration's ``level_name``, else the one number that differs
    between the two ``levels`` entries."""
    if isinstance(calibration, dict) and calibration.get("level_name"):
        return str(calibration["level_name"])
    if len(ends) == 2:
        first, second = ends
        numeric = [k for k in first if k in second and isinstance(first[k], (int, float)) and first[k] != second[k]]
        if len(numeric) == 1:
            return numeric[0]
    return None


def _read(metadata: Mapping[str, Any] | None) -> tuple[Levels, ValueError | None]:
    """The levels of ``metadata``, and the error of an old-form calibration that does not validate.

    The old form is read leniently, as it always was: a broken calibration does not stop labels
    (the ends, the name) from being read; :func:`level_to_alpha` raises its error.
    """
    meta = metadata or {}
    task = meta.get("task")
    task = None if task is None else str(task)
    if "axes" in meta:
        both = [k for k in ("levels", "calibration") if k in meta]
        if both:
            raise ValueError(f"the model's metadata has both 'axes' and {' and '.join(repr(k) for k in both)}; a file holds one form")
        return Levels(task, _parse_axes(meta["axes"])), None
    raw_ends = meta.get("levels")
    ends = tuple(raw_ends) if isinstance(raw_ends, list) and all(isinstance(e, dict) for e in raw_ends) else ()
    raw_cal = meta.get("calibration")
    name = _old_form_name(raw_cal, ends)
    calibration, error = None, None
    if raw_cal:
        try:
            calibration = Calibration.from_metadata(raw_cal)
        except ValueError as err:
            error = err
    anchors = _anchors_from_ends(ends, name) if name else None
    axes = (Axis(name, anchors, calibration),) if name is not None or calibration is not None else ()
    return Levels(task, axes, ends), error


def _parse_axes(raw: Any) -> tuple[Axis, ...]:
    example = '[{"name": "sigma", "anchors": [20, 80]}]'
    if not isinstance(raw, list) or not raw or not all(isinstance(a, dict) for a in raw):
        raise ValueError(f"the model's 'axes' must be a list of one or more objects like {example}")
    axes = []
    for entry in raw:
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"every axis needs a name (a non-empty string), got {name!r}")
        unknown = sorted(set(entry) - _AXIS_KEYS)
        if unknown:
            raise ValueError(f"axis {name!r} has unknown entries {unknown}; an axis holds name, anchors and calibration")
        if not isinstance(entry.get("anchors"), list):
            raise ValueError(f"axis {name!r}: anchors must be a list of two or more finite numbers, got {entry.get('anchors')!r}")
        calibration = None
        raw_cal = entry.get("calibration")
        if raw_cal is not None:
            said = raw_cal.get("level_name") if isinstance(raw_cal, dict) else None
            if said not in (None, name):
                raise ValueError(f"axis {name!r}: its calibration is in {said}")
            try:
                calibration = Calibration.from_metadata(raw_cal)
            except ValueError as err:
                raise ValueError(f"axis {name!r}: {err}") from None
        axes.append(Axis(name, tuple(entry["anchors"]), calibration))
    return tuple(axes)


# -- what the rest of ftn calls --------------------------------------------------------------------


def _only_axis(levels: Levels, axis: str | None) -> Axis | None:
    """The axis asked for; None where the model has no axis (and none was named)."""
    if axis is None and not levels.axes:
        return None
    return levels.axis(axis)


def level_name(metadata: Mapping[str, Any] | None, axis: str | None = None) -> str | None:
    """The name of the quantity an axis varies ("sigma", "quality"), if the metadata says; None for a
    model with several axes when ``axis`` is not given."""
    levels, _ = _read(metadata)
    if axis is None and len(levels.axes) != 1:
        return None
    return levels.axis(axis).name


def describe_levels(metadata: Mapping[str, Any] | None, axis: str | None = None) -> str:
    """The ends in words, e.g. ``"sigma 20 ... sigma 80"`` (alpha 0 ... alpha 1); one axis's if named."""
    levels, _ = _read(metadata)
    return levels.describe() if axis is None else levels.axis(axis).describe()


def level_to_alpha(metadata: Mapping[str, Any] | None, level: float, axis: str | None = None) -> tuple[float, str]:
    """The alpha that serves ``level`` (e.g. sigma 50), through the model's calibration.

    Returns ``(alpha, note)``: ``note`` is "" or says what was adjusted (a level outside the
    calibrated range is clamped to its nearest end).

    Raises:
        ValueError: the model has no calibration (use an alpha directly), its calibration does not
            validate, the level is not a finite number, or ``axis`` is missing or unknown where the
            model has several axes.
    """
    level = float(level)
    if not math.isfinite(level):
        raise ValueError(f"level must be a finite number, got {level}")
    levels, error = _read(metadata)
    if error is not None:
        raise error
    chosen = _only_axis(levels, axis)
    if chosen is None or chosen.calibration is None:
        raise ValueError(_no_calibration(levels, chosen))
    name = chosen.name or "level"
    low, high = chosen.calibration.levels[0], chosen.calibration.levels[-1]
    note = ""
    if level < low or level > high:
        end = low if level < low else high
        note = (
            f"{name} {_format_number(level)} is outside the calibrated range {name} {_format_number(low)} ... "
            f"{name} {_format_number(high)}; using {name} {_format_number(end)}"
        )
        level = end
    return chosen.calibration.alpha_at(level), note


def _no_calibration(levels: Levels, axis: Axis | None) -> str:
    if levels.ends or axis is None or axis.anchors is None:  # the old form's words, as they always were
        ends = "0 = " + levels.describe().replace(" ... ", ", 1 = ")
    else:
        ends = ", ".join(f"{k} = {axis.name} {_format_number(v)}" for k, v in enumerate(axis.anchors))
    which = f" for {axis.name}" if axis is not None and len(levels.axes) > 1 else ""
    return (
        f"this model has no level calibration{which}, so a level cannot be turned into an alpha; "
        f"choose the alpha yourself with --alpha ({ends})"
    )


def alpha_to_level(metadata: Mapping[str, Any] | None, alpha: float, axis: str | None = None) -> float | None:
    """The level an ``alpha`` serves, for labels: through the calibration where it covers alpha,
    else exact at the anchors (alpha 0, 1, ...); None when the metadata cannot tell (or the model has
    several axes and ``axis`` is not given)."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        return None
    levels, _ = _read(metadata)
    if axis is None and len(levels.axes) != 1:
        return None
    chosen = levels.axis(axis)
    if chosen.calibration is not None:
        value = chosen.calibration.level_at(alpha)
        if value is not None:
            return value
    anchor = chosen.anchor_at(alpha)
    if anchor is not None:
        return anchor
    # The old form, where the two entries do not both hold a number for the name: each end still tells its own.
    if chosen.name and len(levels.ends) == 2 and alpha in (0.0, 1.0):
        value = levels.ends[int(alpha)].get(chosen.name)
        return float(value) if isinstance(value, (int, float)) else None
    return None


def with_calibration(
    metadata: Mapping[str, Any] | None, calibration: Calibration | Mapping[str, Any], axis: str | None = None
) -> dict[str, Any]:
    """A copy of ``metadata`` with ``calibration`` stored for ``axis``, validated, in the file's form.

    ``calibration`` is a :class:`Calibration` or its metadata entry (whose ``level_name`` names the
    axis when ``axis`` is None). A calibration already there is replaced, even one that does not validate.
    """
    if not isinstance(calibration, Calibration):
        if axis is None and isinstance(calibration, Mapping) and calibration.get("level_name"):
            axis = str(calibration["level_name"])
        calibration = Calibration.from_metadata(calibration)
    levels, _ = _read(metadata)
    return levels.with_calibration(calibration, axis).replace_in(metadata)


# -- the per-axis vocabulary (models with several axes or anchors) ---------------------------------


@dataclass(frozen=True)
class AxisValue:
    """How one axis of a multi-axis model is set, as asked on the command line (or in the app).

    ``source`` is ``"alpha"`` (a number), ``"level"`` (a real level, turned into ``alpha`` by
    :func:`axis_alpha`), ``"map"`` (a grey image file at ``path``) or ``"unset"`` (alpha 0, the axis's
    first anchor, unless ``--auto`` estimates it). ``words`` says it in one phrase, e.g.
    ``"sigma 12 -> alpha 0.35 (calibrated)"``; ``note`` what was adjusted (a level clamped to the
    calibrated range), or "".
    """

    axis: str
    source: str
    alpha: float | None = None
    level: float | None = None
    path: str | None = None
    words: str = ""
    note: str = ""


def _example(names: Sequence[str]) -> str:
    return ",".join(f"{n}=..." for n in names)


def split_values(text: str, names: Sequence[str], option: str) -> dict[str, str]:
    """Split ``"sigma=12,quality=70"`` (by name) or ``"0.3,0.8"`` (the model's axis order, ``names``)
    into ``{axis: text}``. One unnamed value is accepted for a model with one axis.

    Raises:
        ValueError: (one line) an empty value, an unknown axis, an axis given twice, named and unnamed
            values mixed, or a vector whose length is not the number of axes.
    """
    names = list(names)
    listed = ", ".join(names)
    items = [item.strip() for item in str(text).split(",")]
    if not str(text).strip() or not all(items):
        raise ValueError(f"{option} {text!r} has an empty value; give e.g. {option} {_example(names)}")
    named = ["=" in item for item in items]
    if any(named) and not all(named):
        raise ValueError(f"{option} {text!r} mixes named (axis=value) and unnamed values; name every value or none")
    if all(named):
        out: dict[str, str] = {}
        for item in items:
            key, _, value = (part.strip() for part in item.partition("="))
            if key not in names:
                raise ValueError(f"{option}: this model has no axis {key!r}; its axes are {listed}")
            if key in out:
                raise ValueError(f"{option} gives {key} twice")
            if not value:
                raise ValueError(f"{option} {key}= has no value")
            out[key] = value
        return out
    if len(items) == len(names):
        return dict(zip(names, items, strict=True))
    if len(items) == 1:
        raise ValueError(
            f"this model has {len(names)} axes ({listed}); give {option} {_example(names)} "
            f"or {len(names)} values in that order"
        )
    raise ValueError(f"{option} has {len(items)} values, but this model has {len(names)} axes ({listed}), in that order")


def _finite(text: str, option: str, axis: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{option} {axis}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{option} {axis}={text} must be a finite number")
    return value


def axis_alpha(axis: Axis, level: float | np.ndarray, *, clamp: bool = False) -> tuple[float | np.ndarray, str]:
    """The alpha that serves ``level`` on ``axis``; returns ``(alpha, note)``.

    Through the axis's calibration where it has one (a level outside the calibrated range takes the
    nearest end, and ``note`` says so, as :func:`level_to_alpha` does). Without one, anchor k serves
    alpha k and alpha is piecewise linear between the anchor levels: exact at the anchors, a guess
    between them; a level outside the anchors is refused (nothing there was trained). ``level`` may
    be an array (a per-pixel level map): values outside the range are then clamped to it, and
    ``note`` says how much of the map was. ``clamp=True`` clamps a single level too (an estimate,
    such as a clean photo's noise below the first anchor, rather than a level someone asked for).

    Raises:
        ValueError: a level that is not finite, outside an uncalibrated axis's anchors, or an axis
            with neither anchors nor calibration.
    """
    name = axis.name or "level"
    values = np.asarray(level, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: a level must be a finite number")
    if axis.calibration is not None:
        xs, ys = np.asarray(axis.calibration.levels), np.asarray(axis.calibration.alphas)
    elif axis.anchors is not None:
        order = np.argsort(axis.anchors)
        xs, ys = np.asarray(axis.anchors)[order], np.arange(len(axis.anchors), dtype=np.float64)[order]
    else:
        raise ValueError(f"axis {name} names no anchor levels and has no calibration; give its alpha instead")
    low, high = float(xs[0]), float(xs[-1])
    outside = (values < low) | (values > high)
    note = ""
    if outside.any():
        span = f"{name} {_format_number(low)} ... {name} {_format_number(high)}"
        if values.ndim:
            note = f"{float(outside.mean()):.0%} of the {name} map lies outside {span}; clamped to it"
        elif axis.calibration is None and not clamp:
            first, last = axis.anchors[0], axis.anchors[-1]  # type: ignore[index]
            raise ValueError(
                f"{name} {_format_number(float(values))} is outside the anchors {name} {_format_number(first)} ... "
                f"{name} {_format_number(last)}, and {name} has no calibration to reach beyond them"
            )
        else:
            end = low if float(values) < low else high
            what = "calibrated range" if axis.calibration is not None else "anchors"
            note = (f"{name} {_format_number(float(values))} is outside the {what} {span}; "
                    f"using {name} {_format_number(end)}")
    alphas = np.interp(np.clip(values, low, high), xs, ys)
    return (float(alphas) if values.ndim == 0 else alphas), note


def _level_words(axis: Axis | None, alpha: float) -> str:
    """`` (about sigma 12.5)`` where the axis can tell the level an alpha serves, else ""."""
    if axis is None:
        return ""
    anchor = axis.anchor_at(alpha)
    if anchor is not None:
        return f" ({axis.name} {_format_number(anchor)})"
    level = axis.calibration.level_at(alpha) if axis.calibration is not None else None
    if level is None and axis.anchors is not None and axis.calibration is None:
        level = float(np.interp(alpha, np.arange(len(axis.anchors)), axis.anchors))  # between anchors
    return "" if level is None else f" (about {axis.name} {level:.3g})"


def parse_setting(
    axes: Sequence[tuple[str, int]],
    levels: Levels | None,
    *,
    alpha: str | None = None,
    level: str | None = None,
    alpha_map: str | None = None,
) -> dict[str, AxisValue]:
    """Per axis, what ``--alpha``, ``--level`` and ``--alpha-map`` set (the vocabulary above).

    Args:
        axes: the model's axes in order, as ``(name, K)``: alpha on the axis runs over [0, K].
        levels: the model's :class:`Levels` (anchor levels, calibrations); None when its axes do not
            name their levels (then ``--level`` is refused).
        alpha, level, alpha_map: the options' texts, or None.

    Returns:
        ``{axis: AxisValue}`` for every axis, in the model's order; axes no option sets are ``"unset"``.

    Raises:
        ValueError: (one line) any refusal of :func:`split_values`, an axis set by two options, an
            alpha outside [0, K], a level that cannot be turned into an alpha.
    """
    names = [name for name, _ in axes]
    segments = dict(axes)
    known = {a.name: a for a in levels.axes} if levels is not None else {}
    chosen: dict[str, AxisValue] = {}
    given_by: dict[str, str] = {}
    for option, text in (("--alpha", alpha), ("--level", level), ("--alpha-map", alpha_map)):
        if text is None:
            continue
        for name, value in split_values(text, names, option).items():
            if name in given_by:
                raise ValueError(f"{name} is set by both {given_by[name]} and {option}; set each axis once")
            given_by[name] = option
            axis = known.get(name)
            if option == "--alpha":
                a = _finite(value, option, name)
                if not 0.0 <= a <= segments[name]:
                    span = f"; {axis.describe()}" if axis is not None else ""
                    raise ValueError(f"--alpha {name}={value} is outside {name}'s range [0, {segments[name]}]{span}")
                chosen[name] = AxisValue(name, "alpha", alpha=a, words=f"{name} alpha {a:.4g}{_level_words(axis, a)}")
            elif option == "--level":
                if axis is None:
                    raise ValueError(f"--level {name}=...: this model's axes do not name their anchor levels; give --alpha instead")
                asked = _finite(value, option, name)
                a, note = axis_alpha(axis, asked)
                how = "calibrated" if axis.calibration is not None else "between anchors, uncalibrated"
                chosen[name] = AxisValue(name, "level", alpha=float(a), level=asked, note=note,
                                         words=f"{name} {_format_number(asked)} -> alpha {float(a):.4g} ({how})")
            else:
                chosen[name] = AxisValue(name, "map", path=value, words=f"{name} alpha map {value}")
    out = {}
    for name in names:
        if name not in chosen:
            chosen[name] = AxisValue(name, "unset", alpha=0.0, words=f"{name} alpha 0{_level_words(known.get(name), 0.0)}")
        out[name] = chosen[name]
    return out


# -- values over time (``ftn run`` on a video) ------------------------------------------------------


def parse_keyframes(text: str, option: str = "--alpha") -> tuple[tuple[float, float], ...]:
    """Parse keyframes ``"0s:0.2,4s:0.8"`` (time in seconds, the ``s`` optional) into ``((0.0, 0.2), (4.0, 0.8))``.

    Keys are separated by ``,`` or ``;`` (``;`` inside one axis of ``--alpha sigma=0s:0.5;4s:1.5,quality=0.3``),
    returned in time order. A value is whatever number the option takes (an alpha, a level); the caller
    checks its range. Between keys the value is linear in time, and before the first and after the last
    key it is held (``numpy.interp`` of the returned times and values).

    Raises:
        ValueError: (one line) an empty key, a key without ``TIME:VALUE``, a time that is not a finite
            number >= 0, a value that is not a finite number, or one time given twice.
    """
    items = [item.strip() for item in str(text).replace(";", ",").split(",")]
    if not str(text).strip() or not all(items):
        raise ValueError(f"{option} {text!r} has an empty keyframe; give e.g. {option} 0s:0.2,4s:0.8")
    keys: dict[float, float] = {}
    for item in items:
        when, sep, value = (part.strip() for part in item.partition(":"))
        if not sep or not when or not value:
            raise ValueError(f"{option}: keyframe {item!r} is not TIME:VALUE (e.g. 4s:0.8, the time in seconds)")
        seconds = when[:-1] if when.lower().endswith("s") else when
        try:
            t = float(seconds)
        except ValueError:
            raise ValueError(f"{option}: keyframe time {when!r} is not a number of seconds (e.g. 4s or 2.5s)") from None
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"{option}: keyframe time {when!r} must be a finite number of seconds >= 0")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"{option}: keyframe value {value!r} (at {when}) is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{option}: keyframe value {value!r} (at {when}) must be a finite number")
        if t in keys:
            raise ValueError(f"{option}: two keyframes at {_format_number(t)}s; give each time once")
        keys[t] = v
    return tuple(sorted(keys.items()))
