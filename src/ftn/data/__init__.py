"""Data: image files in and out, training patches and evaluation sets degraded on the fly.

Not imported by ``import ftn`` (it needs Pillow and numpy); import ``ftn.data`` when needed.
"""

from .datasets import EvalSet, PatchSampler, derive_seed
from .images import IMAGE_EXTENSIONS, LoadedImage, list_images, load_image, save_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "EvalSet",
    "LoadedImage",
    "PatchSampler",
    "derive_seed",
    "list_images",
    "load_image",
    "save_image",
]
