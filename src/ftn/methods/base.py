"""The contract every tuning method follows, and the machinery they share.

A method is a plug-in over any ``nn.Module``: :func:`ftn.attach` finds the target modules (every
``nn.Conv2d``, ``nn.ConvTranspose2d`` and ``nn.Linear`` by default, or blocks), and swaps each for a :class:`TunableLayer` that keeps the
original module as ``.base`` and adds the method's tuner next to it. All layers of one model read the
same :class:`~ftn.control.Control`, so a single ``set_alpha`` moves the whole network.

The base network's parameters are those under ``.base``; everything else a layer owns is the tuner
(stage 2 trains only the tuner). Once :meth:`TunableModel.freeze_base` has run, the base's
normalisation layers (BatchNorm, InstanceNorm, LayerNorm, GroupNorm) stay in eval mode whatever
``train()`` says: their running statistics never drift, so alpha = 0 keeps reproducing the base.
Methods never import architectures.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ..control import AlphaLike, Control
from ._kernels import KERNEL_LAYERS

__all__ = [
    "Capabilities",
    "MethodSpec",
    "TunableLayer",
    "TunableModel",
    "KernelCache",
    "ExportNotSupported",
    "select_targets",
    "image_channels",
]


class ExportNotSupported(NotImplementedError):
    """Raised by ``export`` for methods whose fixed-alpha model is not a plain base network."""


@dataclass(frozen=True)
class Capabilities:
    """What a method (with given options) can do."""

    exact_export: bool  # export(alpha) gives a plain base network with identical output
    per_pixel: bool  # accepts a (B, 1, H, W) alpha map
    per_sample: bool  # accepts a (B,) alpha


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: how to build its layers and what it can do."""

    name: str
    config_class: type  # a dataclass of the method's options
    make_layer: Callable[[nn.Module, Any], TunableLayer]  # (target module, config) -> layer
    default_targets: str  # "conv" (every kernel layer: Conv2d, ConvTranspose2d, Linear), "blocks" (model.block_pattern), "tensors"
    capabilities: Callable[[Any], Capabilities]  # config -> capabilities
    summary: str

    def config(self, **options: Any) -> Any:
        """Build the method's config, naming any unknown option."""
        names = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(
                f"unknown option(s) {unknown} for method {self.name!r}; it takes {sorted(names)}"
            )
        return self.config_class(**options)


class KernelCache:
    """Remembers a tensor computed from some parameters at one alpha.

    The fixed-alpha fast path: blended kernels are computed once and reused by every forward (tiles,
    batches, frames) until alpha or any input tensor changes. Changes are seen through the tensors'
    version counters, which every in-place update (optimiser steps, ``load_state_dict``) bumps.
    While autograd records (training), nothing is cached so gradients flow.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Any = None

    @staticmethod
    def reuses(inputs: Sequence[Tensor]) -> bool:
        """Whether a value computed from ``inputs`` may be kept: not while autograd records through
        them, and not for tensors made under inference_mode (they carry no version counter)."""
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            return False
        return not any(t.is_inference() for t in inputs)

    def get(self, alpha: Any, inputs: Sequence[Tensor], compute: Callable[[], Any]) -> Any:
        if not self.reuses(inputs):
            return compute()
        key = (alpha,) + tuple((id(t), t._version, t.device, t.dtype) for t in inputs)
        if key != self._key:
            # Computed outside inference mode so the cached tensors stay usable everywhere.
            with torch.inference_mode(False), torch.no_grad():
                self._value = compute()
            self._key = key
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, None


class TunableLayer(nn.Module):
    """Base class of the layers a method puts in place of a target module.

    Subclasses keep the original module as ``self.base`` and implement :meth:`forward` reading
    ``self.control``; exportable methods implement :meth:`export_module`.
    """

    base: nn.Module

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        # A plain attribute (not a submodule): shared by all layers, set by TunableModel.
        self.control: Control = Control()

    def tuner_parameters(self) -> Iterator[nn.Parameter]:
        """This layer's own tuner parameters (not those of nested layers or of the base)."""
        yield from self.parameters(recurse=False)
        for name, child in self.named_children():
            if name != "base":
                yield from child.parameters()

    def export_module(self, alpha: float) -> nn.Module:
        """A plain module equivalent to this layer at ``alpha`` (may reuse ``self.base``'s storage)."""
        raise ExportNotSupported(f"{type(self).__name__} cannot be exported to a plain module")


def _is_type_list(targets: Any) -> bool:
    return isinstance(targets, (list, tuple)) and len(targets) > 0 and all(isinstance(t, type) for t in targets)


