"""Refusing uploads the app should not process: too many bytes or too many pixels.

Both are checked before any pixel is decoded (the byte count from the file system or the request,
the pixel count from the image header), so a huge or bomb-like upload costs nothing but the
refusal. Three ways in: a file upload (:func:`check_upload`), a paint layer of the editor
(:func:`check_layer`), and an image sent inline in a request as a ``data:`` URL (:func:`check_inline`),
which Gradio would otherwise decode in full before the app sees it.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..data.images import LoadedImage, _open, load_image

__all__ = ["UploadLimits", "UploadRejected", "check_inline", "check_layer", "check_upload", "load_upload"]


class UploadRejected(ValueError):
    """An upload refused by :func:`check_upload`; the message is one line for the user."""


@dataclass(frozen=True)
class UploadLimits:
    """The largest upload the app accepts."""

    max_megapixels: float = 16.0
    """Width x height, in millions of pixels (16 MP is a 4896 x 3264 photo)."""
    max_bytes: int = 50 * 1024 * 1024
    """File size in bytes."""

    def __post_init__(self) -> None:
        if not (self.max_megapixels > 0 and math.isfinite(self.max_megapixels)):
            raise ValueError(f"max_megapixels must be positive and finite, got {self.max_megapixels}")
        if not self.max_bytes > 0:
            raise ValueError(f"max upload bytes must be positive, got {self.max_bytes}")

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _sizes(n: int, limit: int) -> tuple[str, str]:
    """``n`` and ``limit`` in MB, or in bytes where MB would show them equal (one byte over) or 0.0."""
    if _megabytes(n) == _megabytes(limit) or limit < 100 * 1024:
        return f"{n} bytes", f"{limit} bytes"
    return _megabytes(n), _megabytes(limit)


def check_upload(path: str | os.PathLike, limits: UploadLimits) -> tuple[int, int]:
    """Refuse the file at ``path`` if it breaks ``limits``; returns its (width, height).

    Raises:
        UploadRejected: over the byte or the megapixel limit, or not an image (one-line messages
            that say the limit and the option that sets it).
        FileNotFoundError: no file at ``path``.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    size = os.path.getsize(path)
    if size > limits.max_bytes:
        raise UploadRejected(
            f"{name} is {_megabytes(size)}; this app accepts files up to {_megabytes(limits.max_bytes)} "
            "(start it with --max-upload-mb to change that)"
        )
    try:
        # Only the header is read. images._open lifts Pillow's own bomb guard (thread-safely), as
        # the user's megapixel limit below is the one that applies.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(path) as im:
                width, height = im.size
    except (UnidentifiedImageError, OSError):
        raise UploadRejected(f"{name} is not an image file this app can read (PNG, JPEG, TIFF, BMP, WebP)") from None
    megapixels = width * height / 1_000_000
    if width * height > limits.max_pixels:
        raise UploadRejected(
            f"{name} is {width} x {height} = {megapixels:.3g} megapixels; this app accepts up to "
            f"{limits.max_megapixels:g} megapixels (start it with --max-megapixels to change that)"
        )
    return width, height


def load_upload(path: str | os.PathLike, limits: UploadLimits) -> LoadedImage:
    """:func:`check_upload`, then read the image (``(C, H, W)`` float in [0, 1])."""
    check_upload(path, limits)
    try:
        return load_image(path, max_pixels=limits.max_pixels)
    except ValueError as err:
        raise UploadRejected(str(err).replace(os.fspath(path), os.path.basename(path))) from None


def _header_size(source: str | os.PathLike | bytes, unreadable: str, too_many: str) -> tuple[int, int]:
    """(width, height) from an image's header (a path or the encoded bytes); nothing is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            in_memory = isinstance(source, (bytes, bytearray, memoryview))
            with Image.open(io.BytesIO(bytes(source))) if in_memory else _open(os.fspath(source)) as im:
                return im.size
    except Image.DecompressionBombError:  # over Pillow's own limit, far over any sensible one
        raise UploadRejected(too_many) from None
    except (UnidentifiedImageError, OSError, ValueError, TypeError):
        raise UploadRejected(unreadable) from None


def check_layer(source: str | os.PathLike | bytes, limits: UploadLimits) -> tuple[int, int]:
    """Refuse an image the page's editor sends back (a paint layer, its background or composite)
    when it has more pixels than an upload may; returns its (width, height).

    ``source`` is a file path or the encoded bytes. Only the header is read (Pillow's ``Image.open``
    is lazy), so a small file claiming 13000 x 13000 pixels costs nothing but the refusal.

    Raises:
        UploadRejected: not an image, or over the megapixel limit (one line).
    """
    width, height = _header_size(source, "the painted layer is not an image this app can read",
                                 "a painted layer has far too many pixels for this app; reload the page")
    if width * height > limits.max_pixels:
        raise UploadRejected(
            f"a painted layer of {width} x {height} pixels is over this app's {limits.max_megapixels:g} megapixels; "
            "reload the page and paint on the uploaded image"
        )
    return width, height


def check_inline(url: str, limits: UploadLimits) -> tuple[int, int]:
    """Refuse an image sent inline in a request (a base64 ``data:`` URL, as API clients may send)
    that breaks ``limits``; returns its (width, height).

    Gradio decodes such an image in full before any handler runs, and its upload size check never
    sees it: a 200 KB PNG claiming 13000 x 13000 pixels took the server to 1.9 GB. Here the bytes
    are counted and the header read first. The page itself never sends images inline.

    Raises:
        UploadRejected: not base64, not an image, over the byte or the megapixel limit (one line).
    """
    head, comma, data = url.partition(",")
    if not comma or not head.lower().endswith(";base64"):
        raise UploadRejected("an inline image must be a base64 data: URL; upload the file instead")
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise UploadRejected("an inline image is not valid base64; upload the file instead") from None
    if len(raw) > limits.max_bytes:
        size_text, limit_text = _sizes(len(raw), limits.max_bytes)
        raise UploadRejected(
            f"an inline image of {size_text}; this app accepts files up to {limit_text} "
            "(start it with --max-upload-mb to change that)"
        )
    width, height = _header_size(raw, "an inline image is not an image this app can read (PNG, JPEG, TIFF, BMP, WebP)",
                                 "an inline image has far too many pixels for this app")
    if width * height > limits.max_pixels:
        raise UploadRejected(
            f"an inline image of {width} x {height} = {width * height / 1_000_000:.3g} megapixels; this app accepts up "
            f"to {limits.max_megapixels:g} megapixels (start it with --max-megapixels to change that)"
        )
    return width, height
