"""Networks from other code: spandrel checkpoints, and the original checkpoint's key layout.

Two jobs, both for ``ftn tune`` on someone else's network:

* **spandrel bases** (:func:`import_spandrel`, :func:`load_spandrel`, :func:`rebuild_spandrel`):
  spandrel (an optional extra) recognises the architecture and hyper-parameters of several dozen
  restoration checkpoints (ESRGAN, SwinIR, SCUNet, DnCNN in KAIR's layout, ...) and builds the
  network. ftn reads the file itself (``.pth`` with ``torch.load(weights_only=True)`` only) and hands
  spandrel the tensors, so spandrel's own unpickler never runs. A tuned file names the architecture
  by spandrel's id; loading looks that id up in spandrel's own registry only and checks that it is
  what spandrel detects from the tensors, so a file never names code that loading would import.
* **the original key layout** (:func:`describe_layout`, :func:`to_original`, :func:`write_original`):
  a small JSON record of how the original checkpoint stored the network's tensors (a wrapper such
  as ``params_ema``, a ``module.`` prefix, keys the loader renamed, keys only one side has, such as
  ``num_batches_tracked``), so ``ftn export`` writes the tuned network back the way the original
  was written, and the tool that read the original reads the export.

Nothing here is imported by ``import ftn``; spandrel is imported on first use.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .io import move_into_place

__all__ = [
    "SPANDREL_INSTALL",
    "LayoutError",
    "import_spandrel",
    "spandrel_available",
    "load_spandrel",
    "rebuild_spandrel",
    "describe_layout",
    "to_original",
    "write_original",
    "base_state_from_tuned",
]

#: The command that installs the optional spandrel extra without torchvision (as .ci/run does).
SPANDREL_INSTALL = "pip install --no-deps 'spandrel>=0.4,<0.5'"

#: Wrappers spandrel unwraps (its ``canonicalize_state_dict``, in its order) and the prefixes it strips.
SPANDREL_WRAPPERS = ("model_state_dict", "state_dict", "params_ema", "params-ema", "params", "model", "net")
SPANDREL_PREFIXES = ("module.", "netG.")


class LayoutError(ValueError):
    """The loaded network's tensors cannot be matched to the original file's (one line)."""


# -- spandrel ----------------------------------------------------------------------------------------
def _torchvision_stub() -> dict[str, types.ModuleType]:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed; this spandrel architecture (LaMa or RestoreFormer) needs it")

    vision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = type("InterpolationMode", (), {})  # type: ignore[attr-defined]
    functional.rotate = functional.normalize = unavailable  # type: ignore[attr-defined]
    vision.transforms, transforms.functional = transforms, functional  # type: ignore[attr-defined]
    return {"torchvision": vision, "torchvision.transforms": transforms, "torchvision.transforms.functional": functional}


def spandrel_available() -> bool:
    """Whether the optional spandrel package is installed (imports nothing)."""
    return "spandrel" in sys.modules or importlib.util.find_spec("spandrel") is not None


def import_spandrel() -> types.ModuleType:
    """spandrel, imported on first use, also where torchvision is absent.

    spandrel declares torchvision as a dependency and imports three names from it at import time, for
    two architectures ftn never tunes (LaMa, an inpainter: ``rotate``, ``InterpolationMode``;
    RestoreFormer, a face restorer: ``normalize``). This project installs spandrel with ``--no-deps``
    and no torchvision (a large download for three names), so where torchvision is absent a stub whose
    functions raise stands in **during the import only** and is removed from ``sys.modules`` at once:
    nothing else sees it, and a code path that used it would fail loudly.

    Raises:
        ValueError: spandrel is not installed (one line with the command that installs it).
    """
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        raise ValueError(f"spandrel is not installed; install the optional extra with: {SPANDREL_INSTALL}")
    if importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module("spandrel")
    stubs = _torchvision_stub()
    sys.modules.update(stubs)
    try:
        return importlib.import_module("spandrel")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def _detect(raw: Any, where: str) -> Any:
    """spandrel's descriptor for a checkpoint object (a nested dict of tensors), or one ValueError."""
    spandrel = import_spandrel()
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a dict of tensors, found {type(raw).__name__}")
    try:
        # A shallow copy: some of spandrel's loaders rename or pop keys of the dict they are given.
        return spandrel.ModelLoader().load_from_state_dict(dict(raw))
    except spandrel.UnsupportedModelError:
        keys = sorted(str(k) for k in _locate(raw, SPANDREL_WRAPPERS, SPANDREL_PREFIXES)[2])[:3]
        raise ValueError(f"{where}: neither ftn.load_base nor spandrel recognises this checkpoint (keys {keys} ...)") from None
    except Exception as err:  # an architecture's loader tripping over a damaged or unusual file
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise ValueError(f"{where}: spandrel could not build a network from it ({detail})") from None


