"""Reading and writing image files, with every odd case of real folders handled.

Images at the library's edge are float32 tensors ``(C, H, W)`` in ``[0, 1]``, ``C`` = 3 (RGB) or 1
(grey); transparency travels separately as an ``alpha`` tensor ``(1, H, W)``.

Reading (:func:`load_image`):

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a portrait photo from a
  camera comes out portrait.
* Grey files (``L``, ``1``, ``I;16``, ``I``) stay one channel; palette files (``P``, ``PA``) become
  RGB, or RGB + alpha when the palette has transparency; CMYK, YCbCr, LAB and HSV become RGB;
  ``LA`` / ``RGBA`` (and a ``tRNS`` colour key on 8-bit files) give an alpha.
* 16-bit files are read at full precision and divided by 65535. Pillow decodes 16-bit grey PNG
  and TIFF as ``I;16``, but 48-bit RGB / 64-bit RGBA PNG (and 16-bit RGB TIFF) only as 8-bit RGB
  (the high byte of each sample) and 16-bit grey + alpha PNG as 8-bit RGBA. For those the file is
  decoded a second time with the byte order of the raw mode swapped, which yields the low bytes
  (the PNG / TIFF filtering runs on the raw bytes, so both decodes are exact); a 16-bit grey + alpha
  PNG is decoded as 32-bit integers (grey << 16 | alpha). Should a future Pillow refuse that, the
  8-bit values Pillow gives are used (``bit_depth`` still says 16) and a warning says so.
* ``LoadedImage.mode`` is Pillow's mode of the opened file, so a 16-bit grey + alpha PNG says
  ``"RGBA"`` (how Pillow opens it) although it loads as one channel + alpha.
* Colour profiles (ICC) are ignored: pixel values are taken as they are stored. Multi-frame files
  give their first frame. 32-bit integer grey (``I``) is clipped to ``[0, 65535]``; float images
  (``F``) are refused.
* Every failure is a ``ValueError`` whose one-line message names the file (empty file, not an
  image, truncated or corrupt data, more pixels than ``max_pixels``), except a missing file, which
  is a ``FileNotFoundError``. The pixel count is checked from the header before any pixel is
  decoded, so a small file that claims to be huge (a decompression bomb) costs nothing.

Writing (:func:`save_image`) is atomic: the file is written under a temporary name in the target
folder and renamed over the target only once complete, so a failure never leaves a partial file.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "LoadedImage", "list_images", "load_image", "save_image"]

#: File name suffixes (lower case) that :func:`list_images` picks up.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}

# Raw modes whose 8-bit decode keeps only one byte of each 16-bit sample -> the swapped raw mode
# that yields the other byte.
_SWAP_16 = {
    "RGB;16B": "RGB;16L",
    "RGB;16L": "RGB;16B",
    "RGBA;16B": "RGBA;16L",
    "RGBA;16L": "RGBA;16B",
}

_BOMB_LOCK = threading.Lock()


@dataclass
class LoadedImage:
    """An image read by :func:`load_image`."""

    image: torch.Tensor
    """``(C, H, W)`` float32 in ``[0, 1]``; ``C`` = 3 (RGB) or 1 (grey)."""
    alpha: torch.Tensor | None
    """``(1, H, W)`` float32 in ``[0, 1]`` if the file had transparency, else ``None``."""
    bit_depth: int
    """8 or 16: bits per channel of the source file."""
    mode: str
    """The Pillow mode of the source file (``"RGB"``, ``"L"``, ``"I;16"``, ``"P"``, ...)."""
    path: str | None = None


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    Files count by suffix (case-insensitive): png, jpg, jpeg, bmp, tif, tiff, webp. Hidden files
    (names starting with ``.``, e.g. macOS ``._x.png``) are skipped.

    Raises:
        ValueError: ``folder`` is not a folder, or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise ValueError(
            f"no image files ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) in folder {folder}"
        )
    return files


def load_image(path: str | os.PathLike[str], *, max_pixels: int = 200_000_000) -> LoadedImage:
    """Read an image file into a float tensor in ``[0, 1]``; see the module docstring.

    Args:
        path: the file.
        max_pixels: refuse images with more pixels (width x height, read from the header before
            decoding).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: anything else wrong with the file (the message names it).
    """
    array, alpha, bit_depth, mode = _read(path, max_pixels)
    scale = 255.0 if bit_depth == 8 else 65535.0
    image = torch.from_numpy(array.astype(np.float32) / np.float32(scale)).permute(2, 0, 1)
    alpha_t = None
    if alpha is not None:
        alpha_t = torch.from_numpy(alpha.astype(np.float32) / np.float32(scale))[None]
    return LoadedImage(
        image=image.contiguous(), alpha=alpha_t, bit_depth=bit_depth, mode=mode, path=str(path)
    )


# ----------------------------------------------------------------------------------------------
# reading


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _open(path: str) -> Image.Image:
    """``Image.open`` with Pillow's own decompression-bomb limit lifted (ours is ``max_pixels``)."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        # Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS in open() itself; we want the
        # size to apply our own limit (which may be higher), so open once more without it.
        with _BOMB_LOCK:
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = old


