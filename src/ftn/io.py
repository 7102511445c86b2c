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

import copy
import json
import os
import tempfile
from collections.abc import Callable, Mapping
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
           "read_header", "check_structure", "build_checked", "describe_metadata", "short", "temporary_beside",
           "move_into_place",
           "UnknownArchitecture", "FORMAT"]

FORMAT = "ftn/1"
_RESERVED = {"format", "arch", "arch_options", "method", "method_options", "targets", "allow_extrapolation"}

#: How a weight may be stored, by the kind of tensor the network holds there (safetensors' dtype
#: names). Floating weights in float32/16/bfloat16/64 only: bool, integer or fp8 "weights" are not
#: a model (and fp8 would be silently up-cast). Integer buffers (BatchNorm's counter) stay integers.
_STORED_AS = {
    "float": {"F32", "F16", "BF16", "F64"},
    "int": {"I64", "I32", "I16", "I8", "U8"},
    "bool": {"BOOL"},
}
_TORCH_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}
#: Metadata deeper than this is refused: ftn's own is at most four levels deep.
_MAX_DEPTH = 32


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages about values read from files.

    Containers are summarised by type and length, so a crafted value can neither flood a message
    nor recurse (a deeply nested list costs nothing here).
    """
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut(text: str, limit: int = 60) -> str:
    """A key or name from a file, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) nests deeper than ``limit``, checked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def describe_metadata(meta: Mapping[str, Any], *, max_string: int = 200, max_items: int = 50, max_chars: int = 20_000) -> str:
    """A model file's metadata as indented JSON for people (``ftn info``), bounded in every direction.

    Strings longer than ``max_string`` characters and lists or objects of more than ``max_items``
    entries are cut (and say so), nesting below :data:`_MAX_DEPTH` levels is summarised, and the
    whole text is at most ``max_chars`` characters, so no file can make it print without end.
    """
    def bounded(value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return value if len(value) <= max_string else value[:max_string] + f"... ({len(value)} characters)"
        if isinstance(value, (dict, list)) and depth >= _MAX_DEPTH:
            return f"<{short(value)}, nested too deeply to show>"
        if isinstance(value, dict):
            items = list(value.items())
            shown = {str(bounded(k, depth + 1)): bounded(v, depth + 1) for k, v in items[:max_items]}
            if len(items) > max_items:
                shown["..."] = f"{len(items) - max_items} more entries"
            return shown
        if isinstance(value, list):
            shown = [bounded(v, depth + 1) for v in value[:max_items]]
            return shown + [f"... {len(value) - max_items} more items"] if len(value) > max_items else shown
        return value

    text = json.dumps(bounded(dict(meta), 0), indent=2)
    return text if len(text) <= max_chars else text[:max_chars] + f"\n... ({len(text) - max_chars} more characters)"


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (os.umask both sets and reads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_beside(path: str | os.PathLike, *, prefix: str | None = None) -> Path:
    """A new, empty temporary file in ``path``'s folder, to write and then ``os.replace`` onto ``path``.

    Its mode is what a plain ``open(path, "w")`` would give (0o666 less the umask), not the 0o600 of
    ``tempfile.mkstemp``, which ``os.replace`` would otherwise carry to the final file. Its name is
    ``prefix`` (default ``"<name>."``), random characters and ``.tmp``.
    """
    path = Path(path)
    prefix = path.name + "." if prefix is None else prefix
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def move_into_place(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """``os.replace(tmp, path)``, first giving ``tmp`` the umask's mode (0o666 less the umask).

    Writers such as safetensors' ``save_file`` create their file with mode 0o600 whatever the umask,
    and ``os.replace`` keeps it: models, checkpoints and reports would be unreadable to the group
    that reads the images written beside them.
    """
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


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
    tmp = temporary_beside(path)
    try:
        save_file(tensors, tmp, metadata={"ftn": json.dumps(meta)})
        move_into_place(tmp, path)
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
    except RecursionError:  # "[[[[...": Python's parser gives up before the file does
        raise ValueError(f"{path}: the 'ftn' metadata is nested too deeply (a model's is at most {_MAX_DEPTH} levels)") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the 'ftn' metadata must be a JSON object")
    if _depth_exceeds(meta, _MAX_DEPTH):
        raise ValueError(f"{path}: the 'ftn' metadata is nested too deeply (a model's is at most {_MAX_DEPTH} levels)")
    return meta


def read_header(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each tensor of a safetensors file as (shape, dtype name such as ``"F32"``), from the header alone.

    No tensor data is read, so a file can be checked against a network before anything is allocated.

    Raises:
        ValueError: not a safetensors file (one line).
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            header = {}
            for key in f.keys():
                piece = f.get_slice(key)
                header[key] = (tuple(piece.get_shape()), str(piece.get_dtype()))
            return header
    except Exception as err:  # safetensors' own error type
        raise ValueError(f"{path}: not a safetensors model file ({short(' '.join(str(err).split()), 200)})") from None


def _kind(dtype: torch.dtype) -> str:
    return "float" if dtype.is_floating_point else "bool" if dtype == torch.bool else "int"


def check_structure(meta: Mapping[str, Any], where: str | os.PathLike) -> None:
    """Refuse metadata whose structure fields are not what :func:`save` writes, before anything is built.

    ``arch`` and ``method`` are strings, ``arch_options`` and ``method_options`` objects of short
    scalars, ``targets`` a list of strings and ``allow_extrapolation`` a JSON boolean (``"no"`` is
    not false). Sizes within limits are checked by the architectures themselves (``ftn.archs``).

    Raises:
        ValueError: one line naming the field, never printing more than a short piece of its value.
    """
    for key in ("arch", "method"):
        if meta.get(key) is not None and not (isinstance(meta[key], str) and len(meta[key]) <= 100):
            raise ValueError(f"{where}: metadata {key!r} must be a short string, got {short(meta[key])}")
    for key in ("arch_options", "method_options"):
        options = meta.get(key)
        if options is None:
            continue
        if not isinstance(options, dict):
            raise ValueError(f"{where}: metadata {key!r} must be an object, got {short(options)}")
        for name, value in options.items():
            if len(name) > 100 or not (value is None or isinstance(value, (bool, int, float)) or
                                       (isinstance(value, str) and len(value) <= 100)):
                raise ValueError(f"{where}: metadata {key}[{short(name, 40)}] must be a number, a boolean or a short string, "
                                 f"got {short(value)}")
    targets = meta.get("targets")
    if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise ValueError(f"{where}: metadata 'targets' must be a list of layer names, got {short(targets)}")
    if not isinstance(meta.get("allow_extrapolation", False), bool):
        raise ValueError(f"{where}: metadata 'allow_extrapolation' must be true or false, got {short(meta['allow_extrapolation'])}")


def _meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers live on the meta device (no memory for data)."""
    memo: dict[int, Any] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(empty, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty
    return copy.deepcopy(module, memo)


def _network(result: nn.Module) -> nn.Module:
    """The module holding every tensor of a loaded result (a tunable model's wrapped network)."""
    return result.model if isinstance(result, (TunableModel, AxesModel)) else result


def _fit_problems(header: Mapping[str, tuple[tuple[int, ...], str]], expected: Mapping[str, Tensor]) -> list[str]:
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong_shape = [k for k in expected if k in header and header[k][0] != tuple(expected[k].shape)]
    wrong_dtype = [k for k in expected if k in header and header[k][1] not in _STORED_AS[_kind(expected[k].dtype)]]
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected {[_cut(k) for k in unexpected[:5]]}{' ...' if len(unexpected) > 5 else ''}")
    if wrong_shape:
        k = wrong_shape[0]
        parts.append(f"shape of {k!r} is {short(header[k][0])}, the network has {tuple(expected[k].shape)}")
    if wrong_dtype:
        k = wrong_dtype[0]
        allowed = sorted(_STORED_AS[_kind(expected[k].dtype)])
        parts.append(f"{k!r} is stored as {_cut(header[k][1], 20)}; weights must be one of {allowed}")
    return parts


def build_checked(
    build: Callable[[nn.Module | None], nn.Module],
    model: nn.Module | None,
    header: Mapping[str, tuple[tuple[int, ...], str]],
    where: str | os.PathLike,
) -> nn.Module:
    """``build(model)``, once on the meta device to check the file's tensors fit, then for real.

    ``build`` makes the full network (architecture from the metadata when ``model`` is None, method
    attached) and returns it; ``header`` is :func:`read_header` of the file. The meta build costs no
    memory for tensors, so a small file whose metadata asks for a huge network, or whose tensors
    are mis-shaped, zero-sized or stored as bool, integers or fp8, is refused before anything large
    is allocated; after the check the network is exactly as large as the file's tensors.

    Raises:
        ValueError: the tensors do not fit (one line naming missing, unexpected, mis-shaped and
            mis-typed keys), or ``build`` raised ValueError or TypeError on the meta device.
    """
    with torch.device("meta"):
        skeleton = build(_meta_copy(model) if model is not None else None)
    problems = _fit_problems(header, _network(skeleton).state_dict())
    if problems:
        raise ValueError(f"{where}: tensors do not fit the network: " + "; ".join(problems))
    return build(model)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pth``/``.pt`` read with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors' own error type: a damaged or foreign file
            raise ValueError(f"{path}: not a safetensors file ({short(' '.join(str(err).split()), 200)})") from None
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
        raise ValueError(f"{path}: not an ftn model file (metadata format {short(meta.get('format'))}, expected {FORMAT!r})")
    check_structure(meta, path)
    header = read_header(path)  # shapes and dtypes only: nothing is allocated before they are checked
    state: dict[str, Tensor] | None = None
    origin = base_record(meta)
    method = meta.get("method")
    targets = list(meta.get("targets") or [])
    if model is None and meta.get("arch") not in ARCHS and origin.get("kind") == "spandrel":
        from .external import base_state_from_tuned, rebuild_spandrel

        bad = [k for k, (_, dtype) in header.items() if dtype not in _STORED_AS["float"] | _STORED_AS["int"]]
        if bad:
            raise ValueError(f"{path}: {bad[0]!r} is stored as {header[bad[0]][1]}; weights must be one of {sorted(_STORED_AS['float'])}")
        state = read_state_dict(path)  # as large as the file: spandrel reads the sizes from the tensors
        model = rebuild_spandrel(origin, base_state_from_tuned(state, targets if method is not None else []), str(path))
    if model is None and meta.get("arch") not in ARCHS:
        raise ValueError(
            f"{path}: architecture {short(meta.get('arch'))} is not one of ftn's {sorted(ARCHS)}; "
            "pass an instance of the network as load(path, model=...)"
        )
    if method is not None and method not in METHODS:
        raise ValueError(f"{path}: unknown method {short(method)}; this ftn knows {sorted(METHODS)}")

    def build(base: nn.Module | None) -> nn.Module:
        base = build_arch(meta["arch"], **(meta.get("arch_options") or {})) if base is None else base
        if method is None:
            return base
        return attach(base, method, targets=targets or None, allow_extrapolation=meta.get("allow_extrapolation", False),
                      **(meta.get("method_options") or {}))

    try:
        result = build_checked(build, model, header, path)
    except TypeError as err:  # an option the architecture or method does not take
        raise ValueError(f"{path}: {err}") from None
    state = read_state_dict(path) if state is None else state
    _network(result).load_state_dict(state, strict=True)
    result.metadata = {k: v for k, v in meta.items() if k not in _RESERVED}
    return result


def load_tunable(path: str | os.PathLike) -> TunableModel | AxesModel:
    """:func:`load` for the places that need an alpha to set (``ftn run``, the app, ``ftn.restore``):
    a :class:`TunableModel` (one axis) or an :class:`~ftn.methods.axes.AxesModel` (several axes or
    anchors), never a plain network.

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
    if not isinstance(model, (TunableModel, AxesModel)):
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


def _check_sizes(state: Mapping[str, Tensor], path: Path) -> None:
    """Refuse tensors larger than the data behind them (a ``.pth`` can describe a huge tensor over a
    one-element storage with zero strides), so that what is built from their shapes is bounded by
    the file's size."""
    total = 0
    for key, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if size > tensor.untyped_storage().nbytes():
            raise ValueError(f"{path}: tensor {short(key, 60)} claims {tuple(tensor.shape)} but holds fewer values (a crafted file)")
        total += size
    if total > 2 * path.stat().st_size + (1 << 20):
        raise ValueError(f"{path}: its tensors claim {total} bytes, more than the file's {path.stat().st_size} can hold")


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
    _check_sizes(state, path)
    is_rrdbnet = "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state
    try:
        if arch in (None, "rrdbnet") and is_rrdbnet:
            arch, arch_options = "rrdbnet", {**_rrdbnet_options(state), **arch_options}
        elif arch in (None, "dncnn") and "dncnn.0.weight" in state and all(k.startswith("dncnn.") for k in state):
            arch, arch_options = "dncnn", {**_dncnn_options(state), **arch_options}
    except (KeyError, IndexError, ZeroDivisionError, ValueError) as err:  # keys of the layout with odd shapes
        if isinstance(err, ValueError):
            raise ValueError(f"{path}: {err}") from None
        raise ValueError(f"{path}: the tensors look like {'RRDBNet' if is_rrdbnet else 'DnCNN'} but their shapes do not "
                         f"fit it ({type(err).__name__} {short(str(err), 60)})") from None
    if arch is None:
        raise UnknownArchitecture(
            f"{path}: cannot tell the architecture from its keys ({[_cut(k) for k in sorted(state)[:3]]} ...); "
            f"pass arch= one of {sorted(ARCHS)} and its options"
        )
    for key in [k for k in state if k.endswith(".num_batches_tracked")]:
        if state[key].dim() != 0:
            raise ValueError(f"{path}: {key!r} must be a single counter, found shape {tuple(state[key].shape)}")
    with torch.device("meta"):
        try:
            skeleton = build_arch(arch, **arch_options)
        except TypeError as err:
            raise ValueError(f"{path}: {err}") from None
    expected = skeleton.state_dict()
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=value.dtype)  # files saved before PyTorch 0.4.1 lack the counter
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)}, network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    mistyped = [
        f"{k} {state[k].dtype}"
        for k, v in expected.items()
        if k in state and _TORCH_NAMES.get(state[k].dtype) not in _STORED_AS[_kind(v.dtype)]
    ]
    problems = [
        f"{what} {keys[:5]}{' ...' if len(keys) > 5 else ''}"
        for what, keys in (("missing", missing), ("unexpected", [_cut(k) for k in unexpected]),
                           ("mis-shaped", wrong), ("stored as a type weights are not (float32/16, bfloat16, float64)", mistyped))
        if keys
    ]
    if problems:
        raise ValueError(f"{path}: tensors do not fit {arch} {arch_options}: " + "; ".join(problems))
    network = build_arch(arch, **arch_options)  # for real, now that the file's tensors are known to fill it
    network.load_state_dict(state, strict=True)
    from .external import LayoutError, describe_layout

    try:
        network.checkpoint_layout = describe_layout(raw, network.state_dict(), file=path.suffix, wrappers=_WRAPPERS,
                                                    prefixes=("module.",), where=str(path))
    except LayoutError:  # keys that _unwrap strips one by one; the export then keeps ftn's own layout
        network.checkpoint_layout = None
    return network.eval()
