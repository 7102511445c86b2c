"""The evaluation cache of the reproduce reports: JSON beside each run, keyed by a signature
(the model file's hash and the evaluation settings), so a report rebuilds without re-evaluating."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
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
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
