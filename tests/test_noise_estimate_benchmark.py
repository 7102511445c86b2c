"""benchmarks/noise_estimate.py on one CBSD68 image: every cell in the table, the file's reading beats the pixels'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import noise_estimate as bench
from benchmarks.quality import SHARED


@pytest.mark.skipif(not (SHARED / "CBSD68").is_dir(), reason=f"test images not found at {SHARED / 'CBSD68'}")
def test_one_image_every_cell(tmp_path: Path) -> None:
    out = tmp_path / "n.md"
    assert bench.main(["--images", "1", "--out", str(out)]) == 0
    text, record = out.read_text(), json.loads(out.with_suffix(".json").read_text())
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(bench.SIGMAS) * len(bench.QUALITIES) == len(record["rows"])
    for row in record["rows"]:
        if row["quality"] is None:  # a PNG is read from its pixels either way
            assert row["file"] == row["pixels"]
        elif row["sigma"] >= 15:  # under JPEG the pixels lose the noise; the file keeps it
            assert abs(row["file"][0] - row["sigma"]) < abs(row["pixels"][0] - row["sigma"])
    assert "mean absolute error is" in text
