"""benchmarks/anchors.py: the two modes it compares start from the same place and its table is complete."""

from __future__ import annotations

import argparse

import pytest
import torch

import ftn
from benchmarks import anchors


@pytest.mark.parametrize("chained", [False, True])
def test_untrained_anchors_are_the_base(chained: bool) -> None:
    base = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, in_channels=3, out_channels=3).eval()
    model = anchors.build(base, chained).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        for k in range(len(anchors.ANCHORS)):
            assert torch.allclose(model(x, alpha={"sigma": float(k)}), base(x), atol=1e-6)


def test_table_has_every_row() -> None:
    levels = anchors.ANCHORS
    result = {"anchors": {a: 30.0 for a in levels},
              "between": {(a + b) / 2: (29.0, 1.5) for a, b in zip(levels, levels[1:])},
              "kinks": {a: {"output": 0.1, "psnr_slope_left": 1.0, "psnr_slope_right": 0.5} for a in levels[1:-1]}}
    args = argparse.Namespace(steps=1, batch=2, patch=16, seed=0, images=1, crop=16)
    text = anchors.to_markdown({"from the base": result, "chained": result}, args, {"from the base": [1.0], "chained": [2.0]})
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(levels) + (len(levels) - 1) + 2 * (len(levels) - 2) + 1
    assert "| kink of the output at sigma 35 | 0.100 | 0.100 |" in text
