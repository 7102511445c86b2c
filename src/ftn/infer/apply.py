"""Running a tunable model on one image (:func:`apply_model`), whole or in tiles.

The level vocabulary (a real level such as ``sigma 50`` to and from alpha, through the model's
calibration) lives in :mod:`ftn.levels`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch import Tensor

from ..control import check_alpha
from ..methods import TunableModel
from ..methods.axes import AxesModel
from ..methods.base import image_channels

__all__ = ["apply_model"]

Alpha = float | Tensor | dict[str, float | Tensor]


def _first_param(model: nn.Module) -> Tensor | None:
    return next(iter(model.parameters()), None)


def apply_model(
    model: nn.Module,
    image: Tensor,
    *,
    alpha: Alpha,
    allow_extrapolation: bool | None = None,
    tile: int | str | None = None,
    overlap: int = 64,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Tensor:
    """Run ``model`` on one image at ``alpha``; returns an image like the input, clamped to [0, 1].

    Args:
        model: a :class:`~ftn.TunableModel` or a multi-axis :class:`~ftn.methods.axes.AxesModel`
            (run in eval mode; its mode is restored afterwards).
        image: (C, H, W) or (1, C, H, W) float in [0, 1]. A grey image given to a colour model is
            replicated to three channels and the result averaged back to one; a colour image given
            to a grey model is processed one channel at a time.
        alpha: a number, or a per-pixel map of shape (H, W), (1, H, W) or (1, 1, H, W). For an
            ``AxesModel``: a dict ``{axis: number or map}`` (axes left out at 0), or a vector of one
            number per axis; each axis's values in [0, K].
        allow_extrapolation: overrides the model's own setting for this call (alphas outside [0, 1]);
            multi-axis models never extrapolate.
        tile: None or 0 runs the whole image at once; an int runs tiles of that side (input pixels);
            ``"auto"`` picks the side from free memory and tiles only images larger than it
            (:mod:`ftn.infer.tiling`). On CUDA, an out-of-memory error halves the tile and retries.
        overlap: input pixels shared by neighbouring tiles (the middle half is cross-faded).
        progress: called with ``(tiles done, tiles in all)``.
        log: where one-line notes go (a tile size halved, tiling a network with instance norm).

    Runs on the model's device and dtype under ``torch.inference_mode``.
    """
    axes = isinstance(model, AxesModel)
    if not isinstance(model, TunableModel) and not axes:
        raise TypeError(
            f"apply_model needs a tunable model (ftn.attach / ftn.load of a file with a method), got {type(model).__name__}"
        )
    if not isinstance(image, Tensor) or image.dim() not in (3, 4) or (image.dim() == 4 and image.shape[0] != 1):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a (C, H, W) tensor, got {shape}")
    batched = image.dim() == 4
    x = image if batched else image[None]
    param = _first_param(model)
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if axes:
        if allow_extrapolation:
            raise ValueError("multi-axis models run inside their anchors: each axis in [0, K]; no extrapolation")
        alpha = _axes_setting(model, alpha, device, dtype)
        extrapolate = False
    else:
        if isinstance(alpha, Tensor) and alpha.dim() in (2, 3):
            alpha = alpha.reshape(1, 1, *alpha.shape[-2:])
        extrapolate = model.control.allow_extrapolation if allow_extrapolation is None else bool(allow_extrapolation)
        check_alpha(alpha, allow_extrapolation=extrapolate)
        if isinstance(alpha, Tensor):
            alpha = alpha.to(device=device, dtype=dtype)

    want = image_channels(model.base_network)
    have = x.shape[1]
    x = x.to(device=device, dtype=dtype)

    if have == want:
        inputs, merge = x, None
    elif have == 1 and want == 3:
        inputs, merge = x.expand(-1, 3, -1, -1), "mean"
    elif want == 1:
        inputs, merge = x.reshape(-1, 1, *x.shape[-2:]), "stack"
    else:
        raise ValueError(f"the model takes {want}-channel images; this one has {have} channels")

    was_training = model.training
    previous = getattr(model.control, "allow_extrapolation", None)
    if not axes:
        model.control.allow_extrapolation = extrapolate
    try:
        model.eval()
        with torch.inference_mode():
            out = _forward(model, inputs, alpha, tile=tile, overlap=overlap, progress=progress, log=log or (lambda _: None))
    finally:
        if not axes:
            model.control.allow_extrapolation = previous
        model.train(was_training)
    if merge == "mean":
        out = out.mean(dim=1, keepdim=True)
    elif merge == "stack":
        out = out.reshape(x.shape[0], have, *out.shape[-2:])
    out = out.clamp(0.0, 1.0).to(device=image.device, dtype=image.dtype if image.is_floating_point() else torch.float32)
    return out if batched else out[0]


def _axes_setting(model: AxesModel, alpha: object, device: torch.device, dtype: torch.dtype) -> dict[str, float | Tensor]:
    """A multi-axis setting, validated (``AxesControl.parse``), with per-axis maps as (1, 1, H, W)
    tensors on the model's device."""
    if isinstance(alpha, dict):
        alpha = {k: v.reshape(1, 1, *v.shape[-2:]) if isinstance(v, Tensor) and v.dim() in (2, 3) else v
                 for k, v in alpha.items()}
    values = model.control.parse(alpha)  # type: ignore[arg-type]
    return {k: v.to(device=device, dtype=dtype) if isinstance(v, Tensor) else v for k, v in values.items()}


