"""benchmarks/anchors.py: its arms start from the same place, its table is complete, and a tiny run
fills every column (the two-anchor arm included) with finite numbers."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

import ftn
from benchmarks import anchors


@pytest.mark.parametrize(("chained", "levels"), [(False, anchors.ANCHORS), (True, anchors.ANCHORS), (False, anchors.TWO)])
def test_untrained_anchors_are_the_base(chained: bool, levels: tuple[float, ...]) -> None:
    base = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, in_channels=3, out_channels=3).eval()
    model = anchors.build(base, chained, levels).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        for k in range(len(levels)):
            assert torch.allclose(model(x, alpha={"sigma": float(k)}), base(x), atol=1e-6)


@pytest.mark.parametrize(("level", "alpha"), [(20.0, 0.0), (27.5, 0.125), (35.0, 0.25), (50.0, 0.5), (65.0, 0.75), (80.0, 1.0)])
def test_linear_alpha_of_the_two_anchor_model(level: float, alpha: float) -> None:
    assert anchors.linear_alpha(level) == pytest.approx(alpha)


def _fake_results() -> dict:
    levels = anchors.ANCHORS
    multi = {"anchors": {a: 30.0 for a in levels},
             "between": {(a + b) / 2: (29.0, 1.5) for a, b in zip(levels, levels[1:])},
             "kinks": {a: {"output": 0.1, "psnr_slope_left": 1.0, "psnr_slope_right": 0.5} for a in levels[1:-1]}}
    two = {"levels": {lv: {"best": (28.0, 0.3), "linear": (27.5, 0.25)} for lv in anchors.levels_measured()},
           "kinks": {a: {"output": 0.01, "psnr_slope_left": 1.0, "psnr_slope_right": 1.0, "alpha": 0.25, "h": anchors.H_TWO}
                     for a in levels[1:-1]}}
    return {"from the base": multi, "chained": multi, anchors.TWO_NAME: two}


def test_table_has_every_row_and_column() -> None:
    levels = anchors.ANCHORS
    results = _fake_results()
    args = argparse.Namespace(steps=1, batch=2, patch=16, seed=0, images=1, crop=16)
    costs = {m: {case: 1.0 for case in anchors.cost_cases(anchors.TWO)} for m in results}
    text = anchors.to_markdown(results, args, {m: [1.0] for m in results}, costs)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| | from the base | chained | two anchors (20, 80) |"
    assert len(rows) == 1 + len(levels) + (len(levels) - 1) + 2 * (len(levels) - 2) + 1 + len(costs["chained"])
    assert all(row.count(" | ") == 3 for row in rows)
    assert "| kink of the output at sigma 35 | 0.100 | 0.100 | 0.010 (at 0.25, h 0.025) |" in text
    assert "| at anchor sigma 35 | 30.00 | 30.00 | 28.00 (0.3) / 27.50 (0.25) |" in text
    # the reading is computed: 30 - 28 at the inner levels, 29 - 28 between
    assert "from the base: +2.00 dB at the inner levels" in text and "+1.00 dB between" in text
    assert "the extra anchors pay:" in text


@pytest.fixture
def one_thread():
    """One torch thread: on a loaded machine two threads mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SHARED_DATA = anchors.TRAIN.is_dir() and anchors.TEST.is_dir()


