r"""Deep Network Interpolation (Wang, Yu, Dong, Tang, Loy; CVPR 2019).

Fine-tune a full copy of the base network at level 2, then interpolate *every* tensor::

    theta(alpha) = (1 - alpha) theta^(1) + alpha theta^(2)

weights, biases, norm parameters and buffers alike. Here the level-2 copy lives beside each module
that owns tensors (conv, norm, PReLU, ...), as its tuner; it starts equal to the base, so the model is
unchanged until stage 2 trains it.

Per-pixel control uses Eq. 3's identity layer by layer: ``(1 - A) . m(x; theta1) + A . m(x; theta2)``.
This equals per-pixel parameter interpolation for every layer that is linear in its parameters
(conv, linear, PReLU, affine norms); for a BatchNorm in eval mode (non-linear in its running
variance) it is an approximation. At a fixed alpha the interpolated tensors are computed once and
reused, so the network costs what the plain network costs. Layers acting on the last axis
(``nn.Linear``, ``nn.LayerNorm``) see alpha channel-last (:mod:`ftn.control`). Under a frozen base the
BatchNorm layers run in eval mode, so both levels normalise with their own running statistics and
neither set drifts during stage 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor
from torch.func import functional_call

from ._kernels import KERNEL_LAYERS, alpha_for, run
from .base import Capabilities, KernelCache, MethodSpec, TunableLayer

__all__ = ["DNIConfig", "DNILayer", "SPEC"]


@dataclass
class DNIConfig:
    """DNI has no options: every tensor of the targets is interpolated."""


class DNILayer(TunableLayer):
    """A module with a second, level-2 copy of its own (direct) parameters and buffers."""

    def __init__(self, base: nn.Module, config: DNIConfig) -> None:
        super().__init__(base)
        self.level2 = nn.ParameterDict()
        self._param_names: list[str] = []
        self._buffer_names: list[str] = []
        for name, param in base.named_parameters(recurse=False):
            self.level2[name] = nn.Parameter(param.detach().clone())
            self._param_names.append(name)
        for name, buf in base.named_buffers(recurse=False):
            if buf is None:
                continue
            self.register_buffer(f"level2_{name}", buf.detach().clone())
            self._buffer_names.append(name)
        self._cache = KernelCache()  # interpolated tensors at the current global alpha
        self._delta_cache = KernelCache()  # level 2 - level 1, for per-pixel convs

    # By name, not through named_parameters(): these run on every forward, and walking the module's
    # registries cost about as much as a small conv (1.8x on a 32-px mini network).
    def _level1(self) -> dict[str, Tensor]:
        return {n: getattr(self.base, n) for n in (*self._param_names, *self._buffer_names)}

    def _level2(self) -> dict[str, Tensor]:
        tensors = {n: self.level2[n] for n in self._param_names}
        tensors.update({n: getattr(self, f"level2_{n}") for n in self._buffer_names})
        return tensors

    def tensors_at(self, alpha: float) -> dict[str, Tensor]:
        """Every direct tensor interpolated at alpha (integer buffers such as counters: level 1's)."""
        t1, t2 = self._level1(), self._level2()
        out = {}
        for name, a in t1.items():
            b = t2[name]
            out[name] = torch.lerp(a, b, alpha) if a.is_floating_point() else a
        return out

    def _run(self, x: tuple, tensors: dict[str, Tensor], kwargs: dict) -> Tensor:
        if isinstance(self.base, KERNEL_LAYERS):  # the common case, without functional_call's overhead
            return run(self.base, *x, tensors["weight"], tensors.get("bias"), **kwargs)
        return functional_call(self.base, tensors, x, kwargs, strict=False)

    def _inputs(self) -> tuple[Tensor, ...]:
        """Both levels' tensors, for the kernel cache's key. Collected once: rebuilding the two dicts on
        every forward cost about 35 us per layer (4% of a 256-px mini AdaFM-Net forward). Recollected
        after ``.to()`` and friends (``_apply``) and whenever the base's first tensor is another object
        (a parameter assigned anew)."""
        cached = self.__dict__.get("_input_cache")
        first = self._param_names[0] if self._param_names else None
        if cached is None or (first is not None and cached[0] is not getattr(self.base, first)):
            cached = tuple(self._level1().values()) + tuple(self._level2().values())
            self.__dict__["_input_cache"] = cached
        return cached

    def _apply(self, fn, *args, **kwargs):  # device / dtype moves may swap the tensor objects
        self.__dict__.pop("_input_cache", None)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, *x: Tensor, **kwargs) -> Tensor:
        alpha = self.control.value
        if isinstance(alpha, float):
            if alpha == 0.0:
                return self.base(*x, **kwargs)
            if alpha == 1.0:
                return self._run(x, self._level2(), kwargs)
            tensors = self._cache.get(alpha, self._inputs(), lambda: self.tensors_at(alpha))
            return self._run(x, tensors, kwargs)
        y1 = self.base(*x, **kwargs)
        a = alpha_for(self.control, self.base, y1)
        if isinstance(self.base, KERNEL_LAYERS):
            # Linear in its tensors: y1 + A . (X * (w2 - w1) + (b2 - b1)), one fused update.
            delta = self._delta_cache.get(1.0, self._inputs(), self._conv_delta)
            return y1.addcmul_(a, self._run(x, delta, kwargs))
        y2 = self._run(x, self._level2(), kwargs)
        return torch.lerp(y1, y2, a)

    def _conv_delta(self) -> dict[str, Tensor]:
        t1, t2 = self._level1(), self._level2()
        return {name: t2[name] - t1[name] for name in t1}

    def export_module(self, alpha: float) -> nn.Module:
        return bake_tensors(self.base, self.tensors_at(alpha))


def bake_tensors(module: nn.Module, tensors: dict[str, Tensor]) -> nn.Module:
    """``module`` with its direct tensors replaced by copies of ``tensors`` (parameters stay parameters)."""
    for name, value in tensors.items():
        current = getattr(module, name)
        if isinstance(current, nn.Parameter):
            setattr(module, name, nn.Parameter(value.detach().clone(), requires_grad=current.requires_grad))
        else:
            setattr(module, name, value.detach().clone())
    return module


def _capabilities(config: DNIConfig) -> Capabilities:
    return Capabilities(exact_export=True, per_pixel=True, per_sample=True)


SPEC = MethodSpec(
    name="dni",
    config_class=DNIConfig,
    make_layer=DNILayer,
    default_targets="tensors",
    capabilities=_capabilities,
    summary="Deep Network Interpolation: a fine-tuned copy of every tensor, interpolated linearly",
)
