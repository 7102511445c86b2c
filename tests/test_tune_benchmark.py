"""benchmarks/tune.py: the acceptance study of ``ftn tune`` on DnCNN-PyTorch, run as its ``--smoke`` plumbing.

The smoke run tunes for one step, so its numbers say nothing about quality; what it proves is that
every row of the report is produced from real files and that alpha 0 of each tuned file is the
published DnCNN-S-25 bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import tune as study

needs_files = pytest.mark.skipif(
    not (study.DNCNN_DIR.is_dir() and study.CBSD68.is_dir() and study.BSD432.is_dir()),
    reason=f"published DnCNN files, CBSD68 or BSD432 not found under {study.SHARED} (never shipped)",
)


@pytest.mark.parametrize(
    ("alpha", "expected_weight", "expected_mean"),
    [(0.0, 1.0, 0.0), (1.0, 3.0, 2.0), (0.5, 2.0, 1.0), (0.25, 1.5, 0.5)],
)
def test_dni_blend_mixes_every_float_tensor_and_keeps_counters(alpha: float, expected_weight: float,
                                                                expected_mean: float) -> None:
    a = {"w": torch.full((2,), 1.0), "bn.running_mean": torch.zeros(2), "bn.num_batches_tracked": torch.tensor(5)}
    b = {"w": torch.full((2,), 3.0), "bn.running_mean": torch.full((2,), 2.0), "bn.num_batches_tracked": torch.tensor(9)}
    out = study.dni_blend(a, b, alpha)
    assert torch.equal(out["w"], torch.full((2,), expected_weight))
    assert torch.equal(out["bn.running_mean"], torch.full((2,), expected_mean))
    assert int(out["bn.num_batches_tracked"]) == 5


@needs_files
def test_smoke_run_writes_every_row_and_alpha_zero_is_the_base(tmp_path: Path) -> None:
    out = tmp_path / "tune.md"
    # two of the four runs keep the test short (a step of the 17-layer base takes seconds here):
    # the noise spec form and the teacher form, the two ways level 2 is given
    assert study.main(["--smoke", "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--only", "ftn", "ftn-teacher"]) == 0
    text = out.read_text()
    assert "| model | sigma 25 | sigma 50 |" in text
    rows = [line.split(" | ")[0].removeprefix("| ") for line in text.splitlines() if line.startswith("| ")]
    for kind in ("DnCNN-S-25", "DnCNN-S-50", "DnCNN-B", "DNI of S-25 and S-50", "tuned: ftn", "tuned: ftn (calibrated)",
                 "tuned: ftn-teacher", "BM3D (told the sigma)"):
        assert kind in rows, (kind, rows)
    assert "tuned: ftn-teacher (calibrated)" not in rows  # its alpha 1 is the teacher, not a sigma
    assert "- ftn: yes" in text and "- ftn-teacher: yes" in text
    assert "sigma 50 within 0.3 dB of DnCNN-S-50" in text
    assert (tmp_path / "tune-crops.png").is_file()
    resources = json.loads((tmp_path / "runs" / "ftn" / "resources.json").read_text())
    assert resources["iterations"] == 1 and resources["peak_rss_mb"] > 0
    # a second run reuses every tuned file and cached evaluation: the report is the same
    assert study.main(["--smoke", "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--only", "ftn", "ftn-teacher"]) == 0
    def body(report: str) -> list[str]:
        return [line for line in report.splitlines() if not line.startswith("Written by")]  # it holds the date

    assert body(out.read_text()) == body(text)