def select_targets(
    model: nn.Module,
    targets: str | Sequence[str] | Sequence[type] | None,
    exclude: str | Sequence[str] | None,
    default: str,
    method: str,
) -> list[str]:
    """Qualified names of the modules a method attaches to, outermost first, none nested in another.

    ``targets``: None (the method's default), a regex matched in full against qualified names, a list
    of exact names, or a list of module types. ``exclude``: a regex or a list of exact names.
    """
    modules = dict(model.named_modules())
    if targets is None:
        if default == "conv":
            chosen = [n for n, m in modules.items() if isinstance(m, KERNEL_LAYERS)]
        elif default == "blocks":
            pattern = getattr(model, "block_pattern", None)
            if not pattern:
                raise ValueError(
                    f"method {method!r} attaches to blocks, and {type(model).__name__} does not declare "
                    "a `block_pattern`; pass targets=r'regex of block names' (e.g. r'body\\.\\d+')"
                )
            chosen = [n for n in modules if re.fullmatch(pattern, n)]
        elif default == "tensors":
            chosen = [
                n
                for n, m in modules.items()
                if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))
            ]
        else:  # pragma: no cover - programming error in a MethodSpec
            raise AssertionError(default)
    elif isinstance(targets, str):
        chosen = [n for n in modules if re.fullmatch(targets, n)]
    elif _is_type_list(targets):
        chosen = [n for n, m in modules.items() if isinstance(m, tuple(targets))]
    elif isinstance(targets, (list, tuple)) and all(isinstance(t, str) for t in targets):
        missing = [t for t in targets if t not in modules]
        if missing:
            raise ValueError(f"targets name modules that do not exist: {missing}")
        chosen = list(targets)
    else:
        raise TypeError("targets must be None, a regex string, a list of module names or a list of module types")

    if default == "conv" and not (isinstance(targets, (list, tuple)) and all(isinstance(t, str) for t in targets)):
        # A regex or type list selects the kernel layers among what it matches; explicit names are
        # checked by attach.
        chosen = [n for n in chosen if isinstance(modules[n], KERNEL_LAYERS)]
    if exclude is not None:
        if isinstance(exclude, str):
            chosen = [n for n in chosen if not re.fullmatch(exclude, n)]
        else:
            excluded = set(exclude)
            chosen = [n for n in chosen if n not in excluded]
    if not chosen:
        raise ValueError(
            f"method {method!r} found no target modules in {type(model).__name__} "
            f"(targets={targets!r}, exclude={exclude!r}); check the names with model.named_modules()"
        )
    if default != "tensors":
        # Drop modules nested inside another chosen module: a block is tuned once, as a whole.
        kept: list[str] = []
        for name in sorted(chosen, key=lambda n: n.count(".") if n else -1):  # outermost first
            if not any(k == "" or name.startswith(k + ".") for k in kept):
                kept.append(name)
        order = {n: i for i, n in enumerate(modules)}
        chosen = sorted(kept, key=order.__getitem__)
    return chosen


#: Normalisation layers: frozen in eval mode under a frozen base (BatchNorm*, SyncBatchNorm and
#: InstanceNorm* derive from _NormBase).
_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def image_channels(network: nn.Module) -> int:
    """Image channels a network takes (from its architecture's options, else its first conv).

    Raises:
        ValueError: neither tells (no ``in_channels`` option and no ``nn.Conv2d``).
    """
    options = getattr(network, "arch_options", None) or {}
    if isinstance(options.get("in_channels"), int):
        return int(options["in_channels"])
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(f"cannot tell how many image channels {type(network).__name__} takes")


