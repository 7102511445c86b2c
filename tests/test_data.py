"""Tests for ftn.data: reading odd image files, atomic writing, patch sampling, evaluation sets."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftn.data import EvalSet, LoadedImage, PatchSampler, list_images, load_image, save_image
from ftn.tasks import get_task

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BSD432 = SHARED / "data" / "train" / "BSD432"
CBSD68 = SHARED / "data" / "test" / "CBSD68"
needs_shared = pytest.mark.skipif(
    not (BSD432.is_dir() and CBSD68.is_dir()),
    reason=f"shared data folder not found at {SHARED} (BSD432 / CBSD68)",
)


def rng_u8(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def png_bytes(array: np.ndarray, bit_depth: int, colour_type: int) -> bytes:
    """A minimal PNG written independently of the library (filter 0 on every row)."""
    h, w = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\0" + array[y].astype(dtype).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pil_save(path: Path, array: np.ndarray, mode: str | None = None, **params: object) -> Path:
    im = Image.fromarray(array)
    if mode is not None:
        im = im.convert(mode)
    im.save(path, **params)
    return path


# ------------------------------------------------------------------------------------ list_images


def test_list_images(tmp_path: Path) -> None:
    for name in ["b.PNG", "a.jpg", "c.JpEg", "d.bmp", "e.tif", "f.TIFF", "g.webp", "x.txt", "y"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    (tmp_path / ".hidden.png").write_bytes(b"")
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "c.JpEg", "d.bmp", "e.tif", "f.TIFF", "g.webp"]
    assert all(isinstance(p, Path) for p in list_images(str(tmp_path)))


def test_list_images_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=str(tmp_path)):
        list_images(tmp_path)
    with pytest.raises(ValueError, match="missing"):
        list_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="notes.txt"):
        list_images(tmp_path / "notes.txt")


# ------------------------------------------------------------------------------------ load_image

RGB = rng_u8(12, 20, 3)
GREY = rng_u8(12, 20, seed=1)
ALPHA = rng_u8(12, 20, seed=2)
G16 = np.random.default_rng(3).integers(0, 65536, (12, 20), dtype=np.uint16)
RGB16 = np.random.default_rng(4).integers(0, 65536, (12, 20, 3), dtype=np.uint16)
A16 = np.random.default_rng(5).integers(0, 65536, (12, 20), dtype=np.uint16)


def _palette(path: Path, transparent: bool) -> Path:
    im = Image.fromarray(RGB).quantize(16)
    if transparent:
        im.info["transparency"] = 0
        im.save(path, transparency=0)
    else:
        im.save(path)
    return path


# name -> (writer, channels, has alpha, bit depth, source mode, exact expected image or None,
#          exact expected alpha or None), all in 0-65535 (16-bit) / 0-255 (8-bit) units
CASES = {
    "rgb.png": (lambda p: pil_save(p, RGB), 3, False, 8, "RGB", RGB, None),
    "grey.png": (lambda p: pil_save(p, GREY), 1, False, 8, "L", GREY[..., None], None),
    "rgba.png": (
        lambda p: pil_save(p, np.dstack([RGB, ALPHA])),
        3, True, 8, "RGBA", RGB, ALPHA,
    ),
    "la.png": (
        lambda p: pil_save(p, np.dstack([GREY, ALPHA]), "LA"),
        1, True, 8, "LA", GREY[..., None], ALPHA,
    ),
    "bilevel.png": (
        lambda p: pil_save(p, GREY, "1"),
        1, False, 8, "1", (np.asarray(Image.fromarray(GREY).convert("1")) * 255)[..., None], None,
    ),
    "palette.png": (lambda p: _palette(p, False), 3, False, 8, "P", None, None),
    "palette_t.png": (lambda p: _palette(p, True), 3, True, 8, "P", None, None),
    "cmyk.jpg": (lambda p: pil_save(p, RGB, "CMYK", quality=95), 3, False, 8, "CMYK", None, None),
    "rgb.bmp": (lambda p: pil_save(p, RGB), 3, False, 8, "RGB", RGB, None),
    "rgb.tif": (lambda p: pil_save(p, RGB), 3, False, 8, "RGB", RGB, None),
    "rgba.webp": (
        lambda p: pil_save(p, np.dstack([RGB, ALPHA]), lossless=True),
        3, True, 8, "RGBA", RGB, ALPHA,
    ),
    "grey16.png": (
        lambda p: p.write_bytes(png_bytes(G16, 16, 0)), 1, False, 16, "I;16", G16[..., None], None,
    ),
    "rgb48.png": (lambda p: p.write_bytes(png_bytes(RGB16, 16, 2)), 3, False, 16, "RGB", RGB16, None),
    "rgba64.png": (
        lambda p: p.write_bytes(png_bytes(np.dstack([RGB16, A16]), 16, 6)),
        3, True, 16, "RGBA", RGB16, A16,
    ),
    "la32.png": (
        lambda p: p.write_bytes(png_bytes(np.dstack([G16, A16]), 16, 4)),
        1, True, 16, None, G16[..., None], A16,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_modes(tmp_path: Path, name: str) -> None:
    writer, channels, has_alpha, bit_depth, mode, expected, expected_alpha = CASES[name]
    path = tmp_path / name
    writer(path)
    loaded = load_image(path)
    assert isinstance(loaded, LoadedImage)
    assert loaded.image.shape == (channels, 12, 20) and loaded.image.dtype == torch.float32
    assert (loaded.alpha is not None) == has_alpha
    assert loaded.bit_depth == bit_depth
    if mode is not None:
        assert loaded.mode == mode
    assert loaded.path == str(path)
    assert 0 <= loaded.image.min() and loaded.image.max() <= 1
    peak = 255 if bit_depth == 8 else 65535
    if expected is not None:
        got = (loaded.image.permute(1, 2, 0).double() * peak).round().numpy()
        np.testing.assert_array_equal(got, expected)
    if expected_alpha is not None:
        assert loaded.alpha is not None and loaded.alpha.shape == (1, 12, 20)
        np.testing.assert_array_equal((loaded.alpha[0].double() * peak).round().numpy(), expected_alpha)


def test_palette_colours(tmp_path: Path) -> None:
    path = _palette(tmp_path / "p.png", False)
    expected = np.asarray(Image.open(path).convert("RGB"))
    got = (load_image(path).image.permute(1, 2, 0) * 255).round().byte().numpy()
    np.testing.assert_array_equal(got, expected)


def test_exif_orientation(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high, bright left half; orientation 6 = "rotate 90 degrees clockwise
    # to display", so the displayed image is 20 wide x 40 high with the bright half on top.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.image.shape == (3, 40, 20)
    assert loaded.image[:, :18].mean() > 0.95 and loaded.image[:, 22:].mean() < 0.05


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("empty.png", lambda p: p.write_bytes(b""), "empty"),
        ("notes.png", lambda p: p.write_text("not an image\n"), "not an image"),
        ("half.png", lambda p: _truncated(p, "PNG"), "truncated or corrupt"),
        ("half.jpg", lambda p: _truncated(p, "JPEG"), "truncated or corrupt"),
        ("header.png", lambda p: p.write_bytes(_png_signature_only()), "header|not an image"),
        ("bomb.png", lambda p: p.write_bytes(_bomb()), "100000x100000.*max_pixels"),
    ],
)
def test_load_errors(tmp_path: Path, name: str, make, match: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=match) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def _truncated(path: Path, fmt: str) -> None:
    pil_save(path, rng_u8(64, 64, 3), format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _png_signature_only() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\0" * 8


def _bomb() -> bytes:
    """A valid 8x8 PNG whose IHDR (with a correct CRC) claims 100000 x 100000 pixels."""
    data = bytearray(png_bytes(rng_u8(8, 8, 3), 8, 2))
    # IHDR: length(4) type(4) at offset 8; data at 16: width(4) height(4) ...; CRC after 13 bytes
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_max_pixels_checked_before_decoding(tmp_path: Path) -> None:
    path = pil_save(tmp_path / "small.png", RGB)
    with pytest.raises(ValueError, match="max_pixels=100"):
        load_image(path, max_pixels=100)
    assert load_image(path, max_pixels=240).image.shape == (3, 12, 20)


def test_load_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="folder"):
        load_image(tmp_path)


# ------------------------------------------------------------------------------------ save_image

# suffix, bit depth, channels, alpha, exact (lossless) round trip
SAVE_CASES = [
    (".png", 8, 3, False, True),
    (".png", 8, 1, True, True),
    (".png", 8, 3, True, True),
    (".png", 16, 1, False, True),
    (".png", 16, 3, False, True),
    (".png", 16, 3, True, True),
    (".png", 16, 1, True, True),
    (".tif", 8, 3, True, True),
    (".tiff", 16, 1, False, True),
    (".tif", 16, 3, True, True),
    (".bmp", 8, 3, False, True),
    (".bmp", 8, 1, False, True),
    (".jpg", 8, 3, False, False),
    (".jpeg", 8, 1, False, False),
    (".webp", 8, 3, True, False),
]


@pytest.mark.parametrize(("suffix", "bit_depth", "channels", "with_alpha", "exact"), SAVE_CASES)
def test_save_round_trip(
    tmp_path: Path, suffix: str, bit_depth: int, channels: int, with_alpha: bool, exact: bool
) -> None:
    g = torch.Generator().manual_seed(0)
    if exact:  # noise, with out-of-range values that must be clamped
        image = torch.rand(channels, 16, 24, generator=g) * 1.2 - 0.1
    else:  # lossy formats: something smooth they can keep
        image = torch.linspace(0, 1, 24).expand(channels, 16, 24).clone()
    alpha = torch.rand(1, 16, 24, generator=g) if with_alpha else None
    path = tmp_path / f"out{suffix}"
    save_image(path, image, alpha=alpha, bit_depth=bit_depth, quality=95)
    loaded = load_image(path)
    peak = 2**bit_depth - 1

    def levels(t: torch.Tensor) -> torch.Tensor:  # integer levels, computed in float64
        return (t.double().clamp(0, 1) * peak).round()

    assert loaded.image.shape == image.shape and loaded.bit_depth == bit_depth
    if exact:
        assert torch.equal(levels(loaded.image), levels(image))
    else:
        assert (loaded.image - image).abs().mean() < 0.02
    if with_alpha:
        assert loaded.alpha is not None and loaded.alpha.shape == (1, 16, 24)
        if exact:
            assert torch.equal(levels(loaded.alpha), levels(alpha))
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


def test_save_accepts_batch_of_one_and_drops_alpha_for_jpeg(tmp_path: Path) -> None:
    image = torch.rand(1, 3, 8, 8)
    save_image(tmp_path / "a.jpg", image, alpha=torch.ones(1, 8, 8))
    assert load_image(tmp_path / "a.jpg").alpha is None


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("out.gif", {}, ValueError, "suffix"),
        ("out", {}, ValueError, "suffix"),
        ("out.jpg", {"bit_depth": 16}, ValueError, "16-bit"),
        ("out.png", {"bit_depth": 12}, ValueError, "bit_depth"),
        ("out.png", {"alpha": torch.ones(1, 4, 4)}, ValueError, "alpha"),
        ("out.png", {"image": torch.rand(2, 8, 8)}, ValueError, "channels"),
        ("out.png", {"image": torch.full((3, 8, 8), float("nan"))}, ValueError, "NaN"),
        ("out.tif", {"bit_depth": 16, "image": torch.rand(1, 8, 8), "alpha": torch.rand(1, 8, 8)},
         ValueError, "grey"),
        ("missing/out.png", {}, FileNotFoundError, "missing"),
    ],
)
def test_save_errors_write_nothing(tmp_path: Path, name, kwargs, error, match) -> None:
    kwargs = dict(kwargs)
    image = kwargs.pop("image", torch.rand(3, 8, 8))
    with pytest.raises(error, match=match):
        save_image(tmp_path / name, image, **kwargs)
    assert os.listdir(tmp_path) == []  # nothing written, missing folders not created


def test_save_is_atomic_when_the_encoder_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "keep.png"
    save_image(path, torch.zeros(3, 8, 8))
    before = path.read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"partial data")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        save_image(path, torch.ones(3, 8, 8))
    with pytest.raises(OSError, match="simulated"):
        save_image(tmp_path / "new.png", torch.ones(3, 8, 8))
    assert os.listdir(tmp_path) == ["keep.png"]
    assert path.read_bytes() == before


# ------------------------------------------------------------------------------------ PatchSampler


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five small photo-like images of different sizes, one grey."""
    for i, (h, w) in enumerate([(40, 56), (48, 48), (64, 40), (36, 70), (50, 50)]):
        array = rng_u8(h, w, 3, seed=10 + i)
        if i == 4:
            pil_save(tmp_path / f"img{i}.png", array[..., 0])
        else:
            pil_save(tmp_path / f"img{i}.png", array)
    return tmp_path


