"""The ``ftn`` command: each subcommand runs, bad input gives a one-line error and a non-zero exit."""

from __future__ import annotations

import ftn
from ftn.cli import main


def test_complexity_prints_the_table(capsys) -> None:
    assert main(["complexity", "--arch", "adafm_net", "--size", "32", "--params-only"]) == 0
    out = capsys.readouterr().out
    assert "+ftn(G=16)" in out and "1.83" in out and "paper" in out


def test_info_prints_metadata(tmp_path, capsys) -> None:
    model = ftn.attach(ftn.build_arch("adafm_net", size="mini"), "ftn", groups=16)
    path = tmp_path / "m.safetensors"
    ftn.save(model, path, task="denoise", levels=[{"sigma": 20}, {"sigma": 80}])
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert '"method": "ftn"' in out and '"sigma": 80' in out


def test_info_reads_a_shipped_model_by_name(capsys) -> None:
    assert main(["info", "sr-pd-x4"]) == 0
    out = capsys.readouterr().out
    assert '"task": "sr"' in out and '"perception": 1' in out


def test_missing_file_is_a_one_line_error(tmp_path, capsys) -> None:
    assert main(["info", str(tmp_path / "nope.safetensors")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn info: error:") and "\n" not in err


def test_demo_runs_and_alpha_moves_the_output() -> None:
    lines: list[str] = []
    from ftn.demo import run_demo

    curves = run_demo(steps=3, print_fn=lines.append)
    assert len(curves["alpha"]) == 11
    assert any("export(0.5)" in line for line in lines)
    assert curves["sigma50"][0] != curves["sigma50"][-1]
