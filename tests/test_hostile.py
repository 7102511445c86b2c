"""Hostile and odd inputs through the command line (issue [6/6]): each either gives a correct result or
fails with a one-line error, a non-zero exit status and no output file (not even a partial one).

Runs the real ``ftn`` entry point in this process (``ftn.cli.main``) with the shipped ``denoise``
model on small images, and ``ftn train`` for the config checks.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftn.cli import main as ftn_main
from ftn.data.images import load_image


def _photo(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return np.clip(np.stack([x, y, 1 - x], -1) * 200 + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _png(path: Path, mode: str = "RGB") -> None:
    Image.fromarray(_photo()).convert(mode).save(path)


def _truncated(path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_photo(64, 64)).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _bomb(path: Path) -> None:
    """A valid small PNG whose header (with a correct CRC) claims 100000 x 100000 pixels."""
    buffer = io.BytesIO()
    Image.fromarray(_photo(8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _sixteen_bit(path: Path) -> None:
    grey16 = (np.linspace(0, 65535, 24 * 32).reshape(24, 32)).astype(np.uint16)
    Image.fromarray(grey16).save(path)


def _exif_rotated(path: Path) -> None:
    """Stored 32 wide x 24 high, EXIF orientation 6: shown rotated, 24 wide x 32 high."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo()).save(path, exif=exif, quality=95)


def _cmyk(path: Path) -> None:
    Image.fromarray(_photo()).convert("CMYK").save(path, quality=95)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # a naive torch.load would call os.system(...)
        return (os.system, (f"touch {self.marker}",))


def _evil_pth(path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Exploit(str(path.parent / "PWNED"))}, f, protocol=2)