@pytest.mark.parametrize(
    ("task", "level"),
    [(get_task("denoise"), 25), (get_task("dejpeg"), 20)],
)
def test_sampler_is_a_pure_function_of_seed_step_index(folder: Path, task, level) -> None:
    a = PatchSampler(folder, task, level, patch_size=24, seed=3)
    b = PatchSampler(folder, task, level, patch_size=24, seed=3)
    d1, c1 = a.batch(5, 8)
    assert d1.shape == c1.shape == (8, 3, 24, 24) and d1.dtype == c1.dtype == torch.float32
    b.batch(0, 8)  # other calls in between change nothing
    d2, c2 = b.batch(5, 8)
    assert torch.equal(d1, d2) and torch.equal(c1, c2)
    d3, c3 = a.batch(6, 8)
    assert not torch.equal(c1, c3)
    d4, c4 = PatchSampler(folder, task, level, patch_size=24, seed=4).batch(5, 8)
    assert not torch.equal(c1, c4)
    # clean patches hold 8-bit values
    assert torch.equal(c1, (c1 * 255).round() / 255)


@pytest.mark.parametrize(
    ("task", "level"),
    [(get_task("denoise"), 50), (get_task("dejpeg"), 10)],
)
@pytest.mark.parametrize("world_size", [2, 4])
def test_sampler_rank_slices_the_global_batch(folder: Path, task, level, world_size: int) -> None:
    sampler = PatchSampler(folder, task, level, patch_size=16, seed=1)
    full_d, full_c = sampler.batch(7, 8)
    b = 8 // world_size
    for rank in range(world_size):
        d, c = sampler.batch(7, 8, rank=rank, world_size=world_size)
        assert torch.equal(d, full_d[rank * b : (rank + 1) * b])
        assert torch.equal(c, full_c[rank * b : (rank + 1) * b])


