"""The training loop of both stages, in plain PyTorch.

Stage ``base`` trains a whole network (``ftn.build_arch``) at one level: stage 1 of the paper at
level 1, or a from-scratch model at any level. Stage ``tuner`` loads a stage-1 model file, attaches a
method (``ftn.attach``), freezes the base and trains only ``model.tuner_parameters()`` at alpha = 1 on
level 2; DNI's fine-tuned copy is this stage with ``method: dni``.

One step::

    degraded, clean = sampler.batch(step, batch_size, rank, world_size)   # this rank's slice
    loss = l1(model(degraded, alpha=1.0), clean)       # tuner stage; base stage: model(degraded)
    loss.backward(); clip; optimizer.step(); scheduler.step()

The data of step s depends only on (seed, s), and the checkpoint holds model, optimizer, scheduler and
RNG state, so a resumed run continues exactly where the checkpoint was written: its final weights equal
those of an uninterrupted run bit for bit (same machine, same thread count).

Data parallel: launched by ``torchrun`` (WORLD_SIZE > 1), each process takes its slice of the global
batch, DistributedDataParallel averages the gradients, and the result is the one-process run with the
global batch (up to float summation order). Only rank 0 validates and writes files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import yaml
from torch import Tensor
from tqdm import tqdm

from ..archs import build_arch
from ..data.datasets import EvalSet, PatchSampler
from ..eval.metrics import psnr
from ..io import load as load_model
from ..io import read_metadata
from ..io import save as save_model
from ..methods import TunableModel, attach
from ..tasks import Task, get_task
from .checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from .config import TrainConfig, config_to_dict, validate_config

__all__ = ["train", "TrainingDiverged", "RESUMABLE_CHANGES"]

#: Config keys that may differ between a checkpoint and the run that resumes it.
#: A run may move between a CPU and a lent GPU: the GPU leg takes a larger batch and bf16 autocast
#: (``amp``); the data of a step still depends only on (seed, step), so the legs add up to one run.
RESUMABLE_CHANGES = frozenset(
    {"iterations", "val_data", "val_levels", "val_every", "val_limit", "checkpoint_every", "log_every",
     "threads", "device", "grad_clip", "batch_size", "amp"}
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""


# -- processes and devices -------------------------------------------------------------------------


@dataclass(frozen=True)
class Processes:
    """Where this process sits in a (possibly one-process) data-parallel run."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # this run initialised the process group and tears it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("config asks for device 'cuda', and torch sees no CUDA device; use device: auto or cpu")
    if preference in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_processes(device_preference: str) -> Processes:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(device_preference, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns_group = True
    return Processes(rank=rank, world_size=world_size, device=device, owns_group=owns_group)


def teardown_processes(procs: Processes) -> None:
    if procs.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def global_mean(value: Tensor, procs: Processes) -> float:
    """The mean of a scalar over all processes (NaN anywhere gives NaN everywhere)."""
    if procs.world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= procs.world_size
    return float(value)


# -- task, levels and model ------------------------------------------------------------------------


def tidy_level(level: Any) -> Any:
    """20.0 -> 20, so levels read as users write them ("sigma": 20)."""
    return int(level) if isinstance(level, float) and level.is_integer() else level


def resolve_config(config: TrainConfig, task: Task) -> tuple[TrainConfig, Any, dict[str, Any]]:
    """Fill in the level and, for the tuner stage, the base network's architecture.

    Returns (config, level 1 (tuner stage; None for the base stage), the base file's metadata).
    """
    level = config.level
    if config.stage == "base":
        level = tidy_level(config.level if level is not None else task.default_levels[0])
        task.check_level(level)
        return replace(config, level=level), None, {}

    base = Path(config.base)
    if not base.is_file():
        raise FileNotFoundError(
            f"no base model at {base}: the tuner stage starts from a stage-1 model; train one first "
            "(stage: base) or set base= to its model.safetensors"
        )
    meta = read_metadata(base)
    if meta.get("method"):
        raise ValueError(f"{base} already has method {meta['method']!r} attached; the base must be a plain network")
    if meta.get("task") not in (None, config.task):
        raise ValueError(f"{base} was trained for task {meta['task']!r}, this run is for {config.task!r}")
    level1 = None
    levels = meta.get("levels") or []
    if levels and isinstance(levels[0], dict):
        level1 = levels[0].get(task.level_name)
    if level1 is None:
        level1 = task.default_levels[0]
        print(f"warning: {base} does not say its level; assuming {task.label(level1)}")
    level1 = tidy_level(level1)
    level = tidy_level(level if level is not None else task.default_levels[1])
    task.check_level(level)
    config = replace(config, level=level, arch=meta.get("arch") or config.arch,
                     arch_options=meta.get("arch_options") or {})
    return config, level1, meta


def build_model(config: TrainConfig) -> nn.Module:
    """The network to train: a fresh architecture (base stage; ``init``: with that model file's
    weights, to fine-tune it) or base + frozen + method (tuner)."""
    if config.stage == "base":
        network = build_arch(config.arch, **config.arch_options)
        if config.init:
            start = load_model(config.init)
            if isinstance(start, TunableModel):
                raise ValueError(f"init {config.init} has a method attached; give a plain network (a stage-1 model)")
            try:
                network.load_state_dict(start.state_dict())
            except RuntimeError:
                raise ValueError(f"init {config.init} is not a {config.arch} {config.arch_options}: its tensors do not "
                                 "fit; give arch and arch_options as that model's") from None
        return network
    base = load_model(config.base)
    if isinstance(base, TunableModel):  # pragma: no cover - resolve_config refuses these first
        raise ValueError(f"{config.base} already has a method attached")
    model = attach(base, config.method, targets=config.targets, exclude=config.exclude, **config.method_options)
    return model.freeze_base()


def trainable_parameters(model: nn.Module, stage: str) -> list[nn.Parameter]:
    if stage == "tuner":
        return list(model.tuner_parameters())
    return [p for p in model.parameters() if p.requires_grad]


def forward(model: nn.Module, x: Tensor, stage: str, alpha: float = 1.0) -> Tensor:
    """Base stage: the plain network; tuner stage: the tunable network at ``alpha`` (1 = level 2)."""
    return model(x, alpha=alpha) if stage == "tuner" else model(x)


def autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    """bf16 autocast when ``config.amp`` (weights, optimiser state and checkpoints stay float32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.amp)


# -- optimisation ----------------------------------------------------------------------------------


def build_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of (0-based) ``step``: linear warm-up, then cosine from lr to lr_min, or constant."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.scheduler == "constant":
        return config.lr
    t = min(1.0, (step - config.warmup) / max(1, config.iterations - config.warmup))
    return config.lr_min + (config.lr - config.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, config) / config.lr)


def all_finite(params: list[nn.Parameter]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def diverged_message(step: int, what: str, checkpoint: Path, last_checkpoint: int | None) -> str:
    kept = (f"the last good checkpoint ({checkpoint}, step {last_checkpoint}) is kept"
            if last_checkpoint is not None else "no checkpoint had been written")
    return f"training diverged at step {step}: {what}; {kept}. Lower lr or set grad_clip."


# -- data and validation ---------------------------------------------------------------------------


def build_sampler(config: TrainConfig, task: Task) -> PatchSampler:
    return PatchSampler(config.train_data, task, config.level, config.patch_size, seed=config.seed,
                        grey=config.grey, max_images=config.train_max_images)


def next_batch(sampler: PatchSampler, step: int, config: TrainConfig, procs: Processes) -> tuple[Tensor, Tensor]:
    """This process's slice of the global batch of ``step``, on the device."""
    degraded, clean = sampler.batch(step, config.batch_size, rank=procs.rank, world_size=procs.world_size)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    degraded = degraded.to(procs.device, non_blocking=True).contiguous(memory_format=memory_format)
    clean = clean.to(procs.device, non_blocking=True).contiguous(memory_format=memory_format)
    return degraded, clean


class _Setting(dict):
    """A setting of several axes ({sigma, quality}) that can key the scores (it is never changed)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True))


def level_key(level: Any) -> Any:
    """A level as a dict key: a number as it is, a setting of several axes as a hashable mapping."""
    return _Setting(level) if isinstance(level, dict) else level


def validation_levels(config: TrainConfig) -> list[Any]:
    """The trained level first, then any extra ``val_levels``."""
    extra = [tidy_level(lv) for lv in (config.val_levels or []) if lv != config.level]
    return [config.level, *extra]


def build_eval_sets(config: TrainConfig, task: Task, levels: list[Any]) -> dict[Any, EvalSet]:
    """One EvalSet per level (fixed noise seed 0, so runs with different seeds are comparable)."""
    return {level_key(lv): EvalSet(config.val_data, task, lv, seed=0, limit=config.val_limit, grey=config.grey)
            for lv in levels}


@torch.inference_mode()
def evaluate(model: nn.Module, eval_set: EvalSet, *, stage: str, alpha: float, device: torch.device,
             channels_last: bool) -> float:
    """Mean PSNR (dB, RGB, no border crop) of the model's outputs over ``eval_set``."""
    was_training = model.training
    model.eval()
    scores = []
    for i in range(len(eval_set)):
        _, degraded, clean = eval_set[i]
        x = degraded.unsqueeze(0).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = forward(model, x, stage, alpha)[0].clamp(0, 1).float().cpu()
        scores.append(psnr(y, clean.float()))
    model.train(was_training)
    return sum(scores) / max(1, len(scores))


def validate(model: nn.Module, eval_sets: dict[Any, EvalSet], config: TrainConfig, device: torch.device) -> dict[Any, float]:
    """PSNR at every validation level (tuner stage: at alpha 1, level 2's end)."""
    return {lv: evaluate(model, s, stage=config.stage, alpha=1.0, device=device, channels_last=config.channels_last)
            for lv, s in eval_sets.items()}


# -- files -----------------------------------------------------------------------------------------


def log_columns(levels: list[Any]) -> list[str]:
    return ["step", "loss", "lr", "elapsed_s", "val_psnr"] + [f"val_psnr_{lv:g}" for lv in levels[1:]] + ["loss_parts"]


def start_log(path: Path, columns: list[str], keep_until: int) -> None:
    """Start ``log.csv``; on resume keep its rows up to the resumed step (later rows are redone)."""
    rows = []
    if keep_until > 0 and path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if (r.get("step") or "").isdigit() and int(r["step"]) <= keep_until]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def append_log(path: Path, columns: list[str], row: dict[str, Any]) -> None:
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=columns, extrasaction="ignore").writerow(row)


