"""``ftn tune`` (:func:`ftn.tune`): give a level slider to a network someone else trained.

A frozen base (an ``nn.Module``, an ftn model file or shipped name, a checkpoint :func:`ftn.load_base`
reads, or one spandrel recognises: :mod:`ftn.external`) gets a tuner (FTN by default) trained at alpha 1 for level 2: a noise or
JPEG level (:mod:`ftn.tuning.specs`), a teacher model's output, or the user's own before/after pairs
(:mod:`ftn.tuning.data`). alpha 0 stays the base, checked bit for bit before training starts::

    import ftn
    ftn.tune(net, from_="noise:25", to="noise:50", data="photos/", iters=2000, out="tuned.safetensors")

The tuned file rebuilds its base (an ftn architecture; a spandrel one by its id and the original
checkpoint's key layout; a user's own class with ``ftn.load(path, model=...)``), and ``ftn export
--alpha A`` writes the plain base at A in the original checkpoint's key layout (:mod:`ftn.export`).

Where both ends are numeric levels of one task (``noise:25`` -> ``noise:50``), a few ``--data`` images
are held out of training and the level -> alpha calibration measured on them is stored in the file
(:mod:`ftn.tuning.calibrate`), so ``ftn run --level 40`` works. Batch and patch size not given are
chosen from free memory (:mod:`ftn.tuning.sizes`).

A tunable model grows the same way (:mod:`ftn.tuning.grow_loop`, :mod:`ftn.tuning.grow`): one more
anchor after an axis's last, or one more axis; only the new tuner trains, every setting the model had
keeps its output bit for bit, and the new part's calibration joins the file's levels::

    ftn.tune("mine.safetensors", axis="sigma", add_anchor="noise:100", data="photos/", out="mine-3.safetensors")
    ftn.tune("denoise", new_axis="quality", to="jpeg:40", data="photos/", out="restore.safetensors")
"""

from typing import Any

from .specs import BaseSpec, JpegSpec, NoiseSpec, PairsSpec, TeacherSpec, parse_spec, resolve_levels

__all__ = ["DEFAULT_LR", "BaseSpec", "JpegSpec", "NoiseSpec", "PairsSpec", "TeacherSpec", "checkpoint_path",
           "load_network", "parse_spec", "resolve_levels", "tune"]

_LAZY = {"DEFAULT_LR", "checkpoint_path", "load_network", "tune"}


def __getattr__(name: str) -> Any:
    # The loop needs the data stack (Pillow, numpy, tqdm): imported on first use, so that building
    # the ``ftn`` command's parser (which imports ftn.tuning.cli) stays light.
    if name in _LAZY:
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
