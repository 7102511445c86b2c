"""Training the runs of a recipe: every run not trained yet (resuming its checkpoint), in recipe order."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.reproduce.manifest import record_weights
from benchmarks.reproduce.recipe import Recipe, Run, select_runs
from ftn.train.checkpoint import read_checkpoint_info


def _rate(recipe: Recipe, stage: str, measured: dict[str, list[float]]) -> float:
    if measured.get(stage):
        return sum(measured[stage]) / len(measured[stage])
    table = recipe.raw.get("seconds_per_iteration") or {}
    return float(table.get(stage, 0.25 if stage == "base" else 0.375))


def _steps_done(run: Run) -> int:
    if run.checkpoint_path.is_file():
        try:
            return int(read_checkpoint_info(run.checkpoint_path)["step"])
        except (ValueError, KeyError, OSError):
            return 0
    return 0


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def pending_runs(recipe: Recipe, only: Sequence[str] = ()) -> list[Run]:
    """The runs to train: those neither trained here nor in the manifest, and, when ``only`` names runs,
    those of them whose weight file is absent (how a run whose weight was dropped is trained again)."""
    runs = select_runs(recipe.runs, only)
    return [r for r in runs if not r.model_path.is_file() and (bool(only) or not r.trained)]


def train_all(recipe: Recipe, *, progress: bool, stop_after_s: float | None, only: Sequence[str] = ()) -> int:
    """Train every run (of those ``only`` selects) that :func:`pending_runs` lists, resuming checkpoints, and
    write each finished run's manifest line; returns how many ran."""
    from ftn.train.loop import train

    runs = select_runs(recipe.runs, only)
    pending = pending_runs(recipe, only)
    for r in runs:  # a finished run keeps no checkpoint
        if r.model_path.is_file() and r.checkpoint_path.is_file():
            r.checkpoint_path.unlink()
    print(f"training: {len(runs) - len(pending)} of {len(runs)} runs are done, {len(pending)} to go")
    measured: dict[str, list[float]] = {}
    start = time.perf_counter()
    trained = 0
    for i, run in enumerate(pending):
        if stop_after_s is not None and time.perf_counter() - start > stop_after_s:
            print(f"training: stopping after {duration(time.perf_counter() - start)} as asked; "
                  f"{len(pending) - i} run(s) left for the next session")
            break
        left = [(r, r.config.iterations - _steps_done(r)) for r in pending[i:]]
        eta = sum(steps * _rate(recipe, r.stage, measured) for r, steps in left)
        done = _steps_done(run)
        what = run.config.method if run.stage == "tuner" else "whole network"
        print(f"[{i + 1}/{len(pending)}] {run.key}: stage {run.stage} ({what}), level {run.level:g}, "
              f"steps {done} -> {run.config.iterations}{' (resuming)' if done else ''}; "
              f"{len(left)} run(s) left with this one, about {duration(eta)}", flush=True)
        t0 = time.perf_counter()
        if run.stage == "tuner" and not Path(run.config.base or "").is_file():
            base = recipe.run(run.task, "base")
            how = f"; retrain it with: {base.retrain_command}" if base is not None else ""
            raise SystemExit(f"reproduce: {run.key} needs the stage-1 base {run.config.base}, which is absent{how}")
        train(run.config, resume=run.checkpoint_path.is_file(), progress=progress)
        run.checkpoint_path.unlink(missing_ok=True)
        record_weights(run.dir.parents[1], [run.dir])  # the run's manifest line: the evidence once the weight is gone
        steps = run.config.iterations - done
        if steps > 0:
            measured.setdefault(run.stage, []).append((time.perf_counter() - t0) / steps)
        trained += 1
    return trained
