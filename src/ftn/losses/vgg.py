"""ImageNet VGG feature extractor for perceptual and style losses, built without torchvision.

:class:`VGGFeatures` (also exported as :class:`VGG16Features`) reproduces the layout of torchvision's
``vgg16().features`` (13 convolutions, modules ``0`` ... ``30``) or ``vgg19().features`` (16
convolutions, modules ``0`` ... ``36``), so their state-dict keys (``0.weight``, ``2.weight``, ...)
load as they are. Layers are addressed by name::

    conv1_1 relu1_1 conv1_2 relu1_2 pool1  conv2_1 ... relu2_2 pool2  conv3_1 ... pool5

(``conv5_3`` is VGG16's last convolution before its ReLU, the analogue of ESRGAN's VGG19 ``conv5_4``).

Images always enter as RGB in [0, 1]; the module converts them to the *input convention* its
weights were trained with:

* ``"caffe_bgr_255"``: BGR channel order, range 0-255, minus the mean [103.939, 116.779, 123.68]
  (Caffe / Keras weights, e.g. ``../shared/weights/vgg16_imagenet_features_caffe.safetensors``);
* ``"torchvision_rgb"``: RGB in [0, 1], minus mean [0.485, 0.456, 0.406], divided by std
  [0.229, 0.224, 0.225] (torchvision's ``vgg16-397923af.pth`` / ``vgg19-dcbb9e9d.pth``).

The two conventions give features of very different magnitude (Caffe's are larger), so loss weights
tuned for one do not carry over to the other.

Nothing is downloaded: :func:`find_vgg_weights` looks in the places a user can control and says
how to provide the file when it is missing.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from ftn.assets import find_asset, shared_folder

__all__ = [
    "CONVENTIONS",
    "CONFIGS",
    "DEFAULT_WEIGHTS_NAME",
    "ENV_VAR",
    "VGGFeatures",
    "VGG16Features",
    "canonical_convention",
    "convention_from_metadata",
    "default_weight_locations",
    "features_state_dict",
    "find_vgg_weights",
    "infer_arch",
    "layer_indices",
]

#: Environment variable naming a VGG weights file.
ENV_VAR = "FTN_VGG_WEIGHTS"
#: File name of the project's shared VGG16 weights.
DEFAULT_WEIGHTS_NAME = "vgg16_imagenet_features_caffe.safetensors"
_SHARED_NAME = f"weights/{DEFAULT_WEIGHTS_NAME}"  # below the project's shared/ folder

#: Channel widths of the convolutions per block (a max-pool closes each block).
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}

#: Input conventions: (channel order, scale applied to [0, 1] input, mean, std) in the weights' order.
CONVENTIONS: dict[str, dict[str, object]] = {
    "caffe_bgr_255": {"bgr": True, "scale": 255.0, "mean": (103.939, 116.779, 123.68), "std": (1.0, 1.0, 1.0)},
    "torchvision_rgb": {"bgr": False, "scale": 1.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}
_ALIASES = {
    "caffe": "caffe_bgr_255",
    "keras": "caffe_bgr_255",
    "bgr_255": "caffe_bgr_255",
    "torchvision": "torchvision_rgb",
    "imagenet_rgb": "torchvision_rgb",
}
_PTH_HINT = (
    "torchvision's vgg16-397923af.pth / vgg19-dcbb9e9d.pth use convention='torchvision_rgb'; "
    "Caffe/Keras-converted weights use convention='caffe_bgr_255'"
)


def canonical_convention(name: str) -> str:
    """The canonical name of an input convention (aliases accepted); ``ValueError`` if unknown."""
    if not isinstance(name, str):
        raise ValueError(f"convention must be a string, got {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CONVENTIONS:
        raise ValueError(f"unknown VGG input convention {name!r}; known: {sorted(CONVENTIONS)}")
    return key


def convention_from_metadata(metadata: Mapping[str, str] | None) -> str | None:
    """The input convention a safetensors file's metadata states, or ``None`` when it states none.

    Understands a ``"convention"`` entry holding a convention name, and a free-text ``"input"``
    entry such as ``"BGR, 0-255, subtract mean [103.939, 116.779, 123.68]"`` (the shared file's).
    Raises ``ValueError`` when the metadata describes an input it cannot map.
    """
    if not metadata:
        return None
    if metadata.get("convention"):
        return canonical_convention(metadata["convention"])
    text = metadata.get("input")
    if not text:
        return None
    low = text.lower()
    if "bgr" in low and "255" in low:
        return "caffe_bgr_255"
    if "rgb" in low and ("0.485" in low or "torchvision" in low):
        return "torchvision_rgb"
    raise ValueError(f"cannot map the weights' stated input convention {text!r}; pass convention= explicitly")


def layer_indices(arch: str = "vgg16") -> dict[str, int]:
    """Map layer names (``conv1_1``, ``relu1_1``, ..., ``pool5``) to module indices of ``features``."""
    if arch not in CONFIGS:
        raise ValueError(f"unknown VGG arch {arch!r}; known: {sorted(CONFIGS)}")
    names: dict[str, int] = {}
    index = 0
    for block, widths in enumerate(CONFIGS[arch], start=1):
        for i in range(1, len(widths) + 1):
            names[f"conv{block}_{i}"] = index
            names[f"relu{block}_{i}"] = index + 1
            index += 2
        names[f"pool{block}"] = index
        index += 1
    return names


class VGGFeatures(nn.Module):
    """The convolutional part of an ImageNet VGG (16 or 19), frozen, returning named features.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        convention: the input convention of the weights (see the module docstring); needed before
            :meth:`forward`, which takes RGB images in [0, 1].
        layers: the layers :meth:`forward` returns by default; when given, the network is built only
            up to the deepest of them (less memory and compute). ``None`` builds the whole network.

    Parameters are frozen (``requires_grad=False``) and the module stays in eval mode, but gradients
    flow to the *input*, as perceptual losses need. Use :meth:`load` to build one from a weights file.
    """

    def __init__(self, arch: str = "vgg16", *, convention: str | None = None,
                 layers: Iterable[str] | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.index = layer_indices(arch)
        self.layers: tuple[str, ...] | None = self.check_layers(layers) if layers is not None else None
        depth = max(self.index[n] for n in self.layers) + 1 if self.layers else len(self.index)

        in_channels = 3
        modules: list[nn.Module] = []
        for widths in CONFIGS[arch]:
            for width in widths:
                modules.append(nn.Conv2d(in_channels, width, 3, padding=1))
                modules.append(nn.ReLU(inplace=False))  # in-place would overwrite returned conv features
                in_channels = width
            modules.append(nn.MaxPool2d(2, 2))
        for i, module in enumerate(modules[:depth]):
            self.add_module(str(i), module)
        self.depth = depth

        self.register_buffer("_mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.ones(1, 3, 1, 1), persistent=False)
        self.convention: str | None = None
        self.source: str | None = None  # the weights file, set by load()
        self.metadata: dict[str, str] = {}  # its safetensors metadata, set by load()
        if convention is not None:
            self.set_convention(convention)
        self.requires_grad_(False)
        self.eval()

    # ------------------------------------------------------------------ set-up

    def check_layers(self, layers: Iterable[str]) -> tuple[str, ...]:
        """``layers`` as a tuple of names; ``ValueError`` for an empty list or an unknown name."""
        if isinstance(layers, str):
            layers = (layers,)
        names = tuple(layers)
        if not names:
            raise ValueError("layers must name at least one layer")
        unknown = [n for n in names if n not in self.index]
        if unknown:
            raise ValueError(f"unknown {self.arch} layers {unknown}; known: {list(self.index)}")
        depth = getattr(self, "depth", None)  # unset while __init__ checks the build layers
        too_deep = [n for n in names if depth is not None and self.index[n] >= depth]
        if too_deep:
            raise ValueError(f"layers {too_deep} are deeper than this truncated network "
                             f"(built for layers {list(self.layers or ())})")
        return names

    def set_convention(self, convention: str) -> None:
        """Set the input convention of the weights (``"caffe_bgr_255"`` or ``"torchvision_rgb"``)."""
        name = canonical_convention(convention)
        spec = CONVENTIONS[name]
        mean = torch.tensor(spec["mean"], dtype=self._mean.dtype, device=self._mean.device)
        std = torch.tensor(spec["std"], dtype=self._std.dtype, device=self._std.device)
        self._mean.copy_(mean.view(1, 3, 1, 1))
        self._std.copy_(std.view(1, 3, 1, 1))
        self.convention = name

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always eval: a frozen feature extractor (kept so a parent's ``.train()`` cannot flip it)."""
        return super().train(False)

    # ------------------------------------------------------------------ forward

    def preprocess(self, x: Tensor) -> Tensor:
        """Convert RGB images in [0, 1] (B, 3, H, W) to the weights' input convention."""
        if self.convention is None:
            raise ValueError("this VGG has no input convention; pass convention= ('caffe_bgr_255' or "
                             "'torchvision_rgb') or set_convention()")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        spec = CONVENTIONS[self.convention]
        if spec["bgr"]:
            x = x.flip(1)
        scale = float(spec["scale"])  # type: ignore[arg-type]
        if scale != 1.0:
            x = x * scale
        return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)

    def forward(self, x: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Features of RGB images ``x`` in [0, 1] at the named ``layers`` (default: those given at build).

        Runs only up to the deepest requested layer. Returns ``{name: (B, C, H', W') tensor}``.
        """
        names = self.check_layers(layers) if layers is not None else self.layers
        if names is None:
            raise ValueError("name the layers to return: forward(x, layers=[...]) or VGGFeatures(layers=...)")
        wanted = {self.index[n]: n for n in names}
        last = max(wanted)
        out: dict[str, Tensor] = {}
        h = self.preprocess(x)
        for i in range(last + 1):
            h = self._modules[str(i)](h)  # type: ignore[misc]
            if i in wanted:
                out[wanted[i]] = h
        return {n: out[n] for n in names}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike, *, convention: str | None = None,
             layers: Iterable[str] | None = None) -> VGGFeatures:
        """Build a frozen VGG from a weights file.

        ``path`` is a ``.safetensors`` file (its metadata may state the input convention) or a
        ``.pth``/``.pt`` state dict, read with ``torch.load(weights_only=True)`` only. Keys may be in
        the ``features`` layout (``0.weight``) or a full torchvision ``vgg16``/``vgg19`` state dict
        (``features.0.weight``, ``classifier.*`` ignored). The arch (VGG16 or VGG19) follows from the
        number of convolutions. ``convention`` overrides the metadata; when neither states one, a
        ``ValueError`` asks for ``convention=``. ``layers`` truncates the network (see the class).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no VGG weights file at {path}")
        metadata: dict[str, str] | None = None
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata()
                raw = {k: f.get_tensor(k) for k in f.keys()}
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # never fall back to unsafe unpickling
                raise ValueError(f"{path}: refused to load: not a plain tensor state dict "
                                 f"({type(err).__name__}); .pth files are read with weights_only=True only") from None
            if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
                obj = obj["state_dict"]
            if not isinstance(obj, dict):
                raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
            raw = obj
        state = features_state_dict(raw, source=str(path))
        arch = infer_arch(state, source=str(path))

        stated = None
        try:
            stated = convention_from_metadata(metadata)
        except ValueError:
            if convention is None:
                raise
        if convention is not None:
            chosen = canonical_convention(convention)
            if stated is not None and stated != chosen:
                warnings.warn(f"{path}: metadata says the weights expect {stated!r}, using convention={chosen!r} "
                              "as asked", stacklevel=2)
        elif stated is not None:
            chosen = stated
        elif Path(path).suffix in (".pth", ".pt"):
            # a bare PyTorch state dict: torchvision's VGG files are the ones in circulation
            chosen = "torchvision_rgb"
            warnings.warn(f"{path}: no input convention stated; assuming torchvision's (RGB in [0, 1], ImageNet "
                          "mean/std), as for torchvision's vgg16/vgg19 files", stacklevel=2)
        else:
            raise ValueError(f"{path}: the file does not state the input convention its weights expect; "
                             f"pass convention='caffe_bgr_255' or 'torchvision_rgb' ({_PTH_HINT})")

        model = cls(arch, convention=chosen, layers=layers)
        own = model.state_dict()
        kept = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(kept))
        if missing:  # pragma: no cover - infer_arch guarantees every conv is present
            raise ValueError(f"{path}: missing VGG tensors {missing}")
        for key, tensor in kept.items():
            if tuple(tensor.shape) != tuple(own[key].shape):
                raise ValueError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, "
                                 f"{arch} expects {tuple(own[key].shape)}")
        model.load_state_dict({k: v.float() for k, v in kept.items()}, strict=True)
        model.source = str(path)
        model.metadata = dict(metadata or {})
        return model

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, convention={self.convention!r}, layers={self.layers!r}"


