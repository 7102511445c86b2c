"""The weight manifest: run weights stay out of git, the proof of what they were stays in it.

Each runs folder (a recipe's ``runs_dir``, or ``reproduce/runs/gan-ablation``) holds ``MANIFEST.tsv``,
one line per weight file of its runs, tab-separated::

    # run	file	sha256	bytes
    denoise/ftn	model.safetensors	3f1c...	663444

``run`` is the run's folder relative to the manifest's folder. :func:`record_weights` adds or updates
the lines of the weights it finds (training calls it when a run finishes) and keeps the lines of
weights that are absent: they are the evidence once the files are gone. Checkpoints get no line
(an unfinished run is not evidence).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.reproduce.cache import sha256_file

MANIFEST = "MANIFEST.tsv"
HEADER = "# run\tfile\tsha256\tbytes"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One manifest line: the weight ``file`` of ``run`` had this ``sha256`` and size."""

    run: str
    file: str
    sha256: str
    bytes: int


def read_manifest(root: Path) -> dict[tuple[str, str], Entry]:
    """The lines of ``<root>/MANIFEST.tsv`` by (run, file); empty when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 4 or not parts[3].isdigit():
            raise ValueError(f"{path}:{number}: expected 'run<TAB>file<TAB>sha256<TAB>bytes', got {line!r}")
        entry = Entry(parts[0], parts[1], parts[2], int(parts[3]))
        entries[(entry.run, entry.file)] = entry
    return entries


def _is_weight(path: Path) -> bool:
    return path.is_file() and path.suffix in WEIGHT_SUFFIXES and not path.name.startswith("checkpoint")


def record_weights(root: Path, run_dirs: Iterable[Path] | None = None) -> list[Entry]:
    """Add or update the manifest lines of the weight files under ``root`` (of ``run_dirs`` only, when
    given: a run that just finished); lines of weights that are absent stay. Returns the lines written."""
    entries = read_manifest(root)
    dirs = [root] if run_dirs is None else list(run_dirs)
    for folder in dirs:
        for weight in sorted(p for p in folder.rglob("*") if _is_weight(p)):
            rel = weight.relative_to(root)
            entry = Entry(rel.parent.as_posix(), weight.name, sha256_file(weight), weight.stat().st_size)
            entries[(entry.run, entry.file)] = entry
    if not entries:
        return []
    lines = [HEADER] + [f"{e.run}\t{e.file}\t{e.sha256}\t{e.bytes}" for _, e in sorted(entries.items())]
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text("\n".join(lines) + "\n")
    return [e for _, e in sorted(entries.items())]


def find_entry(weight: Path) -> Entry | None:
    """The manifest line of ``weight``, from the nearest ``MANIFEST.tsv`` two or three folders up
    (``<root>/<run>/`` or ``<root>/<task>/<run>/``); None when there is no such line."""
    for root in weight.parents[1:3]:
        if (root / MANIFEST).is_file():
            rel = weight.relative_to(root)
            return read_manifest(root).get((rel.parent.as_posix(), weight.name))
    return None


def weight_sha256(weight: Path) -> str | None:
    """The sha256 of ``weight``: of the file when it is here, else its manifest line's; None if neither."""
    if weight.is_file():
        return sha256_file(weight)
    entry = find_entry(weight)
    return None if entry is None else entry.sha256


def missing_weight(run: Any, what: str) -> SystemExit:
    """The one-line refusal when ``what`` needs the weight of ``run`` and it is absent: which run, and how
    to train it again."""
    return SystemExit(f"reproduce: {what} needs the weight of {run.key} ({run.model_path}), which is absent; "
                      f"retrain with: {run.retrain_command}")


def model_sha256(run: Any) -> str:
    """The sha256 that keys the caches of ``run`` (a :class:`~benchmarks.reproduce.recipe.Run`)."""
    sha = weight_sha256(run.model_path)
    if sha is None:
        raise missing_weight(run, "its evaluation")
    return sha


def require_weight(run: Any, what: str) -> None:
    """Refuse in one line when ``what`` (a cache miss, a figure) needs the absent weight of ``run``."""
    if not run.model_path.is_file():
        raise missing_weight(run, what)
