"""Training checkpoints: everything a run needs to continue exactly, in one safetensors file, no pickle.

Layout of ``checkpoint.safetensors``:

* tensors ``model/<key>``: the model's state dict (plain or tunable, base included);
* tensors ``optim/<param index>/<name>``: the tensor entries of ``optimizer.state_dict()["state"]``
  (Adam's ``exp_avg``, ``exp_avg_sq``, ``step``);
* tensors ``rng/cpu`` and ``rng/cuda/<i>``: torch's random generator states (uint8);
* tensors ``objective/<i>``: what the task's objective learns besides the network (a GAN
  discriminator and its optimiser), its non-tensor parts in the JSON as ``objective``;
* metadata ``ftn_checkpoint``: JSON with the step, the elapsed wall time, the config, the optimizer's
  non-tensor state (``param_groups`` and any non-tensor per-parameter entries) and the scheduler's
  state dict.

Writes are atomic: the file is written to a temporary name in the same folder, flushed to disk and
moved over the old one with ``os.replace``, so a crash at any moment leaves the old checkpoint or the
new one, never a torn file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..io import move_into_place, temporary_beside

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_info", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ftn-train/1"
_META_KEY = "ftn_checkpoint"


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensor entries (for safetensors) and the rest (for JSON) of ``optimizer.state_dict()``."""
    tensors: dict[str, Tensor] = {}
    rest: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        rest[str(index)] = {}
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{index}/{name}"] = value
            else:
                rest[str(index)][name] = value
    return tensors, {"state": rest, "param_groups": state_dict["param_groups"]}


def _join_optimizer_state(tensors: dict[str, Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(entries) for i, entries in info["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    groups = []
    for group in info["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):  # JSON has no tuples
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _split_tree(tree: Any, tensors: dict[str, Tensor], prefix: str) -> Any:
    """A JSON-ready copy of a nested dict/list ``tree``; its tensors go to ``tensors`` by reference."""
    if isinstance(tree, Tensor):
        key = f"{prefix}/{len(tensors)}"
        tensors[key] = tree
        return {"__tensor__": key}
    if isinstance(tree, dict):
        if tree and all(isinstance(k, int) for k in tree):  # optimizer states are keyed by int
            return {"__int_keys__": {str(k): _split_tree(v, tensors, prefix) for k, v in tree.items()}}
        return {str(k): _split_tree(v, tensors, prefix) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split_tree(v, tensors, prefix) for v in tree]
    return tree


def _join_tree(tree: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__int_keys__"}:
            return {int(k): _join_tree(v, tensors) for k, v in tree["__int_keys__"].items()}
        return {k: _join_tree(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join_tree(v, tensors) for v in tree]
    return tree


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_atomically(tensors: dict[str, Tensor], metadata: dict[str, str], path: Path) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path, prefix=f".{path.name}.")
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        move_into_place(tmp, path)  # the umask's mode, not save_file's 0600
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    elapsed_s: float,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    objective_state: dict[str, Any] | None = None,
) -> None:
    """Write the training state after ``step`` completed iterations to ``path``, atomically.

    ``model`` is the bare module (not a DistributedDataParallel wrapper); ``extra`` is any JSON-ready
    dict the loop wants back on resume; ``objective_state`` is ``Objective.checkpoint_state()`` (nested
    dicts and lists of tensors and plain values).
    """
    tensors: dict[str, Tensor] = {f"model/{k}": v for k, v in model.state_dict().items()}
    optim_tensors, optim_info = _split_optimizer_state(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng/cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    objective_json = _split_tree(objective_state or {}, tensors, "objective")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    info = {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "elapsed_s": float(elapsed_s),
        "config": config,
        "optimizer": optim_info,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": extra or {},
        "objective": objective_json,
    }
    _write_atomically(tensors, {_META_KEY: json.dumps(info)}, Path(path))


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The fields every checkpoint's JSON has, and their types.
_FIELDS = {"step": int, "elapsed_s": (int, float), "config": dict, "optimizer": dict}


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON part of a checkpoint (step, elapsed_s, config, ...), without loading tensors.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an empty, truncated or foreign file, or one whose JSON lacks a field (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as err:  # safetensors' own error: an empty, truncated or random file
        raise ValueError(f"{path}: not a readable training checkpoint ({_one_line(err)}); "
                         "start again without --resume (the folder's checkpoint is damaged)") from None
    if raw is None:
        raise ValueError(f"{path}: not an ftn training checkpoint (no {_META_KEY!r} metadata)")
    try:
        info = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"{path}: the checkpoint's {_META_KEY!r} metadata is not valid JSON") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise ValueError(f"{path}: checkpoint format {str(found)[:40]!r}, expected {CHECKPOINT_FORMAT!r}")
    for name, kind in _FIELDS.items():
        if not isinstance(info.get(name), kind) or isinstance(info.get(name), bool):
            raise ValueError(f"{path}: the checkpoint's {name!r} is missing or malformed")
    return info


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore ``model`` (and optimizer, scheduler, RNG when given) in place from ``path``.

    Returns the checkpoint's info: ``step`` (iterations completed), ``elapsed_s``, ``config``,
    ``extra``, ``objective_state`` (for ``Objective.load_checkpoint_state``).
    """
    info = read_checkpoint_info(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors' own error: data cut short after a valid header
        raise ValueError(f"{path}: the checkpoint's tensors cannot be read ({_one_line(err)})") from None
    rng = tensors.get("rng/cpu")
    if restore_rng and (rng is None or rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape):
        found = "none" if rng is None else f"{rng.dtype} {tuple(rng.shape)}"
        raise ValueError(f"{path}: the checkpoint's random generator state is {found}, "
                         f"expected uint8 {tuple(torch.get_rng_state().shape)}")
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    try:  # each part is checked by its loader; one that does not fit is a one-line error
        model.load_state_dict(model_state, strict=True)
        if optimizer is not None:
            optim_tensors = {k: v for k, v in tensors.items() if k.startswith("optim/")}
            optimizer.load_state_dict(_join_optimizer_state(optim_tensors, info["optimizer"]))
        if scheduler is not None and info.get("scheduler") is not None:
            scheduler.load_state_dict(info["scheduler"])
        info["objective_state"] = _join_tree(info.get("objective") or {}, tensors)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: the checkpoint does not fit this run ({type(err).__name__}: {_one_line(err)})") from None
    if restore_rng:
        torch.set_rng_state(rng)
        cuda_states = [tensors[f"rng/cuda/{i}"] for i in range(len(tensors)) if f"rng/cuda/{i}" in tensors]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    return info