#: The name the project uses; the class also builds VGG19 (``arch="vgg19"``).
VGG16Features = VGGFeatures

_KEY = re.compile(r"^(\d+)\.(weight|bias)$")


def features_state_dict(raw: Mapping[str, object], *, source: str = "state dict") -> dict[str, Tensor]:
    """Keep the ``features`` tensors of a VGG state dict, keyed ``<index>.weight`` / ``<index>.bias``.

    Strips ``module.`` (DataParallel) and ``features.`` prefixes and drops ``classifier.*``. Batch-norm
    variants (``vgg16_bn``) are refused.
    """
    state: dict[str, Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, Tensor):
            continue
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith("classifier."):
            continue
        if k.startswith("features."):
            k = k[len("features."):]
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            raise ValueError(f"{source}: batch-norm VGG (vgg16_bn/vgg19_bn) weights are not supported; "
                             "use the plain vgg16/vgg19 weights")
        if not _KEY.match(k):
            raise ValueError(f"{source}: unexpected key {key!r} for VGG features weights")
        state[k] = value
    if not state:
        raise ValueError(f"{source}: no VGG features tensors found")
    return state


def infer_arch(state: Mapping[str, Tensor], *, source: str = "state dict") -> str:
    """``"vgg16"`` or ``"vgg19"`` from the conv weights' indices of a :func:`features_state_dict`."""
    convs = sorted(int(k.split(".")[0]) for k in state if k.endswith(".weight"))
    for arch in CONFIGS:
        expected = sorted(i for n, i in layer_indices(arch).items() if n.startswith("conv"))
        if convs == expected:
            biases = sorted(int(k.split(".")[0]) for k in state if k.endswith(".bias"))
            if biases != expected:
                raise ValueError(f"{source}: {arch} conv biases missing or extra (found at {biases})")
            return arch
    raise ValueError(f"{source}: {len(convs)} conv weights at indices {convs} match neither VGG16 "
                     "(13 convs) nor VGG19 (16 convs) features")


