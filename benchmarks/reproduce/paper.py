"""The paper's numbers (``paper.yaml`` beside this module, typed from ../shared/paper/ftn-paper.txt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")


def load_paper(path: Path = PAPER_FILE) -> dict[str, Any]:
    """The paper's tables and figure claims: ``table1``, ``table2``, ``table3`` (numbers), ``fig5``,
    ``fig6``, ``fig78`` (sentences), as the report quotes them."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not {"table1", "table2", "table3"} <= set(data):
        raise ValueError(f"{path}: expected the paper's table1, table2 and table3")
    return data