def _split_maps(alpha: Alpha) -> tuple[Tensor | None, Callable[[Tensor | None], Alpha]]:
    """The per-pixel part of ``alpha`` as one (1, M, H, W) tensor for the tiler to cut, and how to put
    a cut piece back into a setting (numbers stay as they are: one blended kernel for every tile)."""
    if isinstance(alpha, Tensor) and alpha.dim() == 4:
        return alpha, lambda piece: alpha if piece is None else piece
    if not isinstance(alpha, dict):
        return None, lambda piece: alpha
    names = [k for k, v in alpha.items() if isinstance(v, Tensor) and v.dim() == 4]
    if not names:
        return None, lambda piece: alpha
    stacked = torch.cat([alpha[k] for k in names], dim=1)  # type: ignore[misc]

    def rebuild(piece: Tensor | None) -> Alpha:
        if piece is None:
            return alpha
        return {**alpha, **{k: piece[:, i : i + 1] for i, k in enumerate(names)}}

    return stacked, rebuild


def _forward(
    model: TunableModel | AxesModel,
    x: Tensor,
    alpha: Alpha,
    *,
    tile: int | str | None,
    overlap: int,
    progress: Callable[[int, int], None] | None,
    log: Callable[[str], None],
) -> Tensor:
    """The model on ``x`` whole or in tiles; on CUDA out-of-memory, in tiles half as large."""
    from .tiling import auto_tile_size, normalises_globally, tiled_forward

    network = model.base_network
    align = int(getattr(network, "size_multiple", 1))
    height, width = x.shape[-2:]
    if tile == "auto":
        side = auto_tile_size(model, x.shape[1], x.device, multiple=max(16, align))
        tile = side if max(height, width) > side else None
    elif tile is not None and not isinstance(tile, int):
        raise ValueError(f"tile must be None, an int or 'auto', got {tile!r}")
    if tile and tile % align:
        tile += align - tile % align
    noted = False
    while True:
        try:
            if not tile or (height <= tile and width <= tile):
                return model(x, alpha=alpha)
            if tile <= overlap:
                raise ValueError(f"tile size {tile} must exceed the overlap {overlap}")
            if not noted and normalises_globally(network):
                log("note: this network normalises over the whole image (instance norm); tiles change the result slightly")
                noted = True
            amap, rebuild = _split_maps(alpha)

            def run(piece: Tensor, piece_map: Tensor | None, rebuild=rebuild) -> Tensor:  # noqa: ANN001
                return model(piece, alpha=rebuild(piece_map))

            side = min(16, height, width)  # a small probe tells the output scale (super-resolution)
            probe = model(x[:, :, :side, :side], alpha=rebuild(None if amap is None else amap[..., :side, :side]))
            scale = probe.shape[-1] // side
            return tiled_forward(run, x, tile=tile, overlap=overlap, scale=scale, align=align, alpha_map=amap,
                                 progress=progress)
        except torch.cuda.OutOfMemoryError:
            smaller = (tile or auto_tile_size(model, x.shape[1], x.device)) // 2 // align * align
            if smaller <= overlap or smaller < 32:  # no tile small enough: the real error
                raise
            log(f"out of GPU memory with tiles of {tile or 'the whole image'}; retrying with tiles of {smaller}")
            torch.cuda.empty_cache()
            tile = smaller