# ---------------------------------------------------------------------- finding the weights


def default_weight_locations() -> list[Path]:
    """Where :func:`find_vgg_weights` looks when neither a path nor ``FTN_VGG_WEIGHTS`` is given.

    The shared file beside a source checkout; nothing for an installed package (see :mod:`ftn.assets`).
    """
    shared = shared_folder()
    return [] if shared is None else [shared / _SHARED_NAME]


def find_vgg_weights(path: str | os.PathLike | None = None) -> Path:
    """The VGG weights file to use: ``path``, else ``$FTN_VGG_WEIGHTS``, else the shared VGG16 file.

    The shared file is ``../shared/weights/vgg16_imagenet_features_caffe.safetensors`` beside a source
    checkout (:func:`ftn.assets.find_asset`). Raises ``FileNotFoundError`` explaining how to provide
    weights when none is found (nothing is ever downloaded).
    """
    found = find_asset(
        _SHARED_NAME, path=path, env_var=ENV_VAR, what="VGG weights file",
        option="the file explicitly (the task option vgg_weights, e.g. `task_options: {vgg_weights: PATH}`, "
               "or find_vgg_weights(PATH))",
        hint=("Perceptual tasks (SR with the perceptual/GAN objective, style transfer) need ImageNet VGG "
              "weights and ftn never downloads anything: torchvision's VGG16 "
              "(https://download.pytorch.org/models/vgg16-397923af.pth, fetched on another machine) "
              "works too (.safetensors or a .pth state dict, read with weights_only=True)."),
    )
    if not found.is_file():
        raise FileNotFoundError(f"VGG weights: {found} is not a file")
    return found
