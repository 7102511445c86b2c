"""Finding the files ftn needs but never ships or downloads: VGG weights, the NIQE model, style images.

Every asset is looked for in the same order, and the first place that is given wins:

1. an explicit argument (a function's ``path``, a task option such as ``vgg_weights``);
2. an environment variable (``FTN_VGG_WEIGHTS``, ``FTN_NIQE_PARAMS``, ``FTN_STYLES``);
3. the project's ``shared/`` folder beside a *source checkout* (``<checkout>/../shared/<name>``).

Step 3 only applies when ``ftn`` is imported from a source tree (``<root>/src/ftn`` with
``<root>/pyproject.toml``): an installed wheel lives in ``site-packages``, whose parents say nothing
about where the data is, so nothing is guessed there. A given argument or variable that names
nothing is an error, never a silent fall-back to another file.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AssetNotFoundError", "find_asset", "shared_folder", "source_checkout"]

#: The ``ftn`` package folder; tests point it elsewhere to simulate an installed layout.
_PACKAGE_DIR = Path(__file__).resolve().parent


class AssetNotFoundError(FileNotFoundError):
    """An asset was not found; the message names the three ways to provide it."""


def source_checkout(package_dir: Path | None = None) -> Path | None:
    """The repository root when ``ftn`` is imported from a source tree, else None.

    A source tree is ``<root>/src/ftn`` with ``<root>/pyproject.toml`` (this project's layout); a
    package in ``site-packages`` (an installed wheel) is not one.
    """
    pkg = Path(package_dir) if package_dir is not None else _PACKAGE_DIR
    root = pkg.parent.parent
    if pkg.name == "ftn" and pkg.parent.name == "src" and (root / "pyproject.toml").is_file():
        return root
    return None


def shared_folder(package_dir: Path | None = None) -> Path | None:
    """``<checkout>/../shared`` when ftn runs from a source checkout (existing or not), else None."""
    root = source_checkout(package_dir)
    return None if root is None else root.parent / "shared"


def find_asset(
    name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    env_var: str,
    what: str | None = None,
    option: str = "path=...",
    hint: str = "",
) -> Path:
    """The asset ``name`` (a path below ``shared/``, e.g. ``"metrics/niqe_pris_params.npz"``).

    Args:
        name: where the asset sits inside the project's ``shared/`` folder (a file or a folder).
        path: an explicit location; wins over everything else.
        env_var: the environment variable that may name the location (empty counts as unset).
        what: a few words for messages (default: ``name``).
        option: how a caller passes ``path`` explicitly, for the message (``"params=PATH"``).
        hint: one more sentence for the message (where to get the file, what it must hold).

    Returns:
        The existing path (a file or a folder, as ``name`` is).

    Raises:
        AssetNotFoundError: one line naming the argument, the variable and the ``../shared`` place.
    """
    what = what or name
    if path is not None:
        found = Path(path).expanduser()
        if not found.exists():
            raise _not_found(what, f"the given path {found} does not exist", name, env_var, option, hint)
        return found
    env = os.environ.get(env_var)
    if env:
        found = Path(env).expanduser()
        if not found.exists():
            raise _not_found(what, f"{env_var}={env} does not exist", name, env_var, option, hint)
        return found
    shared = shared_folder()
    if shared is not None and (shared / name).exists():
        return shared / name
    raise _not_found(what, f"no path given, {env_var} not set", name, env_var, option, hint)


def _not_found(what: str, why: str, name: str, env_var: str, option: str, hint: str) -> AssetNotFoundError:
    shared = shared_folder()
    if shared is not None:
        looked = f"put it at {shared / name} (the shared/ folder beside this source checkout)"
    else:
        looked = (f"put it at ../shared/{name} beside a source checkout "
                  f"(not looked for: ftn is installed at {_PACKAGE_DIR}, not in a source checkout)")
    message = f"{what} not found ({why}): pass {option}, set {env_var}=PATH, or {looked}."
    return AssetNotFoundError(f"{message} {hint}".rstrip())
