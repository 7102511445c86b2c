"""The layers whose weight is a kernel, seen one way by every method: ``nn.Conv2d``,
``nn.ConvTranspose2d`` and ``nn.Linear``.

Methods that work on kernels (FTN, AdaFM) read each weight in one layout, the conv's
(C_out, C_in / groups, kh, kw), whatever the layer stores:

* ``nn.Conv2d``: (C_out, C_in/g, kh, kw) already;
* ``nn.Linear``: (out, in) is a 1x1 kernel (out, in, 1, 1) -- a linear layer is a 1x1 conv over
  the last axis;
* ``nn.ConvTranspose2d``: (C_in, C_out/g, kh, kw), with the *output* channels on axis 1 and the
  groups on axis 0; it is regrouped to (C_out, C_in/g, kh, kw), so channel ``c`` of the method is
  output channel ``c`` of the layer, as for a conv.

:func:`run` applies a layer with other tensors (a blended kernel), :func:`alpha_for` gives the alpha
that broadcasts against a layer's output: channel-first (B, C, H, W) for convs and most layers,
channel-last (B, ..., C) for ``nn.Linear`` and ``nn.LayerNorm``.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..control import Control

__all__ = ["KERNEL_LAYERS", "CHANNELS_LAST_LAYERS", "alpha_for", "from_out_in", "out_channels", "run", "to_out_in"]

#: The module types methods that transform kernels attach to by default.
KERNEL_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)

#: Layers acting on the last axis: their outputs are (B, ..., C), not (B, C, H, W).
CHANNELS_LAST_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.LayerNorm, *(
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
))


def out_channels(module: nn.Module) -> int:
    """Output channels (features) of a kernel layer."""
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def to_out_in(module: nn.Module, weight: Tensor) -> Tensor:
    """``weight`` of ``module`` in the conv layout (C_out, C_in/groups, kh, kw)."""
    if isinstance(module, nn.Linear):
        return weight[:, :, None, None]
    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        c_in, out_per_group, kh, kw = weight.shape
        # (g, C_in/g, C_out/g, k, k) -> (g, C_out/g, C_in/g, k, k) -> (C_out, C_in/g, k, k)
        return weight.view(g, c_in // g, out_per_group, kh, kw).transpose(1, 2).reshape(g * out_per_group, c_in // g, kh, kw)
    return weight


def from_out_in(module: nn.Module, kernel: Tensor) -> Tensor:
    """The inverse of :func:`to_out_in`: a kernel in the conv layout back in ``module``'s own layout."""
    if isinstance(module, nn.Linear):
        return kernel.reshape(kernel.shape[0], kernel.shape[1])
    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        c_out, in_per_group, kh, kw = kernel.shape
        return kernel.view(g, c_out // g, in_per_group, kh, kw).transpose(1, 2).reshape(g * in_per_group, c_out // g, kh, kw)
    return kernel


def run(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None, *args, **kwargs) -> Tensor:
    """``module(x, *args, **kwargs)`` computed with ``weight`` and ``bias`` in place of its own."""
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(x, weight, bias)
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(module, nn.ConvTranspose2d):
        output_size = args[0] if args else kwargs.get("output_size")
        output_padding = module._output_padding(
            x, output_size, module.stride, module.padding, module.kernel_size, 2, module.dilation
        )
        return F.conv_transpose2d(x, weight, bias, module.stride, module.padding, output_padding, module.groups,
                                  module.dilation)
    raise TypeError(f"{type(module).__name__} is not one of {[t.__name__ for t in KERNEL_LAYERS]}")


def alpha_for(control: Control, module: nn.Module, out: Tensor) -> float | Tensor:
    """The control's alpha broadcastable against ``out``, the output of ``module``."""
    return control.for_output(out, channels_last=isinstance(module, CHANNELS_LAST_LAYERS))