# name: (how to make the input, input file name, extra argv, expected exit, stderr pattern or None)
FAILURES: dict[str, tuple[Callable[[Path], None], str, list[str], str]] = {
    "zero-byte file": (lambda p: p.write_bytes(b""), "empty.png", ["--alpha", "0.5"], "empty"),
    "truncated PNG": (lambda p: _truncated(p, "PNG"), "half.png", ["--alpha", "0.5"], "truncated or corrupt"),
    "truncated JPEG": (lambda p: _truncated(p, "JPEG"), "half.jpg", ["--alpha", "0.5"], "truncated or corrupt"),
    "not an image": (lambda p: p.write_text("hello, not pixels\n"), "notes.png", ["--alpha", "0.5"], "not an image"),
    "decompression bomb": (_bomb, "bomb.png", ["--alpha", "0.5"], "100000x100000"),
    "alpha NaN": (_png, "in.png", ["--alpha", "nan"], "NaN"),
    "alpha negative": (_png, "in.png", ["--alpha", "-0.2"], "--allow-extrapolation"),
    "alpha above 1": (_png, "in.png", ["--alpha", "1.3"], "--allow-extrapolation"),
    "alpha infinite even with extrapolation": (_png, "in.png", ["--alpha", "inf", "--allow-extrapolation"], "NaN or infinity"),
    "alpha map not an image": (_png, "in.png", ["--alpha-map", "{tmp}/map.txt"], "not an image"),
    "alpha map missing": (_png, "in.png", ["--alpha-map", "{tmp}/nomap.png"], "alpha map not found"),
    "output in a missing folder": (_png, "in.png", ["--alpha", "0.5", "-o", "{tmp}/no/such/folder/out.png"], "does not exist"),
    "crafted pickle as the model": (_png, "in.png", ["--alpha", "0.5", "--model", "{tmp}/evil.pth"], "not a safetensors model"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_refused_with_one_line_and_no_output(case: str, tmp_path: Path, capsys) -> None:
    make, name, extra, pattern = FAILURES[case]
    src = tmp_path / name
    make(src)
    (tmp_path / "map.txt").write_text("0.5")
    _evil_pth(tmp_path / "evil.pth")
    argv = [a.format(tmp=tmp_path) for a in extra]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out" / "result.png")]
        (tmp_path / "out").mkdir()
    if "--model" not in argv:
        argv += ["--model", "denoise"]
    before = sorted(tmp_path.rglob("*"))
    code = ftn_main(["run", "-i", str(src), *argv])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("ftn run: error:") and "\n" not in err and pattern in err, err
    assert sorted(tmp_path.rglob("*")) == before  # no output, no temporary file
    assert not (tmp_path / "PWNED").exists()  # the pickle's payload never ran


# name: (how to make the input, input name, output name, check of the loaded output)
SUCCESSES: dict[str, tuple[Callable[[Path], None], str, str, Callable]] = {
    "16-bit PNG stays 16-bit": (_sixteen_bit, "deep.png", "deep.png", lambda o: o.bit_depth == 16 and o.image.shape[0] == 1),
    "grey stays grey": (lambda p: _png(p, "L"), "grey.png", "grey.png", lambda o: o.image.shape[0] == 1),
    "palette becomes RGB": (lambda p: _png(p, "P"), "pal.png", "pal.png", lambda o: o.image.shape[0] == 3),
    "RGBA keeps its transparency": (lambda p: _png(p, "RGBA"), "rgba.png", "rgba.png", lambda o: o.alpha is not None),
    "CMYK JPEG is converted": (_cmyk, "cmyk.jpg", "cmyk.png", lambda o: o.image.shape == (3, 24, 32)),
    "EXIF orientation is honoured": (_exif_rotated, "rot.jpg", "rot.png", lambda o: o.image.shape == (3, 32, 24)),
}


@pytest.mark.parametrize("case", list(SUCCESSES))
def test_odd_but_valid_images_give_a_correct_result(case: str, tmp_path: Path) -> None:
    make, name, out_name, check = SUCCESSES[case]
    make(tmp_path / name)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / out_name
    assert ftn_main(["run", "-i", str(tmp_path / name), "-o", str(out), "--model", "denoise", "--alpha", "0.3"]) == 0
    assert check(load_image(out))


def test_alpha_map_of_another_size_is_resized_and_said(tmp_path: Path, capsys) -> None:
    _png(tmp_path / "in.png")
    Image.fromarray(np.full((7, 9), 128, np.uint8)).save(tmp_path / "map.png")
    code = ftn_main(["run", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", "denoise",
                     "--alpha-map", str(tmp_path / "map.png")])
    assert code == 0 and (tmp_path / "out.png").is_file()
    assert "map.png is 9x7; resized to the image's 32x24" in capsys.readouterr().out


def test_read_only_output_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    """A folder the process may not write to. Root ignores permission bits, so there the refusal the
    operating system would give is simulated where the output's temporary file is created."""
    _png(tmp_path / "in.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        real = os.open

        def refuse(path, flags, *args, **kwargs):  # creating a file in the locked folder fails
            if flags & os.O_CREAT and Path(path).parent.resolve() == locked.resolve():
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    else:
        locked.chmod(0o555)
    try:
        code = ftn_main(["run", "-i", str(tmp_path / "in.png"), "-o", str(locked / "out.png"), "--model", "denoise",
                         "--alpha", "0.5"])
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("ftn run: error:") and "\n" not in err and "ermission denied" in err, err
    assert list(locked.iterdir()) == []


def test_config_with_an_unknown_key_names_it(tmp_path: Path, capsys) -> None:
    from ftn.train.cli import main as train_main

    config = tmp_path / "bad.yaml"
    config.write_text("task: denoise\nlevel: 20\narch: adafm_net\nlearning_rate: 0.001\n")
    with pytest.raises(SystemExit) as exit_info:
        code = train_main([str(config)])
        raise SystemExit(code)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "learning_rate" in err and "lr" in err  # the unknown key and the close match
    assert not (tmp_path / "runs").exists()


def test_export_refuses_a_crafted_pickle(tmp_path: Path, capsys) -> None:
    _evil_pth(tmp_path / "evil.pth")
    code = ftn_main(["export", "--model", str(tmp_path / "evil.pth"), "--alpha", "0.5", "-o", str(tmp_path / "x.safetensors")])
    assert code != 0 and not (tmp_path / "PWNED").exists() and not (tmp_path / "x.safetensors").exists()
    err = capsys.readouterr().err.strip()
    assert "error" in err and "\n" not in err
