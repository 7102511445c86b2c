"""Model cards: a model file's own metadata as a JSON record and a Markdown card (``ftn info --card``).

Pure functions, in two steps: :func:`card_record` turns the file's ``ftn`` metadata (and the facts of
the file itself: name, size, sha256, tensor shapes) into a JSON-ready dict; :func:`card_markdown`
renders that dict. Nothing is invented: a field the file does not carry reads ``"not recorded"``.

The record's top-level keys are the model fields of OpenModelDB (``name``, ``author``, ``license``,
``tags``, ``description``, ``date``, ``architecture``, ``size``, ``scale``, ``inputChannels``,
``outputChannels``, ``resources``, ``trainingIterations``, ``trainingBatchSize``, ``trainingHRSize``,
``dataset``, ``pretrainedModelG``), so a zoo can take them as they are; what those fields have no
place for (the task, the method, the axes with their anchor levels and calibration, the training
budget, the measured quality with the setting it was measured in) is under ``ftn``.

Where the values come from, first match wins:

* ``license``, ``author``, ``description``, ``date``, ``training_data``, ``budget``, ``quality``: keys
  of those names (written by ``scripts/ship_models.py`` since the cards exist);
* otherwise the training records every ftn-trained file carries: ``recipe`` (data, batch, patch),
  ``training`` (iterations, wall time, machine, legs, validation PSNR) and ``base_model`` (stage 1);
  ``date`` from the last training leg.

Metadata comes from files, which may be hostile: every string is cut to :data:`MAX_STRING` characters
and every list to :data:`MAX_ITEMS` entries, Markdown is escaped, and a field of the wrong type is a
one-line :class:`CardError` naming the key.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

__all__ = ["CARD_FORMAT", "NOT_RECORDED", "CardError", "card_markdown", "card_record", "parameter_count"]

#: What a field the file does not carry says.
NOT_RECORDED = "not recorded"
#: The record's own format name (``record["cardFormat"]``).
CARD_FORMAT = "ftn-card/1"
#: Strings from the file are cut to this many characters, lists to this many entries.
MAX_STRING = 300
MAX_ITEMS = 50

# Tasks whose output has the input's size: their scale is 1 by what the task is.
_SAME_SIZE_TASKS = ("denoise", "dejpeg", "restore", "style")


class CardError(ValueError):
    """The metadata cannot make a card (a field of the wrong type); the message is one line."""


# -- bounded reading of untrusted values -----------------------------------------------------------


def _cut(text: str) -> str:
    text = " ".join(str(text).split())  # one line: no newline from a file reaches a table cell
    return text if len(text) <= MAX_STRING else text[:MAX_STRING] + f"... ({len(text)} characters)"


def _bounded(value: Any, depth: int = 0) -> Any:
    """A JSON value from the file, cut in every direction (strings, lists, objects, depth)."""
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN
    if isinstance(value, (dict, list)) and depth >= 4:
        return f"({type(value).__name__} nested too deeply to show)"
    if isinstance(value, dict):
        items = list(value.items())
        out = {_cut(k): _bounded(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["..."] = f"{len(items) - MAX_ITEMS} more entries"
        return out
    if isinstance(value, list):
        out_list = [_bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
        return out_list + [f"... {len(value) - MAX_ITEMS} more items"] if len(value) > MAX_ITEMS else out_list
    return value


def _get(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``meta[key]`` if present and of ``kind``; None if absent or null; CardError if of another type."""
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise CardError(f"metadata {key!r} must be {what}, got a bool")
    if not isinstance(value, kind):
        raise CardError(f"metadata {key!r} must be {what}, got {type(value).__name__}")
    return value