def _prepare(descriptor: Any) -> nn.Module:
    network = descriptor.model.eval()  # as ftn.load_base: gradients stay on, methods freeze what they keep
    # Read by ftn tune's probe image and by the app's padding: spandrel's own size requirement.
    network.size_multiple = int(getattr(descriptor.size_requirements, "multiple_of", 1) or 1)
    network.spandrel_arch = str(descriptor.architecture.id)
    return network


def load_spandrel(path: str | os.PathLike, raw: Any | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A plain network from a checkpoint spandrel recognises, in eval mode, and a JSON record of it.

    ``raw`` is the file's content as :func:`ftn.io.read_state_dict` returned it (read again when
    None). The record is ``{"kind": "spandrel", "file": NAME, "arch": SPANDREL_ID, "layout": {...}}``
    (:func:`describe_layout`); the network has ``spandrel_arch`` and ``size_multiple`` attributes.

    Raises:
        ValueError: spandrel is missing, does not recognise the file, or fails to build it (one line).
    """
    from .io import read_state_dict

    path = Path(path)
    if not spandrel_available():
        raise ValueError(f"{path}: ftn.load_base does not recognise this checkpoint, and spandrel, which reads many more "
                         f"architectures, is not installed: {SPANDREL_INSTALL}")
    if raw is None:
        raw = read_state_dict(path)
    descriptor = _detect(raw, str(path))
    network = _prepare(descriptor)
    state = network.state_dict()
    try:
        layout = describe_layout(raw, state, file=path.suffix, wrappers=SPANDREL_WRAPPERS,
                                 prefixes=SPANDREL_PREFIXES, where=str(path))
    except LayoutError as err:
        # spandrel changed a tensor on loading: keep spandrel's own keys, which it reads back as well
        # (rebuild_spandrel checks the architecture it detects), and say so where the layout is used.
        layout = {"file": path.suffix, "wrapper": [], "copies": [], "prefix": "", "rename": {},
                  "model_only": [], "original_only": [], "dtypes": {}, "note": f"spandrel's own key layout: {err}"}
    return network, {"kind": "spandrel", "file": path.name, "arch": network.spandrel_arch, "layout": layout}


def rebuild_spandrel(record: Mapping[str, Any], base_state: Mapping[str, Tensor], where: str) -> nn.Module:
    """The spandrel network a tuned file records, built from its base tensors put back in the original layout.

    ``record`` is the file's ``tuned.base`` entry; ``base_state`` the base network's tensors (its own
    keys, :func:`base_state_from_tuned`). spandrel detects the architecture from the tensors; it must
    be the recorded id, else a ValueError (the file is not what it claims).
    """
    arch = record.get("arch")
    spandrel = import_spandrel()
    if not isinstance(arch, str) or arch not in spandrel.MAIN_REGISTRY:
        raise ValueError(f"{where}: spandrel {getattr(spandrel, '__version__', '')} has no architecture {arch!r}")
    layout = record.get("layout")
    if not isinstance(layout, dict):
        raise ValueError(f"{where}: the spandrel base has no recorded key layout")
    descriptor = _detect(to_original(base_state, layout), where)
    found = str(descriptor.architecture.id)
    if found != arch:
        raise ValueError(f"{where}: the file records spandrel architecture {arch!r}, and its tensors are detected as {found!r}")
    return _prepare(descriptor)


# -- the original key layout -------------------------------------------------------------------------
def _locate(raw: Any, wrappers: Iterable[str], prefixes: Iterable[str]) -> tuple[list[str], str, dict[str, Any]]:
    """Where a loader finds the state dict in ``raw``: (wrapper path, stripped prefix, flat dict).

    Follows spandrel's ``canonicalize_state_dict`` (and, with ftn's wrappers, ``ftn.load_base``):
    unwrap known wrapper keys, then a lone key holding a dict, then strip each prefix that every key has.
    """
    path: list[str] = []
    obj = raw
    wrappers = tuple(wrappers)
    while isinstance(obj, dict):
        key = next((k for k in wrappers if isinstance(obj.get(k), dict)), None)
        if key is None and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
            key = next(iter(obj))
        if key is None:
            break
        path.append(key)
        obj = obj[key]
    flat = dict(obj) if isinstance(obj, dict) else {}
    prefix = ""
    for p in prefixes:
        if flat and all(isinstance(k, str) and k.startswith(p) for k in flat):
            flat = {k[len(p):]: v for k, v in flat.items()}
            prefix += p
    return path, prefix, flat


def _signature(t: Tensor) -> tuple[tuple[int, ...], str, str]:
    data = t.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha1(data.view(torch.uint8).numpy().tobytes()).hexdigest() if data.numel() else ""
    return tuple(t.shape), str(t.dtype), digest


def _as_model_dtype(original: Tensor, model: Tensor) -> Tensor:
    if original.is_floating_point() and model.is_floating_point() and original.dtype != model.dtype:
        return original.to(model.dtype)
    return original


def describe_layout(
    raw: Any,
    model_state: Mapping[str, Tensor],
    *,
    file: str,
    wrappers: Iterable[str],
    prefixes: Iterable[str],
    where: str = "checkpoint",
) -> dict[str, Any]:
    """A JSON record of how ``raw`` (a checkpoint's content) stores the tensors of ``model_state``.

    Keys of the record: ``file`` (the original's suffix), ``wrapper`` (the dict keys leading to the
    state dict, e.g. ``["params_ema"]``), ``copies`` (sibling wrappers holding the same keys, e.g.
    ``["params"]``: written with the same tensors), ``prefix`` (``"module."``), ``rename`` (network key -> original key where they differ),
    ``model_only`` (network keys the original lacks, e.g. ``num_batches_tracked``), ``original_only``
    (original entries the network does not use: not written back), ``dtypes`` (original key -> dtype
    where it differs from the network's).

    Each network tensor is matched to the original entry of the same name when equal, else to an
    unused original tensor of the same shape and exactly the same values (ties, such as zero biases,
    broken by order: loaders keep the order of the layers); the match is verified value by value.

    Raises:
        LayoutError: a network tensor equals no tensor of the file (the loader transformed it).
    """
    path, prefix, flat = _locate(raw, wrappers, prefixes)
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    copies = []
    if path and isinstance(parent, dict):
        own = set(parent[path[-1]])
        copies = [k for k, v in parent.items() if k != path[-1] and isinstance(v, dict) and set(v) == own]
    tensors = {k: v for k, v in flat.items() if isinstance(k, str) and isinstance(v, Tensor)}
    rename: dict[str, str] = {}
    used: set[str] = set()
    unmatched: list[str] = []
    for key, value in model_state.items():
        if key in tensors and tensors[key].shape == value.shape and torch.equal(_as_model_dtype(tensors[key], value), value):
            used.add(key)
        else:
            unmatched.append(key)
    # Unused original tensors by (shape, dtype, sha1 of the values), in file order. Floating ones are
    # compared in the network's floating dtype (a half-precision file loads into a float32 network).
    pool: dict[tuple, list[str]] = {}
    floating = next((v for v in model_state.values() if v.is_floating_point()), None)
    if unmatched:
        for key, value in tensors.items():
            if key not in used:
                pool.setdefault(_signature(value if floating is None else _as_model_dtype(value, floating)), []).append(key)
    model_only: list[str] = []
    for key in unmatched:
        value = model_state[key]
        candidates = pool.get(_signature(value), [])
        if candidates:
            original = candidates.pop(0)
            rename[key] = original
            used.add(original)
        elif key.endswith("num_batches_tracked"):
            model_only.append(key)  # files saved before PyTorch 0.4.1, or by code that strips the counters
        else:
            raise LayoutError(f"{where}: the network's tensor {key!r} {tuple(value.shape)} equals no tensor of the file, "
                              "so it cannot be written back in the original key layout")
    dtypes = {}
    for key, value in model_state.items():
        original = rename.get(key, key)
        if key not in model_only and tensors[original].dtype != value.dtype:
            dtypes[original] = str(tensors[original].dtype).removeprefix("torch.")
    layout = {
        "file": file,
        "wrapper": path,
        "copies": copies,
        "prefix": prefix,
        "rename": rename,
        "model_only": model_only,
        "original_only": sorted(str(k) for k in flat if k not in used),
        "dtypes": dtypes,
    }
    # Verify: the record rebuilds exactly the tensors the loader read.
    rebuilt = _flat_original(model_state, layout)
    for key, value in rebuilt.items():
        if not torch.equal(value, flat[key].to(value.dtype)):
            raise LayoutError(f"{where}: the recorded key layout does not reproduce {key!r}")
    return layout


def _flat_original(state: Mapping[str, Tensor], layout: Mapping[str, Any]) -> dict[str, Tensor]:
    rename, skip, dtypes = layout.get("rename") or {}, set(layout.get("model_only") or ()), layout.get("dtypes") or {}
    flat: dict[str, Tensor] = {}
    for key in state:
        if key in skip:
            continue
        original = rename.get(key, key)
        value = state[key].detach().cpu().contiguous()
        if original in dtypes:
            value = value.to(getattr(torch, dtypes[original]))
        flat[original] = value
    return flat


def to_original(state: Mapping[str, Tensor], layout: Mapping[str, Any]) -> dict[str, Any]:
    """The network's ``state`` (its own keys) as the original checkpoint stored it: a (nested) dict of tensors."""
    prefix = str(layout.get("prefix") or "")
    obj: dict[str, Any] = {prefix + k: v for k, v in _flat_original(state, layout).items()}
    wrapper = list(layout.get("wrapper") or [])
    if wrapper:
        inner = obj
        obj = {wrapper[-1]: inner, **{k: dict(inner) for k in layout.get("copies") or []}}
        for key in reversed(wrapper[:-1]):
            obj = {key: obj}
    return obj


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Tensor]:
    flat: dict[str, Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def write_original(state: Mapping[str, Tensor], layout: Mapping[str, Any], path: str | os.PathLike,
                   metadata: Mapping[str, str] | None = None) -> str:
    """Write ``state`` in the original layout; returns a one-line description of what was written.

    ``.pth``/``.pt``: ``torch.save`` of plain dicts of tensors (``torch.load(weights_only=True)`` reads
    it). ``.safetensors``: the state dict itself, flat (a safetensors file cannot nest, so a wrapper
    such as ``params_ema`` is left out; spandrel and BasicSR read either), with ``metadata`` as the
    file's string metadata. Written atomically (a temporary file, then a rename).
    """
    from safetensors.torch import save_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"cannot write {path}: the original key layout is written as .pth or .safetensors")
    obj = to_original(state, layout)
    wrapper, prefix = list(layout.get("wrapper") or []), str(layout.get("prefix") or "")
    parts = []
    if wrapper and suffix == ".safetensors":
        parts.append(f"flat: the original's {'/'.join(wrapper)} wrapper left out, as safetensors files cannot nest")
    elif wrapper:
        copies = layout.get("copies") or []
        parts.append(f"under {'/'.join(wrapper)}{' and ' + ', '.join(copies) if copies else ''}")
    if prefix:
        parts.append(f"key prefix {prefix!r}")
    if layout.get("rename"):
        parts.append(f"{len(layout['rename'])} keys renamed back to the original's names")
    if layout.get("model_only"):
        parts.append(f"{len(layout['model_only'])} tensors the original lacks left out")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if suffix == ".safetensors":
            inner = obj
            for key in wrapper:
                inner = inner[key]
            save_file({k: v.contiguous() for k, v in inner.items()}, str(tmp), metadata=dict(metadata or {}))
        else:
            torch.save(obj, tmp)
        move_into_place(tmp, path)  # the umask's mode (save_file writes 0600)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ", ".join(parts) or "the same keys"


def base_state_from_tuned(state: Mapping[str, Tensor], targets: Iterable[str]) -> dict[str, Tensor]:
    """The base network's tensors (its own keys) among a tuned file's tensors: the network at alpha 0.

    A method puts a layer in place of each target module and keeps the original as that layer's
    ``base`` child, so the base's ``a.b.weight`` of target ``a.b`` is stored as ``a.b.base.weight``
    (nested targets: a ``base`` after each; the root as the target: ``base.`` in front). Everything
    else a layer holds (the tuner) is left out.
    """
    targets = set(targets)
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        parts = name.split(".")
        i = 0
        if "" in targets:
            if parts[0] != "base":
                continue
            i = 1
        kept: list[str] = []
        tuner = False
        while i < len(parts) - 1:
            kept.append(parts[i])
            i += 1
            if ".".join(kept) in targets:
                if parts[i] != "base":
                    tuner = True
                    break
                i += 1
        if not tuner:
            out[".".join([*kept, parts[-1]])] = value
    return out
