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
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors.torch import save_file

from .archs import ARCHS, build_arch
from .io import FORMAT, read_metadata, read_state_dict
from .levels import Levels
from .methods.axes import AxesModel, AxisSpec, attach_axes

__all__ = ["save_axes", "load_axes", "STRUCTURE_KEY"]

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
    meta[STRUCTURE_KEY] = {
        "axes": [{"name": a.name, "anchors": a.anchors, "chained": a.chained} for a in model.axes],
        "corners": [dict(c) for c in model.corners],
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.model.state_dict().items()}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"ftn": json.dumps(meta)})
        os.replace(tmp, path)
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
        raise ValueError(f"{path}: the {STRUCTURE_KEY!r} metadata is malformed ({err})") from None
    if model is None:
        arch = meta.get("arch")
        if arch not in ARCHS:
            raise ValueError(f"{path}: architecture {arch!r} is not one of ftn's {sorted(ARCHS)}; "
                             "pass an instance of the network as load_axes(path, model=...)")
        model = build_arch(arch, **(meta.get("arch_options") or {}))
    result = attach_axes(model, str(meta.get("method")), specs, corners=corners,
                         targets=list(meta.get("targets") or []) or None, **(meta.get("method_options") or {}))
    state = read_state_dict(path)
    expected = result.model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected else f"shape of {wrong[0]!r}"
        raise ValueError(f"{path}: tensors do not fit the network: {detail}")
    result.model.load_state_dict(state, strict=True)
    result.metadata = {k: v for k, v in meta.items() if k not in _RESERVED}
    return result
