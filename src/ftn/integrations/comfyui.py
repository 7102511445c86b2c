"""ComfyUI nodes for ftn: load a model, apply it at a level, an alpha or a mask, export a plain network.

ComfyUI finds them through the repository's custom-node folder ``comfyui/ftn_nodes`` (linked or copied
into ``ComfyUI/custom_nodes``), whose ``__init__`` exports this module's :data:`NODE_CLASS_MAPPINGS`
and :data:`NODE_DISPLAY_NAME_MAPPINGS`. The nodes follow ComfyUI's custom-node conventions:

* ``INPUT_TYPES`` (a classmethod) returns ``{"required": {...}, "optional": {...}}``, each input a
  tuple ``(TYPE,)`` or ``(TYPE, options)``; a list of strings is a drop-down (COMBO). ``RETURN_TYPES``
  and ``RETURN_NAMES`` are tuples; ``FUNCTION`` names the method ComfyUI calls with the inputs as
  keyword arguments (optional inputs left unconnected are not passed), which returns a tuple;
  ``CATEGORY`` places the node in the menu; ``OUTPUT_NODE`` marks a node worth running for its own
  sake (the export, which also returns ``{"ui": ..., "result": ...}``).
* ``IMAGE`` is a float tensor (B, H, W, C) in [0, 1] (C = 3; 1 and 4 are taken too, transparency
  passed through); ``MASK`` is (B, H, W) or (H, W) in [0, 1]. ``FTN_MODEL`` is these nodes' own type,
  a :class:`FTNModel`.

The work is ftn's own code: :func:`ftn.models.resolve` and ``ftn run``'s loader, :mod:`ftn.levels`
(levels and the per-axis words of ``ftn run``), :func:`ftn.infer.apply_model` (each image, in tiles
where large) and :func:`ftn.export.run_export` (``ftn export``).

**The setting** (FTN Apply and FTN Export Plain Model):

* ``alpha`` (a number): the alpha of a model with one axis, 0 = its first level ... 1 = its second
  (K for an axis with K + 1 anchors);
* ``level`` (text, in place of alpha): a real level through the model's calibration, ``50``; for a
  model with several axes ``sigma=12,quality=70``;
* ``alphas`` (text, in place of alpha): alphas as words, ``0.3,0.8`` (the model's axis order) or
  ``sigma=1.5``; ``level`` and ``alphas`` combine as ``ftn run --level/--alpha`` do (each axis set
  once, axes not set at alpha 0);
* ``mask`` (FTN Apply): scales the setting per pixel: white pixels get it, black ones alpha 0 (the
  model's first level), grey in between, as the web app's painted area; a constant mask c is the
  setting times c. ComfyUI's Load Image gives a mask of 1 where the picture was transparent.

Outside ComfyUI the module works as well (its tests call the nodes directly). ComfyUI's modules
(``folder_paths``, ``comfy.model_management``, ``comfy.utils``) are used only where ComfyUI has already
imported them; this module never imports them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import models
from ..control import check_alpha
from ..io import read_metadata
from ..levels import Levels, alpha_to_level, describe_levels, level_name, level_to_alpha, parse_setting, split_values
from ..methods import TunableModel
from ..methods.axes import AxesModel

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "FTNApply",
    "FTNExportPlainModel",
    "FTNLoadModel",
    "FTNModel",
    "Setting",
    "resolve_setting",
]

#: The type of the wire that carries a loaded model between these nodes.
MODEL_TYPE = "FTN_MODEL"
#: The menu the nodes appear in.
CATEGORY = "ftn"
#: The folder under ComfyUI's ``models/`` that the loader lists, beside the shipped models.
MODEL_FOLDER = "ftn"
#: The alpha widget's upper end: an axis with K + 1 anchors runs to K (ftn.axes_io allows 16 anchors).
MAX_ALPHA = 16.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FTNModel:
    """What an ``FTN_MODEL`` wire carries: the loaded model (in eval mode), the name it was asked for
    by (a shipped name or a path), and its file (the export reads the model from it again)."""

    model: TunableModel | AxesModel
    name: str
    path: Path


# -- ComfyUI's own modules, where ComfyUI runs ------------------------------------------------------


def _comfy(module: str) -> Any | None:
    """A ComfyUI module ComfyUI has already imported (``folder_paths``, ``comfy.utils``, ...), else None."""
    return sys.modules.get(module)


def _folder_paths() -> Any | None:
    """ComfyUI's ``folder_paths`` with ``models/ftn`` registered, or None outside ComfyUI."""
    paths = _comfy("folder_paths")
    if paths is None or not hasattr(paths, "folder_names_and_paths"):
        return None
    if MODEL_FOLDER not in paths.folder_names_and_paths:  # extra_model_paths.yaml may have added it already
        paths.folder_names_and_paths[MODEL_FOLDER] = ([str(Path(paths.models_dir) / MODEL_FOLDER)], {".safetensors"})
    return paths