@pytest.mark.skipif(not SHARED_DATA, reason=f"needs ../shared's BSD432 and CBSD68 ({anchors.SHARED} is absent)")
def test_smoke_run_fills_every_column(tmp_path: Path, one_thread: None) -> None:
    # the arms in two processes' worth of parts, merged: the path the full run takes to share the CPUs
    tiny = ["--steps", "1", "--images", "1", "--crop", "32", "--batch", "2", "--patch", "16"]
    assert anchors.main([*tiny, "--arm", "two", "--part", str(tmp_path / "two.json")]) == 0
    assert anchors.main([*tiny, "--arm", "from-base", "--arm", "chained", "--part", str(tmp_path / "multi.json")]) == 0
    out = tmp_path / "anchors.md"
    assert anchors.main(["--merge", str(tmp_path / "two.json"), str(tmp_path / "multi.json"), "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    header = next(line for line in out.read_text().splitlines() if line.startswith("| | "))
    assert header == f"| | from the base | chained | {anchors.TWO_NAME} |"
    assert out.with_suffix(".png").stat().st_size > 0
    results = data["results"]
    assert list(results) == ["from the base", "chained", anchors.TWO_NAME]
    numbers = json.dumps(results).replace("[", " ").replace("]", " ").replace(",", " ").replace("}", " ").split()
    values = [float(v) for v in numbers if v.replace(".", "").replace("-", "").replace("e", "").isdigit()]
    assert values and all(math.isfinite(v) for v in values)
    two = results[anchors.TWO_NAME]["levels"]
    assert set(two) == {str(lv) for lv in anchors.levels_measured()}
    at_80 = two["80.0"]["linear"]
    assert at_80[1] == 1.0
    for arm in ("from the base", "chained"):
        assert results[arm]["anchors"]["80.0"] != at_80[0]  # a different tuner reached sigma 80
        assert results[arm]["anchors"]["20.0"] == two["20.0"]["linear"][0]  # alpha 0 is the same base
    # per-pixel cost, counted: a number is the plain network; a map one convolution per anchor delta it touches
    assert list(data["costs"]["chained"].values()) == [1.0, 3.0, 4.0]
    assert list(data["costs"][anchors.TWO_NAME].values()) == [1.0, 2.0, 2.0]


@pytest.mark.parametrize("case", ["different settings", "an arm twice", "no two-anchor arm"])
def test_merge_refuses_parts_that_do_not_fit(tmp_path: Path, case: str) -> None:
    fake = _fake_results()
    settings = {"steps": 1, "batch": 2, "patch": 16, "images": 1, "crop": 16, "seed": 0}
    arms = {"different settings": ["chained", anchors.TWO_NAME], "an arm twice": ["chained", "chained", anchors.TWO_NAME],
            "no two-anchor arm": ["chained", "from the base"]}[case]
    parts = []
    for i, arm in enumerate(arms):
        entry = {"arm": arm, "result": anchors._plain_json(fake[arm]), "seconds": [1.0], "costs": {},
                 "args": {**settings, "seed": i if case == "different settings" else 0}}
        parts.append(tmp_path / f"{i}.json")
        parts[-1].write_text(json.dumps([entry]))
    with pytest.raises(SystemExit, match="anchors: "):
        anchors.merge(parts, tmp_path / "out.md")
    assert not (tmp_path / "out.md").exists()


def test_merge_names_the_source_of_parts_not_from_this_run(tmp_path: Path) -> None:
    fake = _fake_results()
    settings = {"steps": 1, "batch": 2, "patch": 16, "images": 1, "crop": 16, "seed": 0}
    costs = {case: 1.0 for case in anchors.cost_cases(anchors.TWO)}
    parts = []
    for arm in fake:
        entry = {"arm": arm, "result": anchors._plain_json(fake[arm]), "seconds": [1.0], "costs": costs, "args": settings}
        if arm != anchors.TWO_NAME:
            entry["source"] = "an earlier run"
        parts.append(tmp_path / f"{len(parts)}.json")
        parts[-1].write_text(json.dumps([entry]))
    text = anchors.merge(parts[::-1], tmp_path / "out.md")  # the table keeps the arms' order whatever the parts'
    assert "The column(s) *from the base* and *chained* hold the numbers of an earlier run" in text
    assert "(measured in different runs, under different loads)" in text
    assert json.loads((tmp_path / "out.json").read_text())["sources"] == {"from the base": "an earlier run",
                                                                          "chained": "an earlier run"}
    assert next(line for line in text.splitlines() if line.startswith("| | ")).endswith(f"| {anchors.TWO_NAME} |")