def _raw_mode(im: Image.Image) -> str | None:
    """The raw mode of the first tile of a not-yet-loaded image, if it has one."""
    tile = getattr(im, "tile", None)
    if not tile:
        return None
    args = tile[0].args if hasattr(tile[0], "args") else tile[0][3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _decode_with(path: str, rawmode: str, mode: str | None = None) -> Image.Image:
    """Decode ``path`` again with another raw mode (and optionally another image mode)."""
    with _open(path) as im:
        tile = im.tile[0]
        args = tile.args
        new_args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
        if mode is not None:
            im._mode = mode  # noqa: SLF001  (no public way to pick the decoder's target mode)
        im.tile = [tile._replace(args=new_args)]
        im.load()
        return ImageOps.exif_transpose(im)


def _read(
    path: str | os.PathLike[str], max_pixels: int
) -> tuple[np.ndarray, np.ndarray | None, int, str]:
    """Decode a file to ``(HWC array uint8|uint16, HW alpha or None, bit depth, source mode)``."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"image file not found: {p}")
    if os.path.isdir(p):
        raise ValueError(f"{p}: is a folder, not an image file")
    if os.path.getsize(p) == 0:
        raise ValueError(f"{p}: empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = _open(p)
        except UnidentifiedImageError:
            raise ValueError(f"{p}: not an image file (or a format Pillow cannot read)") from None
        except Exception as e:  # noqa: BLE001  (Pillow raises many types for broken headers)
            raise ValueError(f"{p}: cannot read image header ({_one_line(e)})") from None
        with im:
            width, height = im.size
            if width * height > max_pixels:
                raise ValueError(
                    f"{p}: {width}x{height} = {width * height} pixels exceeds max_pixels="
                    f"{max_pixels} (refused before decoding: possible decompression bomb)"
                )
            source_mode = im.mode
            rawmode = _raw_mode(im)
            try:
                im.load()
                result = _convert(p, im, source_mode, rawmode)
            except ValueError as e:
                if str(e).startswith(p):
                    raise
                raise ValueError(f"{p}: truncated or corrupt image data ({_one_line(e)})") from None
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{p}: truncated or corrupt image data ({_one_line(e)})") from None
    return result


def _convert(
    p: str, im: Image.Image, source_mode: str, rawmode: str | None
) -> tuple[np.ndarray, np.ndarray | None, int, str]:
    fmt = im.format
    # 16-bit colour that Pillow decodes to 8 bits: decode the other byte too (module docstring).
    if fmt in ("PNG", "TIFF") and source_mode in ("RGB", "RGBA") and rawmode in _SWAP_16:
        high = np.asarray(ImageOps.exif_transpose(im)).astype(np.uint16)
        try:
            low = np.asarray(_decode_with(p, _SWAP_16[rawmode])).astype(np.uint16)
            array = (high << 8) | low
        except Exception as e:  # noqa: BLE001
            warnings.warn(
                f"{p}: 16-bit colour read at 8-bit precision only ({_one_line(e)})", stacklevel=3
            )
            array = high * 257
        return _split_alpha(array, 16, source_mode)
    if fmt == "PNG" and rawmode == "LA;16B":
        try:
            packed = np.asarray(_decode_with(p, "I;32B", mode="I")).astype(np.int64) & 0xFFFFFFFF
            grey = (packed >> 16).astype(np.uint16)
            alpha = (packed & 0xFFFF).astype(np.uint16)
            return grey[..., None], alpha, 16, source_mode
        except Exception as e:  # noqa: BLE001
            warnings.warn(
                f"{p}: 16-bit grey + alpha read at 8-bit precision only ({_one_line(e)})",
                stacklevel=3,
            )
            rgba = np.asarray(ImageOps.exif_transpose(im)).astype(np.uint16) * 257
            return rgba[..., :1], rgba[..., 3], 16, source_mode

    im = ImageOps.exif_transpose(im)
    mode = im.mode
    has_key = "transparency" in im.info
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16)[..., None], None, 16, source_mode
    if mode == "I":
        grey = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
        return grey[..., None], None, 16, source_mode
    if mode == "F":
        raise ValueError(f"{p}: floating-point images (mode F) are not supported")
    if mode == "1":
        im = im.convert("L")
    elif mode == "L" and has_key:
        im = im.convert("LA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if (has_key or mode == "PA") else "RGB")
    elif mode == "RGB" and has_key:
        im = im.convert("RGBA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{p}: unsupported image mode {mode} ({_one_line(e)})") from None
    array = np.asarray(im)
    if array.ndim == 2:
        array = array[..., None]
    return _split_alpha(array, 8, source_mode)


def _split_alpha(
    array: np.ndarray, bit_depth: int, source_mode: str
) -> tuple[np.ndarray, np.ndarray | None, int, str]:
    if array.shape[2] in (2, 4):
        return np.ascontiguousarray(array[..., :-1]), array[..., -1], bit_depth, source_mode
    return array, None, bit_depth, source_mode


# ----------------------------------------------------------------------------------------------
# writing


def save_image(
    path: str | os.PathLike[str],
    image: torch.Tensor,
    *,
    alpha: torch.Tensor | None = None,
    bit_depth: int = 8,
    quality: int = 95,
) -> None:
    """Write ``image`` (``(C, H, W)`` or ``(1, C, H, W)``, C = 1 or 3, float in [0, 1]) to ``path``.

    The format follows the suffix: png, jpg / jpeg, bmp, tif / tiff, webp. Values are clamped to
    ``[0, 1]`` and rounded to the nearest of the ``2**bit_depth`` levels.

    * ``bit_depth=16`` is for PNG and TIFF only. Pillow cannot write 16-bit colour, so 16-bit
      files (grey or RGB, with or without alpha) are written by this module's own small encoders:
      PNG with filter 0 + zlib, TIFF uncompressed. Both are read back exactly by
      :func:`load_image` (and by libpng / libtiff based tools). 16-bit grey + alpha is refused for
      TIFF (Pillow could not read it back); use PNG for it.
    * ``alpha`` (``(1, H, W)`` or ``(H, W)``) is written for PNG, TIFF and WebP; JPEG and BMP
      cannot store it (as used here) and it is dropped without error.
    * ``quality`` is used by JPEG (4:2:0 chroma subsampling, Pillow's default) and WebP (lossy).

    The write is atomic: a temporary file in the same folder, renamed over ``path`` when complete.

    Raises:
        ValueError: unknown suffix, bad ``bit_depth`` for the format, bad shapes or non-finite
            values (nothing is written).
        FileNotFoundError: the output folder does not exist (it is not created).
    """
    target = Path(path)
    suffix = target.suffix.lower()
    fmt = _SAVE_FORMATS.get(suffix)
    if fmt is None:
        raise ValueError(
            f"{target}: cannot tell the image format from suffix {suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(_SAVE_FORMATS))}"
        )
    if bit_depth not in (8, 16):
        raise ValueError(f"{target}: bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and fmt not in ("PNG", "TIFF"):
        raise ValueError(f"{target}: 16-bit output needs .png or .tif/.tiff, not {suffix}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"{target}: quality must be in [1, 100], got {quality!r}")
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {folder}")

    array = _quantise(image, bit_depth, what="image", path=target)
    if array.shape[2] not in (1, 3):
        raise ValueError(f"{target}: image must have 1 or 3 channels, got {array.shape[2]}")
    if alpha is not None and fmt in ("PNG", "TIFF", "WEBP"):
        a = alpha.unsqueeze(0) if alpha.ndim == 2 else alpha
        a_arr = _quantise(a, bit_depth, what="alpha", path=target)
        if a_arr.shape != (*array.shape[:2], 1):
            raise ValueError(
                f"{target}: alpha must be (1, H, W) = (1, {array.shape[0]}, {array.shape[1]}), "
                f"got {tuple(alpha.shape)}"
            )
        array = np.concatenate([array, a_arr], axis=2)

    if bit_depth == 16 and fmt == "TIFF" and array.shape[2] == 2:
        # Written fine, but Pillow (hence load_image) cannot read 16-bit grey + alpha TIFF back.
        raise ValueError(f"{target}: 16-bit grey + alpha is supported as .png, not as TIFF")
    writer: Callable[[BinaryIO], None]
    if bit_depth == 16 and fmt == "PNG":
        data = _encode_png16(array)
        writer = lambda f: f.write(data)  # noqa: E731
    elif bit_depth == 16:
        data = _encode_tiff16(array)
        writer = lambda f: f.write(data)  # noqa: E731
    else:
        pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        params: dict[str, object] = {}
        if fmt in ("JPEG", "WEBP"):
            params["quality"] = int(quality)
        writer = lambda f: pil.save(f, format=fmt, **params)  # noqa: E731
    _atomic_write(target, writer)


def _quantise(t: torch.Tensor, bit_depth: int, *, what: str, path: Path) -> np.ndarray:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{path}: {what} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"{path}: {what} must be (C, H, W) or (1, C, H, W), got {tuple(t.shape)}")
    t = t.detach().to("cpu", torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{path}: {what} contains NaN or infinite values")
    peak = 255.0 if bit_depth == 8 else 65535.0
    q = (t.clamp(0, 1) * peak).round().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(q.astype(np.uint8 if bit_depth == 8 else np.uint16))


def _atomic_write(target: Path, writer: Callable[[BinaryIO], None]) -> None:
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    # os.open with 0o666 lets the umask decide the final permissions, as for a normal file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _encode_png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, grey + alpha, RGB, RGBA by channel count); filter 0, zlib level 6."""
    h, w, c = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = array.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _encode_tiff16(array: np.ndarray) -> bytes:
    """An uncompressed little-endian baseline TIFF, 16 bits per sample, one strip."""
    h, w, c = array.shape
    pixels = array.astype("<u2").tobytes()
    grey = c in (1, 2)
    entries: list[tuple[int, int, int, int | bytes]] = []  # tag, type, count, value / payload
    SHORT, LONG = 3, 4  # noqa: N806
    bits = struct.pack(f"<{c}H", *([16] * c))
    entries += [
        (256, LONG, 1, w),
        (257, LONG, 1, h),
        (258, SHORT, c, bits if c > 2 else struct.unpack(f"<{c}H", bits)),
        (259, SHORT, 1, 1),  # no compression
        (262, SHORT, 1, 1 if grey else 2),  # BlackIsZero / RGB
        (273, LONG, 1, 0),  # strip offset, patched below
        (277, SHORT, 1, c),
        (278, LONG, 1, h),
        (279, LONG, 1, len(pixels)),
        (284, SHORT, 1, 1),  # chunky
    ]
    if c in (2, 4):
        entries.append((338, SHORT, 1, 2))  # extra sample: unassociated alpha
    n = len(entries)
    ifd_offset = 8
    extra_offset = ifd_offset + 2 + 12 * n + 4
    extra = b""
    body = b""
    for tag, kind, count, value in entries:
        if isinstance(value, bytes):  # does not fit the 4-byte field: store after the IFD
            field = struct.pack("<I", extra_offset + len(extra))
            extra += value + (b"\0" if len(value) % 2 else b"")
        elif isinstance(value, tuple):
            field = struct.pack(f"<{len(value)}H", *value).ljust(4, b"\0")
        elif kind == SHORT:
            field = struct.pack("<HH", value, 0)
        else:
            field = struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + field
    pixel_offset = extra_offset + len(extra)
    # patch StripOffsets (entry index 5)
    start = 12 * 5 + 8
    body = body[:start] + struct.pack("<I", pixel_offset) + body[start + 4 :]
    header = b"II*\0" + struct.pack("<I", ifd_offset)
    return header + struct.pack("<H", n) + body + struct.pack("<I", 0) + extra + pixels