def _device(name: str) -> torch.device:
    if name == "auto":
        management = _comfy("comfy.model_management")
        if management is not None:
            return management.get_torch_device()
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device; choose auto or cpu")
    return torch.device(name)


def _widget_words(message: str, alpha: str = "alphas") -> str:
    """ftn.levels' refusals name ``ftn run``'s options; here they name the node's widgets."""
    return message.replace("--alpha", alpha).replace("--level", "level")


# -- the setting: alpha, level, alphas ---------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A model's setting asked for by the widgets: ``values`` is the alpha of a one-axis model, or
    ``{axis: alpha}``; ``words`` says it in one line; ``notes`` what was adjusted (a level clamped to
    the calibrated range); ``alpha_text`` and ``level_text`` say it as ``ftn export --alpha/--level``."""

    values: float | dict[str, float]
    words: str
    notes: tuple[str, ...] = ()
    alpha_text: str | None = None
    level_text: str | None = None


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {text}")
    return value


def resolve_setting(model: TunableModel | AxesModel, alpha: float, level: str = "", alphas: str = "") -> Setting:
    """The setting the widgets ask for (the module docstring says how they combine).

    Raises:
        ValueError: (one line) words :mod:`ftn.levels` refuses, an alpha outside the model's range, a
            level the model has no calibration for, or a model with several axes given only ``alpha``.
    """
    level, alphas = str(level or "").strip(), str(alphas or "").strip()
    if isinstance(model, AxesModel):
        names = [a.name for a in model.axes]
        if not level and not alphas:
            if len(names) > 1:
                example = ",".join(f"{n}=..." for n in names)
                raise ValueError(f"this model has {len(names)} axes ({', '.join(names)}): set them with level or alphas "
                                 f"(e.g. {example}); the alpha number sets a model with one axis")
            alphas = repr(float(alpha))
        try:
            values = parse_setting([(a.name, a.segments) for a in model.axes], model.levels,
                                   alpha=alphas or None, level=level or None)
        except ValueError as err:
            raise ValueError(_widget_words(str(err))) from None
        return Setting({n: float(v.alpha) for n, v in values.items()}, "; ".join(v.words for v in values.values()),
                       tuple(v.note for v in values.values() if v.note), alphas or None, level or None)
    if not isinstance(model, TunableModel):
        raise TypeError(f"an FTN_MODEL holds a tunable ftn model, got {type(model).__name__}")
    meta = model.metadata or {}
    name = level_name(meta)
    if level and alphas:
        raise ValueError("a model with one axis takes level or alphas, not both")
    try:
        if level:
            asked = _number(split_values(level, [name or "level"], "level")[name or "level"], "level")
            value, note = level_to_alpha(meta, asked)
            words = f"{name or 'level'} {asked:g} -> alpha {value:.4g} (calibrated)"
            return Setting(value, words, (note,) if note else (), None, f"{asked!r}")
        value = _number(split_values(alphas, [name or "alpha"], "alphas")[name or "alpha"], "alphas") if alphas else float(alpha)
        check_alpha(value, allow_extrapolation=model.control.allow_extrapolation)
    except ValueError as err:
        raise ValueError(_widget_words(str(err), "the alpha number")) from None
    served = alpha_to_level(meta, value) if 0.0 <= value <= 1.0 and name else None
    words = f"alpha {value:.4g}" + (f" (about {name} {served:.3g})" if served is not None else "")
    return Setting(value, words, (), repr(value), None)


# -- images and masks in ComfyUI's layout -----------------------------------------------------------


def _check_image(image: Any) -> None:
    if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[-1] not in (1, 3, 4) or not image.is_floating_point():
        what = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"IMAGE must be a float (B, H, W, C) tensor with C = 1, 3 or 4, got {what}")
    if 0 in image.shape:
        raise ValueError(f"IMAGE is empty: shape {tuple(image.shape)}")


def _masks(mask: Any, batch: int, size: tuple[int, int]) -> Tensor:
    """ComfyUI's MASK as (N, 1, H, W) in [0, 1] at the images' size; N is 1 (every image) or the batch."""
    if not isinstance(mask, Tensor) or mask.dim() not in (2, 3) or 0 in mask.shape:
        what = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"MASK must be a (B, H, W) or (H, W) tensor, got {what}")
    maps = (mask if mask.dim() == 3 else mask[None]).float()[:, None]
    if maps.shape[0] not in (1, batch):
        raise ValueError(f"the mask holds {maps.shape[0]} masks for {batch} images; give one, or one per image")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("the mask holds NaN or infinite values")
    maps = maps.clamp(0.0, 1.0)
    if tuple(maps.shape[-2:]) != size:  # e.g. Load Image's 64 x 64 mask of a picture without transparency
        shrinking = maps.shape[-2] > size[0] or maps.shape[-1] > size[1]
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False, antialias=shrinking).clamp(0.0, 1.0)
    return maps


def _masked(model: TunableModel | AxesModel, setting: Setting, amap: Tensor, mask_axes: str) -> Any:
    """The setting scaled per pixel by ``amap`` (1, 1, H, W): on every axis, or on those ``mask_axes`` names."""
    if isinstance(model, TunableModel):
        if not model.capabilities.per_pixel:
            raise ValueError(f"method {model.method} takes no per-pixel alpha; disconnect the mask")
        return amap * float(setting.values)  # type: ignore[arg-type]
    values: dict[str, float] = setting.values  # type: ignore[assignment]
    names = [n.strip() for n in mask_axes.split(",") if n.strip()] or list(values)
    unknown = [n for n in names if n not in values]
    if unknown:
        raise ValueError(f"mask_axes names {unknown[0]!r}, but this model's axes are {', '.join(values)}")
    return {n: amap * v if n in names else v for n, v in values.items()}


# -- the nodes ----------------------------------------------------------------------------------------


def model_choices() -> list[str]:
    """The loader's drop-down: the shipped models, then the files in ComfyUI's ``models/ftn``."""
    shipped = list(models.available())
    paths = _folder_paths()
    return shipped + ([f for f in paths.get_filename_list(MODEL_FOLDER) if f not in shipped] if paths else [])


def _model_file(model: str, path: str) -> Path:
    if str(path or "").strip():
        return models.resolve(str(path).strip())
    paths = _folder_paths()
    if paths is not None and model not in models.available():
        found = paths.get_full_path(MODEL_FOLDER, model)
        if found:
            return Path(found)
    return models.resolve(model)


def describe_model(loaded: FTNModel) -> str:
    """The model's axes and levels in words: what ``alpha``, ``level`` and ``alphas`` mean for it."""
    meta = read_metadata(loaded.path)
    model = loaded.model
    if isinstance(model, AxesModel):
        from ..info_cli import describe_axes

        return "\n".join([f"{loaded.name}:"] + describe_axes(meta))
    axis = Levels.from_metadata(model.metadata).axes
    calibration = axis[0].calibration if axis else None
    name = level_name(model.metadata) or "level"
    how = (f"level {name} {calibration.levels[0]:g} ... {calibration.levels[-1]:g} (calibrated)" if calibration is not None
           else "no calibration: set alpha")
    arch = getattr(model.base_network, "arch_name", None) or type(model.base_network).__name__
    return (f"{loaded.name}: task {meta.get('task', '?')}, method {model.method} on {arch}; "
            f"alpha 0 ... 1 = {describe_levels(model.metadata)}; {how}")


