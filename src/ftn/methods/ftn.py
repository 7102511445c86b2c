r"""Filter Transition Networks (Lee, Kim, Son, Baek, Cheon, Lee; AAAI 2021).

"Smoother Network Tuning and Interpolation for Continuous-level Image Processing."

The idea in one line: instead of changing feature maps, learn a small network that changes the
*filters*. A main network is trained for level 1 (e.g. noise sigma 20). Its conv kernels ``f`` are then
frozen, and a Filter Transition Network per conv layer learns the kernels of level 2 from those of
level 1, ``FTN(f) ~ f^(2)``. At run time the kernels are interpolated (Eq. 1)::

    Y_i = X_i * ( (1 - alpha) f_i  +  alpha FTN(f_i) )                                   (1)

alpha = 0 is level 1, alpha = 1 is level 2; in between the transition is smooth because FTN(f) stays
close to f. Stage 2 trains FTN alone at alpha = 1 (Eq. 2: ``Y_i = X_i * FTN(f_i)``).

The FTN itself (paper, "Filter Transition Networks"): two 1x1 convolutions with G groups, PReLU
activations, and a skip connection with a weighted sum. It is applied to the kernel, not to images:
the kernel of shape (C_out, C_in, k, k) is fed as a batch of C_in items with **C_out channels** on a
k x k grid (this layout reproduces the parameter counts of the paper's Table 4). With
``body = PReLU . conv1x1_G . PReLU . conv1x1_G`` and a learnable weight ``w``::

    FTN(f) = (1 - w) f + w body(f)

Initialisation (paper, "Initialization of FTN"): every conv is an identity (one identity block per
group, zero bias), every PReLU has slope 1, so ``FTN(f) == f`` exactly at the start and stage 2 begins
from level 1 rather than from random filters.

Pixel-adaptive control (Eq. 3): with a per-pixel level map A resized to the layer's output grid::

    Y = (1 - A) . (X * f) + A . (X * FTN(f))                                              (3)

computed here as ``(X * f + b) + A . (X * (FTN(f) - f))``: two convolutions per layer, no more.

Other layers (``nn.Linear``, ``nn.ConvTranspose2d``): a linear layer's weight (out, in) is a 1x1
kernel (out, in, 1, 1), a transposed conv's weight (C_in, C_out/g, k, k) is regrouped to
(C_out, C_in/g, k, k); either way the FTN has one channel per *output* channel, as for a conv.
Per-pixel maps reach a linear layer only where its output is a channel-last grid (B, H, W, C)
(:mod:`ftn.control`); on token sequences (B, N, C) it takes a number or a per-sample alpha.

Cost: FTN works on kernels, never on images, so at a fixed alpha the blended kernel is computed once
(:class:`~ftn.methods.base.KernelCache`) and the network costs exactly what the plain network costs.

Options (the paper's variants):
    groups   G of the 1x1 convs: 1 ("FTN"), 4 ("FTN-gc4"), 16 ("FTN-gc16", the smoothest); where
             C_out is not divisible by G, gcd(G, C_out) is used.
    depth    number of conv+PReLU layers: 2 (the paper's FTN) or 3 ("FTN-deeper").
    spatial  depth-wise 3x3 convs over the k x k grid instead of 1x1 ("FTN-spatial").

Choices the paper leaves open (documented so results can be compared): the skip weight ``w`` is one
learnable scalar per layer initialised to 0.5; the main conv's bias is kept as trained at both levels
(FTN transforms kernels only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from ._kernels import KERNEL_LAYERS, alpha_for, from_out_in, out_channels, run, to_out_in
from .base import Capabilities, KernelCache, MethodSpec, TunableLayer

__all__ = ["FTNConfig", "FilterTransition", "FTNLayer", "FTNConv2d", "SPEC"]


@dataclass
class FTNConfig:
    """Options of the FTN method (see the module docstring)."""

    groups: int = 1
    depth: int = 2
    spatial: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.groups, int) or self.groups < 1:
            raise ValueError(f"groups must be a positive integer, got {self.groups!r}")
        if self.depth not in (2, 3):
            raise ValueError(f"depth must be 2 (FTN) or 3 (FTN-deeper), got {self.depth!r}")


class FilterTransition(nn.Module):
    """FTN: a tiny network that maps a conv kernel of level 1 to a kernel of level 2."""

    def __init__(self, channels: int, groups: int = 1, depth: int = 2, spatial: bool = False) -> None:
        super().__init__()
        self.groups = math.gcd(groups, channels)
        layers: list[nn.Module] = []
        for _ in range(depth):
            if spatial:
                conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
            else:
                conv = nn.Conv2d(channels, channels, 1, groups=self.groups)
            layers += [conv, nn.PReLU(channels, init=1.0)]
        self.body = nn.Sequential(*layers)
        self.skip_weight = nn.Parameter(torch.tensor(0.5))
        self.reset_to_identity()

    @torch.no_grad()
    def reset_to_identity(self) -> None:
        """Identity convs, zero biases, PReLU slope 1: FTN(f) == f."""
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                module.weight.zero_()
                per_group = module.weight.shape[1]
                k = module.weight.shape[-1] // 2
                for c in range(module.out_channels):
                    module.weight[c, c % per_group, k, k] = 1.0
                module.bias.zero_()
            elif isinstance(module, nn.PReLU):
                module.weight.fill_(1.0)
        self.skip_weight.fill_(0.5)

    def forward(self, kernel: Tensor) -> Tensor:
        # (C_out, C_in, k, k) -> a batch of C_in items with C_out channels on the k x k grid.
        x = kernel.transpose(0, 1)
        y = torch.lerp(x, self.body(x), self.skip_weight)  # (1 - w) f + w body(f)
        return y.transpose(0, 1).contiguous()  # a contiguous kernel: oneDNN is slower on strided ones


class FTNLayer(TunableLayer):
    """A kernel layer whose kernel moves from f (alpha=0) to FTN(f) (alpha=1) by Eq. 1 / Eq. 3.

    ``nn.Conv2d``, ``nn.ConvTranspose2d`` and ``nn.Linear`` (a 1x1 kernel (out, in, 1, 1)); the FTN
    always sees the kernel in the conv layout (C_out, C_in/groups, k, k), so it has C_out channels
    for every kind (:mod:`ftn.methods._kernels`).
    """

    def __init__(self, base: nn.Module, config: FTNConfig) -> None:
        if not isinstance(base, KERNEL_LAYERS):
            raise TypeError(f"FTN tunes {[t.__name__ for t in KERNEL_LAYERS]}, not {type(base).__name__}")
        super().__init__(base)
        self.ftn = FilterTransition(out_channels(base), config.groups, config.depth, config.spatial)
        # collected once: walking the module tree per forward cost ~70 us a layer (measured), which
        # is most of a small input's forward; .to() and load_state_dict keep these objects
        self._ftn_params = tuple(self.ftn.parameters())
        self._cache = KernelCache()  # the blended kernel at the current global alpha
        self._delta_cache = KernelCache()  # FTN(f) - f, for per-sample and per-pixel alphas

    def transformed_kernel(self) -> Tensor:
        """FTN(f): the kernel of level 2, in the layer's own weight layout."""
        return from_out_in(self.base, self.ftn(to_out_in(self.base, self.base.weight)))

    def kernel_at(self, alpha: float) -> Tensor:
        """Eq. 1's kernel (1 - alpha) f + alpha FTN(f); alpha = 0 returns f itself (bit-exact)."""
        if alpha == 0.0:
            return self.base.weight
        if alpha == 1.0:
            return self.transformed_kernel()
        return torch.lerp(self.base.weight, self.transformed_kernel(), alpha).contiguous()

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        alpha = self.control.value
        if isinstance(alpha, float):
            if alpha == 0.0:
                return self.base(x, *args, **kwargs)
            kernel = self._cache.get(alpha, self._kernel_inputs(), lambda: self.kernel_at(alpha))
            return run(self.base, x, kernel, self.base.bias, *args, **kwargs)
        # Eq. 3: (1 - A)(X*f + b) + A(X*FTN(f) + b) = (X*f + b) + A (X*(FTN(f) - f)).
        # Two convolutions and one fused multiply-add; measured faster on CPU than one conv with the
        # two kernels stacked on the output axis followed by a blend of the two halves.
        delta = self._delta_cache.get(1.0, self._kernel_inputs(), lambda: self.transformed_kernel() - self.base.weight)
        y = self.base(x, *args, **kwargs)
        return y.addcmul_(alpha_for(self.control, self.base, y), run(self.base, x, delta, None, *args, **kwargs))

    def export_module(self, alpha: float) -> nn.Module:
        layer = self.base
        layer.weight = nn.Parameter(self.kernel_at(alpha).detach().clone(), requires_grad=layer.weight.requires_grad)
        return layer

    def _kernel_inputs(self) -> list[Tensor]:
        return [self.base.weight, *self._ftn_params]


#: The earlier name, from when FTN tuned convs only.
FTNConv2d = FTNLayer


def _capabilities(config: FTNConfig) -> Capabilities:
    return Capabilities(exact_export=True, per_pixel=True, per_sample=True)


SPEC = MethodSpec(
    name="ftn",
    config_class=FTNConfig,
    make_layer=FTNLayer,
    default_targets="conv",
    capabilities=_capabilities,
    summary="Filter Transition Network: a small net maps each kernel f to FTN(f); kernels interpolated (Eq. 1, 3)",
)
