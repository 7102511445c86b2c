"""Batch and patch size of ``ftn tune`` from free memory, where the user gives neither.

The rule, small on purpose:

1. **Activations per pixel.** One forward of the model at alpha 1 on a probe image, with a hook on
   every leaf module and every tuned layer counting the elements of its output: ``elements`` per input pixel. Training
   keeps about that much for the backward pass, plus its gradients and the intermediates no hook
   sees (functional activations, the blended kernels), so a training pixel costs
   ``BYTES_PER_ELEMENT * elements`` bytes (4-byte floats, times a safety factor of 4).
2. **Free memory.** ``torch.cuda.mem_get_info`` on a GPU, ``MemAvailable`` of ``/proc/meminfo`` on a
   Linux CPU, else an assumed :data:`FALLBACK_FREE` (4 GiB); half of it is the budget.
3. **Sizes.** The largest patch of :data:`PATCHES` (96, 64, 48, 32) whose batch of
   :data:`MIN_BATCH` (4) fits and that no training image is smaller than, then the largest batch up to the device's cap that fits at that patch.
   The caps: batch 16 and patch 96 on a GPU; batch 8 and patch 64 on a CPU, where the time per step,
   not memory, is the limit (the defaults the learning rate was measured with).

The free memory changes from run to run, so ``--resume`` reuses the sizes in the checkpoint instead
of choosing again, and the tuned file records the sizes and how they were chosen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..methods.base import TunableLayer

__all__ = ["BYTES_PER_ELEMENT", "CAPS", "FALLBACK_FREE", "MIN_BATCH", "PATCHES", "Sizes", "activation_elements",
           "choose_sizes", "free_memory"]

#: Bytes a training step needs per counted activation element: float32 (4) x a safety factor of 4.
BYTES_PER_ELEMENT = 16
#: Patch sides tried, largest first.
PATCHES = (96, 64, 48, 32)
#: The smallest batch a patch must fit with before a smaller patch is tried.
MIN_BATCH = 4
#: (batch, patch) caps per device type.
CAPS = {"cuda": (16, 96), "cpu": (8, 64)}
#: Free memory assumed when the system does not say (bytes).
FALLBACK_FREE = 4 << 30


@dataclass(frozen=True)
class Sizes:
    """A batch and patch size and a line saying how they were chosen."""

    batch_size: int
    patch_size: int
    note: str


def free_memory(device: torch.device) -> tuple[int, str]:
    """(free bytes, where the number comes from) on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), "free GPU memory"
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        text = ""
    match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", text, re.MULTILINE)
    if match:
        return int(match.group(1)) * 1024, "MemAvailable"
    return FALLBACK_FREE, "assumed (the system does not say)"


@torch.no_grad()
def activation_elements(model: nn.Module, probe: torch.Tensor, alpha: Any = 1.0) -> float:
    """Output elements of all leaf modules per input pixel, in one forward of ``model(probe, alpha=alpha)``
    (a multi-axis model takes its training point, ``{"sigma": 2}``)."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    # Leaves, and the method's layers: a tuned conv is a module holding the base conv and its tuner,
    # which runs the blended kernel itself (its children then see kernels, not images).
    counted = [m for m in model.modules() if isinstance(m, TunableLayer) or not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in counted]
    try:
        model(probe, alpha=alpha)
    finally:
        for hook in hooks:
            hook.remove()
    pixels = probe.shape[0] * probe.shape[-2] * probe.shape[-1]
    return max(total, probe.numel()) / pixels  # at least the input itself


def choose_sizes(elements_per_pixel: float, free_bytes: int, device_type: str, source: str = "free memory",
                 *, batch_size: int | None = None, patch_size: int | None = None,
                 smallest_image: int | None = None) -> Sizes:
    """The batch and patch size by the rule of this module; a size the user gave is kept as it is.

    ``elements_per_pixel``: :func:`activation_elements`; ``free_bytes``: :func:`free_memory`;
    ``smallest_image``: the shorter side of the smallest training image, which the patch never
    exceeds (so no image is skipped; below 32 pixels the patch is that side).
    """
    max_batch, max_patch = CAPS.get(device_type, CAPS["cpu"])
    per_pixel = BYTES_PER_ELEMENT * max(float(elements_per_pixel), 1.0)
    pixels = max(0, int(free_bytes)) // 2 / per_pixel  # half the free memory is the budget
    if patch_size is None:
        largest = max_patch if smallest_image is None else min(max_patch, int(smallest_image))
        fitting = [p for p in PATCHES if p <= largest and (batch_size or MIN_BATCH) * p * p <= pixels]
        patch_size = fitting[0] if fitting else min(PATCHES[-1], largest)
    if batch_size is None:
        batch_size = int(max(1, min(max_batch, pixels // (patch_size * patch_size))))
    gib = free_bytes / (1 << 30)
    note = (f"chosen from {gib:.1f} GiB {source} ({elements_per_pixel:.0f} activations per pixel; "
            f"caps on {device_type}: batch {max_batch}, patch {max_patch})")
    return Sizes(int(batch_size), int(patch_size), note)
