"""The evaluation cache of the reproduce reports: JSON beside each run, keyed by a signature
(the model's sha256 and the evaluation settings), so a report rebuilds without re-evaluating, and
without the weights (the sha256 then comes from the run's manifest line, :mod:`.manifest`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached(path: Path, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result at ``path`` if it was computed with exactly ``signature``, else None."""
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if data.get("signature") == signature:
            return data
    return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (the cache files' format)."""
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