def val_columns(scores: dict[Any, float], levels: list[Any]) -> dict[str, str]:
    return {name: f"{scores[level_key(lv)]:.4f}" for name, lv in zip(log_columns(levels)[4:], levels)}


def check_run_folder(out_dir: Path, resume: bool) -> None:
    """Refuse a run folder that cannot be used, before anything is built: a file in its place (or in
    place of a folder above it), a missing checkpoint to resume, or a finished run started again."""
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"out_dir {out_dir}: {folder} is a file, not a folder; set out_dir (or name) to a folder")
            break
    checkpoint = out_dir / "checkpoint.safetensors"
    if resume and not checkpoint.is_file():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {checkpoint}; run without --resume to start")
    if resume:
        # a writer killed mid-write leaves its temporary file (the checkpoint itself is replaced
        # only when complete): nothing in it is needed, so it goes
        for stale in out_dir.glob(".checkpoint.safetensors.*.tmp"):
            stale.unlink(missing_ok=True)
    if not resume and checkpoint.is_file():
        raise ValueError(
            f"{out_dir} already holds a run (checkpoint.safetensors): pass --resume to continue it, "
            "or set another name / out_dir (or delete the folder) to start again"
        )


def check_resume_config(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint written with a different recipe (a few keys may change)."""
    differ = sorted(k for k in set(saved) | set(current) if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
    if differ:
        def cut(value: Any) -> str:  # the saved side comes from a file: never print it whole
            text = repr(value)
            return text if len(text) <= 60 else text[:57] + "..."

        details = "; ".join(f"{cut(k)}: {cut(saved.get(k))} -> {cut(current.get(k))}" for k in differ[:5])
        raise ValueError(
            f"the checkpoint was written with another config ({details}); only "
            f"{sorted(RESUMABLE_CHANGES)} may change when resuming"
        )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(procs: Processes) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(procs.device),
        "processes": procs.world_size,
    }
    if procs.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(procs.device)
    return info


def write_model_file(path: Path, model: nn.Module, config: TrainConfig, task: Task, level1: Any,
                     base_meta: dict[str, Any], recipe: dict[str, Any], scores: dict[Any, float], *,
                     wall_time_s: float, extra: dict[str, Any], procs: Processes) -> None:
    """``ftn.save`` the trained model with its task, levels, recipe and how the training went."""
    name = task.level_name
    levels = [{name: config.level}] if config.stage == "base" else [{name: level1}, {name: config.level}]
    training = {
        "iterations": config.iterations,
        "wall_time_s": round(wall_time_s, 1),
        "machine": machine_info(procs),
        "final_val_psnr": round(scores[level_key(config.level)], 4) if scores else None,
        "val": {"data": config.val_data, "images": config.val_limit, "crop_border": 0, "y_channel": False,
                "psnr": {task.label(lv): round(s, 4) for lv, s in scores.items()}} if scores else None,
        **extra,
    }
    metadata: dict[str, Any] = {"task": config.task, "task_options": config.task_options, "levels": levels,
                                "recipe": recipe, "training": training}
    if config.stage == "tuner":
        metadata["base_model"] = {"path": config.base, "recipe": base_meta.get("recipe"),
                                  "training": base_meta.get("training")}
    save_model(model, path, **metadata)


def say(message: str, procs: Processes) -> None:
    if procs.is_main:
        tqdm.write(message)


# -- the loop --------------------------------------------------------------------------------------


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True,
          stop_after_s: float | None = None) -> Path:
    """Run one training stage described by ``config``; returns ``out_dir/model.safetensors``.

    ``resume=True`` continues from ``out_dir/checkpoint.safetensors``. ``stop_after_s`` time-boxes
    this call: after the first step that ends past it, a checkpoint is written and its path
    (``out_dir/checkpoint.safetensors``) is returned instead of the model's, so a long run can go on
    in slices (a background job on a CPU, short calls on a lent GPU) and be resumed later. Raises
    :class:`TrainingDiverged` when the loss stops being finite (the last good checkpoint is kept).
    """
    config = validate_config(config)
    procs = setup_processes(config.device)
    previous_threads = torch.get_num_threads()
    try:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        return _train(config, procs, resume=resume, progress=progress, stop_after_s=stop_after_s)
    finally:
        torch.set_num_threads(previous_threads)
        teardown_processes(procs)


def _train(config: TrainConfig, procs: Processes, *, resume: bool, progress: bool,
           stop_after_s: float | None) -> Path:
    task = get_task(config.task, **config.task_options)
    if config.val_data and not task.has_reference:
        raise ValueError(f"task {task.name!r} has no reference output to measure PSNR against; set val_data: null")
    config, level1, base_meta = resolve_config(config, task)
    recipe = config_to_dict(config)
    out_dir = Path(config.out_dir)
    checkpoint_path, log_path, model_path = (out_dir / n for n in ("checkpoint.safetensors", "log.csv", "model.safetensors"))
    check_run_folder(out_dir, resume)
    if resume:  # a damaged or foreign checkpoint is refused before the model is built
        check_resume_config(read_checkpoint_info(checkpoint_path)["config"], recipe)
    if config.batch_size % procs.world_size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {procs.world_size} processes")

    # model, optimiser, schedule
    torch.manual_seed(config.seed)
    model = build_model(config)
    model.to(procs.device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    model.train()
    params = trainable_parameters(model, config.stage)
    objective = task.objective(config.level, pixel_loss=config.loss, patch_size=config.patch_size).to(procs.device)
    optimizer = build_optimizer(params, config)
    scheduler = build_scheduler(optimizer, config)
    start_step, elapsed_before, last_checkpoint, extra = 0, 0.0, None, {}
    if resume:
        info = load_checkpoint(checkpoint_path, model, optimizer, scheduler)
        start_step, elapsed_before, last_checkpoint = info["step"], info["elapsed_s"], info["step"]
        extra = info.get("extra") or {}
        objective.load_checkpoint_state(info["objective_state"])
    ddp_model: nn.Module = model
    if procs.world_size > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[procs.device.index] if procs.device.type == "cuda" else None,
            find_unused_parameters=False,
        )

    # data, logs
    sampler = build_sampler(config, task)
    levels = validation_levels(config)
    eval_sets = build_eval_sets(config, task, levels) if (config.val_data and procs.is_main) else {}
    columns = log_columns(levels)
    n_train, n_all = sum(p.numel() for p in params), sum(p.numel() for p in model.parameters())
    if procs.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        start_log(log_path, columns, keep_until=start_step)
    what = config.arch if config.stage == "base" else f"{config.method} on a frozen {config.arch}"
    say(f"{config.name}: stage {config.stage}, {task.label(config.level)}, {what}: {n_train:,} of {n_all:,} "
        f"parameters train; batch {config.batch_size} x {config.patch_size}px on {procs.world_size} x "
        f"{procs.device}; steps {start_step} -> {config.iterations}", procs)
    if config.stage == "tuner" and start_step == 0 and config.val_data and procs.is_main:
        # sanity check: stage 2 starts from level 1 (alpha 0 is the base network)
        start_set = build_eval_sets(config, task, [level1])[level_key(level1)]
        score = evaluate(model, start_set, stage="tuner", alpha=0.0, device=procs.device, channels_last=config.channels_last)
        extra["start_psnr_alpha0_level1"] = round(score, 4)
        say(f"start: alpha 0 on {task.label(level1)}: {score:.2f} dB (the base network's level)", procs)

    # the steps
    t0 = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    # A long run may go on in legs on several machines: each leg's steps, seconds and machine are kept
    # (in the checkpoint, then the model's metadata), so the budget of a run is known per device.
    legs = list(extra.get("legs") or [])
    hardware = machine_info(procs)

    def record_leg(done: int) -> None:
        extra["legs"] = legs + [{
            "steps": [start_step, done], "seconds": round(time.perf_counter() - t0, 1),
            "device": hardware.get("gpu") or f"CPU {hardware['cpu']} ({hardware['threads']} threads)",
            "batch_size": config.batch_size, "amp": config.amp, "date": time.strftime("%Y-%m-%d"),
        }]

    scores: dict[Any, float] = {}
    pause = False
    bar = tqdm(total=config.iterations, initial=start_step, desc=config.name, unit="it", dynamic_ncols=True,
               disable=not (progress and procs.is_main))
    try:
        for step in range(start_step, config.iterations):
            degraded, clean = next_batch(sampler, step, config, procs)
            with autocast(config, procs.device):
                output = forward(ddp_model, degraded, config.stage)
                loss, parts = objective(output, clean)
            loss_value = global_mean(loss.detach(), procs)
            lr = optimizer.param_groups[0]["lr"]
            if not math.isfinite(loss_value):
                raise TrainingDiverged(diverged_message(step + 1, f"the loss is {loss_value} (lr {lr:.3g})",
                                                        checkpoint_path, last_checkpoint))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            parts.update(objective.update(output.detach(), clean))  # e.g. a GAN discriminator's step
            done = step + 1
            last = done == config.iterations
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
            # all ranks stop after the same step: the first whose clock has run out decides
            pause = (not last and stop_after_s is not None
                     and global_mean(torch.tensor(float(time.perf_counter() - t0 >= stop_after_s)), procs) > 0)
            checkpoint_now = done % config.checkpoint_every == 0 or last or pause
            if checkpoint_now and not all_finite(params):  # on every rank, so all stop together
                raise TrainingDiverged(diverged_message(done, "parameters are no longer finite",
                                                        checkpoint_path, last_checkpoint))
            if not procs.is_main:
                last_checkpoint = done if checkpoint_now else last_checkpoint
                if pause:
                    break
                continue

            row: dict[str, Any] = {}
            if eval_sets and (done % config.val_every == 0 or last):
                scores = validate(model, eval_sets, config, procs.device)
                row.update(val_columns(scores, levels))
                say(f"step {done}: " + ", ".join(f"{task.label(lv)} {s:.2f} dB" for lv, s in scores.items()), procs)
            if row or done % config.log_every == 0 or last or pause:
                row.update(step=done, loss=f"{loss_value:.6g}", lr=f"{lr:.6g}", elapsed_s=f"{elapsed():.1f}")
                if parts:
                    row["loss_parts"] = " ".join(f"{k}={v:.4g}" for k, v in parts.items())
                append_log(log_path, columns, row)
            if checkpoint_now:
                record_leg(done)
                save_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler, step=done,
                                elapsed_s=elapsed(), config=recipe, extra=extra,
                                objective_state=objective.checkpoint_state())
                last_checkpoint = done
            if pause:
                say(f"{config.name}: paused after step {done} of {config.iterations} ({elapsed() / 60:.1f} min "
                    f"of training so far); continue with --resume from {checkpoint_path}", procs)
                break
    finally:
        bar.close()
    if pause:
        if procs.world_size > 1:
            dist.barrier()
        return checkpoint_path

    # the model file
    if procs.is_main:
        if eval_sets and not scores:  # resumed a finished run: measure once more
            scores = validate(model, eval_sets, config, procs.device)
        write_model_file(model_path, model, config, task, level1, base_meta, recipe, scores,
                         wall_time_s=elapsed(), extra=extra, procs=procs)
    if procs.world_size > 1:
        dist.barrier()
    return model_path
