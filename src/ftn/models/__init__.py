"""Models shipped inside the package: every ``*.safetensors`` file in this folder, by file stem.

``ftn run --model denoise`` finds ``src/ftn/models/denoise.safetensors``; a path to any model file
works too::

    from ftn import models
    models.available()            # {"denoise": Path(".../ftn/models/denoise.safetensors"), ...}
    ftn.load(models.resolve("denoise"))

``MANIFEST.tsv`` beside them lists each shipped file with its sha256 and size (written by
``scripts/ship_models.py``, checked by ``tests/test_shipped.py``): :func:`read_manifest`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available", "read_manifest", "resolve", "MANIFEST", "MODELS_DIR"]

#: The folder the shipped model files live in.
MODELS_DIR = Path(__file__).resolve().parent

#: The manifest of the shipped files: ``file<TAB>sha256<TAB>bytes`` lines under a ``#`` header.
MANIFEST = MODELS_DIR / "MANIFEST.tsv"
MANIFEST_HEADER = "# file\tsha256\tbytes"

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


def read_manifest(path: str | os.PathLike | None = None) -> dict[str, tuple[str, int]]:
    """The shipped files listed in the manifest: file name -> (sha256 hex digest, size in bytes).

    Raises:
        ValueError: a line is not ``file<TAB>sha256<TAB>bytes`` (the message names the line).
    """
    path = Path(path) if path is not None else MANIFEST
    entries: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or len(parts[1]) != 64 or not parts[2].isdigit():
            raise ValueError(f"{path}:{number}: expected 'file<TAB>sha256<TAB>bytes', got {line!r}")
        entries[parts[0]] = (parts[1], int(parts[2]))
    return entries