def test_sampler_patches_are_crops_of_the_images(folder: Path) -> None:
    sampler = PatchSampler(folder, get_task("denoise"), 30, patch_size=16, seed=0)
    images = [img.numpy() for img in sampler.images]

    def is_crop(x: np.ndarray) -> bool:
        for img in images:
            # candidate corners: where the first pixel matches (random images: few), then compare
            for i, j in zip(*np.nonzero((img == x[:, :1, :1]).all(0)), strict=True):
                if np.array_equal(img[:, i : i + 16, j : j + 16], x):
                    return True
        return False

    seen_variants = set()
    for i in range(24):
        _, clean = sampler.patch(0, i)
        levels = (clean * 255).round().byte()
        undone = []  # undo each variant: rot90 back, then flip back
        for variant in range(8):
            x = torch.rot90(levels, -(variant >> 1), dims=(-2, -1))
            undone.append((x.flip(-1) if variant & 1 else x).numpy())
        matches = [v for v in range(8) if is_crop(undone[v])]
        assert matches, f"patch {i} is not a crop of any image"
        seen_variants.add(matches[0])
    assert len(seen_variants) >= 4  # several of the 8 variants show up
    noise = torch.stack([sampler.patch(1, i)[0] - sampler.patch(1, i)[1] for i in range(16)])
    assert noise.std().item() == pytest.approx(30 / 255, rel=0.05)


