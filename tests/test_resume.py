"""``ftn run --resume`` (issue [6/6] item 5): an output is skipped only when the report shows it complete
and made with the same model, setting, ftn version and input; anything else is redone, with the reason.

Each case runs a folder of two tiny images once, changes one thing, resumes, and checks which outputs
were redone, the summary line's words, and that the report records what made every output.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.data.images import load_image
from ftn.infer.cli import add_parser, run_command

NAMES = ("a.png", "b.png")


def _model(seed: int) -> ftn.TunableModel:
    torch.manual_seed(seed)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = ftn.attach(net, "ftn", groups=4)
    with torch.no_grad():  # away from identity, so that alpha and the model change the pixels
        for p in model.tuner_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {"m": folder / "m.safetensors", "other": folder / "other.safetensors", "copy": folder / "copy.safetensors"}
    for name, seed in (("m", 0), ("other", 1)):
        ftn.save(_model(seed), paths[name], task="denoise", levels=[{"sigma": 20}, {"sigma": 80}])
    shutil.copyfile(paths["m"], paths["copy"])
    return paths


def _image(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path)
    return path


def _ftn_run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ftn")
    add_parser(parser.add_subparsers(dest="command"))
    return run_command(parser.parse_args(["run", *argv]))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stamps(out: Path) -> dict[str, int | None]:
    return {n: (out / n).stat().st_mtime_ns if (out / n).exists() else None for n in NAMES}


def _strip_records(report: Path) -> None:  # a report written by an ftn before records
    rows = json.loads(report.read_text())
    keep = ("input", "output", "label", "alpha", "status")
    report.write_text(json.dumps([{k: r[k] for k in keep} for r in rows]))


Change = Callable[[Path, dict[str, Path]], None]  # (the case's folder, the models) -> None


def _truncate(name: str, keep: float) -> Change:
    def change(tmp: Path, models: dict[str, Path]) -> None:
        data = (tmp / "out" / name).read_bytes()
        (tmp / "out" / name).write_bytes(data[: int(len(data) * keep)])
    return change


# case: (change before resuming, resume's options instead of the first run's, outputs redone, words in the summary)
CASES: dict[str, tuple[Change | None, tuple[str, ...] | None, set[str], str]] = {
    "same setting": (None, None, set(), "2 of 2 outputs exist and are skipped"),
    "same model under another path": (None, ("--model", "copy.safetensors", "--alpha", "0.5"), set(), "2 of 2 outputs exist and are skipped"),
    "another quality, png outputs": (None, ("--alpha", "0.5", "--quality", "50"), set(), "2 of 2 outputs exist"),
    "another alpha": (None, ("--alpha", "0.7"), set(NAMES), "2 redone (made with another setting)"),
    "another tiling": (None, ("--alpha", "0.5", "--tile", "0"), set(NAMES), "2 redone (made with another setting)"),
    "another model": (None, ("--model", "other.safetensors", "--alpha", "0.5"), set(NAMES), "2 redone (made with another model)"),
    "zero-byte output": (_truncate("a.png", 0.0), None, {"a.png"}, "1 redone (empty, incomplete or changed since)"),
    "truncated png": (_truncate("b.png", 0.5), None, {"b.png"}, "1 redone (empty, incomplete or changed since)"),
    "output replaced": (lambda t, m: shutil.copyfile(t / "in" / "a.png", t / "out" / "b.png"), None, {"b.png"},
                        "1 redone (empty, incomplete or changed since)"),
    "output missing": (lambda t, m: (t / "out" / "a.png").unlink(), None, {"a.png"}, "1 not made yet"),
    "input changed": (lambda t, m: _image(t / "in" / "b.png", 7), None, {"b.png"}, "1 redone (its input changed)"),
    "report without records (older ftn)": (lambda t, m: _strip_records(t / "out" / "ftn-report.json"), None, set(NAMES),
                                           "2 redone (no record of how it was made)"),
    "report missing": (lambda t, m: (t / "out" / "ftn-report.json").unlink(), None, set(NAMES),
                       "2 redone (no record of how it was made)"),
    "interrupted write left a temporary": (
        lambda t, m: ((t / "out" / "a.png").rename(t / "out" / ".a.png.0123456789ab.tmp")), None, {"a.png"},
        "1 not made yet"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_skips_only_what_is_done_as_asked(case: str, tmp_path: Path, models: dict[str, Path], capsys,
                                                 monkeypatch) -> None:
    change, resume_options, redone, words = CASES[case]
    monkeypatch.chdir(models["m"].parent)  # so that "--model copy.safetensors" names a file there
    (tmp_path / "in").mkdir()
    for i, name in enumerate(NAMES):
        _image(tmp_path / "in" / name, i)
    io = ("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    first = ("--model", str(models["m"]), "--alpha", "0.5")
    assert _ftn_run(*io, *first) == 0
    if change is not None:
        change(tmp_path, models)
    before = _stamps(tmp_path / "out")
    capsys.readouterr()
    options = first if resume_options is None else resume_options
    if "--model" not in options:
        options = ("--model", str(models["m"]), *options)
    assert _ftn_run(*io, *options, "--resume") == 0
    printed = capsys.readouterr().out
    summary = next(line for line in printed.splitlines() if line.startswith("--resume: ") and "skipped" in line)
    assert words in summary, summary
    after = _stamps(tmp_path / "out")
    assert {n for n in NAMES if after[n] != before[n]} == redone
    assert not list((tmp_path / "out").glob(".*.tmp"))
    # every output is now recorded as made by this run's model, setting and version, complete
    rows = {Path(r["input"]).name: r for r in json.loads((tmp_path / "out" / "ftn-report.json").read_text())}
    model_file = Path(options[options.index("--model") + 1])
    for name in NAMES:
        out = tmp_path / "out" / name
        row = rows[name]
        assert row["status"] == "done" and row["ftn_version"] == ftn.__version__
        assert row["model_sha256"] == _sha256(model_file) and row["input_sha256"] == _sha256(tmp_path / "in" / name)
        assert (row["output_bytes"], row["output_sha256"]) == (out.stat().st_size, _sha256(out))
        assert load_image(out).image.shape == (3, 12, 16)
    alpha = float(options[options.index("--alpha") + 1])
    assert {json.loads(rows[n]["options"])["alpha"] for n in NAMES} == {alpha}


def test_another_ftn_version_redoes(tmp_path: Path, models: dict[str, Path], capsys, monkeypatch) -> None:
    (tmp_path / "in").mkdir()
    _image(tmp_path / "in" / "a.png", 0)
    args = ("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(models["m"]), "--alpha", "0.5")
    assert _ftn_run(*args) == 0
    monkeypatch.setattr(ftn, "__version__", "99.0")
    capsys.readouterr()
    assert _ftn_run(*args, "--resume") == 0
    assert "1 redone (made by another ftn version)" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "ftn-report.json").read_text())[0]["ftn_version"] == "99.0"


def test_csv_report_and_alpha_map_file(tmp_path: Path, models: dict[str, Path], capsys) -> None:
    """A CSV report (its values read back as text) resumes alike; an alpha map is known by its content."""
    (tmp_path / "in").mkdir()
    for i, name in enumerate(NAMES):
        _image(tmp_path / "in" / name, i)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (12, 1))).save(mask)
    report = tmp_path / "report.csv"
    args = ("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(models["m"]),
            "--alpha-map", str(mask), "--report", str(report))
    assert _ftn_run(*args) == 0
    rows = list(csv.DictReader(report.open()))
    assert [r["model"] for r in rows] == [str(models["m"])] * 2
    assert json.loads(rows[0]["options"])["alpha_map_sha256"] == _sha256(mask)
    capsys.readouterr()
    assert _ftn_run(*args, "--resume") == 0
    assert "2 of 2 outputs exist and are skipped" in capsys.readouterr().out
    Image.fromarray(np.full((12, 16), 200, np.uint8)).save(mask)  # same name, another map
    assert _ftn_run(*args, "--resume") == 0
    assert "2 redone (made with another setting)" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["{", "[1, 2]", "\xff\xfe", '{"input": "a.png"}'])
def test_unreadable_report_is_refused_in_one_line_and_nothing_written(text: str, tmp_path: Path,
                                                                        models: dict[str, Path], capsys) -> None:
    (tmp_path / "in").mkdir()
    _image(tmp_path / "in" / "a.png", 0)
    out = tmp_path / "out"
    args = ("-i", str(tmp_path / "in"), "-o", str(out), "--model", str(models["m"]), "--alpha", "0.5")
    assert _ftn_run(*args) == 0
    (out / "a.png").unlink()
    (out / "ftn-report.json").write_text(text, encoding="latin-1")
    capsys.readouterr()
    assert _ftn_run(*args, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn run: error: cannot read the earlier report") and "\n" not in err
    assert sorted(p.name for p in out.iterdir()) == ["ftn-report.json"]
    assert (out / "ftn-report.json").read_text(encoding="latin-1") == text


def test_multi_axis_setting_is_recorded_per_axis(tmp_path: Path, capsys) -> None:
    """A multi-axis model: each axis's alpha, map (by content) or estimate is part of the record."""
    from ftn.methods.axes import AxisSpec, attach_axes

    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = attach_axes(net, "ftn", [AxisSpec("sigma", 2, levels=(5, 50)), AxisSpec("quality", 2, levels=(90, 10))],
                        groups=4)
    ftn.save(model, tmp_path / "restore.safetensors")
    (tmp_path / "in").mkdir()
    _image(tmp_path / "in" / "a.png", 0)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((12, 16), 100, np.uint8)).save(mask)
    base = ("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "restore.safetensors"))
    assert _ftn_run(*base, "--alpha-map", f"sigma={mask}", "--alpha", "quality=0.5") == 0
    row = json.loads((tmp_path / "out" / "ftn-report.json").read_text())[0]
    assert json.loads(row["options"])["axes"] == {"sigma": {"alpha_map_sha256": _sha256(mask)}, "quality": {"alpha": 0.5}}
    for options, words in (((f"sigma={mask}", "quality=0.5"), "1 of 1 outputs exist and are skipped"),
                           ((f"sigma={mask}", "quality=1"), "1 redone (made with another setting)"),
                           ((None, "sigma=0.5,quality=1"), "1 redone (made with another setting)")):
        capsys.readouterr()
        given = ("--alpha-map", options[0]) if options[0] else ()
        assert _ftn_run(*base, *given, "--alpha", options[1], "--resume") == 0
        assert words in capsys.readouterr().out


def test_an_oversized_report_is_refused_before_it_is_read(tmp_path: Path, monkeypatch) -> None:
    from ftn.infer import report

    path = tmp_path / "r.json"
    path.write_text("[" + ", ".join(['{"input": "x"}'] * 100) + "]")
    assert len(report.read_report(path)) == 100
    monkeypatch.setattr(report, "MAX_REPORT_BYTES", 1000)
    with pytest.raises(ValueError, match="larger than"):
        report.read_report(path)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_and_report_follow_the_umask(umask: int, tmp_path: Path, models: dict[str, Path]) -> None:
    """Issue 18 item 8: not the 0600 of a temporary file renamed into place."""
    import os

    (tmp_path / "in").mkdir()
    _image(tmp_path / "in" / "a.png", 0)
    previous = os.umask(umask)
    try:
        assert _ftn_run("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(models["m"]),
                        "--alpha", "0.5") == 0
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert modes == {"a.png": 0o666 & ~umask, "ftn-report.json": 0o666 & ~umask}