class FTNLoadModel:
    """FTN Load Model: a shipped ftn model, a file in ComfyUI's ``models/ftn``, or any model file by path."""

    DESCRIPTION = "Loads a tunable ftn model (one level knob, or several axes) and says what its levels are."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple]]:
        return {
            "required": {
                "model": (model_choices(), {"tooltip": "a shipped model, or a .safetensors file in ComfyUI's models/ftn"}),
                "device": (["auto", "cpu", "cuda"], {"tooltip": "auto: ComfyUI's device (else CUDA where torch sees one)"}),
            },
            "optional": {
                "path": ("STRING", {"default": "", "tooltip": "a model file's path; when set, used instead of model"}),
            },
        }

    RETURN_TYPES = (MODEL_TYPE, "STRING")
    RETURN_NAMES = ("ftn_model", "info")
    OUTPUT_TOOLTIPS = ("the loaded model", "its axes and levels in words")
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def IS_CHANGED(cls, model: str, device: str, path: str = "") -> str:
        """A file replaced under the same name is loaded again."""
        try:
            file = _model_file(model, path)
            stat = file.stat()
        except (OSError, ValueError):
            return ""  # the load itself says what is wrong
        return f"{file}:{stat.st_mtime_ns}:{stat.st_size}"

    def load(self, model: str, device: str = "auto", path: str = "") -> tuple[FTNModel, str]:
        from ..api import load_model  # ``ftn run``'s loader: one axis or several, in eval mode

        file = _model_file(model, path)
        loaded = FTNModel(load_model(str(file), _device(device)), str(path or "").strip() or model, file)
        return loaded, describe_model(loaded)


