"""The tables docs/quality.md embeds: the equal-time architecture study and the long runs' budget."""

from __future__ import annotations

from benchmarks import arch_study, training_budget


def _result(name: str, psnr: float, s_per_mp: float) -> dict:
    return {"name": name, "network": name, "params": 1000, "probe_s_per_it": 0.2, "iterations": 10, "wall_s": 60.0,
            "psnr": psnr, "s_per_megapixel": s_per_mp, "minutes": 1.0, "test_images": 2, "input_psnr": 15.0}


def test_study_table_is_sorted_by_psnr_and_names_best_and_cheapest() -> None:
    lines = arch_study.results_table([_result("slow-good", 27.5, 3.0), _result("fast-poor", 26.0, 0.5)])
    rows = [line for line in lines if line.startswith("| ") and "candidate" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| slow-good", "| fast-poor"]
    verdict = lines[-1]
    assert "**slow-good** (27.50 dB, 3.00 s/MP)" in verdict and "Cheapest to run: fast-poor (0.50 s/MP" in verdict


def test_budget_tables_split_cpu_and_gpu_minutes_per_stage() -> None:
    legs = [{"date": "2026-12-01", "steps": [0, 100], "seconds": 600.0, "device": "CPU x (1 threads)", "batch_size": 16, "amp": False},
            {"date": "2026-12-02", "steps": [100, 900], "seconds": 120.0, "device": "NVIDIA H200", "batch_size": 64, "amp": True}]
    state = {"name": "denoise-base", "iterations": 1000, "status": "in progress", "step": 900, "legs": legs,
             "curve": [(12.0, 29.5, 900)]}
    lines = training_budget.budget_tables([state])
    assert "| denoise-base | in progress | 900 / 1,000 | 10.0 | 2.0 | 2 | 29.50 dB at step 900 |" in lines
    assert "| denoise-base | 2026-12-02 | 100 -> 900 | 2.0 | NVIDIA H200 | 64 | yes |" in lines
