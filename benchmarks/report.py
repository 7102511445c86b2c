"""Where a benchmark's results go: the markdown printed, and written with its JSON beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_and_write(text: str, result: Any, out: str) -> None:
    """Print ``text``; unless ``out`` is ``-``, write it to ``out`` and ``result`` to the ``.json`` beside it."""
    print(text)
    if out != "-":
        path = Path(out)
        path.write_text(text + "\n")
        path.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
