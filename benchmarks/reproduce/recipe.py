"""The recipe of a reproduce study: its tasks, runs and evaluation settings (``configs/reproduce/*.yaml``)."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks.reproduce.manifest import find_entry
from ftn.tasks import get_task
from ftn.train.config import TrainConfig, parse_override, validate_config

ROOT = Path(__file__).resolve().parents[2]

RECIPE_KEYS = {"name", "runs_dir", "out", "threads", "seconds_per_iteration", "train", "tuner", "eval", "smooth",
               "complexity", "tasks", "notes", "bases_from", "compare_with"}
TASK_KEYS = {"task", "task_options", "levels", "test_data", "unseen", "runs", "train", "tuner"}
# per task: ``task`` (the registered task, default the entry's name, so two entries can train the same
# task on two networks), ``train`` / ``tuner`` (training keys for this task's runs / tuner runs)
RUN_EXTRA_KEYS = {"unseen"}  # run keys that are not TrainConfig keys
EVAL_DEFAULTS = {"limit": 10, "crop": None, "alpha_steps": 12, "refine": True, "device": "auto"}
SMOOTH_DEFAULTS = {"task": "denoise", "level": None, "images": 3, "strip_crop": 96, "strip_alphas": [0, 0.25, 0.5, 0.75, 1]}


@dataclasses.dataclass
class Run:
    """One training run of a recipe: ``<runs_dir>/<task>/<name>/`` (``bases_from``'s folder for a shared base)."""

    task: str
    name: str
    stage: str
    level: float  # the level trained (level 2 for tuner runs)
    levels: tuple[float, float] | None  # (level 1, level 2) of a tuner run
    unseen: list[float]
    config: TrainConfig
    dir: Path
    recipe_path: Path  # the recipe that lists this run: the retrain command names it

    @property
    def key(self) -> str:
        return f"{self.task}/{self.name}"

    @property
    def trained(self) -> bool:
        """Whether the run finished: its weight file is here, or its manifest line (the weight is kept elsewhere)."""
        return self.model_path.is_file() or find_entry(self.model_path) is not None

    @property
    def retrain_command(self) -> str:
        """The one command that trains this run again (:func:`retrain_command`)."""
        return retrain_command([self])

    @property
    def model_path(self) -> Path:
        return self.dir / "model.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.safetensors"


@dataclasses.dataclass
class Recipe:
    """A study: where its runs live, how they are evaluated, and every run (stage-1 bases first)."""

    name: str
    path: Path
    raw: dict[str, Any]
    runs_dir: Path
    out: Path
    threads: int | None
    eval: dict[str, Any]
    smooth: dict[str, Any]
    complexity: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    runs: list[Run]

    def run(self, task: str, name: str) -> Run | None:
        return next((r for r in self.runs if r.task == task and r.name == name), None)


def retrain_command(runs: Sequence[Run]) -> str:
    """The one command that trains ``runs`` (of one recipe) again: ``--only`` retrains a selected run whose
    weight file is absent, and a tuner run's stage-1 base is selected too when its weight is absent as well."""
    keys: list[str] = []
    for run in runs:
        if run.stage == "tuner" and not Path(run.config.base or "").is_file():
            keys.append(f"{run.task}/base")
        keys.append(run.key)
    only = " ".join(f"--only '{key}'" for key in dict.fromkeys(keys))
    return f"python -m benchmarks.reproduce --recipe {rel(runs[0].recipe_path)} {only}"


def rel(path: Path) -> str:
    """``path`` relative to the repository root where it lies below it, else as given."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _apply_override(data: dict[str, Any], item: str) -> None:
    keys, value = parse_override(item)
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        node[k] = dict(child) if isinstance(child, dict) else {}
        node = node[k]
    node[keys[-1]] = value


def _num(level: Any) -> float:
    value = float(level)
    return int(value) if value.is_integer() else value  # type: ignore[return-value]


def load_recipe(path: Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read and check a recipe; ``overrides`` are ``key.sub=value`` strings (values parsed as YAML)."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping")
    for item in overrides:
        _apply_override(raw, item)
    unknown = sorted(set(raw) - RECIPE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown recipe key(s) {unknown}; known: {sorted(RECIPE_KEYS)}")
    name = str(raw.get("name") or path.stem)
    runs_dir = Path(raw.get("runs_dir") or f"reproduce/runs/{name}")
    bases_from = Path(raw["bases_from"]) if raw.get("bases_from") else None
    common = dict(raw.get("train") or {})
    tuner_common = dict(raw.get("tuner") or {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for where, block in (("train", common), ("tuner", tuner_common)):
        bad = sorted(set(block) - fields)
        if bad:
            raise ValueError(f"{path}: {where}: unknown training key(s) {bad}")
    runs: list[Run] = []
    tasks = raw.get("tasks") or {}
    if not tasks:
        raise ValueError(f"{path}: the recipe lists no tasks")
    for task_name, spec in tasks.items():
        bad = sorted(set(spec) - TASK_KEYS)
        if bad:
            raise ValueError(f"{path}: tasks.{task_name}: unknown key(s) {bad}; known: {sorted(TASK_KEYS)}")
        for where in ("train", "tuner"):
            bad = sorted(set(spec.get(where) or {}) - fields)
            if bad:
                raise ValueError(f"{path}: tasks.{task_name}.{where}: unknown training key(s) {bad}")
        task_type = str(spec.get("task") or task_name)
        task = get_task(task_type, **(spec.get("task_options") or {}))
        l1, l2 = (_num(v) for v in (spec.get("levels") or task.default_levels))
        spec["levels"] = [l1, l2]
        spec["unseen"] = [_num(v) for v in spec.get("unseen") or []]
        run_specs = spec.get("runs") or {}
        if "base" not in run_specs:
            raise ValueError(f"{path}: tasks.{task_name}: a 'base' run (stage 1 at level {l1}) is required")
        for run_name, run_spec in run_specs.items():
            run_spec = dict(run_spec or {})
            bad = sorted(set(run_spec) - fields - RUN_EXTRA_KEYS)
            if bad:
                raise ValueError(f"{path}: tasks.{task_name}.runs.{run_name}: unknown key(s) {bad}")
            stage = run_spec.get("stage", "base" if run_name == "base" else "tuner")
            data: dict[str, Any] = {**common, **(spec.get("train") or {})}
            if stage == "tuner":
                data.update({**tuner_common, **(spec.get("tuner") or {})})
            data.update({k: v for k, v in run_spec.items() if k not in RUN_EXTRA_KEYS})
            run_dir = runs_dir / task_name / run_name
            if stage == "base" and bases_from is not None:
                run_dir = bases_from / task_name / run_name  # the same stage-1 networks as another study
            if stage == "base":
                level = _num(run_spec.get("level", l1))
                levels = None
            else:
                level = _num(run_spec.get("level", l2))
                levels = (l1, level)
                data["base"] = str((bases_from or runs_dir) / task_name / "base" / "model.safetensors")
            data.update(name=f"{name}-{task_name}-{run_name}", out_dir=str(run_dir), stage=stage, task=task_type,
                        task_options=spec.get("task_options") or {}, level=level)
            config = validate_config(TrainConfig(**data))
            unseen = [_num(v) for v in run_spec.get("unseen", spec["unseen"] if stage == "tuner" else [])]
            runs.append(Run(task_name, run_name, stage, level, levels, unseen, config, run_dir, path))
    order = {"base": 0}
    runs.sort(key=lambda r: (list(tasks).index(r.task), order.get(r.name, 1 if r.stage == "base" else 2)))
    smooth = {**SMOOTH_DEFAULTS, **(raw.get("smooth") or {})}
    if smooth["task"] in tasks and smooth["level"] is None:
        smooth["level"] = tasks[smooth["task"]]["levels"][0]
    return Recipe(
        name=name, path=path, raw=raw, runs_dir=runs_dir, out=Path(raw.get("out") or "docs"),
        threads=raw.get("threads"), eval={**EVAL_DEFAULTS, **(raw.get("eval") or {})}, smooth=smooth,
        complexity=dict(raw.get("complexity") or {"arch": "adafm_net", "size": 256}), tasks=tasks, runs=runs,
    )


def select_runs(runs: Sequence[Run], patterns: Sequence[str]) -> list[Run]:
    """The runs whose key (``task/run``) matches one of the shell-style ``patterns`` (all when none)."""
    if not patterns:
        return list(runs)
    return [r for r in runs if any(fnmatch.fnmatchcase(r.key, p) for p in patterns)]

