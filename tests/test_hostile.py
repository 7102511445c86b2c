"""Hostile and odd inputs through the command line (issue [6/6]): each either gives a correct result or
fails with a one-line error, a non-zero exit status and no output file (not even a partial one).

Runs the real ``ftn`` entry point in this process (``ftn.cli.main``) with the shipped ``denoise``
model on small images, and ``ftn train`` for the config checks.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
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
    # A one-axis, two-anchor model (dejpeg): alpha in [0, 1], beyond it only with --allow-extrapolation.
    "alpha NaN": (_png, "in.png", ["--model", "dejpeg", "--alpha", "nan"], "NaN"),
    "alpha negative": (_png, "in.png", ["--model", "dejpeg", "--alpha", "-0.2"], "--allow-extrapolation"),
    "alpha above 1": (_png, "in.png", ["--model", "dejpeg", "--alpha", "1.3"], "--allow-extrapolation"),
    "alpha infinite even with extrapolation": (_png, "in.png", ["--model", "dejpeg", "--alpha", "inf", "--allow-extrapolation"],
                                               "NaN or infinity"),
    # The three-anchor denoise: alpha in [0, 2].
    "alpha NaN, three anchors": (_png, "in.png", ["--alpha", "nan"], "must be a finite number"),
    "alpha above the last anchor": (_png, "in.png", ["--alpha", "2.3"], "outside sigma's range [0, 2]"),
    "alpha negative, three anchors": (_png, "in.png", ["--alpha", "-0.2"], "outside sigma's range [0, 2]"),
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


# -- crafted model files (issue 18, item 1): refused in one line, before anything large is built ----


def _tiny_file(path: Path) -> tuple[dict, dict]:
    """A small, valid tunable model file; returns its metadata and tensors for crafting variants."""
    import ftn
    from ftn.io import read_metadata, read_state_dict

    torch.manual_seed(0)
    ftn.save(ftn.attach(ftn.build_arch("adafm_net", size="mini", channels=8, blocks=2), "ftn"), path, task="denoise")
    return read_metadata(path), read_state_dict(path)


def _crafted(path: Path, meta_change: Callable[[dict], None] | None = None,
             tensor_change: Callable[[dict], None] | None = None, raw_meta: str | None = None) -> None:
    from safetensors.torch import save_file

    meta, tensors = _tiny_file(path)
    if meta_change:
        meta_change(meta)
    if tensor_change:
        tensor_change(tensors)
    save_file(tensors, path, metadata={"ftn": raw_meta if raw_meta is not None else json.dumps(meta)})


def _options(**change) -> Callable[[dict], None]:
    return lambda meta: meta["arch_options"].update(change)


def _stored_as(dtype: torch.dtype) -> Callable[[dict], None]:
    return lambda t: t.update({"conv_first.base.weight": t["conv_first.base.weight"].to(dtype)})


# name: (metadata change, tensor change, raw metadata, expected piece of the message)
CRAFTED_MODELS: dict[str, tuple] = {
    "4000 channels asked by a tiny file": (_options(channels=2000), None, None, "tensors do not fit the network"),
    "a million blocks": (_options(blocks=1_000_000), None, None, "blocks must be at most"),
    "huge method option": (lambda m: m["method_options"].update(groups=10**9), None, None, "tensors do not fit"),
    "weights stored as bool": (None, _stored_as(torch.bool), None, "stored as BOOL"),
    "weights stored as int64": (None, _stored_as(torch.int64), None, "stored as I64"),
    "weights stored as fp8": (None, _stored_as(torch.float8_e4m3fn), None, "stored as F8_E4M3"),
    "zero-size tensor": (None, lambda t: t.update({"conv_first.base.weight": torch.zeros(8, 0, 3, 3)}), None, "shape of"),
    "allow_extrapolation 'no'": (lambda m: m.update(allow_extrapolation="no"), None, None, "must be true or false"),
    "options not an object": (lambda m: m.update(arch_options=[1] * 10**5), None, None, "must be an object, got a list"),
    "option value huge string": (_options(size="x" * 10**6), None, None, "short string"),
    "deeply nested metadata": (None, None, "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "nested below the parser's limit": (None, None, '{"a":' * 200 + "1" + "}" * 200, "nested too deeply"),
}


@pytest.mark.parametrize("case", list(CRAFTED_MODELS))
def test_crafted_model_files_are_refused_in_one_line(case: str, tmp_path: Path) -> None:
    import ftn

    meta_change, tensor_change, raw, pattern = CRAFTED_MODELS[case]
    path = tmp_path / "m.safetensors"
    _crafted(path, meta_change, tensor_change, raw)
    with pytest.raises(ValueError, match=pattern) as info:
        ftn.load(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600, str(info.value)[:1000]


def test_ftn_info_on_deeply_nested_metadata_is_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.safetensors"
    _crafted(path, raw_meta="[" * 100_000 + "]" * 100_000)
    assert ftn_main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn info: error:") and "\n" not in err and "nested too deeply" in err


def test_describe_metadata_is_bounded() -> None:
    from ftn.io import describe_metadata

    nested: object = 1
    for _ in range(40):
        nested = [nested]
    text = describe_metadata({"task": "denoise", "long": "x" * 10**6, "many": list(range(10**5)), "deep": nested})
    assert len(text) < 20_000 and "(1000000 characters)" in text and "more items" in text and "nested too deeply" in text
    assert describe_metadata({"task": "denoise"}) == json.dumps({"task": "denoise"}, indent=2)


def _zero_size_rrdbnet(path: Path) -> None:
    """Keys of a 23-block RRDBNet with 2000 channels whose tensors hold no values at all (0x0 kernels)."""
    state = {"conv_first.weight": torch.zeros(2000, 3, 0, 0), "conv_last.weight": torch.zeros(3, 2000, 0, 0)}
    for i in range(23):
        state[f"body.{i}.rdb1.conv1.weight"] = torch.zeros(1000, 2000, 0, 0)
    torch.save(state, path)


def _strided_pth(path: Path) -> None:
    """A .pth whose tensor claims 2000x2000x3x3 values over a one-element storage (zero strides)."""
    state = {"dncnn.0.weight": torch.zeros(1).as_strided((2000, 2000, 3, 3), (0, 0, 0, 0)),
             "dncnn.2.weight": torch.zeros(1).as_strided((3, 2000, 3, 3), (0, 0, 0, 0))}
    torch.save(state, path)


# name: (how to make the checkpoint, file name, expected piece of the message)
CRAFTED_CHECKPOINTS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "zero-size tensors asking for 2000 channels": (_zero_size_rrdbnet, "z.pth", "do not fit rrdbnet"),
    "zero strides over one value": (_strided_pth, "s.pth", "holds fewer values"),
    "damaged safetensors": (lambda p: p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}"), "d.safetensors", "not a safetensors file"),
    "weights stored as int64": (lambda p: torch.save({"dncnn.0.weight": torch.zeros(8, 1, 3, 3, dtype=torch.int64),
                                                      "dncnn.2.weight": torch.zeros(1, 8, 3, 3)}, p), "i.pth", "dncnn.0.weight torch.int64"),
    "zero kernels in DnCNN layout": (lambda p: torch.save({"dncnn.0.weight": torch.zeros(0, 1, 3, 3)}, p), "e.pth", "channels must be a positive int"),
}


@pytest.mark.parametrize("case", list(CRAFTED_CHECKPOINTS))
def test_crafted_checkpoints_are_refused_by_load_base(case: str, tmp_path: Path) -> None:
    import ftn

    make, name, pattern = CRAFTED_CHECKPOINTS[case]
    make(tmp_path / name)
    with pytest.raises(ValueError, match=pattern) as info:
        ftn.load_base(tmp_path / name)
    assert "\n" not in str(info.value) and len(str(info.value)) < 1000, str(info.value)[:1000]


_PEAK_SCRIPT = """
import resource, sys, ftn
for path in sys.argv[1:]:
    try:
        (ftn.load_base if path.endswith(".pth") else ftn.load)(path)
    except ValueError:
        pass
    else:
        raise SystemExit(f"{path} was accepted")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_crafted_files_cost_little_memory(tmp_path: Path) -> None:
    """Peak RSS of a fresh process refusing the memory cases (they took 4.7 to 7.6 GB before)."""
    import subprocess
    import sys

    files = []
    for case in ("4000 channels asked by a tiny file", "huge method option"):
        files.append(tmp_path / f"{len(files)}.safetensors")
        _crafted(files[-1], *CRAFTED_MODELS[case][:3])
    for make in (_zero_size_rrdbnet, _strided_pth):
        files.append(tmp_path / f"{len(files)}.pth")
        make(files[-1])
    # wall time is generous (a busy machine); the script itself takes seconds of CPU
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, *map(str, files)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout
    peak_mb = int(done.stdout.split()[-1])
    assert peak_mb < 1500, f"peak RSS {peak_mb} MB"


