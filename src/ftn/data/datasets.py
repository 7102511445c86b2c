"""Training patches and evaluation images, degraded on the fly, with fully deterministic randomness.

* :class:`PatchSampler` gives the training batch of any step as a pure function of
  ``(seed, step)``: patch ``i`` of step ``s`` depends only on ``(seed, s, i)``. Training is then
  exactly reproducible, resumable from any step without replaying the sampler, and identical for
  any number of data-parallel processes (each rank computes its slice of the same global batch).
* :class:`EvalSet` gives each test image with its degraded version, the degradation seeded by
  ``(seed, file name, level)``: the same numbers in every run, process and DataLoader worker.

Colour handling: with ``grey=False`` grey files are repeated to 3 channels; with ``grey=True``
colour files are converted to luma ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, as Pillow's
``convert("L")``) rounded to the source bit depth. Transparency is ignored (the colour channels
are used as stored).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import Task
from .images import _read, list_images, load_image

__all__ = ["PatchSampler", "EvalSet", "derive_seed"]



def _luma(rgb: np.ndarray) -> np.ndarray:
    """HWC RGB integer levels -> HW luma levels (BT.601 weights), rounded, float64."""
    rgb = rgb.astype(np.float64)
    return np.round(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (ints, floats, strings), stable across runs and processes.

    Uses BLAKE2b of the parts' ``repr`` (Python's ``hash`` is salted per process for strings).
    """
    text = "\x1f".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2**63 - 1)


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def _load_uint8(path: Path, grey: bool) -> np.ndarray:
    """A file as a CHW uint8 array with 1 (grey) or 3 channels."""
    array, _alpha, bit_depth, _mode = _read(path, 200_000_000)
    if bit_depth == 16:
        array = np.round(array.astype(np.float64) / 257.0).astype(np.uint8)
    if grey and array.shape[2] == 3:
        array = np.clip(_luma(array), 0, 255).astype(np.uint8)[..., None]
    elif not grey and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    # np.asarray of a Pillow image is read-only: copy if needed, as torch wants writable arrays
    return np.require(array.transpose(2, 0, 1), requirements=["C", "W"])