_SETTING_INPUTS: dict[str, tuple] = {
    "level": ("STRING", {"default": "", "tooltip": "a real level instead of alpha, through the model's calibration: "
                                                     "50; several axes: sigma=12,quality=70"}),
    "alphas": ("STRING", {"default": "", "tooltip": "alphas as words instead of alpha: 0.3,0.8 (the model's axis "
                                                      "order) or sigma=1.5; axes not set stay at 0"}),
}


def _alpha_input() -> tuple:
    return ("FLOAT", {"default": 0.5, "min": 0.0, "max": MAX_ALPHA, "step": 0.01,
                      "tooltip": "a one-axis model's alpha: 0 = its first level, 1 = its second (K: its last anchor)"})


class FTNApply:
    """FTN Apply: the model on every image of the batch at the setting, optionally scaled per pixel by a mask."""

    DESCRIPTION = "Runs an ftn model at a level or an alpha (per axis), optionally per pixel through a mask."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple]]:
        return {
            "required": {
                "ftn_model": (MODEL_TYPE,),
                "image": ("IMAGE",),
                "alpha": _alpha_input(),
            },
            "optional": {
                **_SETTING_INPUTS,
                "mask": ("MASK", {"tooltip": "scales the setting per pixel: white = the setting, black = alpha 0"}),
                "mask_axes": ("STRING", {"default": "", "tooltip": "the axes the mask scales (e.g. sigma); empty: all"}),
                "tile": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 16,
                                 "tooltip": "tile side in pixels for large images; 0: from free memory"}),
            },
        }

    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("image", "setting")
    OUTPUT_TOOLTIPS = ("the processed images", "the setting used, in words")
    FUNCTION = "apply"
    CATEGORY = CATEGORY

    def apply(self, ftn_model: FTNModel, image: Tensor, alpha: float = 0.5, level: str = "", alphas: str = "",
              mask: Tensor | None = None, mask_axes: str = "", tile: int = 0) -> tuple[Tensor, str]:
        from ..infer.apply import apply_model

        model = ftn_model.model
        _check_image(image)
        setting = resolve_setting(model, alpha, level, alphas)
        for note in setting.notes:
            log.warning("ftn: %s", note)
        batch, height, width, channels = image.shape
        maps = _masks(mask, batch, (height, width)) if mask is not None else None
        utils, management = _comfy("comfy.utils"), _comfy("comfy.model_management")
        bar = utils.ProgressBar(batch) if utils is not None else None

        def between_tiles(done: int = 0, total: int = 0) -> None:  # ComfyUI's Cancel button, between images and tiles
            if management is not None:
                management.throw_exception_if_processing_interrupted()

        outputs = []
        for b in range(batch):
            between_tiles()
            x = image[b].permute(2, 0, 1)
            colour, transparency = (x[:3], x[3:]) if channels == 4 else (x, None)
            value = setting.values if maps is None else _masked(model, setting, maps[b if maps.shape[0] > 1 else 0][None], mask_axes)
            out = apply_model(model, colour, alpha=value, tile="auto" if not tile else int(tile), progress=between_tiles,
                              log=lambda line: log.info("ftn: %s", line))
            if transparency is not None:  # passed through; resized where the model changes the size (x4)
                if tuple(transparency.shape[-2:]) != tuple(out.shape[-2:]):
                    transparency = F.interpolate(transparency[None], size=out.shape[-2:], mode="bilinear", align_corners=False)[0]
                out = torch.cat([out, transparency.to(out.dtype).clamp(0, 1)], dim=0)
            outputs.append(out.permute(1, 2, 0))
            if bar is not None:
                bar.update(1)
        words = setting.words + (" x the mask" if maps is not None else "")
        return torch.stack(outputs).contiguous(), words