# -- ftn train: configs and run folders (issue 18, items 6 and 7) --------------------------------------

_BOMB = "\n".join(
    [f'a0: &a0 ["{"lol" * 3}"' + ', "lol"' * 8 + "]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
)


def _run_folder(tmp: Path, checkpoint: bytes | None) -> Path:
    run = tmp / "run"
    run.mkdir()
    if checkpoint is not None:
        (run / "checkpoint.safetensors").write_bytes(checkpoint)
    return run


def _random_bytes(n: int) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


def _truncated_checkpoint() -> bytes:
    from ftn.archs import build_arch
    from ftn.train import save_checkpoint

    model = build_arch("adafm_net", size="mini", channels=4, blocks=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.safetensors"
        save_checkpoint(path, model=model, optimizer=torch.optim.Adam(model.parameters()), scheduler=None, step=1,
                        elapsed_s=1.0, config={})
        data = path.read_bytes()
    return data[: len(data) // 2]


# name: (config text (with {train}, {out}), checkpoint bytes or None (no run folder), argv extra, message piece)
TRAIN_FAILURES: dict[str, tuple[str, Callable[[], bytes | None] | None, list[str], str]] = {
    "YAML alias bomb": ("task: denoise\ntrain_data: {train}\narch_options:\n  x: *a9\n", None, [], "alias bomb"),
    "alias bomb in an override": ("task: denoise\ntrain_data: {train}\n", None,
                                  ["--set", "arch_options=" + _BOMB + "\n"], "alias bomb"),
    "huge value in an error": ("task: denoise\ntrain_data: {train}\nlevel: '" + "x" * 100_000 + "'\n", None, [], "..."),
    "out_dir is a file": ("task: denoise\ntrain_data: {train}\nout_dir: {out}/file.txt\n", None, [], "is a file, not a folder"),
    "out_dir below a file": ("task: denoise\ntrain_data: {train}\nout_dir: {out}/file.txt/run\n", None, [], "is a file, not a folder"),
    "resume from an empty checkpoint": ("task: denoise\ntrain_data: {train}\nout_dir: {out}/run\n", lambda: b"", ["--resume"],
                                        "not a readable training checkpoint"),
    "resume from random bytes": ("task: denoise\ntrain_data: {train}\nout_dir: {out}/run\n", lambda: _random_bytes(4096),
                                 ["--resume"], "not a readable training checkpoint"),
    "resume from a truncated checkpoint": ("task: denoise\ntrain_data: {train}\nout_dir: {out}/run\n", _truncated_checkpoint,
                                           ["--resume"], "checkpoint"),
}


@pytest.mark.parametrize("case", list(TRAIN_FAILURES))
def test_train_refuses_in_one_line_before_building_the_model(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    from ftn.train import loop
    from ftn.train.cli import main as train_main

    text, checkpoint, extra, pattern = TRAIN_FAILURES[case]
    (tmp_path / "train").mkdir()
    _png(tmp_path / "train" / "a.png")
    (tmp_path / "file.txt").write_text("not a folder")
    if checkpoint is not None:
        _run_folder(tmp_path, checkpoint())
    config = tmp_path / "c.yaml"
    config.write_text((_BOMB + "\n" if "*a9" in text else "") + text.format(train=tmp_path / "train", out=tmp_path))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the refusal")

    monkeypatch.setattr(loop, "build_model", no_model)
    before = sorted(tmp_path.rglob("*"))
    code = train_main([str(config), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ftn train: error:") and "\n" not in err and pattern in err, err[:2000]
    assert len(err) < 1000
    assert sorted(tmp_path.rglob("*")) == before


_TRAIN_PEAK_SCRIPT = """
import resource, sys
from ftn.train.cli import main
code = main([sys.argv[1], "--no-progress"])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_yaml_alias_bomb_costs_little_memory_and_time(tmp_path: Path) -> None:
    """``ftn train`` on a 586-byte-style alias bomb, in a fresh process: refused (exit 2) in one line,
    with a bounded peak RSS and CPU time (it took 3 GB after 40 s and kept growing before)."""
    import resource
    import subprocess
    import sys

    (tmp_path / "train").mkdir()
    _png(tmp_path / "train" / "a.png")
    config = tmp_path / "bomb.yaml"
    config.write_text(_BOMB + "\n" + f"task: denoise\ntrain_data: {tmp_path / 'train'}\narch_options:\n  x: *a9\n")
    assert config.stat().st_size < 1000

    def cpu_limit() -> None:  # the refusal needs seconds of CPU; a hang is killed, not waited for
        resource.setrlimit(resource.RLIMIT_CPU, (120, 120))

    done = subprocess.run([sys.executable, "-c", _TRAIN_PEAK_SCRIPT, str(config)], capture_output=True, text=True,
                          timeout=900, preexec_fn=cpu_limit)
    assert done.returncode == 0, done.stderr[-2000:]
    code, peak_mb = map(int, done.stdout.split()[-2:])
    err = done.stderr.strip()
    assert code == 2 and err.startswith("ftn train: error:") and "\n" not in err and "alias bomb" in err, err[:500]
    assert peak_mb < 1000, f"peak RSS {peak_mb} MB"


def test_export_writes_with_the_umask_mode(tmp_path: Path) -> None:
    """Issue 18 item 8: ``ftn export`` outputs follow the umask like any file (not 0600)."""
    import ftn

    model = tmp_path / "m.safetensors"
    ftn.save(ftn.attach(ftn.build_arch("adafm_net", size="mini", channels=4, blocks=1), "ftn"), model, task="denoise")
    old = os.umask(0o022)
    try:
        assert ftn_main(["export", "--model", str(model), "--alpha", "0.5", "-o", str(tmp_path / "plain.safetensors")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "plain.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_checkpoint_with_a_wrong_size_rng_state_is_refused(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ftn.archs import build_arch
    from ftn.train import load_checkpoint, save_checkpoint

    model = build_arch("adafm_net", size="mini", channels=4, blocks=1)
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, optimizer=torch.optim.Adam(model.parameters()), scheduler=None, step=1,
                    elapsed_s=1.0, config={})
    with safe_open(str(path), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["rng/cpu"] = tensors["rng/cpu"][:100]
    save_file(tensors, path, metadata=meta)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match="random generator state") as info:
        load_checkpoint(path, model, torch.optim.Adam(model.parameters()))
    assert "\n" not in str(info.value) and torch.equal(torch.get_rng_state(), state)
