"""Model files: safetensors with JSON metadata; ``.pth`` only ever read with ``weights_only=True``.

A file written by :func:`save` holds the state dict of the network (tuner included) and, under the
safetensors metadata key ``"ftn"``, a JSON object::

    {"format": "ftn/1", "arch": "adafm_net", "arch_options": {...},
     "method": "ftn", "method_options": {"groups": 16, ...}, "targets": ["conv_first", ...],
     "task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}], ...user metadata}

so :func:`load` rebuilds the architecture, re-attaches the method to the same layers and loads the
tensors, with no pickle anywhere. A tuned file whose base is a spandrel architecture records it under
``"tuned": {"base": {"kind": "spandrel", "arch": ID, "layout": {...}}}`` (:mod:`ftn.external`):
:func:`load` puts the base tensors back in the original checkpoint's key layout and lets spandrel
build the network, which must detect the recorded architecture.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .archs import ARCHS, build_arch
from .methods import METHODS, AxesModel, TunableModel, attach

__all__ = ["save", "load", "load_tunable", "load_base", "base_record", "read_metadata", "read_state_dict",
           "UnknownArchitecture", "FORMAT"]

FORMAT = "ftn/1"
_RESERVED = {"format", "arch", "arch_options", "method", "method_options", "targets", "allow_extrapolation"}


class UnknownArchitecture(ValueError):
    """:func:`load_base` cannot tell the architecture from the checkpoint's keys (``ftn tune`` then asks spandrel)."""


def base_record(meta: dict[str, Any]) -> dict[str, Any]:
    """Where a tuned file's base came from (``meta["tuned"]["base"]``, written by ``ftn tune``); {} when unknown."""
    tuned = meta.get("tuned")
    record = tuned.get("base") if isinstance(tuned, dict) else None
    return record if isinstance(record, dict) else {}


def _json_ready(value: Any, key: str) -> Any:
    try:
        json.dumps(value)
    except TypeError as err:
        raise TypeError(f"metadata {key!r} is not JSON-serialisable: {err}") from None
    return value


