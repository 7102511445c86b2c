"""The web app's rules without a browser: alpha maps from paint and gradients, upload limits, level
labels, the "auto" level, and the ``ftn app`` command's wiring."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the web app is an optional extra: pip install -e .[app]")

import ftn  # noqa: E402
from ftn import models  # noqa: E402
from ftn.app.controls import (  # noqa: E402
    DIRECTIONS,
    MAX_AXES,
    alpha_label,
    axes_setting,
    axis_label,
    build_alpha,
    end_labels,
    gradient_map,
    paint_mask,
)
from ftn.app.engine import (  # noqa: E402
    AutoUnavailable,
    ModelCache,
    auto_alpha,
    auto_setting,
    model_axes,
    model_summary,
    run_model,
    save_result,
    to_display,
)
from ftn.app.uploads import UploadLimits, UploadRejected, check_upload, load_upload  # noqa: E402
from ftn.io import read_metadata  # noqa: E402
from ftn.levels import level_to_alpha  # noqa: E402

DENOISE = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}],
           "calibration": {"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.6, 1.0]}}


def _layer(height: int, width: int, painted: tuple[slice, slice]) -> np.ndarray:
    """An RGBA paint layer, opaque red inside ``painted``, transparent elsewhere."""
    layer = np.zeros((height, width, 4), dtype=np.uint8)
    layer[painted] = (255, 45, 85, 255)
    return layer


# -- painted area ---------------------------------------------------------------------------------


def test_painted_pixels_get_the_slider_alpha_and_the_rest_zero() -> None:
    layer = _layer(6, 8, (slice(1, 3), slice(2, 5)))
    a = build_alpha("painted area", (6, 8), 0.7, layers=[layer])
    assert isinstance(a, torch.Tensor) and a.shape == (1, 6, 8) and a.dtype == torch.float32
    expected = torch.zeros(1, 6, 8)
    expected[0, 1:3, 2:5] = 0.7
    torch.testing.assert_close(a, expected)


def test_paint_from_several_layers_is_their_union_and_colour_does_not_matter() -> None:
    one = _layer(4, 4, (slice(0, 1), slice(None)))
    two = np.zeros((4, 4, 4), dtype=np.uint8)
    two[3, 3] = (0, 0, 0, 10)  # black, faintly opaque: still painted
    mask = paint_mask([one, two], (4, 4))
    assert mask.sum() == 5 and mask[0].all() and mask[3, 3]


def test_a_paint_layer_of_another_size_is_scaled_to_the_image() -> None:
    layer = _layer(8, 8, (slice(0, 4), slice(0, 4)))  # top-left quarter of a canvas twice the size
    mask = paint_mask([layer], (4, 4))
    expected = np.zeros((4, 4), dtype=bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(mask, expected)


def test_painting_nothing_is_refused_rather_than_running_at_alpha_zero() -> None:
    with pytest.raises(ValueError, match="nothing is painted"):
        build_alpha("painted area", (4, 4), 0.5, layers=[np.zeros((4, 4, 4), np.uint8)])
    with pytest.raises(ValueError, match="nothing is painted"):
        build_alpha("painted area", (4, 4), 0.5, layers=None)


def test_whole_image_is_a_plain_number() -> None:
    assert build_alpha("whole image", (4, 4), 0.25) == 0.25


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_alphas_outside_the_unit_interval_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        build_alpha("whole image", (4, 4), bad)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        build_alpha("everywhere", (4, 4), 0.5)


# -- gradient -------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradient_runs_from_start_to_end_along_its_direction(direction: str) -> None:
    height, width = 5, 7
    g = gradient_map((height, width), direction, 0.2, 0.8)
    assert g.shape == (1, height, width)
    horizontal = direction in ("left to right", "right to left")
    n = width if horizontal else height
    ramp = np.linspace(0.2, 0.8, n)
    first, last = {
        "left to right": (g[0, :, 0], g[0, :, -1]),
        "right to left": (g[0, :, -1], g[0, :, 0]),
        "top to bottom": (g[0, 0, :], g[0, -1, :]),
        "bottom to top": (g[0, -1, :], g[0, 0, :]),
    }[direction]
    torch.testing.assert_close(first, torch.full_like(first, 0.2))
    torch.testing.assert_close(last, torch.full_like(last, 0.8))
    line = g[0, 0, :] if horizontal else g[0, :, 0]
    if direction in ("right to left", "bottom to top"):
        line = line.flip(0)
    np.testing.assert_allclose(line.numpy(), ramp, atol=1e-6)  # linear, evenly spaced


def test_gradient_is_what_build_alpha_returns_in_gradient_mode() -> None:
    a = build_alpha("gradient", (3, 4), 0.9, direction="top to bottom", start=1.0, end=0.0)
    torch.testing.assert_close(a, gradient_map((3, 4), "top to bottom", 1.0, 0.0))
    assert float(a.min()) == 0.0 and float(a.max()) == 1.0


def test_gradient_on_a_one_pixel_image_is_the_start_value() -> None:
    assert float(gradient_map((1, 1), "left to right", 0.3, 0.9)[0, 0, 0]) == pytest.approx(0.3)


def test_gradient_refuses_an_unknown_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        gradient_map((2, 2), "diagonal", 0.0, 1.0)


# -- labels ---------------------------------------------------------------------------------------


def test_end_labels_name_the_models_real_levels() -> None:
    for name, path in models.available().items():
        meta = read_metadata(path)
        left, right = end_labels(meta)
        assert left and right and left != right, name
    assert end_labels(DENOISE) == ("sigma 20", "sigma 80")
    assert end_labels({"levels": [{"quality": 40}, {"quality": 10}]}) == ("quality 40", "quality 10")
    assert end_labels({"task": "style", "task_options": {"styles": ["mosaic", "candy"]},
                       "levels": [{"style": 0}, {"style": 1}]}) == ("style mosaic", "style candy")


def test_alpha_label_reads_the_level_through_the_calibration() -> None:
    assert alpha_label(DENOISE, 0.6) == "alpha 0.60 (about sigma 50)"
    assert alpha_label(DENOISE, 0.3) == "alpha 0.30 (about sigma 35)"  # halfway between 20 and 50
    assert alpha_label({"levels": [{"perception": 0}, {"perception": 1}]}, 0.3) == "alpha 0.30"


# -- uploads --------------------------------------------------------------------------------------


def _png(path, width: int, height: int) -> str:
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return str(path)


def test_uploads_within_the_limits_load(tmp_path) -> None:
    path = _png(tmp_path / "ok.png", 40, 30)
    assert check_upload(path, UploadLimits(max_megapixels=0.0012, max_bytes=10_000)) == (40, 30)
    image = load_upload(path, UploadLimits())
    assert image.image.shape == (3, 30, 40)


def test_too_many_pixels_is_refused_with_the_size_and_the_option(tmp_path) -> None:
    path = _png(tmp_path / "big.png", 40, 30)  # 1200 pixels
    with pytest.raises(UploadRejected, match=r"40 x 30 .*accepts up to 0.001 megapixels.*--max-megapixels") as err:
        check_upload(path, UploadLimits(max_megapixels=0.001))
    assert "\n" not in str(err.value)


def test_too_many_bytes_is_refused_before_reading_the_image(tmp_path) -> None:
    path = tmp_path / "heavy.png"
    path.write_bytes(b"not even an image" * 100)  # the byte limit is checked first
    with pytest.raises(UploadRejected, match=r"heavy.png is .* MB; .*--max-upload-mb"):
        check_upload(path, UploadLimits(max_bytes=1000))


def test_a_file_that_is_not_an_image_is_refused(tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(UploadRejected, match="not an image"):
        check_upload(path, UploadLimits())


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        UploadLimits(max_megapixels=0)
    with pytest.raises(ValueError):
        UploadLimits(max_bytes=-1)


# -- engine ---------------------------------------------------------------------------------------


def test_auto_for_denoise_follows_the_estimated_sigma() -> None:
    torch.manual_seed(0)
    clean = torch.full((3, 64, 64), 0.5)
    noisy = (clean + torch.randn_like(clean) * 50 / 255).clamp(0, 1)
    alpha, line = auto_alpha(DENOISE, noisy, None)
    sigma = float(line.split("sigma ")[1].split()[0])
    assert 45 < sigma < 55
    assert alpha == pytest.approx(level_to_alpha(DENOISE, sigma)[0], abs=0.005)  # line shows 1 decimal


def test_auto_for_dejpeg_reads_the_quality_of_the_file(tmp_path) -> None:
    meta = {"task": "dejpeg", "levels": [{"quality": 40}, {"quality": 10}],
            "calibration": {"level_name": "quality", "levels": [10, 40], "alphas": [1.0, 0.0]}}
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "q30.jpg", quality=30)
    alpha, line = auto_alpha(meta, torch.zeros(3, 32, 32), tmp_path / "q30.jpg")
    assert "quality 30" in line and alpha == pytest.approx(1 / 3)
    Image.fromarray(image).save(tmp_path / "q30.png")
    with pytest.raises(AutoUnavailable, match="not a JPEG"):
        auto_alpha(meta, torch.zeros(3, 32, 32), tmp_path / "q30.png")


@pytest.mark.parametrize("meta", [
    {"task": "sr", "levels": [{"perception": 0}, {"perception": 1}]},
    {"task": "style", "levels": [{"style": 0}, {"style": 1}]},
])
def test_auto_says_clearly_when_the_task_has_no_blind_estimate(meta: dict) -> None:
    with pytest.raises(AutoUnavailable, match=f"not possible for this model \\(task {meta['task']}\\)"):
        auto_alpha(meta, torch.zeros(3, 16, 16), None)


def test_auto_without_a_calibration_points_to_the_slider() -> None:
    meta = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}]}
    with pytest.raises(AutoUnavailable, match="calibration.*slider"):
        auto_alpha(meta, torch.rand(3, 32, 32), None)


def _tiny_model(path) -> None:
    ftn.save(ftn.attach(ftn.build_arch("adafm_net", size="mini", channels=4, blocks=1), "ftn"), path, task="denoise")


def test_model_cache_reads_each_model_once_and_keeps_only_a_few(tmp_path) -> None:
    cache = ModelCache(max_models=2, allow_paths=True)
    first = cache.get("denoise")
    assert cache.get("denoise") is first
    assert cache.get(str(models.resolve("denoise"))) is first  # name and path are one model
    for i in range(3):
        _tiny_model(tmp_path / f"m{i}.safetensors")
    a = cache.get(str(tmp_path / "m0.safetensors"))
    cache.get(str(tmp_path / "m1.safetensors"))  # denoise is now the least recently used: dropped
    assert len(cache) == 2 and cache.get(str(tmp_path / "m0.safetensors")) is a
    cache.get(str(tmp_path / "m2.safetensors"))  # m1 goes
    assert len(cache) == 2 and cache.get(str(tmp_path / "m0.safetensors")) is a
    assert cache.get("denoise") is not first  # read again after it was dropped
    with pytest.raises(FileNotFoundError, match="shipped"):
        cache.get("no-such-model")


def test_the_model_box_never_tells_whether_a_path_exists(tmp_path) -> None:
    from ftn.app.engine import NO_MODEL_AT_PATH

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    _tiny_model(uploads / "uploaded.safetensors")
    ftn.save(ftn.build_arch("adafm_net", size="mini", channels=4, blocks=1), tmp_path / "plain.safetensors")
    (tmp_path / "text.safetensors").write_text("hello")
    (tmp_path / "folder.safetensors").mkdir()
    cache = ModelCache(allow_paths=True, refuse_under=[uploads])
    cases = ["/etc/passwd", "/no/such/file.safetensors", str(tmp_path / "folder.safetensors"), str(tmp_path / "text.safetensors"),
             str(tmp_path / "plain.safetensors"), str(uploads / "uploaded.safetensors"), "~/../../etc/shadow", "bad\x00name/x"]
    messages = set()
    for case in cases:
        with pytest.raises(ValueError) as info:
            cache.get(case)
        messages.add(str(info.value))
    assert messages == {NO_MODEL_AT_PATH}  # the same words whatever is (or is not) at the path


def test_paths_are_refused_unless_local_models_are_allowed(tmp_path) -> None:
    _tiny_model(tmp_path / "m.safetensors")
    with pytest.raises(FileNotFoundError, match="--allow-local-models"):
        ModelCache(allow_paths=False).get(str(tmp_path / "m.safetensors"))
    assert ModelCache(allow_paths=False).get("denoise").metadata["task"] == "denoise"  # a shipped name still loads


@pytest.mark.parametrize("allow", [False, True])
def test_the_local_model_box_is_offered_only_with_the_flag(allow: bool) -> None:
    from ftn.app import AppConfig
    from ftn.app.ui import build_app

    app = build_app(AppConfig(allow_local_models=allow))
    boxes = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "ftn-local"]
    assert len(boxes) == int(allow)


@pytest.mark.parametrize("allow, triggers", [(False, {"load", "change"}), (True, {"load", "change", "submit"})])
def test_every_way_of_choosing_a_model_is_one_event_run_one_at_a_time(allow: bool, triggers: set[str]) -> None:
    """The page's load, the model list and the local box share one event that the browser runs one
    at a time (a second choice waits): two overlapping runs of the model handler interleaved their
    updates, and the older one hid the second axis's editor that the newer one had shown."""
    from ftn.app import AppConfig
    from ftn.app.ui import build_app

    app = build_app(AppConfig(allow_local_models=allow))
    deps = [d for d in app.config["dependencies"] if _handler_name(app, d["id"]) == "on_model"]
    assert len(deps) == 1
    assert {event for _, event in deps[0]["targets"]} == triggers
    assert deps[0]["trigger_mode"] == "always_last"