_EXPORT_SUFFIXES = (".safetensors", ".pth")


def _output_file(filename: str) -> Path:
    """``filename`` under ComfyUI's output folder (the current folder outside ComfyUI), never outside it."""
    paths = _folder_paths()
    base = Path(paths.get_output_directory() if paths is not None else Path.cwd()).resolve()
    name = str(filename or "").strip()
    if not name:
        raise ValueError("filename is empty; give e.g. ftn/denoise-sigma50.safetensors")
    target = (base / name).resolve()
    if Path(name).is_absolute() or base not in target.parents:
        raise ValueError(f"filename {name!r} must stay inside the output folder {base} (no absolute path, no '..')")
    if target.suffix.lower() not in _EXPORT_SUFFIXES:
        raise ValueError(f"filename {name!r} must end in .safetensors (or .pth: the original checkpoint's layout)")
    return target


class FTNExportPlainModel:
    """FTN Export Plain Model: the plain network at one setting, written as ``ftn export`` writes it."""

    DESCRIPTION = ("Writes the plain network at one setting (ftn export) under ComfyUI's output folder: it costs what the "
                   "plain network costs and any tool that reads the architecture reads it.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple]]:
        return {
            "required": {
                "ftn_model": (MODEL_TYPE,),
                "alpha": _alpha_input(),
                "filename": ("STRING", {"default": "ftn/plain.safetensors",
                                        "tooltip": "under ComfyUI's output folder; .safetensors (or .pth)"}),
            },
            "optional": dict(_SETTING_INPUTS),
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("the file written",)
    FUNCTION = "export"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def export(self, ftn_model: FTNModel, alpha: float = 0.5, filename: str = "ftn/plain.safetensors", level: str = "",
               alphas: str = "") -> dict[str, Any]:
        from ..export import run_export

        setting = resolve_setting(ftn_model.model, alpha, level, alphas)  # refusals come before anything is written
        out = _output_file(filename)
        out.parent.mkdir(parents=True, exist_ok=True)
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):
                run_export(str(ftn_model.path), str(out), alpha=setting.alpha_text, level=setting.level_text)
        except ValueError as err:
            raise ValueError(_widget_words(str(err))) from None
        message = " ".join(said.getvalue().split())
        log.info("ftn: %s", message)
        return {"ui": {"text": [message]}, "result": (str(out),)}


#: ComfyUI's registry of these nodes: a unique id -> the class.
NODE_CLASS_MAPPINGS = {
    "FTNLoadModel": FTNLoadModel,
    "FTNApply": FTNApply,
    "FTNExportPlainModel": FTNExportPlainModel,
}

#: The names ComfyUI shows for them.
NODE_DISPLAY_NAME_MAPPINGS = {
    "FTNLoadModel": "FTN Load Model",
    "FTNApply": "FTN Apply",
    "FTNExportPlainModel": "FTN Export Plain Model",
}
