"""Add the model-card fields a shipped model lacks (licence, date) to its file, tensors unchanged.

    python scripts/tag_shipped.py                  # every shipped model; then MANIFEST.tsv and docs/cards

Models shipped before ``scripts/ship_models.py`` recorded these fields (issue [5/6]: "shipped models
carry the metadata needed") get them here: the licence from pyproject.toml and the date the file was
committed (git), the day the model was shipped. Fields the file already has are kept. The tensors are
copied bit for bit (checked), the file is replaced atomically, and its MANIFEST line and card are
rewritten.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from ship_models import project_license, record_shipped, write_card  # noqa: E402

from ftn.io import move_into_place  # noqa: E402
from ftn.models import available  # noqa: E402


def shipped_date(path: Path) -> str | None:
    """The day ``path`` was last committed (YYYY-MM-DD), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out or None


def tag(path: Path) -> bool:
    """Add licence and date where missing; True when the file changed."""
    with safe_open(str(path), framework="pt") as f:
        raw = dict(f.metadata() or {})
    meta = json.loads(raw.get("ftn", "{}"))
    extra = {"license": project_license(), "date": shipped_date(path)}
    missing = {k: v for k, v in extra.items() if v and k not in meta}
    if not missing:
        return False
    tensors = load_file(str(path))
    meta.update(missing)
    tmp = path.with_name(f".{path.name}.tag.tmp")
    save_file(tensors, str(tmp), metadata={**raw, "ftn": json.dumps(meta, sort_keys=True)})
    again = load_file(str(tmp))
    if set(again) != set(tensors) or not all(torch.equal(again[k], tensors[k]) for k in tensors):
        tmp.unlink()
        raise SystemExit(f"tag_shipped: {path.name}: the tensors did not survive the rewrite; left unchanged")
    move_into_place(tmp, path)
    print(f"{path.name}: added {', '.join(f'{k} {v}' for k, v in missing.items())}")
    return True


def main() -> int:
    for path in sorted(available().values()):
        if tag(path):
            record_shipped(path)
        write_card(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