def _handler_name(app, dependency: int) -> str:
    return getattr(app.fns[dependency].fn, "__name__", "")


def _header_only_png(path, width: int, height: int) -> None:
    """A small valid PNG whose header (with a correct CRC) claims ``width`` x ``height`` pixels."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_paint_layers_over_the_megapixel_limit_are_refused_before_decoding(tmp_path, monkeypatch) -> None:
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from ftn.app.ui import bound_editor
    from ftn.app.uploads import check_layer

    limits = UploadLimits(max_megapixels=1.0)
    _header_only_png(tmp_path / "huge.png", 13000, 13000)
    Image.fromarray(_layer(6, 8, (slice(1, 3), slice(2, 5)))).save(tmp_path / "small.png")
    assert check_layer(tmp_path / "small.png", limits) == (8, 6)
    assert check_layer((tmp_path / "small.png").read_bytes(), limits) == (8, 6)
    with pytest.raises(UploadRejected, match="13000 x 13000"):
        check_layer(tmp_path / "huge.png", limits)
    with pytest.raises(UploadRejected, match="not an image"):
        check_layer(b"hello", limits)

    editor = bound_editor(gr.ImageEditor(type="numpy", image_mode="RGBA"), limits)
    decoded = []
    original = Image.Image.convert
    monkeypatch.setattr(Image.Image, "convert", lambda im, *a, **k: decoded.append(im.size) or original(im, *a, **k))
    small, huge = FileData(path=str(tmp_path / "small.png")), FileData(path=str(tmp_path / "huge.png"))
    value = editor.preprocess(EditorData(background=None, layers=[small], composite=None))
    assert value["layers"][0].shape == (6, 8, 4)
    decoded.clear()
    for layers in ([small, huge], [small] * 5):
        with pytest.raises(gr.Error):
            editor.preprocess(EditorData(background=None, layers=layers, composite=None))
    assert all(size == (8, 6) for size in decoded)  # nothing large was decoded


@pytest.mark.parametrize(
    "options,message",
    [
        ({"max_upload_mb": float("inf")}, "--max-upload-mb must be a positive, finite number"),
        ({"max_upload_mb": float("nan")}, "--max-upload-mb"),
        ({"max_upload_mb": 1e300}, "--max-upload-mb must be at most"),
        ({"max_megapixels": float("inf")}, "--max-megapixels"),
        ({"max_megapixels": -1.0}, "--max-megapixels"),
        ({"port": 99999}, "--port must be a port number from 1 to 65535"),
        ({"port": 0}, "--port"),
        ({"host": ""}, "--host"),
    ],
)
def test_app_options_out_of_range_are_one_line_errors(options: dict, message: str) -> None:
    from ftn.app import app_config

    with pytest.raises(ValueError, match=message) as info:
        app_config(**options)
    assert "\n" not in str(info.value)


def test_app_config_from_options() -> None:
    from ftn.app import app_config
    from ftn.app.config import is_loopback

    config = app_config(port=8123, max_megapixels=2, max_upload_mb=3, allow_local_models=True)
    assert (config.port, config.allow_local_models) == (8123, True)
    assert config.limits == UploadLimits(max_megapixels=2.0, max_bytes=3 * 1024 * 1024)
    assert app_config().allow_local_models is False
    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "192.168.1.2", "example.org")] == [
        True, True, True, False, False, False]


_SIGTERM_SCRIPT = """
import os, signal, sys, tempfile, time
from ftn.app.cleanup import remove_at_exit
folder = tempfile.mkdtemp(prefix="ftn-app-")
open(os.path.join(folder, "result.png"), "w").close()
remove_at_exit(folder)
print(folder, flush=True)
time.sleep(60)
"""


def test_result_folders_are_removed_on_sigterm() -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_SCRIPT], stdout=subprocess.PIPE, text=True)
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM  # still dies of the signal, as before
    assert not folder.exists()


def test_display_and_saved_result_keep_the_pixels(tmp_path) -> None:
    image = torch.rand(1, 5, 6)  # grey
    shown = to_display(image)
    assert shown.shape == (5, 6, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[..., 0], (image[0] * 255).round().numpy().astype(np.uint8))
    assert to_display(image, size=(10, 12)).shape == (10, 12, 3)
    path = save_result(torch.rand(3, 5, 6), tmp_path, "out", alpha=torch.ones(1, 5, 6))
    assert Image.open(path).mode == "RGBA"
    path = save_result(torch.rand(3, 10, 12), tmp_path, "sr", alpha=torch.ones(1, 5, 6))
    assert Image.open(path).mode == "RGB"  # transparency of another size is dropped


# -- the command ----------------------------------------------------------------------------------


def test_ftn_app_passes_its_options_to_launch(monkeypatch) -> None:
    import ftn.app
    from ftn.cli import main

    seen = {}
    monkeypatch.setattr(ftn.app, "launch", lambda config, **_: seen.setdefault("config", config))
    assert main(["app", "--port", "8123", "--max-megapixels", "2", "--max-upload-mb", "3"]) == 0
    config = seen["config"]
    assert (config.host, config.port) == ("127.0.0.1", 8123)  # private unless --host says otherwise
    assert config.limits == UploadLimits(max_megapixels=2.0, max_bytes=3 * 1024 * 1024)


def test_ftn_app_without_gradio_is_a_one_line_error(monkeypatch, capsys) -> None:
    import ftn.app
    from ftn.cli import main

    def missing(config, **_):
        raise ModuleNotFoundError("No module named 'gradio'", name="gradio")

    monkeypatch.setattr(ftn.app, "launch", missing)
    assert main(["app"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn app: error:") and "pip install -e .[app]" in err and "\n" not in err


def test_importing_ftn_does_not_import_gradio() -> None:
    import subprocess
    import sys

    code = "import sys, ftn, ftn.cli, ftn.app; ftn.cli.build_parser(); print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- several axes ---------------------------------------------------------------------------------
# A multi-axis model (ftn.methods.axes) gets a slider per axis and a paint layer per axis. The app's
# setting must be the one `ftn run` uses for the same values and maps.


@pytest.fixture(scope="module")
def axes_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """restore: sigma (3 anchors, named levels, calibrated) x quality (2 anchors); bare: two axes
    without levels; an image (PNG and JPEG quality 70); tuners nudged off the identity so every axis matters."""
    from ftn.levels import with_calibration
    from ftn.methods.axes import AxisSpec, attach_axes

    folder = tmp_path_factory.mktemp("app-axes")

    def net() -> torch.nn.Module:
        return ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)

    def nudged(model):
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.tuner_parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
        return model.eval()

    torch.manual_seed(0)
    restore = attach_axes(net(), "ftn", [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", 2, levels=(90, 10))],
                          groups=4)
    restore.metadata = with_calibration(restore.levels.replace_in({"task": "restore"}),
                                        {"levels": [5, 10, 25, 50], "alphas": [0.0, 0.4, 1.0, 2.0]}, "sigma")
    bare = attach_axes(net(), "ftn", ["sigma", "quality"], groups=4)
    paths = {"restore": folder / "restore.safetensors", "bare": folder / "bare.safetensors"}
    ftn.save(nudged(restore), paths["restore"])
    ftn.save(nudged(bare), paths["bare"])
    rng = np.random.default_rng(0)
    image = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    paths["png"], paths["jpeg"] = folder / "in.png", folder / "in.jpg"
    Image.fromarray(image).save(paths["png"])
    Image.fromarray(image).save(paths["jpeg"], quality=70)
    return paths


def _axes(path) -> tuple[list, object]:
    model = ModelCache().get(str(path))
    return model_axes(model), model


def test_a_multi_axis_model_loads_with_its_axes_and_a_one_axis_model_stays_one_slider(axes_files) -> None:
    axes, model = _axes(axes_files["restore"])
    assert axes == [("sigma", 2), ("quality", 1)]
    assert model_summary(model) == "task restore, method ftn, axes sigma (3 anchors), quality (2 anchors): " \
                                   "sigma 5 ... sigma 50; quality 90 ... quality 10"
    assert model_axes(ModelCache().get("dejpeg")) is None  # a one-axis, two-anchor file: the one-slider page, as before


@pytest.mark.parametrize("levels,segments,label", [
    ((5, 15, 30, 50, 75), 4, "sigma: 5 · 15 · 30 · 50 · 75"),
    ((90, 10), 1, "sigma: 90 · 10"),
    (None, 2, "sigma: alpha 0 · alpha 1 · alpha 2"),  # anchor levels not named
])
def test_axis_sliders_are_labelled_by_their_anchors(levels, segments: int, label: str) -> None:
    from ftn.levels import Axis

    assert axis_label("sigma", Axis("sigma", levels) if levels else None, segments) == label


# name -> (mode, sliders, painted (sigma, quality) or None, the setting as (sigma, quality): a number,
#          or ("mask", a) for a times the painted mask, or ("ramp", a, b) for a left-to-right ramp)
SETTINGS = {
    "whole image: each axis its slider": ("whole image", (1.5, 0.25), None, (1.5, 0.25)),
    "painted sigma, quality unpainted keeps its slider": ("painted area", (2.0, 0.5), (True, False), (("mask", 2.0), 0.5)),
    "both axes painted": ("painted area", (1.0, 1.0), (True, True), (("mask", 1.0), ("mask", 1.0))),
    "gradient on quality, sigma its slider": ("gradient", (0.5, 0.9), None, (0.5, ("ramp", 0.0, 1.0))),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_axes_setting_follows_the_modes_axis_by_axis(case: str, axes_files) -> None:
    mode, sliders, painted, want = SETTINGS[case]
    axes, model = _axes(axes_files["restore"])
    layer = _layer(6, 8, (slice(1, 3), slice(2, 5)))
    layers = [[layer] if p else [] for p in painted] if painted else []
    setting, words = axes_setting(axes, model.levels, sliders, mode, (6, 8), layers=layers,
                                  gradient_axis="quality", direction="left to right", start=0.0, end=1.0)
    mask = torch.from_numpy(layer[..., 3] > 0).float()[None]
    for name, expected in zip(("sigma", "quality"), want, strict=True):
        if isinstance(expected, float):
            assert setting[name] == expected, name
        elif expected[0] == "mask":
            torch.testing.assert_close(setting[name], mask * expected[1])
        else:
            torch.testing.assert_close(setting[name], gradient_map((6, 8), "left to right", expected[1], expected[2]))
    assert "sigma alpha" in words and "quality" in words


# name -> (sliders, mode, layers, words in the one-line error)
SETTING_REFUSALS = {
    "past the last anchor": ((2.5, 0.0), "whole image", [], "outside sigma's range [0, 2]"),
    "below the first anchor": ((0.0, -0.1), "whole image", [], "outside quality's range [0, 1]"),
    "not a number": ((float("nan"), 0.0), "whole image", [], "must be a finite number"),
    "a slider missing": ((1.0,), "whole image", [], "has 2 axes"),
    "nothing painted on any axis": ((1.0, 1.0), "painted area", [[], [np.zeros((6, 8, 4), np.uint8)]], "nothing is painted"),
    "unknown mode": ((1.0, 1.0), "everywhere", [], "unknown mode"),
}


@pytest.mark.parametrize("case", list(SETTING_REFUSALS))
def test_axes_setting_refuses_in_one_line(case: str, axes_files) -> None:
    sliders, mode, layers, words = SETTING_REFUSALS[case]
    axes, model = _axes(axes_files["restore"])
    with pytest.raises(ValueError, match=re.escape(words)) as info:
        axes_setting(axes, model.levels, sliders, mode, (6, 8), layers=layers)
    assert "\n" not in str(info.value)


def test_painting_an_axis_equals_ftn_run_with_that_alpha_map(axes_files, tmp_path) -> None:
    """Paint sigma with its slider at its last anchor (2), quality at 0.5 everywhere: the saved result is
    the one `ftn run --alpha-map sigma=mask.png --alpha quality=0.5` writes for the painted mask."""
    from ftn.cli import main

    axes, model = _axes(axes_files["restore"])
    x = load_upload(axes_files["png"], UploadLimits()).image
    layer = _layer(24, 32, (slice(4, 14), slice(6, 22)))
    setting, _ = axes_setting(axes, model.levels, (2.0, 0.5), "painted area", (24, 32), layers=[[layer], []])
    app_out = save_result(run_model(model, x, setting), tmp_path, "app")
    mask = tmp_path / "mask.png"
    Image.fromarray(((layer[..., 3] > 0) * 255).astype(np.uint8)).save(mask)
    cli_out = tmp_path / "cli.png"
    assert main(["run", "-i", str(axes_files["png"]), "-o", str(cli_out), "--model", str(axes_files["restore"]),
                 "--alpha-map", f"sigma={mask}", "--alpha", "quality=0.5"]) == 0
    app_pixels, cli_pixels = (np.asarray(Image.open(p)).astype(int) for p in (app_out, cli_out))
    np.testing.assert_array_equal(app_pixels, cli_pixels)
    unpainted = save_result(run_model(model, x, {"sigma": 0.0, "quality": 0.5}), tmp_path, "zero")
    assert np.abs(np.asarray(Image.open(unpainted)).astype(int) - app_pixels).max() > 2  # the paint matters


def test_auto_sets_the_sigma_and_quality_axes_as_ftn_run_auto(axes_files, tmp_path) -> None:
    from ftn.infer.estimate import estimate_jpeg_quality, estimate_noise_sigma
    from ftn.levels import axis_alpha

    _, model = _axes(axes_files["restore"])
    x = load_upload(axes_files["jpeg"], UploadLimits()).image
    setting, line = auto_setting(model, x, axes_files["jpeg"])
    levels = model.levels
    assert setting["sigma"] == pytest.approx(axis_alpha(levels.axis("sigma"), estimate_noise_sigma(x), clamp=True)[0])
    assert setting["quality"] == pytest.approx(axis_alpha(levels.axis("quality"), estimate_jpeg_quality(axes_files["jpeg"]))[0])
    assert "JPEG quality 70 -> quality alpha 0.25" in line
    setting, line = auto_setting(model, x, axes_files["png"])
    assert "quality" not in setting and "not a JPEG file" in line  # the quality slider is kept
    _, bare = _axes(axes_files["bare"])
    with pytest.raises(AutoUnavailable, match="do not name their anchor levels"):
        auto_setting(bare, x, axes_files["jpeg"])
    # a noisy photo saved as JPEG: the noise is read from the file (its pixels alone read almost none)
    g = torch.Generator().manual_seed(3)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 3, 3, generator=g), size=(128, 128), mode="bicubic")[0]
    noisy = (smooth.clamp(0.2, 0.8) + 25 / 255 * torch.randn(3, 128, 128, generator=g)).clamp(0, 1)
    jpeg = tmp_path / "noisy.jpg"
    Image.fromarray((noisy * 255).round().byte().permute(1, 2, 0).numpy()).save(jpeg, quality=80)
    x = load_upload(jpeg, UploadLimits()).image
    setting, line = auto_setting(model, x, jpeg)
    read = float(line.split("estimated noise sigma ")[1].split()[0])
    assert 20 <= read <= 30 and estimate_noise_sigma(x) < 5, line
    assert setting["sigma"] == pytest.approx(axis_alpha(levels.axis("sigma"), estimate_noise_sigma(x, jpeg_file=jpeg), clamp=True)[0])


def _handler(app, name: str):
    return next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == name)


def test_the_page_shows_a_slider_and_an_editor_per_axis_and_runs_them(axes_files) -> None:
    """The page's handlers (no browser): a two-axis model shows two sliders labelled by their anchors
    and two paint editors; painting quality only gives the output of ftn run's setting."""
    from ftn.app import AppConfig
    from ftn.app.ui import build_app

    app = build_app(AppConfig(allow_local_models=True))
    path, model_path = str(axes_files["png"]), str(axes_files["restore"])
    out = _handler(app, "on_model")(None, model_path, path, 0.5, 0.0, 0.0, 0.0)
    sliders, editors = out[:MAX_AXES], out[2 * MAX_AXES:3 * MAX_AXES]
    assert [s.get("visible") for s in sliders] == [True, True, False, False]
    assert [s.get("label") for s in sliders[:2]] == ["sigma: 5 · 25 · 50", "quality: 90 · 10"]
    assert [s.get("maximum") for s in sliders[:2]] == [2.0, 1.0]
    assert editors[1]["visible"] is True and editors[1]["value"]["background"].shape == (24, 32, 3)
    assert [e.get("visible") for e in editors[2:]] == [False, False]

    layer = _layer(24, 32, (slice(4, 14), slice(6, 22)))
    empty = {"background": None, "layers": [], "composite": None}
    painted = {"background": None, "layers": [layer], "composite": None}
    run = _handler(app, "on_run")
    _, saved, status = run(path, None, model_path, "painted area", DIRECTIONS[0], 0.0, 1.0, None, lambda *a, **k: None,
                           1.0, 1.0, 0.0, 0.0, empty, painted, None, None)
    assert "sigma alpha 1 (sigma 25)" in status and "quality alpha 1 (quality 10) on the painted" in status
    model = ModelCache().get(model_path)
    x = load_upload(path, UploadLimits()).image
    mask = torch.from_numpy(layer[..., 3] > 0).float()[None]
    want = to_display(run_model(model, x, {"sigma": 1.0, "quality": mask}))
    np.testing.assert_array_equal(np.asarray(Image.open(saved).convert("RGB")), want)

    one = _handler(app, "on_model")("dejpeg", "", path, 0.5, 1.5, 0.0, 0.0)  # back to a one-axis, two-anchor model
    assert [s.get("visible") for s in one[1:MAX_AXES]] == [False] * (MAX_AXES - 1)
    assert one[0]["label"] == "alpha: 0 = quality 40 ... 1 = quality 10" and one[0]["maximum"] == 1.0
    three = _handler(app, "on_model")("denoise", "", path, 1.5, 0.0, 0.0, 0.0)  # one axis, three anchors
    assert [s.get("visible") for s in three[:MAX_AXES]] == [True] + [False] * (MAX_AXES - 1)
    assert three[0]["label"] == "sigma: 20 · 50 · 80" and three[0]["maximum"] == 2.0 and three[0]["value"] == 1.5
