"""Model cards (``ftn info --card``, :mod:`ftn.cards`), tables of cases: every shipped model's card has
the fields zoos use, read from the file; a file that lacks a field says "not recorded" (never a guess);
hostile metadata is bounded and refused in one line; the committed cards in docs/cards match the cards
of the shipped files by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ftn
from ftn.cards import MAX_ITEMS, MAX_STRING, NOT_RECORDED, CardError, card_markdown, card_record
from ftn.cli import main
from ftn.info_cli import write_card
from ftn.levels import Levels
from ftn.models import available, read_manifest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(available())


def _record(meta: dict) -> dict:
    return card_record(meta, name="m", file_name="m.safetensors", size_bytes=10, sha256="0" * 64)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_has_a_full_card(name: str, tmp_path: Path) -> None:
    md_path, json_path = write_card(name, tmp_path)
    record = json.loads(json_path.read_text())
    meta = ftn.io.read_metadata(available()[name])
    sha, size = read_manifest()[f"{name}.safetensors"]
    assert record["resources"][0]["sha256"] == sha and record["resources"][0]["size"] == size
    assert record["architecture"] == meta["arch"]
    assert record["inputChannels"] == meta["arch_options"]["in_channels"] == record["outputChannels"]
    assert record["scale"] == meta["arch_options"].get("scale", meta.get("task_options", {}).get("scale", 1))
    assert record["dataset"] != NOT_RECORDED and record["trainingIterations"] != NOT_RECORDED
    axes = record["ftn"]["axes"]
    anchors = axes[0]["anchors"]  # alpha k = anchor k
    assert isinstance(axes, list) and [a["alpha"] for a in anchors] == list(range(len(anchors))) and len(anchors) >= 2
    assert (axes[0]["calibration"] == NOT_RECORDED) == (Levels.from_metadata(meta).axes[0].calibration is None)
    assert record["ftn"]["budget"]["steps"] != NOT_RECORDED
    for key in ("license", "author", "date"):  # recorded only where the file says
        assert record[key] == meta.get(key, NOT_RECORDED) or key == "date"
    text = md_path.read_text()
    for section in ("## Model details", "## Levels and calibration", "## Training", "## Measured quality", "## File", "## Use"):
        assert section in text
    assert sha in text and f"--model {name}" in text
    committed = ROOT / "docs" / "cards" / f"{name}-card.md"
    assert committed.is_file(), f"docs/cards has no card for the shipped model {name}: run ftn info --card {name} --out docs/cards"


def _tiny_file(path: Path, **metadata) -> Path:
    ftn.save(ftn.attach(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1)), "ftn"), path, **metadata)
    return path


def test_a_file_missing_fields_says_not_recorded(tmp_path: Path, capsys) -> None:
    model = _tiny_file(tmp_path / "bare.safetensors")
    assert main(["info", "--card", str(model), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "bare-card.json").read_text())
    for key in ("license", "author", "date", "architecture", "scale", "inputChannels", "outputChannels",
                "dataset", "trainingIterations", "trainingBatchSize", "pretrainedModelG"):
        assert record[key] == NOT_RECORDED, key
    for key in ("task", "budget", "quality", "axes"):
        assert record["ftn"][key] == NOT_RECORDED, key
    assert record["ftn"]["parameters"] == 3 * 3 * 9 + 3 + sum(p.numel() for p in ftn.attach(
        torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1)), "ftn").tuner_parameters())
    text = (tmp_path / "bare-card.md").read_text()
    assert "| licence | not recorded |" in text and "Quality: not recorded." in text
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("meta, key, want", [
    ({"license": "MIT", "author": "ftn project", "date": "2026-12-01"}, "license", "MIT"),
    ({"training_data": ["BSD432", "DIV2K"]}, "dataset", ["BSD432", "DIV2K"]),
    ({"recipe": {"train_data": "../shared/data/train/BSD432", "batch_size": 16, "patch_size": 64}}, "dataset", ["BSD432"]),
    ({"recipe": {"batch_size": 16}}, "trainingBatchSize", 16),
    ({"task": "denoise"}, "scale", 1),  # a denoiser keeps the size by what it is
    ({"task": "sr"}, "scale", NOT_RECORDED),  # an SR file that does not say its scale
    ({"task": "sr", "task_options": {"scale": 4}}, "scale", 4),
    ({"arch_options": {"in_channels": 1, "out_channels": 1}}, "inputChannels", 1),
    ({"arch_options": {"in_channels": float("nan")}}, "inputChannels", NOT_RECORDED),
    ({"training": {"legs": [{"steps": [0, 10], "seconds": 120, "device": "CPU x (1 threads)", "date": "2026-11-30"},
                            {"steps": [10, 20], "seconds": 60, "device": "NVIDIA H200", "date": "2026-12-01"}],
                   "iterations": 20}}, "date", "2026-12-01"),
])
def test_fields_come_from_the_metadata(meta: dict, key: str, want) -> None:
    assert _record(meta)[key] == want


def test_budget_minutes_per_device_from_the_legs() -> None:
    legs = [{"steps": [0, 10], "seconds": 120, "device": "CPU x (1 threads)"}, {"steps": [10, 20], "seconds": 60, "device": "NVIDIA H200"}]
    budget = _record({"training": {"legs": legs, "iterations": 20, "stage1": {"iterations": 30, "legs": legs}}})["ftn"]["budget"]
    assert budget["cpuMinutes"] == 4.0 and budget["gpuMinutes"] == 2.0
    assert budget["steps"] == {"stage 1 (base)": 30, "stage 2 (tuner)": 20}


@pytest.mark.parametrize("meta, pattern", [
    ({"license": 5}, "'license' must be a string"),
    ({"license": True}, "'license' must be a string"),
    ({"recipe": [1, 2]}, "'recipe' must be an object"),
    ({"training": "fast"}, "'training' must be an object"),
    ({"axes": "sigma"}, "levels: the model's 'axes' must be a list"),
    ({"axes": [{"name": "s", "anchors": [1, 1]}]}, "levels: .*strictly increasing"),
    ({"calibration": {"levels": [1], "alphas": [0]}, "levels": [{"sigma": 1}, {"sigma": 2}]}, "levels: .*calibration"),
    ({"quality": 3}, "'quality' must be an object"),
    ({"training_data": {"a": 1}}, "'training_data' must be a list"),
])
def test_hostile_metadata_is_refused_in_one_line(meta: dict, pattern: str) -> None:
    with pytest.raises(CardError, match=pattern) as info:
        _record(meta)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_hostile_metadata_is_bounded_and_escaped() -> None:
    meta = {"license": "x" * 1_000_000, "description": "line\n# heading | cell <script>alert(1)</script>",
            "training_data": [f"set{i}" for i in range(100_000)], "author": "a\r\nb",
            "quality": [{"metric": "PSNR", "value": 1e308, "note": "y" * 10_000}] * 1000,
            "method_options": {f"k{i}": i for i in range(10_000)}, "task_options": {"a": [[[[[[1]]]]]]}}
    record = _record(meta)
    assert len(record["license"]) < MAX_STRING + 40 and record["author"] == "a b"
    assert len(record["dataset"]) == MAX_ITEMS and len(record["ftn"]["quality"]) == MAX_ITEMS
    assert len(record["ftn"]["methodOptions"]) == MAX_ITEMS + 1
    assert len(json.dumps(record)) < 200_000
    text = card_markdown(record)
    assert len(text) < 200_000 and "<script>" not in text and "\n# heading" not in text
    assert "\\| cell" in text  # a pipe cannot open a table column


def test_refusals_write_nothing(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    hostile = _tiny_file(tmp_path / "hostile.safetensors", license=["MIT"])
    model = _tiny_file(tmp_path / "ok.safetensors")
    out = tmp_path / "out"
    out.mkdir()
    for argv, pattern in ([str(junk), "--out", str(out)], "not a safetensors"), \
                         ([str(hostile), "--out", str(out)], "'license' must be a string"), \
                         ([str(model), "--out", str(tmp_path / "missing")], "output folder does not exist"), \
                         (["no-such-model", "--out", str(out)], "no shipped model"):
        assert main(["info", "--card", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("ftn info: error:") and "\n" not in err and pattern in err, err
    assert list(out.iterdir()) == []


def test_the_ship_step_records_what_the_card_shows() -> None:
    """scripts/ship_models.py writes licence, date, data, budget and quality; the card shows them."""
    import importlib.util

    from ftn.eval.sweep import SweepResult, calibrate

    spec = importlib.util.spec_from_file_location("ship_models", ROOT / "scripts" / "ship_models.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    result = SweepResult(task="denoise", level_name="sigma", train_levels=[20, 80], levels=[20, 50, 80],
                         alphas=[0.0, 0.5, 1.0], psnr=[[30.0, 29.0, 28.0], [24.0, 26.5, 26.0], [20.0, 22.0, 23.0]],
                         input_psnr=[22.1, 14.2, 10.1], images=14, data="../shared/data/test/Set14", crop=256)
    quality = ship.quality_record(result, calibrate(result), "clip True, quantize True")
    assert [(q["level"], q["alpha"], q["value"]) for q in quality] == [("sigma 20", 0.0, 30.0), ("sigma 50", 0.5, 26.5),
                                                                        ("sigma 80", 1.0, 23.0)]
    legs = [{"steps": [0, 100], "seconds": 600, "device": "CPU AMD EPYC (1 threads)"}, {"steps": [100, 200], "seconds": 300,
                                                                                       "device": "NVIDIA H200"}]
    stage1 = {"iterations": 200, "legs": legs}
    stage2 = {"iterations": 50, "wall_time_s": 120.0, "machine": {"device": "cpu", "cpu": "AMD EPYC", "threads": 1}}
    recipes = [{"train_data": "../shared/data/train/BSD432"}, {"train_data": "../shared/data/train/BSD432", "batch_size": 16,
                                                                "patch_size": 64}]
    meta = ship.card_metadata(stage1, stage2, recipes, quality)
    assert meta["license"] == "MIT" and meta["training_data"] == ["BSD432"]  # the licence pyproject.toml states
    assert meta["budget"]["cpuMinutes"] == 12.0 and meta["budget"]["gpuMinutes"] == 5.0
    record = _record({**meta, "task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}]})
    assert record["license"] == "MIT" and record["dataset"] == ["BSD432"] and record["trainingIterations"] == 250
    assert record["ftn"]["quality"][1]["crop"] == "256 px centre crops" and record["ftn"]["quality"][1]["data"] == "Set14"
    assert "| PSNR | dB | 26.5 | 14.2 | sigma 50 | 0.5 | Set14 | 14 | 256 px centre crops |" in card_markdown(record)