class TunableModel(nn.Module):
    """A base network with a tuning method attached: one network for every level in between.

    ``model(x)`` runs at the current alpha; ``model(x, alpha=a)`` at another one for that call.
    Build it with :func:`ftn.attach`.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: MethodSpec,
        config: Any,
        target_names: list[str],
        *,
        alpha: AlphaLike = 0.0,
        allow_extrapolation: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.target_names = list(target_names)
        self.control = Control(alpha, allow_extrapolation=allow_extrapolation)
        self.model = model  # replaced below where the root itself is a target
        # Innermost first, so that an outer layer (DNI on a module with its own tensors) wraps the
        # already-converted inner ones.
        for name in sorted(target_names, key=lambda n: -n.count(".") if n else 1):
            module = self.model.get_submodule(name) if name else self.model
            layer = spec.make_layer(module, config)
            layer.control = self.control
            if name:
                _replace(self.model, name, layer)
            else:
                self.model = layer

    # -- the public surface ----------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.spec.name

    @property
    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @property
    def capabilities(self) -> Capabilities:
        return self.spec.capabilities(self.config)

    @property
    def current_alpha(self) -> float | Tensor:
        return self.control.value

    @property
    def base_network(self) -> nn.Module:
        """The network the method was attached to, under the wrapper: the module that carries the
        architecture's attributes (``arch_name``, ``arch_options``, ``size_multiple``).

        Its target layers are the method's layers (so its tensors include the tuner's); where the
        whole network was the one target, it is the original module itself. For a plain copy at one
        alpha, use :meth:`export`.
        """
        return self.model.base if isinstance(self.model, TunableLayer) else self.model

    @property
    def image_channels(self) -> int:
        """Image channels the model takes: :func:`image_channels` of its base network."""
        return image_channels(self.base_network)

    def tunable_layers(self) -> Iterator[tuple[str, TunableLayer]]:
        for name, module in self.model.named_modules():
            if isinstance(module, TunableLayer):
                yield name, module

    def set_alpha(self, alpha: AlphaLike) -> TunableModel:
        """Set the level for the following forwards: a float, a (B,) tensor or a (B, 1, H, W) map."""
        self._check_kind(alpha)
        self.control.set(alpha)
        return self

    @contextmanager
    def alpha(self, alpha: AlphaLike) -> Iterator[TunableModel]:
        """Run a block at another alpha, restoring the previous one afterwards."""
        previous = self.control.value
        self.set_alpha(alpha)
        try:
            yield self
        finally:
            self.control.set(previous)

    def forward(self, *args: Any, alpha: AlphaLike | None = None, **kwargs: Any) -> Any:
        if alpha is None:
            return self.model(*args, **kwargs)
        with self.alpha(alpha):
            return self.model(*args, **kwargs)

    def tuner_parameters(self) -> list[nn.Parameter]:
        """The parameters stage 2 trains (the method's own); the base network's are excluded."""
        seen: set[int] = set()
        params = []
        for _, layer in self.tunable_layers():
            for p in layer.tuner_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def base_parameters(self) -> list[nn.Parameter]:
        """The parameters of the base network (everything that is not tuner)."""
        tuner = {id(p) for p in self.tuner_parameters()}
        return [p for p in self.parameters() if id(p) not in tuner]

    def freeze_base(self) -> TunableModel:
        """Stage 2 set-up: base parameters frozen, tuner parameters trainable, and the base's
        normalisation layers in eval mode from now on (also after ``train()``)."""
        for p in self.base_parameters():
            p.requires_grad_(False)
        for p in self.tuner_parameters():
            p.requires_grad_(True)
        self._base_frozen = True
        self._freeze_base_norms()
        return self

    def train(self, mode: bool = True) -> TunableModel:
        """``nn.Module.train``, except that a frozen base's normalisation layers stay in eval mode:
        a BatchNorm in training mode would normalise by batch statistics and update its running
        ones, so alpha = 0 would stop reproducing the base."""
        super().train(mode)
        if getattr(self, "_base_frozen", False):
            self._freeze_base_norms()
        return self

    def base_norm_layers(self) -> list[nn.Module]:
        """The base network's normalisation layers in module order (not those inside a tuner, such as
        CFSNet's copy of a block)."""
        found: list[nn.Module] = []
        stack: list[nn.Module] = [self.model]
        while stack:
            module = stack.pop()
            if isinstance(module, _NORM_LAYERS):
                found.append(module)
            # Inside a tunable layer only its base belongs to the base network; reversed so that the
            # list follows the modules' order.
            stack.extend([module.base] if isinstance(module, TunableLayer) else reversed(list(module.children())))
        return found

    def _freeze_base_norms(self) -> None:
        for module in self.base_norm_layers():
            module.eval()

    def export(self, alpha: float) -> nn.Module:
        """A plain model of the base architecture with the weights of level ``alpha`` baked in.

        Only for methods with ``capabilities.exact_export``; the others raise
        :class:`ExportNotSupported` with the reason.
        """
        if not self.capabilities.exact_export:
            raise ExportNotSupported(
                f"method {self.method!r} with options {self.options} changes the network's structure, "
                "so no plain base network reproduces it at a fixed alpha; use the tunable model itself"
            )
        value = Control(alpha, allow_extrapolation=self.control.allow_extrapolation).value
        if not isinstance(value, float):
            raise TypeError("export takes one alpha (a number); per-pixel maps cannot be baked into weights")
        plain = copy.deepcopy(self.model)
        layers = [(n, m) for n, m in plain.named_modules() if isinstance(m, TunableLayer)]
        for name, layer in sorted(layers, key=lambda item: -item[0].count(".") if item[0] else 1):
            with torch.no_grad():
                baked = layer.export_module(value)
            if name:
                _replace(plain, name, baked)
            else:
                plain = baked
        return plain

    def extra_repr(self) -> str:
        return f"method={self.method!r}, options={self.options}, layers={len(self.target_names)}"

    def _check_kind(self, alpha: AlphaLike) -> None:
        caps = self.capabilities
        if isinstance(alpha, Tensor) and alpha.dim() == 4 and not caps.per_pixel:
            raise ValueError(f"method {self.method!r} does not take per-pixel alpha maps")
        if isinstance(alpha, Tensor) and alpha.dim() == 1 and not caps.per_sample:
            raise ValueError(f"method {self.method!r} does not take per-sample alphas")


def output_channels(module: nn.Module) -> int:
    """Channels a block outputs, read from its last conv (pass ``channels=`` where that is wrong)."""
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"cannot tell how many channels {type(module).__name__} outputs (it has no Conv2d); pass channels=N"
        )
    return convs[-1].out_channels