def test_sampler_grey_and_colour(folder: Path) -> None:
    grey = PatchSampler(folder, get_task("denoise"), 25, patch_size=16, grey=True)
    assert grey.batch(0, 2)[1].shape == (2, 1, 16, 16)
    colour = PatchSampler(folder, get_task("denoise"), 25, patch_size=16, max_images=2)
    assert len(colour) == 2 and colour.names == ["img0.png", "img1.png"]
    # the grey file becomes 3 equal channels
    only_grey = PatchSampler(folder, get_task("denoise"), 25, patch_size=16)
    img4 = only_grey.images[only_grey.names.index("img4.png")]
    assert img4.shape[0] == 3 and torch.equal(img4[0], img4[2])


def test_sampler_errors(folder: Path) -> None:
    task = get_task("denoise")
    sampler = PatchSampler(folder, task, 25, patch_size=16)
    with pytest.raises(ValueError, match="divisible"):
        sampler.batch(0, 6, rank=0, world_size=4)
    with pytest.raises(ValueError, match="rank"):
        sampler.batch(0, 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="multiple of the task's scale 4"):
        PatchSampler(folder, get_task("sr"), 0, patch_size=18)
    with pytest.warns(UserWarning, match="skipped 3 image.*img0.png.*img2.png.*img3.png"):
        small = PatchSampler(folder, task, 25, patch_size=48)  # only the 48x48 and 50x50 fit
    assert small.names == ["img1.png", "img4.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="at least 100x100"):
            PatchSampler(folder, task, 25, patch_size=100)
    with pytest.raises(ValueError):
        PatchSampler(folder, task, -5)


@needs_shared
def test_sampler_on_bsd432() -> None:
    sampler = PatchSampler(BSD432, get_task("dejpeg"), 10, patch_size=64, max_images=8)
    degraded, clean = sampler.batch(0, 4)
    assert degraded.shape == clean.shape == (4, 3, 64, 64)
    assert degraded.sub(clean).abs().mean() > 0.005


# ------------------------------------------------------------------------------------ EvalSet


def test_evalset_is_deterministic(folder: Path) -> None:
    task = get_task("denoise")
    a = EvalSet(folder, task, 25, seed=0)
    b = EvalSet(folder, task, 25, seed=0)
    assert len(a) == 5 and a.names == [f"img{i}" for i in range(5)]
    name, degraded, clean = a[2]
    assert name == "img2" and degraded.shape == clean.shape == (3, 64, 40)
    assert torch.equal(degraded, b[2][1]) and torch.equal(degraded, a[2][1])
    assert torch.equal(a[-1][1], a[4][1])
    # seeded by the file name, not the position: a subset gives the same numbers
    sub = EvalSet(folder, task, 25, seed=0, limit=3)
    assert len(sub) == 3 and torch.equal(sub[2][1], degraded)
    assert not torch.equal(EvalSet(folder, task, 25, seed=1)[2][1], degraded)
    assert not torch.equal(EvalSet(folder, task, 30, seed=0)[2][1], degraded)
    with pytest.raises(IndexError):
        a[5]


def test_evalset_grey_and_loader(folder: Path) -> None:
    grey = EvalSet(folder, get_task("dejpeg"), 20, grey=True)
    name, degraded, clean = grey[0]
    assert degraded.shape == clean.shape == (1, 40, 56)
    expected = np.round(rng_u8(40, 56, 3, seed=10).astype(np.float64) @ [0.299, 0.587, 0.114])
    np.testing.assert_array_equal((clean[0].double() * 255).round().numpy(), expected)
    assert EvalSet(folder, get_task("denoise"), 20)[4][2].shape[0] == 3  # grey file -> 3 channels
    loader = torch.utils.data.DataLoader(grey, batch_size=1)
    names = [batch[0][0] for batch in loader]
    assert names == grey.names


@needs_shared
def test_evalset_on_cbsd68() -> None:
    data = EvalSet(CBSD68, get_task("denoise"), 25, limit=2)
    name, degraded, clean = data[0]
    assert len(data) == 2 and clean.shape[0] == 3 and min(clean.shape[1:]) == 321
    assert (degraded - clean).std().item() == pytest.approx(25 / 255, rel=0.02)
