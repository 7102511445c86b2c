"""The per-pixel cost claim of multi-axis models (issue [4/6]): convolutions per tuned layer <= 1 + deltas."""

from __future__ import annotations

import pytest
import torch

from benchmarks import axes_cost


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (1.2, 1.8), (0.0, 4.0)])
def test_maps_span_their_range(low: float, high: float) -> None:
    setting = axes_cost.setting_for({"a": (low, high), "b": 0.5}, size=16)
    assert setting["b"] == 0.5
    assert torch.isclose(setting["a"].min(), torch.tensor(low)) and torch.isclose(setting["a"].max(), torch.tensor(high))


def test_per_layer_ratios_match_names() -> None:
    plain = {"Global": 10, "body": 6, "body.0.conv": 4, "head": 2}
    tuned = {"Global": 20, "model.body.0.conv": 8, "model.head": 6}
    assert axes_cost.per_layer_ratios(plain, tuned, ["body.0.conv", "head"]) == [2.0, 3.0]


def test_every_case_is_within_its_bound(tmp_path) -> None:
    out = tmp_path / "cost.md"
    assert axes_cost.main(["--size", "24", "--repeats", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Every case is at or under its bound." in text
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| D=") or line.startswith("| one axis")]
    assert len(rows) == len(axes_cost.CASES)
    for row in rows:
        measured, bound = float(row[3]), int(row[4])
        assert measured <= bound
        if "fixed setting" in row[1]:
            assert measured == 1.0  # one blended kernel: the plain network's convolutions
