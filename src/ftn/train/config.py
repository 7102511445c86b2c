"""The training recipe: one dataclass, read from YAML, overridable from the command line.

A run is described completely by a :class:`TrainConfig`; the same object is written to the run folder
(``config.yaml``), into every checkpoint and into the model file's metadata (``"recipe"``), so a model
says how it was made.

YAML example (``configs/denoise-base.yaml``)::

    name: denoise-base
    stage: base            # "base": train a whole network at one level; "tuner": stage 2
    task: denoise
    level: 20
    arch: adafm_net
    arch_options: {size: mini, image_skip: true}
    train_data: ../shared/data/train/BSD432
    lr: 1.0e-3

``train_data`` has no default: every config names its training images.

Overrides are ``key=value`` strings, the value parsed as YAML: ``iterations=100``,
``arch_options.channels=16``, ``val_data=null``. Relative paths (data folders, ``base``, ``out_dir``)
are relative to the current working directory, not to the config file.

Numbers written like ``1e-3`` are strings to YAML 1.1 (it wants ``1.0e-3``); float fields accept
them anyway.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = ["TrainConfig", "load_config", "config_to_dict", "validate_config", "parse_override"]


@dataclass
class TrainConfig:
    """Everything one training run needs. See ``configs/*.yaml`` for commented examples."""

    # -- the run ----------------------------------------------------------------------------------
    name: str = "run"
    out_dir: str | None = None  # None: runs/<name>
    stage: Literal["base", "tuner"] = "base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default

    # -- what to learn ----------------------------------------------------------------------------
    task: str = "denoise"
    task_options: dict = field(default_factory=dict)  # get_task(task, **task_options)
    level: float | dict | None = None  # None: task.default_levels[0] (base) or [1] (tuner); restore: {sigma, quality}

    # -- the network --------------------------------------------------------------------------------
    arch: str = "adafm_net"  # base stage; the tuner stage takes arch and options from the base file
    arch_options: dict = field(default_factory=dict)
    base: str | None = None  # tuner stage: the stage-1 model.safetensors
    init: str | None = None  # base stage: start from this model file's weights (fine-tuning), not at random
    method: str = "ftn"  # tuner stage: ftn, dni, adafm, cfsnet, dynamic_net
    method_options: dict = field(default_factory=dict)  # e.g. {groups: 16}
    targets: str | list[str] | None = None  # passed to ftn.attach
    exclude: str | list[str] | None = None

    # -- data ---------------------------------------------------------------------------------------
    train_data: str | None = None  # required: a folder of training images (no default location)
    train_max_images: int | None = None
    grey: bool = False
    val_data: str | None = None
    val_levels: list[float] | None = None  # extra levels to validate at, besides the trained one
    val_every: int = 500
    val_limit: int | None = 5  # images of val_data (None: all)
    patch_size: int = 64
    batch_size: int = 16  # the global batch, split over processes

    # -- optimisation -------------------------------------------------------------------------------
    iterations: int = 2400
    lr: float = 1e-3
    lr_min: float = 1e-6
    scheduler: Literal["cosine", "constant"] = "cosine"
    warmup: int = 0  # linear warm-up iterations
    betas: tuple[float, float] = (0.9, 0.999)  # Adam
    weight_decay: float = 0.0  # Adam's (L2) weight decay
    grad_clip: float | None = None  # max global grad norm
    loss: Literal["l1", "l2"] = "l1"
    channels_last: bool = False
    # bf16 autocast of the forward pass and the loss (no loss scaling needed): for a lent GPU, where it
    # roughly doubles the throughput; may be switched on or off when a run resumes on another machine
    amp: bool = False

    # -- bookkeeping --------------------------------------------------------------------------------
    checkpoint_every: int = 200
    log_every: int = 10


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)

#: A config file is a page of keys: these bounds are far above any real one. YAML aliases let a few
#: hundred bytes name billions of values (``b: [*a, *a, ...]``, nested), so the size that counts is
#: the expanded one, measured without expanding.
_MAX_CHARS = 1_000_000
_MAX_VALUES = 100_000


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters; containers are only counted."""
    if isinstance(value, (list, tuple, dict)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _too_many_values(tree: Any, limit: int = _MAX_VALUES) -> bool:
    """Whether ``tree`` holds more than ``limit`` values once aliases are expanded; stops counting at the limit."""
    count, stack = 0, [tree]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _read_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` of a config or an override, refused when it is (or expands to) more than a config holds.

    Raises:
        ValueError: not valid YAML, over :data:`_MAX_CHARS` characters or :data:`_MAX_VALUES`
            values after alias expansion (one line).
    """
    if len(text) > _MAX_CHARS:
        raise ValueError(f"{where}{len(text)} characters is too large for a config (at most {_MAX_CHARS})")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{where}not valid YAML ({_short(' '.join(str(err).split()), 300)})") from None
    except RecursionError:  # "[[[[..." deeper than the parser goes
        raise ValueError(f"{where}not valid YAML (nested too deeply)") from None
    if _too_many_values(loaded):
        raise ValueError(f"{where}more than {_MAX_VALUES} values once its aliases (*name) are expanded; "
                         "a config is far smaller (an alias bomb?)")
    return loaded


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """A plain, YAML- and JSON-ready dict of the config (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    return {name: plain(getattr(config, name)) for name in _FIELDS}


def _unknown_key_message(key: str, known: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"known keys: {', '.join(known)}"
    return f"{where}unknown config key {_short(key)}; {hint}"


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        inner = ", ".join(_describe(a) for a in args)
        return f"a list of {inner}" if origin is list else f"a list of {len(args)} ({inner})"
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false", dict: "a mapping"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` checked against the type ``tp`` (light conversions only); TypeError if it does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except TypeError:
                pass
        raise TypeError
    if origin is Literal:
        if value in args:
            return value
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value  # ints stay ints: levels like sigma 20 read as 20, not 20.0
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if tp is dict or origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise TypeError
    if origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(v, args[0]) for v in value]
        raise TypeError
    if origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(v, a) for v, a in zip(value, args))
        raise TypeError
    raise AssertionError(f"no checker for type {tp!r}")  # pragma: no cover - a new field type


def _check_values(config: TrainConfig) -> None:
    """Range and consistency checks, each naming its key."""
    positive = ["iterations", "batch_size", "patch_size", "val_every", "checkpoint_every", "log_every"]
    for key in positive:
        if getattr(config, key) < 1:
            raise ValueError(f"config key {key!r} must be >= 1, got {getattr(config, key)}")
    for key in ("threads", "val_limit", "train_max_images"):
        value = getattr(config, key)
        if value is not None and value < 1:
            raise ValueError(f"config key {key!r} must be >= 1 or null, got {value}")
    if not config.lr > 0:
        raise ValueError(f"config key 'lr' must be > 0, got {config.lr}")
    if not 0 <= config.lr_min <= config.lr:
        raise ValueError(f"config key 'lr_min' must be in [0, lr], got {config.lr_min}")
    if not 0 <= config.warmup < config.iterations:
        raise ValueError(f"config key 'warmup' must be in [0, iterations), got {config.warmup}")
    if config.weight_decay < 0:
        raise ValueError(f"config key 'weight_decay' must be >= 0, got {config.weight_decay}")
    if config.grad_clip is not None and not config.grad_clip > 0:
        raise ValueError(f"config key 'grad_clip' must be > 0 or null, got {config.grad_clip}")
    if not all(0 <= b < 1 for b in config.betas):
        raise ValueError(f"config key 'betas' must be two numbers in [0, 1), got {list(config.betas)}")
    if config.stage == "tuner" and not config.base:
        raise ValueError("config key 'base' is required for stage 'tuner': the stage-1 model.safetensors")
    if config.init and config.stage != "base":
        raise ValueError("config key 'init' (start from a model's weights) is for stage 'base'; a tuner starts at the identity")
    if not config.train_data:
        raise ValueError("config key 'train_data' is required: the folder of training images, "
                         "e.g. train_data: ../shared/data/train/BSD432")
    if not config.name or "/" in config.name:
        raise ValueError(f"config key 'name' must be a non-empty name without '/', got {_short(config.name)}")


def validate_config(config: TrainConfig) -> TrainConfig:
    """A checked copy of ``config``: every field has its type, values are in range, out_dir is set.

    Raises ValueError naming the offending key.
    """
    values = {}
    for name, tp in _TYPES.items():
        value = getattr(config, name)
        try:
            values[name] = _coerce(value, tp)
        except TypeError:
            raise ValueError(f"config key {name!r} must be {_describe(tp)}, got {_short(value)}") from None
    checked = TrainConfig(**values)
    if checked.out_dir is None:
        checked.out_dir = str(Path("runs") / checked.name)
    _check_values(checked)
    return checked


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"arch_options.size=mini"`` -> (["arch_options", "size"], "mini"); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {_short(item)} is not of the form key=value")
    value = _read_yaml(raw, f"override {_short(item)}: the value is ") if raw.strip() else None
    return key.split("."), value


def _apply_override(data: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    head = path[0]
    if head not in _FIELDS:
        raise ValueError(_unknown_key_message(head, list(_FIELDS), f"override {_short(item)}: "))
    if len(path) == 1:
        data[head] = value
        return
    if _TYPES[head] is not dict:
        raise ValueError(f"override {_short(item)}: config key {head!r} is not a mapping, set it as {head}=VALUE")
    node = data.get(head)
    node = dict(node) if isinstance(node, dict) else {}
    data[head] = node
    for part in path[1:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[path[-1]] = value


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from the defaults when ``path`` is None) and apply overrides.

    ``name`` defaults to the file's stem, ``out_dir`` to ``runs/<name>``. Unknown keys and values of
    the wrong type raise ValueError naming the key (with close matches for misspelt keys).
    """
    data: dict[str, Any] = {}
    where = ""
    if path is not None:
        path = Path(path)
        where = f"{path}: "
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{where}not a text file") from None
        loaded = _read_yaml(text, where)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{where}a config must be a mapping of keys to values, found {type(loaded).__name__}")
        for key in loaded:
            if key not in _FIELDS:
                raise ValueError(_unknown_key_message(str(key), list(_FIELDS), where))
        data.update(loaded)
        data.setdefault("name", path.stem)
    for item in overrides:
        keys, value = parse_override(item)
        _apply_override(data, keys, value, item)
    try:
        return validate_config(TrainConfig(**data))
    except ValueError as err:
        raise ValueError(f"{where}{err}") from None