def save(model: nn.Module, path: str | os.PathLike, **metadata: Any) -> None:
    """Write ``model`` (tunable or plain) to a safetensors file with its metadata, atomically.

    Keyword arguments become metadata (``task="denoise"``, ``levels=[{"sigma": 20}, {"sigma": 80}]``,
    ...) and override what the model already carries in ``model.metadata``.
    """
    if isinstance(model, AxesModel):
        from .axes_io import save_axes  # axes_io builds on this module's readers: imported here, not at the top

        save_axes(model, path, **metadata)
        return
    clash = _RESERVED & set(metadata)
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are written by ftn itself")
    meta: dict[str, Any] = {}
    meta.update(getattr(model, "metadata", {}) or {})
    meta.update({k: _json_ready(v, k) for k, v in metadata.items()})

    network = model.model if isinstance(model, TunableModel) else model  # its tensors: the tuner's too
    architecture = model.base_network if isinstance(model, TunableModel) else model
    meta["format"] = FORMAT
    meta["arch"] = getattr(architecture, "arch_name", None)
    meta["arch_options"] = getattr(architecture, "arch_options", None)
    if isinstance(model, TunableModel):
        meta["method"] = model.method
        meta["method_options"] = model.options
        meta["targets"] = model.target_names
        meta["allow_extrapolation"] = model.control.allow_extrapolation
    tensors = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"ftn": json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``ftn`` metadata of a safetensors file ({} when it has none).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a safetensors file (a pickled ``.pth``, an image, ...), or its
            metadata is not a JSON object.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("ftn")
    except Exception as err:  # safetensors' own error type: a file of another kind, or a damaged one
        hint = " (a .pth checkpoint: read its weights with ftn.load_base, which never unpickles code)" if Path(path).suffix in (".pth", ".pt") else ""
        raise ValueError(f"{path}: not a safetensors model file ({' '.join(str(err).split())}){hint}") from None
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the 'ftn' metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the 'ftn' metadata must be a JSON object")
    return meta


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pth``/``.pt`` read with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and friends: refuse, never fall back
        raise ValueError(
            f"{path}: refused to load: it is not a plain tensor checkpoint ({type(err).__name__}). "
            "ftn reads .pth files with weights_only=True only; convert it to safetensors with trusted code"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def load(path: str | os.PathLike, *, model: nn.Module | None = None) -> nn.Module:
    """Load a file written by :func:`save`.

    Returns a :class:`TunableModel` when the file holds a method, an :class:`~ftn.methods.axes.AxesModel`
    when it holds several axes or anchors (:mod:`ftn.axes_io`), else the plain network. The
    architecture is rebuilt from the metadata: an ``ftn.ARCHS`` one, or a spandrel architecture a
    tuned file records (spandrel must be installed); for any other network, pass an instance of it as
    ``model``. The file's metadata is available as ``result.metadata``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    meta = read_metadata(path)
    if meta.get("format") == FORMAT and "multi_axis" in meta:
        from .axes_io import load_axes  # axes_io builds on this module's readers: imported here, not at the top

        return load_axes(path, model=model)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ftn model file (metadata format {meta.get('format')!r}, expected {FORMAT!r})")
    state: dict[str, Tensor] | None = None
    origin = base_record(meta)
    if model is None and meta.get("arch") not in ARCHS and origin.get("kind") == "spandrel":
        from .external import base_state_from_tuned, rebuild_spandrel

        state = read_state_dict(path)
        targets = list(meta.get("targets") or []) if meta.get("method") is not None else []
        model = rebuild_spandrel(origin, base_state_from_tuned(state, targets), str(path))
    if model is None:
        arch = meta.get("arch")
        if arch not in ARCHS:
            raise ValueError(
                f"{path}: architecture {arch!r} is not one of ftn's {sorted(ARCHS)}; "
                "pass an instance of the network as load(path, model=...)"
            )
        model = build_arch(arch, **(meta.get("arch_options") or {}))
    result: nn.Module = model
    method = meta.get("method")
    if method is not None:
        if method not in METHODS:
            raise ValueError(f"{path}: unknown method {method!r}; this ftn knows {sorted(METHODS)}")
        result = attach(
            model,
            method,
            targets=list(meta.get("targets") or []) or None,
            allow_extrapolation=bool(meta.get("allow_extrapolation", False)),
            **(meta.get("method_options") or {}),
        )
    network = result.model if isinstance(result, TunableModel) else result
    state = read_state_dict(path) if state is None else state
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(f"shape of {k!r} is {tuple(state[k].shape)}, the network has {tuple(expected[k].shape)}")
        raise ValueError(f"{path}: tensors do not fit the network: " + "; ".join(parts))
    network.load_state_dict(state, strict=True)
    result.metadata = {k: v for k, v in meta.items() if k not in _RESERVED}
    return result


def load_tunable(path: str | os.PathLike) -> TunableModel:
    """:func:`load` for the places that need an alpha to set (``ftn run``, the app).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a safetensors model (one line, for any reader error), or it
            holds a plain network with no method attached.
    """
    path = Path(path)
    try:
        model = load(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # safetensors' own errors for a file that is not a model
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise ValueError(f"cannot read model {path}: it is not a safetensors model file ({detail})") from None
    if not isinstance(model, TunableModel):
        raise ValueError(f"{path} is a plain network with no alpha to set; attach a method first (ftn.attach, ftn train)")
    return model


#: Wrappers that training code puts around a state dict, in the order they are unwrapped: BasicSR
#: keeps both ``params_ema`` and ``params`` and its own loaders prefer the EMA weights.
_WRAPPERS = ("params_ema", "params", "state_dict", "model", "net")


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    # DataParallel / DistributedDataParallel save every key under "module."
    state = {k.removeprefix("module.") if isinstance(k, str) else k: v for k, v in obj.items()}
    strays = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if strays:
        raise ValueError(f"{path}: entries {strays[:5]} are not tensors; expected a state dict (or one wrapped in {list(_WRAPPERS)})")
    return state


def _rrdbnet_options(state: dict[str, Tensor]) -> dict[str, Any]:
    """RRDBNet hyper-parameters read from BasicSR key names and shapes."""
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    out_channels = last.shape[0]
    # Scales 1 and 2 fold 4x4 or 2x2 pixels into channels before conv_first; as spandrel does, the
    # image is taken to have as many channels in as out.
    ratio = first.shape[1] // out_channels if first.shape[1] % out_channels == 0 else 0
    unshuffle = {1: 1, 4: 2, 16: 4}.get(ratio)
    if unshuffle is None:
        raise ValueError(
            f"conv_first takes {first.shape[1]} channels and conv_last gives {out_channels} (not 1, 4 or 16 times): "
            "cannot tell the scale; pass scale=... and in_channels=..."
        )
    blocks = {k.split(".")[1] for k in state if k.startswith("body.")}
    return {
        "in_channels": first.shape[1] // unshuffle**2,
        "out_channels": out_channels,
        "channels": first.shape[0],
        "blocks": len(blocks),
        "growth": state["body.0.rdb1.conv1.weight"].shape[0],
        "scale": 4 // unshuffle,
    }


def _dncnn_options(state: dict[str, Tensor]) -> dict[str, Any]:
    """DnCNN hyper-parameters read from the keys of the common PyTorch port (``dncnn.N.weight``).

    The depth is the number of conv kernels (17: DnCNN-S, 20: DnCNN-B); channels come from the first.
    """
    convs = sorted((int(k.split(".")[1]) for k, v in state.items() if k.endswith(".weight") and v.dim() == 4))
    first, last = state[f"dncnn.{convs[0]}.weight"], state[f"dncnn.{convs[-1]}.weight"]
    return {
        "in_channels": first.shape[1],
        "out_channels": last.shape[0],
        "channels": first.shape[0],
        "depth": len(convs),
    }


def load_base(path: str | os.PathLike, arch: str | None = None, **arch_options: Any) -> nn.Module:
    """Load a plain network from a common restoration checkpoint, ready for :func:`ftn.attach`.

    Reads safetensors, or ``.pth``/``.pt`` with ``torch.load(..., weights_only=True)`` only; unwraps
    ``params_ema`` / ``params`` / ``state_dict`` / ``model`` / ``net`` (``params_ema`` first, as
    BasicSR does) and strips ``module.`` prefixes. ``arch`` names an architecture of ``ftn.ARCHS``
    built with ``arch_options``; without it, RRDBNet (ESRGAN, Real-ESRGAN) and DnCNN (the common
    PyTorch port's ``dncnn.N.`` keys: DnCNN-S with 17 layers, DnCNN-B with 20) are recognised by their
    keys and their sizes (channels, blocks, growth, scale, depth) read from the tensors; options given
    override them. BatchNorm's ``num_batches_tracked`` counters, which older files lack, start at 0.
    The network is returned in eval mode (BatchNorm uses its running statistics)::

        net = ftn.load_base("RealESRGAN_x4plus.pth")
        model = ftn.attach(net, "ftn")

    The returned network's ``checkpoint_layout`` attribute records how the file stored its tensors
    (wrapper, ``module.`` prefix, keys the file lacks: :func:`ftn.external.describe_layout`), so
    ``ftn export`` can write a tuned version back the same way (None if it cannot be recorded).

    Raises:
        UnknownArchitecture: (a ValueError) no ``arch`` given and the keys match no known layout.
        ValueError: unsafe or malformed file, or tensors that do not fit the network (the message
            names missing, unexpected and mis-shaped keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    raw = read_state_dict(path)
    state = _unwrap(raw, path)
    is_rrdbnet = "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state
    if arch in (None, "rrdbnet") and is_rrdbnet:
        arch, arch_options = "rrdbnet", {**_rrdbnet_options(state), **arch_options}
    elif arch in (None, "dncnn") and "dncnn.0.weight" in state and all(k.startswith("dncnn.") for k in state):
        arch, arch_options = "dncnn", {**_dncnn_options(state), **arch_options}
    elif arch is None:
        raise UnknownArchitecture(
            f"{path}: cannot tell the architecture from its keys ({sorted(state)[:3]} ...); "
            f"pass arch= one of {sorted(ARCHS)} and its options"
        )
    network = build_arch(arch, **arch_options)
    expected = network.state_dict()
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)  # files saved before PyTorch 0.4.1 lack the counter
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)}, network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{what} {keys[:5]}{' ...' if len(keys) > 5 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong))
        if keys
    ]
    if problems:
        raise ValueError(f"{path}: tensors do not fit {arch} {arch_options}: " + "; ".join(problems))
    network.load_state_dict(state, strict=True)
    from .external import LayoutError, describe_layout

    try:
        network.checkpoint_layout = describe_layout(raw, network.state_dict(), file=path.suffix, wrappers=_WRAPPERS,
                                                    prefixes=("module.",), where=str(path))
    except LayoutError:  # keys that _unwrap strips one by one; the export then keeps ftn's own layout
        network.checkpoint_layout = None
    return network.eval()