class PatchSampler:
    """Random training patches of a folder's images, degraded by ``task`` at ``level``.

    Patch ``i`` of step ``s`` is drawn with a ``torch.Generator`` seeded from
    ``(seed, s, i)``: which image (uniform over images), the crop position (uniform), one of the 8
    flip / rot90 variants, and the degradation's noise. So ``batch(s, n)`` is a pure function of
    ``(seed, s, n)`` and ``batch(s, n, rank=r, world_size=w)`` is exactly
    ``batch(s, n)[r * n // w : (r + 1) * n // w]``.

    All images are loaded once, as uint8 tensors (BSD432: 432 JPEGs, about 200 MB, a second or two).

    Args:
        folder: image folder (see :func:`~ftn.data.images.list_images`).
        task: the degradation.
        level: its level (``sigma``, ``quality``); the attribute ``level`` may be changed later.
        patch_size: side of the square clean patches; the degraded ones are ``patch_size //
            task.scale`` (super-resolution), so it must be a multiple of ``task.scale``.
        seed: the run's seed.
        grey: one-channel patches (colour images converted to luma); else 3 channels.
        max_images: use only the first ``max_images`` files (sorted by name).

    Raises:
        ValueError: no usable image (images smaller than the patch are skipped with a warning).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        task: Task,
        level: float,
        patch_size: int = 64,
        *,
        seed: int = 0,
        grey: bool = False,
        max_images: int | None = None,
    ) -> None:
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        if patch_size % task.scale:
            raise ValueError(f"patch_size {patch_size} must be a multiple of the task's scale {task.scale} "
                             f"(the network's input is patch_size / scale)")
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images must be >= 1 or None, got {max_images!r}")
        self.task = task
        self.level = task.check_level(level)
        self.patch_size = int(patch_size)
        self.scale = task.scale
        self.seed = int(seed)
        self.grey = bool(grey)
        self.folder = Path(folder)

        files = list_images(folder)
        if max_images is not None:
            files = files[:max_images]
        arrays = self._load_all(files)
        self.images: list[torch.Tensor] = []
        self.names: list[str] = []
        small = []
        for path, array in zip(files, arrays, strict=True):
            if min(array.shape[1:]) < self.patch_size:
                small.append(f"{path.name} ({array.shape[2]}x{array.shape[1]})")
                continue
            self.images.append(torch.from_numpy(array))
            self.names.append(path.name)
        if small:
            warnings.warn(
                f"skipped {len(small)} image(s) smaller than the {self.patch_size}-pixel patch "
                f"in {folder}: {', '.join(small[:10])}{' ...' if len(small) > 10 else ''}",
                stacklevel=2,
            )
        if not self.images:
            raise ValueError(
                f"no image in {folder} is at least {self.patch_size}x{self.patch_size} pixels"
            )

    def _load_all(self, files: Sequence[Path]) -> list[np.ndarray]:
        workers = max(1, min(4, os.cpu_count() or 1))
        start = time.monotonic()
        arrays: list[np.ndarray] = []
        bar = None
        # Pillow releases the GIL while decoding, so threads help; the bar shows after 2 s.
        with ThreadPoolExecutor(workers) as pool:
            for array in pool.map(lambda p: _load_uint8(p, self.grey), files):
                arrays.append(array)
                if bar is None and time.monotonic() - start > 2.0 and len(arrays) < len(files):
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(files), initial=len(arrays), desc="loading images")
                elif bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        return arrays

    def __len__(self) -> int:
        """The number of images patches are drawn from."""
        return len(self.images)

    def patch(self, step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch ``index`` of the global batch of ``step``: ``(degraded, clean)``, each (C, P, P)."""
        g = _generator("patch", self.seed, int(step), int(index))
        p = self.patch_size
        image = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        _, h, w = image.shape
        top = int(torch.randint(h - p + 1, (1,), generator=g))
        left = int(torch.randint(w - p + 1, (1,), generator=g))
        variant = int(torch.randint(8, (1,), generator=g))
        crop = image[:, top : top + p, left : left + p]
        if variant & 1:
            crop = crop.flip(-1)
        crop = torch.rot90(crop, variant >> 1, dims=(-2, -1))
        clean = crop.to(torch.float32) / 255.0
        degraded = self.task.degrade(clean, self.level, generator=g)
        return degraded, clean

    def batch(
        self, step: int, batch_size: int, *, rank: int = 0, world_size: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(degraded, clean)``, each ``(batch_size // world_size, C, P, P)`` float32.

        The slice ``[rank * b : (rank + 1) * b]`` (``b = batch_size // world_size``) of the global
        batch of ``step``.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if batch_size < 1 or world_size < 1:
            raise ValueError(f"batch_size and world_size must be >= 1, got {batch_size}, {world_size}")
        if batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by world_size {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        b = batch_size // world_size
        pairs = [self.patch(step, i) for i in range(rank * b, (rank + 1) * b)]
        degraded = torch.stack([d for d, _ in pairs])
        clean = torch.stack([c for _, c in pairs])
        return degraded, clean

    def __repr__(self) -> str:
        return (
            f"PatchSampler({str(self.folder)!r}, {self.task!r}, {self.task.label(self.level)}, "
            f"patch_size={self.patch_size}, seed={self.seed}, grey={self.grey}, "
            f"images={len(self.images)})"
        )


class EvalSet(Dataset):
    """The images of a test folder with their degraded versions, for evaluation.

    Item ``i`` is ``(file stem, degraded (C, H, W), clean (C, H, W))``, float32, at full size.
    The degradation is seeded by ``(seed, file name, level)`` only, so the numbers do not depend on
    the order, the process or the DataLoader worker that reads them. Images are read when asked
    for (use a ``DataLoader`` with ``batch_size=1``: the sizes differ).

    Args:
        folder: image folder (see :func:`~ftn.data.images.list_images`).
        task: the degradation; ``level``: its level.
        seed: the evaluation seed.
        limit: use only the first ``limit`` files (sorted by name).
        grey: one-channel images (colour converted to luma); else 3 channels.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        task: Task,
        level: float,
        *,
        seed: int = 0,
        limit: int | None = None,
        grey: bool = False,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit!r}")
        self.task = task
        self.level = task.check_level(level)
        self.seed = int(seed)
        self.grey = bool(grey)
        self.folder = Path(folder)
        files = list_images(folder)
        self.files: list[Path] = files[:limit] if limit is not None else files

    def __len__(self) -> int:
        return len(self.files)

    @property
    def names(self) -> list[str]:
        """The file stems, in item order."""
        return [f.stem for f in self.files]

    def clean(self, i: int) -> torch.Tensor:
        """The clean image of item ``i`` (C, H, W), float32 in [0, 1]."""
        loaded = load_image(self.files[i])
        image = loaded.image
        if self.grey and image.shape[0] == 3:
            peak = 255.0 if loaded.bit_depth == 8 else 65535.0
            levels = (image.to(torch.float64) * peak).round().permute(1, 2, 0).numpy()
            luma = np.clip(_luma(levels), 0, peak).astype(np.float32) / np.float32(peak)
            image = torch.from_numpy(luma)[None]
        elif not self.grey and image.shape[0] == 1:
            image = image.expand(3, -1, -1).contiguous()
        return self.task.prepare(image)  # super-resolution: a multiple of the scale

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        path = self.files[i]
        clean = self.clean(i)
        g = _generator("eval", self.seed, path.name, self.level)
        degraded = self.task.degrade(clean, self.level, generator=g)
        return path.stem, degraded, clean

    def __repr__(self) -> str:
        return (
            f"EvalSet({str(self.folder)!r}, {self.task!r}, {self.task.label(self.level)}, "
            f"seed={self.seed}, images={len(self)}, grey={self.grey})"
        )