def _dict(meta: Mapping[str, Any], key: str) -> dict[str, Any]:
    return _get(meta, key, dict, "an object") or {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _or_not(value: Any) -> Any:
    return NOT_RECORDED if value is None or value == "" or value == [] else value


def _name_of(path: Any) -> str | None:
    """A data folder's name (``../shared/data/train/BSD432`` -> ``BSD432``)."""
    if not isinstance(path, str) or not path.strip():
        return None
    return _cut(PurePath(path.replace("\\", "/")).name or path)


# -- the record ------------------------------------------------------------------------------------


def parameter_count(shapes: Mapping[str, Sequence[int]]) -> int:
    """How many numbers the file's tensors hold (base network and tuners), from their shapes."""
    return sum(math.prod(int(d) for d in shape) for shape in shapes.values())


def card_record(
    meta: Mapping[str, Any],
    *,
    name: str,
    file_name: str,
    size_bytes: int,
    sha256: str,
    parameters: int | None = None,
    dtypes: Sequence[str] = (),
    version: str | None = None,
) -> dict[str, Any]:
    """The card of a model file as a JSON-ready dict (see the module docstring for the fields).

    Args:
        meta: the file's ``ftn`` metadata (:func:`ftn.io.read_metadata`).
        name: what ``ftn run --model`` calls it (a shipped name or the file's stem).
        file_name, size_bytes, sha256: the file itself.
        parameters: numbers in the file's tensors (:func:`parameter_count`); None: not counted.
        dtypes: the tensors' storage types (``"F32"``).
        version: the ftn version writing the card.

    Raises:
        CardError: a field of the wrong type, or levels / calibration that do not validate (one line).
    """
    from .levels import Levels

    if not isinstance(meta, Mapping):
        raise CardError(f"the metadata must be a JSON object, got {type(meta).__name__}")
    try:
        levels = Levels.from_metadata(meta)
    except (ValueError, TypeError) as err:
        raise CardError(f"levels: {_cut(str(err))}") from None
    recipe = _dict(meta, "recipe")
    training = _dict(meta, "training")
    base_model = _dict(meta, "base_model")
    arch_options = _dict(meta, "arch_options")
    task_options = _dict(meta, "task_options")
    task = _get(meta, "task", str, "a string")
    method = _get(meta, "method", str, "a string")
    tuned_base = _dict(meta, "tuned").get("base")
    arch = _get(meta, "arch", str, "a string") or (_get(tuned_base, "id", str, "a string") if isinstance(tuned_base, dict) else None)
    budget = _budget(meta, recipe, training, base_model)
    axes = _axes(levels)
    summary = _summary(meta, task, method, arch, arch_options, levels)

    record: dict[str, Any] = {
        "cardFormat": CARD_FORMAT,
        "name": _cut(name),
        "author": _or_not(_cut(_get(meta, "author", str, "a string") or "")),
        "license": _or_not(_cut(_get(meta, "license", str, "a string") or "")),
        "tags": [_cut(t) for t in (task, method, arch) if t] + ["continuous-level"],
        "description": _cut(_get(meta, "description", str, "a string") or summary),
        "date": _or_not(_date(meta, training)),
        "architecture": _or_not(_cut(arch or "")),
        "size": _or_not([_cut(f"{k} {v}") for k, v in arch_options.items()
                         if k not in ("in_channels", "out_channels", "scale")][:MAX_ITEMS]),
        "scale": _or_not(_scale(task, arch_options, task_options)),
        "inputChannels": _or_not(_number(arch_options.get("in_channels"))),
        "outputChannels": _or_not(_number(arch_options.get("out_channels"))),
        "resources": [{"platform": "pytorch", "type": "safetensors", "name": _cut(file_name), "size": int(size_bytes),
                       "sha256": _cut(sha256), "urls": []}],
        "trainingIterations": _or_not(budget["total_steps"]),
        "trainingBatchSize": _or_not(_number(recipe.get("batch_size"))),
        "trainingHRSize": _or_not(_number(recipe.get("patch_size"))),
        "dataset": _or_not(_datasets(meta, recipe, base_model)),
        "pretrainedModelG": _or_not(_pretrained(meta, recipe, base_model)),
        "ftn": {
            "summary": summary,
            "task": _or_not(_cut(task or "")),
            "taskOptions": _bounded(task_options),
            "method": _or_not(_cut(method or "")),
            "methodOptions": _bounded(_dict(meta, "method_options")),
            "architectureOptions": _bounded(arch_options),
            "levels": levels.describe(),
            "axes": axes,
            "multiAxis": "multi_axis" in meta,
            "budget": budget["record"],
            "quality": _or_not(_quality(meta, training, base_model)),
            "parameters": _or_not(parameters),
            "dtypes": _or_not(sorted({_cut(d) for d in dtypes})[:MAX_ITEMS]),
            "metadataFormat": _or_not(_cut(_get(meta, "format", str, "a string") or "")),
            "cardWrittenBy": f"ftn {version}" if version else NOT_RECORDED,
        },
    }
    return record


def _summary(meta: Mapping[str, Any], task: str | None, method: str | None, arch: str | None,
             arch_options: Mapping[str, Any], levels: Any) -> str:
    """One sentence made of the file's own facts: method (options) on architecture (size): task, ends."""
    options = ", ".join(f"{k} {v}" for k, v in list(_dict(meta, "method_options").items())[:8])
    size = arch_options.get("size")
    on = f"{arch} ({size})" if arch and isinstance(size, str) else (arch or "an unrecorded architecture")
    what = f"{method} ({options})" if method and options else (method or "a tunable model")
    return _cut(f"{what} on {on} for {task or 'an unrecorded task'}: alpha moves {levels.describe()}")


def _scale(task: str | None, arch_options: Mapping[str, Any], task_options: Mapping[str, Any]) -> float | None:
    for options in (arch_options, task_options):
        value = _number(options.get("scale"))
        if value is not None:
            return value
    return 1 if task in _SAME_SIZE_TASKS else None


def _date(meta: Mapping[str, Any], training: Mapping[str, Any]) -> str | None:
    date = _get(meta, "date", str, "a string (yyyy-mm-dd)")
    if date:
        return _cut(date)
    legs = training.get("legs")
    if isinstance(legs, list) and legs and isinstance(legs[-1], dict) and isinstance(legs[-1].get("date"), str):
        return _cut(legs[-1]["date"])
    return None


def _datasets(meta: Mapping[str, Any], recipe: Mapping[str, Any], base_model: Mapping[str, Any]) -> list[str]:
    given = _get(meta, "training_data", (list, str), "a list of data set names")
    if given is not None:
        names = [given] if isinstance(given, str) else given
        return [_cut(str(n)) for n in names[:MAX_ITEMS]]
    found = []
    base_recipe = base_model.get("recipe") if isinstance(base_model.get("recipe"), dict) else {}
    for path in (base_recipe.get("train_data"), recipe.get("train_data")):
        name = _name_of(path)
        if name and name not in found:
            found.append(name)
    tuned = meta.get("tuned")
    if isinstance(tuned, dict):
        name = _name_of(tuned.get("data"))
        if name and name not in found:
            found.append(name)
    return found


def _pretrained(meta: Mapping[str, Any], recipe: Mapping[str, Any], base_model: Mapping[str, Any]) -> str | None:
    """The stage-1 base the tuners were trained on, as the file names it."""
    for value in (base_model.get("path"), recipe.get("base")):
        if isinstance(value, str) and value:
            return _cut(value)
    tuned = meta.get("tuned")
    base = tuned.get("base") if isinstance(tuned, dict) else None
    if isinstance(base, dict) and base:
        return _cut(", ".join(f"{k} {v}" for k, v in list(base.items())[:6] if isinstance(v, (str, int, float))))
    return None


def _axes(levels: Any) -> list[dict[str, Any]] | str:
    out = []
    for axis in levels.axes[:MAX_ITEMS]:
        entry: dict[str, Any] = {"name": _or_not(_cut(axis.name or "")), "ends": _cut(axis.describe())}
        if axis.anchors is not None:
            entry["alphaRange"] = [0, len(axis.anchors) - 1]
            entry["anchors"] = [{"alpha": k, "level": v} for k, v in enumerate(axis.anchors[:MAX_ITEMS])]
        else:
            entry["anchors"] = NOT_RECORDED
        cal = axis.calibration
        entry["calibration"] = NOT_RECORDED if cal is None else {
            "levels": list(cal.levels[:MAX_ITEMS]), "alphas": list(cal.alphas[:MAX_ITEMS]),
            "source": _or_not(_cut(cal.source or "")),
        }
        out.append(entry)
    return out or NOT_RECORDED


def _minutes(seconds: Any) -> float | None:
    value = _number(seconds)
    return None if value is None else round(value / 60, 1)


def _budget(meta: Mapping[str, Any], recipe: Mapping[str, Any], training: Mapping[str, Any],
            base_model: Mapping[str, Any]) -> dict[str, Any]:
    """Steps per stage, CPU and GPU minutes, devices: the shipped ``budget`` key, else the training records."""
    given = _get(meta, "budget", dict, "an object")
    stage1 = training.get("stage1") if isinstance(training.get("stage1"), dict) else None
    if stage1 is None and isinstance(base_model.get("training"), dict):
        stage1 = base_model["training"]
    stage2_steps = _number(training.get("iterations"))
    stage1_steps = _number(stage1.get("iterations")) if stage1 else None
    if given is not None:
        record = _bounded(given)
        steps = given.get("steps") if isinstance(given.get("steps"), dict) else {}
        total = sum(v for v in (_number(s) for s in steps.values()) if v is not None) or None
        return {"record": record, "total_steps": total}
    if not training:
        return {"record": NOT_RECORDED, "total_steps": None}
    cpu = gpu = 0.0
    devices: list[str] = []
    known_time = False
    for stage in (stage1 or {}, training):
        legs = stage.get("legs")
        if isinstance(legs, list) and legs:  # per leg and device (long runs in legs)
            for leg in legs[:1000]:
                if isinstance(leg, dict) and _number(leg.get("seconds")) is not None and isinstance(leg.get("device"), str):
                    known_time = True
                    is_cpu = leg["device"].startswith("CPU")
                    cpu, gpu = (cpu + leg["seconds"] / 60, gpu) if is_cpu else (cpu, gpu + leg["seconds"] / 60)
                    if _cut(leg["device"]) not in devices:
                        devices.append(_cut(leg["device"]))
            continue
        machine = stage.get("machine") if isinstance(stage.get("machine"), dict) else {}
        minutes = _minutes(stage.get("wall_time_s"))
        device = machine.get("device")
        if minutes is not None and isinstance(device, str):
            known_time = True
            gpu_name = machine.get("gpu") if isinstance(machine.get("gpu"), str) else device
            label = _cut(gpu_name if device != "cpu" else f"CPU {machine.get('cpu', '?')} ({machine.get('threads', '?')} threads)")
            cpu, gpu = (cpu + minutes, gpu) if device == "cpu" else (cpu, gpu + minutes)
            if label not in devices:
                devices.append(label)
    steps: dict[str, Any] = {}
    if stage1_steps is not None:
        steps["stage 1 (base)"] = stage1_steps
    if stage2_steps is not None:
        steps["stage 2 (tuner)" if stage1 is not None or recipe.get("stage") == "tuner" else "training"] = stage2_steps
    record = {
        "steps": steps or NOT_RECORDED,
        "cpuMinutes": round(cpu, 1) if known_time else NOT_RECORDED,
        "gpuMinutes": round(gpu, 1) if known_time else NOT_RECORDED,
        "devices": devices or NOT_RECORDED,
        "batchSize": _or_not(_number(recipe.get("batch_size"))),
        "patchSize": _or_not(_number(recipe.get("patch_size"))),
        "text": _or_not(_cut(training.get("budget") or "") if isinstance(training.get("budget"), str) else None),
    }
    total = sum(v for v in steps.values() if v is not None) or None
    return {"record": record, "total_steps": total}


def _validation(stage: Mapping[str, Any], when: str, alpha: Any) -> list[dict[str, Any]]:
    """The validation PSNR a training stage recorded, with the setting it was measured in (the trainer
    validates a base as it is, alpha 0 of the tuned model, and a tuner stage at alpha 1)."""
    val = stage.get("val")
    if not isinstance(val, dict) or not isinstance(val.get("psnr"), dict):
        return []
    out = []
    for level, value in list(val["psnr"].items())[:MAX_ITEMS]:
        if _number(value) is None:
            continue
        out.append({
            "metric": "PSNR", "unit": "dB", "value": value, "level": _cut(level), "alpha": alpha,
            "data": _or_not(_name_of(val.get("data"))), "images": _or_not(_number(val.get("images"))),
            "crop": NOT_RECORDED, "cropBorder": _or_not(_number(val.get("crop_border"))),
            "channels": "Y" if val.get("y_channel") is True else ("RGB" if val.get("y_channel") is False else NOT_RECORDED),
            "when": when,
        })
    return out


def _quality(meta: Mapping[str, Any], training: Mapping[str, Any], base_model: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Measured quality: the shipped ``quality`` record (its setting inside), else the training validation."""
    given = _get(meta, "quality", (dict, list), "an object")
    if given is not None:
        return [_bounded(given)] if isinstance(given, dict) else [_bounded(q) for q in given[:MAX_ITEMS]]
    found = []
    base_training = base_model.get("training") if isinstance(base_model.get("training"), dict) else {}
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    tuner = recipe.get("stage") == "tuner"
    found += _validation(base_training, "validation at the end of stage 1 (the base)", 0)
    found += _validation(training, "validation at the end of stage 2 (the tuner)" if tuner else "validation at the end of training",
                         1 if tuner else NOT_RECORDED)
    return found


# -- Markdown --------------------------------------------------------------------------------------


def _md(value: Any) -> str:
    """A value as one Markdown table cell: one line, pipes and HTML escaped, bounded."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_md(v) for v in value) if value else NOT_RECORDED
    elif isinstance(value, dict):
        text = "; ".join(f"{_md(k)} {_md(v)}" for k, v in value.items()) if value else "none"
    else:
        text = str(value)
    text = _cut(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


_BUDGET_WORDS = {"cpuMinutes": "CPU minutes", "gpuMinutes": "GPU minutes", "batchSize": "batch size",
                 "patchSize": "patch size (px)", "text": "in words"}


def _table(rows: Sequence[tuple[str, Any]]) -> list[str]:
    return ["| field | value |", "|---|---|"] + [f"| {name} | {_md(value)} |" for name, value in rows]


def _use_lines(record: Mapping[str, Any]) -> list[str]:
    """How to run this model (``ftn run`` and ``ftn.restore``), from its axes: a level where calibrated."""
    # a name that is not a plain file stem (a crafted one) is not pasted into code
    name = record["name"] if re.fullmatch(r"[A-Za-z0-9_.+-]{1,100}", record["name"]) else "MODEL"
    axes = record["ftn"]["axes"]
    if isinstance(axes, list) and len(axes) > 1:
        vector = ",".join("0.5" for _ in axes)
        option, keyword = f"--alpha {vector}", f"alpha=\"{vector}\""
    elif isinstance(axes, list) and axes and isinstance(axes[0]["calibration"], dict):
        levels = axes[0]["calibration"]["levels"]
        option, keyword = f"--level {levels[len(levels) // 2]:g}", f"level={levels[len(levels) // 2]:g}"
    else:
        option, keyword = "--alpha 0.5", "alpha=0.5"
    return ["```bash", f"ftn run -i photo.png -o out.png --model {shlex.quote(name)} {option}", "```", "",
            "```python", "import ftn", f"ftn.restore(\"photo.png\", model=\"{name}\", {keyword}).save(\"out.png\")", "```"]


def card_markdown(record: Mapping[str, Any]) -> str:
    """The Markdown card of a :func:`card_record` dict: details, levels, training, quality, file, use."""
    f = record["ftn"]
    lines = [f"# Model card: {_md(record['name'])}", "", _md(record["description"]), "",
             "Every value below is read from the model file itself; \"not recorded\" means the file does not say.", "",
             "## Model details", ""]
    lines += _table([
        ("task", f["task"]), ("task options", f["taskOptions"]), ("method", f["method"]), ("method options", f["methodOptions"]),
        ("architecture", record["architecture"]), ("architecture size", record["size"]), ("scale", record["scale"]),
        ("input channels", record["inputChannels"]), ("output channels", record["outputChannels"]),
        ("parameters in the file (base and tuners)", f["parameters"]), ("storage types", f["dtypes"]),
        ("licence", record["license"]), ("author", record["author"]), ("date", record["date"]),
        ("tags", record["tags"]),
    ])
    lines += ["", "## Levels and calibration", "", f"alpha moves {_md(f['levels'])}.", ""]
    axes = f["axes"]
    if not isinstance(axes, list):
        lines.append(f"Axes: {NOT_RECORDED}.")
    for axis in axes if isinstance(axes, list) else []:
        anchors = axis["anchors"]
        anchor_words = ", ".join(f"alpha {a['alpha']} = {_md(axis['name'])} {_md(a['level'])}" for a in anchors) \
            if isinstance(anchors, list) else NOT_RECORDED
        lines.append(f"- **{_md(axis['name'])}**: anchors {anchor_words}.")
        cal = axis["calibration"]
        if isinstance(cal, dict):
            lines += [f"  Calibration (level -> alpha), {_md(cal['source'])}:", "",
                      "  | " + " | ".join(["level"] + [_md(v) for v in cal["levels"]]) + " |",
                      "  |" + "---|" * (len(cal["levels"]) + 1),
                      "  | " + " | ".join(["alpha"] + [_md(v) for v in cal["alphas"]]) + " |"]
        else:
            lines.append(f"  Calibration: {NOT_RECORDED} (choose alpha directly).")
    budget = f["budget"]
    lines += ["", "## Training", ""]
    rows = [("training data", record["dataset"]), ("pretrained base (stage 1)", record["pretrainedModelG"]),
            ("iterations (all stages)", record["trainingIterations"]), ("batch size", record["trainingBatchSize"]),
            ("patch size (px)", record["trainingHRSize"])]
    if isinstance(budget, dict):
        rows += [(f"budget: {_BUDGET_WORDS.get(k, k)}", v) for k, v in budget.items()]
    else:
        rows.append(("budget", budget))
    lines += _table(rows)
    lines += ["", "## Measured quality", ""]
    quality = f["quality"]
    if isinstance(quality, list):
        keys: list[str] = []
        for entry in quality:
            for k in entry if isinstance(entry, dict) else []:
                if k not in keys and len(keys) < 16:
                    keys.append(k)
        lines += ["| " + " | ".join(_md(k) for k in keys) + " |", "|" + "---|" * len(keys)]
        for entry in quality:
            if isinstance(entry, dict):
                lines.append("| " + " | ".join(_md(entry.get(k, NOT_RECORDED)) for k in keys) + " |")
    else:
        lines.append(f"Quality: {NOT_RECORDED}.")
    resource = record["resources"][0]
    lines += ["", "## File", ""]
    lines += _table([("file", resource["name"]), ("bytes", resource["size"]), ("sha256", resource["sha256"]),
                     ("metadata format", f["metadataFormat"]), ("card written by", f["cardWrittenBy"])])
    lines += ["", "## Use", "", *_use_lines(record), ""]
    return "\n".join(lines)
