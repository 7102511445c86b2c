"""ftn.levels: a model's levels and calibration in both metadata forms, as tables of cases."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ftn.io import read_metadata
from ftn.levels import (
    Axis,
    Calibration,
    Levels,
    alpha_to_level,
    axis_alpha,
    calibration_entry,
    describe_levels,
    level_name,
    level_to_alpha,
    parse_setting,
    split_values,
    with_calibration,
)

MODELS = sorted((Path(__file__).resolve().parents[1] / "src" / "ftn" / "models").glob("*.safetensors"))

SIGMA_CAL = {"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.4, 1.0]}
DENOISE = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}], "calibration": SIGMA_CAL}
DEJPEG = {"task": "dejpeg", "levels": [{"quality": 40}, {"quality": 10}],
          "calibration": {"level_name": "quality", "levels": [40, 30, 20, 10], "alphas": [0.0, 0.3, 0.6, 1.0]}}
# The new form: one axis with four anchors (alpha 0 ... 3), and a second axis without calibration.
MULTI_ANCHOR = {"task": "denoise", "axes": [
    {"name": "sigma", "anchors": [5, 15, 30, 50],
     "calibration": {"levels": [5.0, 15.0, 30.0, 50.0], "alphas": [0.0, 1.0, 2.0, 3.0], "source": "test"}},
]}
TWO_AXES = {"task": "restore", "axes": [
    {"name": "sigma", "anchors": [5, 50], "calibration": {"levels": [5.0, 50.0], "alphas": [0.0, 1.0]}},
    {"name": "quality", "anchors": [90, 10]},
]}


# -- reading: old forms, new forms ----------------------------------------------------------------

# (metadata, level_name, describe_levels, anchors of the only axis (None: no axis or unknown))
READ_CASES = {
    "denoise": (DENOISE, "sigma", "sigma 20 ... sigma 80", (20.0, 80.0)),
    "dejpeg, quality falls": (DEJPEG, "quality", "quality 40 ... quality 10", (40.0, 10.0)),
    "no calibration": ({"levels": [{"sigma": 20}, {"sigma": 80}]}, "sigma", "sigma 20 ... sigma 80", (20.0, 80.0)),
    "style": ({"task": "style", "levels": [{"style": 0}, {"style": 1}]}, "style",
                                     "style 0 ... style 1", (0.0, 1.0)),
    "extra keys at the ends": ({"levels": [{"sigma": 20, "clip": True}, {"sigma": 80, "clip": True}]}, "sigma",
                               "sigma 20, clip True ... sigma 80, clip True", (20.0, 80.0)),
    "two numbers differ: unnamed": ({"levels": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}, None, "a 1, b 2 ... a 3, b 4", None),
    "stage-1 base, one level": ({"levels": [{"sigma": 20}]}, None, "level 1 (alpha 0) ... level 2 (alpha 1)", None),
    "empty": ({}, None, "level 1 (alpha 0) ... level 2 (alpha 1)", None),
    "none": (None, None, "level 1 (alpha 0) ... level 2 (alpha 1)", None),
    "levels not a list": ({"levels": "sigma 20 to 80"}, None, "level 1 (alpha 0) ... level 2 (alpha 1)", None),
    "calibration names it": ({"levels": [{"s": 20}, {"s": 80}], "calibration": SIGMA_CAL}, "sigma", "s 20 ... s 80", None),
    "axes, four anchors": (MULTI_ANCHOR, "sigma", "sigma 5 ... sigma 50", (5.0, 15.0, 30.0, 50.0)),
    "axes, two anchors": ({"axes": [{"name": "sigma", "anchors": [20, 80]}]}, "sigma", "sigma 20 ... sigma 80", (20.0, 80.0)),
    "two axes": (TWO_AXES, None, "sigma 5 ... sigma 50; quality 90 ... quality 10", None),
}


@pytest.mark.parametrize(("meta", "name", "words", "anchors"), READ_CASES.values(), ids=READ_CASES.keys())
def test_reading_both_forms(meta, name, words, anchors) -> None:
    assert level_name(meta) == name
    assert describe_levels(meta) == words
    levels = Levels.from_metadata(meta)
    got = levels.axes[0].anchors if len(levels.axes) == 1 else None
    assert got == anchors


def test_two_axes_are_read_one_at_a_time() -> None:
    levels = Levels.from_metadata(TWO_AXES)
    assert [a.name for a in levels.axes] == ["sigma", "quality"] and levels.task == "restore"
    assert level_name(TWO_AXES, "quality") == "quality"
    assert describe_levels(TWO_AXES, "quality") == "quality 90 ... quality 10"
    assert level_to_alpha(TWO_AXES, 27.5, "sigma") == (pytest.approx(0.5), "")
    assert alpha_to_level(TWO_AXES, 1, "quality") == 10 and alpha_to_level(TWO_AXES, 0.5, "quality") is None
    assert alpha_to_level(TWO_AXES, 0.5) is None  # which axis? labels say nothing rather than guess
    with pytest.raises(ValueError, match=r"has 2 axes \(sigma, quality\); say which one"):
        level_to_alpha(TWO_AXES, 20)
    with pytest.raises(ValueError, match=r"no level calibration for quality.*\(0 = quality 90, 1 = quality 10\)"):
        level_to_alpha(TWO_AXES, 50, "quality")
    with pytest.raises(ValueError, match=r"no axis 'noise'; its axes are sigma, quality"):
        level_name(TWO_AXES, "noise")


def test_multi_anchor_axis_runs_alpha_over_zero_to_k() -> None:
    axis = Levels.from_metadata(MULTI_ANCHOR).axis()
    assert axis.segments == 3 and axis.calibration.source == "test"
    assert level_to_alpha(MULTI_ANCHOR, 22.5) == (pytest.approx(1.5), "")
    assert alpha_to_level(MULTI_ANCHOR, 2.0) == 30.0
    uncalibrated = {"axes": [{"name": "sigma", "anchors": [5, 15, 30, 50]}]}
    assert [alpha_to_level(uncalibrated, a) for a in (0, 1, 2, 3, 1.5, 4)] == [5, 15, 30, 50, None, None]
    with pytest.raises(ValueError, match=r"--alpha \(0 = sigma 5, 1 = sigma 15, 2 = sigma 30, 3 = sigma 50\)$"):
        level_to_alpha(uncalibrated, 20)


# -- level -> alpha, alpha -> level -----------------------------------------------------------------

# (metadata, level, alpha, words in the note ("" = no note))
LEVEL_TO_ALPHA = {
    "inside": (DENOISE, 35, 0.2, ""),
    "at a point": (DENOISE, 50, 0.4, ""),
    "above: clamped": (DENOISE, 100, 1.0, "sigma 100 is outside the calibrated range sigma 20 ... sigma 80; using sigma 80"),
    "below: clamped": (DENOISE, 5, 0.0, "sigma 5 is outside the calibrated range sigma 20 ... sigma 80; using sigma 20"),
    "quality falls": (DEJPEG, 25, 0.45, ""),
    "unnamed calibration": ({"calibration": {"levels": [1, 2], "alphas": [0, 1]}}, 3, 1.0,
                            "level 3 is outside the calibrated range level 1 ... level 2; using level 2"),
}


@pytest.mark.parametrize(("meta", "level", "alpha", "note"), LEVEL_TO_ALPHA.values(), ids=LEVEL_TO_ALPHA.keys())
def test_level_to_alpha(meta, level, alpha, note) -> None:
    assert level_to_alpha(meta, level) == (pytest.approx(alpha), note)


# (metadata, alpha, level): through the calibration where it covers alpha, else exact at the anchors
ALPHA_TO_LEVEL = {
    "calibrated": (DENOISE, 0.7, 65.0),
    "calibrated, falling": (DEJPEG, 0.45, 25.0),
    "end without calibration": ({"levels": [{"sigma": 20}, {"sigma": 80}]}, 1.0, 80.0),
    "start without calibration": ({"levels": [{"sigma": 20}, {"sigma": 80}]}, 0.0, 20.0),
    "between without calibration": ({"levels": [{"sigma": 20}, {"sigma": 80}]}, 0.5, None),
    "one end not a number": ({"levels": [{"sigma": 20}, {"sigma": "high"}]}, 0.0, 20.0),
    "the other end": ({"levels": [{"sigma": 20}, {"sigma": "high"}]}, 1.0, None),
    "past the calibration's top: the anchor": (
        {"levels": [{"quality": 40}, {"quality": 10}],
         "calibration": {"level_name": "quality", "levels": [10, 40], "alphas": [0.9, 0.0]}}, 1.0, 10.0),
    "nan": (DENOISE, math.nan, None),
    "nothing known": ({}, 0.0, None),
}


@pytest.mark.parametrize(("meta", "alpha", "level"), ALPHA_TO_LEVEL.values(), ids=ALPHA_TO_LEVEL.keys())
def test_alpha_to_level(meta, alpha, level) -> None:
    got = alpha_to_level(meta, alpha)
    assert got == (None if level is None else pytest.approx(level))


# -- refusals -----------------------------------------------------------------------------------------

# (calibration entry, message): the old form refuses at level_to_alpha, the axes form at reading
BAD_CALIBRATIONS = {
    "no alphas": ({"levels": [20, 80]}, r"calibration is malformed \(KeyError: 'alphas'\); it needs 'levels' and 'alphas' lists"),
    "not an object": ([20, 80], r"calibration is malformed \(TypeError"),
    "words": ({"levels": ["low", "high"], "alphas": [0, 1]}, r"calibration is malformed \(ValueError"),
    "one point": ({"levels": [20], "alphas": [0]}, r"equally long 'levels' and 'alphas' lists of at least two numbers"),
    "lengths differ": ({"levels": [20, 50, 80], "alphas": [0, 1]}, r"equally long"),
    "nested": ({"levels": [[20, 80]], "alphas": [[0, 1]]}, r"equally long"),
    "NaN": ({"levels": [20, math.nan], "alphas": [0, 1]}, r"holds NaN or infinite numbers"),
    "infinity": ({"levels": [20, 80], "alphas": [0, math.inf]}, r"holds NaN or infinite numbers"),
    "a level twice": ({"levels": [20, 20, 80], "alphas": [0, 0.5, 1]}, r"lists a level twice"),
    "not monotone": ({"levels": [20, 50, 80], "alphas": [0.0, 0.7, 0.5]}, r"not monotone \(alpha must move one way"),
}


@pytest.mark.parametrize(("cal", "message"), BAD_CALIBRATIONS.values(), ids=BAD_CALIBRATIONS.keys())
def test_bad_calibrations_are_refused_in_one_line(cal, message) -> None:
    old = {"levels": [{"sigma": 20}, {"sigma": 80}], "calibration": cal}
    with pytest.raises(ValueError, match=message) as err:
        level_to_alpha(old, 50)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=message):
        Levels.from_metadata(old)
    # Labels still read an old file whose calibration is broken, as they always did.
    assert describe_levels(old) == "sigma 20 ... sigma 80" and alpha_to_level(old, 1.0) == 80.0
    new = {"axes": [{"name": "sigma", "anchors": [20, 80], "calibration": cal}]}
    with pytest.raises(ValueError, match="axis 'sigma': .*" + message):
        Levels.from_metadata(new)


def test_a_missing_calibration_says_to_use_alpha() -> None:
    with pytest.raises(ValueError, match=r"^this model has no level calibration.*--alpha \(0 = sigma 20, 1 = sigma 80\)$"):
        level_to_alpha({"levels": [{"sigma": 20}, {"sigma": 80}]}, 50)
    with pytest.raises(ValueError, match="level must be a finite number"):
        level_to_alpha(DENOISE, math.nan)


BAD_AXES = {
    "not a list": ({"axes": {"name": "sigma"}}, r"'axes' must be a list of one or more objects"),
    "empty": ({"axes": []}, r"'axes' must be a list of one or more objects"),
    "no name": ({"axes": [{"anchors": [5, 50]}]}, r"every axis needs a name"),
    "name twice": ({"axes": [{"name": "s", "anchors": [5, 50]}, {"name": "s", "anchors": [1, 2]}]}, r"names axis 's' twice"),
    "one anchor": ({"axes": [{"name": "s", "anchors": [5]}]}, r"axis 's': anchors must be a list of two or more finite"),
    "no anchors": ({"axes": [{"name": "s"}]}, r"axis 's': anchors must be a list"),
    "anchor not a number": ({"axes": [{"name": "s", "anchors": [5, "50"]}]}, r"axis 's': anchors must be a list of two"),
    "anchor a bool": ({"axes": [{"name": "s", "anchors": [False, True]}]}, r"axis 's': anchors must be a list of two"),
    "anchor NaN": ({"axes": [{"name": "s", "anchors": [5, math.nan]}]}, r"finite numbers"),
    "anchors turn back": ({"axes": [{"name": "s", "anchors": [5, 30, 15]}]}, r"strictly increasing or decreasing"),
    "anchor twice": ({"axes": [{"name": "s", "anchors": [5, 5, 15]}]}, r"strictly increasing or decreasing"),
    "unknown entry": ({"axes": [{"name": "s", "anchors": [5, 50], "scale": 2}]}, r"unknown entries \['scale'\]"),
    "calibration of another axis": (
        {"axes": [{"name": "s", "anchors": [5, 50], "calibration": {"level_name": "q", "levels": [5, 50], "alphas": [0, 1]}}]},
        r"axis 's': its calibration is in q"),
    "both forms": ({"axes": [{"name": "s", "anchors": [5, 50]}], "levels": [{"s": 5}, {"s": 50}]},
                   r"both 'axes' and 'levels'; a file holds one form"),
}


@pytest.mark.parametrize(("meta", "message"), BAD_AXES.values(), ids=BAD_AXES.keys())
def test_bad_axes_are_refused_in_one_line(meta, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        Levels.from_metadata(meta)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=message):
        describe_levels(meta)  # a malformed new-form file is loud everywhere


# -- writing ----------------------------------------------------------------------------------------

ROUND_TRIPS = {
    "old form": DENOISE,
    "old form, no calibration": {"task": "sr", "levels": [{"perception": 0}, {"perception": 1}]},
    "old form, extra keys": {"levels": [{"sigma": 20, "clip": True}, {"sigma": 80, "clip": True}]},
    "stage-1 base": {"task": "denoise", "levels": [{"sigma": 20}]},
    "four anchors": MULTI_ANCHOR,
    "two axes": TWO_AXES,
}


@pytest.mark.parametrize("meta", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trip(meta) -> None:
    levels = Levels.from_metadata(meta)
    written = json.loads(json.dumps(levels.to_metadata()))  # as a file holds it
    assert Levels.from_metadata(written) == levels
    expected = {k: v for k, v in meta.items() if k in ("task", "levels", "calibration", "axes")}
    assert written == json.loads(json.dumps(expected))


def test_objects_built_in_code_write_the_form_older_readers_know() -> None:
    one = Levels("denoise", (Axis("sigma", (20, 80), Calibration([80, 20, 50], [1.0, 0.0, 0.4])),))
    assert one.to_metadata() == {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}],
                                 "calibration": {"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.4, 1.0]}}
    assert Levels.from_metadata(one.to_metadata()) == one
    # The same model written in the axes form reads as the same levels.
    assert Levels.from_metadata({"task": "denoise", "axes": [one.axes[0].to_metadata()]}) == one
    many = Levels("denoise", (Axis("sigma", (5, 15, 50)),))
    assert many.to_metadata() == {"task": "denoise", "axes": [{"name": "sigma", "anchors": [5, 15, 50]}]}


def test_with_calibration_writes_through_levels() -> None:
    entry = calibration_entry("sigma", [20.0, 50.0, 80.0], [0.0, 0.5, 1.0], "a sweep")
    base = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}], "recipe": {"kept": True},
            "calibration": {"level_name": "sigma", "levels": [20], "alphas": [0]}}  # broken: replaced, not refused
    written = with_calibration(base, entry)
    assert written["calibration"] == entry and written["recipe"] == {"kept": True}
    assert written["levels"] == base["levels"] and level_to_alpha(written, 35) == (pytest.approx(0.25), "")
    with pytest.raises(ValueError, match="at least two numbers"):  # a one-level sweep is not stored
        with_calibration(base, calibration_entry("sigma", [40.0], [0.5]))
    with pytest.raises(ValueError, match="the calibration is in quality, but the model's levels are in sigma"):
        with_calibration(base, calibration_entry("quality", [10.0, 40.0], [1.0, 0.0]))
    # The axes form keeps its form; the calibration goes to the axis it names.
    axes = with_calibration(TWO_AXES, calibration_entry("quality", [10.0, 90.0], [1.0, 0.0]))
    assert set(axes) == {"task", "axes"} and axes["axes"][1]["calibration"]["alphas"] == [1.0, 0.0]
    assert level_to_alpha(axes, 50, "quality") == (pytest.approx(0.5), "")
    with pytest.raises(ValueError, match="say which one"):
        with_calibration(TWO_AXES, Calibration([10, 90], [1, 0]))


# -- the per-axis vocabulary (several axes or anchors) ------------------------------------------

# (text, axis names, {axis: text} or the words of the one-line refusal)
SPLIT_CASES = {
    "by name": ("sigma=12,quality=70", ["sigma", "quality"], {"sigma": "12", "quality": "70"}),
    "by name, one of two": ("quality=70", ["sigma", "quality"], {"quality": "70"}),
    "by name, spaces": (" sigma = 12 , quality=70 ", ["sigma", "quality"], {"sigma": "12", "quality": "70"}),
    "in axis order": ("0.3,0.8", ["sigma", "quality"], {"sigma": "0.3", "quality": "0.8"}),
    "one unnamed value, one axis": ("12", ["sigma"], {"sigma": "12"}),
    "a path as the value": ("sigma=maps/a.png", ["sigma", "quality"], {"sigma": "maps/a.png"}),
    "one value, two axes": ("0.3", ["sigma", "quality"],
                            "this model has 2 axes (sigma, quality); give --alpha sigma=...,quality=... or 2 values in that order"),
    "too many values": ("1,2,3", ["sigma", "quality"], "--alpha has 3 values, but this model has 2 axes (sigma, quality), in that order"),
    "unknown axis": ("noise=3", ["sigma", "quality"], "--alpha: this model has no axis 'noise'; its axes are sigma, quality"),
    "an axis twice": ("sigma=1,sigma=2", ["sigma", "quality"], "--alpha gives sigma twice"),
    "mixed": ("1,quality=2", ["sigma", "quality"], "mixes named (axis=value) and unnamed values"),
    "empty item": ("1,,2", ["sigma", "quality"], "has an empty value"),
    "empty": ("", ["sigma"], "has an empty value"),
    "no value": ("sigma=", ["sigma"], "--alpha sigma= has no value"),
}


@pytest.mark.parametrize(("text", "names", "want"), SPLIT_CASES.values(), ids=SPLIT_CASES.keys())
def test_split_values(text, names, want) -> None:
    if isinstance(want, dict):
        assert split_values(text, names, "--alpha") == want
    else:
        with pytest.raises(ValueError) as err:
            split_values(text, names, "--alpha")
        assert want in str(err.value) and "\n" not in str(err.value)


RESTORE = Levels.from_metadata({"axes": [
    {"name": "sigma", "anchors": [5, 25, 50], "calibration": {"levels": [5, 10, 25, 50], "alphas": [0, 0.4, 1, 2]}},
    {"name": "quality", "anchors": [90, 10]},
]})
RESTORE_AXES = [("sigma", 2), ("quality", 1)]

# (axis, level, alpha, note): calibrated (clamped with a note), or linear between anchors without one
AXIS_ALPHA = {
    "calibrated": ("sigma", 12, 0.48, ""),
    "calibrated, above": ("sigma", 60, 2.0, "sigma 60 is outside the calibrated range sigma 5 ... sigma 50; using sigma 50"),
    "anchors, falling": ("quality", 70, 0.25, ""),
    "at an anchor": ("quality", 10, 1.0, ""),
}


@pytest.mark.parametrize(("axis", "level", "alpha", "note"), AXIS_ALPHA.values(), ids=AXIS_ALPHA.keys())
def test_axis_alpha(axis, level, alpha, note) -> None:
    assert axis_alpha(RESTORE.axis(axis), level) == (pytest.approx(alpha), note)


def test_axis_alpha_between_several_anchors_maps_and_refusals() -> None:
    uncalibrated = Axis("sigma", (5, 15, 30, 50))
    assert [axis_alpha(uncalibrated, v)[0] for v in (5, 10, 15, 22.5, 50)] == pytest.approx([0, 0.5, 1, 1.5, 3])
    alphas, note = axis_alpha(uncalibrated, np.array([[1.0, 10.0], [40.0, 80.0]]))  # a per-pixel level map
    assert alphas.ravel().tolist() == pytest.approx([0.0, 0.5, 2.5, 3.0]) and note.startswith("50% of the sigma map")
    with pytest.raises(ValueError, match=r"^sigma 60 is outside the anchors sigma 5 ... sigma 50, and sigma has no calibration"):
        axis_alpha(uncalibrated, 60)
    assert axis_alpha(uncalibrated, 60, clamp=True) == (3.0, "sigma 60 is outside the anchors sigma 5 ... sigma 50; using sigma 50")
    with pytest.raises(ValueError, match="finite"):
        axis_alpha(uncalibrated, math.nan)
    with pytest.raises(ValueError, match="no anchor levels and has no calibration"):
        axis_alpha(Axis("sigma", None), 20)


# (options, {axis: (source, alpha)} or the words of the refusal)
SETTING_CASES = {
    "levels": ({"level": "sigma=12,quality=70"}, {"sigma": ("level", 0.48), "quality": ("level", 0.25)}),
    "alphas in order": ({"alpha": "1.5,0.5"}, {"sigma": ("alpha", 1.5), "quality": ("alpha", 0.5)}),
    "one axis, the other unset": ({"alpha": "quality=1"}, {"sigma": ("unset", 0.0), "quality": ("alpha", 1.0)}),
    "map and level": ({"alpha_map": "sigma=m.png", "level": "quality=50"},
                      {"sigma": ("map", None), "quality": ("level", 0.5)}),
    "an axis by two options": ({"alpha": "sigma=1", "level": "sigma=12"}, "sigma is set by both --alpha and --level"),
    "alpha past the last anchor": ({"alpha": "sigma=2.5"}, "--alpha sigma=2.5 is outside sigma's range [0, 2]"),
    "negative alpha": ({"alpha": "0,-0.1"}, "--alpha quality=-0.1 is outside quality's range [0, 1]"),
    "alpha not a number": ({"alpha": "sigma=x"}, "--alpha sigma='x' is not a number"),
    "level outside uncalibrated anchors": ({"level": "quality=95"}, "quality 95 is outside the anchors"),
}


@pytest.mark.parametrize(("options", "want"), SETTING_CASES.values(), ids=SETTING_CASES.keys())
def test_parse_setting(options, want) -> None:
    if isinstance(want, str):
        with pytest.raises(ValueError) as err:
            parse_setting(RESTORE_AXES, RESTORE, **options)
        assert want in str(err.value) and "\n" not in str(err.value)
        return
    got = parse_setting(RESTORE_AXES, RESTORE, **options)
    assert list(got) == ["sigma", "quality"]
    assert {k: (v.source, v.alpha) for k, v in got.items()} == {k: (s, pytest.approx(a) if a is not None else None)
                                                                for k, (s, a) in want.items()}


def test_parse_setting_words_and_a_model_without_levels() -> None:
    got = parse_setting(RESTORE_AXES, RESTORE, level="sigma=12", alpha="quality=0.5", alpha_map=None)
    assert got["sigma"].words == "sigma 12 -> alpha 0.48 (calibrated)"
    assert got["quality"].words == "quality alpha 0.5 (about quality 50)"
    assert parse_setting(RESTORE_AXES, RESTORE)["quality"].words == "quality alpha 0 (quality 90)"
    assert parse_setting(RESTORE_AXES, None, alpha="1,1")["sigma"].words == "sigma alpha 1"
    with pytest.raises(ValueError, match="do not name their anchor levels; give --alpha"):
        parse_setting(RESTORE_AXES, None, level="sigma=12")


# -- the shipped models ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_shipped_models_parse_and_write_back_unchanged(path: Path) -> None:
    meta = read_metadata(path)
    levels = Levels.from_metadata(meta)
    assert levels.to_metadata() == {k: meta[k] for k in ("task", "levels", "calibration", "axes") if k in meta}
    # one axis, two anchors (old form) or more (the three-anchor denoise); or several axes (restore)
    names = [None] if len(levels.axes) == 1 else [a.name for a in levels.axes]
    for name in names:
        axis = levels.axis(name)
        assert axis.name and axis.segments >= 1 and describe_levels(meta, name) == axis.describe()
        for k in range(axis.segments + 1):  # through the calibration where it covers alpha k, else the anchor
            through = axis.calibration.level_at(float(k)) if axis.calibration is not None else None
            assert alpha_to_level(meta, float(k), name) == (axis.anchors[k] if through is None else through)
        if axis.calibration is not None:  # the calibration's own ends map back to themselves
            for level in (axis.calibration.levels[0], axis.calibration.levels[-1]):
                assert level_to_alpha(meta, level, name)[1] == ""


# -- the layers -------------------------------------------------------------------------------------


def test_export_and_app_controls_do_not_load_infer() -> None:
    """The level vocabulary is ftn.levels: export and the app's slider rules load without ftn.infer (and
    without Gradio). Only the app's engine, which runs models, sits above infer, as ``ftn run`` does."""
    code = (
        "import sys, ftn.export, ftn.app.controls; "
        "print('ftn.infer' in sys.modules, 'gradio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
