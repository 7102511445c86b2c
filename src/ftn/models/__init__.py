"""Models shipped inside the package: every ``*.safetensors`` file in this folder, by file stem.

``ftn run --model denoise`` finds ``src/ftn/models/denoise.safetensors``; a path to any model file
works too::

    from ftn import models
    models.available()            # {"denoise": Path(".../ftn/models/denoise.safetensors"), ...}
    ftn.load(models.resolve("denoise"))
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available", "resolve", "MODELS_DIR"]

#: The folder the shipped model files live in.
MODELS_DIR = Path(__file__).resolve().parent

_SUFFIX = ".safetensors"


def available() -> dict[str, Path]:
    """The shipped models, name (file stem) -> path, sorted by name."""
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*" + _SUFFIX)) if p.is_file()}


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The model file for an existing file path or a shipped model's name.

    A path that exists wins over a shipped name. ``"denoise"`` and ``"denoise.safetensors"`` both
    name the shipped ``denoise`` model.

    Raises:
        FileNotFoundError: neither a file nor a shipped name; the message lists the shipped names.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise FileNotFoundError(f"model {text!r} is a folder, not a model file")
    shipped = available()
    name = text[: -len(_SUFFIX)] if text.endswith(_SUFFIX) else text
    if name in shipped and os.sep not in text and (os.altsep is None or os.altsep not in text):
        return shipped[name]
    names = ", ".join(shipped) if shipped else "none"
    raise FileNotFoundError(f"no model file at {text!r} and no shipped model of that name (shipped: {names})")
